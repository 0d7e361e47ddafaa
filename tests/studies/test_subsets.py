"""MVImgNet subsets for the pretraining studies: nested, seeded, stable; symlink folders the reader indexes."""

from __future__ import annotations

import json

import pytest

from multiview.data.readers.mvimgnet import index_mvimgnet
from multiview.studies.subsets import (
    instance_order,
    nested_subsets,
    subset_size,
    training_instances,
    write_split_file,
    write_symlink_subset,
)

NAMES = [f"{c}/{i:08x}" for c in (3, 17, 203) for i in range(40)]


def test_subsets_are_nested_and_sized():
    sizes = [subset_size(len(NAMES), p) for p in (25, 50, 100)]
    assert sizes == [30, 60, 120]
    subsets = nested_subsets(NAMES, sizes, seed=0)
    for smaller, larger in zip(subsets, subsets[1:]):
        assert set(smaller) < set(larger)
    assert sorted(subsets[-1]) == sorted(NAMES)
    assert all(s == sorted(s) for s in subsets)


def test_subsets_are_seeded_and_stable():
    assert nested_subsets(NAMES, [30], seed=3) == nested_subsets(list(reversed(NAMES)), [30], seed=3)
    assert nested_subsets(NAMES, [30], seed=0) != nested_subsets(NAMES, [30], seed=1)
    # stable: the seeded order of the old instances is unchanged when instances are added
    grown = NAMES + [f"99/{i:08x}" for i in range(20)]
    assert [n for n in instance_order(grown, 0) if n in set(NAMES)] == instance_order(NAMES, 0)
    # a pinned value, so no library version can silently change the subsets
    assert nested_subsets(NAMES, [3], seed=0) == [["17/00000006", "203/0000000d", "203/00000010"]]


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="in \\(0, 100\\]"):
        subset_size(10, 0)
    with pytest.raises(ValueError, match="not in \\[1, 120\\]"):
        nested_subsets(NAMES, [121])
    with pytest.raises(ValueError, match="distinct"):
        instance_order(["1/a", "1/a"])


def test_symlink_subset_is_indexed_as_exactly_the_chosen_instances(tmp_path):
    from multiview.synthetic.__main__ import write_format

    root = tmp_path / "mvimgnet"
    write_format("mvimgnet", root, 5, 4, (32, 32), 0)
    instances = training_instances(root)
    assert len(instances) >= 3
    (chosen,) = nested_subsets(list(instances), [2], seed=0)
    folder = write_symlink_subset(tmp_path / "subset", instances, chosen, root)
    assert {i.name for i in index_mvimgnet(folder, split="train").instances} == set(chosen)
    split_file = write_split_file(tmp_path / "subset.json", chosen)
    assert json.loads(split_file.read_text()) == chosen
    assert {i.name for i in index_mvimgnet(root, split="train", split_file=split_file).instances} == set(chosen)
    write_symlink_subset(tmp_path / "subset", instances, chosen, root)  # idempotent
    with pytest.raises(ValueError, match="holds another subset"):
        write_symlink_subset(tmp_path / "subset", instances, list(instances)[:1], root)
