"""MVImgNet: synthetic writer -> index + reader round trip, conventions, skip report, splits, errors."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_image
from multiview.data.readers.mvimgnet import (
    hashed_split,
    index_mvimgnet,
    read_mvimgnet_category_list,
    read_mvimgnet_scene,
)
from multiview.io.colmap import ColmapCamera, read_colmap_model, write_colmap_binary
from multiview.io.images import write_image
from multiview.synthetic.writers.mvimgnet import BROKEN_KINDS, CATEGORIES, broken_instance_id, write
from tests.reprojection import assert_reprojection_consistent

BEER = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mvimgnet_like" / "beer"
H, W, V = 64, 80, 6


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("mvimgnet")
    scenes = write(out, 2, V, H, W, seed=3, num_broken=len(BROKEN_KINDS))
    return out, scenes


@pytest.fixture
def instance(root, tmp_path):
    """A private copy of the first good instance, to damage."""
    out, scenes = root
    copy = tmp_path / scenes[0].root.parent.name / scenes[0].root.name
    shutil.copytree(scenes[0].root, copy)
    return copy, scenes[0]


def _rewrite_model(instance_dir: Path, edit):
    """Read the instance's model, let `edit(model)` change it in place, write it back."""
    sparse = instance_dir / "sparse" / "0"
    model = read_colmap_model(sparse)
    edit(model)
    write_colmap_binary(sparse, model.cameras.values(), model.images, model.points)


def test_round_trip(root):
    out, scenes = root
    index = index_mvimgnet(out)
    assert [inst.name for inst in index.instances] == sorted((s.name for s in scenes),
                                                            key=lambda n: (int(n.split("/")[0]), n))
    for written in scenes:
        scene = read_mvimgnet_scene(written.root)
        assert scene.name == written.name and scene.dataset == "mvimgnet"
        assert [v.name for v in scene.views] == [f"{i:03d}" for i in range(1, V + 1)]
        assert scene.splits == {"train": list(range(V))}
        np.testing.assert_allclose(scene.stack_K(), written.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), written.cam_from_world, atol=1e-6)
        for k, (view, image) in enumerate(zip(scene.views, written.images)):
            assert (view.height, view.width) == (H, W)
            error = np.abs(load_image(view) - image).mean()
            other = np.abs(load_image(view) - written.images[(k + 1) % V]).mean()
            assert error < 0.03 and error < other / 2  # JPEG (quality 95, chroma subsampling) at 48x64
        assert scene.meta["points_xyz"].shape[1] == 3 and len(scene.meta["view_point_rows"]) == V


def test_pinhole_and_simple_radial_read_identically(root, tmp_path):
    _, scenes = root
    pinhole = write(tmp_path, 1, V, H, W, seed=3, camera_model="PINHOLE")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SIMPLE_RADIAL with k = 0 is a pinhole camera: no warning
        a, b = read_mvimgnet_scene(scenes[0].root), read_mvimgnet_scene(pinhole.root)
    assert {v.extra["camera_model"] for v in a.views} == {"SIMPLE_RADIAL"}
    assert {v.extra["camera_model"] for v in b.views} == {"PINHOLE"}
    np.testing.assert_allclose(a.stack_K(), b.stack_K(), atol=1e-12)
    np.testing.assert_allclose(a.stack_cam_from_world(), b.stack_cam_from_world(), atol=1e-12)


def test_writer_is_deterministic(tmp_path):
    first = write(tmp_path / "a", 1, 3, 32, 40, seed=11)[0]
    second = write(tmp_path / "b", 1, 3, 32, 40, seed=11)[0]
    assert first.name == second.name
    for a, b in zip(first.files, second.files):
        assert a.relative_to(tmp_path / "a") == b.relative_to(tmp_path / "b")
        if a.suffix == ".bin":
            assert a.read_bytes() == b.read_bytes()


def test_reprojection_convention(root):
    _, scenes = root
    written = scenes[0]
    scene = read_mvimgnet_scene(written.root)
    assert_reprojection_consistent(scene, dict(enumerate(written.depths)))


def test_sparse_observations_are_projections_in_colmap_convention(root):
    _, scenes = root
    written = scenes[1]
    model = read_colmap_model(written.root / "sparse" / "0")
    row_of = {int(i): row for row, i in enumerate(model.points.ids)}
    for image, K, cam in zip(model.images, written.K, written.cam_from_world):
        observed = image.point3D_ids >= 0
        assert observed.sum() >= 20 and (~observed).sum() > 0  # also untriangulated keypoints
        xyz = model.points.xyz[[row_of[int(i)] for i in image.point3D_ids[observed]]]
        points_cam = xyz @ cam[:3, :3].T + cam[:3, 3]
        uv = points_cam[:, :2] / points_cam[:, 2:] @ K[:2, :2].T + K[:2, 2]
        np.testing.assert_allclose(image.points2D[observed], uv + 0.5, atol=1e-6)
    assert all(len(track) >= 2 for track in model.points.tracks)
    assert np.any(np.diff(model.points.ids) > 1)  # ids are not contiguous


def test_near_far_contain_object_depths(root):
    _, scenes = root
    for written in scenes:
        scene = read_mvimgnet_scene(written.root)
        for view, depth, mask in zip(scene.views, written.depths, written.masks):
            assert view.extra["near_far_source"] == "observed"
            assert 0 < view.near < depth[mask].min() and depth[mask].max() < view.far < np.inf
        np.testing.assert_allclose(scene.meta["center"], np.median(scene.meta["points_xyz"], axis=0))
        assert np.linalg.norm(scene.meta["center"]) < 1.0  # the object sits at the origin


def test_view_with_few_observations_falls_back_to_frustum(instance):
    instance_dir, written = instance
    reference = read_mvimgnet_scene(instance_dir)

    def drop_observations(model):
        model.images[2].point3D_ids[:] = -1

    _rewrite_model(instance_dir, drop_observations)
    scene = read_mvimgnet_scene(instance_dir)
    sources = [v.extra["near_far_source"] for v in scene.views]
    assert sources == ["observed", "observed", "frustum", "observed", "observed", "observed"]
    assert len(scene.meta["view_point_rows"][2]) == 0
    view, depth, mask = scene.views[2], written.depths[2], written.masks[2]
    assert 0 < view.near < depth[mask].min() and depth[mask].max() < view.far
    assert (scene.views[1].near, scene.views[1].far) == (reference.views[1].near, reference.views[1].far)


def test_image_ids_need_not_be_contiguous_or_ordered(instance):
    instance_dir, _ = instance
    reference = read_mvimgnet_scene(instance_dir)

    def renumber(model):
        for image, image_id in zip(model.images, [40, 7, 93, 2, 15, 61]):
            image.image_id = image_id

    _rewrite_model(instance_dir, renumber)
    scene = read_mvimgnet_scene(instance_dir)
    assert [v.extra["colmap_image_id"] for v in scene.views] == [40, 7, 93, 2, 15, 61]
    assert [v.name for v in scene.views] == [v.name for v in reference.views]
    for a, b in zip(scene.views, reference.views):
        np.testing.assert_allclose(a.cam_from_world, b.cam_from_world, atol=1e-12)
        assert (a.near, a.far) == pytest.approx((b.near, b.far), rel=1e-12)


# --- index: skip report and splits ----------------------------------------------------------------------


def test_skip_report_lists_exactly_the_broken_instances(root, tmp_path, caplog):
    out, scenes = root
    with caplog.at_level(logging.WARNING, logger="multiview.data.readers.mvimgnet"):
        index = index_mvimgnet(out)
    broken = {broken_instance_id(b): kind for b, kind in enumerate(BROKEN_KINDS)}
    assert {path.name for path, _ in index.skipped} == set(broken)
    assert len(index.skipped) == len(broken)
    assert {inst.path for inst in index.instances} == {s.root for s in scenes}
    reasons = {path.name: reason for path, reason in index.skipped}
    expected = {"empty_sparse": "missing cameras.bin, images.bin, points3D.bin",
                "missing_image": "image file is missing", "no_registered_images": "no registered images",
                "missing_points3D": "missing points3D.bin", "truncated_images_bin": "images.bin: truncated"}
    for instance_id, kind in broken.items():
        assert expected[kind] in reasons[instance_id], reasons[instance_id]
    report = tmp_path / "report.txt"
    index.write_report(report)
    text = report.read_text()
    assert "2 instances" in text and f"{len(broken)} skipped" in text
    assert all(str(path) in text for path, _ in index.skipped)
    assert all(str(path) in caplog.text for path, _ in index.skipped)


def test_category_list_and_filter(root, tmp_path):
    out, _ = root
    raw = (out / "mvimgnet_category.txt").read_bytes()
    assert raw.count(b"\r\n") == len(CATEGORIES) and raw.endswith(b"\r\n")
    assert read_mvimgnet_category_list(out / "mvimgnet_category.txt") == dict(CATEGORIES)  # "Toy butterfly " kept
    assert index_mvimgnet(out).category_names[2] == "wahser"
    index = index_mvimgnet(out, categories=[17])
    assert {inst.class_id for inst in index.instances} == {17}
    assert all(path.parent.name == "17" for path, _ in index.skipped)
    bad = tmp_path / "categories.txt"
    bad.write_bytes(b"0,bag\r\n1,bottle\r\nthree,vessel\r\n")
    with pytest.raises(DataFormatError, match=r"categories\.txt: line 3: expected '<integer id>,<name>'"):
        read_mvimgnet_category_list(bad)


@pytest.fixture(scope="module")
def many(root, tmp_path_factory):
    """A root of 40 instances (symlinks to one good instance) in two classes."""
    _, scenes = root
    out = tmp_path_factory.mktemp("many")
    for k in range(40):
        target = out / str(k % 2) / f"{k:08x}"
        target.parent.mkdir(exist_ok=True)
        target.symlink_to(scenes[0].root, target_is_directory=True)
    return out


def test_hashed_split_is_deterministic_disjoint_and_stable(many):
    full = index_mvimgnet(many, val_fraction=0.3, seed=5)
    train, val = index_mvimgnet(many, split="train", val_fraction=0.3, seed=5), \
        index_mvimgnet(many, split="val", val_fraction=0.3, seed=5)
    names = {inst.name for inst in full.instances}
    assert len(names) == 40
    assert {i.name for i in train.instances} | {i.name for i in val.instances} == names
    assert not {i.name for i in train.instances} & {i.name for i in val.instances}
    assert [i.name for i in val.instances] == [i.name for i in full.split("val")]
    assert 0 < len(val) < 40
    assert index_mvimgnet(many, split="val", val_fraction=0.3, seed=6).instances != val.instances
    # each instance's split depends only on its own name: adding instances moves nothing
    sample = [f"{c}/{k:08x}" for c in range(3) for k in range(2000)]
    labels = [hashed_split(n, 0.1, seed=0) for n in sample]
    assert labels[:100] == [hashed_split(n, 0.1, seed=0) for n in sample[:100]]
    assert 0.08 < labels.count("val") / len(labels) < 0.12


def test_split_file(many, tmp_path):
    listed = ["0/00000000.pcd", "1/00000001", "0/00000004.pcd", "5/0000abcd.pcd"]
    split_file = tmp_path / "val.json"
    split_file.write_text(json.dumps(listed))
    index = index_mvimgnet(many, split="val", split_file=split_file)
    assert [i.name for i in index.instances] == ["0/00000000", "0/00000004", "1/00000001"]
    assert {i.split for i in index.instances} == {"val"}
    assert index.missing == ["5/0000abcd"] and "not found: 5/0000abcd" in index.format_report()
    with pytest.raises(ValueError, match="pass split="):
        index_mvimgnet(many, split_file=split_file)
    split_file.write_text(json.dumps(["0/00000000", "no-class"]))
    with pytest.raises(DataFormatError, match=r"val\.json: entry 1: expected"):
        index_mvimgnet(many, split="val", split_file=split_file)


# --- bad input --------------------------------------------------------------------------------------------


def test_missing_image(instance):
    instance_dir, _ = instance
    (instance_dir / "images" / "004.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"004\.jpg: image file is missing"):
        read_mvimgnet_scene(instance_dir)


def test_truncated_jpeg(instance):
    instance_dir, _ = instance
    path = instance_dir / "images" / "002.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"002\.jpg: image file is truncated"):
        read_mvimgnet_scene(instance_dir)


def test_image_size_differs_from_camera(instance):
    instance_dir, _ = instance
    write_image(instance_dir / "images" / "003.jpg", np.zeros((H, W + 2, 3), np.float32))
    with pytest.raises(DataFormatError, match=rf"003\.jpg: image is {H}x{W + 2} but its camera 1"):
        read_mvimgnet_scene(instance_dir)


def test_nan_pose(instance):
    instance_dir, _ = instance

    def poison(model):
        model.images[1].cam_from_world[1, 3] = np.nan

    _rewrite_model(instance_dir, poison)
    with pytest.raises(DataFormatError, match=r"images\.bin: image 002\.jpg: non-finite pose"):
        read_mvimgnet_scene(instance_dir)


def test_fisheye_camera(instance):
    instance_dir, _ = instance

    def fisheye(model):
        model.cameras[1] = ColmapCamera(1, "OPENCV_FISHEYE", W, H, [50.0, 50.0, 32.0, 24.0, 0.1, 0.0, 0.0, 0.0])

    _rewrite_model(instance_dir, fisheye)
    with pytest.raises(DataFormatError, match=r"cameras\.bin: camera 1: model OPENCV_FISHEYE is not supported"):
        read_mvimgnet_scene(instance_dir)


def test_empty_sparse_raises_when_read_directly(instance):
    instance_dir, _ = instance
    for path in (instance_dir / "sparse" / "0").iterdir():
        path.unlink()
    with pytest.raises(DataFormatError, match=r"sparse/0: incomplete COLMAP model"):
        read_mvimgnet_scene(instance_dir)


def test_truncated_model_file(instance):
    instance_dir, _ = instance
    path = instance_dir / "sparse" / "0" / "points3D.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFormatError, match=r"points3D\.bin: truncated"):
        read_mvimgnet_scene(instance_dir)


def test_missing_root():
    with pytest.raises(DataFormatError, match="root folder is missing"):
        index_mvimgnet("/nonexistent/mvimgnet")


# --- real capture ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not BEER.is_dir(), reason=f"real sample {BEER} is absent")
def test_real_capture_as_mvimgnet_root(tmp_path):
    (tmp_path / "39").mkdir()
    (tmp_path / "39" / "0000beer").symlink_to(BEER, target_is_directory=True)
    index = index_mvimgnet(tmp_path)
    assert [i.name for i in index.instances] == ["39/0000beer"] and index.skipped == []
    assert index.instances[0].num_images == 71
    with pytest.warns(UserWarning, match="SIMPLE_RADIAL"):
        scene = read_mvimgnet_scene(index.instances[0].path)
    assert len(scene) == 71 and scene.views[0].name == "0000"
    assert (scene.views[0].height, scene.views[0].width) == (1280, 720)
    near, far = np.array([v.near for v in scene.views]), np.array([v.far for v in scene.views])
    assert np.isfinite(near).all() and np.isfinite(far).all() and (0 < near).all() and (near < far).all()
    assert {v.extra["near_far_source"] for v in scene.views} == {"observed"}
    assert scene.views[0].K[0, 2] == 359.5 and scene.views[0].K[1, 2] == 639.5
