"""MVS samples for MVSNet / JDACS: a reference view, its source views, cameras, depth hypotheses and ground truth.

Three sources, one sample type (`MVSSample`, CPU tensors; the engine moves them):
* `DTUTrainingSet` — DTU in MVSNet's training layout (`read_dtu_train_scan`): 640x512 images, depth ground
  truth at 1/4 resolution, sources = the first num_views − 1 of the reference's pair.txt list, all 7 lightings.
* `DTUTestSet` — DTU's test layout (`read_dtu_test_scan`): 1600x1200 images resized (with K) for
  full-resolution inference; no ground truth.
* `MVImgNetMVSSet` — MVImgNet instances turned into MVS views on the fly with MVSNet's `colmap2mvsnet.py`
  recipe (`sparse_depth_ranges`, `view_selection_scores`); no ground truth.

Each dataset is indexable two ways: `dataset[i]` enumerates every (scene, reference view[, lighting]) once,
in the original's order (scene, then reference view, then lighting) — for evaluation; `dataset.sample(seed)`
draws one of those items uniformly from `numpy.random.default_rng(seed)` — for training, where the engine's
`StepSampler` gives each step its own seed; `SeededBatches` turns that into the engine's (step, seed) -> batch.

Network input (`normalisation`): "center" is JDACS's `center_image`: every image, every channel, is
standardised over its own pixels, (I − mean) / (std + 1e-8) with the population std, computed by JDACS on
0..255 values; we compute it on [0, 1] values with eps 1e-8/255, which is the same function. "unit" is
MVSNet_pytorch's plain [0, 1] input.

Depth hypotheses: depth_min + interval·arange(D) (the originals' `np.arange(min, min + interval·D, interval)`,
written so float rounding can never give D + 1 values).

Deliberate differences from the originals: K is resized with the pixel-centre convention of
`multiview.geometry.intrinsics` (MVSNet multiplies cx, cy by the scale: ~0.1–1.5 px apart); JDACS also zeroes the
ground truth outside [depth_min + interval, depth_min + (D − 2)·interval] (`mask_depth_image`), which we do not
(on DTU at its settings, 429–1185 mm, it changes nothing; the metric mask is depth_visual either way).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multiview.data.loading import load_depth, load_image, load_mask
from multiview.data.readers.dtu import read_dtu_test_scan, read_dtu_train_scan
from multiview.data.readers.mvimgnet import MVImgNetIndex, MVImgNetInstance, read_mvimgnet_scene
from multiview.data.records import Scene, View
from multiview.geometry.intrinsics import crop_image_and_K, resize_image_and_K

logger = logging.getLogger(__name__)

NORMALISATIONS = ("center", "unit")
DEPTH_DOWNSCALE = 4  # MVSNet predicts depth at 1/4 of the input resolution
_CENTER_EPS = 1e-8 / 255.0  # JDACS's 1e-8 on 0..255 images, for [0, 1] images


@dataclass
class MVSSample:
    """One MVS sample (shapes without batch dimension; `collate_mvs_samples` adds a leading B).

    Attributes:
        images: (V, 3, H, W) float32 network input, view 0 = reference (see `normalisation`).
        images_raw: (V, 3, H, W) float32 in [0, 1] (for the co-segmentation loss and the augmentation pass).
        K: (V, 3, 3) float32 intrinsics of the (H, W) images.
        cam_from_world: (V, 4, 4) float32 world -> OpenCV camera.
        depth_values: (D,) float32 depth hypotheses of the reference view.
        depth: (H/4, W/4) float32 ground-truth depth of the reference, 0 where invalid (all 0 when unknown).
        mask: (H/4, W/4) bool ground-truth validity (DTU: depth_visual/255 > 0.5; all False when unknown).
        view_ids: (V,) int64 indices of the views in their Scene (reference first).
        scene: the Scene name (e.g. "scan2", "17/0000177e").
        ref_view: index of the reference view in its Scene.
        light: DTU lighting index of the images, None when the dataset has none.
        seed: the seed `sample(seed)` drew it with (None for `dataset[i]`); per-sample randomness such as
            the augmentation pass's may be derived from it so that a batch depends only on its step seed.
    """

    images: torch.Tensor
    images_raw: torch.Tensor
    K: torch.Tensor
    cam_from_world: torch.Tensor
    depth_values: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    view_ids: torch.Tensor
    scene: str | list[str]
    ref_view: int | list[int]
    light: int | None | list[int | None]
    seed: int | None | list[int | None]


def collate_mvs_samples(samples: Sequence[MVSSample]) -> MVSSample:
    """Stack samples into a batch: tensors get a leading B, identifiers become lists of length B."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    batch = {}
    for field in fields(MVSSample):
        values = [getattr(sample, field.name) for sample in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(value.shape) for value in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot batch samples whose {field.name} shapes differ: {sorted(shapes)}")
            batch[field.name] = torch.stack(values)
        else:
            batch[field.name] = values
    return MVSSample(**batch)


def center_image(images: torch.Tensor) -> torch.Tensor:
    """JDACS's per-image, per-channel standardisation of (..., C, H, W) images (module docstring)."""
    mean = images.mean(dim=(-2, -1), keepdim=True)
    std = images.var(dim=(-2, -1), correction=0, keepdim=True).sqrt()
    return (images - mean).div_(std + _CENTER_EPS)


def normalise_images(images_raw: torch.Tensor, normalisation: str) -> torch.Tensor:
    """Network input from [0, 1] images: "center" (`center_image`) or "unit" (unchanged copy)."""
    if normalisation == "center":
        return center_image(images_raw)
    if normalisation == "unit":
        return images_raw.clone()
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")


def depth_hypotheses(depth_min: float, depth_interval: float, num_depths: int) -> torch.Tensor:
    """(D,) float32 depth_min + depth_interval·arange(D), computed in float64."""
    return torch.from_numpy(depth_min + depth_interval * np.arange(num_depths, dtype=np.float64)).float()


def resize_and_center_crop(image: torch.Tensor, K, size: tuple[int, int]):
    """Resize (..., C, h, w) to cover (H, W) = size keeping the aspect ratio, then crop the centre; K follows.

    Returns (image (..., C, H, W), K (3, 3)).
    """
    height, width = image.shape[-2:]
    scale = max(size[0] / height, size[1] / width)
    resized_hw = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    if resized_hw != (height, width):
        image, K = resize_image_and_K(image, K, resized_hw)
    top, left = (resized_hw[0] - size[0]) // 2, (resized_hw[1] - size[1]) // 2
    return crop_image_and_K(image, K, top, left, *size)


def _check_image_size(size: tuple[int, int]) -> None:
    if len(size) != 2 or any(int(s) != s or s <= 0 or s % DEPTH_DOWNSCALE for s in size):
        raise ValueError(f"image_size must be (H, W) positive integers divisible by {DEPTH_DOWNSCALE} (the depth "
                         f"is at 1/{DEPTH_DOWNSCALE}; 32 suits MVSNet), got {size}")


def _no_ground_truth(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(depth, mask) of a view without ground truth: zeros and False."""
    return torch.zeros(size), torch.zeros(size, dtype=torch.bool)


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) -> (H, W) nearest neighbour with pixel centres aligned ("nearest-exact")."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tuple(tensor.shape) == tuple(size):
        return tensor
    return F.interpolate(tensor[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(tensor.dtype)


class _MVSDataset(torch.utils.data.Dataset):
    """Shared indexing: `_items` lists every sample; `_load(item, seed)` builds one."""

    def __init__(self, num_views: int, num_depths: int, normalisation: str):
        if num_views < 2:
            raise ValueError(f"num_views must be >= 2 (a reference and a source), got {num_views}")
        if num_depths < 2:
            raise ValueError(f"num_depths must be >= 2, got {num_depths}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
        self.num_views, self.num_depths, self.normalisation = num_views, num_depths, normalisation
        self._items: list[tuple] = []

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> MVSSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self._load(self._items[index], seed=None)

    def sample(self, seed: int) -> MVSSample:
        """A uniformly drawn item (scene, reference view[, lighting]); depends only on `seed`."""
        if not self._items:
            raise ValueError(f"{type(self).__name__} has no samples")
        index = int(np.random.default_rng(seed).integers(len(self._items)))
        return self._load(self._items[index], seed=seed)

    def _load(self, item: tuple, seed: int | None) -> MVSSample:
        raise NotImplementedError

    def _make_sample(self, scene: Scene, view_ids: list[int], images_raw: torch.Tensor, K: list, depth_range,
                     ground_truth: tuple[torch.Tensor, torch.Tensor], light: int | None, seed: int | None):
        """Assemble an MVSSample; depth_range = (depth_min, depth_interval) of the reference."""
        images_raw = images_raw.clamp(0.0, 1.0)
        cams = np.stack([scene.views[v].cam_from_world for v in view_ids])
        depth, mask = ground_truth
        return MVSSample(
            images=normalise_images(images_raw, self.normalisation),
            images_raw=images_raw,
            K=torch.from_numpy(np.stack(K)).float(),
            cam_from_world=torch.from_numpy(cams).float(),
            depth_values=depth_hypotheses(*depth_range, self.num_depths),
            depth=depth.float(),
            mask=mask.bool(),
            view_ids=torch.tensor(view_ids, dtype=torch.int64),
            scene=scene.name,
            ref_view=view_ids[0],
            light=light,
            seed=seed,
        )


class SeededBatches(torch.utils.data.Dataset):
    """The engine's training dataset: item (step, seed) -> a collated batch of `batch_size` samples.

    Sample b of the batch is `dataset.sample(seed_b)` with seed_b the b-th of
    `default_rng(seed).integers(2**31, size=batch_size)`, so the batch depends only on the step's seed.
    """

    def __init__(self, dataset: _MVSDataset, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size = dataset, batch_size

    def __getitem__(self, item: tuple[int, int]) -> MVSSample:
        _step, seed = item
        seeds = np.random.default_rng(seed).integers(2**31, size=self.batch_size)
        return collate_mvs_samples([self.dataset.sample(int(s)) for s in seeds])


# --- DTU ----------------------------------------------------------------------------------------------------


class _DTUSet(_MVSDataset):
    """DTU scans with pair.txt sources; items (scene index, reference view, lighting or None)."""

    def __init__(self, scenes: list[Scene], num_views: int, num_depths: int, interval_scale: float,
                 image_size: tuple[int, int] | None, normalisation: str, lights: Sequence[int | None]):
        super().__init__(num_views, num_depths, normalisation)
        if interval_scale <= 0:
            raise ValueError(f"interval_scale must be > 0, got {interval_scale}")
        self.scenes, self.interval_scale = scenes, interval_scale
        for scene in scenes:
            self._check_scene(scene)
        self.image_size = tuple(image_size) if image_size is not None else None
        _check_image_size(self.image_size or (scenes[0].views[0].height, scenes[0].views[0].width))
        self._items = [(s, ref, light) for s, scene in enumerate(scenes) for ref in range(len(scene.views))
                       for light in lights]

    def _check_scene(self, scene: Scene) -> None:
        if len(scene.views) < self.num_views:
            raise ValueError(f"{scene.name} ({scene.root}) has {len(scene.views)} views, fewer than "
                             f"num_views={self.num_views}")
        for ref, sources in scene.meta["pairs"].items():
            if len(sources) < self.num_views - 1:
                raise ValueError(f"{scene.name} ({scene.root}): pair.txt lists {len(sources)} source views for "
                                 f"reference {ref}, num_views={self.num_views} needs {self.num_views - 1}")

    def _view(self, scene: Scene, vid: int, light: int | None) -> View:
        """The view with the image of `light`."""
        return scene.views[vid]

    def _ground_truth(self, view: View, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(depth, mask) of the reference at `size`; unknown here."""
        return _no_ground_truth(size)

    def _load(self, item: tuple, seed: int | None) -> MVSSample:
        scene_index, ref, light = item
        scene = self.scenes[scene_index]
        view_ids = [ref] + [src for src, _score in scene.meta["pairs"][ref][: self.num_views - 1]]
        views = [self._view(scene, vid, light) for vid in view_ids]
        size = self.image_size or (views[0].height, views[0].width)
        images, Ks = [], []
        for view in views:
            image, K = torch.from_numpy(load_image(view)).permute(2, 0, 1), view.K
            if tuple(image.shape[-2:]) != size:
                image, K = resize_image_and_K(image, K, size)
            images.append(image)
            Ks.append(K)
        ref_view = views[0]
        depth_range = (ref_view.extra["depth_min"], ref_view.extra["depth_interval"] * self.interval_scale)
        ground_truth = self._ground_truth(ref_view, (size[0] // DEPTH_DOWNSCALE, size[1] // DEPTH_DOWNSCALE))
        return self._make_sample(scene, view_ids, torch.stack(images), Ks, depth_range, ground_truth, light, seed)


class DTUTrainingSet(_DTUSet):
    """DTU training layout (module docstring): one item per (scan, reference view, lighting).

    Args:
        root: the dataset root (Cameras/, Rectified/, Depths/).
        scans: scan numbers (e.g. `read_dtu_scan_list("train")` or a `jdacs.fractions` list).
        num_views: reference + sources (JDACS 7, MVSNet 3).
        num_depths, interval_scale: D and the factor on the cam.txt interval (JDACS 192 and 1.6 -> 4 mm).
        light: "random" = every lighting (an item each; `sample` draws one uniformly) or one lighting index.
        image_size: (H, W) to resize the 640x512 images to (K follows; the depth ground truth and its mask
            are resized by nearest neighbour to (H/4, W/4)); None keeps the files' size.
        normalisation: "center" (JDACS) or "unit" (MVSNet_pytorch).
    """

    def __init__(self, root: str | Path, scans: Sequence[int], num_views: int = 7, num_depths: int = 192,
                 interval_scale: float = 1.6, light: str | int = "random", image_size: tuple[int, int] | None = None,
                 normalisation: str = "center"):
        if not scans:
            raise ValueError("scans is empty")
        scenes = [read_dtu_train_scan(root, scan) for scan in scans]
        num_lights = len(scenes[0].views[0].extra["light_paths"])
        if light == "random":
            lights = list(range(num_lights))
        elif isinstance(light, int) and not isinstance(light, bool) and 0 <= light < num_lights:
            lights = [light]
        else:
            raise ValueError(f'light must be "random" or an integer in [0, {num_lights}), got {light!r}')
        super().__init__(scenes, num_views, num_depths, interval_scale, image_size, normalisation, lights)

    def _view(self, scene: Scene, vid: int, light: int | None) -> View:
        view = scene.views[vid]
        return replace(view, image_path=view.extra["light_paths"][light])

    def _ground_truth(self, view: View, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return _resize_nearest(load_depth(view), size), _resize_nearest(load_mask(view) > 0.5, size)


class DTUTestSet(_DTUSet):
    """DTU test layout (module docstring): one item per (scan, reference view); no ground truth (light None).

    Defaults are JDACS's `eval_dense.sh`: 5 views, D 256, interval x1.06 (425 .. 1100.8 mm), 1600x1200 images
    resized to 1152x864 (K resized with them; JDACS scales K by 0.72 without the half-pixel shift).
    """

    def __init__(self, root: str | Path, scans: Sequence[int], num_views: int = 5, num_depths: int = 256,
                 interval_scale: float = 1.06, image_size: tuple[int, int] | None = (864, 1152),
                 normalisation: str = "center"):
        if not scans:
            raise ValueError("scans is empty")
        scenes = [read_dtu_test_scan(root, scan) for scan in scans]
        super().__init__(scenes, num_views, num_depths, interval_scale, image_size, normalisation, [None])


# --- MVImgNet -----------------------------------------------------------------------------------------------


def _observed_depths(scene: Scene, view_index: int) -> np.ndarray:
    """Camera z of the sparse points a view observes (its COLMAP track entries), in front of it."""
    view = scene.views[view_index]
    points = scene.meta["points_xyz"][scene.meta["view_point_rows"][view_index]]
    depths = points @ view.cam_from_world[2, :3] + view.cam_from_world[2, 3]
    return depths[depths > 0]


def sparse_depth_ranges(scene: Scene) -> np.ndarray:
    """(V, 2) per-view (depth_min, depth_max) from the sparse points, as `colmap2mvsnet.py` computes them.

    For the n observed points' sorted depths z: (z[int(0.01·n)], z[int(0.99·n)]) — the script's order
    statistics, not interpolated percentiles. Views whose reader near/far did not come from observed points
    (`View.extra["near_far_source"]` == "frustum": fewer than the reader's minimum) keep the reader's
    near/far (frustum points, with its margins).
    """
    ranges = np.zeros((len(scene.views), 2))
    for index, view in enumerate(scene.views):
        depths = np.sort(_observed_depths(scene, index))
        if view.extra.get("near_far_source") == "observed" and len(depths):
            ranges[index] = depths[int(0.01 * len(depths))], depths[int(0.99 * len(depths))]
        else:
            ranges[index] = view.near, view.far
    return ranges


def view_selection_scores(scene: Scene, theta0_deg: float = 5.0, sigma1_deg: float = 1.0,
                          sigma2_deg: float = 10.0) -> np.ndarray:
    """(V, V) symmetric colmap2mvsnet view-selection scores from a Scene's sparse points (diagonal 0).

    score(i, j) = Σ_{p seen by i and j} exp(−(θ − θ0)² / (2σ²)), θ = angle in degrees at p between the
    camera centres of i and j, σ = sigma1 if θ <= θ0 else sigma2. Uses Scene.meta "points_xyz" (P, 3) and
    "view_point_rows" (rows each view observes; each point counted once per view). Loops over views only.
    """
    xyz, rows = scene.meta["points_xyz"], scene.meta["view_point_rows"]
    num_views = len(scene.views)
    visible = np.zeros((num_views, len(xyz)), dtype=bool)
    for index, view_rows in enumerate(rows):
        visible[index, view_rows] = True
    centers = np.stack([view.camera_center for view in scene.views])
    scores = np.zeros((num_views, num_views))
    for index in range(num_views):
        points = xyz[visible[index]]  # (P_i, 3)
        to_cameras = centers[:, None, :] - points[None]  # (V, P_i, 3)
        to_cameras /= np.linalg.norm(to_cameras, axis=-1, keepdims=True)
        cosine = np.einsum("pc,vpc->vp", to_cameras[index], to_cameras)
        theta = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        sigma = np.where(theta <= theta0_deg, sigma1_deg, sigma2_deg)
        weight = np.exp(-((theta - theta0_deg) ** 2) / (2.0 * sigma**2))
        scores[index] = (weight * visible[:, visible[index]]).sum(axis=1)
    np.fill_diagonal(scores, 0.0)
    return scores


def ranked_sources(scores: np.ndarray) -> np.ndarray:
    """(V, V − 1) source views of each reference, best score first (ties by view index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.stack([row[row != ref] for ref, row in enumerate(order)])


@dataclass
class MVSInstanceViews:
    """What one MVImgNet instance needs for MVS samples, computed once per instance.

    Attributes:
        scene: the instance's Scene (`read_mvimgnet_scene`).
        sources: (V, V − 1) source views of each reference, best first (`ranked_sources`).
        depth_ranges: (V, 2) per-view (depth_min, depth_max) (`sparse_depth_ranges`).
    """

    scene: Scene
    sources: np.ndarray
    depth_ranges: np.ndarray


class MVImgNetMVSSet(_MVSDataset):
    """MVImgNet instances as MVS samples (module docstring): one item per (instance, reference view).

    Per instance (cached for the `cache_size` most recent instances): the views of `read_mvimgnet_scene`,
    sources ranked by `view_selection_scores`, depth ranges from `sparse_depth_ranges`. A sample's images
    are resized to cover `image_size` and centre-cropped (`resize_and_center_crop`, K follows); its D
    hypotheses span the reference's [depth_min, depth_max] (interval (max − min)/(D − 1)); no ground truth.

    Args:
        instances: an MVImgNetIndex or MVImgNetInstance records (`index_mvimgnet(root, split=...)`); instances
            with fewer than num_views registered images are left out with a warning (listed in `.skipped`).
        image_size: (H, W) network size, divisible by 4 (32 for MVSNet).
    """

    def __init__(self, instances: MVImgNetIndex | Sequence[MVImgNetInstance], image_size: tuple[int, int],
                 num_views: int = 7, num_depths: int = 192, normalisation: str = "center", cache_size: int = 64):
        super().__init__(num_views, num_depths, normalisation)
        _check_image_size(tuple(image_size))
        self.image_size = tuple(image_size)
        instances = list(instances.instances if isinstance(instances, MVImgNetIndex) else instances)
        self.instances = [i for i in instances if i.num_images >= num_views]
        self.skipped = [i for i in instances if i.num_images < num_views]
        if self.skipped:
            logger.warning("%d MVImgNet instances have fewer than num_views=%d registered images and are left out, "
                           "e.g. %s", len(self.skipped), num_views, self.skipped[0].path)
        self._items = [(i, ref) for i, instance in enumerate(self.instances) for ref in range(instance.num_images)]
        self.cache_size = cache_size
        self._cache: OrderedDict[int, MVSInstanceViews] = OrderedDict()

    def instance_views(self, instance_index: int) -> MVSInstanceViews:
        """The (cached) scene, ranked sources and depth ranges of one instance."""
        if instance_index in self._cache:
            self._cache.move_to_end(instance_index)
            return self._cache[instance_index]
        instance = self.instances[instance_index]
        scene = read_mvimgnet_scene(instance.path)
        if len(scene.views) != instance.num_images:
            raise ValueError(f"{instance.path}: the index counted {instance.num_images} registered images, the "
                             f"reader found {len(scene.views)}")
        entry = MVSInstanceViews(scene, ranked_sources(view_selection_scores(scene)), sparse_depth_ranges(scene))
        self._cache[instance_index] = entry
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

    def _load(self, item: tuple, seed: int | None) -> MVSSample:
        instance_index, ref = item
        entry = self.instance_views(instance_index)
        view_ids = [ref] + [int(s) for s in entry.sources[ref, : self.num_views - 1]]
        images, Ks = [], []
        for vid in view_ids:
            view = entry.scene.views[vid]
            image, K = resize_and_center_crop(torch.from_numpy(load_image(view)).permute(2, 0, 1), view.K,
                                              self.image_size)
            images.append(image)
            Ks.append(K)
        depth_min, depth_max = entry.depth_ranges[ref]
        depth_range = (depth_min, (depth_max - depth_min) / (self.num_depths - 1))
        ground_truth = _no_ground_truth((self.image_size[0] // DEPTH_DOWNSCALE, self.image_size[1] // DEPTH_DOWNSCALE))
        return self._make_sample(entry.scene, view_ids, torch.stack(images), Ks, depth_range, ground_truth, None,
                                 seed)
