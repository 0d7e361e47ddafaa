"""NeRF-synthetic (Blender): synthetic writer -> reader round trip, conventions, compositing, bad inputs."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.nerf_synthetic import list_nerf_synthetic_scenes, read_nerf_synthetic_scene
from multiview.data.records import Scene
from multiview.data.view_selection import nearest_views
from multiview.io.images import write_image
from multiview.synthetic.writers import nerf_synthetic as writer
from tests.reprojection import assert_reprojection_consistent

HEIGHT, WIDTH, NUM_VIEWS = 64, 80, 12  # splits 8 train / 2 val / 2 test


def nearest_view_pairs(scene: Scene) -> list[tuple[int, int]]:
    """Each view with its nearest other view by viewing angle around the origin (object-centric pairs)."""
    cams = scene.stack_cam_from_world()
    return [(i, int(nearest_views(cams[i], cams, 1, "vector", exclude=i)[0])) for i in range(len(cams))]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("blender") / "nerf_synthetic"
    return root, writer.write(root, 2, NUM_VIEWS, HEIGHT, WIDTH, seed=11)


@pytest.fixture
def scene_copy(written, tmp_path):
    """A private copy of the first written scene folder."""
    root, scenes = written
    return shutil.copytree(scenes[0].root, tmp_path / scenes[0].name)


def _edit_json(path, edit):
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_round_trip_cameras_images_and_splits(written):
    root, scenes = written
    assert list_nerf_synthetic_scenes(root) == [s.root for s in scenes]
    for truth in scenes:
        scene = read_nerf_synthetic_scene(truth.root, testskip=1)
        np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)
        assert scene.splits == {"train": list(range(8)), "val": [8, 9], "test": [10, 11]}
        assert [v.name for v in scene.views[7:11]] == ["train/r_7", "val/r_0", "val/r_1", "test/r_0"]
        for view, image in zip(scene.views, truth.images):
            assert (view.height, view.width, view.near, view.far) == (HEIGHT, WIDTH, 2, 6)
            assert view.background == "white"
            assert np.abs(load_image(view) - image).max() <= 0.5 / 255 + 1e-6


def test_intrinsics_follow_camera_angle_x_with_half_pixel_centre(written):
    view = read_nerf_synthetic_scene(written[1][0].root).views[0]
    focal = 0.5 * WIDTH / math.tan(0.5 * writer.RELEASE_CAMERA_ANGLE_X)
    np.testing.assert_allclose(view.K, [[focal, 0, WIDTH / 2], [0, focal, HEIGHT / 2], [0, 0, 1]], atol=1e-12)


def test_opengl_matrix_is_converted_to_opencv(scene_copy):
    """An identity Blender camera (looking down world −z, y up) is OpenCV cam_from_world diag(1, −1, −1)."""
    def set_identity(meta):
        meta["frames"][0]["transform_matrix"] = np.eye(4).tolist()

    _edit_json(scene_copy / "transforms_train.json", set_identity)
    view = read_nerf_synthetic_scene(scene_copy).views[0]
    np.testing.assert_array_equal(view.cam_from_world, np.diag([1.0, -1.0, -1.0, 1.0]))


def test_written_depths_lie_within_fixed_near_far(written):
    for truth in written[1]:
        depths = np.concatenate([d[d > 0] for d in truth.depths])
        assert 2.0 < depths.min() and depths.max() < 6.0


def test_reprojection_convention(written):
    truth = written[1][0]
    scene = read_nerf_synthetic_scene(truth.root)
    assert_reprojection_consistent(scene, dict(enumerate(truth.depths)), pairs=nearest_view_pairs(scene))


def test_rgba_composited_on_white_or_alpha_dropped(scene_copy):
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[0, 2, 3] = 0, 128, 255
    write_image(scene_copy / "train" / "r_0.png", rgba)
    white = load_image(read_nerf_synthetic_scene(scene_copy).views[0])
    rgb = np.array([200, 100, 50]) / 255
    np.testing.assert_allclose(white[0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(white[0, 1], 128 / 255 * rgb + (1 - 128 / 255), atol=1e-6)
    np.testing.assert_allclose(white[0, 2], rgb, atol=1e-6)
    dropped = load_image(read_nerf_synthetic_scene(scene_copy, background=None).views[0])
    np.testing.assert_allclose(dropped[0, 0], rgb, atol=1e-6)


def test_testskip_keeps_every_kth_evaluation_frame(tmp_path):
    truth = writer.write(tmp_path, 1, 20, 16, 16, seed=0, split_fractions=(2, 1, 17))[0]
    scene = read_nerf_synthetic_scene(truth.root)
    assert len(scene.views) == 20
    assert scene.splits["test"] == list(range(3, 20))[::8] and len(scene.splits["test"]) == math.ceil(17 / 8)
    assert scene.splits["val"] == [2] and scene.splits["train"] == [0, 1]
    assert len(read_nerf_synthetic_scene(truth.root, testskip=3).splits["test"]) == math.ceil(17 / 3)


def test_missing_transforms_file(scene_copy):
    (scene_copy / "transforms_val.json").unlink()
    with pytest.raises(DataFormatError, match=r"transforms_val\.json: transforms file is missing"):
        read_nerf_synthetic_scene(scene_copy)


def test_malformed_json(scene_copy):
    path = scene_copy / "transforms_test.json"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(DataFormatError, match=r"transforms_test\.json: malformed JSON"):
        read_nerf_synthetic_scene(scene_copy)


@pytest.mark.parametrize("key, message", [
    ("camera_angle_x", "missing key 'camera_angle_x'"),
    ("transform_matrix", r"frames\[1\] is missing key 'transform_matrix'"),
])
def test_missing_key_names_json_and_key(scene_copy, key, message):
    def drop(meta):
        (meta if key in meta else meta["frames"][1]).pop(key)

    _edit_json(scene_copy / "transforms_train.json", drop)
    with pytest.raises(DataFormatError, match=rf"transforms_train\.json: {message}"):
        read_nerf_synthetic_scene(scene_copy)


def test_empty_frames(scene_copy):
    _edit_json(scene_copy / "transforms_val.json", lambda meta: meta.update(frames=[]))
    with pytest.raises(DataFormatError, match=r"transforms_val\.json: 'frames' must be a non-empty list"):
        read_nerf_synthetic_scene(scene_copy)


@pytest.mark.parametrize("value, message", [(float("nan"), "non-finite"), (2.0, "not a rigid transform")])
def test_bad_transform_matrix(scene_copy, value, message):
    def corrupt(meta):
        meta["frames"][0]["transform_matrix"][1][1] = value

    _edit_json(scene_copy / "transforms_test.json", corrupt)
    pattern = rf"transforms_test\.json: frames\[0\] 'transform_matrix'.*{message}"
    with pytest.raises(DataFormatError, match=pattern):
        read_nerf_synthetic_scene(scene_copy)


def test_missing_image(scene_copy):
    (scene_copy / "val" / "r_1.png").unlink()
    with pytest.raises(DataFormatError, match=r"r_1\.png: image file is missing"):
        read_nerf_synthetic_scene(scene_copy)


def test_truncated_image(scene_copy):
    path = scene_copy / "train" / "r_3.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"r_3\.png: image file is truncated"):
        read_nerf_synthetic_scene(scene_copy)
