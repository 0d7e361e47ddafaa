"""MVS samples: DTU training/test layouts and MVImgNet on synthetic data written in the real formats."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from jdacs.data import (
    DTUTestSet,
    DTUTrainingSet,
    MVImgNetMVSSet,
    SeededBatches,
    center_image,
    collate_mvs_samples,
    ranked_sources,
    resize_and_center_crop,
    view_selection_scores,
)
from multiview.data.errors import DataFormatError
from multiview.data.readers.mvimgnet import index_mvimgnet
from multiview.data.records import Scene, View
from multiview.geometry.intrinsics import make_K, resize_intrinsics
from multiview.io.mvsnet import write_pair_txt
from multiview.synthetic.writers import dtu as dtu_writer
from multiview.synthetic.writers import mvimgnet as mvimgnet_writer

SCANS = [2, 6]
NUM_SCAN_VIEWS = 6
HEIGHT, WIDTH = 64, 96  # depth 16x24
QUANTISATION = 0.5 / 255 + 1e-6


@pytest.fixture(scope="module")
def dtu_train(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu_train")
    return root, dtu_writer.write(root, len(SCANS), NUM_SCAN_VIEWS, HEIGHT, WIDTH, seed=1, layout="train")


@pytest.fixture(scope="module")
def train_set(dtu_train):
    return DTUTrainingSet(dtu_train[0], SCANS, num_views=4, num_depths=16)


@pytest.fixture(scope="module")
def mvimgnet(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvimgnet")
    return root, mvimgnet_writer.write(root, 2, 8, 80, 64, seed=3, num_points=300)


def _pair_sources(written, ref: int, count: int) -> list[int]:
    return [src for src, _ in dict(dtu_writer.view_selection_pairs(written.cam_from_world))[ref][:count]]


# --- DTU training layout --------------------------------------------------------------------------------------


def test_sample_shapes_dtypes_and_identifiers(train_set):
    sample = train_set.sample(seed=5)
    expected = {"images": ((4, 3, HEIGHT, WIDTH), torch.float32), "images_raw": ((4, 3, HEIGHT, WIDTH), torch.float32),
                "K": ((4, 3, 3), torch.float32), "cam_from_world": ((4, 4, 4), torch.float32),
                "depth_values": ((16,), torch.float32), "depth": ((HEIGHT // 4, WIDTH // 4), torch.float32),
                "mask": ((HEIGHT // 4, WIDTH // 4), torch.bool), "view_ids": ((4,), torch.int64)}
    for name, (shape, dtype) in expected.items():
        value = getattr(sample, name)
        assert (tuple(value.shape), value.dtype, value.device.type) == (shape, dtype, "cpu"), name
    assert sample.scene in ("scan2", "scan6") and sample.view_ids[0] == sample.ref_view
    assert 0 <= sample.light < 7 and sample.seed == 5
    assert 0.0 <= sample.images_raw.min() and sample.images_raw.max() <= 1.0


def test_images_are_the_written_renders_of_the_right_views_and_lights(dtu_train, train_set):
    written = dict(zip(SCANS, dtu_train[1]))
    for seed in range(6):
        sample = train_set.sample(seed)
        scene = written[int(sample.scene.removeprefix("scan"))]
        for position, vid in enumerate(sample.view_ids.tolist()):  # cams/depths 0-based, images 1-based on disk
            expected = np.clip(scene.images[vid] * dtu_writer.LIGHT_GAINS[sample.light], 0.0, 1.0)
            got = sample.images_raw[position].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(got, expected, atol=QUANTISATION)
            np.testing.assert_allclose(sample.K[position].numpy(), scene.K[vid], rtol=1e-6)
            np.testing.assert_allclose(sample.cam_from_world[position].numpy(), scene.cam_from_world[vid], atol=1e-3)
        np.testing.assert_array_equal(sample.depth.numpy(), scene.depths[sample.ref_view])
        np.testing.assert_array_equal(sample.mask.numpy(), scene.depths[sample.ref_view] > 0)


def test_sources_follow_pair_txt_order(dtu_train, train_set):
    for index in (0, 7 * 3, 7 * 5 + 2):  # items go scan -> reference view -> light
        sample = train_set[index]
        assert sample.ref_view == index // 7 and sample.light == index % 7
        assert sample.view_ids[1:].tolist() == _pair_sources(dtu_train[1][0], sample.ref_view, 3)


def test_depth_values_span(train_set):
    values = train_set[0].depth_values.double()
    interval = 2.5 * 1.6
    np.testing.assert_allclose(values.numpy(), 425.0 + interval * np.arange(16), rtol=1e-7)
    long = DTUTrainingSet(train_set.scenes[0].root, [2], num_views=2, num_depths=192, interval_scale=1.06, light=0)
    values = long[0].depth_values.double().numpy()
    assert len(values) == 192 and values[-1] == pytest.approx(425 + 2.65 * 191, rel=1e-6)  # no 193rd element


def test_center_normalisation_has_zero_mean_unit_std_per_image_and_channel(train_set, dtu_train):
    sample = train_set.sample(9)
    mean = sample.images.mean(dim=(-2, -1))
    std = sample.images.std(dim=(-2, -1), unbiased=False)
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(std.numpy(), 1.0, atol=1e-4)
    raw = sample.images_raw[0, 1].double() * 255.0  # JDACS: (I - mean) / (std + 1e-8) on 0..255 values
    jdacs = (raw - raw.mean()) / (raw.std(unbiased=False) + 1e-8)
    np.testing.assert_allclose(sample.images[0, 1].double().numpy(), jdacs.numpy(), atol=1e-5)
    unit = DTUTrainingSet(dtu_train[0], [2], num_views=4, num_depths=16, normalisation="unit").sample(9)
    assert torch.equal(unit.images, unit.images_raw)


def test_deterministic_under_the_seed_and_batches(train_set):
    first, again = train_set.sample(123), train_set.sample(123)
    for name in ("images", "K", "cam_from_world", "depth", "depth_values"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    drawn = {(s.scene, s.ref_view, s.light) for s in map(train_set.sample, range(8))}
    assert len(drawn) >= 6
    batches = SeededBatches(train_set, batch_size=2)
    batch = batches[(4, 77)]
    assert batch.images.shape == (2, 4, 3, HEIGHT, WIDTH) and len(batch.scene) == 2
    assert torch.equal(batch.images, batches[(4, 77)].images)
    assert not torch.equal(batch.images, batches[(4, 78)].images)


def test_indexing_counts_and_fixed_light(dtu_train, train_set):
    assert len(train_set) == len(SCANS) * NUM_SCAN_VIEWS * 7
    assert train_set[-1].scene == "scan6" and train_set[-1].light == 6
    one_light = DTUTrainingSet(dtu_train[0], SCANS, num_views=4, num_depths=16, light=3)
    assert len(one_light) == len(SCANS) * NUM_SCAN_VIEWS and {one_light[i].light for i in (0, 5, 11)} == {3}


def test_resized_inputs_keep_k_and_ground_truth_consistent(dtu_train):
    small = DTUTrainingSet(dtu_train[0], [2], num_views=3, num_depths=8, image_size=(32, 48), light=3)
    sample = small[4]
    assert sample.images.shape == (3, 3, 32, 48) and sample.depth.shape == (8, 12)
    written = dtu_train[1][0]
    np.testing.assert_allclose(sample.K[0].numpy(), resize_intrinsics(written.K[4], (HEIGHT, WIDTH), (32, 48)),
                               rtol=1e-6)
    # nearest neighbour with aligned centres: depth pixel (i, j) of 8x12 is pixel (2i + 1, 2j + 1) of 16x24
    np.testing.assert_array_equal(sample.depth.numpy(), written.depths[4][1::2, 1::2])
    np.testing.assert_array_equal(sample.mask.numpy(), written.depths[4][1::2, 1::2] > 0)


def test_clear_errors(dtu_train, tmp_path):
    root = dtu_train[0]
    with pytest.raises(ValueError, match="fewer than num_views"):
        DTUTrainingSet(root, [2], num_views=NUM_SCAN_VIEWS + 1)
    short = tmp_path / "dtu"
    for folder in ("Cameras", "Rectified/scan2_train", "Depths/scan2_train"):
        shutil.copytree(root / folder, short / folder)
    pairs = dtu_writer.view_selection_pairs(dtu_train[1][0].cam_from_world, num_sources=2)
    write_pair_txt(short / "Cameras" / "pair.txt", pairs)
    with pytest.raises(ValueError, match="pair.txt lists 2 source views for reference 0"):
        DTUTrainingSet(short, [2], num_views=4)
    assert len(DTUTrainingSet(short, [2], num_views=3)) == NUM_SCAN_VIEWS * 7
    with pytest.raises(ValueError, match="light"):
        DTUTrainingSet(root, [2], num_views=3, light=7)
    with pytest.raises(ValueError, match="divisible by 4"):
        DTUTrainingSet(root, [2], num_views=3, image_size=(30, 48))
    with pytest.raises(DataFormatError, match="scan9_train"):
        DTUTrainingSet(root, [2, 9], num_views=3)


# --- DTU test layout ------------------------------------------------------------------------------------------


def test_test_layout_resizes_images_and_k_without_ground_truth(tmp_path):
    written = dtu_writer.write(tmp_path, 1, 5, 96, 128, seed=2, layout="test", scans=[1])[0]
    dataset = DTUTestSet(tmp_path, [1], num_views=3, num_depths=32, image_size=(48, 64))
    assert len(dataset) == 5
    sample = dataset[2]
    assert sample.images.shape == (3, 3, 48, 64) and sample.light is None and sample.scene == "scan1"
    assert sample.view_ids[1:].tolist() == _pair_sources(written, 2, 2)
    np.testing.assert_allclose(sample.K[1].numpy(), resize_intrinsics(written.K[0], (96, 128), (48, 64)), rtol=1e-6)
    assert not sample.mask.any() and not sample.depth.any() and sample.depth.shape == (12, 16)
    np.testing.assert_allclose(sample.depth_values.numpy(), 425 + 2.5 * 1.06 * np.arange(32), rtol=1e-6)


# --- MVImgNet -------------------------------------------------------------------------------------------------


def test_mvimgnet_samples_depth_range_contains_the_object(mvimgnet):
    root, written = mvimgnet
    dataset = MVImgNetMVSSet(index_mvimgnet(root), image_size=(32, 32), num_views=4, num_depths=8)
    assert len(dataset) == 16
    for index in range(len(dataset)):
        sample = dataset[index]
        scene = written[index // 8]
        object_depth = scene.depths[sample.ref_view][scene.masks[sample.ref_view]]
        low, high = sample.depth_values[0].item(), sample.depth_values[-1].item()
        assert np.mean((object_depth >= low) & (object_depth <= high)) > 0.9
        assert low > 0.5 * object_depth.min() and high < 2.0 * object_depth.max()
        steps = np.diff(sample.depth_values.numpy())
        np.testing.assert_allclose(steps, (high - low) / 7, rtol=1e-4)
        assert sample.images.shape == (4, 3, 32, 32) and not sample.mask.any() and sample.depth.shape == (8, 8)
        views = dataset.instance_views(index // 8)
        assert sample.view_ids[1:].tolist() == views.sources[sample.ref_view, :3].tolist()
        np.testing.assert_allclose(sample.cam_from_world[1].numpy(), scene.cam_from_world[sample.view_ids[1]],
                                   atol=1e-5)
    assert dataset.instance_views(0) is dataset.instance_views(0)  # cached


def test_mvimgnet_instances_with_too_few_views_are_left_out_loudly(mvimgnet, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = MVImgNetMVSSet(index_mvimgnet(mvimgnet[0]), image_size=(32, 32), num_views=9)
    assert len(dataset) == 0 and len(dataset.skipped) == 2 and "fewer than num_views=9" in caplog.text


@pytest.mark.parametrize("size", [(40, 64), (120, 96)])  # shrink (crop rows) and enlarge (crop columns)
def test_resize_and_center_crop_moves_k_with_the_content(size):
    """A Gaussian blob drawn at the projection of a 3D point stays at that point's projection with the new K."""
    height, width = 90, 120
    K = make_K(100.0, 95.0, 61.3, 43.8)
    point = np.array([0.12, -0.07, 2.0])
    u, v = (K @ point)[:2] / point[2]
    rows, cols = np.mgrid[0:height, 0:width]
    blob = np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * 5.0**2))
    image = torch.from_numpy(np.repeat(blob[None], 3, axis=0)).float()
    out, K_new = resize_and_center_crop(image, K, size)
    assert out.shape == (3, *size)
    expected = (K_new @ point)[:2] / point[2]
    weights = out[0].double().numpy()
    out_rows, out_cols = np.mgrid[0 : size[0], 0 : size[1]]
    centroid = np.array([(weights * out_cols).sum(), (weights * out_rows).sum()]) / weights.sum()
    np.testing.assert_allclose(centroid, expected, atol=0.05)


def test_view_selection_scores_known_answer():
    """Three cameras, two points: angles at the points of 5°, 30°, 25° (point 0) and 4° (point 1, cameras A, C)."""
    def camera_at(center):
        cam_from_world = np.eye(4)
        cam_from_world[:3, 3] = -np.asarray(center)
        return cam_from_world

    angles = np.radians([0.0, 5.0, 30.0])
    centers = 10.0 * np.stack([np.sin(angles), np.zeros(3), -np.cos(angles)], axis=1)  # around point 0 = origin
    midpoint, half = (centers[0] + centers[2]) / 2, np.linalg.norm(centers[2] - centers[0]) / 2
    normal = np.cross(centers[2] - centers[0], [0.0, 1.0, 0.0])
    point1 = midpoint + normal / np.linalg.norm(normal) * half / np.tan(np.radians(2.0))  # sees A and C at 4°
    views = [View(name=str(i), image_path=f"{i}.png", height=8, width=8, K=np.eye(3),
                  cam_from_world=camera_at(c), near=1.0, far=2.0) for i, c in enumerate(centers)]
    scene = Scene(name="toy", dataset="test", root=".", views=views,
                  meta={"points_xyz": np.stack([np.zeros(3), point1]),
                        "view_point_rows": [np.array([0, 1]), np.array([0]), np.array([0, 1])]})
    scores = view_selection_scores(scene)
    ab, ac, bc = 1.0, np.exp(-(25.0**2) / 200) + np.exp(-0.5), np.exp(-(20.0**2) / 200)
    np.testing.assert_allclose(scores, [[0, ab, ac], [ab, 0, bc], [ac, bc, 0]], rtol=1e-9, atol=1e-12)
    assert ranked_sources(scores).tolist() == [[1, 2], [0, 2], [0, 1]]


def test_center_image_and_collate_checks():
    images = torch.rand(2, 3, 5, 7) * 0.5 + 0.2
    centred = center_image(images)
    np.testing.assert_allclose(centred.mean(dim=(-2, -1)).numpy(), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        collate_mvs_samples([])
