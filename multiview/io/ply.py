"""PLY writer for (coloured) point clouds: binary little-endian, float32 x y z, uchar red green blue.

Read them back with `multiview.data.readers.co3d.read_ply_points` (xyz) or any PLY reader (MeshLab,
Open3D, plyfile); the layout is the one fusibile / MVSNet_pytorch's `eval.py` write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from multiview.io.images import to_uint8


def _as_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def write_ply(path: str | Path, points, colours=None) -> None:
    """Write a point cloud, creating parent folders.

    Args:
        points: (N, 3) xyz (numpy or torch, any float type; stored as float32).
        colours: optional (N, 3) RGB, uint8 or float in [0, 1] (clipped and rounded to uint8).
    """
    points = _as_numpy(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points must be finite")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colours is not None:
        colours = _as_numpy(colours)
        if colours.shape != points.shape:
            raise ValueError(f"colours must have shape {points.shape} like points, got {colours.shape}")
        colours = colours if colours.dtype == np.uint8 else to_uint8(colours.astype(np.float32))
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    if colours is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = colours[:, channel]
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {types[kind]} {name}" for name, kind in fields] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(("\n".join(header) + "\n").encode("ascii"))
        file.write(vertices.tobytes())
