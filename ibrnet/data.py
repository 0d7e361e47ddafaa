"""IBRNet training and validation samples drawn from `Scene` records.

A training item is a pure function of its seed (the engine's StepSampler gives one per step), as
in the original's sampling (`ibrnet.md` §5–§6): a weighted choice of dataset, a random scene and
target view, a source pool of the `num_source_views·k` nearest views (k random), a random number
of sources around `num_source_views` drawn from it, rarely the target itself as a source; optional
random crop and horizontal flip of all views; `num_rays` random target pixels (rescaled by
num_source_views / actual count, as the original does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ibrnet.model import Rays, Sources
from multiview.data.loading import load_image
from multiview.data.records import Scene, View
from multiview.data.registry import SceneHandle, dataset_spec
from multiview.data.view_selection import nearest_views
from multiview.geometry.intrinsics import resize_intrinsics
from multiview.geometry.projection import rays_through_pixels
from multiview.geometry.transforms import invert_rigid


@dataclass
class RayBatch:
    """One target's rays with their ground truth colours, and its source views."""

    rays: Rays
    target_rgb: torch.Tensor  # (R, 3)
    sources: Sources
    target_center: torch.Tensor  # (3,)


@dataclass
class SamplingOptions:
    """Training-sample options (the trainer maps config options to these)."""

    num_source_views: int = 10
    source_count_jitter: int = 2  # sources drawn ~ num_source_views + U{−jitter..jitter}
    max_pool_factor: int = 3  # pool = nearest num_source_views·k views, k ~ U{1..max_pool_factor}
    target_as_source_probability: float = 0.005
    num_rays: int = 512
    max_image_side: int = 0  # 0 = native resolution; else shrink so the longer side is at most this
    crop_height: int = 0  # 0 = no random crop
    crop_width: int = 0
    random_flip: bool = False


def load_view(view: View, max_image_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) image and its K, shrunk so that the longer side is at most `max_image_side` (0 = as stored)."""
    image = load_image(view)
    H, W = image.shape[:2]
    if max_image_side and max(H, W) > max_image_side:
        scale = max_image_side / max(H, W)
        new_hw = (max(1, round(H * scale)), max(1, round(W * scale)))
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
        resized = torch.nn.functional.interpolate(tensor, size=new_hw, mode="bilinear", align_corners=False,
                                                  antialias=True)
        return resized[0].permute(1, 2, 0).numpy(), resize_intrinsics(view.K, (H, W), new_hw)
    return image, view.K


def select_sources(scene: Scene, target: int, pool: list[int], options: SamplingOptions,
                   rng: np.random.Generator, method: str) -> list[int]:
    """Source view indices for a training target (IBRNet's randomised nearest-view rule)."""
    cams = scene.stack_cam_from_world()[pool]
    pool_size = options.num_source_views * int(rng.integers(1, options.max_pool_factor + 1))
    exclude = pool.index(target) if target in pool else None
    nearest = [pool[i] for i in nearest_views(scene.views[target].cam_from_world, cams, pool_size, method,
                                              exclude, scene.meta.get("center", (0.0, 0.0, 0.0)))]
    jitter = options.source_count_jitter
    count = options.num_source_views + int(rng.integers(-jitter, jitter + 1))
    count = max(2, min(count, len(nearest)))
    if len(nearest) < 2:
        raise ValueError(f"scene {scene.name} has {len(nearest) + 1} usable views; IBRNet needs at least 3")
    chosen = [int(i) for i in rng.choice(nearest, size=count, replace=False)]
    if rng.random() < options.target_as_source_probability:
        chosen[int(rng.integers(count))] = target
    return chosen


def load_sources(scene: Scene, source_ids: list[int], max_image_side: int) -> Sources:
    """Source views as tensors (evaluation: no augmentation)."""
    loaded = [load_view(scene.views[i], max_image_side) for i in source_ids]
    images = torch.from_numpy(np.stack([image for image, _ in loaded])).permute(0, 3, 1, 2).contiguous().float()
    K = torch.from_numpy(np.stack([k for _, k in loaded])).float()
    cams = torch.from_numpy(np.stack([scene.views[i].cam_from_world for i in source_ids])).float()
    return Sources(images, K, cams)


def make_batch(scene: Scene, target: int, source_ids: list[int], options: SamplingOptions,
               rng: np.random.Generator) -> RayBatch:
    """Load target + sources, apply the random crop/flip, and cast rays through random target pixels.

    The number of rays is `options.num_rays` rescaled by num_source_views / len(source_ids).
    """
    views = [target, *source_ids]
    loaded = [load_view(scene.views[i], options.max_image_side) for i in views]
    K = np.stack([k for _, k in loaded]).copy()
    cam_from_world = np.stack([scene.views[i].cam_from_world for i in views])
    images, K = _augment([image for image, _ in loaded], K, options, rng)
    if len({image.shape for image in images}) != 1:
        raise ValueError(f"scene {scene.name}: views of different sizes cannot be batched "
                         f"({sorted({image.shape for image in images})}); set crop_height and crop_width")
    images = np.stack(images)  # (1 + V, H, W, 3)
    H, W = images.shape[1:3]
    count = int(options.num_rays * options.num_source_views / len(source_ids))
    flat = rng.choice(H * W, size=min(count, H * W), replace=False)
    pixels = np.stack([flat % W, flat // W], axis=-1)
    target_rgb = images[0][pixels[:, 1], pixels[:, 0]]
    K_t = torch.from_numpy(K).float()
    cams_t = torch.from_numpy(cam_from_world).float()
    origins, directions = rays_through_pixels(torch.from_numpy(pixels).float()[None], K_t[:1],
                                              invert_rigid(cams_t[:1]))
    view = scene.views[target]
    near = torch.full((len(pixels),), float(view.near))
    far = torch.full((len(pixels),), float(view.far))
    sources = Sources(torch.from_numpy(images[1:]).permute(0, 3, 1, 2).contiguous().float(), K_t[1:], cams_t[1:])
    return RayBatch(Rays(origins[0], directions[0], near, far), torch.from_numpy(target_rgb).float(), sources,
                    invert_rigid(cams_t[0])[:3, 3])


def _augment(images: list[np.ndarray], K: np.ndarray, options: SamplingOptions, rng: np.random.Generator):
    """The same random crop window for every view (K shifted), then a horizontal flip of all views (fx → −fx).

    images: (H_i, W_i, 3) per view, sizes may differ (Spaces' cameras); the window fits the smallest, so
    views of different sizes come out of a crop with one size. Returns the list of views and K.
    """
    H, W = min(image.shape[0] for image in images), min(image.shape[1] for image in images)
    if options.crop_height and options.crop_width and (H > options.crop_height or W > options.crop_width
                                                       or len({image.shape for image in images}) > 1):
        height, width = min(options.crop_height, H), min(options.crop_width, W)
        top, left = int(rng.integers(0, H - height + 1)), int(rng.integers(0, W - width + 1))
        images = [image[top : top + height, left : left + width] for image in images]
        K[:, 0, 2] -= left
        K[:, 1, 2] -= top
    if options.random_flip and rng.random() < 0.5:
        # mirrored image: u' = W_i − 1 − u, i.e. fx' = −fx and cx' = W_i − 1 − cx (as the original's random_flip)
        widths = np.array([image.shape[1] for image in images])
        images = [image[:, ::-1] for image in images]
        K[:, 0, 0] *= -1
        K[:, 0, 2] = widths - 1 - K[:, 0, 2]
    return [np.ascontiguousarray(image) for image in images], K


class TrainingSet(torch.utils.data.Dataset):
    """Items (step, seed) -> RayBatch; datasets mixed with weights, scenes uniform within a dataset."""

    def __init__(self, handles_by_dataset: dict[str, list[SceneHandle]], weights: list[float] | None,
                 options: SamplingOptions, cache_scenes: bool = True):
        self.names = list(handles_by_dataset)
        self.handles = handles_by_dataset
        weights = np.ones(len(self.names)) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(weights) != len(self.names) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"need one non-negative weight per training dataset {self.names}, got {list(weights)}")
        self.weights = weights / weights.sum()
        self.options = options
        self.cache: dict[tuple[str, str], Scene] | None = {} if cache_scenes else None

    def __len__(self) -> int:
        return sum(len(h) for h in self.handles.values())

    def scene(self, handle: SceneHandle) -> Scene:
        key = (handle.dataset, handle.name)
        if self.cache is None:
            return handle.load()
        if key not in self.cache:
            self.cache[key] = handle.load()
        return self.cache[key]

    def __getitem__(self, item) -> RayBatch:
        _, seed = item
        rng = np.random.default_rng(seed)
        dataset = self.names[int(rng.choice(len(self.names), p=self.weights))]
        handle = self.handles[dataset][int(rng.integers(len(self.handles[dataset])))]
        scene = self.scene(handle)
        pool = scene.splits.get("train", list(range(len(scene))))
        target = int(rng.choice(pool))
        sources = select_sources(scene, target, pool, self.options, rng, dataset_spec(handle.dataset).selection)
        return make_batch(scene, target, sources, self.options, rng)


def evaluation_views(scene: Scene, num_source_views: int, method: str, targets: list[int] | None = None):
    """[(target, sources)]: targets from the scene's test split (all views when it has none), each with
    its `num_source_views` nearest views from the train split (target excluded), nearest first."""
    pool = scene.splits.get("train", list(range(len(scene))))
    targets = targets if targets is not None else scene.splits.get("test", list(range(len(scene))))
    cams = scene.stack_cam_from_world()[pool]
    pairs = []
    for target in targets:
        exclude = pool.index(target) if target in pool else None
        nearest = nearest_views(scene.views[target].cam_from_world, cams, num_source_views, method, exclude,
                                scene.meta.get("center", (0.0, 0.0, 0.0)))
        pairs.append((target, [pool[i] for i in nearest]))
    return pairs
