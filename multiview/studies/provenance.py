"""Where an output came from: the command line, the source commit and the device.

The commit is read from the repository's `.git` folder (HEAD, loose refs, packed-refs) — what
`git rev-parse HEAD` prints — without running git, so it also works where git is not installed;
None outside a repository.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def command_line(argv: list[str] | None = None) -> str:
    """The current process's command as one shell-quoted line (`python <script> args...`)."""
    argv = sys.argv if argv is None else argv
    return shlex.join(["python", *argv])


def _git_dir(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # worktree / submodule: "gitdir: <path>"
            text = candidate.read_text().strip()
            if text.startswith("gitdir:"):
                target = Path(text.split(":", 1)[1].strip())
                return target if target.is_absolute() else (folder / target).resolve()
    return None


def git_commit(start: str | Path = REPO_ROOT) -> str | None:
    """The commit HEAD points at (40 hex digits), or None when there is no readable repository."""
    git_dir = _git_dir(Path(start).resolve())
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        for folder in (git_dir, common):
            if (folder / ref).is_file():
                return (folder / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None


def device_description() -> str:
    """'cuda: <names>' when CUDA is available to torch, else 'cpu: <processor> (<n> cores)'."""
    try:
        import torch

        if torch.cuda.is_available():
            names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
            return f"cuda: {torch.cuda.device_count()} x {', '.join(names)}"
    except ImportError:
        pass
    return f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def provenance(argv: list[str] | None = None, with_device: bool = True) -> dict:
    """{command, commit, device, time (UTC ISO 8601)} of the current process."""
    record = {"command": command_line(argv), "commit": git_commit(),
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if with_device:
        record["device"] = device_description()
    return record
