"""Seeded, nested subsets of MVImgNet instances, written as split files and as folders of symlinks.

Order rule (like `jdacs.fractions` for DTU scans): the candidate instances — the training instances the
trainers would use, `index_mvimgnet(root, split="train")` with the readers' defaults — are put in one
seeded order, ascending sha256 of "mvimgnet_subset/<seed>/<class_id>/<instance_id>", and a subset of n
instances is the first n of that order. Subsets of one seed are therefore nested (25 % ⊂ 50 % ⊂ 100 %),
stable (no library version can change a hash; adding instances never reorders the others), and the same
rule gives "MVImgNet-small": a subset with as many instances as a given CO3D set has sequences (the paper
says only "a random subset of the same scale as CO3D"; counting sequences = videos is our reading).

How the trainers see a subset: neither trainer has a split-file option, so a subset is a folder
`<folder>/<class_id>/<instance_id>` of symlinks to the chosen instance folders (plus the category list),
passed as `train_datasets = [mvimgnet@<absolute folder>]`; `index_mvimgnet` of that folder finds exactly
the chosen instances (their names, hence their hashed train split, are unchanged). The subset is also
written as a split file, a JSON list of "<class_id>/<instance_id>" (`index_mvimgnet(root, split="train",
split_file=...)` reads it), to record and share it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from multiview.data.readers.mvimgnet import CATEGORY_FILE, index_mvimgnet


def instance_order(names: Sequence[str], seed: int = 0) -> list[str]:
    """`names` ("<class_id>/<instance_id>") in the seeded order of the module docstring."""
    def key(name: str) -> bytes:
        return hashlib.sha256(f"mvimgnet_subset/{seed}/{name}".encode()).digest()

    if len(set(names)) != len(names):
        raise ValueError("instance names must be distinct")
    return sorted(names, key=key)


def subset_size(total: int, percent: float) -> int:
    """round(total · percent / 100), at least 1; percent in (0, 100]."""
    if not 0 < percent <= 100:
        raise ValueError(f"a subset percentage must be in (0, 100], got {percent}")
    return max(1, round(total * percent / 100))


def nested_subsets(names: Sequence[str], sizes: Sequence[int], seed: int = 0) -> list[list[str]]:
    """For each size n, the first n names of the seeded order (sorted); nested by construction."""
    order = instance_order(names, seed)
    subsets = []
    for size in sizes:
        if not 1 <= size <= len(order):
            raise ValueError(f"subset size {size} is not in [1, {len(order)}] (the number of instances)")
        subsets.append(sorted(order[:size]))
    return subsets


def training_instances(root: str | Path) -> dict[str, Path]:
    """{"<class_id>/<instance_id>": folder} of the instances the trainers train on under an MVImgNet root."""
    index = index_mvimgnet(root, split="train")
    if not index.instances:
        raise ValueError(f"{root}: no usable MVImgNet training instances found")
    return {instance.name: instance.path for instance in index.instances}


def write_split_file(path: str | Path, names: Sequence[str]) -> Path:
    """A JSON list of "<class_id>/<instance_id>" (the MVImgNet reader's split-file format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sorted(names), indent=1) + "\n")
    return path


def write_symlink_subset(folder: str | Path, instances: dict[str, Path], names: Sequence[str],
                         root: str | Path | None = None) -> Path:
    """Make `folder/<class_id>/<instance_id>` symlinks to the chosen instances (module docstring).

    An existing folder must link exactly the same instances (else ValueError: it belongs to another
    subset); the category list of `root` is linked too when present.
    """
    folder = Path(folder)
    wanted = {name: Path(instances[name]).resolve() for name in names}
    if folder.is_dir():
        present = {f"{p.parent.name}/{p.name}" for p in folder.glob("*/*") if p.is_symlink()}
        if present and present != set(wanted):
            raise ValueError(f"{folder}: holds another subset ({len(present)} instances, want {len(wanted)}); "
                             "delete it or choose another folder")
    for name, target in wanted.items():
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    category = Path(root) / CATEGORY_FILE if root is not None else None
    if category is not None and category.is_file() and not (folder / CATEGORY_FILE).exists():
        (folder / CATEGORY_FILE).symlink_to(category.resolve())
    return folder


def count_co3d_sequences(root: str | Path) -> int:
    """Number of sequences (videos) of a CO3D set: every sequence of every category folder under root."""
    from multiview.data.registry import list_scene_handles

    return len(list_scene_handles("co3d", root, "train"))
