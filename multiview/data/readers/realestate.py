"""RealEstate10K in the layout of IBRNet's `RealEstate10K-subset` (video frames with SLAM cameras).

Expected tree (`root` = the `RealEstate10K-subset` folder)::

    RealEstate10K-subset/
      train/
        cameras/<sequence>.txt     line 1: the YouTube URL; then one line per frame with 19 numbers
                                   timestamp_us fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3
        frames/<sequence>/<timestamp_us>.png
      test/                        same layout (IBRNet trains on train/ only)

Conventions converted (`realestate_to_opencv`): fx, cx are normalised by the image width and fy, cy by
its height; they are multiplied by the size of the stored frame (cx = cx_norm·W, as IBRNet does), so
`K` is in pixels of the PNG on disk. The 3x4 is OpenCV world -> camera and is used as
`cam_from_world` directly. near/far = 1/100 for every view (IBRNet's bounds; scale of the SLAM run).
The reader keeps the stored frame size: IBRNet resizes frames to 450x800 (INTER_AREA), which is the
sampler's job (resize image and K together with `resize_intrinsics`).

A sequence is a folder of `frames/` (camera files of sequences without frames are ignored, as in
IBRNet); views are sorted by timestamp and named by it (`extra["timestamp_us"]`). Every camera line
needs its frame and every frame its camera line (IBRNet silently skips frames without cameras; this
reader raises). `Scene.splits = {split: all views}`; `meta` holds the `url`, and `source_window` = 32:
IBRNet draws the source views of a target from the 2·32 frames around it (and skips sequences with
fewer than 10 frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.data.records import Scene, View
from multiview.geometry.conventions import realestate_to_opencv
from multiview.io.images import image_size

SPLITS = ("train", "test")
NEAR, FAR = 1.0, 100.0
SOURCE_WINDOW = 32
NUMBERS_PER_LINE = 19
_LINE_LAYOUT = "timestamp_us fx fy cx cy 0 0 and a row-major 3x4 world->camera"


def _split_dir(root: str | Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"RealEstate10K split must be one of {SPLITS}, got {split!r}")
    return Path(root) / split


def list_realestate_sequences(root: str | Path, split: str = "train") -> list[str]:
    """Sorted names of the sequences that have a `frames/<sequence>/` folder in `root/split`."""
    frames_dir = _split_dir(root, split) / "frames"
    if not frames_dir.is_dir():
        raise DataFormatError(frames_dir, "frames folder is missing")
    return sorted(path.name for path in frames_dir.iterdir() if path.is_dir())


def parse_realestate_cameras(path: str | Path) -> tuple[str, dict[int, tuple[int, np.ndarray]]]:
    """Read a camera file -> (URL, {timestamp_us: (line number, the 18 numbers after the timestamp)})."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "camera file is missing")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip() or len(lines[0].split()) == NUMBERS_PER_LINE:
        raise DataFormatError(path, "line 1: expected the video URL")
    cameras: dict[int, tuple[int, np.ndarray]] = {}
    for number, line in enumerate(lines[1:], start=2):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != NUMBERS_PER_LINE:
            raise DataFormatError(path, f"line {number}: expected {NUMBERS_PER_LINE} numbers "
                                        f"({_LINE_LAYOUT}), got {len(tokens)}")
        try:
            timestamp = int(tokens[0])
            values = np.array([float(token) for token in tokens[1:]])
        except ValueError as error:
            raise DataFormatError(path, f"line {number}: not a number ({error})") from error
        if not np.isfinite(values).all():
            raise DataFormatError(path, f"line {number}: non-finite camera values")
        if timestamp in cameras:
            raise DataFormatError(
                path, f"line {number}: timestamp {timestamp} repeats line {cameras[timestamp][0]}"
            )
        cameras[timestamp] = (number, values)
    if not cameras:
        raise DataFormatError(path, "no camera lines after the URL")
    return lines[0].strip(), cameras


def _frames_by_timestamp(frames_dir: Path) -> dict[int, Path]:
    if not frames_dir.is_dir():
        raise DataFormatError(frames_dir, "frames folder is missing")
    frames = {}
    for path in frames_dir.glob("*.png"):
        if not path.stem.isdigit():
            raise DataFormatError(path, "frame name is not a timestamp in microseconds")
        frames[int(path.stem)] = path
    return frames


def read_realestate_sequence(root: str | Path, split: str, sequence: str) -> Scene:
    """One sequence -> Scene of its frames in timestamp order (see the module docstring)."""
    split_dir = _split_dir(root, split)
    camera_path = split_dir / "cameras" / f"{sequence}.txt"
    frames_dir = split_dir / "frames" / sequence
    url, cameras = parse_realestate_cameras(camera_path)
    frames = _frames_by_timestamp(frames_dir)
    extra_frames = sorted(set(frames) - set(cameras))
    if extra_frames:
        raise DataFormatError(frames[extra_frames[0]], f"frame has no line in {camera_path}")
    views = []
    for timestamp in sorted(cameras):
        number, values = cameras[timestamp]
        if timestamp not in frames:
            raise DataFormatError(frames_dir / f"{timestamp}.png",
                                  f"frame is missing (camera on line {number} of {camera_path.name})")
        height, width = image_size(frames[timestamp])
        K, cam_from_world = realestate_to_opencv(values[:4], values[6:], height, width)
        views.append(View(name=str(timestamp), image_path=frames[timestamp], height=height, width=width,
                          K=K, cam_from_world=cam_from_world, near=NEAR, far=FAR,
                          extra={"timestamp_us": timestamp}))
    return Scene(name=sequence, dataset="realestate10k", root=frames_dir, views=views,
                 splits={split: list(range(len(views)))}, meta={"url": url, "source_window": SOURCE_WINDOW})
