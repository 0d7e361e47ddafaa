"""COLMAP binary writer, pycolmap-based reader, pixel convention and error handling."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from multiview.data.errors import DataFormatError
from multiview.io.colmap import (
    ColmapCamera,
    ColmapImage,
    ColmapPoints,
    _cam_from_world,
    colmap_camera_from_K,
    intrinsics_from_colmap,
    read_colmap_cameras,
    read_colmap_model,
    write_colmap_binary,
)
from multiview.synthetic.cameras import intrinsics, orbit_cameras

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BEER = SHARED / "mvimgnet_like" / "beer" / "sparse" / "0"
FERN_CAMERAS = SHARED / "llff" / "fern" / "sparse" / "0" / "cameras.bin"


def _model(num_images: int = 5, num_points: int = 40, seed: int = 0):
    """Two cameras, images named in non-id order, keypoints with and without 3D points, sparse point ids."""
    rng = np.random.default_rng(seed)
    K = intrinsics(48, 64, fov_x_deg=60.0)
    cameras = [colmap_camera_from_K(3, K, 48, 64, "PINHOLE"),
               ColmapCamera(1, "SIMPLE_RADIAL", 64, 48, [50.0, 32.0, 24.0, 0.0])]
    point_ids = np.cumsum(rng.integers(1, 5, num_points))
    points = ColmapPoints(ids=point_ids, xyz=rng.normal(size=(num_points, 3)),
                          rgb=rng.integers(0, 256, (num_points, 3)), error=rng.uniform(0, 2, num_points))
    names = [f"frame_{i:02d}.jpg" for i in rng.permutation(num_images)]
    images = []
    for name, cam in zip(names, orbit_cameras(num_images, seed=seed)):
        num_keypoints = int(rng.integers(0, 12))
        ids = np.where(rng.uniform(size=num_keypoints) < 0.7, rng.choice(point_ids, num_keypoints), -1)
        images.append(ColmapImage(name, int(rng.choice([1, 3])), cam, rng.uniform(0, 64, (num_keypoints, 2)), ids))
    return cameras, images, points


def test_round_trip(tmp_path):
    cameras, images, points = _model()
    written = write_colmap_binary(tmp_path, cameras, images, points, project_ini="[x]\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cameras.bin", "images.bin", "points3D.bin", "project.ini"]
    assert set(written) == set(tmp_path.iterdir())
    model = read_colmap_model(tmp_path)

    assert set(model.cameras) == {1, 3}
    for camera in cameras:
        got = model.cameras[camera.camera_id]
        assert (got.model, got.width, got.height) == (camera.model, camera.width, camera.height)
        np.testing.assert_array_equal(got.params, camera.params)
    expected = sorted(images, key=lambda im: im.name)
    assert [im.name for im in model.images] == [im.name for im in expected]
    assert [im.image_id for im in model.images] == list(range(1, len(images) + 1))  # 1..N in name order
    for got, want in zip(model.images, expected):
        assert got.camera_id == want.camera_id
        np.testing.assert_allclose(got.cam_from_world, want.cam_from_world, atol=1e-9)
        np.testing.assert_array_equal(got.points2D, want.points2D)
        np.testing.assert_array_equal(got.point3D_ids, want.point3D_ids)
    np.testing.assert_array_equal(model.points.ids, points.ids)
    np.testing.assert_array_equal(model.points.xyz, points.xyz)
    np.testing.assert_array_equal(model.points.rgb, points.rgb)
    np.testing.assert_array_equal(model.points.error, points.error)
    for row, point_id in enumerate(points.ids):
        track = [(image_id, k) for image_id, im in enumerate(expected, start=1)
                 for k in np.flatnonzero(im.point3D_ids == point_id)]
        np.testing.assert_array_equal(model.points.tracks[row], np.array(track, dtype=np.int64).reshape(-1, 2))


def test_given_image_ids_are_kept_and_model_rewrites_identically(tmp_path):
    cameras, images, points = _model()
    for image, image_id in zip(images, [7, 3, 12, 5, 9]):
        image.image_id = image_id
    write_colmap_binary(tmp_path / "a", cameras, images, points)
    model = read_colmap_model(tmp_path / "a")
    assert {im.name: im.image_id for im in model.images} == {im.name: im.image_id for im in images}
    write_colmap_binary(tmp_path / "b", model.cameras.values(), model.images, model.points)
    for name in ("cameras.bin", "points3D.bin"):  # tracks refer to the kept ids
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # images.bin differs only in the last bits of the quaternions (matrix -> quaternion rounding)
    assert (tmp_path / "a" / "images.bin").stat().st_size == (tmp_path / "b" / "images.bin").stat().st_size
    for a, b in zip(model.images, read_colmap_model(tmp_path / "b").images):
        assert (a.name, a.image_id) == (b.name, b.image_id)
        np.testing.assert_allclose(a.cam_from_world, b.cam_from_world, atol=1e-12)


def test_written_files_read_by_pycolmap_directly(tmp_path):
    cameras, images, points = _model()
    write_colmap_binary(tmp_path, cameras, images, points)
    rec = pycolmap.Reconstruction(str(tmp_path))
    assert rec.num_reg_images() == len(images) and rec.num_points3D() == len(points)
    by_name = {im.name: im for im in images}
    for image in rec.images.values():
        want = by_name[image.name]
        centre = -want.cam_from_world[:3, :3].T @ want.cam_from_world[:3, 3]
        np.testing.assert_allclose(image.projection_center(), centre, atol=1e-9)
        assert image.camera_id == want.camera_id
        np.testing.assert_array_equal([p.xy for p in image.points2D], want.points2D.reshape(-1, 2))
        assert [p.point3D_id if p.has_point3D() else -1 for p in image.points2D] == want.point3D_ids.tolist()
    for row, point_id in enumerate(points.ids):
        np.testing.assert_array_equal(rec.points3D[int(point_id)].xyz, points.xyz[row])
        assert rec.points3D[int(point_id)].track.length() == sum((im.point3D_ids == point_id).sum() for im in images)


def test_file_sizes_and_headers(tmp_path):
    cameras, images, points = _model()
    write_colmap_binary(tmp_path, cameras, images, points)
    assert (tmp_path / "cameras.bin").stat().st_size == 8 + (24 + 8 * 4) + (24 + 8 * 4)
    expected_images = 8 + sum(64 + len(im.name) + 1 + 8 + 24 * len(im.point3D_ids) for im in images)
    assert (tmp_path / "images.bin").stat().st_size == expected_images
    track_total = sum(int((im.point3D_ids >= 0).sum()) for im in images)
    assert (tmp_path / "points3D.bin").stat().st_size == 8 + len(points) * (43 + 8) + 8 * track_total
    data = (tmp_path / "images.bin").read_bytes()
    assert struct.unpack_from("<Q", data)[0] == len(images)
    image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = struct.unpack_from("<I4d3dI", data, 8)
    first = min(images, key=lambda im: im.name)
    assert image_id == 1 and camera_id == first.camera_id and qw >= 0
    np.testing.assert_allclose([tx, ty, tz], first.cam_from_world[:3, 3])
    assert data[8 + 64:8 + 64 + len(first.name) + 1] == first.name.encode() + b"\0"
    camera_id, model_id, width, height = struct.unpack_from("<IiQQ", (tmp_path / "cameras.bin").read_bytes(), 8)
    assert (camera_id, model_id, width, height) == (1, 2, 64, 48)  # sorted by id; SIMPLE_RADIAL = 2


def test_pixel_convention_matches_pycolmap_projection(tmp_path):
    K = np.array([[70.0, 0.0, 30.25], [0.0, 72.0, 22.75], [0.0, 0.0, 1.0]])
    camera = colmap_camera_from_K(1, K, 48, 64, "PINHOLE")
    np.testing.assert_array_equal(camera.params, [70.0, 72.0, 30.75, 23.25])  # COLMAP's centre = ours + 0.5
    np.testing.assert_array_equal(intrinsics_from_colmap({1: camera}, "cameras.bin")[1], K)
    points_cam = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 4], (20, 3))
    ours = points_cam[:, :2] / points_cam[:, 2:] * [70.0, 72.0] + [30.25, 22.75]
    colmap = pycolmap.Camera(model="PINHOLE", width=64, height=48, params=camera.params).img_from_cam(points_cam)
    np.testing.assert_allclose(np.asarray(colmap) - 0.5, ours, atol=1e-9)


def test_single_focal_models_round_trip():
    K = intrinsics(48, 64)
    for model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "PINHOLE", "OPENCV"):
        camera = colmap_camera_from_K(1, K, 48, 64, model)
        np.testing.assert_allclose(intrinsics_from_colmap({1: camera}, "c")[1], K, atol=1e-12)
    with pytest.raises(ValueError, match="one focal length"):
        colmap_camera_from_K(1, np.diag([50.0, 60.0, 1.0]), 48, 64, "SIMPLE_PINHOLE")


def test_distortion_warns_once_and_fisheye_raises():
    distorted = {i: ColmapCamera(i, "SIMPLE_RADIAL", 64, 48, [50.0, 32.0, 24.0, 0.05]) for i in (1, 2)}
    distorted[3] = ColmapCamera(3, "OPENCV", 64, 48, [50.0, 51.0, 32.0, 24.0, 0.1, 0.0, 0.0, 0.0])
    with pytest.warns(UserWarning, match="SIMPLE_RADIAL") as record:
        K = intrinsics_from_colmap(distorted, "cameras.bin")
    assert len(record) == 1 and "OPENCV" in str(record[0].message)
    np.testing.assert_array_equal(K[3], [[50.0, 0, 31.5], [0, 51.0, 23.5], [0, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k = 0: nothing is ignored, no warning
        intrinsics_from_colmap({1: ColmapCamera(1, "SIMPLE_RADIAL", 64, 48, [50.0, 32.0, 24.0, 0.0])}, "c")
    fisheye = {1: ColmapCamera(1, "OPENCV_FISHEYE", 64, 48, [50.0, 50.0, 32.0, 24.0, 0.1, 0, 0, 0])}
    with pytest.raises(DataFormatError, match=r"cameras\.bin.*OPENCV_FISHEYE is not supported"):
        intrinsics_from_colmap(fisheye, "cameras.bin")


def test_text_model_reads_like_binary(tmp_path):
    cameras, images, points = _model()
    write_colmap_binary(tmp_path / "bin", cameras, images, points)
    (tmp_path / "txt").mkdir()
    pycolmap.Reconstruction(str(tmp_path / "bin")).write_text(str(tmp_path / "txt"))
    binary, text = read_colmap_model(tmp_path / "bin"), read_colmap_model(tmp_path / "txt")
    assert text.files["images"].name == "images.txt"
    assert [im.name for im in text.images] == [im.name for im in binary.images]
    for a, b in zip(text.images, binary.images):
        np.testing.assert_allclose(a.cam_from_world, b.cam_from_world, atol=1e-12)
        np.testing.assert_array_equal(a.point3D_ids, b.point3D_ids)
    np.testing.assert_allclose(text.points.xyz, binary.points.xyz, atol=1e-12)
    assert read_colmap_cameras(tmp_path / "txt" / "cameras.txt").keys() == {1, 3}


class _LegacyImage:
    """pycolmap < 3.12: `cam_from_world` is a property returning a Rigid3d."""

    def __init__(self, rigid):
        self.cam_from_world = rigid


def test_cam_from_world_property_or_method():
    rigid = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)])), np.array([1.0, 2, 3]))
    expected = np.vstack([rigid.matrix(), [0, 0, 0, 1]])
    np.testing.assert_allclose(_cam_from_world(_LegacyImage(rigid)), expected)
    np.testing.assert_allclose(_cam_from_world(_LegacyImage(lambda: rigid)), expected)


# --- errors ----------------------------------------------------------------------------------------------


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataFormatError, match="model folder is missing"):
        read_colmap_model(tmp_path / "nope")
    cameras, images, points = _model()
    write_colmap_binary(tmp_path, cameras, images, points)
    (tmp_path / "points3D.bin").unlink()
    with pytest.raises(DataFormatError, match=r"incomplete COLMAP model: missing points3D\.bin") as error:
        read_colmap_model(tmp_path)
    assert error.value.path == tmp_path


def test_no_registered_images(tmp_path):
    cameras, _, _ = _model()
    write_colmap_binary(tmp_path, cameras, [], ColmapPoints(ids=[], xyz=np.zeros((0, 3))))
    with pytest.raises(DataFormatError, match=r"images\.bin: no registered images"):
        read_colmap_model(tmp_path)


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
@pytest.mark.parametrize("damage", ["half", "minus_one_byte", "extra_byte", "empty"])
def test_truncated_or_padded_files(tmp_path, name, damage):
    """pycolmap loops forever on some of these: the layout check must catch every one first."""
    write_colmap_binary(tmp_path, *_model())
    path = tmp_path / name
    data = path.read_bytes()
    damaged = {"half": data[: len(data) // 2], "minus_one_byte": data[:-1], "extra_byte": data + b"\0",
               "empty": b""}[damage]
    path.write_bytes(damaged)
    expected = {"empty": "file is empty", "extra_byte": "unexpected bytes"}.get(damage, "truncated")
    with pytest.raises(DataFormatError, match=rf"{name.replace('.', '[.]')}: .*{expected}"):
        read_colmap_model(tmp_path)


def test_inconsistent_model_reports_pycolmap_error(tmp_path):
    cameras, images, points = _model()
    write_colmap_binary(tmp_path, cameras, images, points)
    write_colmap_binary(tmp_path / "other", [ColmapCamera(9, "PINHOLE", 64, 48, [50, 50, 32, 24])], [], points)
    (tmp_path / "cameras.bin").write_bytes((tmp_path / "other" / "cameras.bin").read_bytes())  # ids 1, 3 gone
    with pytest.raises(DataFormatError, match="pycolmap cannot read the model") as error:
        read_colmap_model(tmp_path)
    assert error.value.path == tmp_path


def test_unknown_model_id_and_malformed_text(tmp_path):
    write_colmap_binary(tmp_path, *_model())
    data = bytearray((tmp_path / "cameras.bin").read_bytes())
    data[12:16] = struct.pack("<i", 42)
    (tmp_path / "cameras.bin").write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"cameras\.bin: camera record 1 of 2: unknown camera model id 42"):
        read_colmap_cameras(tmp_path / "cameras.bin")
    (tmp_path / "cameras.txt").write_text("# c\n1 PINHOLE 64 48 50 50 32\n")
    with pytest.raises(DataFormatError, match=r"cameras\.txt: line 2: malformed camera line"):
        read_colmap_cameras(tmp_path / "cameras.txt")


# --- real files ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not BEER.is_dir(), reason=f"real sample {BEER} is absent")
def test_real_model_reprojects_onto_colmap_observations():
    model = read_colmap_model(BEER)
    assert len(model.images) == 71 and len(model.points) == 4414
    assert [im.name for im in model.images] == sorted(im.name for im in model.images)
    with pytest.warns(UserWarning, match="SIMPLE_RADIAL"):
        Ks = intrinsics_from_colmap(model.cameras, model.files["cameras"])
    row_of = {int(i): row for row, i in enumerate(model.points.ids)}
    pinhole_errors, exact_errors = [], []
    for image in model.images:
        observed = image.point3D_ids >= 0
        xyz = model.points.xyz[[row_of[int(i)] for i in image.point3D_ids[observed]]]
        points_cam = xyz @ image.cam_from_world[:3, :3].T + image.cam_from_world[:3, 3]
        assert (points_cam[:, 2] > 0).all()
        K = Ks[image.camera_id]
        normalized = points_cam[:, :2] / points_cam[:, 2:]
        target = image.points2D[observed] - 0.5  # COLMAP's pixel convention -> ours
        pinhole_errors.append(np.linalg.norm(normalized * np.diag(K)[:2] + K[:2, 2] - target, axis=1))
        k = model.cameras[image.camera_id].params[3]  # SIMPLE_RADIAL: (u, v)·(1 + k r²)
        radial = 1 + k * (normalized**2).sum(axis=1, keepdims=True)
        exact_errors.append(np.linalg.norm(normalized * radial * np.diag(K)[:2] + K[:2, 2] - target, axis=1))
    assert np.median(np.concatenate(pinhole_errors)) < 2.0
    # with COLMAP's own distortion the residual is the model's reprojection error (~0.75 px mean)
    assert np.median(np.concatenate(exact_errors)) < 0.8
    track_lengths = [len(track) for track in model.points.tracks]
    assert sum(track_lengths) == sum(int((im.point3D_ids >= 0).sum()) for im in model.images) == 30839


@pytest.mark.skipif(not FERN_CAMERAS.is_file(), reason=f"real sample {FERN_CAMERAS} is absent")
def test_real_cameras_file_alone():
    cameras = read_colmap_cameras(FERN_CAMERAS)
    assert list(cameras) == [1]
    camera = cameras[1]
    assert (camera.model, camera.width, camera.height) == ("SIMPLE_RADIAL", 4032, 3024)
    assert camera.params[0] == pytest.approx(3260.53, abs=0.01)
    with pytest.raises(DataFormatError, match="incomplete COLMAP model: missing images.bin"):
        read_colmap_model(FERN_CAMERAS.parent)
