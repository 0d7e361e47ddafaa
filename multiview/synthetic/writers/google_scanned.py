"""Procedural objects written as IBRNet's Google Scanned Objects renderings.

Layout (read back by `multiview.data.readers.google_scanned`)::

    <out>/object_<k:03d>/rgb/<NNNNNN>.png           RGB, object on white
    <out>/object_<k:03d>/pose/<NNNNNN>.txt          16 numbers on one line: OpenCV camera-to-world
    <out>/object_<k:03d>/intrinsics/<NNNNNN>.txt    16 numbers on one line: [[K, 0], [0, 1]] row-major

The object (no ground) is scaled to radius 0.9·r around the origin, r = 0.5·√2·1.1 being IBRNet's object
radius bound, and the cameras (upper hemisphere, elevations 5°–80°) look at the origin from distance 2,
so all depths lie inside the reader's near/far (d0 ± r with d0 = 2). K has its centre at ((W−1)/2, (H−1)/2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multiview.data.readers.google_scanned import GSO_MAX_RADIUS
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import write_image
from multiview.synthetic.cameras import hemisphere_cameras, intrinsics
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render
from multiview.synthetic.writers.deepvoxels import OBJECT_RADIUS, write_matrix_row
from multiview.synthetic.writers.nerf_synthetic import composite_on_white

CAMERA_DISTANCE = 2.0
SCENE_SCALE = 0.9 * GSO_MAX_RADIUS / OBJECT_RADIUS  # object radius <= 0.9 r


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          fov_x_deg: float = 45.0) -> list[WrittenScene]:
    """Write `num_scenes` objects of `num_views` views each (IBRNet trains on objects with >= 250 views).

    Object k uses `make_scene(seed + k)` (object only, scaled) and cameras from `default_rng(seed + k)`.
    """
    out = Path(out)
    K = intrinsics(height, width, fov_x_deg)
    K4 = np.eye(4)
    K4[:3, :3] = K
    written = []
    for k in range(num_scenes):
        name = f"object_{k:03d}"
        root = out / name
        spec = make_scene(seed + k, with_ground=False, with_background=False, scale=SCENE_SCALE)
        cameras = hemisphere_cameras(num_views, radius=CAMERA_DISTANCE, elevation_deg_range=(5.0, 80.0),
                                     seed=np.random.default_rng(seed + k))
        scene = WrittenScene(root=root, name=name, K=np.repeat(K[None], num_views, axis=0),
                             cam_from_world=cameras, images=[], depths=[], masks=[])
        for i, cam_from_world in enumerate(cameras):
            view = render(spec, K, cam_from_world, height, width, background="transparent")
            image = composite_on_white(view)
            paths = [root / "rgb" / f"{i:06d}.png", root / "pose" / f"{i:06d}.txt",
                     root / "intrinsics" / f"{i:06d}.txt"]
            write_image(paths[0], image)
            write_matrix_row(paths[1], invert_rigid(cam_from_world))
            write_matrix_row(paths[2], K4)
            scene.images.append(image)
            scene.depths.append(view.depth)
            scene.masks.append(view.mask)
            scene.files += paths
        written.append(scene)
    return written
