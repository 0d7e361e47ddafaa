"""Projection, unprojection, rays and grid_sample coordinates (integer pixel centres, align_corners=True)."""

from __future__ import annotations

import pytest
import torch

from multiview.geometry.projection import (
    backproject_depth,
    grid_to_pixel,
    inside_image,
    pixel_grid,
    pixel_to_grid,
    pixels_to_camera_points,
    project,
    project_camera_points,
    rays_through_pixels,
    sample_at_pixels,
    unproject,
)

F64 = torch.float64


def _K(fx=80.0, fy=90.0, cx=31.3, cy=22.7, skew=0.0, batch=()):
    K = torch.tensor([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=F64)
    return K.expand(*batch, 3, 3).clone()


def test_project_known_answers(random_rigid):
    """Optical axis -> (cx, cy); X = z/fx -> one pixel right; Y = z/fy -> one pixel down."""
    K = _K()
    world_from_cam = torch.from_numpy(random_rigid(1)[0])
    cam_from_world = torch.linalg.inv(world_from_cam)
    z = 3.5
    points_cam = torch.tensor([[0.0, 0.0, z], [z / 80.0, 0.0, z], [0.0, z / 90.0, z], [-2 * z / 80.0, 0, z]],
                              dtype=F64)
    points_world = points_cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]
    uv, depth = project(points_world, K, cam_from_world)
    expected = torch.tensor([[31.3, 22.7], [32.3, 22.7], [31.3, 23.7], [29.3, 22.7]], dtype=F64)
    torch.testing.assert_close(uv, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(depth, torch.full((4,), z, dtype=F64), atol=1e-10, rtol=0)


def test_project_point_behind_camera_has_negative_depth_and_z0_is_finite():
    uv, depth = project_camera_points(torch.tensor([[0.5, 0.2, -2.0], [1.0, 1.0, 0.0]], dtype=F64), _K())
    assert depth[0] == -2.0 and depth[1] == 0.0
    assert torch.isfinite(uv).all()


def test_project_unproject_round_trip_batched(random_rigid, rng):
    B, N = 3, 50
    world_from_cam = torch.from_numpy(random_rigid(B))
    K = _K(skew=0.7, batch=(B,))
    K[1, 0, 0] = 120.0
    uv = torch.from_numpy(rng.uniform(-10, 70, size=(B, N, 2)))
    depth = torch.from_numpy(rng.uniform(0.5, 20, size=(B, N)))
    points = unproject(uv, depth, K, world_from_cam)
    uv_back, depth_back = project(points, K, torch.linalg.inv(world_from_cam))
    torch.testing.assert_close(uv_back, uv, atol=1e-9, rtol=0)
    torch.testing.assert_close(depth_back, depth, atol=1e-10, rtol=0)
    # and camera points -> pixels -> camera points
    cam = torch.from_numpy(rng.normal(size=(B, N, 3))) + torch.tensor([0, 0, 5.0], dtype=F64)
    uv_c, z_c = project_camera_points(cam, K)
    torch.testing.assert_close(pixels_to_camera_points(uv_c, z_c, K), cam, atol=1e-10, rtol=0)


def test_unproject_matches_inverse_K():
    K = _K(skew=1.3)
    uv = torch.tensor([[3.0, 4.0], [50.5, 10.25]], dtype=F64)
    depth = torch.tensor([2.0, 7.0], dtype=F64)
    uv1 = torch.cat([uv, torch.ones(2, 1, dtype=F64)], -1)
    expected = (uv1 @ torch.linalg.inv(K).T) * depth[:, None]
    torch.testing.assert_close(pixels_to_camera_points(uv, depth, K), expected, atol=1e-12, rtol=0)


def test_pixel_grid_layout():
    g = pixel_grid(3, 4, dtype=F64)
    assert g.shape == (3, 4, 2)
    assert g[2, 1].tolist() == [1.0, 2.0]  # (u, v) = (column, row)


def test_pixel_to_grid_endpoints_and_inverse(rng):
    H, W = 7, 11
    corners = torch.tensor([[0.0, 0.0], [W - 1.0, H - 1.0], [(W - 1) / 2, (H - 1) / 2]], dtype=F64)
    torch.testing.assert_close(pixel_to_grid(corners, H, W),
                               torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]], dtype=F64))
    uv = torch.from_numpy(rng.uniform(-5, 20, size=(4, 5, 2)))
    torch.testing.assert_close(grid_to_pixel(pixel_to_grid(uv, H, W), H, W), uv, atol=1e-12, rtol=0)
    grid = torch.from_numpy(rng.uniform(-1.5, 1.5, size=(6, 2)))
    torch.testing.assert_close(pixel_to_grid(grid_to_pixel(grid, H, W), H, W), grid, atol=1e-12, rtol=0)


def test_sample_at_pixels_integer_and_half_integer(rng):
    B, C, H, W = 2, 3, 5, 7
    image = torch.from_numpy(rng.normal(size=(B, C, H, W)))
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    uv = torch.stack([u, v], -1).to(F64).expand(B, H, W, 2)
    torch.testing.assert_close(sample_at_pixels(image, uv), image, atol=1e-12, rtol=0)
    # half-integers: the average of the 2 (along one axis) or 4 neighbouring pixel values
    uv_h = torch.tensor([[2.5, 1.0], [0.0, 3.5], [5.5, 2.5]], dtype=F64).expand(B, 3, 2)
    got = sample_at_pixels(image, uv_h)
    assert got.shape == (B, C, 3)
    torch.testing.assert_close(got[..., 0], (image[..., 1, 2] + image[..., 1, 3]) / 2, atol=1e-12, rtol=0)
    torch.testing.assert_close(got[..., 1], (image[..., 3, 0] + image[..., 4, 0]) / 2, atol=1e-12, rtol=0)
    four = (image[..., 2, 5] + image[..., 2, 6] + image[..., 3, 5] + image[..., 3, 6]) / 4
    torch.testing.assert_close(got[..., 2], four, atol=1e-12, rtol=0)
    # outside the image: zeros (default) or the border value
    out = torch.tensor([[-3.0, 2.0]], dtype=F64).expand(B, 1, 2)
    assert (sample_at_pixels(image, out) == 0).all()
    torch.testing.assert_close(sample_at_pixels(image, out, padding_mode="border")[..., 0], image[..., 2, 0])


def test_sample_at_pixels_shape_error():
    with pytest.raises(ValueError, match=r"\(2, \.\.\., 2\)"):
        sample_at_pixels(torch.zeros(2, 1, 4, 4), torch.zeros(3, 5, 2))


def test_inside_image_uses_the_pixel_centre_hull():
    uv = torch.tensor([[0.0, 0.0], [9.0, 4.0], [-0.01, 2.0], [9.01, 2.0], [3.0, 4.01], [3.0, -0.5]])
    assert inside_image(uv, 5, 10).tolist() == [True, True, False, False, False, False]


def test_rays_through_pixels_reproject_to_their_pixel_at_depth_t(random_rigid, rng):
    B, N = 2, 20
    world_from_cam = torch.from_numpy(random_rigid(B))
    K = _K(skew=0.4, batch=(B,))
    uv = torch.from_numpy(rng.uniform(0, 60, size=(B, N, 2)))
    origins, directions = rays_through_pixels(uv, K, world_from_cam)
    assert origins.shape == directions.shape == (B, N, 3)
    torch.testing.assert_close(origins, world_from_cam[:, None, :3, 3].expand(B, N, 3))
    t = torch.from_numpy(rng.uniform(0.5, 10, size=(B, N, 1)))
    uv_back, depth = project(origins + t * directions, K, torch.linalg.inv(world_from_cam))
    torch.testing.assert_close(uv_back, uv, atol=1e-9, rtol=0)
    torch.testing.assert_close(depth, t[..., 0], atol=1e-10, rtol=0)


def test_backproject_depth_matches_unproject(random_rigid, rng):
    B, H, W = 2, 4, 6
    world_from_cam = torch.from_numpy(random_rigid(B))
    K = _K(batch=(B,))
    depth = torch.from_numpy(rng.uniform(1, 5, size=(B, H, W)))
    points = backproject_depth(depth, K, world_from_cam)
    assert points.shape == (B, H, W, 3)
    # pixel (row 2, column 5) of view 1, lifted by hand
    expected = unproject(torch.tensor([[[5.0, 2.0]]], dtype=F64), depth[1:2, 2, 5][None], K[1:2],
                         world_from_cam[1:2])
    torch.testing.assert_close(points[1, 2, 5], expected[0, 0], atol=1e-12, rtol=0)
    uv, z = project(points.reshape(B, -1, 3), K, torch.linalg.inv(world_from_cam))
    torch.testing.assert_close(uv, pixel_grid(H, W, dtype=F64).reshape(1, -1, 2).expand(B, -1, -1), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(z, depth.reshape(B, -1), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        backproject_depth(depth[0], K[0], world_from_cam[0])


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        project(torch.zeros(4, 3), torch.eye(4), torch.eye(4))
    with pytest.raises(ValueError, match=r"\(\.\.\., N, 2\) and depth \(\.\.\., N\)"):
        pixels_to_camera_points(torch.zeros(5, 2), torch.zeros(4), torch.eye(3))


def test_project_gradcheck(random_rigid, rng):
    cam_from_world = torch.from_numpy(random_rigid(2))
    points_cam = torch.from_numpy(rng.uniform(-1, 1, size=(2, 4, 3)) + [0, 0, 4.0])  # in front of the camera
    points = (points_cam - cam_from_world[:, None, :3, 3]) @ cam_from_world[:, :3, :3]
    points.requires_grad_(True)
    cam_from_world.requires_grad_(True)
    K = _K(skew=0.3, batch=(2,)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, k, t: project(p, k, t), (points, K, cam_from_world))


def test_sample_at_pixels_gradcheck_wrt_uv(rng):
    image = torch.from_numpy(rng.normal(size=(1, 2, 5, 6)))
    # away from integer coordinates, where bilinear interpolation has a kink
    uv = torch.from_numpy(rng.integers(0, 4, size=(1, 7, 2)) + rng.uniform(0.2, 0.8, size=(1, 7, 2)))
    assert torch.autograd.gradcheck(lambda x: sample_at_pixels(image, x), (uv.requires_grad_(True),))
