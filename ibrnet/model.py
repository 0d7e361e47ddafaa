"""IBRNet: feature net + projector + coarse/fine aggregators + sampling + compositing, in one module.

Data contract for one target view: `Rays` (world-space, directions with camera-z 1 so that t is
depth) and `Sources` (V source images with their cameras, OpenCV convention). Module names
(`feature_net`, `net_coarse`, `net_fine`) match the original release so checkpoints import 1:1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from ibrnet import aggregator_native
from ibrnet.aggregator import IBRNetAggregator
from ibrnet.feature_net import ResUNet
from ibrnet.projector import project_to_sources
from multiview.engine.cpu_threads import map_on_threads
from multiview.geometry.transforms import invert_rigid
from multiview.render.compositing import Composited, composite
from multiview.render.sampling import importance_depths, stratified_depths


@dataclass
class Rays:
    """R rays of one target view: origins (R, 3), directions (R, 3) with camera-z 1, near/far (R,)."""

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor

    def __getitem__(self, index) -> Rays:
        return Rays(self.origins[index], self.directions[index], self.near[index], self.far[index])

    def __len__(self) -> int:
        return self.origins.shape[0]


@dataclass
class Sources:
    """V source views: images (V, 3, H, W) in [0, 1], K (V, 3, 3), cam_from_world (V, 4, 4)."""

    images: torch.Tensor
    K: torch.Tensor
    cam_from_world: torch.Tensor

    @property
    def world_from_cam(self) -> torch.Tensor:
        return invert_rigid(self.cam_from_world)


@dataclass
class RenderOutput:
    """Coarse and (when the model has a fine pass) fine compositing results, plus their sample depths."""

    coarse: Composited
    coarse_depths: torch.Tensor
    fine: Composited | None = None
    fine_depths: torch.Tensor | None = None


class IBRNet(nn.Module):
    """Generalizable image-based renderer.

    Args:
        coarse_feature_channels, fine_feature_channels: split of the ResUNet's 64 output channels.
        num_coarse_samples, num_fine_samples: samples per ray (the fine net sees coarse + fine).
        inverse_depth: stratified samples uniform in 1/z (IBRNet's `inv_uniform`).
        anti_alias_pooling, use_sdpa: see `IBRNetAggregator`.
        white_background: composite on white (synthetic object datasets).
        max_points_per_pass: without autograd, rays are evaluated in slices of at most this many
            samples (memory bound for rendering; the result does not depend on it).
        render_workers: without autograd on the CPU, this many slices are evaluated at once on worker
            threads with single-threaded ops (`multiview.engine.cpu_threads`); 0 = torch's thread count,
            1 = one slice at a time with multithreaded ops.
        native_cpu_kernel: see `IBRNetAggregator` (the aggregators compiled to C on the CPU).
    """

    def __init__(self, coarse_feature_channels: int = 32, fine_feature_channels: int = 32,
                 num_coarse_samples: int = 64, num_fine_samples: int = 64, inverse_depth: bool = True,
                 anti_alias_pooling: bool = True, use_sdpa: bool = True, white_background: bool = False,
                 max_points_per_pass: int = 16384, render_workers: int = 0, native_cpu_kernel: bool = True):
        super().__init__()
        self.num_coarse_samples, self.num_fine_samples = num_coarse_samples, num_fine_samples
        self.inverse_depth, self.white_background = inverse_depth, white_background
        if render_workers < 0:
            raise ValueError(f"render_workers must be >= 0 (0 = torch's thread count), got {render_workers}")
        self.max_points_per_pass, self.render_workers = max_points_per_pass, render_workers
        self.feature_net = ResUNet(coarse_feature_channels, fine_feature_channels)
        self.net_coarse = IBRNetAggregator(coarse_feature_channels, num_coarse_samples, anti_alias_pooling, use_sdpa,
                                           native_cpu_kernel)
        self.net_fine = None
        if num_fine_samples > 0:
            self.net_fine = IBRNetAggregator(fine_feature_channels, num_coarse_samples + num_fine_samples,
                                             anti_alias_pooling, use_sdpa, native_cpu_kernel)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source images (V, 3, H, W) -> coarse and fine feature maps (computed once per target)."""
        return self.feature_net(images)

    def _evaluate(self, net: IBRNetAggregator, rays: Rays, depths: torch.Tensor, sources: Sources,
                  features: torch.Tensor, target_center: torch.Tensor) -> Composited:
        """Project, aggregate and composite the samples `depths` (R, S) of `rays`.

        Without autograd (rendering) the rays go through in slices of at most `max_points_per_pass`
        samples: rays are independent, so the result is the same, and the PyTorch path's per-view
        activations (V views × 64 channels × R·S floats, tens of MB per slice) stay bounded — 4096 rays ×
        128 samples at once would need several GiB. On the CPU, `render_workers` slices run at once (and
        with the C kernel nothing per view is stored at all). With autograd the activations are kept for
        the backward pass anyway: one pass.
        """
        num_rays = len(rays)
        step = max(1, self.max_points_per_pass // depths.shape[1])
        if torch.is_grad_enabled() or num_rays <= step:
            return self._evaluate_slice(net, rays, depths, sources, features, target_center)

        def evaluate(start: int) -> Composited:
            end = start + step
            return self._evaluate_slice(net, rays[start:end], depths[start:end], sources, features, target_center)

        workers = (self.render_workers or torch.get_num_threads()) if depths.device.type == "cpu" else 1
        parts = map_on_threads(evaluate, range(0, num_rays, step), workers)
        return Composited(*(torch.cat([getattr(part, field.name) for part in parts])
                            for field in dataclasses.fields(Composited)))

    def _evaluate_slice(self, net: IBRNetAggregator, rays: Rays, depths: torch.Tensor, sources: Sources,
                        features: torch.Tensor, target_center: torch.Tensor) -> Composited:
        points = rays.origins[:, None, :] + depths[..., None] * rays.directions[:, None, :]  # (R, S, 3)
        cameras = (sources.images, features, sources.K, sources.cam_from_world, sources.world_from_cam)
        if net.uses_native_kernel(points):  # projection and aggregation in one C call
            rgb, sigma, num_views = aggregator_native.render_points(net, points, target_center, *cameras)
        elif net.uses_native_training_kernel(features, points, sources.images):  # projection in C too
            rgb, sigma, num_views = net.forward_from_points(points, target_center, *cameras)
        else:
            projection = project_to_sources(points, target_center, *cameras)
            rgb, sigma = net(projection.rgb_feat, projection.ray_diff, projection.mask, projection.colours)
            num_views = projection.mask.sum(dim=-1)
        return composite(rgb, sigma, depths, num_views > 1, self.white_background)  # valid: seen by >= 2 views

    def forward(self, rays: Rays, sources: Sources, features: tuple[torch.Tensor, torch.Tensor],
                target_center: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> RenderOutput:
        """Render rays of one target.

        Args:
            features: `encode(sources.images)`.
            target_center: (3,) world position of the target camera (for the ray-direction features).
            deterministic: no jitter in either pass (evaluation; IBRNet's `det`).
        """
        coarse_depths = stratified_depths(rays.near, rays.far, self.num_coarse_samples, self.inverse_depth,
                                          deterministic, generator)
        coarse = self._evaluate(self.net_coarse, rays, coarse_depths, sources, features[0], target_center)
        output = RenderOutput(coarse, coarse_depths)
        if self.net_fine is not None:
            fine_depths = importance_depths(coarse_depths, coarse.weights, self.num_fine_samples,
                                            self.inverse_depth, deterministic, generator)
            output.fine = self._evaluate(self.net_fine, rays, fine_depths, sources, features[1], target_center)
            output.fine_depths = fine_depths
        return output
