"""CO3D reader against the synthetic CO3D writer (v1 and v2 layouts, both intrinsics formats)."""

import gzip
import json
import shutil

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.data.loading import load_depth, load_image, load_mask
from multiview.data.readers.co3d import (
    read_co3d_category,
    read_co3d_sequence,
    read_ply_points,
    select_co3d_eval_sequences,
)
from multiview.synthetic.writers import co3d as co3d_writer
from tests.reprojection import assert_reprojection_consistent

CATEGORY = "synthetic_object"
CONFIGS = {
    "v2_mixed_landscape": dict(version="v2", mixed_formats=True, height=48, width=64, num_scenes=2),
    "v2_isotropic_portrait": dict(version="v2", intrinsics_format="ndc_isotropic", height=96, width=72),
    "v2_bounds_portrait": dict(version="v2", intrinsics_format="ndc_norm_image_bounds", height=96, width=72),
    "v1_landscape": dict(version="v1", height=48, width=64),
}
NUM_VIEWS = 9  # holdout_every=8 -> test frames 0 and 8


def _write(root, seed=0, num_scenes=1, num_views=NUM_VIEWS, height=48, width=64, **options):
    return co3d_writer.write(root, num_scenes, num_views, height, width, seed, **options)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def written(request, tmp_path_factory):
    config = CONFIGS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    return root, _write(root, **config), config


def _read_all(root):
    index = read_co3d_category(root, CATEGORY)
    names = index.sequence_names
    return index, {name: read_co3d_sequence(root, CATEGORY, name, index=index) for name in names}


def _expected_formats(config):
    if config.get("mixed_formats"):
        return ["ndc_isotropic", "ndc_norm_image_bounds", "ndc_norm_image_bounds"] * 3
    if config["version"] == "v1":
        return ["ndc_norm_image_bounds"] * NUM_VIEWS
    return [config["intrinsics_format"]] * NUM_VIEWS


def test_round_trip_cameras_images_masks(written):
    root, scenes, config = written
    index, read = _read_all(root)
    assert index.version == config["version"]
    assert sorted(read) == sorted(s.name for s in scenes)
    annotations = json.loads(gzip.open(root / CATEGORY / "frame_annotations.jgz").read())
    assert [a["frame_number"] for a in annotations] != sorted(a["frame_number"] for a in annotations)
    for truth in scenes:
        scene = read[truth.name]
        assert scene.root == truth.root and scene.meta["category"] == CATEGORY
        np.testing.assert_allclose(scene.stack_K(), truth.K, atol=1e-6)
        np.testing.assert_allclose(scene.stack_cam_from_world(), truth.cam_from_world, atol=1e-6)
        assert [v.extra["frame_number"] for v in scene.views] == list(range(NUM_VIEWS))
        assert [v.name for v in scene.views] == [f"frame{i + 1:06d}" for i in range(NUM_VIEWS)]
        assert [v.extra["intrinsics_format"] for v in scene.views] == _expected_formats(config)
        for i, (view, mask) in enumerate(zip(scene.views, truth.masks)):
            assert (view.height, view.width) == (config["height"], config["width"])
            errors = [np.abs(load_image(view) - image).mean() for image in truth.images]
            assert errors[i] < 0.04 and errors[i] == min(errors)  # JPEG q95 of fine textures at 48x64
            np.testing.assert_array_equal(load_mask(view) > 0.5, mask)
            assert view.extra["mask_mass"] == mask.sum()


def test_depth_from_disk_and_reprojection(written):
    root, scenes, _ = written
    _, read = _read_all(root)
    for truth in scenes:
        scene = read[truth.name]
        assert len({v.depth_scale for v in scene.views}) == NUM_VIEWS  # random per-frame scale_adjustment
        depths = {i: load_depth(view) for i, view in enumerate(scene.views)}
        for i, depth in depths.items():
            np.testing.assert_allclose(depth, truth.depths[i], rtol=2**-10, atol=0)
            assert scene.views[i].extra["depth_mask_path"].is_file()
        assert_reprojection_consistent(scene, depths)


@pytest.mark.parametrize("source", ["pointcloud", "depth"])
def test_near_far_bound_the_visible_depths(written, source):
    root, scenes, _ = written
    truth = scenes[0]
    scene = read_co3d_sequence(root, CATEGORY, truth.name, near_far_source=source)
    assert scene.meta["near_far_source"] == source
    for view, depth in zip(scene.views, truth.depths):
        valid = depth[depth > 0]
        assert 0 < view.near <= np.percentile(valid, 5) and view.far >= np.percentile(valid, 95)
        # not absurdly loose either; the point cloud also holds occluded points up to ~10 % farther
        assert view.near > 0.8 * valid.min() and view.far < 1.35 * valid.max()


def test_set_lists_and_eval_batches_map_to_frames(written):
    root, scenes, config = written
    _, read = _read_all(root)
    category_dir = root / CATEGORY
    if config["version"] == "v2":
        set_lists = json.loads((category_dir / "set_lists" / "set_lists_fewview_dev.json").read_text())
        batches = json.loads((category_dir / "eval_batches" / "eval_batches_fewview_dev.json").read_text())
        split_names = {"train": "train", "test": "test"}
    else:
        set_lists = json.loads((category_dir / "set_lists.json").read_text())
        batches = json.loads((category_dir / "eval_batches_multisequence.json").read_text())
        split_names = {"train": "train_known", "test": "test_known"}
    for truth in scenes:
        scene = read[truth.name]
        frame_numbers = [v.extra["frame_number"] for v in scene.views]
        for ours, theirs in split_names.items():
            listed = [entry[1] for entry in set_lists[theirs] if entry[0] == truth.name]
            assert [frame_numbers[i] for i in scene.splits[ours]] == sorted(listed)
            assert scene.splits[ours] == scene.splits[theirs]
        assert scene.splits["test"] == [0, 8]
        expected = [batch for batch in batches if batch[0][0] == truth.name]
        assert len(scene.meta["eval_batches"]) == len(expected) == 2
        for indices, batch in zip(scene.meta["eval_batches"], expected):
            assert [frame_numbers[i] for i in indices] == [entry[1] for entry in batch]
            assert indices[0] in scene.splits["test"] and set(indices[1:]) <= set(scene.splits["train"])
            if config["version"] == "v2":
                paths = [scene.views[i].image_path.relative_to(root).as_posix() for i in indices]
                assert paths == [entry[2] for entry in batch]


def test_holdout_protocol_replaces_train_test(written):
    root, scenes, _ = written
    scene = read_co3d_sequence(root, CATEGORY, scenes[0].name, holdout_every=3)
    assert scene.splits["test"] == [0, 3, 6]
    assert scene.splits["train"] == [1, 2, 4, 5, 7, 8]


# --- hand-made annotations and bad input on a small v2 category -------------------------------------------


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("co3d_small")
    scene = _write(root, num_views=3, height=24, width=32, mixed_formats=True)[0]
    return root, scene.name


@pytest.fixture
def small(small_root, tmp_path):
    root, name = small_root
    shutil.copytree(root, tmp_path / "co3d")
    return tmp_path / "co3d", name


def _edit_annotations(root, edit, file="frame_annotations.jgz"):
    path = root / CATEGORY / file
    records = json.loads(gzip.open(path).read())
    edit(sorted(records, key=lambda r: r.get("frame_number", 0)))
    with gzip.open(path, "wt") as f:
        json.dump(records, f)


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _read(root, name, **options):
    return read_co3d_sequence(root, CATEGORY, name, **options)


@pytest.mark.parametrize("intrinsics_format", ["ndc_isotropic", "ndc_norm_image_bounds", None])
def test_known_ndc_viewpoint_projects_where_pytorch3d_does(small, intrinsics_format):
    root, name = small
    R, T, focal, principal = np.eye(3), [0.0, 0.0, 5.0], [2.0, 3.0], [0.1, -0.2]

    def edit(frames):
        frames[0]["viewpoint"] = {"R": R.tolist(), "T": T, "focal_length": focal,
                                  "principal_point": principal}
        if intrinsics_format:
            frames[0]["viewpoint"]["intrinsics_format"] = intrinsics_format

    _edit_annotations(root, edit)
    view = _read(root, name).views[0]
    H, W = 24, 32
    sx, sy = (12.0, 12.0) if intrinsics_format == "ndc_isotropic" else (W / 2, H / 2)
    point = np.array([0.4, -0.3, 1.0])
    x_cam = point @ R + T  # PyTorch3D row-vector camera; NDC x left, y up
    ndc = np.array(focal) * x_cam[:2] / x_cam[2] + principal
    expected_uv = np.array([W / 2 - ndc[0] * sx, H / 2 - ndc[1] * sy])
    cam = view.cam_from_world[:3, :3] @ point + view.cam_from_world[:3, 3]
    uv = (view.K @ cam)[:2] / cam[2]
    np.testing.assert_allclose(uv, expected_uv, atol=1e-9)
    assert cam[2] == pytest.approx(x_cam[2])


def test_null_and_omitted_optional_fields_are_allowed(small):
    root, name = small

    def edit(frames):
        frames[0]["mask"] = None
        del frames[0]["depth"], frames[0]["meta"]
        del frames[1]["depth"]["mask_path"]
        del frames[2]["mask"]["mass"]

    _edit_annotations(root, edit)
    views = _read(root, name).views
    assert views[0].mask_path is None and views[0].depth_path is None
    assert views[1].depth_path is not None and views[1].extra["depth_mask_path"] is None
    assert views[2].extra["mask_mass"] is None and views[2].mask_path.is_file()
    with pytest.raises(DataFormatError, match="frame_annotations.jgz.*frame_number 0 has no depth"):
        _read(root, name, near_far_source="depth")


def test_missing_image(small):
    root, name = small
    (root / CATEGORY / name / "images" / "frame000002.jpg").unlink()
    with pytest.raises(DataFormatError, match="frame000002.jpg: image file is missing"):
        _read(root, name)


def test_truncated_image(small):
    root, name = small
    path = root / CATEGORY / name / "images" / "frame000003.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError, match="frame000003.jpg: image file is truncated"):
        _read(root, name)


def test_image_without_annotation_is_a_count_mismatch(small):
    root, name = small
    images = root / CATEGORY / name / "images"
    shutil.copy(images / "frame000001.jpg", images / "frame000004.jpg")
    with pytest.raises(DataFormatError, match="images: 1 images have no frame annotation.*frame000004.jpg"):
        _read(root, name)


def test_frame_without_viewpoint(small):
    root, name = small
    _edit_annotations(root, lambda frames: frames[1].update(viewpoint=None))
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: .*frame_number 1: viewpoint is null"):
        _read(root, name)


@pytest.mark.parametrize("field", ["R", "T", "focal_length"])
def test_nan_in_viewpoint(small, field):
    root, name = small

    def edit(frames):
        value = np.array(frames[1]["viewpoint"][field], dtype=float)
        value.flat[0] = np.nan
        frames[1]["viewpoint"][field] = value.tolist()

    _edit_annotations(root, edit)
    with pytest.raises(DataFormatError, match=f"frame_annotations.jgz: .*viewpoint.{field} has non-finite"):
        _read(root, name)


@pytest.mark.parametrize("where", ["top", "viewpoint", "depth"])
def test_unknown_key_is_rejected_like_the_strict_loader(small, where):
    root, name = small

    def edit(frames):
        (frames[0] if where == "top" else frames[0][where])["camera_quality_score"] = 1.0

    _edit_annotations(root, edit)
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: .*unknown key 'camera_quality_score'"):
        read_co3d_category(root, CATEGORY)


def test_unknown_key_in_sequence_annotation(small):
    root, name = small
    _edit_annotations(root, lambda seqs: seqs[0].update(extra=1), file="sequence_annotations.jgz")
    with pytest.raises(DataFormatError, match="sequence_annotations.jgz: .*unknown key 'extra'"):
        read_co3d_category(root, CATEGORY)


def test_missing_required_key_and_wrong_type(small):
    root, name = small
    _edit_annotations(root, lambda frames: frames[0].pop("image"))
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: .*required key 'image' is missing"):
        read_co3d_category(root, CATEGORY)
    _edit_annotations(root, lambda frames: frames[0].update(image={"path": "x.jpg", "size": [24, 32]},
                                                            frame_number="0"))
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: .*'frame_number' has the wrong type"):
        read_co3d_category(root, CATEGORY)


def test_image_size_must_match_header(small):
    root, name = small
    _edit_annotations(root, lambda frames: frames[2]["image"].update(size=[32, 24]))  # [W, H] by mistake
    with pytest.raises(DataFormatError, match=r"frame000003.jpg: image is 24x32 but frame_annotations.jgz"):
        _read(root, name)


def test_unknown_intrinsics_format(small):
    root, name = small
    _edit_annotations(root, lambda frames: frames[0]["viewpoint"].update(intrinsics_format="ndc_pixels"))
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: .*unknown intrinsics_format 'ndc_pix"):
        _read(root, name)


def test_duplicate_frame_number(small):
    root, name = small
    _edit_annotations(root, lambda frames: frames[1].update(frame_number=0))
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: .*frame_number 0 twice"):
        read_co3d_category(root, CATEGORY)


def test_corrupt_annotation_file(small):
    root, name = small
    (root / CATEGORY / "frame_annotations.jgz").write_bytes(b"not gzip")
    with pytest.raises(DataFormatError, match="frame_annotations.jgz: cannot read gzip JSON"):
        read_co3d_category(root, CATEGORY)


def test_sequence_without_sequence_annotation(small):
    root, name = small
    _edit_annotations(root, lambda seqs: seqs[0].update(sequence_name="x"), file="sequence_annotations.jgz")
    with pytest.raises(DataFormatError,
                       match=f"sequence_annotations.jgz: no annotation for sequence '{name}"):
        read_co3d_category(root, CATEGORY)


def test_missing_depth_file(small):
    root, name = small
    (root / CATEGORY / name / "depths" / "frame000001.jpg.geometric.png").unlink()
    with pytest.raises(DataFormatError, match="frame000001.jpg.geometric.png: depth file is missing"):
        _read(root, name)


def test_eval_batch_with_unknown_frame(small):
    root, name = small
    path = root / CATEGORY / "eval_batches" / "eval_batches_fewview_dev.json"
    _edit_json(path, lambda batches: batches[0].append([name, 99, "x.jpg"]))
    with pytest.raises(DataFormatError,
                       match="eval_batches_fewview_dev.json: batch 0: frame_number 99 .*has no frame"):
        _read(root, name)


def test_eval_batch_mixing_sequences(small):
    root, name = small
    path = root / CATEGORY / "eval_batches" / "eval_batches_fewview_dev.json"
    _edit_json(path, lambda batches: batches[0].append(["other_sequence", 1]))
    with pytest.raises(DataFormatError, match="eval_batches_fewview_dev.json: batch 0 .*mixes sequences"):
        _read(root, name)


def test_set_list_path_must_match_annotation(small):
    root, name = small
    path = root / CATEGORY / "set_lists" / "set_lists_fewview_dev.json"
    _edit_json(path, lambda lists: lists["train"][0].__setitem__(2, "elsewhere.jpg"))
    with pytest.raises(DataFormatError, match="set_lists_fewview_dev.json: split 'train': .*'elsewhere.jpg'"):
        _read(root, name)


def test_malformed_set_list_entry(small):
    root, name = small
    path = root / CATEGORY / "set_lists" / "set_lists_fewview_dev.json"
    _edit_json(path, lambda lists: lists["test"].append([name]))
    with pytest.raises(DataFormatError, match="set_lists_fewview_dev.json: split 'test' entry 1: expected"):
        read_co3d_category(root, CATEGORY)


def test_subset_choice(small):
    root, name = small
    set_lists = root / CATEGORY / "set_lists"
    shutil.copy(set_lists / "set_lists_fewview_dev.json", set_lists / "set_lists_manyview_dev_0.json")
    with pytest.raises(ValueError, match=r"choose subset= among \['fewview_dev', 'manyview_dev_0'\]"):
        read_co3d_category(root, CATEGORY)
    with pytest.raises(DataFormatError, match="eval_batches_manyview_dev_0.json: file is missing"):
        read_co3d_category(root, CATEGORY, subset="manyview_dev_0")
    assert read_co3d_category(root, CATEGORY, subset="fewview_dev").subset == "fewview_dev"


def test_truncated_point_cloud(small):
    root, name = small
    ply = root / CATEGORY / name / "pointcloud.ply"
    assert read_ply_points(ply).shape[1] == 3
    ply.write_bytes(ply.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match="pointcloud.ply: PLY is truncated"):
        _read(root, name)
    scene = _read(root, name, near_far_source="depth")  # the depth maps still give near/far
    assert all(0 < v.near < v.far for v in scene.views)


def test_ascii_point_cloud(tmp_path):
    ply = tmp_path / "p.ply"
    ply.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                   "property float z\nproperty uchar red\nelement face 0\n"
                   "property list uchar int vertex_indices\nend_header\n1 2 3 255\n-1 0.5 2 0\n")
    np.testing.assert_array_equal(read_ply_points(ply), [[1, 2, 3], [-1, 0.5, 2]])


def test_select_eval_sequences_by_viewpoint_quality(tmp_path):
    for k, category in enumerate(["apple", "bench"]):
        _write(tmp_path, seed=10 * k, num_scenes=3, num_views=2, height=16, width=16, category=category)
    scores = {}
    for category in ["apple", "bench"]:
        records = json.loads(gzip.open(tmp_path / category / "sequence_annotations.jgz").read())
        ranked = sorted(records, key=lambda r: -r["viewpoint_quality_score"])
        scores[category] = [r["sequence_name"] for r in ranked]
    chosen = select_co3d_eval_sequences(tmp_path, ["apple", "bench"], num_sequences=5, seed=3)
    assert chosen == select_co3d_eval_sequences(tmp_path, ["apple", "bench"], num_sequences=5, seed=3)
    for category in ["apple", "bench"]:
        picked = [name for c, name in chosen if c == category]
        assert picked == scores[category][: len(picked)]
    assert sorted(len([c for c, _ in chosen if c == cat]) for cat in ["apple", "bench"]) == [2, 3]
    with pytest.raises(ValueError, match="asked for 7 sequences"):
        select_co3d_eval_sequences(tmp_path, ["apple", "bench"], num_sequences=7)
