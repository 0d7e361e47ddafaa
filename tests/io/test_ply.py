"""PLY writer: binary little-endian float32 xyz + uchar rgb, read back by the CO3D reader's read_ply_points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiview.data.readers.co3d import read_ply_points
from multiview.io.ply import write_ply


def _vertex_table(path):
    """Header lines and the raw vertex records (parsed with the layout the writer promises)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    layout = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    return header, np.frombuffer(data[end:], dtype=layout)


def test_round_trip_with_colours(tmp_path, rng):
    points = rng.normal(scale=300.0, size=(50, 3))
    colours = rng.random((50, 3)).astype(np.float32)
    write_ply(tmp_path / "sub" / "cloud.ply", torch.from_numpy(points), torch.from_numpy(colours))
    path = tmp_path / "sub" / "cloud.ply"
    np.testing.assert_array_equal(read_ply_points(path), points.astype(np.float32))
    header, table = _vertex_table(path)
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 50"]
    assert len(table) == 50 and path.stat().st_size == len("\n".join(header)) + 1 + 15 * 50
    rgb = np.stack([table["red"], table["green"], table["blue"]], axis=-1)
    np.testing.assert_array_equal(rgb, np.round(colours * 255).astype(np.uint8))


def test_without_colours_and_uint8_colours(tmp_path):
    points = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    write_ply(tmp_path / "plain.ply", points)
    assert "red" not in (tmp_path / "plain.ply").read_bytes().decode("latin-1")
    np.testing.assert_array_equal(read_ply_points(tmp_path / "plain.ply"), points)
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8))
    assert read_ply_points(tmp_path / "empty.ply").shape == (0, 3)
    write_ply(tmp_path / "u8.ply", points, np.array([[255, 0, 7], [1, 2, 3]], dtype=np.uint8))
    _, table = _vertex_table(tmp_path / "u8.ply")
    assert table["blue"].tolist() == [7, 3]


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "a.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="colours"):
        write_ply(tmp_path / "a.ply", np.zeros((4, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        write_ply(tmp_path / "a.ply", np.full((1, 3), np.nan))
