"""Google Scanned Objects renderings: writer -> reader round trip, near/far rule, listing, bad inputs."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.google_scanned import (
    GSO_MAX_RADIUS,
    google_scanned_near_far,
    list_google_scanned,
    read_google_scanned_scene,
)
from multiview.synthetic.writers import google_scanned as writer
from tests.data.test_nerf_synthetic import nearest_view_pairs
from tests.reprojection import assert_reprojection_consistent

HEIGHT, WIDTH, NUM_VIEWS = 64, 80, 8


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    # 'rgb' and 'png' in the root path: IBRNet's whole-path string replacement would break here
    root = tmp_path_factory.mktemp("rgb_png") / "google_scanned_objects"
    return root, writer.write(root, 2, NUM_VIEWS, HEIGHT, WIDTH, seed=31)


@pytest.fixture
def object_copy(written, tmp_path):
    """A private copy of the first written object folder."""
    return shutil.copytree(written[1][0].root, tmp_path / "rgb_png_obj")


def test_round_trip_cameras_and_images(written):
    for truth in written[1]:
        scene = read_google_scanned_scene(truth.root)
        np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)
        assert [v.name for v in scene.views] == [f"{i:06d}" for i in range(NUM_VIEWS)]
        assert scene.splits == {"train": list(range(NUM_VIEWS))} and scene.name == truth.name
        for view, image in zip(scene.views, truth.images):
            assert (view.height, view.width) == (HEIGHT, WIDTH)
            assert np.abs(load_image(view) - image).max() <= 0.5 / 255 + 1e-6


def test_near_far_formula_known_answer():
    r = 0.5 * np.sqrt(2) * 1.1
    assert GSO_MAX_RADIUS == pytest.approx(0.7778174593)
    at = np.eye(4)
    at[2, 3] = 2.0  # the world origin 2 units in front of the camera
    assert google_scanned_near_far(at) == pytest.approx((2.0 - r, 2.0 + r))
    at[2, 3] = 0.5  # close camera: near clamps at 0.1·d0
    assert google_scanned_near_far(at) == pytest.approx((0.05, 0.5 + r))


def test_reader_near_far_contains_written_depths(written):
    for truth in written[1]:
        for view, depth in zip(read_google_scanned_scene(truth.root).views, truth.depths):
            origin_depth = view.cam_from_world[2, 3]
            assert (view.near, view.far) == pytest.approx((origin_depth - GSO_MAX_RADIUS,
                                                            origin_depth + GSO_MAX_RADIUS))
            z = depth[depth > 0]  # the object lies within 0.9 r of the origin
            assert np.abs(z - origin_depth).max() <= 0.9 * GSO_MAX_RADIUS


def test_reprojection_convention(written):
    truth = written[1][1]
    scene = read_google_scanned_scene(truth.root)
    assert_reprojection_consistent(scene, dict(enumerate(truth.depths)), pairs=nearest_view_pairs(scene))


def test_listing_reports_objects_with_too_few_views(written, tmp_path, caplog):
    root, scenes = written
    assert list_google_scanned(root, min_views=NUM_VIEWS) == ([s.root for s in scenes], [])
    copy = shutil.copytree(root, tmp_path / "gso")
    (copy / scenes[1].name / "rgb" / "000000.png").unlink()
    with caplog.at_level(logging.WARNING):
        objects, skipped = list_google_scanned(copy, min_views=NUM_VIEWS)
    assert objects == [copy / scenes[0].name]
    assert skipped == [(copy / scenes[1].name, NUM_VIEWS - 1)]
    assert scenes[1].name in caplog.text and f"{NUM_VIEWS - 1} views" in caplog.text
    expected = [(copy / s.name, n) for s, n in zip(scenes, (NUM_VIEWS, NUM_VIEWS - 1))]
    assert list_google_scanned(copy)[1] == expected


def test_missing_image(object_copy):
    (object_copy / "rgb" / "000003.png").unlink()
    pattern = r"rgb/000003\.png: image file is missing for pose file 000003\.txt"
    with pytest.raises(DataFormatError, match=pattern):
        read_google_scanned_scene(object_copy)


def test_truncated_image(object_copy):
    path = object_copy / "rgb" / "000002.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"000002\.png: image file is truncated"):
        read_google_scanned_scene(object_copy)


@pytest.mark.parametrize("folder", ["pose", "intrinsics"])
def test_count_mismatch(object_copy, folder):
    (object_copy / folder / "000006.txt").unlink()
    with pytest.raises(DataFormatError, match=rf"{folder}/000006\.txt: {folder} file is missing .*8 images"):
        read_google_scanned_scene(object_copy)


def test_nan_in_pose(object_copy):
    path = object_copy / "pose" / "000001.txt"
    numbers = path.read_text().split()
    path.write_text(" ".join(numbers[:3] + ["nan"] + numbers[4:]))
    with pytest.raises(DataFormatError, match=r"pose/000001\.txt: pose has non-finite values"):
        read_google_scanned_scene(object_copy)


@pytest.mark.parametrize("text, message", [("1 0 0 0 1 0 0 0 1", r"16 numbers \(a flattened 4x4\), got 9"),
                                           ("0 " * 16, "not a pinhole K")])
def test_bad_intrinsics(object_copy, text, message):
    (object_copy / "intrinsics" / "000004.txt").write_text(text)
    with pytest.raises(DataFormatError, match=rf"intrinsics/000004\.txt: intrinsics.*{message}"):
        read_google_scanned_scene(object_copy)
