"""CO3D depth PNG codec: float16 bits in a 16-bit grayscale PNG."""

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from multiview.data.errors import DataFormatError
from multiview.io.co3d_depth import read_co3d_depth, write_co3d_depth


def test_round_trip_within_float16_precision(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.1, 40.0, (12, 9)).astype(np.float32)
    depth[3, 4] = 0.0
    path = tmp_path / "frame000001.jpg.geometric.png"
    write_co3d_depth(path, depth, scale_adjustment=2.5)
    decoded = read_co3d_depth(path)
    assert decoded.dtype == np.float32 and decoded.shape == (12, 9)
    # stored value is depth / scale (not multiplied back by the codec)
    np.testing.assert_allclose(decoded * 2.5, depth, rtol=2**-11, atol=0)
    assert decoded[3, 4] == 0.0


def test_known_bit_pattern_in_raw_png(tmp_path):
    path = tmp_path / "d.png"
    write_co3d_depth(path, np.array([[1.0, 2.0], [-2.0, 0.5]]), scale_adjustment=1.0)
    image = Image.open(path)
    assert image.mode == "I;16"
    raw = np.asarray(iio.imread(path))
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, [[0x3C00, 0x4000], [0xC000, 0x3800]])
    np.testing.assert_array_equal(read_co3d_depth(path), [[1.0, 2.0], [-2.0, 0.5]])


def test_scale_adjustment_divides_stored_value(tmp_path):
    path = tmp_path / "d.png"
    write_co3d_depth(path, np.full((2, 2), 3.0), scale_adjustment=3.0)
    assert (np.asarray(iio.imread(path)) == 0x3C00).all()


def test_non_finite_values_read_as_zero(tmp_path):
    path = tmp_path / "d.png"
    bits = np.array([[0x7E00, 0x7C00], [0xFC00, 0x3C00]], dtype=np.uint16)  # NaN, +inf, -inf, 1.0
    iio.imwrite(path, bits)
    np.testing.assert_array_equal(read_co3d_depth(path), [[0.0, 0.0], [0.0, 1.0]])
    write_co3d_depth(path, np.array([[np.nan, np.inf], [7.0, -np.inf]]))
    np.testing.assert_array_equal(read_co3d_depth(path), [[0.0, 0.0], [7.0, 0.0]])


def test_8bit_png_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "frame000003.jpg.geometric.png"
    iio.imwrite(path, np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(DataFormatError, match="frame000003.jpg.geometric.png.*16-bit"):
        read_co3d_depth(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataFormatError, match="missing.png.*missing"):
        read_co3d_depth(tmp_path / "missing.png")
    path = tmp_path / "half.png"
    write_co3d_depth(path, np.ones((32, 32)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="half.png"):
        read_co3d_depth(path)


def test_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_co3d_depth(tmp_path / "d.png", np.ones((2, 2, 1)))
    with pytest.raises(ValueError, match="scale_adjustment"):
        write_co3d_depth(tmp_path / "d.png", np.ones((2, 2)), scale_adjustment=0.0)
    with pytest.raises(ValueError, match="float16 range"):
        write_co3d_depth(tmp_path / "d.png", np.full((2, 2), 1e6))  # needs scale_adjustment > 15.3
    write_co3d_depth(tmp_path / "d.png", np.full((2, 2), 1e6), scale_adjustment=100.0)
    np.testing.assert_allclose(read_co3d_depth(tmp_path / "d.png") * 100.0, 1e6, rtol=2**-11)
