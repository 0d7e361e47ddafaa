"""RealEstate10K (IBRNet subset layout): synthetic writer -> reader round trip, conventions, bad inputs."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.realestate import list_realestate_sequences, read_realestate_sequence
from multiview.io.images import write_image
from multiview.synthetic.writers import realestate as writer
from tests.reprojection import assert_reprojection_consistent

HEIGHT, WIDTH, NUM_VIEWS = 48, 64, 5


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("re10k") / "RealEstate10K-subset"
    return root, writer.write(root, 2, NUM_VIEWS, HEIGHT, WIDTH, seed=3)


@pytest.fixture
def copy(written, tmp_path):
    """A private copy of the first written sequence: (root, sequence name, camera file, frames folder)."""
    root, scenes = written
    new_root = tmp_path / "RealEstate10K-subset"
    shutil.copytree(root, new_root)
    name = scenes[0].name
    split_dir = new_root / "train"
    return new_root, name, split_dir / "cameras" / f"{name}.txt", split_dir / "frames" / name


def test_round_trip_cameras_images_and_metadata(written):
    root, scenes = written
    assert list_realestate_sequences(root, "train") == sorted(s.name for s in scenes)
    for truth in scenes:
        scene = read_realestate_sequence(root, "train", truth.name)
        np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)
        timestamps = [int(v.name) for v in scene.views]
        assert timestamps == sorted(timestamps) and len(set(timestamps)) == NUM_VIEWS
        assert [v.extra["timestamp_us"] for v in scene.views] == timestamps
        assert [v.image_path.name for v in scene.views] == [f"{t}.png" for t in timestamps]
        assert scene.meta["url"].startswith("https://www.youtube.com/watch?v=")
        assert scene.meta["source_window"] == 32
        assert scene.splits == {"train": list(range(NUM_VIEWS))}
        for view, image in zip(scene.views, truth.images):
            assert (view.height, view.width, view.near, view.far) == (HEIGHT, WIDTH, 1.0, 100.0)
            assert np.abs(load_image(view) - image).max() <= 0.5 / 255 + 1e-6


def test_written_content_lies_within_near_far(written):
    for truth in written[1]:
        depths = np.concatenate([d[d > 0] for d in truth.depths])
        assert 1.0 < depths.min() and depths.max() < 100.0


def test_reprojection_convention(written):
    root, scenes = written
    truth = scenes[0]
    scene = read_realestate_sequence(root, "train", truth.name)
    pairs = [(0, 1), (1, 2), (0, NUM_VIEWS - 1)]
    assert_reprojection_consistent(scene, dict(enumerate(truth.depths)), pairs=pairs)


def test_normalised_intrinsics_known_answer(tmp_path):
    """fx_norm = 0.5 at W = 800 is fx = 400 px; fy, cy scale with H; the 3x4 is row-major world -> camera."""
    root = tmp_path / "RealEstate10K-subset"
    write_image(root / "train" / "frames" / "seq" / "1000.png", np.zeros((450, 800, 3), np.uint8))
    w2c = "0 -1 0 1 1 0 0 2 0 0 1 3"
    (root / "train" / "cameras").mkdir(parents=True)
    url = "https://www.youtube.com/watch?v=abc"
    (root / "train" / "cameras" / "seq.txt").write_text(f"{url}\n1000 0.5 0.8 0.5 0.4 0 0 {w2c}\n")
    view = read_realestate_sequence(root, "train", "seq").views[0]
    np.testing.assert_allclose(view.K, [[400.0, 0.0, 400.0], [0.0, 360.0, 180.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(view.cam_from_world, [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])


def test_frames_are_sorted_by_timestamp_whatever_the_line_order(copy):
    root, name, camera_file, _ = copy
    expected = read_realestate_sequence(root, "train", name)
    url, *lines = camera_file.read_text().splitlines()
    camera_file.write_text("\n".join([url, *reversed(lines)]) + "\n")
    shuffled = read_realestate_sequence(root, "train", name)
    assert [v.name for v in shuffled.views] == [v.name for v in expected.views]
    np.testing.assert_array_equal(shuffled.stack_cam_from_world(), expected.stack_cam_from_world())


def test_sequences_are_folders_of_frames_and_camera_files_without_frames_are_ignored(copy):
    root, name, camera_file, _ = copy
    shutil.copy(camera_file, camera_file.with_name("ffffffffffffffff.txt"))
    assert "ffffffffffffffff" not in list_realestate_sequences(root, "train")
    with pytest.raises(ValueError, match="split"):
        list_realestate_sequences(root, "val")


def _edit_line(index, edit):
    """A camera-file corruption that rewrites line `index` (0 = the URL) with `edit(tokens) -> tokens`."""
    def corrupt(camera_file):
        lines = camera_file.read_text().splitlines()
        lines[index] = " ".join(edit(lines[index].split()))
        camera_file.write_text("\n".join(lines) + "\n")
    return corrupt


def _repeat_first_timestamp(camera_file):
    lines = camera_file.read_text().splitlines()
    lines[2] = " ".join([lines[1].split()[0], *lines[2].split()[1:]])
    camera_file.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("corrupt, problem", [
    (_edit_line(2, lambda tokens: tokens[:-1]), "line 3: expected 19 numbers"),
    (_edit_line(1, lambda tokens: [*tokens[:10], "nan", *tokens[11:]]), "line 2: non-finite"),
    (_edit_line(1, lambda tokens: [*tokens[:3], "0.5x", *tokens[4:]]), "line 2: not a number"),
    (_edit_line(2, lambda tokens: [tokens[0], *tokens]), "line 3: expected 19 numbers"),
    (_edit_line(2, lambda tokens: ["1e6", *tokens[1:]]), "line 3: not a number"),
    (_edit_line(0, lambda tokens: []), "line 1: expected the video URL"),
    (_repeat_first_timestamp, "repeats line 2"),
], ids=["18_numbers", "nan", "garbage", "20_numbers", "float_timestamp", "no_url", "repeated_timestamp"])
def test_bad_camera_file(copy, corrupt, problem):
    root, name, camera_file, _ = copy
    corrupt(camera_file)
    with pytest.raises(DataFormatError, match=re.escape(problem)) as error:
        read_realestate_sequence(root, "train", name)
    assert error.value.path == camera_file


def test_missing_frame(copy):
    root, name, camera_file, frames_dir = copy
    frame = sorted(frames_dir.glob("*.png"))[2]
    frame.unlink()
    with pytest.raises(DataFormatError, match=re.escape(frame.name)) as error:
        read_realestate_sequence(root, "train", name)
    assert "frame is missing (camera on line" in str(error.value) and camera_file.name in str(error.value)


def test_frame_without_camera_line(copy):
    """Count mismatch: one camera line fewer than frames."""
    root, name, camera_file, frames_dir = copy
    lines = camera_file.read_text().splitlines()
    camera_file.write_text("\n".join(lines[:-1]) + "\n")
    orphan = f"{lines[-1].split()[0]}.png"
    with pytest.raises(DataFormatError, match=re.escape(orphan)) as error:
        read_realestate_sequence(root, "train", name)
    assert "frame has no line in" in str(error.value)


def test_missing_camera_file(copy):
    root, name, camera_file, _ = copy
    camera_file.unlink()
    with pytest.raises(DataFormatError, match=re.escape(camera_file.name) + ".*camera file is missing"):
        read_realestate_sequence(root, "train", name)


def test_truncated_frame(copy):
    root, name, _, frames_dir = copy
    frame = sorted(frames_dir.glob("*.png"))[1]
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=re.escape(frame.name) + ": image file is truncated"):
        read_realestate_sequence(root, "train", name)
