"""DTU (MVSNet layouts): scan lists, synthetic round trips, conventions, 1-based image names, bad inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_depth, load_image, load_mask
from multiview.data.readers.dtu import (
    list_dtu_train_scans,
    read_dtu_scan_list,
    read_dtu_test_scan,
    read_dtu_train_scan,
)
from multiview.geometry.intrinsics import resize_intrinsics
from multiview.io.images import read_image
from multiview.synthetic.writers import dtu as dtu_writer
from tests.reprojection import assert_reprojection_consistent

TRAIN_SCANS = [2, 6]  # the first two scans of the official train list (the writer's default)
NUM_VIEWS = 6
HEIGHT, WIDTH = 96, 128  # depth maps 24x32
QUANTISATION = 0.5 / 255 + 1e-6


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu_train")
    return root, dtu_writer.write(root, 2, NUM_VIEWS, HEIGHT, WIDTH, seed=3, layout="train")


@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu_test")
    return root, dtu_writer.write(root, 1, 4, 64, 80, seed=5, layout="test", scans=[118])


@pytest.fixture
def train_copy(train_data, tmp_path):
    """A private copy of the first synthetic scan (with the shared Cameras/) to damage."""
    root = tmp_path / "dtu"
    shutil.copytree(train_data[0] / "Cameras", root / "Cameras")
    for folder in ("Rectified", "Depths"):
        shutil.copytree(train_data[0] / folder / "scan2_train", root / folder / "scan2_train")
    return root


# ---------------------------------------------------------------------------------------------------------
# Scan lists


def test_scan_lists_are_the_official_ones():
    train, val, test = (read_dtu_scan_list(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (79, 18, 22)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert test == [1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118]
    assert val == [3, 5, 17, 21, 28, 35, 37, 38, 40, 43, 56, 59, 66, 67, 82, 86, 106, 117]
    assert train[:5] == [2, 6, 7, 8, 14] and train[-3:] == [126, 127, 128]
    assert sorted(train + val + test) == [
        n for n in range(1, 129) if n not in (25, 26, 27, 54, 73, 78, 79, 80, 81)
    ]
    with pytest.raises(ValueError, match="split"):
        read_dtu_scan_list("training")


def test_list_train_scans(train_data):
    root, _ = train_data
    with pytest.raises(DataFormatError, match=r"77 scans of the DTU train list are missing .*scan7 scan8"):
        list_dtu_train_scans(root, "train")
    listing = list_dtu_train_scans(root, "train", allow_missing=True)
    assert listing.present == TRAIN_SCANS and len(listing.missing) == 77 and 2 not in listing.missing


# ---------------------------------------------------------------------------------------------------------
# Training layout


def test_train_round_trip(train_data):
    root, written = train_data
    for ws, scan in zip(written, TRAIN_SCANS):
        scene = read_dtu_train_scan(root, scan)
        assert (scene.name, scene.dataset, len(scene)) == (f"scan{scan}", "dtu_train", NUM_VIEWS)
        assert scene.splits == {"train": list(range(NUM_VIEWS))} and scene.meta["scan"] == scan
        np.testing.assert_allclose(scene.stack_K(), ws.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), ws.cam_from_world, atol=1e-6)
        for vid, view in enumerate(scene.views):
            assert (view.height, view.width, view.name) == (HEIGHT, WIDTH, f"{vid:08d}")
            np.testing.assert_allclose(
                view.extra["K_depth"], resize_intrinsics(ws.K[vid], (HEIGHT, WIDTH), (24, 32)), atol=1e-9
            )
            assert (view.near, view.far) == (425.0, 425.0 + 2.5 * 191)
            assert (view.extra["depth_min"], view.extra["depth_interval"], view.extra["depth_num"]) == (
                425.0,
                2.5,
                192,
            )
            np.testing.assert_array_equal(load_depth(view), ws.depths[vid])  # PFM float32, exact
            np.testing.assert_array_equal(load_mask(view) > 0.5, ws.masks[vid])
            assert np.abs(load_image(view) - ws.images[vid]).max() <= QUANTISATION


def test_train_cameras_are_shared_and_depths_in_dtu_range(train_data):
    _, written = train_data
    np.testing.assert_array_equal(written[0].cam_from_world, written[1].cam_from_world)
    assert not np.allclose(written[0].images[0], written[1].images[0])  # different scenes
    for ws in written:
        valid = np.concatenate([d[d > 0] for d in ws.depths])
        assert valid.min() >= 425.0 and valid.max() <= 902.5 and valid.size > 0.5 * NUM_VIEWS * 24 * 32


def test_train_image_indices_are_one_based(train_data):
    """View vid is rect_{vid+1:03d} and shows the render of camera vid (not of a neighbour)."""
    root, written = train_data
    scene = read_dtu_train_scan(root, 2)
    images = [load_image(v) for v in scene.views]
    for vid, view in enumerate(scene.views):
        assert view.image_path.name == f"rect_{vid + 1:03d}_3_r5000.png"
        assert view.depth_path.name == f"depth_map_{vid:04d}.pfm"
        assert view.mask_path.name == f"depth_visual_{vid:04d}.png"
        errors = [np.abs(image - written[0].images[vid]).max() for image in images]
        assert int(np.argmin(errors)) == vid and sorted(errors)[1] > 0.1


def test_train_zero_based_image_names_are_rejected(train_copy):
    image_dir = train_copy / "Rectified" / "scan2_train"
    for path in sorted(image_dir.glob("rect_*.png")):  # rename 001..006 -> 000..005
        vid, light = int(path.name[5:8]), path.name[9]
        path.rename(image_dir / f"rect_{vid - 1:03d}_{light}_r5000.png.tmp")
    for path in image_dir.glob("*.tmp"):
        path.rename(path.with_suffix(""))
    with pytest.raises(
        DataFormatError, match=r"scan2_train: 7 image files have no view in pair.txt.*rect_000_0"
    ):
        read_dtu_train_scan(train_copy, 2)


def test_train_lights(train_data):
    root, written = train_data
    scene = read_dtu_train_scan(root, 2)
    view = scene.views[1]
    paths = view.extra["light_paths"]
    assert [p.name for p in paths] == [f"rect_002_{light}_r5000.png" for light in range(7)]
    images = [read_image(p) for p in paths]
    for a in range(7):
        for b in range(a + 1, 7):
            assert np.abs(images[a] - images[b]).mean() > 0.01, (a, b)
    assert np.abs(images[3] - written[0].images[1]).max() <= QUANTISATION  # light 3 = the unmodified render
    dark = read_dtu_train_scan(root, 2, light=0).views[1]
    assert dark.image_path == paths[0] and load_image(dark).mean() < images[3].mean()
    with pytest.raises(ValueError, match="light"):
        read_dtu_train_scan(root, 2, light=7)


def test_train_pairs(train_data):
    root, _ = train_data
    scene = read_dtu_train_scan(root, 6)
    pairs = scene.meta["pairs"]
    assert sorted(pairs) == list(range(NUM_VIEWS))
    for ref, sources in pairs.items():
        ids = [s for s, _ in sources]
        scores = [score for _, score in sources]
        assert len(ids) == NUM_VIEWS - 1 and ref not in ids and scores == sorted(scores, reverse=True)


def test_train_reprojection_convention(train_data):
    root, _ = train_data
    scene = read_dtu_train_scan(root, 2)
    depths = {i: load_depth(view) for i, view in enumerate(scene.views)}  # 1/4-resolution PFMs
    assert_reprojection_consistent(scene, depths, pairs=[(0, 1), (1, 0), (0, 3), (4, 5), (5, 2)])


# ---------------------------------------------------------------------------------------------------------
# Test layout


def test_test_layout_round_trip_and_convention(test_data):
    root, (ws,) = test_data
    scene = read_dtu_test_scan(root, 118)
    assert (scene.name, scene.dataset, scene.root, len(scene)) == ("scan118", "dtu_test", root / "scan118", 4)
    assert scene.splits == {"test": [0, 1, 2, 3]}
    np.testing.assert_allclose(scene.stack_K(), ws.K, atol=1e-6)
    np.testing.assert_allclose(scene.stack_cam_from_world(), ws.cam_from_world, atol=1e-6)
    for vid, view in enumerate(scene.views):
        assert view.image_path.name == f"{vid:08d}.jpg" and view.depth_path is None
        assert np.abs(load_image(view) - ws.images[vid]).mean() < 0.02  # JPEG
    assert sorted(scene.meta["pairs"]) == [0, 1, 2, 3]
    assert_reprojection_consistent(scene, dict(enumerate(ws.depths)), pairs=[(0, 1), (1, 2), (3, 0)])


def test_test_layout_bad_inputs(test_data, tmp_path):
    scan_dir = tmp_path / "scan118"
    shutil.copytree(test_data[0] / "scan118", scan_dir)
    image = scan_dir / "images" / "00000002.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"00000002\.jpg: image file is truncated"):
        read_dtu_test_scan(tmp_path, 118)
    image.unlink()
    with pytest.raises(DataFormatError, match=r"00000002\.jpg: image file is missing"):
        read_dtu_test_scan(tmp_path, 118)
    (scan_dir / "images" / "00000002.jpg").write_bytes(data)
    (scan_dir / "images" / "00000004.jpg").write_bytes(data)
    with pytest.raises(DataFormatError, match=r"images: 1 image files have no view in pair.txt"):
        read_dtu_test_scan(tmp_path, 118)
    with pytest.raises(DataFormatError, match=r"scan9: scan folder is missing"):
        read_dtu_test_scan(tmp_path, 9)


# ---------------------------------------------------------------------------------------------------------
# Bad inputs (training layout)


def _replace_in(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


def test_missing_image(train_copy):
    (train_copy / "Rectified" / "scan2_train" / "rect_003_5_r5000.png").unlink()
    with pytest.raises(DataFormatError, match=r"rect_003_5_r5000\.png: image file is missing"):
        read_dtu_train_scan(train_copy, 2)


def test_truncated_png(train_copy):
    path = train_copy / "Rectified" / "scan2_train" / "rect_004_3_r5000.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"rect_004_3_r5000\.png: image file is truncated"):
        read_dtu_train_scan(train_copy, 2)
    other = train_copy / "Rectified" / "scan2_train" / "rect_004_1_r5000.png"  # not checked at read time
    other.write_bytes(other.read_bytes()[: other.stat().st_size // 2])
    view = read_dtu_train_scan(train_copy, 2, light=0).views[3]
    with pytest.raises(DataFormatError, match=r"rect_004_1_r5000\.png: cannot decode image"):
        read_image(view.extra["light_paths"][1])


def test_truncated_pfm(train_copy):
    path = train_copy / "Depths" / "scan2_train" / "depth_map_0001.pfm"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match=r"depth_map_0001\.pfm: truncated PFM data"):
        read_dtu_train_scan(train_copy, 2)


def test_missing_depth_and_mask(train_copy):
    (train_copy / "Depths" / "scan2_train" / "depth_visual_0005.png").unlink()
    with pytest.raises(DataFormatError, match=r"depth_visual_0005\.png: depth_visual mask file is missing"):
        read_dtu_train_scan(train_copy, 2)
    (train_copy / "Depths" / "scan2_train" / "depth_map_0000.pfm").unlink()
    with pytest.raises(DataFormatError, match=r"depth_map_0000\.pfm: PFM file is missing"):
        read_dtu_train_scan(train_copy, 2)


def test_nan_in_cam(train_copy):
    path = train_copy / "Cameras" / "train" / "00000002_cam.txt"
    lines = path.read_text().splitlines()
    lines[2] = " ".join(["nan", *lines[2].split()[1:]])
    path.write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match=r"00000002_cam\.txt: line 3: extrinsic entry 4 is nan"):
        read_dtu_train_scan(train_copy, 2)


def test_missing_cam(train_copy):
    (train_copy / "Cameras" / "train" / "00000004_cam.txt").unlink()
    with pytest.raises(DataFormatError, match=r"00000004_cam\.txt: cam\.txt file is missing"):
        read_dtu_train_scan(train_copy, 2)


def test_pose_image_count_mismatch(train_copy):
    extra = train_copy / "Rectified" / "scan2_train" / "rect_007_3_r5000.png"
    shutil.copy(train_copy / "Rectified" / "scan2_train" / "rect_006_3_r5000.png", extra)
    with pytest.raises(
        DataFormatError, match=r"scan2_train: 1 image files have no view in pair.txt .*rect_007_3"
    ):
        read_dtu_train_scan(train_copy, 2)
    extra.unlink()
    cam_dir = train_copy / "Cameras" / "train"
    shutil.copy(cam_dir / "00000000_cam.txt", cam_dir / "00000006_cam.txt")
    with pytest.raises(DataFormatError, match=r"train: 1 cam.txt files have no view in pair.txt"):
        read_dtu_train_scan(train_copy, 2)


def test_pair_count_mismatch(train_copy):
    _replace_in(train_copy / "Cameras" / "pair.txt", f"{NUM_VIEWS}\n", f"{NUM_VIEWS + 1}\n")
    with pytest.raises(DataFormatError, match=r"pair\.txt: header says 7 views but the file has 12"):
        read_dtu_train_scan(train_copy, 2)


def test_missing_scan(train_copy):
    with pytest.raises(DataFormatError, match=r"scan6_train: image folder is missing"):
        read_dtu_train_scan(train_copy, 6)
