"""Spaces scenes (`spaces_dataset/data/800/scene_XXX/`, read by `multiview.data.readers.spaces`).

`out` is the `spaces_dataset` folder; scene k is written to `out/data/800/scene_{k:03d}/` as `models.json`
and `cam_YY/image_ZZZ.JPG` (camera YY of the rig at position ZZZ, JPEG quality 95). The rig is a 4x4
grid with 0.1-unit spacing whose optical axes fan out slightly like the release's dome-shaped rig,
facing the object from 2.6-3.0 units away; it is placed at `num_rig_positions` nearby positions
(default ceil(num_views / 16)). `num_views` is the total number of images: the positions share them as
evenly as possible, each rig using the first cameras of the grid in row-major order (16 when
num_views is 16 x positions, as in the release). As in the release, sizes differ per camera: odd
cameras have shorter images (height − max(2, height // 16)) and 1 % taller pixels
(pixel_aspect_ratio 1.01); camera 0's JSON describes a capture at twice the stored size, so the
reader must rescale its K.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from multiview.geometry.conventions import opencv_to_spaces
from multiview.geometry.intrinsics import make_K, resize_intrinsics
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import write_image
from multiview.synthetic.cameras import look_at
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render

GRID_SIZE = 4
CAMERAS_PER_RIG = GRID_SIZE * GRID_SIZE
CAMERA_SPACING = 0.1
FAN_RADIUS = 1.0  # optical axes diverge as if the cameras sat on a sphere of this radius
JSON_SIZE_FACTOR = 2  # camera 0's JSON width/height relative to its stored image


def _rig_sizes(num_views: int, num_rig_positions: int | None) -> list[int]:
    """Number of cameras used at each rig position."""
    num_rigs = math.ceil(num_views / CAMERAS_PER_RIG) if num_rig_positions is None else num_rig_positions
    if not 1 <= num_rigs <= num_views or math.ceil(num_views / num_rigs) > CAMERAS_PER_RIG:
        raise ValueError(f"cannot spread {num_views} views over {num_rigs} rig positions of "
                         f"{CAMERAS_PER_RIG} cameras")
    return [num_views // num_rigs + (r < num_views % num_rigs) for r in range(num_rigs)]


def _rig_cameras(centre_cam_from_world: np.ndarray, num_cameras: int) -> list[np.ndarray]:
    """cam_from_world of the first `num_cameras` grid cameras (row-major) around a rig's central camera."""
    world_from_rig = invert_rigid(centre_cam_from_world)
    right, down, forward, centre = world_from_rig[:3].T
    cams = []
    for c in range(num_cameras):
        row, col = divmod(c, GRID_SIZE)
        offset = CAMERA_SPACING * ((col - 1.5) * right + (row - 1.5) * down)
        cams.append(look_at(centre + offset, centre + offset + forward + offset / FAN_RADIUS))
    return cams


def _camera_intrinsics(camera: int, height: int, width: int, focal: float) -> tuple[np.ndarray, int]:
    """(K, image height) of rig camera `camera`: odd cameras have shorter images and taller pixels."""
    odd = camera % 2
    image_height = height - odd * max(2, height // 16)
    K = make_K(focal, focal * (1.0 + 0.01 * odd), (width - 1) / 2.0, (image_height - 1) / 2.0)
    return K, image_height


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          num_rig_positions: int | None = None, fov_x_deg: float = 60.0) -> list[WrittenScene]:
    """Write `num_scenes` scenes of `num_views` images; scene k renders `make_scene(seed + k)`."""
    sizes = _rig_sizes(num_views, num_rig_positions)
    focal = width / (2.0 * np.tan(np.radians(fov_x_deg) / 2.0))
    written = []
    for k in range(num_scenes):
        rng = np.random.default_rng([seed, k])
        scene_dir = Path(out) / "data" / "800" / f"scene_{k:03d}"
        spec = make_scene(seed + k)
        azimuth, elevation, distance = rng.uniform(0.0, 360.0), rng.uniform(8.0, 20.0), rng.uniform(2.7, 2.9)
        models, Ks, cams, images, depths, masks, files = [], [], [], [], [], [], []
        for r, num_cameras in enumerate(sizes):
            az = np.radians(azimuth + rng.uniform(-4.0, 4.0))
            el = np.radians(elevation + rng.uniform(-2.0, 2.0))
            eye = (distance + rng.uniform(-0.1, 0.1)) * np.array(
                [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
            rig = []
            for c, cam_from_world in enumerate(_rig_cameras(look_at(eye, np.zeros(3)), num_cameras)):
                K, image_height = _camera_intrinsics(c, height, width, focal)
                view = render(spec, K, cam_from_world, image_height, width)
                relative_path = f"cam_{c:02d}/image_{r:03d}.JPG"
                write_image(scene_dir / relative_path, view.rgb, quality=95)
                json_hw = (image_height, width) if c else (JSON_SIZE_FACTOR * image_height,
                                                           JSON_SIZE_FACTOR * width)
                K_json = resize_intrinsics(K, (image_height, width), json_hw)
                rig.append({"relative_path": relative_path, "width": json_hw[1], "height": json_hw[0],
                            **opencv_to_spaces(K_json, cam_from_world)})
                Ks.append(K)
                cams.append(cam_from_world)
                images.append(view.rgb)
                depths.append(view.depth)
                masks.append(view.mask)
                files.append(scene_dir / relative_path)
            models.append(rig)
        (scene_dir / "models.json").write_text(json.dumps(models, indent=1))
        written.append(WrittenScene(root=scene_dir, name=scene_dir.name, K=np.stack(Ks),
                                    cam_from_world=np.stack(cams), images=images, depths=depths,
                                    masks=masks, files=[scene_dir / "models.json", *files]))
    return written
