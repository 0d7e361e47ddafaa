"""Compile a self-contained C source into a shared library at first use and load it with ctypes.

Why C and ctypes rather than a torch C++ extension: the kernels here need no torch headers, so a plain
`cc` call builds them in about two seconds (a torch extension takes a minute and ninja), and ctypes
releases the GIL during the call, so Python threads can run several calls at once.

The library is built for the machine it runs on (`-march=native`) and cached under
$MVPRETRAIN_NATIVE_CACHE (default ~/.cache/mvpretrain/native), named by a hash of the source, the
compiler command and the CPU's model and feature flags: a changed source, compiler or CPU (a shared home
directory on a cluster) builds a new library instead of loading one that does not fit. Builds are
atomic (compiled to a temporary name, then renamed), so concurrent processes never load a half-written
file. The compiler is $CC, else `cc`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
from pathlib import Path

# -fno-trapping-math lets GCC vectorise loops with selects (it otherwise keeps them as branches, since
# evaluating both sides could raise floating-point traps that nobody enables).
COMPILE_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared")


class NativeBuildError(RuntimeError):
    """The C compiler is missing or rejected the source; the message names both and has its output."""


def cache_directory() -> Path:
    return Path(os.environ.get("MVPRETRAIN_NATIVE_CACHE", Path.home() / ".cache" / "mvpretrain" / "native"))


def _cpu_identity() -> str:
    """The CPU's model name and feature flags (what -march=native compiles for); the machine type elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(wanted)) or platform.machine()


def library_path(source: Path, compiler: list[str]) -> Path:
    key = hashlib.sha256()
    for part in (source.read_bytes(), " ".join(compiler + list(COMPILE_FLAGS)).encode(), _cpu_identity().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_directory() / f"{source.stem}-{key.hexdigest()[:16]}.so"


def load_c_library(source: Path) -> ctypes.CDLL:
    """The shared library built from `source` (compiled now unless already cached) -> ctypes.CDLL.

    Raises NativeBuildError naming the compiler, the source and the compiler's output.
    """
    source = Path(source)
    compiler = shlex.split(os.environ.get("CC", "cc"))
    path = library_path(source, compiler)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=path.stem, suffix=".so.tmp", dir=path.parent)
        os.close(handle)
        command = [*compiler, *COMPILE_FLAGS, "-o", temporary, str(source)]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        except OSError as error:
            os.unlink(temporary)
            raise NativeBuildError(f"{source}: cannot run the C compiler {compiler[0]!r} ({error}); "
                                   "install one (gcc or clang) or set $CC") from error
        if result.returncode != 0:
            os.unlink(temporary)
            raise NativeBuildError(f"{source}: `{shlex.join(command)}` failed (exit {result.returncode}):\n"
                                   f"{result.stderr.strip()}")
        os.replace(temporary, path)
    return ctypes.CDLL(str(path))
