"""Tests of `jdacs.losses`; the two synthetic samples they share: `render_plane` (analytic textured plane)
and `render_sample` (a rendered scene seen from the synthetic DTU rig)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from multiview.geometry.intrinsics import make_K, resize_intrinsics
from multiview.geometry.transforms import relative_transform
from multiview.synthetic.render import make_scene, render
from multiview.synthetic.writers.dtu import SCENE_SCALE, dtu_rig

# a view of the synthetic 7x7 DTU rig (row 2, column 3) and its four grid neighbours
RIG_VIEWS = (17, 18, 16, 10, 24)
GROUND_RADIUS = 8.0  # scene units (x SCENE_SCALE = 2 m)
PLANE_SLOPE = 0.2  # the plane Z = PLANE_DEPTH + PLANE_SLOPE * X in the reference camera frame (mm)
PLANE_DEPTH = 500.0


@dataclass
class Sample:
    """One reference + sources, batch of 1 (float32). images: (1, V, 3, H, W) in [0, 1] at full resolution;
    images_small: (1, V, 3, h, w) at the depth resolution; depth: (1, h, w) reference ground truth in mm;
    K: (1, 3, 3) and K_src: (1, V−1, 3, 3) at the depth resolution; src_from_ref: (1, V−1, 4, 4)."""

    images: torch.Tensor
    images_small: torch.Tensor
    depth: torch.Tensor
    K: torch.Tensor
    K_src: torch.Tensor
    src_from_ref: torch.Tensor

    def geometry(self, depth: torch.Tensor | None = None):
        """(depth, K_ref, K_src, src_from_ref) as the losses take them (the ground-truth depth by default)."""
        return (self.depth if depth is None else depth), self.K, self.K_src, self.src_from_ref


def _batch(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array)).float()[None]


def render_sample(num_views: int = 5, depth_hw: tuple[int, int] = (32, 40), seed: int = 4, factor: int = 4) -> Sample:
    """Render views of `make_scene(seed)` (mm) from the synthetic DTU rig at `factor` × depth_hw, its ground
    disc enlarged so that every pixel hits the objects or the ground: the depth is valid everywhere."""
    h, w = depth_hw
    K, cam_from_world = dtu_rig(49, h * factor, w * factor)
    cams = cam_from_world[list(RIG_VIEWS[:num_views])]
    K_small = resize_intrinsics(K, (h * factor, w * factor), depth_hw)
    scene = make_scene(seed, scale=SCENE_SCALE)
    scene.ground.radius = GROUND_RADIUS
    images = torch.from_numpy(np.stack([render(scene, K, c, h * factor, w * factor).rgb for c in cams]))
    images = images.permute(0, 3, 1, 2)[None]
    depth = render(scene, K_small, cams[0], h, w).depth
    assert (depth > 0).all()
    return Sample(
        images=images,
        images_small=F.avg_pool2d(images[0], factor)[None],
        depth=_batch(depth),
        K=_batch(K_small),
        K_src=_batch(K_small).expand(1, num_views - 1, 3, 3),
        src_from_ref=_batch([relative_transform(c, cams[0]) for c in cams[1:]]),
    )


def _rigid(angle_y: float, t) -> np.ndarray:
    c, s = math.cos(angle_y), math.sin(angle_y)
    T = np.eye(4)
    T[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    T[:3, 3] = t
    return T


def _plane_image(K: np.ndarray, cam_from_ref: np.ndarray, H: int, W: int):
    """Analytic render of the textured plane: (3, H, W) colours and (H, W) camera-z depth."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # camera frame, z = 1
    ref_from_cam = np.linalg.inv(cam_from_ref)
    origin, dirs = ref_from_cam[:3, 3], rays @ ref_from_cam[:3, :3].T
    t = (PLANE_DEPTH - origin[2] + PLANE_SLOPE * origin[0]) / (dirs[..., 2] - PLANE_SLOPE * dirs[..., 0])
    X, Y = (origin + t[..., None] * dirs)[..., 0], (origin + t[..., None] * dirs)[..., 1]
    colours = [0.5 + 0.2 * np.sin(2 * np.pi * (a * X + b * Y) + p) + 0.1 * np.cos(2 * np.pi * (b * X - a * Y))
               for a, b, p in ((1 / 230, 1 / 310, 0.3), (-1 / 270, 1 / 190, 1.1), (1 / 350, -1 / 240, 2.0))]
    return np.stack(colours), t  # t is the camera z: the rays have z = 1


def render_plane(H: int = 24, W: int = 32) -> Sample:
    """Reference + 4 sources (the second with other intrinsics) looking at a smoothly textured tilted plane;
    images are exact per-pixel colours (images = images_small)."""
    K_ref = make_K(40.0, 41.0, 16.3, 11.2)
    K_srcs = [K_ref, make_K(46.0, 45.0, 14.0, 12.5), K_ref, make_K(38.0, 39.0, 15.0, 11.0)]
    poses = [_rigid(0.04, [-30.0, 0.0, 0.0]), _rigid(-0.05, [35.0, 5.0, 2.0]), _rigid(0.0, [0.0, -25.0, 0.0]),
             _rigid(0.02, [10.0, 25.0, -5.0])]
    ref_image, depth = _plane_image(K_ref, np.eye(4), H, W)
    images = _batch([ref_image] + [_plane_image(K, T, H, W)[0] for K, T in zip(K_srcs, poses)])
    return Sample(images=images, images_small=images, depth=_batch(depth), K=_batch(K_ref), K_src=_batch(K_srcs),
                  src_from_ref=_batch(poses))
