"""Depth metrics: a hand-computed 3x3 case, the error-fraction relation, NaN-free aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multiview.metrics.depth import accuracy_key, aggregate_depth_metrics, depth_metrics

GT = np.full((3, 3), 500.0)
# |error| per pixel:  0, 1, 2 / 3, 4, 5 / 8, 9, 100 (the 100 is masked out below)
PRED = GT + np.array([[0.0, -1.0, 2.0], [3.0, -4.0, 5.0], [-8.0, 9.0, 100.0]])
MASK = np.array([[True, True, True], [True, True, True], [True, True, False]])


def test_hand_computed_3x3():
    metrics = depth_metrics(PRED, GT, MASK)
    # 8 valid pixels, errors 0 1 2 3 4 5 8 9: mean 32/8 = 4; <=2: 3 of 8; <=4: 5 of 8; <=8: 7 of 8
    assert metrics["abs_error_mm"] == pytest.approx(4.0)
    assert metrics["accuracy_2mm"] == pytest.approx(37.5)
    assert metrics["accuracy_4mm"] == pytest.approx(62.5)
    assert metrics["accuracy_8mm"] == pytest.approx(87.5)
    assert metrics["num_valid_pixels"] == 8


def test_accuracy_is_one_minus_the_originals_error_fraction():
    rng = np.random.default_rng(0)
    gt = rng.uniform(425, 935, (16, 20))
    pred = gt + rng.normal(scale=6.0, size=gt.shape)
    mask = rng.random(gt.shape) > 0.3
    metrics = depth_metrics(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), torch.from_numpy(mask),
                            thresholds_mm=(2, 4, 8, 0.5))
    error = np.abs(pred - gt)[mask]
    for threshold in (2, 4, 8, 0.5):
        thres_error = np.mean(error > threshold)  # MVSNet_pytorch's Thres_metrics
        assert metrics[accuracy_key(threshold)] == pytest.approx(100 * (1 - thres_error), abs=1e-3)
    assert accuracy_key(0.5) == "accuracy_0.5mm"


def test_aggregate_is_the_mean_over_images_and_reports_images_without_ground_truth():
    first = depth_metrics(PRED, GT, MASK)
    second = depth_metrics(GT + 1.0, GT, np.ones((3, 3), dtype=bool))  # abs 1, every accuracy 100
    empty = depth_metrics(PRED, GT, np.zeros((3, 3), dtype=bool))
    assert math.isnan(empty["abs_error_mm"]) and empty["num_valid_pixels"] == 0
    summary = aggregate_depth_metrics([first, second, empty])
    assert summary["abs_error_mm"] == pytest.approx(2.5)  # per image mean, not per pixel (4·8 + 1·9) / 17
    assert summary["accuracy_2mm"] == pytest.approx((37.5 + 100) / 2)
    assert summary["num_images"] == 2 and summary["num_images_without_ground_truth"] == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(PRED, GT[:2], MASK)
    with pytest.raises(ValueError, match="bool"):
        depth_metrics(PRED, GT, MASK.astype(np.float32))
