"""Dataset names -> scene lists, so trainers and evaluators open any format by name.

`list_scene_handles(name, root, split)` enumerates a dataset's scenes cheaply; each handle's
`load()` reads one `Scene` on demand (readers validate files when a scene is read). `split` is
"train" for training scenes, "test" for held-out scenes, "all" for every scene; datasets without a
scene-level split return all their scenes and keep their per-view splits inside each Scene.
A dataset is named `NAME` (its default folder under the data root) or `NAME@FOLDER`.
The default folder names under `--data_root` are IBRNet's (`ibrnet.md` §8).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from multiview.data.records import Scene


@dataclass(frozen=True)
class SceneHandle:
    """A scene that can be read: its dataset, its name, and the reader call that loads it."""

    dataset: str
    name: str
    loader: Callable[[], Scene]

    def load(self) -> Scene:
        return self.loader()


@dataclass(frozen=True)
class DatasetSpec:
    """How to enumerate a dataset: default folder, view-selection rule, and a handle lister."""

    folder: str
    selection: str
    list_handles: Callable[[str, Path, str], list[SceneHandle]]


def _mvimgnet(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.mvimgnet import index_mvimgnet, read_mvimgnet_scene

    index = index_mvimgnet(root, split={"train": "train", "test": "val", "all": None}[split])
    return [SceneHandle(name, i.name, functools.partial(read_mvimgnet_scene, i.path)) for i in index.instances]


def _llff_test(name: str, root: Path, split: str) -> list[SceneHandle]:
    """LLFF evaluation scenes (nerf_llff_data): factor 4, every 8th view a test target."""
    from multiview.data.readers.llff import list_llff_scenes, read_llff_scene

    return [SceneHandle(name, d.name, functools.partial(read_llff_scene, d, factor=4)) for d in list_llff_scenes(root)]


def _nerf_synthetic(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.nerf_synthetic import list_nerf_synthetic_scenes, read_nerf_synthetic_scene

    return [SceneHandle(name, d.name, functools.partial(read_nerf_synthetic_scene, d))
            for d in list_nerf_synthetic_scenes(root)]


def _deepvoxels(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.deepvoxels import list_deepvoxels_scenes, read_deepvoxels_scene

    return [SceneHandle(name, s, functools.partial(read_deepvoxels_scene, root, s))
            for s in list_deepvoxels_scenes(root)]


def _google_scanned(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.google_scanned import list_google_scanned, read_google_scanned_scene

    return [SceneHandle(name, d.name, functools.partial(read_google_scanned_scene, d))
            for d in list_google_scanned(root).objects]


def _realestate(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.realestate import list_realestate_sequences, read_realestate_sequence

    folder = "test" if split == "test" else "train"
    return [SceneHandle(name, s, functools.partial(read_realestate_sequence, root, folder, s))
            for s in list_realestate_sequences(root, folder)]


def _spaces(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.spaces import list_spaces_scenes, read_spaces_scene

    return [SceneHandle(name, d.name, functools.partial(read_spaces_scene, d)) for d in list_spaces_scenes(root)]


def _co3d(name: str, root: Path, split: str) -> list[SceneHandle]:
    """Every sequence of every category folder (those holding frame_annotations.jgz), held out every 8th frame."""
    from multiview.data.readers.co3d import read_co3d_category, read_co3d_sequence

    handles = []
    for category_dir in sorted(p.parent for p in root.glob("*/frame_annotations.jgz")):
        index = read_co3d_category(root, category_dir.name)
        for sequence in index.sequence_names:
            loader = functools.partial(read_co3d_sequence, root, category_dir.name, sequence, index=index,
                                       holdout_every=8)
            handles.append(SceneHandle(name, f"{category_dir.name}/{sequence}", loader))
    return handles


def _dtu(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.dtu import list_dtu_train_scans, read_dtu_train_scan

    listing = list_dtu_train_scans(root, "test" if split == "test" else "train", allow_missing=True)
    return [SceneHandle(name, f"scan{s}", functools.partial(read_dtu_train_scan, root, s)) for s in listing.present]


def _llff(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.llff import list_real_iconic_noface

    return [SceneHandle(name, source.name, source.read) for source in list_real_iconic_noface(root)]


def _ibrnet_collected(name: str, root: Path, split: str) -> list[SceneHandle]:
    from multiview.data.readers.llff import list_ibrnet_collected

    return [SceneHandle(name, source.name, source.read) for source in list_ibrnet_collected(root)]


DATASETS: dict[str, DatasetSpec] = {
    "mvimgnet": DatasetSpec("mvimgnet", "vector", _mvimgnet),
    "llff_test": DatasetSpec("nerf_llff_data", "dist", _llff_test),
    "llff": DatasetSpec(".", "dist", _llff),  # <data_root>/real_iconic_noface/<scene>
    "ibrnet_collected": DatasetSpec(".", "dist", _ibrnet_collected),  # <data_root>/ibrnet_collected_{1,2}/
    "nerf_synthetic": DatasetSpec("nerf_synthetic", "vector", _nerf_synthetic),
    "deepvoxels": DatasetSpec("deepvoxels", "vector", _deepvoxels),
    "google_scanned": DatasetSpec("google_scanned_objects", "vector", _google_scanned),
    "realestate": DatasetSpec("RealEstate10K-subset", "dist", _realestate),
    "spaces": DatasetSpec("spaces_dataset", "dist", _spaces),
    "co3d": DatasetSpec("co3d", "vector", _co3d),
    "dtu": DatasetSpec("dtu", "dist", _dtu),
}


SPLITS = ("train", "test", "all")


def parse_dataset_entry(entry: str, data_root: str | Path) -> tuple[str, Path]:
    """'NAME' or 'NAME@FOLDER' -> (name, data_root / folder), the folder defaulting to the dataset's own."""
    name, _, folder = entry.partition("@")
    return name, Path(data_root) / (folder or dataset_spec(name).folder)


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[name]


def list_scene_handles(name: str, root: str | Path, split: str = "train",
                       scenes: list[str] | None = None) -> list[SceneHandle]:
    """Handles of dataset `name` under `root` (the dataset's own folder), optionally restricted to `scenes`."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder for {name!r} not found")
    handles = dataset_spec(name).list_handles(name, root, split)
    if scenes:
        known = {h.name for h in handles}
        unknown = [s for s in scenes if s not in known]
        if unknown:
            raise ValueError(f"{root}: scenes {unknown} not found in dataset {name!r} (found {sorted(known)[:10]})")
        handles = [h for h in handles if h.name in scenes]
    if not handles:
        raise ValueError(f"{root}: no {split} scenes of dataset {name!r} found")
    return handles

