"""DeepVoxels "Diffuse Synthetic 360" scenes, read as IBRNet reads them.

Expected tree (one folder per split, each with its own intrinsics)::

    <root>/{train,validation,test}/<scene>/
        rgb/<NNNNNN>.png        images (512x512 in the release), sorted by file name
        pose/<NNNNNN>.txt       4x4 camera-to-world, 16 numbers on one line or 4 lines of 4
        intrinsics.txt          line 1: f cx cy [...]   (only the first 3 are used)
                                line 2: bx by bz        (grid barycentre)
                                line 3: near_plane
                                line 4: scale
                                line 5: height width    (the image size f, cx, cy refer to)
                                line 6: optional integer flag world2cam_poses (absent/non-integer = 0)
        depth/...               (train only; ignored, as in IBRNet)

Conventions converted:
* Pose files are OpenCV camera-to-world (as IBRNet uses them, no axis flips):
  `cam_from_world = inv(pose)`. If line 6 of intrinsics.txt is a non-zero integer the pose files are
  world-to-camera and used directly (IBRNet ignores this flag; a flag is not known to be set in the release).
* Intrinsics are rescaled to each image's actual size (H, W) as IBRNet does:
  f' = f·H/height, cx' = cx/width·W, cy' = cy/height·H (no half-pixel shift; with the release's
  c = 256 at 512 this is IBRNet's cx = W/2).
* near/far (IBRNet): origin_depth ± 0.8 (± 1.0 for the scene named "cube"), where
  origin_depth = inv(c2w)[2, 3] is the camera z of the world origin.
* Views: the splits in the order given, each sorted by file name; `Scene.splits[split]` lists every view
  of "train" and every `testskip`-th view of the other splits (IBRNet's [::testskip]); all views are kept
  in `Scene.views`. IBRNet takes source views from the train split (`Scene.meta["source_split"]`).

The module also holds the text/PNG helpers shared by the Google Scanned Objects and NeRF-synthetic readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.geometry.intrinsics import make_K
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import image_size

DEEPVOXELS_SPLITS = ("train", "validation", "test")

# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the object-centric readers (deepvoxels, google_scanned, nerf_synthetic)


def read_numbers(path: Path, what: str) -> np.ndarray:
    """All whitespace-separated numbers of a text file, 1-D float64 (NaN/inf are left to the caller)."""
    if not path.is_file():
        raise DataFormatError(path, f"{what} file is missing")
    try:
        return np.array([float(token) for token in path.read_text().split()], dtype=np.float64)
    except (OSError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"cannot read {what} file ({error})") from error
    except ValueError as error:
        raise DataFormatError(path, f"{what} file is malformed, expected numbers ({error})") from error


def as_pose(path: Path, values, what: str = "pose") -> np.ndarray:
    """16 numbers (flat or 4x4) -> (4, 4) float64 rigid transform, or DataFormatError naming `path`.

    Checks the count, finiteness, last row [0, 0, 0, 1] and an orthonormal right-handed rotation (1e-4).
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.size != 16:
        raise DataFormatError(path, f"{what} must have 16 numbers (a 4x4 matrix), got {matrix.size}")
    matrix = matrix.reshape(4, 4)
    if not np.isfinite(matrix).all():
        raise DataFormatError(path, f"{what} has non-finite values (NaN or inf)")
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise DataFormatError(path, f"{what} last row must be [0 0 0 1], got {matrix[3].tolist()}")
    R = matrix[:3, :3]
    if not (np.allclose(R @ R.T, np.eye(3), atol=1e-4) and abs(np.linalg.det(R) - 1.0) < 1e-4):
        raise DataFormatError(path, f"{what} is not a rigid transform (rotation not orthonormal with det +1)")
    return matrix


def paired_files(image_dir: Path, other_dir: Path, suffix: str, what: str) -> list[tuple[Path, Path]]:
    """[(image_dir/<stem>.png, other_dir/<stem><suffix>)] for the PNGs of `image_dir` sorted by name.

    Paths are built from the image's stem (never by string replacement over the whole path). Every image
    must have its `<stem><suffix>` file and every such file its image; the error names the missing file.
    """
    if not image_dir.is_dir():
        raise DataFormatError(image_dir, "image folder is missing")
    images = sorted(image_dir.glob("*.png"))
    if not images:
        raise DataFormatError(image_dir, "image folder has no PNG images")
    if not other_dir.is_dir():
        raise DataFormatError(other_dir, f"{what} folder is missing")
    others = sorted(other_dir.glob(f"*{suffix}"))
    counts = f"({len(images)} images in {image_dir.name}/, {len(others)} {what} files in {other_dir.name}/)"
    image_stems = {image.stem for image in images}
    for other in others:
        if other.name[: -len(suffix)] not in image_stems:
            raise DataFormatError(image_dir / f"{other.name[: -len(suffix)]}.png",
                                  f"image file is missing for {what} file {other.name} {counts}")
    pairs = [(image, other_dir / f"{image.stem}{suffix}") for image in images]
    for image, other in pairs:
        if not other.is_file():
            raise DataFormatError(other, f"{what} file is missing for image {image.name} {counts}")
    return pairs


def every_kth(indices: list[int], step: int) -> list[int]:
    """indices[::step], validating `step` (IBRNet's testskip)."""
    if step < 1:
        raise ValueError(f"testskip must be >= 1, got {step}")
    return indices[::step]


# ---------------------------------------------------------------------------------------------------------
# DeepVoxels


@dataclass(frozen=True)
class DeepVoxelsIntrinsics:
    """The fields of a DeepVoxels intrinsics.txt (f, cx, cy in pixels of a `height` x `width` image)."""

    f: float
    cx: float
    cy: float
    grid_barycenter: tuple[float, float, float]
    near_plane: float
    scale: float
    height: float
    width: float
    world2cam_poses: bool

    def K_for_image(self, height: int, width: int) -> np.ndarray:
        """(3, 3) K rescaled to an image of `height` x `width` as IBRNet does (see the module docstring)."""
        return make_K(self.f * height / self.height, self.f * height / self.height,
                      self.cx / self.width * width, self.cy / self.height * height)


def read_deepvoxels_intrinsics(path: Path) -> DeepVoxelsIntrinsics:
    """Parse a DeepVoxels intrinsics.txt (6-line layout in the module docstring)."""
    if not path.is_file():
        raise DataFormatError(path, "intrinsics file is missing")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"cannot read intrinsics file ({error})") from error
    fields = [("f cx cy", 3, None), ("bx by bz", 3, 3), ("near_plane", 1, 1), ("scale", 1, 1),
              ("height width", 2, 2)]
    if len(lines) < len(fields):
        raise DataFormatError(path, f"intrinsics file must have at least 5 lines, got {len(lines)}")
    rows = []
    for number, (line, (name, minimum, exact)) in enumerate(zip(lines, fields), start=1):
        try:
            row = [float(token) for token in line.split()]
        except ValueError as error:
            raise DataFormatError(path, f"line {number} ({name}) is malformed ({error})") from error
        if len(row) < minimum or (exact is not None and len(row) != exact):
            expected = exact or f">= {minimum}"
            raise DataFormatError(path, f"line {number} ({name}) needs {expected} numbers, got {len(row)}")
        if not np.isfinite(row).all():
            raise DataFormatError(path, f"line {number} ({name}) has non-finite values")
        rows.append(row)
    (f, cx, cy, *_), barycenter, (near_plane,), (scale,), (height, width) = rows
    if f <= 0 or height <= 0 or width <= 0:
        raise DataFormatError(path, f"f, height and width must be positive, got {f}, {height}, {width}")
    try:  # as IBRNet/DeepVoxels: a missing or non-integer line 6 means "poses are camera-to-world"
        world2cam = bool(int(lines[5])) if len(lines) > 5 else False
    except ValueError:
        world2cam = False
    return DeepVoxelsIntrinsics(f, cx, cy, tuple(barycenter), near_plane, scale, height, width, world2cam)


def deepvoxels_near_far(cam_from_world: np.ndarray, scene: str) -> tuple[float, float]:
    """IBRNet's bounds: camera z of the world origin ± 0.8 (± 1.0 for "cube")."""
    origin_depth = float(cam_from_world[2, 3])
    margin = 1.0 if scene == "cube" else 0.8
    return origin_depth - margin, origin_depth + margin


def list_deepvoxels_scenes(root: str | Path) -> list[str]:
    """Sorted names of the scene folders found in any of `<root>/{train,validation,test}/`."""
    root = Path(root)
    split_dirs = [root / split for split in DEEPVOXELS_SPLITS if (root / split).is_dir()]
    if not split_dirs:
        raise DataFormatError(root, f"no DeepVoxels split folder ({', '.join(DEEPVOXELS_SPLITS)}) found")
    return sorted({path.name for split_dir in split_dirs for path in split_dir.iterdir() if path.is_dir()})


def read_deepvoxels_scene(root: str | Path, scene: str, splits=DEEPVOXELS_SPLITS,
                          testskip: int = 10) -> Scene:
    """Read one DeepVoxels scene across its split folders; views named "<split>/<stem>".

    Args:
        root: the folder holding train/, validation/, test/.
        splits: which split folders to read (each must contain the scene).
        testskip: `Scene.splits` keeps every `testskip`-th view of the non-train splits.
    """
    root = Path(root)
    views: list[View] = []
    split_indices: dict[str, list[int]] = {}
    for split in splits:
        scene_dir = root / split / scene
        if not scene_dir.is_dir():
            raise DataFormatError(scene_dir, f"scene folder of split {split!r} is missing")
        intrinsics = read_deepvoxels_intrinsics(scene_dir / "intrinsics.txt")
        start = len(views)
        for image_path, pose_path in paired_files(scene_dir / "rgb", scene_dir / "pose", ".txt", "pose"):
            pose = as_pose(pose_path, read_numbers(pose_path, "pose"))
            cam_from_world = pose if intrinsics.world2cam_poses else invert_rigid(pose)
            height, width = image_size(image_path)
            near, far = deepvoxels_near_far(cam_from_world, scene)
            views.append(View(name=f"{split}/{image_path.stem}", image_path=image_path, height=height,
                              width=width, K=intrinsics.K_for_image(height, width),
                              cam_from_world=cam_from_world, near=near, far=far))
        indices = list(range(start, len(views)))
        split_indices[split] = indices if split == "train" else every_kth(indices, testskip)
    return Scene(name=scene, dataset="deepvoxels", root=root, views=views, splits=split_indices,
                 meta={"source_split": "train"})
