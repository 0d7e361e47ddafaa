"""LLFF readers (nerf_llff_data, real_iconic_noface, ibrnet_collected) vs the synthetic writer and fern."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.llff import (
    list_llff_scenes,
    read_ibrnet_collected,
    read_llff_scene,
    read_real_iconic_noface,
)
from multiview.geometry.transforms import invert_rigid, is_rigid
from multiview.io.images import to_uint8, write_image
from multiview.synthetic.writers import llff as llff_writer
from tests.reprojection import assert_reprojection_consistent

FERN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "llff" / "fern"
NUM_VIEWS, HEIGHT, WIDTH = 17, 48, 64


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("nerf_llff_data")
    (scene,) = llff_writer.write(root, 1, NUM_VIEWS, HEIGHT, WIDTH, seed=3)
    return scene


@pytest.fixture
def scene_copy(written, tmp_path):
    """A private copy of the written scene folder, for tests that break it."""
    return Path(shutil.copytree(written.root, tmp_path / written.root.name))


# --- NeRF/IBRNet's own steps (load_llff_data + parse_llff_pose), written independently of the reader --------


def _normalize(x):
    return x / np.linalg.norm(x)


def _nerf_poses_avg(poses):
    """NeRF `poses_avg` on (N, 3, 4+) OpenGL camera-to-world poses -> (3, 4)."""
    center = poses[:, :3, 3].mean(0)
    z = _normalize(poses[:, :3, 2].sum(0))
    up = poses[:, :3, 1].sum(0)
    x = _normalize(np.cross(up, z))
    y = _normalize(np.cross(z, x))
    return np.stack([x, y, z, center], 1)


def _ibrnet_reference(poses_bounds, factor):
    """(N, 4, 4) OpenCV camera-to-world, (N,) focal, sc, bds exactly as IBRNet's LLFF loaders compute them."""
    poses = poses_bounds[:, :-2].reshape([-1, 3, 5]).transpose([1, 2, 0])
    bds = poses_bounds[:, -2:].transpose([1, 0])
    poses[2, 4, :] = poses[2, 4, :] * 1.0 / factor
    poses = np.concatenate([poses[:, 1:2, :], -poses[:, 0:1, :], poses[:, 2:, :]], 1)
    poses = np.moveaxis(poses, -1, 0).astype(np.float64)
    bds = np.moveaxis(bds, -1, 0)
    sc = 1.0 / (bds.min() * 0.75)
    poses[:, :3, 3] *= sc
    bds = bds * sc
    bottom = np.array([[0, 0, 0, 1.0]])
    c2w = np.concatenate([_nerf_poses_avg(poses), bottom], 0)
    poses_4x4 = np.concatenate([poses[:, :3, :4], np.tile(bottom[None], (len(poses), 1, 1))], 1)
    poses_4x4 = np.linalg.inv(c2w) @ poses_4x4
    c2w_opencv = poses_4x4.copy()
    c2w_opencv[:, :3, 1:3] *= -1  # parse_llff_pose: OpenGL -> OpenCV
    return c2w_opencv, poses[:, 2, 4], sc, bds


# --- round trips --------------------------------------------------------------------------------------------


def test_round_trip_without_normalisation(written):
    scene = read_llff_scene(written.root, recenter=False, bd_factor=None)
    assert scene.name == written.name and len(scene) == NUM_VIEWS
    assert [v.name for v in scene.views] == [f"image{i:03d}" for i in range(NUM_VIEWS)]
    np.testing.assert_allclose(scene.stack_K(), written.K, atol=1e-6)
    np.testing.assert_allclose(scene.stack_cam_from_world(), written.cam_from_world, atol=1e-6)
    assert scene.meta["scale"] == 1.0 and np.array_equal(scene.meta["recenter_transform"], np.eye(4))
    for index in (0, 7, NUM_VIEWS - 1):
        image = load_image(scene.views[index])
        assert image.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(image, to_uint8(written.images[index]) / np.float32(255.0))
        np.testing.assert_allclose(image, written.images[index], atol=0.5 / 255 + 1e-6)


def test_round_trip_with_normalisation(written):
    scene = read_llff_scene(written.root)
    sc, normalized_from_input = scene.meta["scale"], scene.meta["normalized_from_input"]
    assert sc != 1.0 and not np.allclose(scene.meta["recenter_transform"], np.eye(4))
    np.testing.assert_allclose(scene.stack_K(), written.K, atol=1e-6)
    # camera points scale by sc: cam_new(normalized_from_input · X) = sc · cam_written(X)
    expected = np.diag([sc, sc, sc, 1.0]) @ written.cam_from_world
    np.testing.assert_allclose(scene.stack_cam_from_world() @ normalized_from_input, expected, atol=1e-6)
    assert is_rigid(scene.stack_cam_from_world())


def test_full_resolution_images_folder(written):
    """factor=1 reads images/ (JPEG placeholders); hwf describes them, so K is factor × the small focal."""
    scene = read_llff_scene(written.root, factor=1)
    view = scene.views[0]
    assert (view.height, view.width) == (4 * HEIGHT, 4 * WIDTH) and view.image_path.name == "IMG_0000.JPG"
    np.testing.assert_allclose(view.K[0, 0], 4 * written.K[0, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(view.K[:2, 2], [2 * WIDTH, 2 * HEIGHT])
    default = read_llff_scene(written.root)
    np.testing.assert_allclose(scene.stack_cam_from_world(), default.stack_cam_from_world())


def test_reprojection_convention(written):
    scene = read_llff_scene(written.root)
    sc = scene.meta["scale"]
    depths = {i: written.depths[i] * np.float32(sc) for i in (0, 1, 2, 5, 9)}
    assert_reprojection_consistent(scene, depths, pairs=[(0, 1), (1, 2), (5, 9), (2, 0)])


# --- normalisation, near/far, splits ------------------------------------------------------------------------


def test_matches_ibrnet_reference_steps(written):
    raw = np.load(written.root / "poses_bounds.npy")
    c2w_ref, focal_ref, sc_ref, _ = _ibrnet_reference(raw.copy(), factor=4)
    scene = read_llff_scene(written.root)
    np.testing.assert_allclose(np.stack([v.world_from_cam for v in scene.views]), c2w_ref, atol=1e-9)
    np.testing.assert_allclose(scene.stack_K()[:, 0, 0], focal_ref, rtol=1e-12)
    assert scene.meta["scale"] == pytest.approx(sc_ref, rel=1e-12)


def test_recentring_properties(written):
    centred = read_llff_scene(written.root)
    c2w = np.stack([v.world_from_cam for v in centred.views])
    np.testing.assert_allclose(c2w[:, :3, 3].mean(0), 0.0, atol=1e-9)
    c2w_opengl = c2w.copy()
    c2w_opengl[:, :3, 1:3] *= -1
    # the NeRF average pose of the recentred cameras is the identity (OpenGL axes) ...
    np.testing.assert_allclose(_nerf_poses_avg(c2w_opengl), np.eye(4)[:3], atol=1e-9)
    # ... and so, approximately, is the SO(3) mean of their rotations
    u, _, vt = np.linalg.svd(c2w_opengl[:, :3, :3].mean(0))
    np.testing.assert_allclose(u @ vt, np.eye(3), atol=0.05)
    # recentring is rigid: relative poses equal those without it (same rescale)
    plain = read_llff_scene(written.root, recenter=False)
    assert not np.allclose(plain.views[0].cam_from_world, centred.views[0].cam_from_world, atol=1e-3)
    for i, j in [(0, 1), (3, 16)]:
        np.testing.assert_allclose(centred.views[i].cam_from_world @ centred.views[j].world_from_cam,
                                   plain.views[i].cam_from_world @ plain.views[j].world_from_cam, atol=1e-9)


def test_near_far_and_splits(written):
    raw = np.load(written.root / "poses_bounds.npy")
    scene = read_llff_scene(written.root)
    sc = 1.0 / (raw[:, 15:].min() * 0.75)
    assert scene.meta["scale"] == pytest.approx(sc, rel=1e-12)
    for view in scene.views:
        assert view.near == pytest.approx(0.9 / 0.75, rel=1e-12)  # 0.9 · min(bds) · sc
        assert view.far == pytest.approx(1.6 * raw[:, 16].max() * sc, rel=1e-12)
    assert scene.splits == {"test": [0, 8, 16], "train": [i for i in range(NUM_VIEWS) if i not in (0, 8, 16)]}
    np.testing.assert_allclose([v.extra["bounds"] for v in scene.views], raw[:, 15:] * sc, rtol=1e-12)
    assert read_llff_scene(written.root, holdout_every=5).splits["test"] == [0, 5, 10, 15]
    assert read_llff_scene(written.root, holdout_every=None).splits == {"train": list(range(NUM_VIEWS))}
    scaled = read_llff_scene(written.root, near_far_scale=(0.9, 1.5))
    assert scaled.views[0].far == pytest.approx(1.5 * raw[:, 16].max() * sc, rel=1e-12)


# --- IBRNet training-set layouts ----------------------------------------------------------------------------


def test_ibrnet_collected_layout(tmp_path, caplog):
    written = llff_writer.write(tmp_path, 2, 4, 16, 24, seed=5, layout="ibrnet_collected")
    with caplog.at_level(logging.WARNING):
        scenes = read_ibrnet_collected(tmp_path)
    assert [s.name for s in scenes] == ["ibrnet_collected_1/scene000", "ibrnet_collected_2/scene001"]
    assert not caplog.records
    for scene, truth, factor in zip(scenes, written, (2, 8)):
        assert scene.dataset == "ibrnet_collected" and scene.splits == {"train": [0, 1, 2, 3]}
        assert scene.views[0].image_path.parent.name == f"images_{factor}"
        assert (scene.views[0].height, scene.views[0].width) == (16, 24)
        np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
        sc = scene.meta["scale"]
        np.testing.assert_allclose(scene.stack_cam_from_world() @ scene.meta["normalized_from_input"],
                                   np.diag([sc, sc, sc, 1.0]) @ truth.cam_from_world, atol=1e-6)
        raw = np.load(truth.root / "poses_bounds.npy")
        assert scene.views[0].far == pytest.approx(1.5 * raw[:, 16].max() * sc, rel=1e-12)
    shutil.rmtree(tmp_path / "ibrnet_collected_2")
    with caplog.at_level(logging.WARNING):
        assert [s.name for s in read_ibrnet_collected(tmp_path)] == ["ibrnet_collected_1/scene000"]
    assert "ibrnet_collected_2 is missing" in caplog.text
    with pytest.raises(DataFormatError, match="neither ibrnet_collected_1 nor ibrnet_collected_2"):
        read_ibrnet_collected(tmp_path / "ibrnet_collected_1")


def test_real_iconic_noface_excludes_test_overlap(tmp_path, caplog):
    (truth,) = llff_writer.write(tmp_path, 1, 3, 16, 24, seed=6, layout="real_iconic_noface")
    assert truth.root == tmp_path / "real_iconic_noface" / "scene000"
    shutil.copytree(truth.root, tmp_path / "real_iconic_noface" / "data5_lotr")
    with caplog.at_level(logging.WARNING):
        scenes = read_real_iconic_noface(tmp_path)
    assert [s.name for s in scenes] == ["scene000"]
    assert "data5_lotr" in caplog.text and "overlap the LLFF test set" in caplog.text
    assert scenes[0].dataset == "real_iconic_noface"
    assert scenes[0].views[0].image_path.parent.name == "images_4"
    assert scenes[0].views[0].near == pytest.approx(1.2, rel=1e-12)
    assert [p.name for p in list_llff_scenes(tmp_path / "real_iconic_noface")] == ["data5_lotr", "scene000"]


def test_writer_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="fixes the downsizing factor"):
        llff_writer.write(tmp_path, 1, 2, 8, 8, 0, layout="ibrnet_collected", factor=4)
    with pytest.raises(ValueError, match="layout must be one of"):
        llff_writer.write(tmp_path, 1, 2, 8, 8, 0, layout="llff")


# --- bad inputs ---------------------------------------------------------------------------------------------


def _edit_poses(scene_dir: Path, edit):
    path = scene_dir / "poses_bounds.npy"
    np.save(path, edit(np.load(path)))


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan_pose(array):
    array[4, 7] = np.nan
    return array


def _negative_bound(array):
    array[2, 15] = -1.0
    return array


@pytest.mark.parametrize(
    ("breakage", "file_name", "problem"),
    [
        (lambda d: (d / "images_4" / "image005.png").unlink(), "images_4", "16 image files .* 17 poses"),
        (lambda d: _truncate(d / "images_4" / "image005.png"), "image005.png", "truncated"),
        (lambda d: _edit_poses(d, _nan_pose), "poses_bounds.npy", r"non-finite .* rows \[4\]"),
        (lambda d: _edit_poses(d, lambda a: a[:, :15]), "poses_bounds.npy", r"shape \(N, 17\)"),
        (lambda d: _edit_poses(d, _negative_bound), "poses_bounds.npy", "0 < near <= far"),
        (lambda d: shutil.rmtree(d / "images_4"), "images_4", "missing; create it by downsizing images/"),
        (lambda d: (d / "poses_bounds.npy").unlink(), "poses_bounds.npy", "missing"),
        (lambda d: (d / "poses_bounds.npy").write_bytes(b"no npy"), "poses_bounds.npy", "cannot load"),
        (lambda d: write_image(d / "images_4" / "image003.png", np.zeros((10, 12, 3), np.uint8)),
         "image003.png", "all images of a scene must have one size"),
    ],
    ids=["missing_image", "truncated_png", "nan_pose", "wrong_shape", "bad_bounds", "missing_folder",
         "missing_npy", "corrupt_npy", "odd_size"],
)
def test_bad_inputs(scene_copy, breakage, file_name, problem):
    breakage(scene_copy)
    with pytest.raises(DataFormatError, match=f"{file_name}.*: .*{problem}"):
        read_llff_scene(scene_copy)


def test_missing_dataset_folders(tmp_path):
    with pytest.raises(DataFormatError, match="LLFF scene folder is missing"):
        read_llff_scene(tmp_path / "nope")
    with pytest.raises(DataFormatError, match="no LLFF scenes"):
        list_llff_scenes(tmp_path)


# --- real data ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not FERN.is_dir(), reason=f"real LLFF sample {FERN} is absent")
def test_real_fern():
    raw = np.load(FERN / "poses_bounds.npy")
    scene = read_llff_scene(FERN, factor=8)
    assert len(scene) == 20 and scene.views[0].image_path.name == "image000.png"
    assert all((v.width, v.height) == (504, 378) for v in scene.views)
    sc = 1.0 / (raw[:, 15:].min() * 0.75)
    assert scene.views[0].near == pytest.approx(1.2, rel=1e-12)
    assert scene.views[0].near == pytest.approx(0.9 * raw[:, 15].min() * sc, rel=1e-12)
    assert scene.views[0].far == pytest.approx(1.6 * raw[:, 16].max() * sc, rel=1e-12)
    assert scene.splits["test"] == [0, 8, 16] and len(scene.split("train")) == 17
    assert is_rigid(scene.stack_cam_from_world())
    focal = scene.views[0].K[0, 0]
    assert focal == pytest.approx(raw[0, 14] / 8, rel=5e-3)
    np.testing.assert_allclose(scene.views[0].K[:2, 2], [252.0, 189.0])
    c2w_ref, _, _, _ = _ibrnet_reference(raw.copy(), factor=8)
    np.testing.assert_allclose(invert_rigid(scene.stack_cam_from_world()), c2w_ref, atol=1e-6)
