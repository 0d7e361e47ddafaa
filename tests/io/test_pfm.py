"""PFM reading and writing: channels, byte order, the bottom-to-top row order, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multiview.data.errors import DataFormatError
from multiview.io.pfm import read_pfm, read_pfm_size, write_pfm

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_PFM = REPO_ROOT.parent / "shared" / "data" / "dtu_mvsnet_fragments" / "depth_map_0000.pfm"

TOP_FIRST = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)  # row 0 is the top row


def hand_written_pfm(little_endian: bool) -> bytes:
    """TOP_FIRST as a PFM built byte by byte: the bottom row (4 5 6) is stored first."""
    dtype = "<f4" if little_endian else ">f4"
    header = b"Pf\n3 2\n-1.0\n" if little_endian else b"Pf\n3 2\n1.0\n"
    return header + np.array([4, 5, 6, 1, 2, 3], dtype=dtype).tobytes()


@pytest.mark.parametrize("little_endian", [True, False])
def test_read_hand_written_bytes_flips_rows(tmp_path, little_endian):
    path = tmp_path / "tiny.pfm"
    path.write_bytes(hand_written_pfm(little_endian))
    depth = read_pfm(path)
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    np.testing.assert_array_equal(depth, TOP_FIRST)
    assert read_pfm_size(path) == (2, 3)


@pytest.mark.parametrize("little_endian", [True, False])
def test_writer_stores_bottom_row_first(tmp_path, little_endian):
    path = tmp_path / "tiny.pfm"
    write_pfm(path, TOP_FIRST, little_endian=little_endian)
    data = path.read_bytes()
    expected = hand_written_pfm(little_endian)
    assert data[-24:] == expected[-24:]  # the 6 float32 values, bottom row first, in the chosen byte order
    assert data.startswith(b"Pf\n3 2\n" + (b"-" if little_endian else b""))


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3)])
def test_round_trip(tmp_path, shape, little_endian):
    array = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 300.0
    path = tmp_path / "map.pfm"
    write_pfm(path, array, little_endian=little_endian)
    back = read_pfm(path)
    assert back.shape == shape and back.dtype == np.float32
    np.testing.assert_array_equal(back, array)
    assert path.read_bytes()[:2] == (b"PF" if len(shape) == 3 else b"Pf")


def test_write_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_pfm(tmp_path / "bad.pfm", np.zeros((4, 4, 2)))


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.pfm"
    write_pfm(path, np.ones((8, 10), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-20])
    for reader in (read_pfm, read_pfm_size):
        with pytest.raises(DataFormatError, match="cut.pfm: truncated PFM data"):
            reader(path)


def test_bad_header_and_missing_file(tmp_path):
    bad = tmp_path / "bad.pfm"
    bad.write_bytes(b"P6\n3 2\n-1.0\n" + bytes(24))
    with pytest.raises(DataFormatError, match="bad.pfm: bad PFM header"):
        read_pfm(bad)
    zero_scale = tmp_path / "zero.pfm"
    zero_scale.write_bytes(b"Pf\n3 2\n0\n" + bytes(24))
    with pytest.raises(DataFormatError, match="zero.pfm: bad PFM header: scale"):
        read_pfm(zero_scale)
    with pytest.raises(DataFormatError, match="absent.pfm: PFM file is missing"):
        read_pfm(tmp_path / "absent.pfm")


def test_trailing_bytes_rejected(tmp_path):
    path = tmp_path / "long.pfm"
    path.write_bytes(hand_written_pfm(True) + b"\0\0\0\0")
    with pytest.raises(DataFormatError, match="long.pfm: PFM has 4 unexpected bytes"):
        read_pfm(path)


@pytest.mark.skipif(not REAL_PFM.is_file(), reason=f"real DTU sample not found at {REAL_PFM}")
def test_real_dtu_depth_map():
    depth = read_pfm(REAL_PFM)
    assert depth.shape == (128, 160) and depth.dtype == np.float32
    valid = depth > 0
    assert 0.6 < valid.mean() < 0.75  # ~68 % valid pixels
    assert depth[valid].min() >= 425.0 and depth[valid].max() <= 900.0
    assert np.isfinite(depth).all()
    # bottom-to-top storage: the first stored row is the bottom image row
    data = REAL_PFM.read_bytes()
    first_stored_row = np.frombuffer(data, dtype="<f4", count=160, offset=len(data) - 128 * 160 * 4)
    np.testing.assert_array_equal(depth[-1], first_stored_row)
