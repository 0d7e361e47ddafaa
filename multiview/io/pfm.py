"""Portable Float Map (PFM) files: MVSNet / DTU ground-truth depth maps.

Layout: an ASCII header of whitespace-separated tokens, ``Pf`` (1 channel) or ``PF`` (3 channels),
``W H``, then the scale whose sign gives the byte order (negative = little-endian, positive =
big-endian), one whitespace character, then W·H·C float32 values stored row by row from the
BOTTOM row of the image to the top (so readers flip the rows).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError

_HEADER = re.compile(rb"(P[fF])\s+(\d+)\s+(\d+)\s+(\S+)(\r\n|\s)")
_MAX_HEADER_BYTES = 256


def _parse_header(path: Path, head: bytes, file_size: int) -> tuple[int, int, int, str, int]:
    """(height, width, channels, numpy dtype, data offset) from the first bytes; checks the file size."""
    header = _HEADER.match(head)
    if header is None:
        raise DataFormatError(path, f"bad PFM header {head[:32]!r} (expected 'Pf' or 'PF', 'W H', scale)")
    kind, width, height, scale_token = (
        header.group(1),
        int(header.group(2)),
        int(header.group(3)),
        header.group(4),
    )
    try:
        scale = float(scale_token)
    except ValueError:
        raise DataFormatError(path, f"bad PFM header: scale {scale_token!r} is not a number") from None
    if not np.isfinite(scale) or scale == 0.0:
        raise DataFormatError(path, f"bad PFM header: scale must be finite and non-zero, got {scale}")
    if width == 0 or height == 0:
        raise DataFormatError(path, f"bad PFM header: empty image {width}x{height}")
    channels = 3 if kind == b"PF" else 1
    expected = width * height * channels * 4
    payload = file_size - header.end()
    if payload < expected:
        raise DataFormatError(
            path,
            f"truncated PFM data: {payload} bytes for a {width}x{height}x{channels} map, expected {expected}",
        )
    if payload > expected:
        raise DataFormatError(
            path, f"PFM has {payload - expected} unexpected bytes after the {expected} data bytes"
        )
    return height, width, channels, ("<f4" if scale < 0 else ">f4"), header.end()


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise DataFormatError(path, "PFM file is missing")


def read_pfm_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of a PFM file from its header alone; also checks that the file holds all the data."""
    path = Path(path)
    _check_exists(path)
    with open(path, "rb") as file:
        head = file.read(_MAX_HEADER_BYTES)
    return _parse_header(path, head, path.stat().st_size)[:2]


def read_pfm(path: str | Path) -> np.ndarray:
    """Read a PFM file as float32 (H, W) for ``Pf`` or (H, W, 3) for ``PF``, top row first."""
    path = Path(path)
    _check_exists(path)
    data = path.read_bytes()
    height, width, channels, dtype, offset = _parse_header(path, data[:_MAX_HEADER_BYTES], len(data))
    values = np.frombuffer(data, dtype=dtype, count=width * height * channels, offset=offset)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(values.reshape(shape)[::-1]).astype(np.float32)


def write_pfm(path: str | Path, array: np.ndarray, little_endian: bool = True) -> None:
    """Write (H, W) or (H, W, 3) values (top row first) as PFM with scale ∓1, creating parent folders."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"PFM holds (H, W) or (H, W, 3) arrays, got shape {array.shape}")
    height, width = array.shape[:2]
    kind = "PF" if array.ndim == 3 else "Pf"
    scale = -1.0 if little_endian else 1.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = np.ascontiguousarray(array[::-1]).astype("<f4" if little_endian else ">f4")
    with open(path, "wb") as file:
        file.write(f"{kind}\n{width} {height}\n{scale}\n".encode("ascii"))
        file.write(body.tobytes())
