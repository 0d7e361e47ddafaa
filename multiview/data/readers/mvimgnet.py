"""MVImgNet (GAP-Lab CUHK-SZ): object-centric phone videos with per-instance COLMAP models.

Expected tree (formats.md §1.2)::

    <root>/mvimgnet_category.txt           optional: "<id>,<name>" lines (CRLF), names verbatim
    <root>/<class_id>/<instance_id>/       class_id = decimal category id, instance_id e.g. 0000177e
        images/<frame>.jpg                 video frames, e.g. 001.jpg ... (any names COLMAP used)
        sparse/0/cameras.bin               COLMAP model, .bin (or .txt twins)
        sparse/0/images.bin
        sparse/0/points3D.bin
        sparse/0/project.ini               optional, ignored

`index_mvimgnet(root, ...)` lists the instances. Instances whose `sparse/0` is empty or incomplete
(a missing, empty or truncated model file, zero registered images) or whose images.bin references
files missing from `images/` are skipped and listed in `index.skipped` (also logged, and written by
`index.write_report`), never silently. Train/val is an instance-level split: seeded hashing of
"<class_id>/<instance_id>" (each instance's split depends only on its name, the seed and
`val_fraction`, so adding instances never moves others), or an explicit MVPNet-style JSON list.

`read_mvimgnet_scene(instance_dir)` converts one instance:
* Views are the registered images sorted by COLMAP image name (image ids need not be contiguous or
  ordered; frames in images/ that COLMAP did not register are not views); `View.name` is the file
  stem; all views are in `Scene.splits["train"]`.
* Poses: COLMAP's world -> camera (q, t) is the OpenCV `cam_from_world` as is; world units are the
  arbitrary scale of the reconstruction.
* K from the camera model (`multiview.io.colmap.intrinsics_from_colmap`): cx, cy = COLMAP's - 0.5
  (COLMAP puts the top-left pixel centre at (0.5, 0.5), we at (0, 0)); radial/OpenCV distortion is
  ignored with one warning; fisheye and other models raise DataFormatError.
* near/far per view from the camera z of the sparse points the view observes (its COLMAP track
  entries): near = near_margin · P_lo, far = far_margin · P_hi with (P_lo, P_hi) the
  `near_far_percentiles` (defaults 0.8 · P1, 1.2 · P99). A view observing fewer than
  `min_points_per_view` points uses instead every sparse point in front of it that projects inside
  its image. `View.extra["near_far_source"]` says which ("observed" or "frustum").
* `Scene.meta`: "class_id" (int), "instance_id", "center" (3,) median of the sparse points (for
  'vector' view selection), "points_xyz" (P, 3), "point_ids" (P,), "view_point_rows" (one int array
  per view: rows of points_xyz the view observes). `View.extra`: "colmap_image_id",
  "colmap_camera_id", "camera_model", "near_far_source".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.io.colmap import ColmapModel, check_colmap_model, intrinsics_from_colmap, read_colmap_model
from multiview.io.images import image_size

logger = logging.getLogger(__name__)

CATEGORY_FILE = "mvimgnet_category.txt"
MVIMGNET_SPLITS = ("train", "val")


# --- category list and split files ---------------------------------------------------------------------


def read_mvimgnet_category_list(path: str | Path) -> dict[int, str]:
    """`id,name` lines (CRLF or LF, no header) -> {id: name}; names kept verbatim (typos, trailing spaces)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "category list is missing")
    categories = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        head, sep, name = line.partition(",")
        if not sep or not head.strip().isdigit() or not name:
            raise DataFormatError(path, f"line {number}: expected '<integer id>,<name>', got {line!r}")
        class_id = int(head)
        if class_id in categories:
            raise DataFormatError(path, f"line {number}: duplicate category id {class_id}")
        categories[class_id] = name
    return categories


def read_mvimgnet_split_file(path: str | Path) -> set[str]:
    """MVPNet-style JSON list of "<class_id>/<instance_id>" (optionally + ".pcd") -> set of names without suffix."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "split file is missing")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFormatError(path, f"split file is not valid JSON ({error})") from error
    if not isinstance(entries, list):
        raise DataFormatError(path, f"split file must hold a JSON list, got {type(entries).__name__}")
    names = set()
    for index, entry in enumerate(entries):
        parts = entry.removesuffix(".pcd").split("/") if isinstance(entry, str) else []
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1]:
            raise DataFormatError(path, f"entry {index}: expected '<class_id>/<instance_id>[.pcd]', got {entry!r}")
        names.add(f"{int(parts[0])}/{parts[1]}")
    return names


def hashed_split(name: str, val_fraction: float, seed: int = 0) -> str:
    """"val" for a fraction `val_fraction` of names, else "train", from sha256 of "<seed>/<name>"."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "little") / 2.0**64 < val_fraction else "train"


# --- index -----------------------------------------------------------------------------------------------


@dataclass
class MVImgNetInstance:
    """One usable instance: `path` = <root>/<class_id>/<instance_id>, its split and registered image count."""

    class_id: int
    instance_id: str
    path: Path
    split: str
    num_images: int

    @property
    def name(self) -> str:
        """"<class_id>/<instance_id>", the scene name and split-file key."""
        return f"{self.class_id}/{self.instance_id}"


@dataclass
class MVImgNetIndex:
    """Instances found under `root` (sorted by class id, then instance id), and what was left out.

    Attributes:
        instances: the usable instances of the requested split(s).
        skipped: (folder, reason) for every folder that was left out because it is unusable.
        missing: split-file entries not found under root.
        category_names: {id: name} from <root>/mvimgnet_category.txt, {} when absent.
    """

    root: Path
    instances: list[MVImgNetInstance]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    category_names: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.instances)

    def split(self, name: str) -> list[MVImgNetInstance]:
        """The instances of split `name` ("train" or "val")."""
        if name not in MVIMGNET_SPLITS:
            raise ValueError(f"split must be one of {MVIMGNET_SPLITS}, got {name!r}")
        return [instance for instance in self.instances if instance.split == name]

    def format_report(self) -> str:
        """Human-readable summary: counts, then one line per skipped folder and per missing split entry."""
        counts = ", ".join(f"{len(self.split(s))} {s}" for s in MVIMGNET_SPLITS)
        lines = [f"MVImgNet index of {self.root}: {len(self.instances)} instances ({counts}), "
                 f"{len(self.skipped)} skipped, {len(self.missing)} split-file entries not found"]
        lines += [f"skipped {path}: {reason}" for path, reason in self.skipped]
        lines += [f"not found: {name}" for name in self.missing]
        return "\n".join(lines)

    def write_report(self, path: str | Path) -> None:
        """Write `format_report()` to a text file."""
        Path(path).write_text(self.format_report() + "\n", encoding="utf-8")


def _check_instance(instance_dir: Path) -> int:
    """Cheap validity check of one instance (model files, registered images, referenced images exist).

    Returns the number of registered images; raises DataFormatError naming what is wrong.
    """
    files, names = check_colmap_model(instance_dir / "sparse" / "0")
    images_dir = instance_dir / "images"
    missing = [name for name in names if not (images_dir / name).is_file()]
    if missing:
        raise DataFormatError(images_dir / missing[0], f"image file is missing ({len(missing)} of {len(names)} "
                                                       f"images referenced by {files['images'].name} are missing)")
    return len(names)


def index_mvimgnet(root: str | Path, categories: Iterable[int] | None = None, split: str | None = None,
                   split_file: str | Path | None = None, val_fraction: float = 0.05, seed: int = 0) -> MVImgNetIndex:
    """List the usable instances of an MVImgNet root.

    Args:
        categories: class ids to keep (None = all class folders).
        split: None = all instances (each labelled "train"/"val"), or "train"/"val" = only that split.
        split_file: JSON list (MVPNet `split/{train,val}.json` style) of the instances of `split`,
            which must then be given; entries not under root are listed in `index.missing`.
        val_fraction, seed: the hashed split used without a split file (see `hashed_split`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "MVImgNet root folder is missing")
    if split is not None and split not in MVIMGNET_SPLITS:
        raise ValueError(f"split must be one of {MVIMGNET_SPLITS} or None, got {split!r}")
    if split_file is not None and split is None:
        raise ValueError("split_file lists the instances of one split: pass split='train' or 'val' too")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    listed = read_mvimgnet_split_file(split_file) if split_file is not None else None
    category_path = root / CATEGORY_FILE
    index = MVImgNetIndex(root=root, instances=[],
                          category_names=read_mvimgnet_category_list(category_path) if category_path.is_file() else {})
    wanted = None if categories is None else {int(c) for c in categories}

    class_dirs = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        if not path.name.isdigit():
            index.skipped.append((path, "not a class folder (the name is not an integer category id)"))
        elif wanted is None or int(path.name) in wanted:
            class_dirs.append((int(path.name), path))
    found = set()
    for class_id, class_dir in sorted(class_dirs):
        for instance_dir in sorted(p for p in class_dir.iterdir() if p.is_dir()):
            name = f"{class_id}/{instance_dir.name}"
            found.add(name)
            instance_split = split if listed is not None else hashed_split(name, val_fraction, seed)
            if (listed is not None and name not in listed) or (split is not None and instance_split != split):
                continue
            try:
                num_images = _check_instance(instance_dir)
            except DataFormatError as error:
                index.skipped.append((instance_dir, str(error)))
                continue
            index.instances.append(MVImgNetInstance(class_id, instance_dir.name, instance_dir, instance_split,
                                                    num_images))
    if listed is not None:
        index.missing = sorted(n for n in listed - found if wanted is None or int(n.split("/")[0]) in wanted)
    if index.skipped or index.missing:
        logger.warning("%s", index.format_report())
    else:
        logger.info("MVImgNet index of %s: %d instances", root, len(index.instances))
    return index


# --- one instance ------------------------------------------------------------------------------------------


def _near_far(depths: np.ndarray, percentiles: tuple[float, float], margins: tuple[float, float]):
    low, high = np.percentile(depths, percentiles)
    return float(margins[0] * low), float(margins[1] * high)


def read_mvimgnet_scene(instance_dir: str | Path, near_far_percentiles: tuple[float, float] = (1.0, 99.0),
                        near_far_margins: tuple[float, float] = (0.8, 1.2), min_points_per_view: int = 10) -> Scene:
    """Read one instance folder `<root>/<class_id>/<instance_id>` (see the module docstring).

    Raises DataFormatError for an empty/incomplete/truncated sparse/0, a missing or truncated image,
    an image whose size differs from its camera, a non-finite pose or point, an unsupported camera
    model, or a view with too few sparse points in view to derive near/far.
    """
    instance_dir = Path(instance_dir)
    model: ColmapModel = read_colmap_model(instance_dir / "sparse" / "0", include_points2D=False)
    images_file, points_file = model.files["images"], model.files["points3D"]
    intrinsics = intrinsics_from_colmap(model.cameras, model.files["cameras"])
    xyz = model.points.xyz
    if not np.isfinite(xyz).all():
        raise DataFormatError(points_file, "non-finite 3D point coordinates")
    if len(xyz) == 0:
        raise DataFormatError(points_file, "no sparse points: near/far cannot be derived")
    rows_by_image: dict[int, list[int]] = {image.image_id: [] for image in model.images}
    for row, track in enumerate(model.points.tracks):
        for image_id in np.unique(track[:, 0]):
            rows_by_image.setdefault(int(image_id), []).append(row)

    views, view_rows = [], []
    for image in model.images:
        path = instance_dir / "images" / image.name
        camera = model.cameras[image.camera_id]
        size = image_size(path)
        if size != (camera.height, camera.width):
            raise DataFormatError(path, f"image is {size[0]}x{size[1]} but its camera {image.camera_id} in "
                                        f"{model.files['cameras'].name} is {camera.height}x{camera.width}")
        if not np.isfinite(image.cam_from_world).all():
            raise DataFormatError(images_file, f"image {image.name}: non-finite pose")
        K = intrinsics[image.camera_id]
        rows = np.array(rows_by_image[image.image_id], dtype=np.int64)
        points_cam = xyz @ image.cam_from_world[:3, :3].T + image.cam_from_world[:3, 3]
        depths = points_cam[rows, 2]
        depths, source = depths[depths > 0], "observed"
        if len(depths) < min_points_per_view:
            in_front = points_cam[points_cam[:, 2] > 0]
            uv = in_front[:, :2] / in_front[:, 2:] * np.diag(K)[:2] + K[:2, 2]
            inside = (uv >= -0.5).all(axis=1) & (uv[:, 0] <= camera.width - 0.5) & (uv[:, 1] <= camera.height - 0.5)
            depths, source = in_front[inside, 2], "frustum"
            if len(depths) < min_points_per_view:
                raise DataFormatError(images_file, f"image {image.name}: only {len(depths)} sparse points in view "
                                                   f"(< min_points_per_view={min_points_per_view}); cannot derive "
                                                   "near/far")
        near, far = _near_far(depths, near_far_percentiles, near_far_margins)
        views.append(View(
            name=Path(image.name).stem, image_path=path, height=camera.height, width=camera.width, K=K,
            cam_from_world=image.cam_from_world, near=near, far=far,
            extra={"colmap_image_id": image.image_id, "colmap_camera_id": image.camera_id,
                   "camera_model": camera.model, "near_far_source": source},
        ))
        view_rows.append(rows)

    class_name, instance_id = instance_dir.parent.name, instance_dir.name
    meta = {
        "class_id": int(class_name) if class_name.isdigit() else None,
        "instance_id": instance_id,
        "center": np.median(xyz, axis=0),
        "points_xyz": xyz,
        "point_ids": model.points.ids,
        "view_point_rows": view_rows,
    }
    return Scene(name=f"{class_name}/{instance_id}", dataset="mvimgnet", root=instance_dir, views=views,
                 splits={"train": list(range(len(views)))}, meta=meta)
