"""LLFF forward-facing scenes (`nerf_llff_data`, IBRNet's `real_iconic_noface` and `ibrnet_collected`), read
as IBRNet's `llff_data_utils.load_llff_data` reads them.

Expected tree::

    <scene>/
        poses_bounds.npy        float64 (N, 17), one row per image in sorted file-name order:
                                row[:15].reshape(3, 5) = [down | right | back | centre | hwf]
                                (camera-to-world axes and centre in world units; hwf = [H, W, focal]
                                of the full-resolution images/), row[15:17] = [near, far] depth bounds
        images/                 full-resolution images (.png/.jpg/.jpeg, any case; read when factor is 1/None)
        images_<factor>/        the same images downsized by <factor> (e.g. images_4/image000.png ...)

    nerf_llff_data/<scene>/                                   (fern, flower, ...; factor 4 in IBRNet)
    real_iconic_noface/<scene>/                               (IBRNet "llff" training set, factor 4)
    ibrnet_collected_1/<scene>/, ibrnet_collected_2/<scene>/  (factor 2 and 8)

Conventions converted (IBRNet's steps, in this order):
* Views are the image files of `images_<factor>/` in sorted name order, row i of poses_bounds.npy belongs to
  the i-th file; counts must match. Missing `images_<factor>/` is an error (IBRNet would call ImageMagick).
* Pose blocks -> OpenCV `cam_from_world` with `llff_to_cam_from_world`.
* focal f = hwf_focal · W_actual / W_hwf (equals IBRNet's hwf_focal / factor when the folder is an exact
  1/factor minification, as in the release); K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]. With pixel centres
  at integer coordinates the true centre is ((W−1)/2, (H−1)/2): IBRNet's K is half a pixel off, kept so
  that numbers stay comparable with IBRNet's.
* Rescale: sc = 1 / (min(bounds) · bd_factor) multiplies camera centres and bounds (bd_factor=None: sc = 1).
* Recentre (recenter=True): NeRF's `recenter_poses` — the average camera (centre = mean of centres, back
  axis = normalised sum of back axes, up from the sum of up axes) becomes the world frame, i.e. the world is
  left-multiplied by its inverse. After it the average camera sits at the origin with OpenGL axes (in
  OpenCV terms its camera-to-world rotation is diag(1, −1, −1)). It is rigid: relative poses do not change.
* near, far = near_far_scale · (min, max) of the rescaled bounds, the same for every view (IBRNet: 0.9/1.6
  for nerf_llff_data and real_iconic_noface, 0.9/1.5 for ibrnet_collected).
* Splits: "test" = every `holdout_every`-th view (0, 8, 16, ...), "train" = the rest; holdout_every=None
  puts every view in "train" (IBRNet's training sets use all images).
* `Scene.meta`: "scale" (sc), "recenter_transform" ((4, 4) rigid map from the rescaled to the final world),
  "normalized_from_input" ((4, 4) similarity = recenter_transform · diag(sc, sc, sc, 1): a point X of the
  poses_bounds.npy world lands at normalized_from_input · X; camera-frame points and depths scale by sc),
  "bounds" ((N, 2) raw bounds from the file), "near_far", "hwf" (row 0), "factor", "image_dir".
  `View.extra["bounds"]` holds the view's rescaled (near, far) bounds.

Checked at read time (DataFormatError naming the file): array shape (N, 17), finite values, 0 < near <= far,
positive hwf, orthonormal rotations, image count = N, every image's header and end marker (truncation),
one image size per scene, and that size being a downsizing of hwf's H x W.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.geometry.conventions import llff_to_cam_from_world
from multiview.geometry.intrinsics import make_K
from multiview.geometry.transforms import invert_rigid
from multiview.io.images import image_size

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LLFF_NEAR_FAR_SCALE = (0.9, 1.6)
IBRNET_COLLECTED_NEAR_FAR_SCALE = (0.9, 1.5)
# ibrnet_collected subset folder -> downsizing factor IBRNet uses for it
IBRNET_COLLECTED_FACTORS = {"ibrnet_collected_1": 2, "ibrnet_collected_2": 8}
REAL_ICONIC_FACTOR = 4
# real_iconic_noface scenes showing the LLFF test scenes; IBRNet's instructions delete them
LLFF_TEST_OVERLAP_SCENES = (
    "data2_fernvlsb", "data2_hugetrike", "data2_trexsanta", "data3_orchid",
    "data5_leafscene", "data5_lotr", "data5_redflower",
)


def image_dir_name(factor: int | None) -> str:
    """`images` for factor 1/None, else `images_<factor>`."""
    return "images" if factor in (None, 1) else f"images_{factor}"


def _load_poses_bounds(path: Path) -> np.ndarray:
    """(N, 17) float64 array of a poses_bounds.npy, validated (shape, finiteness, bounds, hwf, rotations)."""
    if not path.is_file():
        raise DataFormatError(path, "poses_bounds.npy is missing")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # numpy raises ValueError/OSError/EOFError for corrupt files
        raise DataFormatError(path, f"cannot load array ({type(error).__name__}: {error})") from error
    if array.ndim != 2 or array.shape[1] != 17 or array.shape[0] == 0:
        raise DataFormatError(path, f"expected an array of shape (N, 17) with N >= 1, got {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise DataFormatError(path, f"expected a numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad_rows):
        raise DataFormatError(path, f"non-finite values (NaN or inf) in pose rows {bad_rows[:5].tolist()}")
    bounds = array[:, 15:17]
    bad_rows = np.flatnonzero((bounds[:, 0] <= 0) | (bounds[:, 1] < bounds[:, 0]))
    if len(bad_rows):
        raise DataFormatError(path, f"bounds must satisfy 0 < near <= far; rows {bad_rows[:5].tolist()} "
                                    f"do not (first: {bounds[bad_rows[0]].tolist()})")
    poses = array[:, :15].reshape(-1, 3, 5)
    if (poses[:, :, 4] <= 0).any():
        raise DataFormatError(path, "hwf (column 4 of the 3x5 blocks) must be positive, "
                                    f"got {poses[0, :, 4].tolist()}")
    R = poses[:, :, :3]
    error = np.abs(R.swapaxes(-1, -2) @ R - np.eye(3)).max(axis=(1, 2))
    bad_rows = np.flatnonzero((error > 1e-3) | (np.linalg.det(R) < 0))
    if len(bad_rows):
        raise DataFormatError(path, f"pose rows {bad_rows[:5].tolist()} do not hold orthonormal rotations")
    return array


def _image_files(folder: Path, factor: int | None) -> list[Path]:
    """Sorted image files of the scene's image folder."""
    if not folder.is_dir():
        hint = "" if factor in (None, 1) else (
            f"; create it by downsizing images/ by {factor} (e.g. `mogrify -resize {100 / factor:g}% "
            "-format png` on a copy), this reader does not resize images")
        raise DataFormatError(folder, f"image folder is missing{hint}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def average_pose(world_from_cam: np.ndarray) -> np.ndarray:
    """NeRF's `poses_avg` on (V, 4, 4) OpenCV camera-to-world poses -> (4, 4) camera-to-world of the average
    camera with OpenGL axes (x right, y up, z back), as NeRF/IBRNet compute it from their OpenGL poses."""
    center = world_from_cam[:, :3, 3].mean(axis=0)
    back = -world_from_cam[:, :3, 2].sum(axis=0)
    up = -world_from_cam[:, :3, 1].sum(axis=0)
    z = back / np.linalg.norm(back)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    y /= np.linalg.norm(y)
    average = np.eye(4)
    average[:3, :3] = np.stack([x, y, z], axis=1)
    average[:3, 3] = center
    return average


def read_llff_scene(scene_dir: str | Path, factor: int | None = 4, bd_factor: float | None = 0.75,
                    recenter: bool = True, near_far_scale: tuple[float, float] = LLFF_NEAR_FAR_SCALE,
                    holdout_every: int | None = 8) -> Scene:
    """Read one LLFF scene folder (tree and conventions in the module docstring).

    Args:
        factor: read `images_<factor>/` (1 or None: `images/`).
        bd_factor: rescale so that min(bounds) becomes 1 / bd_factor; None keeps the file's units.
        recenter: apply NeRF's `recenter_poses`.
        near_far_scale: scene near/far = these factors times (min, max) of the rescaled bounds.
        holdout_every: every k-th view is a "test" view; None: all views are "train".
    """
    if holdout_every is not None and holdout_every < 1:
        raise ValueError(f"holdout_every must be >= 1 or None, got {holdout_every}")
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise DataFormatError(scene_dir, "LLFF scene folder is missing")
    poses_path = scene_dir / "poses_bounds.npy"
    array = _load_poses_bounds(poses_path)
    image_dir = scene_dir / image_dir_name(factor)
    files = _image_files(image_dir, factor)
    if len(files) != len(array):
        raise DataFormatError(image_dir, f"{len(files)} image files (.png/.jpg) but {poses_path.name} has "
                                         f"{len(array)} poses; they must match one to one in name order")
    sizes = [image_size(path) for path in files]
    height, width = sizes[0]
    for path, size in zip(files, sizes):
        if size != (height, width):
            raise DataFormatError(path, f"image is {size[0]}x{size[1]}, the first image {files[0].name} is "
                                        f"{height}x{width}; all images of a scene must have one size")

    cam_from_world, hwf = llff_to_cam_from_world(array[:, :15].reshape(-1, 3, 5))
    hwf_height, hwf_width, hwf_focal = hwf[0]
    if abs(height - hwf_height * width / hwf_width) > 1.0:
        raise DataFormatError(files[0], f"image is {height}x{width}, not a downsizing of the {hwf_height:g}x"
                                        f"{hwf_width:g} images that {poses_path.name} describes (hwf)")
    focal = hwf_focal * width / hwf_width
    K = make_K(focal, focal, width / 2.0, height / 2.0)

    bounds = array[:, 15:17].copy()
    scale = 1.0 if bd_factor is None else 1.0 / (bounds.min() * bd_factor)
    world_from_cam = invert_rigid(cam_from_world)
    world_from_cam[:, :3, 3] *= scale
    recenter_transform = invert_rigid(average_pose(world_from_cam)) if recenter else np.eye(4)
    cam_from_world = invert_rigid(recenter_transform @ world_from_cam)
    scaled_bounds = bounds * scale
    near = near_far_scale[0] * scaled_bounds.min()
    far = near_far_scale[1] * scaled_bounds.max()

    views = [
        View(name=path.stem, image_path=path, height=height, width=width, K=K.copy(), cam_from_world=pose,
             near=float(near), far=float(far), extra={"bounds": tuple(float(b) for b in view_bounds)})
        for path, pose, view_bounds in zip(files, cam_from_world, scaled_bounds)
    ]
    indices = list(range(len(views)))
    if holdout_every is None:
        splits = {"train": indices}
    else:
        splits = {"train": [i for i in indices if i % holdout_every], "test": indices[::holdout_every]}
    meta = {
        "scale": scale,
        "recenter_transform": recenter_transform,
        "normalized_from_input": recenter_transform @ np.diag([scale, scale, scale, 1.0]),
        "bounds": bounds,
        "near_far": (float(near), float(far)),
        "hwf": hwf[0].copy(),
        "factor": factor,
        "image_dir": image_dir,
    }
    return Scene(name=scene_dir.name, dataset="llff", root=scene_dir, views=views, splits=splits, meta=meta)


def list_llff_scenes(root: str | Path) -> list[Path]:
    """Sorted scene folders (those holding a poses_bounds.npy) directly under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "LLFF dataset folder is missing")
    scenes = sorted(p for p in root.iterdir() if (p / "poses_bounds.npy").is_file())
    if not scenes:
        raise DataFormatError(root, "no LLFF scenes (sub-folders with a poses_bounds.npy)")
    return scenes


@dataclass(frozen=True)
class LLFFSceneSource:
    """A scene of an LLFF-format training set, read on demand with its set's factor and near/far rule."""

    dataset: str
    name: str
    path: Path
    factor: int
    near_far_scale: tuple[float, float]

    def read(self) -> Scene:
        scene = read_llff_scene(self.path, factor=self.factor, near_far_scale=self.near_far_scale, holdout_every=None)
        scene.name, scene.dataset = self.name, self.dataset
        return scene


def list_ibrnet_collected(root: str | Path) -> list[LLFFSceneSource]:
    """IBRNet's `ibrnet_collected` training set: every scene of `<root>/ibrnet_collected_1/` (factor 2) and
    `<root>/ibrnet_collected_2/` (factor 8), near/far 0.9/1.5, all views in "train".

    Scenes are named "<subset>/<scene>". A missing subset folder is logged; both missing is an error.
    """
    root = Path(root)
    present = {name: factor for name, factor in IBRNET_COLLECTED_FACTORS.items() if (root / name).is_dir()}
    if not present:
        raise DataFormatError(root, f"neither {' nor '.join(IBRNET_COLLECTED_FACTORS)} exists here")
    for name in IBRNET_COLLECTED_FACTORS.keys() - present.keys():
        logger.warning("ibrnet_collected: %s is missing, reading only %s", root / name, sorted(present))
    return [LLFFSceneSource("ibrnet_collected", f"{name}/{scene_dir.name}", scene_dir, factor,
                            IBRNET_COLLECTED_NEAR_FAR_SCALE)
            for name, factor in present.items() for scene_dir in list_llff_scenes(root / name)]


def list_real_iconic_noface(root: str | Path) -> list[LLFFSceneSource]:
    """IBRNet's "llff" training set: every scene of `<root>/real_iconic_noface/` (factor 4, near/far 0.9/1.6,
    all views in "train") except `LLFF_TEST_OVERLAP_SCENES`, whose exclusion is logged."""
    scene_dirs = list_llff_scenes(Path(root) / "real_iconic_noface")
    excluded = [p.name for p in scene_dirs if p.name in LLFF_TEST_OVERLAP_SCENES]
    if excluded:
        logger.warning("real_iconic_noface: excluding %d scenes that overlap the LLFF test set: %s",
                       len(excluded), ", ".join(excluded))
    return [LLFFSceneSource("real_iconic_noface", p.name, p, REAL_ICONIC_FACTOR, LLFF_NEAR_FAR_SCALE)
            for p in scene_dirs if p.name not in LLFF_TEST_OVERLAP_SCENES]


def read_ibrnet_collected(root: str | Path) -> list[Scene]:
    """Every scene of `list_ibrnet_collected(root)`, read."""
    return [source.read() for source in list_ibrnet_collected(root)]


def read_real_iconic_noface(root: str | Path) -> list[Scene]:
    """Every scene of `list_real_iconic_noface(root)`, read."""
    return [source.read() for source in list_real_iconic_noface(root)]
