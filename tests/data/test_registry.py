"""Every dataset name opens the layout the synthetic CLI writes, and loads a usable Scene."""

import pytest

from multiview.data.registry import DATASETS, list_scene_handles, parse_dataset_entry
from multiview.synthetic.__main__ import write_format

# synthetic CLI format -> (registry entry relative to the synthetic root, split)
ENTRIES = {
    "mvimgnet": ("mvimgnet@mvimgnet", "all"),
    "llff": ("llff_test@llff", "train"),
    "ibrnet_collected": ("ibrnet_collected@ibrnet_collected", "train"),
    "real_iconic_noface": ("llff@real_iconic_noface", "train"),
    "nerf_synthetic": ("nerf_synthetic@nerf_synthetic", "train"),
    "deepvoxels": ("deepvoxels@deepvoxels", "train"),
    "co3d": ("co3d@co3d", "train"),
    "co3d_v1": ("co3d@co3d_v1", "train"),
    "dtu_train": ("dtu@dtu_train", "train"),
    "realestate": ("realestate@realestate", "train"),
    "spaces": ("spaces@spaces", "train"),
}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    for name in [*ENTRIES, "google_scanned"]:
        write_format(name, root / name, 1, 8, (32, 40), seed=0)
    return root


@pytest.mark.parametrize("fmt", sorted(ENTRIES))
def test_every_dataset_name_loads_its_synthetic_layout(synthetic_root, fmt):
    entry, split = ENTRIES[fmt]
    name, root = parse_dataset_entry(entry, synthetic_root)
    handles = list_scene_handles(name, root, split)
    assert len(handles) == 1 and handles[0].dataset == name
    scene = handles[0].load()
    assert len(scene.views) >= 8 // 2  # LLFF-type and DTU layouts keep every view; Blender splits them
    assert all(0 < view.near < view.far for view in scene.views)


def test_google_scanned_keeps_ibrnet_minimum_view_rule(synthetic_root):
    with pytest.raises(ValueError, match="no train scenes"):
        list_scene_handles("google_scanned", synthetic_root / "google_scanned", "train")


def test_unknown_names_and_scenes_are_clear_errors(synthetic_root):
    with pytest.raises(ValueError, match="unknown dataset 'blender'"):
        parse_dataset_entry("blender", synthetic_root)
    with pytest.raises(ValueError, match=r"scenes \['nope'\] not found"):
        list_scene_handles("llff_test", synthetic_root / "llff", "train", ["nope"])
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        list_scene_handles("llff_test", synthetic_root / "missing_folder", "train")
    assert set(DATASETS) >= {"mvimgnet", "llff", "llff_test", "ibrnet_collected", "nerf_synthetic", "deepvoxels",
                             "co3d", "dtu", "google_scanned", "realestate", "spaces"}
