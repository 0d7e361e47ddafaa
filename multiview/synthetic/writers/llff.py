"""Synthetic LLFF scenes: `poses_bounds.npy` + `images/` + `images_<factor>/`, as the LLFF release ships them.

Layouts (`layout=`), scene k is `make_scene(seed + k)` named `scene<k:03d>`:
* "nerf_llff_data":      `<out>/scene000/`, factor 4 by default (IBRNet's evaluation data).
* "real_iconic_noface":  `<out>/real_iconic_noface/scene000/`, factor 4.
* "ibrnet_collected":    even k in `<out>/ibrnet_collected_1/` (factor 2), odd k in
                         `<out>/ibrnet_collected_2/` (factor 8); read back as "<subset>/scene<k:03d>".

Per scene: `num_views` forward-facing cameras; `images_<factor>/image000.png ...` are rendered at
(height, width) with K = [[f, 0, W/2], [0, f, H/2]] (IBRNet's convention, so the reader's K is exactly
the rendering K). `images/IMG_0000.JPG ...` are those renders upsampled by pixel replication to
(factor·height, factor·width) — cheap placeholders with the release's names and sizes; hwf in
poses_bounds.npy describes them ([factor·H, factor·W, factor·f]). Read with factor 1 their K is
(factor − 1)/2 px off the replication's exact centre, like any LLFF minification. Bounds per view are the
0.1 / 99.9 percentiles of the rendered depths (LLFF takes them from the COLMAP points a view sees).
The returned `WrittenScene`s hold the cameras in the written (un-normalised) world and K, images and
depths of `images_<factor>/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multiview.geometry.conventions import cam_from_world_to_llff
from multiview.geometry.intrinsics import make_K
from multiview.io.images import to_uint8, write_image
from multiview.synthetic.cameras import forward_facing_cameras, intrinsics
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render

LAYOUTS = ("nerf_llff_data", "real_iconic_noface", "ibrnet_collected")
DEFAULT_FACTOR = 4


def _scene_folder(out: Path, layout: str, index: int, factor: int | None) -> tuple[Path, str, int]:
    """(scene directory, name the reader reports, downsizing factor) of scene `index` in `layout`."""
    scene = f"scene{index:03d}"
    if layout == "nerf_llff_data":
        return out / scene, scene, factor or DEFAULT_FACTOR
    if factor is not None:
        raise ValueError(f"layout {layout!r} fixes the downsizing factor; do not pass factor={factor}")
    if layout == "real_iconic_noface":
        return out / layout / scene, scene, DEFAULT_FACTOR
    subset, subset_factor = ("ibrnet_collected_1", 2) if index % 2 == 0 else ("ibrnet_collected_2", 8)
    return out / subset / scene, f"{subset}/{scene}", subset_factor


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          factor: int | None = None, layout: str = "nerf_llff_data",
          fov_x_deg: float = 55.0) -> list[WrittenScene]:
    """Write `num_scenes` LLFF scenes in `layout` (see the module docstring) and return their ground truth.

    Args:
        factor: downsizing factor of the rendered folder for "nerf_llff_data" (default 4, >= 2); the other
            layouts fix it (None).
        fov_x_deg: horizontal field of view of every camera.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if factor is not None and factor < 2:
        raise ValueError(f"factor must be >= 2 (images/ and images_<factor>/ are distinct), got {factor}")
    out = Path(out)
    focal = intrinsics(height, width, fov_x_deg)[0, 0]
    K = make_K(focal, focal, width / 2.0, height / 2.0)
    written = []
    for index in range(num_scenes):
        scene_dir, name, scene_factor = _scene_folder(out, layout, index, factor)
        spec = make_scene(seed + index)
        rng = np.random.default_rng(seed + index)
        cam_from_world = forward_facing_cameras(num_views, distance=2.6, elevation_deg=35.0,
                                                azimuth_deg=rng.uniform(0.0, 360.0), seed=rng)
        views = [render(spec, K, pose, height, width) for pose in cam_from_world]
        files = []
        for i, view in enumerate(views):
            small = to_uint8(view.rgb)
            paths = (scene_dir / f"images_{scene_factor}" / f"image{i:03d}.png",
                     scene_dir / "images" / f"IMG_{i:04d}.JPG")
            write_image(paths[0], small)
            write_image(paths[1], np.repeat(np.repeat(small, scene_factor, axis=0), scene_factor, axis=1))
            files += paths
        bounds = np.array([np.percentile(view.depth[view.depth > 0], [0.1, 99.9]) for view in views])
        hwf = [scene_factor * height, scene_factor * width, scene_factor * focal]
        poses = cam_from_world_to_llff(cam_from_world, hwf).reshape(num_views, 15)
        poses_path = scene_dir / "poses_bounds.npy"
        np.save(poses_path, np.concatenate([poses, bounds], axis=1).astype(np.float64))
        written.append(WrittenScene(
            root=scene_dir, name=name, K=np.repeat(K[None], num_views, axis=0), cam_from_world=cam_from_world,
            images=[view.rgb for view in views], depths=[view.depth for view in views],
            masks=[view.mask for view in views], files=[poses_path, *files],
        ))
    return written
