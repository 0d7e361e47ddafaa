"""MVSNet cam.txt and pair.txt: round trips, a DTU-style example, malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.geometry.transforms import make_rigid
from multiview.io.mvsnet import MVSNetCamera, read_cam_txt, read_pair_txt, write_cam_txt, write_pair_txt

# Intrinsics and depth line of DTU's Cameras/train/00000000_cam.txt as quoted in jdacs.md §2.1; the
# extrinsic is a DTU-like rigid transform (rows of R orthonormal to the 6 printed digits), in mm.
DTU_STYLE_CAM = """extrinsic
0.970263 0.00747983 0.241939 -191.02
-0.0147429 0.999493 0.0282234 3.28832
-0.241605 -0.030951 0.969881 22.5401
0.0 0.0 0.0 1.0

intrinsic
361.54125 0.0 82.900625
0.0 360.3975 66.383875
0.0 0.0 1.0

425.0 2.5
"""

PAIR_TEXT = """3
0
2 1 2346.41 2 1243.89
1
2 0 2036.53 2 10.5
2
1 1 7.25
"""


def random_camera(seed: int, **depth) -> MVSNetCamera:
    rng = np.random.default_rng(seed)
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    R *= np.sign(np.linalg.det(R))
    K = np.array(
        [
            [rng.uniform(300, 3000), 0.0, rng.uniform(50, 800)],
            [0.0, rng.uniform(300, 3000), rng.uniform(50, 600)],
            [0.0, 0.0, 1.0],
        ]
    )
    return MVSNetCamera(
        make_rigid(R, rng.normal(size=3) * 300), K, rng.uniform(300, 500), rng.uniform(1, 3), **depth
    )


@pytest.mark.parametrize("depth", [{}, {"depth_num": 192}, {"depth_num": 256, "depth_max": 935.3}])
def test_cam_round_trip(tmp_path, depth):
    camera = random_camera(1, **depth)
    path = tmp_path / "00000000_cam.txt"
    write_cam_txt(path, camera)
    back = read_cam_txt(path)
    np.testing.assert_array_equal(back.cam_from_world, camera.cam_from_world)  # full precision
    np.testing.assert_array_equal(back.K, camera.K)
    assert (back.depth_min, back.depth_interval) == (camera.depth_min, camera.depth_interval)
    assert back.depth_num == depth.get("depth_num") and back.depth_max == depth.get("depth_max")
    lines = path.read_text().splitlines()
    assert lines[0] == "extrinsic" and lines[6] == "intrinsic" and len(lines[11].split()) == 2 + len(depth)


def test_dtu_style_cam(tmp_path):
    path = tmp_path / "00000000_cam.txt"
    path.write_text(DTU_STYLE_CAM)
    camera = read_cam_txt(path)
    np.testing.assert_allclose(camera.K, [[361.54125, 0, 82.900625], [0, 360.3975, 66.383875], [0, 0, 1]])
    assert camera.cam_from_world[0, 3] == -191.02 and camera.cam_from_world[2, 0] == -0.241605  # row-major
    assert (camera.depth_min, camera.depth_interval, camera.depth_num, camera.depth_max) == (
        425.0,
        2.5,
        None,
        None,
    )
    # whitespace-token parsing: the same numbers on one line give the same camera
    flat = tmp_path / "flat_cam.txt"
    flat.write_text(" ".join(DTU_STYLE_CAM.split()))
    np.testing.assert_array_equal(read_cam_txt(flat).cam_from_world, camera.cam_from_world)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("extrinsic", "extrinsics"), r"line 1: expected the word 'extrinsic'"),
        (lambda t: t.replace("intrinsic\n", "K\n"), r"line 7: expected the word 'intrinsic'"),
        (lambda t: t.replace("-191.02", "nan"), r"line 2: extrinsic entry 3 is nan \(must be finite\)"),
        (lambda t: t.replace("360.3975", "inf"), r"line 9: intrinsic entry 4 is inf"),
        (lambda t: t.replace("3.28832", "3.2.8"), r"line 3: extrinsic entry 7 '3.2.8' is not a number"),
        (lambda t: t.replace("425.0 2.5", "425.0"), r"expected 29-31 tokens .* got 28"),
        (lambda t: t.replace("425.0 2.5", "425.0 2.5 192 900 7"), r"expected 29-31 tokens .* got 32"),
        (lambda t: t.replace("425.0 2.5", "425.0 2.5 19.5"), r"line 12: depth_num '19.5' is not an integer"),
        (lambda t: t.replace("0.0 0.0 0.0 1.0", "0.0 0.0 1.0 1.0"), r"extrinsic bottom row"),
        (lambda t: t.replace("0.970263", "1.970263"), r"extrinsic is not a rigid transform"),
        (lambda t: t.replace("0.0 0.0 1.0\n\n425", "0.0 1.0 1.0\n\n425"), r"intrinsic bottom row"),
    ],
)
def test_malformed_cam(tmp_path, edit, message):
    path = tmp_path / "00000003_cam.txt"
    path.write_text(edit(DTU_STYLE_CAM))
    with pytest.raises(DataFormatError, match=r"00000003_cam\.txt: " + message):
        read_cam_txt(path)


def test_missing_cam(tmp_path):
    with pytest.raises(DataFormatError, match=r"00000009_cam\.txt: cam\.txt file is missing"):
        read_cam_txt(tmp_path / "00000009_cam.txt")


def test_pair_known_text_and_round_trip(tmp_path):
    path = tmp_path / "pair.txt"
    path.write_text(PAIR_TEXT)
    pairs = read_pair_txt(path)
    assert pairs == [(0, [(1, 2346.41), (2, 1243.89)]), (1, [(0, 2036.53), (2, 10.5)]), (2, [(1, 7.25)])]
    copy = tmp_path / "copy" / "pair.txt"
    write_pair_txt(copy, pairs)
    assert read_pair_txt(copy) == pairs
    assert copy.read_text().splitlines()[:3] == ["3", "0", "2 1 2346.41 2 1243.89"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PAIR_TEXT.replace("3\n", "4\n", 1), r"header says 4 views but the file has 6 non-empty lines"),
        (
            PAIR_TEXT.replace("2 1 2346.41 2 1243.89", "3 1 2346.41 2 1243.89"),
            r"line 3: says 3 sources but has 2",
        ),
        (PAIR_TEXT.replace("10.5", "nan"), r"line 5: score is nan"),
        (PAIR_TEXT.replace("7.25", "x"), r"line 7: score 'x' is not a number"),
        (PAIR_TEXT.replace("1 1 7.25", "1 5 7.25"), r"line 7: source id 5 is outside \[0, 3\)"),
        (PAIR_TEXT.replace("\n2\n1 1", "\n1\n1 1"), r"a reference id appears more than once"),
        ("", r"pair.txt is empty"),
    ],
)
def test_malformed_pair(tmp_path, text, message):
    path = tmp_path / "pair.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=r"pair\.txt: " + message):
        read_pair_txt(path)
