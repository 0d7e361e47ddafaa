"""Intrinsics under resizing and cropping: known answers and agreement with the resampled image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiview.geometry.intrinsics import (
    crop_image_and_K,
    crop_intrinsics,
    make_K,
    resize_image_and_K,
    resize_intrinsics,
    scale_intrinsics,
)


def test_make_K_layout():
    K = make_K(100.0, 110.0, 31.5, 23.25)
    np.testing.assert_array_equal(K, [[100.0, 0, 31.5], [0, 110.0, 23.25], [0, 0, 1]])
    assert K.dtype == np.float64


def test_scale_intrinsics_known_answer():
    K = np.array([[100.0, 2.0, 40.0], [0.0, 120.0, 30.0], [0.0, 0.0, 1.0]])
    out = scale_intrinsics(K, 0.5, 0.25)
    expected = np.array([
        [50.0, 1.0, (40.0 + 0.5) * 0.5 - 0.5],
        [0.0, 30.0, (30.0 + 0.5) * 0.25 - 0.5],
        [0.0, 0.0, 1.0],
    ])
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_array_equal(K[0], [100.0, 2.0, 40.0])  # input untouched
    # torch and batched
    out_t = scale_intrinsics(torch.from_numpy(np.stack([K, K])), 0.5, 0.25)
    np.testing.assert_allclose(out_t.numpy(), np.stack([expected, expected]), atol=1e-12)


def test_scale_intrinsics_maps_pixel_edges_to_pixel_edges():
    """The image edge u=-0.5 stays at -0.5 and u=W-0.5 goes to W'-0.5 (the scaled K agrees)."""
    W, W_new = 64, 40
    K = make_K(50.0, 50.0, 20.0, 10.0)
    K2 = scale_intrinsics(K, W_new / W, 1.0)
    for u_edge, u_edge_new in ((-0.5, -0.5), (W - 0.5, W_new - 0.5)):
        x = (u_edge - K[0, 2]) / K[0, 0]  # normalised camera coordinate of that edge
        assert K2[0, 0] * x + K2[0, 2] == pytest.approx(u_edge_new, abs=1e-12)


def test_resize_intrinsics_known_answer():
    K = make_K(200.0, 180.0, 63.5, 47.5)  # centre of a 128x96 (W x H) image
    out = resize_intrinsics(K, (96, 128), (48, 32))
    # sx = 32/128 = 0.25, sy = 48/96 = 0.5; the image centre stays the image centre
    np.testing.assert_allclose(out, make_K(50.0, 90.0, 15.5, 23.5), atol=1e-12)


def test_crop_intrinsics_known_answer():
    K = np.array([[100.0, 1.5, 40.0], [0.0, 120.0, 30.0], [0.0, 0.0, 1.0]])
    out = crop_intrinsics(K, top=7, left=11)
    np.testing.assert_allclose(out, [[100.0, 1.5, 29.0], [0.0, 120.0, 23.0], [0, 0, 1]], atol=1e-12)
    out_t = crop_intrinsics(torch.from_numpy(K), top=7, left=11)
    np.testing.assert_allclose(out_t.numpy(), out, atol=1e-12)


def _blob(height: int, width: int, u0: float, v0: float, sigma: float) -> torch.Tensor:
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    return torch.exp(-((u - u0) ** 2 + (v - v0) ** 2) / (2 * sigma**2))


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    v, u = torch.meshgrid(*(torch.arange(n, dtype=image.dtype) for n in image.shape), indexing="ij")
    return float((image * u).sum() / image.sum()), float((image * v).sum() / image.sum())


@pytest.mark.parametrize(
    "new_hw",
    [(30, 40), (45, 48), (120, 160), (90, 100), (61, 123)],
    ids=["shrink_half", "shrink_aniso", "grow_double", "grow_aniso", "shrink_h_grow_w"],
)
def test_resize_image_and_K_agree_with_the_resampled_image(new_hw):
    """A smooth blob at a known subpixel location lands where the resized K puts it (< 0.05 px)."""
    H, W = 60, 80
    u0, v0 = 37.3, 26.8
    image = _blob(H, W, u0, v0, sigma=4.0)[None, None].expand(2, 3, H, W)  # (B, C, H, W)
    K = make_K(70.0, 70.0, 39.5, 29.5)
    resized, K_new = resize_image_and_K(image, K, new_hw)
    assert resized.shape == (2, 3, *new_hw)
    # the 3D ray of the blob centre, re-projected with the new K
    x, y = (u0 - K[0, 2]) / K[0, 0], (v0 - K[1, 2]) / K[1, 1]
    u_pred, v_pred = K_new[0, 0] * x + K_new[0, 2], K_new[1, 1] * y + K_new[1, 2]
    u_img, v_img = _centroid(resized[1, 2])
    assert abs(u_img - u_pred) < 0.05 and abs(v_img - v_pred) < 0.05, ((u_img, v_img), (u_pred, v_pred))
    # the naive u·s mapping would be off by a clearly measurable amount (the test can tell them apart)
    s_x = new_hw[1] / W
    assert abs(u0 * s_x - u_pred) > 0.1 or s_x == 1


def test_resize_image_and_K_keeps_leading_dims_and_torch_K():
    image = torch.rand(2, 3, 1, 20, 30)
    K = torch.from_numpy(make_K(30.0, 30.0, 14.5, 9.5))
    resized, K_new = resize_image_and_K(image, K, (10, 15))
    assert resized.shape == (2, 3, 1, 10, 15)
    assert isinstance(K_new, torch.Tensor)
    torch.testing.assert_close(K_new, torch.from_numpy(make_K(15.0, 15.0, 7.0, 4.5)))
    resized3, _ = resize_image_and_K(torch.rand(3, 20, 30), K, (40, 60))
    assert resized3.shape == (3, 40, 60)


def test_crop_image_and_K_known_answer():
    image = torch.arange(2 * 3 * 10 * 12, dtype=torch.float64).reshape(2, 3, 10, 12)
    K = make_K(50.0, 50.0, 5.5, 4.5)
    cropped, K_new = crop_image_and_K(image, K, top=2, left=3, height=5, width=6)
    assert cropped.shape == (2, 3, 5, 6)
    torch.testing.assert_close(cropped, image[..., 2:7, 3:9])
    np.testing.assert_allclose(K_new, make_K(50.0, 50.0, 2.5, 2.5))
    # the principal point still sees the same image content: pixel (cx', cy') of the crop = (cx, cy) before
    assert cropped[0, 0, 2, 2] == image[0, 0, 4, 5]


def test_resize_image_and_K_shape_error():
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        resize_image_and_K(torch.rand(20, 30), make_K(1, 1, 0, 0), (10, 15))


@pytest.mark.parametrize("top, left, height, width",
                         [(-1, 0, 5, 5), (0, -2, 5, 5), (6, 0, 5, 5), (0, 8, 5, 5)])
def test_crop_image_and_K_rejects_crops_outside_the_image(top, left, height, width):
    with pytest.raises(ValueError, match="does not fit in a 10x12 image"):
        crop_image_and_K(torch.rand(3, 10, 12), make_K(1, 1, 0, 0), top, left, height, width)


def test_intrinsics_shape_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        scale_intrinsics(np.eye(4), 0.5, 0.5)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        crop_intrinsics(np.eye(4), 1, 1)
