"""Supervised depth loss of MVSNet_pytorch (`mvsnet_loss`), for comparison with self-supervised JDACS."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_smooth_l1_depth(depth_pred: torch.Tensor, depth_gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (β = 1, depth units) of predicted vs ground-truth depth, mean over mask > 0.5 (0 if none).

    MVSNet's paper calls its loss L1; MVSNet_pytorch's `mvsnet_loss` (which JDACS keeps) is this smooth-L1.

    Args:
        depth_pred, depth_gt: (B, h, w); mask: (B, h, w) ground-truth validity (bool or float).
    """
    if depth_pred.shape != depth_gt.shape or depth_gt.shape != mask.shape:
        raise ValueError(f"depth_pred, depth_gt and mask must have the same (B, h, w) shape, got "
                         f"{tuple(depth_pred.shape)}, {tuple(depth_gt.shape)}, {tuple(mask.shape)}")
    valid = mask > 0.5
    return F.smooth_l1_loss(depth_pred[valid], depth_gt[valid], reduction="sum") / valid.sum().clamp(min=1)
