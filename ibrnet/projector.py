"""Project ray samples into all source views at once and gather what the aggregator needs.

As the original (ibrnet/projection.py) but vectorised over views by broadcasting (no per-view loop,
no `.repeat` of the points): colours are sampled from the full-resolution images and features from
the feature maps with the same normalised grid (align_corners=True), the mask is "inside the
full-resolution image and in front of the camera", and the ray-direction difference is the unit
direction of d_tar − d_src plus the cosine d_tar·d_src, with d = unit vector from the point to a
camera centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from multiview.geometry.projection import inside_image, pixel_to_grid
from multiview.geometry.transforms import transform_points


@dataclass
class Projection:
    """Per sample and source view: rgb_feat (R, S, V, 3 + C), ray_diff (R, S, V, 4), mask (R, S, V) bool.

    All are permuted views of view-major storage ((V, ·, R, S) contiguous): the aggregator works on
    (V, C, R·S) and gets them without a copy. `colours` (R, S, V, 3) holds the values of
    rgb_feat[..., :3] as a tensor of its own (the aggregator blends them without slicing rgb_feat).
    """

    rgb_feat: torch.Tensor
    ray_diff: torch.Tensor
    mask: torch.Tensor
    colours: torch.Tensor | None = None


def _ray_direction_difference_view_major(points: torch.Tensor, target_center: torch.Tensor,
                                         source_centers: torch.Tensor) -> torch.Tensor:
    """(P, 3) points, (3,) target and (V, 3) source centres -> (V, 4, P), component-major."""
    points = points.t()  # (3, P)
    to_target = target_center[:, None] - points
    to_target = to_target / (to_target.norm(dim=0, keepdim=True) + 1e-6)  # (3, P)
    to_source = source_centers[:, :, None] - points
    to_source = to_source / (to_source.norm(dim=1, keepdim=True) + 1e-6)  # (V, 3, P)
    difference = to_target - to_source
    direction = difference / difference.norm(dim=1, keepdim=True).clamp_min(1e-6)
    cosine = (to_target * to_source).sum(dim=1, keepdim=True)
    return torch.cat([direction, cosine], dim=1)


def ray_direction_difference(points: torch.Tensor, target_center: torch.Tensor, source_centers: torch.Tensor):
    """(R, S, 3) points, (3,) target and (V, 3) source camera centres -> (R, S, V, 4) (a view-major view)."""
    R, S, _ = points.shape
    V = source_centers.shape[0]
    out = _ray_direction_difference_view_major(points.reshape(R * S, 3), target_center, source_centers)
    return out.view(V, 4, R, S).permute(2, 3, 0, 1)


def project_to_sources(points: torch.Tensor, target_center: torch.Tensor, images: torch.Tensor,
                       features: torch.Tensor, K: torch.Tensor, cam_from_world: torch.Tensor,
                       world_from_cam: torch.Tensor) -> Projection:
    """Gather source colours, features, visibility masks and ray differences for every sample.

    Args:
        points: (R, S, 3) world points; target_center: (3,) target camera centre.
        images: (V, 3, H, W) source images in [0, 1]; features: (V, C, h, w) their feature maps.
        K: (V, 3, 3) for (H, W); cam_from_world, world_from_cam: (V, 4, 4).
    """
    R, S, _ = points.shape
    V, _, H, W = images.shape
    points = points.reshape(R * S, 3)
    points_cam = transform_points(cam_from_world, points[None])  # (V, RS, 3)
    pixels = points_cam @ K.transpose(-1, -2)
    depth = pixels[..., 2]
    # the original divides by max(z, 1e-8): points behind a camera land far outside its image
    uv = (pixels[..., :2] / depth[..., None].clamp_min(1e-8)).clamp(-1e6, 1e6)
    mask = inside_image(uv, H, W) & (depth > 0)  # (V, RS)
    grid = pixel_to_grid(uv, H, W).reshape(V, 1, R * S, 2).to(images.dtype)
    colours = F.grid_sample(images, grid, align_corners=True)  # (V, 3, 1, RS)
    feats = F.grid_sample(features, grid.to(features.dtype), align_corners=True)  # (V, C, 1, RS)
    rgb_feat = torch.cat([colours, feats.to(colours.dtype)], dim=1).view(V, -1, R, S).permute(2, 3, 0, 1)
    ray_diff = _ray_direction_difference_view_major(points, target_center, world_from_cam[:, :3, 3])
    return Projection(rgb_feat, ray_diff.view(V, 4, R, S).permute(2, 3, 0, 1), mask.view(V, R, S).permute(1, 2, 0),
                      colours.view(V, 3, R, S).permute(2, 3, 0, 1))
