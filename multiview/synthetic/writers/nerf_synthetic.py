"""Procedural objects written as NeRF "Realistic Synthetic 360" (Blender) scenes.

Layout (read back by `multiview.data.readers.nerf_synthetic`)::

    <out>/scene_<k:03d>/transforms_{train,val,test}.json
    <out>/scene_<k:03d>/{train,val,test}/r_<i>.png      RGBA 8-bit, alpha 0 off the object

The object (no ground, no environment; `make_scene(..., scale=1.5)`) sits within radius 1.2 of the origin
and cameras look at the origin from distance 4 (the release's ~4.03), so every depth lies in [2.8, 5.2],
inside the reader's fixed near/far [2, 6]. Train and
val cameras are random on the upper hemisphere, test cameras a circle at 30° elevation (as in the release).
Images are rendered with the K the reader derives, [[f, 0, W/2], [0, f, H/2]] with
f = 0.5·W / tan(0.5·camera_angle_x), so the reader's cameras are exact despite the release's half-pixel
convention. `WrittenScene.images` are the renders composited on white (what the reader loads by default).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from multiview.geometry.conventions import cam_from_world_to_opengl_c2w
from multiview.geometry.intrinsics import make_K
from multiview.io.images import to_uint8, write_image
from multiview.synthetic.cameras import hemisphere_cameras, orbit_cameras
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import RenderedView, make_scene, render

RELEASE_CAMERA_ANGLE_X = 0.6911112070083618  # the release's horizontal FoV in radians (39.6°)
CAMERA_DISTANCE = 4.0
SCENE_SCALE = 1.5  # object radius <= 0.8 * 1.5 = 1.2
SPLITS = ("train", "val", "test")


def split_counts(num_views: int, fractions) -> list[int]:
    """Views per split: round(fraction·num_views), at least 1 each, the first split takes the remainder."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if (fractions <= 0).any():
        raise ValueError(f"split fractions must be positive, got {fractions.tolist()}")
    fractions = fractions / fractions.sum()
    rest = [max(1, round(float(f) * num_views)) for f in fractions[1:]]
    if num_views - sum(rest) < 1:
        raise ValueError(f"num_views={num_views} is too few for {len(fractions)} non-empty splits")
    return [num_views - sum(rest), *rest]


def composite_on_white(view: RenderedView) -> np.ndarray:
    """(H, W, 3) float32: a transparent-background render composited on white, rgb·α + 1 − α."""
    alpha = view.alpha[..., None]
    return view.rgb * alpha + (1.0 - alpha)


def _split_cameras(num_per_split: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    train, val, test = num_per_split
    return [
        hemisphere_cameras(train, radius=CAMERA_DISTANCE, elevation_deg_range=(10.0, 70.0), seed=rng),
        hemisphere_cameras(val, radius=CAMERA_DISTANCE, elevation_deg_range=(10.0, 70.0), seed=rng),
        orbit_cameras(test, radius=CAMERA_DISTANCE, elevation_deg_range=(30.0, 30.0), seed=rng),
    ]


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          split_fractions=(0.6, 0.2, 0.2),
          camera_angle_x: float = RELEASE_CAMERA_ANGLE_X) -> list[WrittenScene]:
    """Write `num_scenes` scenes of `num_views` views split train/val/test by `split_fractions`.

    Scene k uses `make_scene(seed + k, scale=SCENE_SCALE)` (object only) and cameras from
    `default_rng(seed + k)`.
    Returns the ground truth with views in the reader's order (train, val, test frames).
    """
    out = Path(out)
    focal = 0.5 * width / np.tan(0.5 * camera_angle_x)
    K = make_K(focal, focal, width / 2.0, height / 2.0)
    written = []
    for k in range(num_scenes):
        name = f"scene_{k:03d}"
        root = out / name
        spec = make_scene(seed + k, with_ground=False, with_background=False, scale=SCENE_SCALE)
        cameras = _split_cameras(split_counts(num_views, split_fractions), np.random.default_rng(seed + k))
        scene = WrittenScene(root=root, name=name, K=np.repeat(K[None], num_views, axis=0),
                             cam_from_world=np.concatenate(cameras), images=[], depths=[], masks=[])
        for split, split_cams in zip(SPLITS, cameras):
            frames = []
            for i, cam_from_world in enumerate(split_cams):
                view = render(spec, K, cam_from_world, height, width, background="transparent")
                image_path = root / split / f"r_{i}.png"
                write_image(image_path, to_uint8(np.concatenate([view.rgb, view.alpha[..., None]], axis=-1)))
                frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0,
                               "transform_matrix": cam_from_world_to_opengl_c2w(cam_from_world).tolist()})
                scene.images.append(composite_on_white(view))
                scene.depths.append(view.depth)
                scene.masks.append(view.mask)
                scene.files.append(image_path)
            json_path = root / f"transforms_{split}.json"
            json_path.write_text(json.dumps({"camera_angle_x": camera_angle_x, "frames": frames}, indent=4))
            scene.files.append(json_path)
        written.append(scene)
    return written
