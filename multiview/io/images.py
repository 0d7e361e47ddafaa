"""Image files -> float32 arrays in [0, 1], with RGBA compositing and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from multiview.data.errors import DataFormatError

BACKGROUNDS = {"white": 1.0, "black": 0.0}


def read_image_raw(path: str | Path) -> np.ndarray:
    """The pixel array exactly as stored (uint8/uint16, (H, W) or (H, W, C)); clear errors on bad files."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "image file is missing")
    try:
        return np.asarray(iio.imread(path))
    except Exception as error:  # imageio/PIL raise many types for corrupt files
        raise DataFormatError(path, f"cannot decode image ({type(error).__name__}: {error})") from error


def read_image(path: str | Path, background: str | None = None) -> np.ndarray:
    """Read an 8- or 16-bit image as (H, W, 3) float32 in [0, 1].

    Args:
        background: for RGBA files, composite rgb·α + bg·(1 − α) on "white" or "black"; None keeps
            the RGB channels and drops alpha. Grayscale files are replicated to 3 channels.
    """
    raw = read_image_raw(path)
    if raw.dtype == np.uint8:
        image = raw.astype(np.float32) / 255.0
    elif raw.dtype == np.uint16:
        image = raw.astype(np.float32) / 65535.0
    else:
        raise DataFormatError(path, f"unsupported pixel type {raw.dtype} (expected 8- or 16-bit)")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels == 1:
        return np.repeat(image, 3, axis=-1)
    if channels == 4:
        rgb, alpha = image[..., :3], image[..., 3:]
        if background is None:
            return np.ascontiguousarray(rgb)
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {sorted(BACKGROUNDS)} or None, got {background!r}")
        return rgb * alpha + BACKGROUNDS[background] * (1.0 - alpha)
    if channels == 3:
        return image
    raise DataFormatError(path, f"unsupported number of channels {channels}")


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) float32 in [0, 1] from an 8-bit mask image (first channel)."""
    raw = read_image_raw(path)
    if raw.ndim == 3:
        raw = raw[..., 0]
    return raw.astype(np.float32) / float(np.iinfo(raw.dtype).max)


# Every complete file of these formats ends with this marker (JPEG may carry a few bytes of padding after it).
_END_MARKERS = {".png": b"IEND\xaeB`\x82", ".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9"}


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file from its header, without decoding the pixels.

    Also a cheap truncation check, so readers can validate every image at index time: a PNG or
    JPEG must contain its end marker within its last 64 bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "image file is missing")
    try:
        props = iio.improps(path)
    except Exception as error:
        raise DataFormatError(path, f"cannot read image header ({type(error).__name__}: {error})") from error
    marker = _END_MARKERS.get(path.suffix.lower())
    if marker is not None:
        with open(path, "rb") as stream:
            stream.seek(max(0, path.stat().st_size - 64))
            if marker not in stream.read():
                raise DataFormatError(path, f"image file is truncated (no {path.suffix} end marker)")
    return int(props.shape[0]), int(props.shape[1])


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 with rounding (values outside are clipped)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write a float [0, 1] or uint8 image as PNG or JPEG (by extension), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image if image.dtype in (np.uint8, np.uint16) else to_uint8(image)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        iio.imwrite(path, data, quality=quality)
    else:
        iio.imwrite(path, data)
