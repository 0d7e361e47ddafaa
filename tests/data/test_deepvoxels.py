"""DeepVoxels: synthetic writer -> reader round trip, intrinsics rescale, near/far rule, bad inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.deepvoxels import list_deepvoxels_scenes, read_deepvoxels_scene
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import write_image
from multiview.synthetic.writers import deepvoxels as writer
from tests.data.test_nerf_synthetic import nearest_view_pairs
from tests.reprojection import assert_reprojection_consistent

HEIGHT, WIDTH, NUM_VIEWS = 64, 80, 12  # splits 8 train / 2 validation / 2 test
INTRINSICS_512 = "525.0 256.0 256.0 0.\n0. 0. 0.\n0.05\n1.\n512 512\n"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("dv") / "deepvoxels"
    return root, writer.write(root, 2, NUM_VIEWS, HEIGHT, WIDTH, seed=21, scene_names=("cube", "vase"))


@pytest.fixture
def copy(written, tmp_path):
    """A private copy of the written root; returns (root, train folder of "vase")."""
    root = shutil.copytree(written[0], tmp_path / "deepvoxels")
    return root, root / "train" / "vase"


def _hand_made_scene(root, pose_text, intrinsics_text=INTRINSICS_512):
    """One train view of scene "s" with a 48x64 image; returns the view the reader makes of it."""
    scene_dir = root / "train" / "s"
    write_image(scene_dir / "rgb" / "000000.png", np.zeros((48, 64, 3), np.uint8))
    (scene_dir / "pose").mkdir()
    (scene_dir / "pose" / "000000.txt").write_text(pose_text)
    (scene_dir / "intrinsics.txt").write_text(intrinsics_text)
    return read_deepvoxels_scene(root, "s", splits=("train",)).views[0]


def test_round_trip_cameras_images_and_splits(written):
    root, scenes = written
    assert list_deepvoxels_scenes(root) == ["cube", "vase"]
    for truth in scenes:
        scene = read_deepvoxels_scene(root, truth.name, testskip=1)
        np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)
        assert scene.splits == {"train": list(range(8)), "validation": [8, 9], "test": [10, 11]}
        names = ["train/000007", "validation/000000", "validation/000001", "test/000000"]
        assert [v.name for v in scene.views[7:11]] == names
        assert scene.meta["source_split"] == "train"
        for view, image in zip(scene.views, truth.images):
            assert (view.height, view.width) == (HEIGHT, WIDTH)
            assert np.abs(load_image(view) - image).max() <= 0.5 / 255 + 1e-6


def test_intrinsics_written_for_512_are_rescaled(written):
    """The writer states f, cx, cy for 512x512 while the PNGs are 64x80: the reader must rescale them."""
    root, scenes = written
    lines = (root / "test" / "vase" / "intrinsics.txt").read_text().splitlines()
    assert lines[4].split() == ["512", "512"]
    assert not np.isclose(float(lines[0].split()[0]), scenes[1].K[0, 0, 0])


def test_intrinsics_rescale_known_answer(tmp_path):
    view = _hand_made_scene(tmp_path, " ".join(map(str, np.eye(4).ravel())))
    f = 525.0 * 48 / 512
    expected = [[f, 0, 256 / 512 * 64], [0, f, 256 / 512 * 48], [0, 0, 1]]
    np.testing.assert_allclose(view.K, expected, atol=1e-12)


def test_pose_files_are_camera_to_world_unless_flagged(tmp_path):
    c2w = np.array([[0.0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])
    four_lines = "\n".join(" ".join(map(str, row)) for row in c2w)
    view = _hand_made_scene(tmp_path / "a", four_lines)
    np.testing.assert_allclose(view.cam_from_world, invert_rigid(c2w), atol=1e-12)
    assert (view.near, view.far) == pytest.approx((-3.0 - 0.8, -3.0 + 0.8))
    flagged = _hand_made_scene(tmp_path / "b", four_lines, INTRINSICS_512 + "1\n")
    np.testing.assert_allclose(flagged.cam_from_world, c2w, atol=1e-12)


def test_world2cam_writer_round_trip(tmp_path):
    truth = writer.write(tmp_path, 1, 4, 16, 16, seed=0, world2cam=True)[0]
    scene = read_deepvoxels_scene(tmp_path, truth.name)
    np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)


def test_near_far_rule_and_written_depths(written):
    root, scenes = written
    for truth, margin in zip(scenes, (1.0, 0.8)):  # "cube" is widened to ± 1.0
        scene = read_deepvoxels_scene(root, truth.name)
        for view, depth in zip(scene.views, truth.depths):
            origin_depth = np.linalg.inv(view.world_from_cam)[2, 3]
            assert (view.near, view.far) == pytest.approx((origin_depth - margin, origin_depth + margin))
            z = depth[depth > 0]
            assert view.near > 0 and view.near <= z.min() and z.max() <= view.far


def test_testskip_subsamples_non_train_splits(tmp_path):
    truth = writer.write(tmp_path, 1, 20, 16, 16, seed=0, split_fractions=(2, 3, 15))[0]
    scene = read_deepvoxels_scene(tmp_path, truth.name)  # testskip 10
    assert scene.splits == {"train": [0, 1], "validation": [2], "test": [5, 15]}
    assert len(scene.views) == 20


def test_reprojection_convention(written):
    root, scenes = written
    scene = read_deepvoxels_scene(root, scenes[1].name)
    assert_reprojection_consistent(scene, dict(enumerate(scenes[1].depths)), pairs=nearest_view_pairs(scene))


def test_missing_image(copy):
    root, scene_dir = copy
    (scene_dir / "rgb" / "000002.png").unlink()
    pattern = r"rgb/000002\.png: image file is missing for pose file 000002\.txt"
    with pytest.raises(DataFormatError, match=pattern):
        read_deepvoxels_scene(root, "vase")


def test_pose_count_mismatch(copy):
    root, scene_dir = copy
    (scene_dir / "pose" / "000005.txt").unlink()
    pattern = r"000005\.txt: pose file is missing .*8 images .* 7 pose files"
    with pytest.raises(DataFormatError, match=pattern):
        read_deepvoxels_scene(root, "vase")


def test_truncated_image(copy):
    root, scene_dir = copy
    path = scene_dir / "rgb" / "000001.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"000001\.png: image file is truncated"):
        read_deepvoxels_scene(root, "vase")


@pytest.mark.parametrize("text, message", [("nan " + "0 " * 15, "non-finite"),
                                           ("1 2 3", r"16 numbers \(a 4x4 matrix\), got 3"),
                                           ("1 0 0 x", "malformed")])
def test_bad_pose_file(copy, text, message):
    root, scene_dir = copy
    (scene_dir / "pose" / "000004.txt").write_text(text)
    with pytest.raises(DataFormatError, match=rf"000004\.txt: pose.*{message}"):
        read_deepvoxels_scene(root, "vase")


@pytest.mark.parametrize("text, message", [
    (None, "intrinsics file is missing"),
    ("525 256 256 0\n0 0 0\n0.05\n1\n", "at least 5 lines"),
    ("525 256\n0 0 0\n0.05\n1\n512 512\n", r"line 1 \(f cx cy\)"),
    ("525 256 256\n0 0 0\n0.05\n1\n512 x\n", r"line 5 \(height width\)"),
])
def test_bad_intrinsics_file(copy, text, message):
    root, _ = copy
    path = root / "validation" / "vase" / "intrinsics.txt"
    path.unlink() if text is None else path.write_text(text)
    with pytest.raises(DataFormatError, match=rf"intrinsics\.txt: .*{message}"):
        read_deepvoxels_scene(root, "vase")


def test_missing_split_folder(copy):
    root, _ = copy
    shutil.rmtree(root / "test" / "vase")
    with pytest.raises(DataFormatError, match=r"test/vase: scene folder of split 'test' is missing"):
        read_deepvoxels_scene(root, "vase")
