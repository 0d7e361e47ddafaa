"""COLMAP sparse models: a legacy binary writer, a reader through pycolmap, and pinhole intrinsics.

A model folder (`sparse/0`) holds `cameras`, `images` and `points3D` as `.bin` (preferred) or `.txt`
(formats.md §3). The records below keep the file's values unchanged, in particular COLMAP's pixel
convention: the centre of the top-left pixel is (0.5, 0.5), so camera `params` (cx, cy) and
`points2D` are half a pixel larger than in the project's convention (integer pixel centres).
`intrinsics_from_colmap` subtracts the half pixel (cx_ours = cx_colmap - 0.5) and
`colmap_camera_from_K` adds it back, so K -> file -> K round trips are exact.

Poses: the file's Hamilton quaternion (qw, qx, qy, qz) and translation map world -> camera with
OpenCV axes, i.e. they are the project's `cam_from_world` as is (formats.md §3.2).

pycolmap never returns on some truncated binary files (it loops at end-of-file), so every `.bin`
file is first walked record by record (`check_colmap_model`) to verify that its sizes add up.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.geometry.conventions import cam_from_world_to_colmap
from multiview.geometry.intrinsics import make_K

COLMAP_PIXEL_OFFSET = 0.5
"""COLMAP pixel coordinates = project pixel coordinates + this offset (top-left pixel centre (0.5, 0.5))."""

MODEL_FILES = ("cameras", "images", "points3D")

# name -> (model id, number of params), src/colmap/sensor/models.h (formats.md §3.3)
CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3),
    "PINHOLE": (1, 4),
    "SIMPLE_RADIAL": (2, 4),
    "RADIAL": (3, 5),
    "OPENCV": (4, 8),
    "OPENCV_FISHEYE": (5, 8),
    "FULL_OPENCV": (6, 12),
    "FOV": (7, 5),
    "SIMPLE_RADIAL_FISHEYE": (8, 4),
    "RADIAL_FISHEYE": (9, 5),
    "THIN_PRISM_FISHEYE": (10, 12),
    "RAD_TAN_THIN_PRISM_FISHEYE": (11, 16),
    "SIMPLE_DIVISION": (12, 4),
    "DIVISION": (13, 5),
    "SIMPLE_FISHEYE": (14, 3),
    "FISHEYE": (15, 4),
    "EUCM": (16, 6),
    "EQUIRECTANGULAR": (17, 2),
}
_MODEL_NAMES = {model_id: name for name, (model_id, _) in CAMERA_MODELS.items()}

# perspective models whose first parameters are (f, cx, cy) or (fx, fy, cx, cy); the rest is distortion
_SINGLE_FOCAL = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
_PERSPECTIVE = _SINGLE_FOCAL + ("PINHOLE", "OPENCV", "FULL_OPENCV")

_CAMERA_HEADER = struct.Struct("<IiQQ")
_IMAGE_HEADER = struct.Struct("<I4d3dI")
_POINT_HEADER = struct.Struct("<Q3d3Bd")
_UINT64 = struct.Struct("<Q")
_OBSERVATION = np.dtype([("x", "<f8"), ("y", "<f8"), ("point3D_id", "<i8")])
_TRACK_ELEMENT = np.dtype([("image_id", "<u4"), ("point2D_idx", "<u4")])


@dataclass
class ColmapCamera:
    """One COLMAP camera, values as stored.

    Attributes:
        camera_id: the file's camera id.
        model: model name, a key of CAMERA_MODELS (e.g. "PINHOLE").
        width, height: image size in pixels.
        params: (P,) float64 in the model's order, COLMAP pixel convention (see module docstring).
    """

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def __post_init__(self):
        self.params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown COLMAP camera model {self.model!r}; known: {sorted(CAMERA_MODELS)}")
        expected = CAMERA_MODELS[self.model][1]
        if self.params.size != expected:
            raise ValueError(f"camera model {self.model} takes {expected} params, got {self.params.size}")


@dataclass
class ColmapImage:
    """One registered image.

    Attributes:
        name: image file name relative to the image folder (e.g. "001.jpg").
        camera_id: id of its ColmapCamera.
        cam_from_world: (4, 4) float64 world -> OpenCV camera.
        points2D: (N, 2) float64 keypoints, COLMAP pixel convention (ours + 0.5).
        point3D_ids: (N,) int64 id of the 3D point each keypoint observes, -1 for none.
        image_id: the file's image id; 0 = unassigned (`write_colmap_binary` then assigns 1..N in name order).
    """

    name: str
    camera_id: int
    cam_from_world: np.ndarray
    points2D: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    image_id: int = 0

    def __post_init__(self):
        self.cam_from_world = np.asarray(self.cam_from_world, dtype=np.float64)
        self.points2D = np.asarray(self.points2D, dtype=np.float64).reshape(-1, 2)
        self.point3D_ids = np.asarray(self.point3D_ids, dtype=np.int64).reshape(-1)
        if self.cam_from_world.shape != (4, 4):
            raise ValueError(f"image {self.name}: cam_from_world must be (4, 4), got {self.cam_from_world.shape}")
        if len(self.points2D) != len(self.point3D_ids):
            raise ValueError(f"image {self.name}: {len(self.points2D)} points2D but {len(self.point3D_ids)} ids")


@dataclass
class ColmapPoints:
    """The sparse 3D points, one row per point.

    Attributes:
        ids: (P,) int64 point3D ids.
        xyz: (P, 3) float64 world coordinates.
        rgb: (P, 3) uint8 colours.
        error: (P,) float64 mean reprojection error in pixels.
        tracks: P arrays (L, 2) int64 of (image_id, point2D_idx), as stored. Filled by the reader;
            `write_colmap_binary` derives the tracks from the images' `point3D_ids` instead.
    """

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray | None = None
    error: np.ndarray | None = None
    tracks: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        self.xyz = np.asarray(self.xyz, dtype=np.float64).reshape(-1, 3)
        n = len(self.ids)
        self.rgb = np.zeros((n, 3), np.uint8) if self.rgb is None else np.asarray(self.rgb, np.uint8).reshape(-1, 3)
        self.error = np.zeros(n) if self.error is None else np.asarray(self.error, np.float64).reshape(-1)
        if not len(self.xyz) == len(self.rgb) == len(self.error) == n:
            raise ValueError(f"points: ids, xyz, rgb, error lengths differ: {n}, {len(self.xyz)}, "
                             f"{len(self.rgb)}, {len(self.error)}")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ColmapModel:
    """A sparse reconstruction as read from disk.

    Attributes:
        path: the model folder.
        files: the files read, keyed by "cameras", "images", "points3D".
        cameras: camera_id -> ColmapCamera.
        images: registered images sorted by name.
        points: the 3D points, sorted by id.
    """

    path: Path
    files: dict[str, Path]
    cameras: dict[int, ColmapCamera]
    images: list[ColmapImage]
    points: ColmapPoints


# --- files and layout checks -------------------------------------------------------------------------


def find_model_files(sparse_dir: str | Path) -> dict[str, Path]:
    """The three model files of `sparse_dir`: all `.bin` if present, else all `.txt`.

    Raises DataFormatError naming the folder and the missing files.
    """
    sparse_dir = Path(sparse_dir)
    if not sparse_dir.is_dir():
        raise DataFormatError(sparse_dir, "COLMAP model folder is missing")
    for ext in (".bin", ".txt"):
        files = {name: sparse_dir / f"{name}{ext}" for name in MODEL_FILES}
        if all(path.is_file() for path in files.values()):
            return files
    present = sorted(p.name for p in sparse_dir.iterdir())
    missing = [f"{name}.bin" for name in MODEL_FILES if not (sparse_dir / f"{name}.bin").is_file()]
    raise DataFormatError(sparse_dir, f"incomplete COLMAP model: missing {', '.join(missing)} "
                                      f"(and no complete .txt model); the folder holds {present or 'nothing'}")


class _Cursor:
    """Bounds-checked reads from the bytes of a binary model file."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0
        if not self.data:
            raise DataFormatError(path, "file is empty")

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise DataFormatError(self.path, f"truncated: {what} needs bytes {self.offset}..{end} "
                                             f"but the file has {len(self.data)} bytes")
        view = memoryview(self.data)[self.offset:end]
        self.offset = end
        return view

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, what))

    def name(self, what: str) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise DataFormatError(self.path, f"truncated: {what} has no terminating NUL byte")
        raw = self.take(end + 1 - self.offset, what)[:-1]
        return bytes(raw).decode("utf-8", errors="replace")

    def finish(self):
        if self.offset != len(self.data):
            raise DataFormatError(self.path, f"{len(self.data) - self.offset} unexpected bytes after the last record")


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    cursor = _Cursor(path)
    (count,) = cursor.unpack(_UINT64, "the camera count")
    cameras = {}
    for index in range(count):
        what = f"camera record {index + 1} of {count}"
        camera_id, model_id, width, height = cursor.unpack(_CAMERA_HEADER, what)
        if model_id not in _MODEL_NAMES:
            raise DataFormatError(path, f"{what}: unknown camera model id {model_id}")
        model = _MODEL_NAMES[model_id]
        params = np.frombuffer(cursor.take(8 * CAMERA_MODELS[model][1], what), dtype="<f8").copy()
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, params)
    cursor.finish()
    return cameras


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            camera_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            cameras[camera_id] = ColmapCamera(camera_id, model, width, height, [float(x) for x in fields[4:]])
        except (IndexError, ValueError) as error:
            raise DataFormatError(path, f"line {number}: malformed camera line ({error})") from error
    return cameras


def read_colmap_cameras(path: str | Path) -> dict[int, ColmapCamera]:
    """camera_id -> ColmapCamera from one `cameras.bin` or `cameras.txt` file (no other file needed)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "cameras file is missing")
    cameras = _read_cameras_txt(path) if path.suffix == ".txt" else _read_cameras_bin(path)
    if not cameras:
        raise DataFormatError(path, "no cameras in file")
    return cameras


def _image_names_bin(path: Path) -> list[str]:
    cursor = _Cursor(path)
    (count,) = cursor.unpack(_UINT64, "the image count")
    names = []
    for index in range(count):
        what = f"image record {index + 1} of {count}"
        cursor.take(_IMAGE_HEADER.size, what)
        names.append(cursor.name(what))
        (num_points2D,) = cursor.unpack(_UINT64, what)
        cursor.take(_OBSERVATION.itemsize * num_points2D, what)
    cursor.finish()
    return names


def _image_names_txt(path: Path) -> list[str]:
    """Names from images.txt: a header line per image followed by its (possibly empty) POINTS2D line."""
    names = []
    lines = iter(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))
    for number, line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(maxsplit=9)
        if len(fields) != 10:
            raise DataFormatError(path, f"line {number}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        names.append(fields[9])
        next(lines, None)
    return names


def _check_points_bin(path: Path) -> int:
    cursor = _Cursor(path)
    (count,) = cursor.unpack(_UINT64, "the point count")
    for index in range(count):
        what = f"point record {index + 1} of {count}"
        cursor.take(_POINT_HEADER.size, what)
        (track_length,) = cursor.unpack(_UINT64, what)
        cursor.take(_TRACK_ELEMENT.itemsize * track_length, what)
    cursor.finish()
    return count


def check_colmap_model(sparse_dir: str | Path) -> tuple[dict[str, Path], list[str]]:
    """Cheap structural check of a model folder without pycolmap; returns (files, image names in file order).

    Verifies that the three files exist, that binary files are exactly as long as their records say
    (truncated or padded files are caught), that cameras.txt parses, and that at least one image is
    registered. Raises DataFormatError naming the offending file or folder.
    """
    files = find_model_files(sparse_dir)
    read_colmap_cameras(files["cameras"])
    if files["images"].suffix == ".bin":
        names = _image_names_bin(files["images"])
        _check_points_bin(files["points3D"])
    else:
        names = _image_names_txt(files["images"])
    if not names:
        raise DataFormatError(files["images"], "no registered images (empty reconstruction)")
    return files, names


# --- reading through pycolmap ------------------------------------------------------------------------


def _cam_from_world(image) -> np.ndarray:
    """(4, 4) from a pycolmap Image: `cam_from_world` is a method since pycolmap 3.12, a property before."""
    pose = image.cam_from_world
    pose = pose() if callable(pose) else pose
    matrix = np.eye(4)
    matrix[:3, :4] = np.asarray(pose.matrix(), dtype=np.float64)
    return matrix


def read_colmap_model(sparse_dir: str | Path, include_points2D: bool = True) -> ColmapModel:
    """Read a COLMAP model folder (.bin or .txt) through `pycolmap.Reconstruction`.

    Args:
        include_points2D: also extract every image's keypoints (slow in pycolmap, ~3 µs each);
            without them `points2D`/`point3D_ids` are empty and the points' tracks still list
            which images observe each point.
    Raises:
        DataFormatError naming the folder or file: missing/empty/truncated files, zero registered
        images, or any pycolmap parse error.
    """
    import pycolmap

    sparse_dir = Path(sparse_dir)
    files, _ = check_colmap_model(sparse_dir)
    try:
        reconstruction = pycolmap.Reconstruction(str(sparse_dir))
    except Exception as error:  # pycolmap raises ValueError/IndexError/RuntimeError on inconsistent files
        problem = f"pycolmap cannot read the model ({type(error).__name__}: {error})"
        raise DataFormatError(sparse_dir, problem) from error
    cameras = {
        camera_id: ColmapCamera(camera_id, camera.model.name, camera.width, camera.height, np.array(camera.params))
        for camera_id, camera in reconstruction.cameras.items()
    }
    images = []
    for image_id, image in reconstruction.images.items():
        if not image.has_pose:
            continue
        points2D = image.points2D if include_points2D else []
        images.append(ColmapImage(
            name=image.name,
            camera_id=image.camera_id,
            cam_from_world=_cam_from_world(image),
            points2D=np.array([p.xy for p in points2D], dtype=np.float64).reshape(-1, 2),
            # point3D_t is uint64 with 2**64 - 1 = invalid: reinterpreted as int64 that is -1
            point3D_ids=np.array([p.point3D_id for p in points2D], dtype=np.uint64).view(np.int64),
            image_id=image_id,
        ))
    if not images:
        raise DataFormatError(files["images"], "no registered images (empty reconstruction)")
    images.sort(key=lambda im: im.name)
    ids = np.array(sorted(reconstruction.points3D), dtype=np.int64)
    stored = [reconstruction.points3D[int(i)] for i in ids]
    points = ColmapPoints(
        ids=ids,
        xyz=np.array([p.xyz for p in stored], dtype=np.float64).reshape(-1, 3),
        rgb=np.array([p.color for p in stored], dtype=np.uint8).reshape(-1, 3),
        error=np.array([p.error for p in stored], dtype=np.float64),
        tracks=[np.array([(e.image_id, e.point2D_idx) for e in p.track.elements], dtype=np.int64).reshape(-1, 2)
                for p in stored],
    )
    return ColmapModel(path=sparse_dir, files=files, cameras=cameras, images=images, points=points)


# --- intrinsics ----------------------------------------------------------------------------------------


def intrinsics_from_colmap(cameras: Mapping[int, ColmapCamera], path: str | Path) -> dict[int, np.ndarray]:
    """camera_id -> (3, 3) K in the project's convention (cx, cy = COLMAP's - 0.5).

    SIMPLE_PINHOLE and PINHOLE are exact. SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV keep their
    pinhole part; when any of their distortion coefficients is non-zero the distortion is ignored
    with one warning per call naming the models. Fisheye and other models raise DataFormatError
    naming `path` (the cameras file).
    """
    intrinsics, distorted = {}, {}
    for camera_id, camera in cameras.items():
        if camera.model not in _PERSPECTIVE:
            raise DataFormatError(path, f"camera {camera_id}: model {camera.model} is not supported "
                                        f"(supported: {', '.join(_PERSPECTIVE)})")
        p = camera.params
        fx, fy, rest = (p[0], p[0], p[1:]) if camera.model in _SINGLE_FOCAL else (p[0], p[1], p[2:])
        cx, cy, distortion = rest[0], rest[1], rest[2:]
        if np.any(distortion != 0):
            distorted[camera.model] = max(distorted.get(camera.model, 0.0), float(np.abs(distortion).max()))
        intrinsics[camera_id] = make_K(fx, fy, cx - COLMAP_PIXEL_OFFSET, cy - COLMAP_PIXEL_OFFSET)
    if distorted:
        details = ", ".join(f"{model} (max |coefficient| {value:.3g})" for model, value in sorted(distorted.items()))
        warnings.warn(f"{path}: lens distortion of camera model(s) {details} is ignored; "
                      "only the pinhole part (f, cx, cy) is used", stacklevel=2)
    return intrinsics


def colmap_camera_from_K(camera_id: int, K: np.ndarray, height: int, width: int,
                         model: str = "PINHOLE") -> ColmapCamera:
    """The inverse of `intrinsics_from_colmap` for an undistorted camera (distortion coefficients 0).

    `model` is one of the perspective models; single-focal models need K[0, 0] == K[1, 1].
    """
    K = np.asarray(K, dtype=np.float64)
    if model not in _PERSPECTIVE:
        raise ValueError(f"model must be one of {_PERSPECTIVE}, got {model!r}")
    fx, fy = K[0, 0], K[1, 1]
    cx, cy = K[0, 2] + COLMAP_PIXEL_OFFSET, K[1, 2] + COLMAP_PIXEL_OFFSET
    if model in _SINGLE_FOCAL:
        if not np.isclose(fx, fy, rtol=1e-12):
            raise ValueError(f"model {model} has one focal length but fx={fx} != fy={fy}")
        pinhole = [fx, cx, cy]
    else:
        pinhole = [fx, fy, cx, cy]
    num_params = CAMERA_MODELS[model][1]
    return ColmapCamera(camera_id, model, width, height, pinhole + [0.0] * (num_params - len(pinhole)))


# --- writing ---------------------------------------------------------------------------------------------


def _numbered_images(images: Sequence[ColmapImage]) -> list[tuple[int, ColmapImage]]:
    """(image id, image) sorted by id: ids 1..N in name order when all are 0, else the given ids."""
    ids = [image.image_id for image in images]
    if all(i == 0 for i in ids):
        return list(enumerate(sorted(images, key=lambda im: im.name), start=1))
    if min(ids) <= 0 or len(set(ids)) != len(ids):
        raise ValueError(f"image ids must be all 0 (assign) or unique and positive, got {ids}")
    return sorted(zip(ids, images), key=lambda pair: pair[0])


def write_colmap_binary(sparse_dir: str | Path, cameras: Iterable[ColmapCamera], images: Sequence[ColmapImage],
                        points: ColmapPoints, project_ini: str | None = None) -> list[Path]:
    """Write a legacy binary model: exactly `cameras.bin`, `images.bin`, `points3D.bin` (+ `project.ini`).

    Image ids: when every input `image_id` is 0 they are assigned 1..N in name order, otherwise the
    given (unique, positive) ids are kept. Records are sorted by id. Each point's track is derived
    from the images' `point3D_ids` (the input `tracks` are not used), ordered by (image id, keypoint
    index). Returns the written paths.
    """
    sparse_dir = Path(sparse_dir)
    sparse_dir.mkdir(parents=True, exist_ok=True)
    cameras = sorted(cameras, key=lambda c: c.camera_id)
    camera_ids = {c.camera_id for c in cameras}
    ordered = _numbered_images(images)
    point_row = {int(i): row for row, i in enumerate(points.ids)}
    tracks: list[list[tuple[int, int]]] = [[] for _ in range(len(points))]

    image_chunks = [_UINT64.pack(len(ordered))]
    for image_id, image in ordered:
        if image.camera_id not in camera_ids:
            raise ValueError(f"image {image.name}: camera {image.camera_id} is not among the cameras")
        q, t = cam_from_world_to_colmap(image.cam_from_world)
        observations = np.empty(len(image.points2D), dtype=_OBSERVATION)
        observations["x"], observations["y"] = image.points2D[:, 0], image.points2D[:, 1]
        observations["point3D_id"] = image.point3D_ids
        for index, point_id in enumerate(image.point3D_ids):
            if point_id >= 0:
                if int(point_id) not in point_row:
                    raise ValueError(f"image {image.name}: keypoint {index} observes unknown point {point_id}")
                tracks[point_row[int(point_id)]].append((image_id, index))
        image_chunks += [_IMAGE_HEADER.pack(image_id, *q, *t, image.camera_id), image.name.encode() + b"\0",
                         _UINT64.pack(len(observations)), observations.tobytes()]

    camera_chunks = [_UINT64.pack(len(cameras))]
    for camera in cameras:
        model_id = CAMERA_MODELS[camera.model][0]
        camera_chunks += [_CAMERA_HEADER.pack(camera.camera_id, model_id, camera.width, camera.height),
                          camera.params.astype("<f8").tobytes()]

    point_chunks = [_UINT64.pack(len(points))]
    order = np.argsort(points.ids, kind="stable")
    for row in order:
        track = np.array(tracks[row], dtype=_TRACK_ELEMENT)
        point_chunks += [_POINT_HEADER.pack(int(points.ids[row]), *points.xyz[row], *points.rgb[row],
                                            float(points.error[row])),
                         _UINT64.pack(len(track)), track.tobytes()]

    written = []
    for name, chunks in (("cameras", camera_chunks), ("images", image_chunks), ("points3D", point_chunks)):
        path = sparse_dir / f"{name}.bin"
        path.write_bytes(b"".join(chunks))
        written.append(path)
    if project_ini is not None:
        (sparse_dir / "project.ini").write_text(project_ini)
        written.append(sparse_dir / "project.ini")
    return written
