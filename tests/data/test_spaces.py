"""Spaces: synthetic writer -> reader round trip, the minus-angle convention, K rescaling, bad inputs."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.spaces import list_spaces_scenes, read_spaces_scene
from multiview.io.images import write_image
from multiview.synthetic.writers import spaces as writer
from tests.reprojection import assert_reprojection_consistent

HEIGHT, WIDTH, NUM_VIEWS, NUM_RIGS = 64, 80, 8, 2  # 4 cameras (the grid's first row) per rig position


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("spaces") / "spaces_dataset"
    return root, writer.write(root, 1, NUM_VIEWS, HEIGHT, WIDTH, seed=5, num_rig_positions=NUM_RIGS)


@pytest.fixture
def scene_dir(written, tmp_path):
    """A private copy of the written scene folder."""
    copy = tmp_path / "scene_000"
    shutil.copytree(written[1][0].root, copy)
    return copy


def _models(scene_dir):
    return json.loads((scene_dir / "models.json").read_text())


def _dump(scene_dir, models):
    (scene_dir / "models.json").write_text(json.dumps(models))


def test_round_trip_cameras_images_and_layout(written):
    root, (truth,) = written
    assert list_spaces_scenes(root) == [truth.root]
    scene = read_spaces_scene(truth.root)
    np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
    np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)
    per_rig = NUM_VIEWS // NUM_RIGS
    assert [v.name for v in scene.views] == [f"cam_{c:02d}/image_{r:03d}" for r in range(NUM_RIGS)
                                             for c in range(per_rig)]
    assert [(v.extra["rig_position"], v.extra["camera"]) for v in scene.views] == [
        (r, c) for r in range(NUM_RIGS) for c in range(per_rig)]
    assert scene.splits == {"train": list(range(NUM_VIEWS))} and scene.meta["rig_positions"] == [0, 1]
    # the writer exercises per-camera heights and a JSON size that differs from the stored image
    assert {v.height for v in scene.views} == {HEIGHT, HEIGHT - 4}
    assert _models(truth.root)[0][0]["width"] == 2 * scene.views[0].width
    for view, image in zip(scene.views, truth.images):
        assert (view.near, view.far, view.image_path.suffix) == (0.7, 100.0, ".JPG")
        error = np.abs(load_image(view) - image)
        # JPEG quality 95 with 4:2:0 chroma subsampling on sharp procedural textures: measured median
        # <= 0.011, mean <= 0.027; another view of the same rig differs by >= 0.08 on average
        assert np.median(error) < 0.015 and error.mean() < 0.035


def test_rig_position_selection(written):
    root, (truth,) = written
    scene = read_spaces_scene(truth.root, rig_positions=[1])
    assert [v.name for v in scene.views] == [f"cam_{c:02d}/image_001" for c in range(NUM_VIEWS // NUM_RIGS)]
    second_rig = truth.cam_from_world[NUM_VIEWS // NUM_RIGS:]
    np.testing.assert_allclose(scene.stack_cam_from_world(), second_rig, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        read_spaces_scene(truth.root, rig_positions=[2])


def test_written_content_lies_within_near_far(written):
    depths = np.concatenate([d[d > 0] for d in written[1][0].depths])
    assert 0.7 < depths.min() and depths.max() < 100.0


def test_reprojection_convention(written):
    """Within a rig and across rig positions; includes camera 0, whose K the reader rescales."""
    _, (truth,) = written
    scene = read_spaces_scene(truth.root)
    pairs = [(0, 1), (1, 2), (0, 4), (2, 7)]
    assert_reprojection_consistent(scene, dict(enumerate(truth.depths)), pairs=pairs)


def _hand_written_scene(scene_dir, camera, image_hw):
    write_image(scene_dir / "cam_00" / "image_000.JPG", np.zeros((*image_hw, 3), np.uint8))
    _dump(scene_dir, [[{"relative_path": "cam_00/image_000.JPG", **camera}]])
    return read_spaces_scene(scene_dir).views[0]


def test_minus_angle_known_answer(tmp_path):
    """orientation (0, 0, θ) -> world_from_cam rotation Rz(−θ); fy = focal_length · pixel_aspect_ratio."""
    theta = 0.3
    camera = {"width": 16, "height": 8, "focal_length": 20.0, "pixel_aspect_ratio": 1.5,
              "principal_point": [7.5, 3.5], "position": [1.0, -2.0, 0.5], "orientation": [0.0, 0.0, theta]}
    view = _hand_written_scene(tmp_path, camera, (8, 16))
    c, s = math.cos(theta), math.sin(theta)
    Rz_minus_theta = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(view.world_from_cam[:3, :3], Rz_minus_theta, atol=1e-12)
    np.testing.assert_allclose(view.camera_center, [1.0, -2.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(view.K, [[20.0, 0.0, 7.5], [0.0, 30.0, 3.5], [0.0, 0.0, 1.0]])


def test_intrinsics_rescaled_to_the_stored_image(tmp_path):
    """JSON says 32x16, the image is 16x8: f halves, (c + 0.5) halves (pixel centres at integers)."""
    camera = {"width": 32, "height": 16, "focal_length": 40.0, "pixel_aspect_ratio": 1.0,
              "principal_point": [15.5, 7.5], "position": [0.0, 0.0, 0.0], "orientation": [0.0, 0.0, 0.0]}
    view = _hand_written_scene(tmp_path, camera, (8, 16))
    assert (view.height, view.width) == (8, 16)
    np.testing.assert_allclose(view.K, [[20.0, 0.0, 7.5], [0.0, 20.0, 3.5], [0.0, 0.0, 1.0]])


def test_listing_needs_the_resolution_folder(written):
    root, _ = written
    with pytest.raises(DataFormatError, match=re.escape(str(root / "data" / "400")) + ".*missing"):
        list_spaces_scenes(root, resolution=400)


def _set(rig, cam, key, value):
    def edit(models):
        if value is None:
            del models[rig][cam][key]
        else:
            models[rig][cam][key] = value
        return models
    return edit


@pytest.mark.parametrize("edit, problem", [
    (_set(1, 2, "focal_length", None), "rig position 1, camera 2: missing key(s) ['focal_length']"),
    (_set(0, 1, "orientation", [0.1, float("nan"), 0.2]), "camera 1: 'orientation' must be 3 finite numbers"),
    (_set(0, 0, "position", [0.1, 0.2]), "camera 0: 'position' must be 3 finite numbers"),
    (_set(0, 3, "height", 0), "camera 3: 'height' must be a positive integer"),
    (lambda models: {"rigs": models}, "expected a non-empty JSON list over rig positions, got dict"),
    (lambda models: [models[0], {}], "rig position 1: expected a non-empty list of camera dicts"),
], ids=["missing_key", "nan_orientation", "short_position", "zero_height", "not_a_list", "rig_not_a_list"])
def test_bad_models_json(scene_dir, edit, problem):
    _dump(scene_dir, edit(_models(scene_dir)))
    with pytest.raises(DataFormatError, match=r"models\.json: .*" + re.escape(problem)):
        read_spaces_scene(scene_dir)


def test_invalid_json_and_missing_models(scene_dir):
    models = scene_dir / "models.json"
    models.write_text(models.read_text()[:-10])
    with pytest.raises(DataFormatError, match=r"models\.json: invalid JSON"):
        read_spaces_scene(scene_dir)
    models.unlink()
    with pytest.raises(DataFormatError, match=r"models\.json: models\.json is missing"):
        read_spaces_scene(scene_dir)


def test_missing_image(scene_dir):
    image = scene_dir / "cam_02" / "image_001.JPG"
    image.unlink()
    with pytest.raises(DataFormatError, match=re.escape(str(image)) + ": image file is missing"):
        read_spaces_scene(scene_dir)


def test_image_not_listed_in_models_json(scene_dir):
    """Count mismatch: the JSON lists one camera fewer than there are images."""
    models = _models(scene_dir)
    del models[1][3]
    _dump(scene_dir, models)
    unlisted = scene_dir / "cam_03" / "image_001.JPG"
    with pytest.raises(DataFormatError, match=re.escape(str(unlisted)) + ": image is not listed"):
        read_spaces_scene(scene_dir)


def test_truncated_image(scene_dir):
    image = scene_dir / "cam_01" / "image_000.JPG"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=re.escape(str(image)) + ": image file is truncated"):
        for view in read_spaces_scene(scene_dir).views:
            load_image(view)
