"""DTU in MVSNet's preprocessed layouts (as MVSNet / JDACS load them), and the official scan lists.

Training layout (`dtu_training`, `read_dtu_train_scan(root, scan, light=3)`)::

    <root>/Cameras/pair.txt                                  view selection shared by all scans (49 views)
    <root>/Cameras/train/{vid:08d}_cam.txt                   vid = 0..48; K for the 160x128 depth maps
    <root>/Rectified/scan{N}_train/rect_{vid+1:03d}_{light}_r5000.png   640x512 RGB, 1-BASED index, light 0..6
    <root>/Depths/scan{N}_train/depth_map_{vid:04d}.pfm     160x128 float32 depth in mm, 0 = no ground truth
    <root>/Depths/scan{N}_train/depth_visual_{vid:04d}.png  160x128 validity mask (valid = value/255 > 0.5)

Test layout (`dtu_testing`, `read_dtu_test_scan(root, scan)`)::

    <root>/scan{N}/images/{vid:08d}.jpg      1600x1200
    <root>/scan{N}/cams/{vid:08d}_cam.txt    K for the full-resolution image
    <root>/scan{N}/pair.txt

Conventions converted:
* The cam.txt extrinsic is already world -> OpenCV camera; it is used unchanged. Units are millimetres
  (cameras, depths, near/far). The rig is fixed: every scan of the training layout shares `Cameras/`.
* Views are in vid order 0..V-1, V = the count at the top of pair.txt; `View.name` is `f"{vid:08d}"`.
  `Scene.meta["pairs"]` maps each view index to its ranked [(source view index, score), ...], best first.
* Training layout intrinsics: the cam.txt K is for the 1/4-resolution depth map (kept as
  `View.extra["K_depth"]`); `View.K` is that K resized to the image size with `resize_intrinsics`
  (pixel centres at integer coordinates: fx·4, cx' = (cx + 0.5)·4 − 0.5). MVSNet's own code uses a plain ×4
  (cx·4), which differs from ours by 1.5 px in cx and cy at 640x512; the synthetic writer uses the same
  function, so synthetic data round-trips exactly.
* near = DEPTH_MIN, far = DEPTH_MIN + DEPTH_INTERVAL·(D − 1) with D = DEPTH_NUM when the cam.txt has it,
  else 192 (MVSNet's training default; DTU gives 425 .. 902.5 mm). `View.extra` holds `depth_min`,
  `depth_interval` and `depth_num` (= D).
* Training layout: `View.depth_path` is the PFM (format "pfm"), `View.mask_path` the depth_visual PNG; the
  image is the chosen lighting, and `View.extra["light_paths"]` lists the images of all lightings.
* `Scene.splits` is {"train" | "val" | "test": every view} according to the official list holding the scan
  (empty for a scan in no list); the lists are `read_dtu_scan_list(split)`.
* `Scene.root` is the dataset root for the training layout and `<root>/scan{N}` for the test layout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import NamedTuple

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.geometry.intrinsics import resize_intrinsics
from multiview.io.images import image_size
from multiview.io.mvsnet import MVSNetCamera, read_cam_txt, read_pair_txt
from multiview.io.pfm import read_pfm_size

DTU_SPLITS = ("train", "val", "test")
DTU_NUM_LIGHTS = 7
DEFAULT_DEPTH_NUM = 192


class ScanListing(NamedTuple):
    """Scans of an official list found under a training root (`present`) and not found (`missing`)."""

    present: list[int]
    missing: list[int]


def read_dtu_scan_list(split: str) -> list[int]:
    """The official MVSNet/JDACS scan numbers of `split` (train: 79, val: 18, test: 22), in list order."""
    if split not in DTU_SPLITS:
        raise ValueError(f"DTU split must be one of {DTU_SPLITS}, got {split!r}")
    resource = resources.files("multiview.data") / "lists" / f"dtu_{split}.txt"
    text = resource.read_text()
    try:
        return [int(token) for token in text.split()]
    except ValueError as error:
        raise DataFormatError(Path(str(resource)), f"scan list is malformed ({error})") from None


def _split_of_scan(scan: int) -> str | None:
    return next((split for split in DTU_SPLITS if scan in read_dtu_scan_list(split)), None)


def _train_scan_dirs(root: Path, scan: int) -> tuple[Path, Path]:
    return root / "Rectified" / f"scan{scan}_train", root / "Depths" / f"scan{scan}_train"


def list_dtu_train_scans(root: str | Path, split: str, allow_missing: bool = False) -> ScanListing:
    """Which scans of the official `split` list exist under a training-layout `root`.

    A scan exists when both `Rectified/scan{N}_train` and `Depths/scan{N}_train` are folders. Missing scans
    raise DataFormatError(root) listing them, unless `allow_missing` (then they are in `.missing`).
    """
    root = Path(root)
    present, missing = [], []
    for scan in read_dtu_scan_list(split):
        (present if all(d.is_dir() for d in _train_scan_dirs(root, scan)) else missing).append(scan)
    if missing and not allow_missing:
        names = " ".join(f"scan{scan}" for scan in missing)
        raise DataFormatError(
            root,
            f"{len(missing)} scans of the DTU {split} list are missing (no Rectified/scanN_train and "
            f"Depths/scanN_train folders): {names}",
        )
    return ScanListing(present, missing)


def _check_files(directory: Path, pattern: str, expected: set[str], what: str) -> None:
    """Files matching `pattern` in `directory` must all be `expected` (file names); else a count mismatch."""
    if not directory.is_dir():
        raise DataFormatError(directory, f"{what} folder is missing")
    extra = sorted(p.name for p in directory.glob(pattern) if p.name not in expected)
    if extra:
        raise DataFormatError(
            directory,
            f"{len(extra)} {what} files have no view in pair.txt ({len(expected)} expected), "
            f"e.g. {extra[:3]}",
        )


def _read_pairs(path: Path) -> tuple[int, dict[int, list[tuple[int, float]]]]:
    """(number of views, {ref view: [(source view, score), ...]}) from a pair.txt."""
    pairs = read_pair_txt(path)
    return len(pairs), dict(pairs)


def _make_view(
    vid: int,
    image_path: Path,
    image_hw: tuple[int, int],
    K,
    camera: MVSNetCamera,
    extra: dict | None = None,
    **view_fields,
) -> View:
    """The View of vid with near/far and extra depth facts from its camera; `view_fields` go to View."""
    depth_num = camera.depth_num if camera.depth_num is not None else DEFAULT_DEPTH_NUM
    return View(
        name=f"{vid:08d}",
        image_path=image_path,
        height=image_hw[0],
        width=image_hw[1],
        K=K,
        cam_from_world=camera.cam_from_world,
        near=camera.depth_min,
        far=camera.depth_min + camera.depth_interval * (depth_num - 1),
        extra={
            "depth_min": camera.depth_min,
            "depth_interval": camera.depth_interval,
            "depth_num": depth_num,
            **(extra or {}),
        },
        **view_fields,
    )


def _make_scene(scan: int, dataset: str, root: Path, views: list[View], pairs: dict) -> Scene:
    split = _split_of_scan(scan)
    return Scene(
        name=f"scan{scan}",
        dataset=dataset,
        root=root,
        views=views,
        splits={split: list(range(len(views)))} if split else {},
        meta={"scan": scan, "pairs": pairs},
    )


def _rect_name(vid: int, light: int) -> str:
    return f"rect_{vid + 1:03d}_{light}_r5000.png"


def read_dtu_train_scan(
    root: str | Path, scan: int, light: int = 3, num_lights: int = DTU_NUM_LIGHTS
) -> Scene:
    """One scan of the training layout (module docstring) with the images of lighting `light`.

    Args:
        root: the dataset root holding Cameras/, Rectified/ and Depths/.
        scan: the DTU scan number N.
        light: lighting index in [0, num_lights) whose images become `View.image_path`.
        num_lights: lightings per view that must exist (7 in the release).
    """
    root = Path(root)
    if not 0 <= light < num_lights:
        raise ValueError(f"light must be in [0, {num_lights}), got {light}")
    image_dir, depth_dir = _train_scan_dirs(root, scan)
    num_views, pairs = _read_pairs(root / "Cameras" / "pair.txt")
    cam_dir = root / "Cameras" / "train"
    _check_files(cam_dir, "*_cam.txt", {f"{vid:08d}_cam.txt" for vid in range(num_views)}, "cam.txt")
    expected_images = {_rect_name(vid, lt) for vid in range(num_views) for lt in range(num_lights)}
    _check_files(image_dir, "rect_*_r5000.png", expected_images, "image")
    if not depth_dir.is_dir():
        raise DataFormatError(depth_dir, "depth folder is missing")
    views = []
    for vid in range(num_views):
        camera = read_cam_txt(cam_dir / f"{vid:08d}_cam.txt")
        light_paths = [image_dir / _rect_name(vid, lt) for lt in range(num_lights)]
        for path in light_paths:
            if not path.is_file():
                raise DataFormatError(path, "image file is missing")
        image_hw = image_size(light_paths[light])
        depth_path = depth_dir / f"depth_map_{vid:04d}.pfm"
        depth_hw = read_pfm_size(depth_path)
        mask_path = depth_dir / f"depth_visual_{vid:04d}.png"
        if not mask_path.is_file():
            raise DataFormatError(mask_path, "depth_visual mask file is missing")
        K = resize_intrinsics(camera.K, depth_hw, image_hw)
        extra = {"light": light, "light_paths": light_paths, "K_depth": camera.K}
        views.append(
            _make_view(
                vid,
                light_paths[light],
                image_hw,
                K,
                camera,
                extra,
                depth_path=depth_path,
                depth_format="pfm",
                mask_path=mask_path,
            )
        )
    return _make_scene(scan, "dtu_train", root, views, pairs)


def read_dtu_test_scan(root: str | Path, scan: int) -> Scene:
    """One scan of the test layout (module docstring): `<root>/scan{N}/{images,cams,pair.txt}`, no depth."""
    scan_dir = Path(root) / f"scan{scan}"
    if not scan_dir.is_dir():
        raise DataFormatError(scan_dir, "scan folder is missing")
    num_views, pairs = _read_pairs(scan_dir / "pair.txt")
    _check_files(
        scan_dir / "cams", "*_cam.txt", {f"{vid:08d}_cam.txt" for vid in range(num_views)}, "cam.txt"
    )
    _check_files(scan_dir / "images", "*.jpg", {f"{vid:08d}.jpg" for vid in range(num_views)}, "image")
    views = []
    for vid in range(num_views):
        camera = read_cam_txt(scan_dir / "cams" / f"{vid:08d}_cam.txt")
        image_path = scan_dir / "images" / f"{vid:08d}.jpg"
        views.append(_make_view(vid, image_path, image_size(image_path), camera.K, camera))
    return _make_scene(scan, "dtu_test", scan_dir, views, pairs)
