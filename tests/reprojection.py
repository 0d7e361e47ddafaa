"""The convention test shared by every format: ground-truth depth of view i, reprojected with the
reader's cameras into view j, must fetch the same colours as view i where the point is visible."""

from __future__ import annotations

import numpy as np
import torch

from multiview.data.loading import load_image
from multiview.data.records import Scene
from multiview.geometry.intrinsics import resize_intrinsics
from multiview.geometry.projection import backproject_depth, inside_image, project, sample_at_pixels


def reprojection_errors(scene: Scene, i: int, j: int, depth_i: np.ndarray, depth_j: np.ndarray,
                        occlusion_tolerance: float = 0.01):
    """Per-pixel |colour_i − colour_j(reprojected)| (N, 3) over pixels of view i that are visible in j.

    depth_i, depth_j: ground-truth camera-z maps of views i and j (any resolution with the image's
    field of view; 0 = invalid), in the reader's world units.
    """
    vi, vj = scene.views[i], scene.views[j]
    f64 = torch.float64
    img_i = torch.from_numpy(load_image(vi)).permute(2, 0, 1)[None].to(f64)
    img_j = torch.from_numpy(load_image(vj)).permute(2, 0, 1)[None].to(f64)
    h, w = depth_i.shape
    K_i = torch.from_numpy(resize_intrinsics(vi.K, (vi.height, vi.width), (h, w)))[None]
    points = backproject_depth(torch.from_numpy(depth_i).to(f64)[None], K_i,
                               torch.from_numpy(vi.world_from_cam)[None]).reshape(1, -1, 3)
    uv_j, z_j = project(points, torch.from_numpy(vj.K)[None], torch.from_numpy(vj.cam_from_world)[None])
    # visibility: depth_j sampled at the projection agrees with the point's depth in j
    hj, wj = depth_j.shape
    K_jd = torch.from_numpy(resize_intrinsics(vj.K, (vj.height, vj.width), (hj, wj)))[None]
    uv_jd, _ = project(points, K_jd, torch.from_numpy(vj.cam_from_world)[None])
    nearest = uv_jd.round().long()
    inside = inside_image(uv_jd, hj, wj)[0] & inside_image(uv_j, vj.height, vj.width)[0]
    u = nearest[0, :, 0].clamp(0, wj - 1)
    v = nearest[0, :, 1].clamp(0, hj - 1)
    seen_depth = torch.from_numpy(depth_j).to(f64)[v, u]
    z = z_j[0]
    valid_i = torch.from_numpy(depth_i.reshape(-1) > 0)
    visible = inside & valid_i & (z > 0) & (seen_depth > 0) & ((seen_depth - z).abs() < occlusion_tolerance * z)
    # colours of view i at the depth-map pixels, of view j at the reprojection
    uv_i_img = project(points, torch.from_numpy(vi.K)[None], torch.from_numpy(vi.cam_from_world)[None])[0]
    colour_i = sample_at_pixels(img_i, uv_i_img)[0].T
    colour_j = sample_at_pixels(img_j, uv_j)[0].T
    return (colour_i - colour_j)[visible].abs().numpy()


def assert_reprojection_consistent(scene: Scene, depths: dict[int, np.ndarray], pairs=None,
                                   min_visible: int = 200, max_median: float = 0.03):
    """Assert the convention test for pairs of views (default: each view with its successor).

    Args:
        depths: ground-truth depth maps keyed by view index (reader order), reader's world units.
        min_visible: each pair must share at least this many visible pixels (guards against vacuous passes).
        max_median: bound on the median absolute colour difference (8-bit quantisation + bilinear).
    """
    indices = sorted(depths)
    pairs = pairs or list(zip(indices[:-1], indices[1:]))
    for i, j in pairs:
        errors = reprojection_errors(scene, i, j, depths[i], depths[j])
        assert len(errors) >= min_visible, f"views {i}->{j}: only {len(errors)} co-visible pixels"
        median = float(np.median(errors))
        assert median < max_median, f"views {i}->{j}: median colour error {median:.4f} >= {max_median}"
