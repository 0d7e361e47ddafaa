"""Fuse a scan's depth maps into a coloured point cloud with photometric and geometric filtering.

MVSNet_pytorch's `eval.py` fusion (`filter_depth`, `check_geometric_consistency`, `reproject_with_depth`),
vectorised over pixels (loops over (reference, source) pairs only), on any device, in float64:

* photometric: keep reference pixels whose confidence > `prob_threshold` (0.8);
* geometric, per source view: lift the reference pixel with its depth, project it into the source, read the
  source depth there (bilinear, 0 outside the image — cv2.remap INTER_LINEAR in the original), lift that
  source pixel with the read depth and project it back into the reference. The source is consistent where
  the round trip lands < `reproj_threshold_px` (1 px) from the pixel and its depth differs from the
  reference depth by < `rel_depth_threshold` (1 %) relative; keep pixels consistent in >= `num_consistent`
  (3) sources of the reference's pair list (all listed sources, as the original);
* output point: the reference pixel lifted with the average of its own depth and the consistent
  round-tripped depths (the original's `depth_est_averaged`), coloured by the reference image.

The original hard-codes DTU's image-to-depth subsampling of the colours (`ref_img[1:-16:4, 1::4]`); here
the caller passes images already at the depth resolution. (JDACS itself fuses with Gipuma's fusibile.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from multiview.geometry.projection import (
    inside_image,
    pixel_grid,
    pixels_to_camera_points,
    project_camera_points,
    sample_at_pixels,
    unproject,
)
from multiview.geometry.transforms import invert_rigid, relative_transform, transform_points


def _check(name: str, tensor: torch.Tensor, shape: tuple) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def check_geometric_consistency(ref_depth: torch.Tensor, K_ref: torch.Tensor, ref_cam_from_world: torch.Tensor,
                                src_depth: torch.Tensor, K_src: torch.Tensor, src_cam_from_world: torch.Tensor,
                                reproj_threshold_px: float = 1.0, rel_depth_threshold: float = 0.01):
    """Which reference pixels a source depth map confirms (module docstring).

    Args:
        ref_depth: (h, w) reference depth (0 = none); K_ref (3, 3) for it; ref_cam_from_world (4, 4).
        src_depth: (hs, ws) source depth (0 = none); K_src (3, 3) for it; src_cam_from_world (4, 4).
    Returns:
        consistent (h, w) bool; reprojected_depth (h, w): the round-tripped depth where consistent, else 0.
    """
    height, width = ref_depth.shape
    uv = pixel_grid(height, width, ref_depth.device, ref_depth.dtype).reshape(-1, 2)
    depth = ref_depth.reshape(-1)
    src_from_ref = relative_transform(src_cam_from_world, ref_cam_from_world)
    points_src = transform_points(src_from_ref, pixels_to_camera_points(uv, depth, K_ref))
    uv_src, z_src = project_camera_points(points_src, K_src)
    sampled = sample_at_pixels(src_depth[None, None], uv_src[None])[0, 0]
    points_back = transform_points(invert_rigid(src_from_ref), pixels_to_camera_points(uv_src, sampled, K_src))
    uv_back, depth_back = project_camera_points(points_back, K_ref)
    consistent = (
        (depth > 0) & (z_src > 0) & inside_image(uv_src, *src_depth.shape) & (sampled > 0)
        & ((uv_back - uv).norm(dim=-1) < reproj_threshold_px)
        & ((depth_back - depth).abs() < rel_depth_threshold * depth)
    )
    reprojected = torch.where(consistent, depth_back, torch.zeros_like(depth_back))
    return consistent.reshape(height, width), reprojected.reshape(height, width)


def filter_reference_depth(ref: int, sources: Sequence[int], depths: torch.Tensor, confidences: torch.Tensor,
                           K: torch.Tensor, cam_from_world: torch.Tensor, prob_threshold: float = 0.8,
                           num_consistent: int = 3, reproj_threshold_px: float = 1.0,
                           rel_depth_threshold: float = 0.01):
    """The fusion filter of one reference view against its sources (module docstring).

    Args:
        depths, confidences: (V, h, w); K: (V, 3, 3) at that resolution; cam_from_world: (V, 4, 4).
    Returns:
        keep (h, w) bool; fused_depth (h, w): mean of the reference depth and its consistent round trips.
    """
    depth_sum = depths[ref].clone()
    count = torch.zeros_like(depths[ref], dtype=torch.int64)
    for src in sources:
        consistent, reprojected = check_geometric_consistency(
            depths[ref], K[ref], cam_from_world[ref], depths[src], K[src], cam_from_world[src],
            reproj_threshold_px, rel_depth_threshold)
        count += consistent
        depth_sum += reprojected
    keep = (confidences[ref] > prob_threshold) & (count >= num_consistent)
    return keep, depth_sum / (count + 1)


def _source_ids(pairs, ref: int) -> list[int]:
    """Source view ids of `ref` from {ref: [src or (src, score), ...]} or a list indexed by ref."""
    return [int(entry[0]) if isinstance(entry, (tuple, list)) else int(entry) for entry in pairs[ref]]


def fuse_scan(depths, confidences, images, K, cam_from_world, pairs: Mapping | Sequence, prob_threshold: float = 0.8,
              num_consistent: int = 3, reproj_threshold_px: float = 1.0, rel_depth_threshold: float = 0.01):
    """Fuse the depth maps of a scan into world points (module docstring).

    Args:
        depths: (V, h, w) depth maps (0 = none); confidences: (V, h, w) photometric confidences.
        images: (V, h, w, 3) colours at the depth resolution (float in [0, 1] or uint8).
        K: (V, 3, 3) intrinsics at the depth resolution; cam_from_world: (V, 4, 4).
        pairs: each view's source views, {ref: [src, ...]} or {ref: [(src, score), ...]} (Scene.meta["pairs"]).
    Returns:
        points (N, 3) float64 world points; colours (N, 3) (dtype of `images`), on the device of `depths`.
    """
    depths = torch.as_tensor(depths)
    device = depths.device
    depths = depths.to(torch.float64)
    num_views, height, width = depths.shape
    confidences = torch.as_tensor(confidences, device=device)
    images = torch.as_tensor(images, device=device)
    K = torch.as_tensor(K, device=device, dtype=torch.float64)
    cam_from_world = torch.as_tensor(cam_from_world, device=device, dtype=torch.float64)
    for name, tensor, shape in (("confidences", confidences, (num_views, height, width)),
                                ("images", images, (num_views, height, width, 3)), ("K", K, (num_views, 3, 3)),
                                ("cam_from_world", cam_from_world, (num_views, 4, 4))):
        _check(name, tensor, shape)
    uv = pixel_grid(height, width, device, torch.float64)
    points, colours = [], []
    for ref in range(num_views):
        keep, fused_depth = filter_reference_depth(ref, _source_ids(pairs, ref), depths, confidences, K,
                                                   cam_from_world, prob_threshold, num_consistent,
                                                   reproj_threshold_px, rel_depth_threshold)
        points.append(unproject(uv[keep], fused_depth[keep], K[ref], invert_rigid(cam_from_world[ref])))
        colours.append(images[ref][keep])
    return torch.cat(points), torch.cat(colours)
