"""Synthetic DTU scans in MVSNet's training or test layout (trees in `multiview/data/readers/dtu.py`).

The rig is DTU's: a fixed grid of cameras in front of the object (`arc_cameras`, rows x columns as close
to square as possible, the first `num_views` of them; 7x7 = 49 views as in DTU) shared by every scan,
in MILLIMETRES: each scene is `make_scene(seed + k, scale=250)` (object radius <= 200 mm) and the
rig's translations are multiplied by 1000, so depths land in ~470-810 mm on the objects. Depth ground
truth keeps only surfaces in [depth_min, depth_min + depth_interval·191] (the reader's near/far with
D = 192); the writer raises if an object surface falls outside. The principal point is off-centre and
fy != fx, so transposition bugs show.

Training layout: images at (height, width); depth maps (PFM) and depth_visual masks (255 = valid depth)
at 1/4 resolution, rendered directly at that size with the 1/4-resolution K (`resize_intrinsics`), which
is the K written in `Cameras/train`, so the depth is exact. The 7 lightings are the same render times
a fixed per-light RGB gain (brightness and tint, `LIGHT_GAINS`); light 3, the reader's default, is the
unmodified render. pair.txt ranks the other views (top 10) by the colmap2mvsnet view-selection score of
the single point at the scene centre: exp(−(θ − 5)²/(2σ²)), θ = angle at the origin between the two
camera centres in degrees, σ = 1 if θ <= 5 else 10.

Test layout: `scan{N}/images/%08d.jpg` (the unmodified render), `scan{N}/cams/%08d_cam.txt` with the
full-resolution K, `scan{N}/pair.txt` (the same ranking); no depth files.

Returned ground truth (`WrittenScene`): K of the written images, cam_from_world in mm, `images` = the
unmodified renders (light 3), `depths` in mm at 1/4 resolution (train) or at image resolution (test),
`masks` = where that depth is valid (the depth_visual masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multiview.data.readers.dtu import DEFAULT_DEPTH_NUM, DTU_NUM_LIGHTS, read_dtu_scan_list
from multiview.geometry.intrinsics import resize_intrinsics
from multiview.io.images import write_image
from multiview.io.mvsnet import MVSNetCamera, write_cam_txt, write_pair_txt
from multiview.io.pfm import write_pfm
from multiview.synthetic.cameras import arc_cameras, intrinsics
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import RenderedView, make_scene, render

LAYOUTS = ("train", "test")
MM_PER_UNIT = 1000.0  # arc_cameras / make_scene(scale=0.25) units are metres
SCENE_SCALE = 0.25 * MM_PER_UNIT
FOV_X_DEG = 30.0
NUM_SOURCES = 10
DEPTH_FACTOR = 4  # depth maps are at 1/4 of the image resolution in the training layout
LIGHT_GAINS = np.array(
    [  # (7, 3) RGB gain per lighting; row 3 is the identity
        [0.55, 0.55, 0.6],
        [0.7, 0.68, 0.62],
        [0.85, 0.85, 0.9],
        [1.0, 1.0, 1.0],
        [1.15, 1.1, 1.0],
        [0.8, 0.9, 1.0],
        [0.65, 0.6, 0.55],
    ]
)


def dtu_rig(num_views: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(K (3, 3) for a height x width image, cam_from_world (V, 4, 4) in mm) of the fixed synthetic rig."""
    num_cols = int(np.ceil(np.sqrt(num_views)))
    num_rows = int(np.ceil(num_views / num_cols))
    cam_from_world = arc_cameras(num_rows, num_cols)[:num_views]
    cam_from_world[:, :3, 3] *= MM_PER_UNIT
    K = intrinsics(height, width, FOV_X_DEG)
    K[1, 1] *= 0.995
    K[0, 2] += 0.03 * width
    K[1, 2] -= 0.02 * height
    return K, cam_from_world


def view_selection_pairs(cam_from_world: np.ndarray, num_sources: int = NUM_SOURCES):
    """pair.txt records [(ref, [(src, score), ...])]: top sources by the single-point colmap2mvsnet score."""
    centers = np.stack([np.linalg.inv(c)[:3, 3] for c in cam_from_world])
    directions = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    theta = np.degrees(np.arccos(np.clip(directions @ directions.T, -1.0, 1.0)))
    sigma = np.where(theta <= 5.0, 1.0, 10.0)
    score = np.exp(-((theta - 5.0) ** 2) / (2.0 * sigma**2))
    pairs = []
    for ref in range(len(cam_from_world)):
        order = [int(s) for s in np.argsort(-score[ref], kind="stable") if s != ref][:num_sources]
        pairs.append((ref, [(s, float(score[ref, s])) for s in order]))
    return pairs


@dataclass
class _Rig:
    """What every scan of one write shares: image K, cameras (mm), pairs and the cam.txt depth line."""

    K: np.ndarray
    cam_from_world: np.ndarray
    image_hw: tuple[int, int]
    depth_min: float
    depth_interval: float

    @property
    def depth_range(self) -> tuple[float, float]:
        return self.depth_min, self.depth_min + self.depth_interval * (DEFAULT_DEPTH_NUM - 1)

    def camera(self, vid: int, K: np.ndarray) -> MVSNetCamera:
        return MVSNetCamera(self.cam_from_world[vid], K, self.depth_min, self.depth_interval)

    def valid_depth(self, view: RenderedView, where: str) -> np.ndarray:
        """The view's float32 depth in mm, 0 outside `depth_range`; raises if an object surface is outside."""
        low, high = self.depth_range
        inside = (view.depth >= low) & (view.depth <= high)
        if (view.mask & ~inside).any():
            object_depth = view.depth[view.mask]
            raise ValueError(
                f"{where}: object depths {object_depth.min():.1f}..{object_depth.max():.1f} mm fall outside "
                f"[{low}, {high}] mm; adjust depth_min / depth_interval"
            )
        return np.where(inside, view.depth, 0.0).astype(np.float32)

    def written(self, root: Path, scan: int, images, depths, files) -> WrittenScene:
        return WrittenScene(
            root=root,
            name=f"scan{scan}",
            K=np.repeat(self.K[None], len(self.cam_from_world), axis=0),
            cam_from_world=self.cam_from_world.copy(),
            images=images,
            depths=depths,
            masks=[d > 0 for d in depths],
            files=files,
        )


def write(
    out: Path,
    num_scenes: int,
    num_views: int,
    height: int,
    width: int,
    seed: int,
    *,
    layout: str = "train",
    scans: list[int] | None = None,
    num_lights: int = DTU_NUM_LIGHTS,
    depth_min: float = 425.0,
    depth_interval: float = 2.5,
) -> list[WrittenScene]:
    """Write `num_scenes` DTU scans (see the module docstring); returns their ground truth in reader order.

    Args:
        layout: "train" (`Cameras/`, `Rectified/`, `Depths/`) or "test" (`scan{N}/{images,cams,pair.txt}`).
        scans: the scan numbers (default: the first `num_scenes` of the official train list for the
            training layout, of the test list for the test layout).
        num_lights: lightings written per view (training layout), at most 7.
        depth_min, depth_interval: the depth line of every cam.txt (mm).
    """
    out = Path(out)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if scans is None:
        scans = read_dtu_scan_list(layout)[:num_scenes]
    if len(scans) != num_scenes or len(set(scans)) != num_scenes:
        raise ValueError(f"need {num_scenes} distinct scan numbers, got {scans}")
    if not 1 <= num_lights <= len(LIGHT_GAINS):
        raise ValueError(f"num_lights must be in [1, {len(LIGHT_GAINS)}], got {num_lights}")
    if layout == "train" and (height % DEPTH_FACTOR or width % DEPTH_FACTOR):
        raise ValueError(
            f"the training layout needs height and width divisible by {DEPTH_FACTOR}, got {height}x{width}"
        )
    rig = _Rig(*dtu_rig(num_views, height, width), (height, width), depth_min, depth_interval)
    pairs = view_selection_pairs(rig.cam_from_world)
    if layout == "train":
        shared = _write_train_cameras(out, rig, pairs)
        return [
            _write_train_scan(out, scan, seed + k, rig, num_lights, shared) for k, scan in enumerate(scans)
        ]
    return [_write_test_scan(out, scan, seed + k, rig, pairs) for k, scan in enumerate(scans)]


def _depth_K(rig: _Rig) -> tuple[tuple[int, int], np.ndarray]:
    """(depth map size, its K) of the training layout: 1/4 of the image."""
    depth_hw = (rig.image_hw[0] // DEPTH_FACTOR, rig.image_hw[1] // DEPTH_FACTOR)
    return depth_hw, resize_intrinsics(rig.K, rig.image_hw, depth_hw)


def _write_train_cameras(out: Path, rig: _Rig, pairs) -> list[Path]:
    """`Cameras/pair.txt` and `Cameras/train/*_cam.txt` (1/4-resolution K), shared by every scan."""
    files = [out / "Cameras" / "pair.txt"]
    write_pair_txt(files[0], pairs)
    K_depth = _depth_K(rig)[1]
    for vid in range(len(rig.cam_from_world)):
        files.append(out / "Cameras" / "train" / f"{vid:08d}_cam.txt")
        write_cam_txt(files[-1], rig.camera(vid, K_depth))
    return files


def _write_train_scan(
    out: Path, scan: int, scene_seed: int, rig: _Rig, num_lights: int, shared
) -> WrittenScene:
    scene = make_scene(scene_seed, scale=SCENE_SCALE)
    depth_hw, K_depth = _depth_K(rig)
    image_dir, depth_dir = out / "Rectified" / f"scan{scan}_train", out / "Depths" / f"scan{scan}_train"
    images, depths, files = [], [], list(shared)
    for vid, extrinsic in enumerate(rig.cam_from_world):
        rgb = render(scene, rig.K, extrinsic, *rig.image_hw).rgb
        depth = rig.valid_depth(render(scene, K_depth, extrinsic, *depth_hw), f"scan{scan} view {vid}")
        for light in range(num_lights):
            files.append(image_dir / f"rect_{vid + 1:03d}_{light}_r5000.png")
            write_image(files[-1], np.clip(rgb * LIGHT_GAINS[light], 0.0, 1.0))
        files += [depth_dir / f"depth_map_{vid:04d}.pfm", depth_dir / f"depth_visual_{vid:04d}.png"]
        write_pfm(files[-2], depth)
        write_image(files[-1], np.where(depth > 0, 255, 0).astype(np.uint8))
        images.append(rgb)
        depths.append(depth)
    return rig.written(out, scan, images, depths, files)


def _write_test_scan(out: Path, scan: int, scene_seed: int, rig: _Rig, pairs) -> WrittenScene:
    scene = make_scene(scene_seed, scale=SCENE_SCALE)
    scan_dir = out / f"scan{scan}"
    files = [scan_dir / "pair.txt"]
    write_pair_txt(files[0], pairs)
    images, depths = [], []
    for vid, extrinsic in enumerate(rig.cam_from_world):
        view = render(scene, rig.K, extrinsic, *rig.image_hw)
        files += [scan_dir / "images" / f"{vid:08d}.jpg", scan_dir / "cams" / f"{vid:08d}_cam.txt"]
        write_image(files[-2], view.rgb)
        write_cam_txt(files[-1], rig.camera(vid, rig.K))
        images.append(view.rgb)
        depths.append(rig.valid_depth(view, f"scan{scan} view {vid}"))
    return rig.written(scan_dir, scan, images, depths, files)
