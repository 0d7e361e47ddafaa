"""Spaces (Flynn et al., DeepView): a 16-camera rig photographed at several positions per scene.

Expected tree (`root` = the `spaces_dataset` folder; IBRNet trains on all 100 scenes of `800/`)::

    spaces_dataset/data/800/
      scene_000/
        models.json                      JSON list over rig positions; each a list of camera dicts
        cam_00/image_000.JPG             camera 0 of the rig at position 0 (`relative_path` in the JSON)
        ...
        cam_15/image_000.JPG

Camera dict: {relative_path, width, height, focal_length, pixel_aspect_ratio, principal_point: [cx, cy],
position: [3], orientation: [3]}. Conventions converted (`spaces_to_opencv`, as IBRNet reads them):
world_from_cam = [rotation(axis, −angle) | position] where `orientation` is an axis-angle vector whose
length is the angle (note the minus), camera axes OpenCV; fx = focal_length, fy =
focal_length·pixel_aspect_ratio, (cx, cy) = principal_point, in pixels of a width x height image.
Image sizes differ per camera: each image's size is read from its header and, when it differs from
the JSON's, K is rescaled with `resize_intrinsics` (pixel centres at integers; IBRNet multiplies the
rows of K by the size ratio, which puts cx, cy 0.5·(ratio − 1) pixels off).

Views are ordered by rig position, then by camera in the JSON; the name is `relative_path` without
its extension (`cam_YY/image_ZZZ`), `extra` holds `rig_position` and `camera`. Every listed image must
exist and every file under `cam_*/` must be listed. near/far = 0.7/100 (IBRNet).
`Scene.splits = {"train": all views}`; `meta["rig_positions"]` lists the positions read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.geometry.conventions import spaces_to_opencv
from multiview.geometry.intrinsics import resize_intrinsics
from multiview.io.images import image_size

NEAR, FAR = 0.7, 100.0
MODELS_FILE = "models.json"
CAMERA_KEYS = ("relative_path", "width", "height", "focal_length", "pixel_aspect_ratio", "principal_point",
               "position", "orientation")
# key -> number of values (0: a single number)
_NUMERIC_KEYS = {"focal_length": 0, "pixel_aspect_ratio": 0, "principal_point": 2, "position": 3,
                 "orientation": 3}


def list_spaces_scenes(root: str | Path, resolution: int = 800) -> list[Path]:
    """Sorted `scene_*` folders of `root/data/<resolution>/` (`root` = the `spaces_dataset` folder)."""
    folder = Path(root) / "data" / str(resolution)
    if not folder.is_dir():
        raise DataFormatError(folder, f"resolution folder {resolution} is missing")
    return sorted(path for path in folder.glob("scene_*") if path.is_dir())


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_camera(path: Path, where: str, camera) -> None:
    """Raise DataFormatError unless `camera` is a complete camera dict with finite numbers."""
    if not isinstance(camera, dict):
        raise DataFormatError(path, f"{where}: expected a camera dict, got {type(camera).__name__}")
    missing = [key for key in CAMERA_KEYS if key not in camera]
    if missing:
        raise DataFormatError(path, f"{where}: missing key(s) {missing}")
    if not isinstance(camera["relative_path"], str):
        raise DataFormatError(path, f"{where}: 'relative_path' must be a string")
    for key in ("width", "height"):
        if not (_is_number(camera[key]) and camera[key] == int(camera[key]) and camera[key] > 0):
            raise DataFormatError(path, f"{where}: '{key}' must be a positive integer, got {camera[key]!r}")
    for key, length in _NUMERIC_KEYS.items():
        value = camera[key]
        ok = _is_number(value) if length == 0 else (
            isinstance(value, list) and len(value) == length and all(map(_is_number, value)))
        if not ok:
            expected = "a finite number" if length == 0 else f"{length} finite numbers"
            raise DataFormatError(path, f"{where}: '{key}' must be {expected}, got {value!r}")
    if camera["focal_length"] <= 0 or camera["pixel_aspect_ratio"] <= 0:
        raise DataFormatError(path, f"{where}: focal_length and pixel_aspect_ratio must be positive")


def read_spaces_models(path: str | Path) -> list[list[dict]]:
    """Load and validate a `models.json`: a non-empty list (rig positions) of non-empty lists of cameras."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "models.json is missing")
    try:
        rigs = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"invalid JSON ({error})") from error
    if not isinstance(rigs, list) or not rigs:
        raise DataFormatError(path, "expected a non-empty JSON list over rig positions, "
                                    f"got {type(rigs).__name__}")
    for r, rig in enumerate(rigs):
        if not isinstance(rig, list) or not rig:
            raise DataFormatError(path, f"rig position {r}: expected a non-empty list of camera dicts")
        for c, camera in enumerate(rig):
            _check_camera(path, f"rig position {r}, camera {c}", camera)
    return rigs


def _check_images_listed(scene_dir: Path, models_path: Path, rigs: list[list[dict]]) -> None:
    """Raise DataFormatError for a file under `cam_*/` that no camera of `models.json` refers to."""
    listed = {PurePosixPath(camera["relative_path"]) for rig in rigs for camera in rig}
    for image_path in sorted(scene_dir.glob("cam_*/*")):
        if image_path.is_file() and PurePosixPath(image_path.relative_to(scene_dir).as_posix()) not in listed:
            raise DataFormatError(image_path, f"image is not listed in {models_path}")


def read_spaces_scene(scene_dir: str | Path, rig_positions: Sequence[int] | None = None) -> Scene:
    """A Spaces scene -> Scene with every camera of the chosen rig positions (default: all)."""
    scene_dir = Path(scene_dir)
    models_path = scene_dir / MODELS_FILE
    rigs = read_spaces_models(models_path)
    if rig_positions is None:
        rig_positions = range(len(rigs))
    rig_positions = list(rig_positions)
    bad = [r for r in rig_positions if not 0 <= r < len(rigs)]
    if bad:
        raise ValueError(f"{models_path}: rig positions {bad} out of range, the scene has {len(rigs)}")
    _check_images_listed(scene_dir, models_path, rigs)
    views = []
    for r in rig_positions:
        for c, camera in enumerate(rigs[r]):
            image_path = scene_dir / camera["relative_path"]
            height, width = image_size(image_path)
            K, cam_from_world = spaces_to_opencv(camera)
            json_hw = (int(camera["height"]), int(camera["width"]))
            if json_hw != (height, width):
                K = resize_intrinsics(K, json_hw, (height, width))
            name = str(PurePosixPath(camera["relative_path"]).with_suffix(""))
            views.append(View(name=name, image_path=image_path, height=height, width=width, K=K,
                              cam_from_world=cam_from_world, near=NEAR, far=FAR,
                              extra={"rig_position": r, "camera": c}))
    return Scene(name=scene_dir.name, dataset="spaces", root=scene_dir, views=views,
                 splits={"train": list(range(len(views)))}, meta={"rig_positions": rig_positions})
