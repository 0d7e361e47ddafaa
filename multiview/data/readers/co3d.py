"""CO3D (v1 and v2): one sequence of one category -> `Scene`.

Expected tree (`root` = the dataset root; every `path` inside the annotations is relative to it)::

    ROOT/
      <category>/
        frame_annotations.jgz        gzip JSON list of FrameAnnotation (all sequences of the category)
        sequence_annotations.jgz     gzip JSON list of SequenceAnnotation
        set_lists/set_lists_<subset>.json        v2: {"train"|"val"|"test": [[seq, frame_number, path], ...]}
        eval_batches/eval_batches_<subset>.json  v2: [[[seq, frame_number, path], ...], ...], target first
        set_lists.json                           v1: {"train_known"|"train_unseen"|"test_known"|"test_unseen"
                                                      : [[seq, frame_number, path], ...]}
        eval_batches_<subset>.json               v1: subset "multisequence" | "singlesequence"
        <sequence_name>/
          images/frameXXXXXX.jpg                    masks/frameXXXXXX.png (8-bit P(fg)·255)
          depths/frameXXXXXX.jpg.geometric.png      depth_masks/frameXXXXXX.png
          pointcloud.ply

The version is detected from the set lists (`set_lists/` folder: v2, `set_lists.json`: v1); a category
without either is read without set-list splits. Annotations are checked strictly (like the official
per-record `load_dataclass`): a key that is not a FrameAnnotation/SequenceAnnotation field is an error;
optional fields may be null or omitted. Every annotated file must exist (images: header size and end
marker, so a truncated JPEG fails at read time), and every image in a sequence's `images/` needs an annotation.

Conventions converted (`co3d_to_opencv`, formats.md §2.6): each frame's PyTorch3D viewpoint (row vectors
`X_cam = X_world @ R + T`, camera x left / y up, NDC intrinsics) -> OpenCV `cam_from_world` and `K` in
pixels of the image, honouring the frame's `intrinsics_format` (absent: "ndc_norm_image_bounds", which
is what v1 files mean). `image.size` is [H, W] and must match the JPEG header. Depth: `depth_path` is the
float16-in-uint16 PNG (`depth_format="co3d_png"`), `depth_scale` = the frame's `scale_adjustment`.

Views: the frames of the sequence sorted by `frame_number`, named by image file stem; `extra` holds
`frame_number`, `frame_timestamp`, `intrinsics_format`, `depth_mask_path`, `mask_mass`, `frame_meta`.
near/far per view (`near_far_source`): "pointcloud" = the 1st/99th percentiles of the camera z of the
sequence's point-cloud points that project inside the image, times (0.9, 1.1); "depth" = the same
percentiles of the valid pixels of the frame's depth map (depth > 0 and inside the depth mask); "auto"
(default) = "pointcloud" when the sequence's point cloud exists, else "depth".

Splits: those of the chosen set list restricted to the sequence (v2: "train", "val", "test"; v1: the four
original keys plus "train" = train_known + train_unseen and "test" = test_known + test_unseen).
`holdout_every=n` replaces "train"/"test" with our evaluation protocol (formats.md §2.7): every n-th view
(index 0, n, 2n, ...) is a "test" target, the others are "train" sources. `meta["eval_batches"]` lists
the eval batches whose target is in the sequence as view indices [target, source, ...]; `meta` also holds
`category`, `sequence_name`, `dataset_root`, `version`, `subset`, `viewpoint_quality_score`,
`point_cloud_path` and the `near_far_source` used. `select_co3d_eval_sequences` is our default rule for
choosing CO3D evaluation sequences (highest viewpoint_quality_score, round-robin over categories).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.geometry.conventions import CO3D_INTRINSICS_FORMATS, co3d_to_opencv
from multiview.io.co3d_depth import read_co3d_depth
from multiview.io.images import image_size, read_mask

FRAME_ANNOTATIONS = "frame_annotations.jgz"
SEQUENCE_ANNOTATIONS = "sequence_annotations.jgz"
DEFAULT_INTRINSICS_FORMAT = "ndc_norm_image_bounds"
V1_SUBSETS = ("multisequence", "singlesequence")
NEAR_FAR_SOURCES = ("auto", "pointcloud", "depth")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_NEAR_FAR_POINTS = 20000

# Annotation schemas (co3d/dataset/data_types.py): key -> (required, type or nested schema).
_NUMBER = (int, float)
_FRAME_SCHEMA = {
    "sequence_name": (True, str),
    "frame_number": (True, int),
    "frame_timestamp": (True, _NUMBER),
    "image": (True, {"path": (True, str), "size": (True, list)}),
    "depth": (False, {"path": (True, str), "scale_adjustment": (True, _NUMBER), "mask_path": (False, str)}),
    "mask": (False, {"path": (True, str), "mass": (False, _NUMBER)}),
    "viewpoint": (False, {"R": (True, list), "T": (True, list), "focal_length": (True, list),
                          "principal_point": (True, list), "intrinsics_format": (False, str)}),
    "meta": (False, dict),
}
_SEQUENCE_SCHEMA = {
    "sequence_name": (True, str),
    "category": (True, str),
    "video": (False, {"path": (True, str), "length": (True, _NUMBER)}),
    "point_cloud": (False, {"path": (True, str), "quality_score": (True, _NUMBER), "n_points": (False, int)}),
    "viewpoint_quality_score": (False, _NUMBER),
}

# (sequence_name, frame_number, image path or None): one entry of a set list or an eval batch.
FrameRef = tuple[str, int, str | None]


@dataclass
class Co3dCategory:
    """The parsed annotations of one category, read once and shared by its sequences.

    Attributes:
        frames: sequence name -> its frame annotations sorted by frame_number.
        sequences: sequence name -> its sequence annotation.
        version: "v1", "v2", or None when the category has no set lists.
        subset: the set list / eval batch subset read (None: none).
        set_lists: sequence name -> split name -> [(frame_number, image path or None)].
        eval_batches: target's sequence name -> batches of FrameRef, target first.
        set_list_file, eval_batches_file: the files they came from (for error messages).
    """

    root: Path
    category: str
    frames: dict[str, list[dict]]
    sequences: dict[str, dict]
    version: str | None
    subset: str | None
    set_lists: dict[str, dict[str, list[tuple[int, str | None]]]]
    eval_batches: dict[str, list[list[FrameRef]]]
    set_list_file: Path | None = None
    eval_batches_file: Path | None = None

    @property
    def frames_file(self) -> Path:
        return self.root / self.category / FRAME_ANNOTATIONS

    @property
    def sequence_names(self) -> list[str]:
        """Sorted names of the sequences that have frames."""
        return sorted(self.frames)


# --- files --------------------------------------------------------------------------------------------


def _read_json(path: Path, gzipped: bool = False):
    if not path.is_file():
        raise DataFormatError(path, "file is missing")
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")) as f:
            return json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as error:
        kind = "gzip JSON" if gzipped else "JSON"
        raise DataFormatError(path, f"cannot read {kind} ({type(error).__name__}: {error})") from error


def _check_record(record, schema: dict, path: Path, where: str) -> None:
    """Strict schema check: unknown keys, missing required keys and wrong types raise DataFormatError."""
    if not isinstance(record, dict):
        raise DataFormatError(path, f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(schema))
    if unknown:
        raise DataFormatError(path, f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(schema)})")
    for key, (required, kind) in schema.items():
        value = record.get(key)
        if value is None:
            if required:
                raise DataFormatError(path, f"{where}: required key {key!r} is missing or null")
        elif isinstance(kind, dict):
            _check_record(value, kind, path, f"{where}.{key}")
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise DataFormatError(path, f"{where}: {key!r} has the wrong type {type(value).__name__}")


def _read_annotations(path: Path, schema: dict, what: str) -> list[dict]:
    records = _read_json(path, gzipped=True)
    if not isinstance(records, list):
        raise DataFormatError(path, f"expected a JSON list of {what}s, got {type(records).__name__}")
    for number, record in enumerate(records):
        name = record.get("sequence_name") if isinstance(record, dict) else None
        _check_record(record, schema, path, f"{what} {number} (sequence {name!r})")
    return records


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_points(path: str | Path) -> np.ndarray:
    """(N, 3) float64 x, y, z of the vertices of a PLY file (ascii or binary; `vertex` must be the first
    element and have no list properties)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "point cloud file is missing")
    with open(path, "rb") as f:
        header = [f.readline()]
        while header[-1] and header[-1].strip() != b"end_header":
            header.append(f.readline())
        body = f.read()
    if header[0].strip() != b"ply" or not header[-1]:
        raise DataFormatError(path, "not a PLY file (no 'ply' magic or no 'end_header')")
    fmt, elements = None, []  # elements: [name, count, [(property name, type)]]
    try:
        for line in header[1:-1]:
            words = line.decode("ascii").split()
            if words[:1] == ["format"]:
                fmt = words[1]
            elif words[:1] == ["element"]:
                elements.append([words[1], int(words[2]), []])
            elif words[:1] == ["property"]:
                elements[-1][2].append((words[-1], "list" if words[1] == "list" else _PLY_TYPES[words[1]]))
    except (UnicodeDecodeError, ValueError, IndexError, KeyError) as error:
        raise DataFormatError(path, f"malformed PLY header line {line!r}") from error
    if not elements or elements[0][0] != "vertex":
        raise DataFormatError(path, "PLY has no 'vertex' as its first element")
    _, count, properties = elements[0]
    names = [name for name, _ in properties]
    if any(kind == "list" for _, kind in properties) or not {"x", "y", "z"} <= set(names):
        raise DataFormatError(path, f"PLY vertex needs scalar x, y, z properties, got {names}")
    if fmt == "ascii":
        try:
            rows = [line.split() for line in body.decode("ascii").splitlines()[:count]]
            table = np.array(rows, dtype=np.float64).reshape(count, len(names))
        except (UnicodeDecodeError, ValueError) as error:
            raise DataFormatError(path, f"malformed ascii PLY vertex data ({error})") from error
        xyz = table[:, [names.index(axis) for axis in "xyz"]]
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + kind) for name, kind in properties])
        if len(body) < count * dtype.itemsize:
            raise DataFormatError(path, f"PLY is truncated: {count} vertices need {count * dtype.itemsize} "
                                        f"bytes, the file has {len(body)}")
        table = np.frombuffer(body, dtype=dtype, count=count)
        xyz = np.stack([table[axis].astype(np.float64) for axis in "xyz"], axis=-1)
    else:
        raise DataFormatError(path, f"unsupported PLY format {fmt!r}")
    if not np.isfinite(xyz).all():
        raise DataFormatError(path, "PLY has non-finite vertex coordinates")
    return xyz


# --- set lists and eval batches ----------------------------------------------------------------------


def _parse_ref(entry, path: Path, where: str) -> FrameRef:
    """[seq, frame_number] or [seq, frame_number, image path] -> FrameRef."""
    if (not isinstance(entry, list) or len(entry) not in (2, 3) or not isinstance(entry[0], str)
            or not isinstance(entry[1], int) or isinstance(entry[1], bool)
            or (len(entry) == 3 and not isinstance(entry[2], str))):
        raise DataFormatError(path, f"{where}: expected [sequence_name, frame_number(, image_path)], "
                                    f"got {entry!r}")
    return entry[0], entry[1], entry[2] if len(entry) == 3 else None


def _read_set_lists(path: Path) -> dict[str, dict[str, list[tuple[int, str | None]]]]:
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataFormatError(path, "expected a JSON object {split: [[sequence, frame_number, path], ...]}")
    by_sequence: dict[str, dict[str, list[tuple[int, str | None]]]] = {}
    for split, entries in data.items():
        for number, entry in enumerate(entries):
            sequence, frame_number, image = _parse_ref(entry, path, f"split {split!r} entry {number}")
            by_sequence.setdefault(sequence, {key: [] for key in data})[split].append((frame_number, image))
    return by_sequence


def _read_eval_batches(path: Path) -> dict[str, list[list[FrameRef]]]:
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(batch, list) and batch for batch in data):
        raise DataFormatError(path, "expected a JSON list of non-empty batches "
                                    "[[sequence, frame_number, path], ...]")
    by_sequence: dict[str, list[list[FrameRef]]] = {}
    for number, batch in enumerate(data):
        refs = [_parse_ref(entry, path, f"batch {number}") for entry in batch]
        by_sequence.setdefault(refs[0][0], []).append(refs)
    return by_sequence


def _detect_version(category_dir: Path, version: str | None) -> str | None:
    if version not in (None, "v1", "v2"):
        raise ValueError(f"CO3D version must be 'v1', 'v2' or None (detect), got {version!r}")
    if version is not None:
        return version
    if (category_dir / "set_lists").is_dir():
        return "v2"
    if (category_dir / "set_lists.json").is_file():
        return "v1"
    return None


def _subset_files(category_dir: Path, version: str | None, subset: str | None):
    """(subset, set list file, eval batches file) for the detected version; v2 needs a subset when there
    are several, v1 defaults to the multisequence eval batches."""
    if version is None:
        if subset is not None:
            raise DataFormatError(category_dir, f"subset {subset!r} requested but there are no set lists")
        return None, None, None
    if version == "v1":
        if subset is None:
            present = [s for s in V1_SUBSETS if (category_dir / f"eval_batches_{s}.json").is_file()]
            subset = present[0] if present else None
        batches = None if subset is None else category_dir / f"eval_batches_{subset}.json"
        return subset, category_dir / "set_lists.json", batches
    set_dir = category_dir / "set_lists"
    if subset is None:
        available = sorted(p.stem.removeprefix("set_lists_") for p in set_dir.glob("set_lists_*.json"))
        if len(available) != 1:
            raise ValueError(f"{set_dir}: choose subset= among {available}" if available else
                             f"{set_dir}: no set_lists_<subset>.json files")
        subset = available[0]
    batches = category_dir / "eval_batches" / f"eval_batches_{subset}.json"
    return subset, set_dir / f"set_lists_{subset}.json", batches


# --- index --------------------------------------------------------------------------------------------


def read_co3d_sequence_annotations(root: str | Path, category: str) -> dict[str, dict]:
    """Sequence name -> SequenceAnnotation dict of `<root>/<category>/sequence_annotations.jgz`."""
    path = Path(root) / category / SEQUENCE_ANNOTATIONS
    sequences: dict[str, dict] = {}
    for record in _read_annotations(path, _SEQUENCE_SCHEMA, "sequence annotation"):
        if record["sequence_name"] in sequences:
            raise DataFormatError(path, f"sequence {record['sequence_name']!r} is annotated twice")
        sequences[record["sequence_name"]] = record
    return sequences


def read_co3d_category(root: str | Path, category: str, subset: str | None = None,
                       version: str | None = None) -> Co3dCategory:
    """Parse and check the annotations, set list and eval batches of one category.

    Args:
        subset: v2 set list / eval batch subset (e.g. "fewview_dev", "manyview_dev_0"; None: the only
            one present); v1 eval batch kind ("multisequence" | "singlesequence"; None: whichever exists).
        version: "v1" | "v2" | None (detect from the set list files).
    """
    root = Path(root)
    category_dir = root / category
    if not category_dir.is_dir():
        raise DataFormatError(category_dir, "category folder is missing")
    frames_file = category_dir / FRAME_ANNOTATIONS
    frames: dict[str, list[dict]] = {}
    for record in _read_annotations(frames_file, _FRAME_SCHEMA, "frame annotation"):
        frames.setdefault(record["sequence_name"], []).append(record)
    for name, records in frames.items():
        records.sort(key=lambda record: record["frame_number"])
        for previous, record in zip(records, records[1:]):
            if previous["frame_number"] == record["frame_number"]:
                raise DataFormatError(frames_file,
                                      f"sequence {name!r} has frame_number {record['frame_number']} twice")
    sequences = read_co3d_sequence_annotations(root, category)
    missing = sorted(set(frames) - set(sequences))
    if missing:
        raise DataFormatError(category_dir / SEQUENCE_ANNOTATIONS,
                              f"no annotation for sequence {missing[0]!r}")

    version = _detect_version(category_dir, version)
    subset, set_list_file, eval_batches_file = _subset_files(category_dir, version, subset)
    return Co3dCategory(
        root=root, category=category, frames=frames, sequences=sequences, version=version, subset=subset,
        set_lists=_read_set_lists(set_list_file) if set_list_file else {},
        eval_batches=_read_eval_batches(eval_batches_file) if eval_batches_file else {},
        set_list_file=set_list_file, eval_batches_file=eval_batches_file,
    )


# --- one sequence -------------------------------------------------------------------------------------


def _vector(values, shape: tuple[int, ...], path: Path, where: str, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataFormatError(path, f"{where}: {name} is not numeric") from error
    if array.shape != shape:
        raise DataFormatError(path, f"{where}: {name} must have shape {list(shape)}, got {list(array.shape)}")
    if not np.isfinite(array).all():
        raise DataFormatError(path, f"{where}: {name} has non-finite values")
    return array


def _existing(root: Path, relative: str, what: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise DataFormatError(path, f"{what} file is missing")
    return path


def _frame_fields(frame: dict, root: Path, frames_file: Path) -> dict:
    """View fields (all but near/far) of one frame annotation; files checked for existence and size."""
    where = f"sequence {frame['sequence_name']!r} frame_number {frame['frame_number']}"
    viewpoint = frame.get("viewpoint")
    if viewpoint is None:
        raise DataFormatError(frames_file, f"{where}: viewpoint is null, the frame has no camera")
    size = _vector(frame["image"]["size"], (2,), frames_file, where, "image.size")
    if (size <= 0).any() or (size != np.round(size)).any():
        raise DataFormatError(frames_file, f"{where}: image.size must be two positive integers [H, W]")
    height, width = int(size[0]), int(size[1])
    image_path = root / frame["image"]["path"]
    actual = image_size(image_path)
    if actual != (height, width):
        raise DataFormatError(image_path, f"image is {actual[0]}x{actual[1]} but {FRAME_ANNOTATIONS} says "
                                          f"size [H, W] = [{height}, {width}]")
    intrinsics_format = viewpoint.get("intrinsics_format") or DEFAULT_INTRINSICS_FORMAT
    if intrinsics_format not in CO3D_INTRINSICS_FORMATS:
        raise DataFormatError(frames_file, f"{where}: unknown intrinsics_format {intrinsics_format!r} "
                                           f"(expected one of {CO3D_INTRINSICS_FORMATS})")
    K, cam_from_world = co3d_to_opencv(
        _vector(viewpoint["R"], (3, 3), frames_file, where, "viewpoint.R"),
        _vector(viewpoint["T"], (3,), frames_file, where, "viewpoint.T"),
        _vector(viewpoint["focal_length"], (2,), frames_file, where, "viewpoint.focal_length"),
        _vector(viewpoint["principal_point"], (2,), frames_file, where, "viewpoint.principal_point"),
        height, width, intrinsics_format,
    )
    fields = dict(name=Path(image_path).stem, image_path=image_path, height=height, width=width, K=K,
                  cam_from_world=cam_from_world, extra=dict(
                      frame_number=frame["frame_number"], frame_timestamp=frame["frame_timestamp"],
                      intrinsics_format=intrinsics_format, depth_mask_path=None, mask_mass=None,
                      frame_meta=frame.get("meta")))
    mask = frame.get("mask")
    if mask is not None:
        fields["mask_path"] = _existing(root, mask["path"], "mask")
        fields["extra"]["mask_mass"] = mask.get("mass")
    depth = frame.get("depth")
    if depth is not None:
        scale = depth["scale_adjustment"]
        if not (np.isfinite(scale) and scale > 0):
            raise DataFormatError(frames_file,
                                  f"{where}: depth.scale_adjustment must be positive, got {scale}")
        fields.update(depth_path=_existing(root, depth["path"], "depth"), depth_format="co3d_png",
                      depth_scale=float(scale))
        if depth.get("mask_path") is not None:
            fields["extra"]["depth_mask_path"] = _existing(root, depth["mask_path"], "depth mask")
    return fields


def _check_no_unannotated_images(fields: list[dict]) -> None:
    """Every image in the sequence's image folders has a frame annotation (pose/image count check)."""
    annotated = {(f["image_path"].parent, f["image_path"].name) for f in fields}
    for folder in sorted({parent for parent, _ in annotated}):
        extra = sorted(p.name for p in folder.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and (folder, p.name) not in annotated)
        if extra:
            raise DataFormatError(folder, f"{len(extra)} images have no frame annotation in "
                                          f"{FRAME_ANNOTATIONS} ({len(annotated)} annotated): {extra[0]}")


def _bounds(z: np.ndarray, percentiles, margin) -> tuple[float, float]:
    low, high = np.percentile(z, percentiles)
    return float(low * margin[0]), float(high * margin[1])


def _near_far_from_points(points: np.ndarray, fields: list[dict], ply: Path, percentiles, margin):
    points = points[:: max(1, -(-len(points) // MAX_NEAR_FAR_POINTS))]
    bounds = []
    for f in fields:
        cam = points @ f["cam_from_world"][:3, :3].T + f["cam_from_world"][:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ f["K"].T)[:, :2] / z[:, None]
        inside = ((z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= f["width"] - 0.5)
                  & (uv[:, 1] >= -0.5) & (uv[:, 1] <= f["height"] - 0.5))
        if not inside.any():
            raise DataFormatError(ply, f"no point of the cloud is inside the image of frame_number "
                                       f"{f['extra']['frame_number']}, cannot derive near/far")
        bounds.append(_bounds(z[inside], percentiles, margin))
    return bounds


def _near_far_from_depths(fields: list[dict], frames_file: Path, percentiles, margin):
    bounds = []
    for f in fields:
        if "depth_path" not in f:
            raise DataFormatError(frames_file, f"frame_number {f['extra']['frame_number']} has no depth, "
                                               f"cannot derive near/far from depth maps")
        depth = read_co3d_depth(f["depth_path"]) * f["depth_scale"]
        valid = depth > 0
        if f["extra"]["depth_mask_path"] is not None:
            depth_mask = read_mask(f["extra"]["depth_mask_path"])
            if depth_mask.shape != depth.shape:
                raise DataFormatError(f["extra"]["depth_mask_path"], f"depth mask is {depth_mask.shape}, "
                                                                     f"the depth map {depth.shape}")
            valid &= depth_mask > 0
        if not valid.any():
            raise DataFormatError(f["depth_path"], "depth map has no valid pixel, cannot derive near/far")
        bounds.append(_bounds(depth[valid], percentiles, margin))
    return bounds


def _point_cloud_path(index: Co3dCategory, sequence_name: str) -> Path:
    point_cloud = index.sequences[sequence_name].get("point_cloud")
    if point_cloud is not None:
        return index.root / point_cloud["path"]
    return index.root / index.category / sequence_name / "pointcloud.ply"


def _view_index(refs, frame_to_view: dict[int, int], images: dict[int, str], path: Path, where: str):
    """Frame references -> view indices; unknown frames and image-path mismatches raise."""
    indices = []
    for sequence, frame_number, image in refs:
        if frame_number not in frame_to_view:
            raise DataFormatError(path, f"{where}: frame_number {frame_number} of sequence {sequence!r} "
                                        f"has no frame annotation")
        if image is not None and image != images[frame_number]:
            raise DataFormatError(path, f"{where}: frame_number {frame_number} of sequence {sequence!r} "
                                        f"has path {image!r}, but {FRAME_ANNOTATIONS} says "
                                        f"{images[frame_number]!r}")
        indices.append(frame_to_view[frame_number])
    return indices


def _splits(index: Co3dCategory, sequence_name: str, frames: list[dict], holdout_every: int | None):
    frame_to_view = {frame["frame_number"]: i for i, frame in enumerate(frames)}
    images = {frame["frame_number"]: frame["image"]["path"] for frame in frames}
    splits = {
        split: sorted(_view_index([(sequence_name, *ref) for ref in refs], frame_to_view, images,
                                  index.set_list_file, f"split {split!r}"))
        for split, refs in index.set_lists.get(sequence_name, {}).items()
    }
    if index.version == "v1" and splits:
        for name in ("train", "test"):
            splits[name] = sorted(splits.get(f"{name}_known", []) + splits.get(f"{name}_unseen", []))
    if holdout_every is not None:
        if holdout_every < 2:
            raise ValueError(f"holdout_every must be >= 2, got {holdout_every}")
        splits["test"] = list(range(0, len(frames), holdout_every))
        splits["train"] = [i for i in range(len(frames)) if i % holdout_every]
    batches = []
    for number, batch in enumerate(index.eval_batches.get(sequence_name, [])):
        others = {ref[0] for ref in batch} - {sequence_name}
        if others:
            raise DataFormatError(index.eval_batches_file,
                                  f"batch {number} (target {list(batch[0][:2])}) mixes sequences "
                                  f"({sorted(others)[0]!r}); only one-sequence batches are supported")
        batches.append(_view_index(batch, frame_to_view, images, index.eval_batches_file, f"batch {number}"))
    return splits, batches


def read_co3d_sequence(
    root: str | Path,
    category: str,
    sequence_name: str,
    *,
    subset: str | None = None,
    version: str | None = None,
    index: Co3dCategory | None = None,
    near_far_source: str = "auto",
    near_far_percentiles: tuple[float, float] = (1.0, 99.0),
    near_far_margin: tuple[float, float] = (0.9, 1.1),
    holdout_every: int | None = None,
) -> Scene:
    """One CO3D sequence -> Scene (views sorted by frame_number; see the module docstring).

    Args:
        index: the category's `read_co3d_category(root, category, subset, version)`, to avoid re-parsing
            the annotations for every sequence (then `subset` and `version` are taken from it).
        near_far_source: "auto" | "pointcloud" | "depth", see the module docstring.
        holdout_every: if set, splits "test" = views 0, n, 2n, ... and "train" = the others.
    """
    if near_far_source not in NEAR_FAR_SOURCES:
        raise ValueError(f"near_far_source must be one of {NEAR_FAR_SOURCES}, got {near_far_source!r}")
    root = Path(root)
    if index is None:
        index = read_co3d_category(root, category, subset, version)
    elif (index.root, index.category) != (root, category):
        raise ValueError(f"index is for {index.root}/{index.category}, not {root}/{category}")
    if sequence_name not in index.frames:
        raise DataFormatError(index.frames_file, f"no frame of sequence {sequence_name!r}")
    frames = index.frames[sequence_name]
    fields = [_frame_fields(frame, root, index.frames_file) for frame in frames]
    _check_no_unannotated_images(fields)

    ply = _point_cloud_path(index, sequence_name)
    source = ("pointcloud" if ply.is_file() else "depth") if near_far_source == "auto" else near_far_source
    if source == "pointcloud":
        points = read_ply_points(ply)
        bounds = _near_far_from_points(points, fields, ply, near_far_percentiles, near_far_margin)
    else:
        bounds = _near_far_from_depths(fields, index.frames_file, near_far_percentiles, near_far_margin)
    views = [View(**f, near=near, far=far) for f, (near, far) in zip(fields, bounds)]

    splits, batches = _splits(index, sequence_name, frames, holdout_every)
    annotation = index.sequences[sequence_name]
    meta = dict(
        category=annotation["category"], sequence_name=sequence_name, dataset_root=root,
        version=index.version, subset=index.subset,
        viewpoint_quality_score=annotation.get("viewpoint_quality_score"),
        point_cloud_path=ply if ply.is_file() else None, near_far_source=source, eval_batches=batches,
    )
    return Scene(name=sequence_name, dataset="co3d", root=root / category / sequence_name, views=views,
                 splits=splits, meta=meta)


def select_co3d_eval_sequences(root: str | Path, categories: list[str], num_sequences: int,
                               seed: int = 0) -> list[tuple[str, str]]:
    """Our default CO3D evaluation scenes: [(category, sequence_name)], `num_sequences` in all.

    Rule: within each category, sequences are ranked by `viewpoint_quality_score` (highest first; null
    scores last; ties in a seeded random order). Categories take turns in a seeded random order, each
    adding its next-ranked sequence, until `num_sequences` are chosen (so counts per category differ by at
    most one while a category has sequences left). Only `sequence_annotations.jgz` is read.
    """
    rng = np.random.default_rng(seed)
    ranked = {}
    for category in categories:
        sequences = read_co3d_sequence_annotations(root, category)
        names = sorted(sequences)
        tie_break = dict(zip(names, rng.permutation(len(names))))
        score = {name: sequences[name].get("viewpoint_quality_score") for name in names}
        ranked[category] = sorted(names, key=lambda n: (score[n] is None, -(score[n] or 0.0), tie_break[n]))
    available = sum(len(names) for names in ranked.values())
    if num_sequences > available:
        raise ValueError(f"asked for {num_sequences} sequences, the categories {categories} have {available}")
    order = [categories[i] for i in rng.permutation(len(categories))]
    chosen: list[tuple[str, str]] = []
    for turn in range(max((len(names) for names in ranked.values()), default=0)):
        for category in order:
            if len(chosen) < num_sequences and turn < len(ranked[category]):
                chosen.append((category, ranked[category][turn]))
    return chosen
