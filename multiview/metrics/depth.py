"""Depth-map metrics as MVSNet_pytorch / JDACS validate on DTU (`utils.py` `AbsDepthError_metrics`,
`Thres_metrics`), reported as accuracies.

Per image, over the ground-truth-valid pixels M (DTU: depth_visual/255 > 0.5), at the network's output
resolution (no upsampling):

    abs_error_mm   = mean_M |pred − gt|
    accuracy_Xmm   = 100 · mean_M [ |pred − gt| <= X ]   (percent, 0..100)

The originals log `thresXmm_error = mean_M [ |pred − gt| > X ]` (a fraction of *wrong* pixels), so
accuracy_Xmm = 100 · (1 − thresXmm_error) exactly; MVImgNet's "accuracy @ 2/4/8 mm" table is read this way.
Over a test set the per-image values are averaged with equal weight per image (`aggregate_depth_metrics`),
as the originals' `DictAverageMeter` does. Units are the depth's (mm for DTU).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

DEFAULT_THRESHOLDS_MM = (2.0, 4.0, 8.0)


def accuracy_key(threshold_mm: float) -> str:
    """The metric name of one threshold, e.g. 2 -> "accuracy_2mm", 0.5 -> "accuracy_0.5mm"."""
    return f"accuracy_{threshold_mm:g}mm"


def _as_float64(array) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def depth_metrics(pred, gt, mask, thresholds_mm: Sequence[float] = DEFAULT_THRESHOLDS_MM) -> dict[str, float]:
    """Metrics of one depth map (module docstring).

    Args:
        pred, gt: (h, w) predicted and ground-truth depth (numpy or torch, any device).
        mask: (h, w) bool, True where the ground truth is valid.
        thresholds_mm: the X of each accuracy_Xmm.
    Returns:
        {"abs_error_mm", "accuracy_Xmm" for each X, "num_valid_pixels"}; with no valid pixel every
        metric is NaN (num_valid_pixels 0).
    """
    pred, gt = _as_float64(pred), _as_float64(gt)
    mask = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    if pred.dim() != 2 or pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(f"pred, gt and mask must all have the same shape (h, w), got {tuple(pred.shape)}, "
                         f"{tuple(gt.shape)} and {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got {mask.dtype}")
    error = (pred[mask] - gt[mask]).abs()
    count = error.numel()
    metrics = {"abs_error_mm": error.mean().item() if count else math.nan}
    for threshold in thresholds_mm:
        metrics[accuracy_key(threshold)] = 100.0 * (error <= threshold).double().mean().item() if count else math.nan
    metrics["num_valid_pixels"] = count
    return metrics


def aggregate_depth_metrics(per_image: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images (each image weighs the same, whatever its valid-pixel count).

    Images without any valid pixel (num_valid_pixels 0) are left out of the means and counted in
    "num_images_without_ground_truth" (the originals would turn the whole mean into NaN);
    "num_images" counts the images averaged.
    """
    per_image = list(per_image)
    scored = [m for m in per_image if m["num_valid_pixels"] > 0]
    keys = [k for k in (per_image[0] if per_image else {}) if k != "num_valid_pixels"]
    summary = {key: float(np.mean([m[key] for m in scored])) if scored else math.nan for key in keys}
    summary["num_images"] = len(scored)
    summary["num_images_without_ground_truth"] = len(per_image) - len(scored)
    return summary
