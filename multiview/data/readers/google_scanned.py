"""Google Scanned Objects renderings as IBRNet trains on them (`google_scanned_objects/<obj>/`).

Expected tree::

    <root>/<object>/
        rgb/<NNNNNN>.png          RGB images (512x512, 250 per object in IBRNet's data), sorted by file name
        pose/<NNNNNN>.txt         16 numbers: the 4x4 OpenCV camera-to-world, row-major
        intrinsics/<NNNNNN>.txt   16 numbers on one row: a row-major 4x4 [[K, 0], [0, 1]] in pixels

Conventions converted:
* `cam_from_world = inv(pose)`; K is the top-left 3x3 of the intrinsics file, used as is.
* near/far (IBRNet): d0 = inv(c2w)[2, 3] (camera z of the world origin), r = 0.5·√2·1.1,
  near = max(d0 − r, 0.1·d0), far = d0 + r.
* Pose and intrinsics paths are built from each image's stem (IBRNet replaces 'rgb' and 'png' over the
  whole path, which breaks when the root path contains those substrings).
* The only split is "train" (IBRNet uses these objects for training only).
* `list_google_scanned` returns the object folders with at least `min_views` images and, separately,
  the objects it leaves out (IBRNet silently skips objects with fewer than 250 views).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.readers.deepvoxels import as_pose, paired_files, read_numbers
from multiview.data.records import Scene, View
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import image_size

GSO_MAX_RADIUS = 0.5 * np.sqrt(2.0) * 1.1  # IBRNet's bound on the object's radius around the origin
GSO_MIN_NEAR_RATIO = 0.1

logger = logging.getLogger(__name__)


def google_scanned_near_far(cam_from_world: np.ndarray) -> tuple[float, float]:
    """IBRNet's bounds from d0, the camera z of the world origin: (max(d0 − r, 0.1·d0), d0 + r)."""
    d0 = float(cam_from_world[2, 3])
    return max(d0 - GSO_MAX_RADIUS, GSO_MIN_NEAR_RATIO * d0), d0 + GSO_MAX_RADIUS


def read_google_scanned_intrinsics(path: Path) -> np.ndarray:
    """(3, 3) K from a file of 16 numbers (row-major 4x4 with K in its top-left block)."""
    values = read_numbers(path, "intrinsics")
    if values.size != 16:
        raise DataFormatError(path, f"intrinsics must have 16 numbers (a flattened 4x4), got {values.size}")
    K = values.reshape(4, 4)[:3, :3]
    if not np.isfinite(K).all():
        raise DataFormatError(path, "intrinsics have non-finite values (NaN or inf)")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise DataFormatError(path, f"intrinsics are not a pinhole K with positive focals: {K.tolist()}")
    return K


def read_google_scanned_scene(object_dir: str | Path) -> Scene:
    """Read one rendered object; views named by image stem, in file-name order, all in split "train"."""
    object_dir = Path(object_dir)
    image_dir = object_dir / "rgb"
    poses = paired_files(image_dir, object_dir / "pose", ".txt", "pose")
    intrinsics = paired_files(image_dir, object_dir / "intrinsics", ".txt", "intrinsics")
    views = []
    for (image_path, pose_path), (_, intrinsics_path) in zip(poses, intrinsics):
        cam_from_world = invert_rigid(as_pose(pose_path, read_numbers(pose_path, "pose")))
        height, width = image_size(image_path)
        near, far = google_scanned_near_far(cam_from_world)
        views.append(View(name=image_path.stem, image_path=image_path, height=height, width=width,
                          K=read_google_scanned_intrinsics(intrinsics_path), cam_from_world=cam_from_world,
                          near=near, far=far))
    return Scene(name=object_dir.name, dataset="google_scanned", root=object_dir, views=views,
                 splits={"train": list(range(len(views)))}, meta={"source_split": "train"})


class GoogleScannedListing(NamedTuple):
    """Object folders kept, and (folder, number of images) of those left out for having too few views."""

    objects: list[Path]
    skipped: list[tuple[Path, int]]


def list_google_scanned(root: str | Path, min_views: int = 250) -> GoogleScannedListing:
    """The object folders of `root` (sorted) with at least `min_views` images in rgb/; the others are
    returned in `skipped` and logged. Hidden folders and plain files are not objects."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "Google Scanned Objects root folder is missing")
    objects, skipped = [], []
    for object_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (object_dir / "rgb").is_dir():
            raise DataFormatError(object_dir / "rgb", "image folder is missing")
        num_views = len(list((object_dir / "rgb").glob("*.png")))
        if num_views >= min_views:
            objects.append(object_dir)
        else:
            skipped.append((object_dir, num_views))
            logger.warning("skipping %s: %d views < min_views=%d", object_dir, num_views, min_views)
    return GoogleScannedListing(objects, skipped)
