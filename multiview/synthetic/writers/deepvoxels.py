"""Procedural objects written as DeepVoxels "Diffuse Synthetic 360" scenes.

Layout (read back by `multiview.data.readers.deepvoxels`)::

    <out>/{train,validation,test}/<scene>/rgb/<NNNNNN>.png      RGB, object on white
    <out>/{train,validation,test}/<scene>/pose/<NNNNNN>.txt     16 numbers on one line: OpenCV camera-to-world
    <out>/{train,validation,test}/<scene>/intrinsics.txt        the 6-line layout (5 lines unless world2cam)

The object (no ground) sits within radius 0.8 of the origin and every camera looks at the origin from
distance 2.5, so all depths lie in origin_depth ± 0.8, the reader's near/far. `intrinsics.txt` states
f, cx, cy for `intrinsics_size` (default 512x512, the release's image size) whatever the PNG size, with
cx, cy at its centre (the release's 256 at 512, as far as known), so the reader's rescale to the actual
image size is exercised; images are rendered with exactly the K the reader derives. With
`world2cam=True` the pose files hold world-to-camera matrices and line 6 of intrinsics.txt is 1.
Train and validation cameras are random on the upper hemisphere, test cameras an orbit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multiview.data.readers.deepvoxels import DEEPVOXELS_SPLITS
from multiview.geometry.intrinsics import make_K
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import write_image
from multiview.synthetic.cameras import hemisphere_cameras, orbit_cameras
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render
from multiview.synthetic.writers.nerf_synthetic import composite_on_white, split_counts

CAMERA_DISTANCE = 2.5
OBJECT_RADIUS = 0.8  # make_scene's bound on the object group around the origin


def write_matrix_row(path: Path, matrix: np.ndarray) -> None:
    """Write a matrix row-major as one line of exactly-representable numbers (repr of each float)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(repr(float(x)) for x in np.asarray(matrix).ravel()) + "\n")


def _intrinsics_text(K: np.ndarray, height: int, width: int, intrinsics_size: tuple[int, int],
                     world2cam: bool) -> str:
    """intrinsics.txt whose values, rescaled by the reader to height x width, give back K exactly."""
    ref_height, ref_width = intrinsics_size
    f = float(K[0, 0] * ref_height / height)
    cx, cy = float(K[0, 2] * ref_width / width), float(K[1, 2] * ref_height / height)
    lines = [f"{f!r} {cx!r} {cy!r} 0.0", "0.0 0.0 0.0", repr(CAMERA_DISTANCE - OBJECT_RADIUS), "1.0",
             f"{ref_height} {ref_width}"]
    return "\n".join(lines + (["1"] if world2cam else [])) + "\n"


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          split_fractions=(0.6, 0.2, 0.2), scene_names=None, fov_x_deg: float = 40.0,
          intrinsics_size: tuple[int, int] = (512, 512), world2cam: bool = False) -> list[WrittenScene]:
    """Write `num_scenes` scenes of `num_views` views split train/validation/test by `split_fractions`.

    Scene k is named `scene_names[k]` (default "scene_<k:03d>"; the name "cube" widens the reader's
    near/far to ± 1.0) and uses `make_scene(seed + k)` (object only), cameras from `default_rng(seed + k)`.
    Returns the ground truth in the reader's order (train, validation, test; file names within each).
    """
    out = Path(out)
    names = list(scene_names) if scene_names is not None else [f"scene_{k:03d}" for k in range(num_scenes)]
    if len(names) != num_scenes:
        raise ValueError(f"scene_names has {len(names)} names for num_scenes={num_scenes}")
    focal = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2.0)
    K = make_K(focal, focal, width / 2.0, height / 2.0)
    intrinsics_text = _intrinsics_text(K, height, width, intrinsics_size, world2cam)
    written = []
    for k, name in enumerate(names):
        spec = make_scene(seed + k, with_ground=False, with_background=False)
        rng = np.random.default_rng(seed + k)
        train, validation, test = split_counts(num_views, split_fractions)
        cameras = [hemisphere_cameras(n, radius=CAMERA_DISTANCE, elevation_deg_range=(5.0, 75.0), seed=rng)
                   for n in (train, validation)]
        cameras.append(orbit_cameras(test, radius=CAMERA_DISTANCE, elevation_deg_range=(20.0, 50.0),
                                     seed=rng))
        scene = WrittenScene(root=out, name=name, K=np.repeat(K[None], num_views, axis=0),
                             cam_from_world=np.concatenate(cameras), images=[], depths=[], masks=[])
        for split, split_cams in zip(DEEPVOXELS_SPLITS, cameras):
            scene_dir = out / split / name
            for i, cam_from_world in enumerate(split_cams):
                view = render(spec, K, cam_from_world, height, width, background="transparent")
                image = composite_on_white(view)
                image_path = scene_dir / "rgb" / f"{i:06d}.png"
                pose_path = scene_dir / "pose" / f"{i:06d}.txt"
                write_image(image_path, image)
                write_matrix_row(pose_path, cam_from_world if world2cam else invert_rigid(cam_from_world))
                scene.images.append(image)
                scene.depths.append(view.depth)
                scene.masks.append(view.mask)
                scene.files += [image_path, pose_path]
            intrinsics_path = scene_dir / "intrinsics.txt"
            intrinsics_path.write_text(intrinsics_text)
            scene.files.append(intrinsics_path)
        written.append(scene)
    return written
