"""NeRF "Realistic Synthetic 360" (Blender) scenes, read as NeRF's `load_blender.py` and IBRNet read them.

Expected tree::

    <root>/<scene>/
        transforms_train.json   {"camera_angle_x": horizontal FoV (rad),
        transforms_val.json      "frames": [{"file_path": "./train/r_0",     (relative, no extension)
        transforms_test.json                 "transform_matrix": 4x4, ...}]}  (OpenGL camera-to-world)
        train/r_<i>.png, val/r_<i>.png, test/r_<i>.png   RGBA 8-bit (800x800 in the release)

Conventions converted:
* Image = `<scene>/<file_path>.png` (".png" is not added when file_path already ends with it).
* `transform_matrix` is camera-to-world with OpenGL/Blender camera axes (x right, y up, z back); columns
  1, 2 are negated to get OpenCV axes (`opengl_c2w_to_cam_from_world`).
* focal = 0.5·W / tan(0.5·camera_angle_x) with W of the actual image; K = [[f, 0, W/2], [0, f, H/2]]
  as in NeRF/IBRNet. With pixel centres at integer coordinates the true image centre is ((W−1)/2, (H−1)/2):
  the release's K is half a pixel off, kept so that numbers stay comparable with IBRNet's.
* near = 2, far = 6 for every view (IBRNet).
* RGBA is composited on white (`View.background = "white"`, IBRNet's rgb·α + 1 − α); background=None drops
  alpha instead.
* Views: every frame of train, val, test in that order (frame order within a file), named by file_path
  without "./" and extension (e.g. "test/r_7"). `Scene.splits` has every train view and every
  `testskip`-th view of val and test (NeRF and IBRNet subsample both evaluation splits).
  IBRNet takes source views from the train split (`Scene.meta["source_split"]`).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.readers.deepvoxels import as_pose, every_kth
from multiview.data.records import Scene, View
from multiview.geometry.conventions import opengl_c2w_to_cam_from_world
from multiview.geometry.intrinsics import make_K
from multiview.io.images import BACKGROUNDS, image_size

NERF_SYNTHETIC_SPLITS = ("train", "val", "test")
NERF_SYNTHETIC_NEAR, NERF_SYNTHETIC_FAR = 2.0, 6.0


def _load_transforms(path: Path) -> tuple[float, list[dict]]:
    """(camera_angle_x, frames) of a transforms_<split>.json, validated."""
    if not path.is_file():
        raise DataFormatError(path, "transforms file is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataFormatError(path, f"malformed JSON ({error})") from error
    if not isinstance(meta, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(meta).__name__}")
    for key in ("camera_angle_x", "frames"):
        if key not in meta:
            raise DataFormatError(path, f"missing key {key!r}")
    angle, frames = meta["camera_angle_x"], meta["frames"]
    if not isinstance(angle, (int, float)) or not 0.0 < angle < np.pi:
        raise DataFormatError(path, f"'camera_angle_x' must be a number in (0, pi) radians, got {angle!r}")
    if not isinstance(frames, list) or not frames:
        raise DataFormatError(path, "'frames' must be a non-empty list")
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DataFormatError(path, f"frames[{index}] must be an object")
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise DataFormatError(path, f"frames[{index}] is missing key {key!r}")
        if not isinstance(frame["file_path"], str):
            raise DataFormatError(path, f"frames[{index}] 'file_path' must be a string")
    return float(angle), frames


def _frame_view(scene_dir: Path, json_path: Path, index: int, frame: dict, camera_angle_x: float,
                background: str | None) -> View:
    """One frame of a transforms file -> View (conventions in the module docstring)."""
    file_path = frame["file_path"]
    image_path = scene_dir / (file_path if file_path.lower().endswith(".png") else f"{file_path}.png")
    what = f"frames[{index}] 'transform_matrix'"
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataFormatError(json_path, f"{what} is not a 4x4 matrix of numbers ({error})") from error
    if matrix.shape != (4, 4):
        raise DataFormatError(json_path, f"{what} must be 4x4, got shape {matrix.shape}")
    cam_from_world = opengl_c2w_to_cam_from_world(as_pose(json_path, matrix, what))
    height, width = image_size(image_path)
    focal = 0.5 * width / np.tan(0.5 * camera_angle_x)
    return View(name=PurePosixPath(file_path).with_suffix("").as_posix(), image_path=image_path,
                height=height, width=width, K=make_K(focal, focal, width / 2.0, height / 2.0),
                cam_from_world=cam_from_world, near=NERF_SYNTHETIC_NEAR, far=NERF_SYNTHETIC_FAR,
                background=background)


def read_nerf_synthetic_scene(scene_dir: str | Path, testskip: int = 8,
                              background: str | None = "white") -> Scene:
    """Read the three transforms files of one scene.

    Args:
        testskip: `Scene.splits["val"/"test"]` keep every `testskip`-th frame (IBRNet's eval uses 8).
        background: "white" (IBRNet), "black", or None to drop alpha.
    """
    if background is not None and background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(BACKGROUNDS)} or None, got {background!r}")
    scene_dir = Path(scene_dir)
    views: list[View] = []
    splits: dict[str, list[int]] = {}
    angles = {}
    for split in NERF_SYNTHETIC_SPLITS:
        json_path = scene_dir / f"transforms_{split}.json"
        angles[split], frames = _load_transforms(json_path)
        start = len(views)
        views += [_frame_view(scene_dir, json_path, i, frame, angles[split], background)
                  for i, frame in enumerate(frames)]
        indices = list(range(start, len(views)))
        splits[split] = indices if split == "train" else every_kth(indices, testskip)
    return Scene(name=scene_dir.name, dataset="nerf_synthetic", root=scene_dir, views=views, splits=splits,
                 meta={"source_split": "train", "camera_angle_x": angles})


def list_nerf_synthetic_scenes(root: str | Path) -> list[Path]:
    """Sorted scene folders of `root`: its sub-folders that contain a transforms_train.json."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "NeRF-synthetic root folder is missing")
    return sorted(p for p in root.iterdir() if (p / "transforms_train.json").is_file())
