"""DTU fraction lists: sizes, nesting, seed stability, shipped files, list-file reading."""

from __future__ import annotations

import pytest

from jdacs.fractions import (
    FRACTIONS,
    dtu_fraction_scans,
    fraction_list_path,
    read_scan_list_file,
    write_fraction_lists,
)
from multiview.data.errors import DataFormatError
from multiview.data.readers.dtu import read_dtu_scan_list


def test_sizes_and_nesting_for_several_seeds():
    train = set(read_dtu_scan_list("train"))
    for seed in (0, 1, 7):
        subsets = [dtu_fraction_scans(fraction, seed) for fraction in FRACTIONS]
        assert [len(s) for s in subsets] == [4, 12, 20, 79]
        for smaller, larger in zip(subsets, subsets[1:]):
            assert set(smaller) < set(larger)
        assert set(subsets[-1]) == train
        assert all(s == sorted(s) for s in subsets)


def test_stable_under_the_seed_and_different_across_seeds():
    assert dtu_fraction_scans(25, seed=3) == dtu_fraction_scans(25, seed=3)
    assert len({tuple(dtu_fraction_scans(15, seed)) for seed in range(4)}) == 4
    assert dtu_fraction_scans(5, seed=0) == [57, 88, 94, 126]  # the shipped 5 % list; must never drift


def test_shipped_files_match_the_function(tmp_path):
    written = write_fraction_lists(tmp_path, seed=0)
    for fraction, path in zip(FRACTIONS, written):
        shipped = fraction_list_path(fraction)
        assert shipped.read_text() == path.read_text(), f"{shipped} drifted; rerun python -m jdacs.fractions"
        assert read_scan_list_file(shipped) == dtu_fraction_scans(fraction, seed=0)
        assert shipped.read_text().startswith("# ")


def test_list_reader_ignores_comments_and_rejects_junk(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# header\n\n2 6  # inline comment\n7\n")
    assert read_scan_list_file(path) == [2, 6, 7]
    path.write_text("2\nscan6\n")
    with pytest.raises(DataFormatError, match="line 2"):
        read_scan_list_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(DataFormatError, match="no scans"):
        read_scan_list_file(path)
    with pytest.raises(ValueError, match="one of"):
        fraction_list_path(10)
    with pytest.raises(ValueError):
        dtu_fraction_scans(0)
