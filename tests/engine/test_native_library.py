"""load_c_library: builds once per source/compiler/CPU, caches, loads, and names the file on errors."""

from __future__ import annotations

import ctypes
import os
import stat

import pytest

from multiview.engine.native_library import NativeBuildError, load_c_library

ADD = "int add(int a, int b) { return a + b; }\n"


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MVPRETRAIN_NATIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def counting_compiler(monkeypatch, tmp_path):
    """$CC = a wrapper around cc that appends a line to a log per call."""
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho call >> "{log}"\nexec cc "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(wrapper))
    return lambda: len(log.read_text().splitlines()) if log.exists() else 0


def test_builds_loads_and_reuses_the_cached_library(cache, counting_compiler, tmp_path):
    source = tmp_path / "adder.c"
    source.write_text(ADD)
    library = load_c_library(source)
    library.add.restype, library.add.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    assert library.add(2, 40) == 42
    built = list(cache.glob("adder-*.so"))
    assert len(built) == 1 and counting_compiler() == 1
    assert not list(cache.glob("*.tmp"))  # compiled under a temporary name, then renamed
    load_c_library(source)
    assert counting_compiler() == 1  # cached: not compiled again
    source.write_text(ADD + "int twice(int a) { return 2 * a; }\n")
    assert load_c_library(source).twice(21) == 42
    assert counting_compiler() == 2 and len(list(cache.glob("adder-*.so"))) == 2  # a changed source: new key


def test_a_source_that_does_not_compile_names_the_file_and_the_error(cache, tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("int broken(void) { return undeclared_name; }\n")
    with pytest.raises(NativeBuildError, match=r"(?s)broken\.c.*failed.*undeclared_name"):
        load_c_library(source)
    assert not list(cache.glob("*"))  # neither a library nor a temporary file is left behind


def test_a_missing_compiler_is_a_clear_error(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    source = tmp_path / "adder.c"
    source.write_text(ADD)
    with pytest.raises(NativeBuildError, match=r"adder\.c: cannot run the C compiler .*no-such-cc.*\$CC"):
        load_c_library(source)
    assert os.listdir(cache) == []
