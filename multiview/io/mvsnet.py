"""MVSNet text files: per-view ``cam.txt`` and the view-selection ``pair.txt``.

cam.txt (whitespace tokens; the line layout below is what MVSNet writes)::

    extrinsic
    r11 r12 r13 t1          # 4x4 world -> camera [R|t; 0 0 0 1], OpenCV axes (already `cam_from_world`)
    r21 r22 r23 t2
    r31 r32 r33 t3
    0 0 0 1

    intrinsic
    fx 0 cx                 # 3x3, pixels of the image (or depth map) the file belongs to
    0 fy cy
    0 0 1

    DEPTH_MIN DEPTH_INTERVAL [DEPTH_NUM [DEPTH_MAX]]

pair.txt::

    TOTAL_IMAGE_NUM
    <ref_id>
    <n> <src_id_1> <score_1> ... <src_id_n> <score_n>     # best first
    ... (repeated for each reference view)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multiview.data.errors import DataFormatError
from multiview.geometry.transforms import is_rigid

Pairs = list[tuple[int, list[tuple[int, float]]]]


@dataclass
class MVSNetCamera:
    """One MVSNet cam.txt.

    Attributes:
        cam_from_world: (4, 4) float64 world -> OpenCV camera.
        K: (3, 3) float64 intrinsics.
        depth_min, depth_interval: first depth hypothesis and step (scene units, mm for DTU).
        depth_num, depth_max: optional number of hypotheses and last depth, when the file has them.
    """

    cam_from_world: np.ndarray
    K: np.ndarray
    depth_min: float
    depth_interval: float
    depth_num: int | None = None
    depth_max: float | None = None


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DataFormatError(path, f"{what} file is missing")
    try:
        return path.read_text().splitlines()
    except UnicodeDecodeError as error:
        raise DataFormatError(path, f"{what} is not a text file ({error})") from None


def _tokens(lines: list[str]) -> list[tuple[str, int]]:
    """Whitespace tokens with their 1-based line numbers."""
    return [(token, number) for number, line in enumerate(lines, start=1) for token in line.split()]


def _number(path: Path, token: str, line: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise DataFormatError(path, f"line {line}: {what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise DataFormatError(path, f"line {line}: {what} is {token} (must be finite)")
    return value


def _integer(path: Path, token: str, line: int, what: str) -> int:
    value = _number(path, token, line, what)
    if value != int(value):
        raise DataFormatError(path, f"line {line}: {what} {token!r} is not an integer")
    return int(value)


def read_cam_txt(path: str | Path) -> MVSNetCamera:
    """Parse an MVSNet cam.txt (token based: words at tokens 0 and 17, 2-4 depth fields from token 27)."""
    path = Path(path)
    tokens = _tokens(_read_lines(path, "cam.txt"))
    if not 29 <= len(tokens) <= 31:
        raise DataFormatError(
            path,
            f"expected 29-31 tokens ('extrinsic' + 16, 'intrinsic' + 9, depth_min depth_interval "
            f"[depth_num [depth_max]]), got {len(tokens)}",
        )
    for index, word in ((0, "extrinsic"), (17, "intrinsic")):
        token, line = tokens[index]
        if token.lower() != word:
            raise DataFormatError(path, f"line {line}: expected the word {word!r}, got {token!r}")
    extrinsic = [_number(path, t, n, f"extrinsic entry {i}") for i, (t, n) in enumerate(tokens[1:17])]
    intrinsic = [_number(path, t, n, f"intrinsic entry {i}") for i, (t, n) in enumerate(tokens[18:27])]
    cam_from_world = np.array(extrinsic, dtype=np.float64).reshape(4, 4)
    K = np.array(intrinsic, dtype=np.float64).reshape(3, 3)
    if not np.allclose(cam_from_world[3], [0.0, 0.0, 0.0, 1.0]):
        raise DataFormatError(
            path, f"extrinsic bottom row is {cam_from_world[3].tolist()}, expected [0, 0, 0, 1]"
        )
    if not is_rigid(cam_from_world, atol=1e-4):
        raise DataFormatError(
            path, "extrinsic is not a rigid transform (rotation not orthonormal with det +1)"
        )
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise DataFormatError(path, f"intrinsic bottom row is {K[2].tolist()}, expected [0, 0, 1]")
    depth = tokens[27:]
    depth_min = _number(path, *depth[0], "depth_min")
    depth_interval = _number(path, *depth[1], "depth_interval")
    depth_num = _integer(path, *depth[2], "depth_num") if len(depth) > 2 else None
    depth_max = _number(path, *depth[3], "depth_max") if len(depth) > 3 else None
    return MVSNetCamera(cam_from_world, K, depth_min, depth_interval, depth_num, depth_max)


def _row(values) -> str:
    return " ".join(repr(float(v)) for v in values)


def write_cam_txt(path: str | Path, camera: MVSNetCamera) -> None:
    """Write an MVSNet cam.txt (full float precision), creating parent folders."""
    depth = [camera.depth_min, camera.depth_interval]
    if camera.depth_num is not None:
        depth.append(camera.depth_num)
        if camera.depth_max is not None:
            depth.append(camera.depth_max)
    elif camera.depth_max is not None:
        raise ValueError("depth_max can only be written together with depth_num")
    depth_line = " ".join(str(int(v)) if i == 2 else repr(float(v)) for i, v in enumerate(depth))
    lines = ["extrinsic", *(_row(r) for r in np.asarray(camera.cam_from_world).reshape(4, 4)), ""]
    lines += ["intrinsic", *(_row(r) for r in np.asarray(camera.K).reshape(3, 3)), "", depth_line]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def read_pair_txt(path: str | Path) -> Pairs:
    """Parse a pair.txt into [(ref_id, [(src_id, score), ...]), ...] in file order, sources best first.

    Checks the header count against the records, each line's source count against its pairs, and that
    every id is in [0, TOTAL_IMAGE_NUM) with finite scores.
    """
    path = Path(path)
    lines = [
        (number, line.split()) for number, line in enumerate(_read_lines(path, "pair.txt"), 1) if line.strip()
    ]
    if not lines:
        raise DataFormatError(path, "pair.txt is empty")
    (first, header), records = lines[0], lines[1:]
    if len(header) != 1:
        raise DataFormatError(path, f"line {first}: expected the number of views, got {' '.join(header)!r}")
    num_views = _integer(path, header[0], first, "number of views")
    if len(records) != 2 * num_views:
        raise DataFormatError(
            path,
            f"header says {num_views} views but the file has {len(records)} non-empty lines after it "
            f"(expected {2 * num_views}: a ref id line and a sources line per view)",
        )

    def view_id(token: str, line: int, what: str) -> int:
        value = _integer(path, token, line, what)
        if not 0 <= value < num_views:
            raise DataFormatError(path, f"line {line}: {what} {value} is outside [0, {num_views})")
        return value

    pairs: Pairs = []
    for (ref_line, ref_tokens), (src_line, src_tokens) in zip(records[::2], records[1::2]):
        if len(ref_tokens) != 1:
            raise DataFormatError(
                path, f"line {ref_line}: expected one reference id, got {len(ref_tokens)} tokens"
            )
        ref = view_id(ref_tokens[0], ref_line, "reference id")
        count = _integer(path, src_tokens[0], src_line, "source count")
        if len(src_tokens) != 1 + 2 * count:
            raise DataFormatError(
                path,
                f"line {src_line}: says {count} sources but has {(len(src_tokens) - 1) / 2:g} (id, score) "
                "pairs",
            )
        sources = [
            (
                view_id(src_tokens[k], src_line, "source id"),
                _number(path, src_tokens[k + 1], src_line, "score"),
            )
            for k in range(1, len(src_tokens), 2)
        ]
        pairs.append((ref, sources))
    refs = [ref for ref, _ in pairs]
    if len(set(refs)) != len(refs):
        raise DataFormatError(path, "a reference id appears more than once")
    return pairs


def write_pair_txt(path: str | Path, pairs: Pairs) -> None:
    """Write [(ref_id, [(src_id, score), ...]), ...] as a pair.txt, creating parent folders."""
    lines = [str(len(pairs))]
    for ref, sources in pairs:
        lines.append(str(int(ref)))
        lines.append(" ".join([str(len(sources)), *(f"{int(s)} {float(score)!r}" for s, score in sources)]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
