"""Rigid transforms: inverses, relative transforms, point transforms and the rigidity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiview.geometry.transforms import (
    cam_from_world,
    invert_rigid,
    is_rigid,
    make_rigid,
    relative_transform,
    transform_points,
    world_from_cam,
)


def test_invert_rigid_numpy_matches_linalg_inv(random_rigid):
    T = random_rigid(16)
    T_before = T.copy()
    inv = invert_rigid(T)
    assert isinstance(inv, np.ndarray) and inv.dtype == np.float64 and inv.shape == (16, 4, 4)
    np.testing.assert_allclose(inv, np.linalg.inv(T), atol=1e-12)
    np.testing.assert_allclose(inv @ T, np.broadcast_to(np.eye(4), T.shape), atol=1e-12)
    np.testing.assert_array_equal(T, T_before)  # input untouched


def test_invert_rigid_torch_batched_matches_linalg_inv(random_rigid):
    T_np = random_rigid(12).reshape(3, 4, 4, 4)
    T = torch.from_numpy(T_np.copy())
    inv = invert_rigid(T)
    assert isinstance(inv, torch.Tensor) and inv.dtype == torch.float64 and inv.shape == (3, 4, 4, 4)
    torch.testing.assert_close(inv, torch.linalg.inv(T), atol=1e-12, rtol=0)
    torch.testing.assert_close(T, torch.from_numpy(T_np), atol=0, rtol=0)  # input untouched


def test_invert_rigid_torch_is_differentiable(random_rigid):
    T = torch.from_numpy(random_rigid(1)[0]).requires_grad_(True)
    invert_rigid(T)[:3, 3].sum().backward()
    assert T.grad is not None and torch.isfinite(T.grad).all() and T.grad.abs().sum() > 0


def test_world_from_cam_and_cam_from_world_are_inverses(random_rigid):
    T = random_rigid(5)
    np.testing.assert_allclose(world_from_cam(T), np.linalg.inv(T), atol=1e-12)
    np.testing.assert_allclose(cam_from_world(world_from_cam(T)), T, atol=1e-12)


def test_make_rigid_assembles_blocks(rng):
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    t = rng.normal(size=3)
    T = make_rigid(R, t)
    expected = np.eye(4)
    expected[:3, :3], expected[:3, 3] = R, t
    np.testing.assert_array_equal(T, expected)
    Tt = make_rigid(torch.from_numpy(R)[None], torch.from_numpy(t)[None])
    assert Tt.shape == (1, 4, 4)
    torch.testing.assert_close(Tt[0], torch.from_numpy(expected))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        make_rigid(np.eye(4), t)


def test_relative_transform_maps_source_camera_points_to_target(random_rigid, rng):
    target, source = random_rigid(4), random_rigid(4)
    rel = relative_transform(target, source)
    np.testing.assert_allclose(rel, target @ np.linalg.inv(source), atol=1e-12)
    # a world point seen in the source frame, carried by rel, equals the same point in the target frame
    X = rng.normal(size=(4, 7, 3))
    Xh = np.concatenate([X, np.ones((4, 7, 1))], -1)
    in_source = (Xh @ source.transpose(0, 2, 1))[..., :3]
    in_target = (Xh @ target.transpose(0, 2, 1))[..., :3]
    np.testing.assert_allclose(transform_points(rel, in_source), in_target, atol=1e-12)
    # torch gives the same
    rel_t = relative_transform(torch.from_numpy(target), torch.from_numpy(source))
    np.testing.assert_allclose(rel_t.numpy(), rel, atol=1e-12)


def test_transform_points_matches_homogeneous_matmul(random_rigid, rng):
    T = random_rigid(3)
    X = rng.normal(size=(3, 10, 3))
    Xh = np.concatenate([X, np.ones((3, 10, 1))], -1)
    expected = np.einsum("bij,bnj->bni", T, Xh)[..., :3]
    np.testing.assert_allclose(transform_points(T, X), expected, atol=1e-12)
    got_t = transform_points(torch.from_numpy(T), torch.from_numpy(X))
    np.testing.assert_allclose(got_t.numpy(), expected, atol=1e-12)
    # one transform applied to an unbatched point set
    np.testing.assert_allclose(transform_points(T[0], X[0]), expected[0], atol=1e-12)
    # a general (non-rigid) affine transform is applied as a matrix too, not assumed rigid
    A = np.eye(4)
    A[:3, :] = rng.normal(size=(3, 4))
    np.testing.assert_allclose(transform_points(A, X[0]), (Xh[0] @ A.T)[:, :3], atol=1e-12)


def test_transform_points_shape_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., N, 3\)"):
        transform_points(np.eye(4), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4\)"):
        transform_points(np.eye(3), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4\)"):
        invert_rigid(np.eye(3))


def test_is_rigid_accepts_rigid_and_detects_non_rigid(random_rigid):
    T = random_rigid(6)
    assert is_rigid(T) and is_rigid(torch.from_numpy(T)) and is_rigid(T[0])
    scaled = T.copy()
    scaled[2, :3, :3] *= 1.01
    assert not is_rigid(scaled)
    reflected = T.copy()
    reflected[1, :3, 0] *= -1  # orthonormal but det = -1
    assert not is_rigid(reflected)
    bad_last_row = T.copy()
    bad_last_row[0, 3, 0] = 0.1
    assert not is_rigid(bad_last_row)
    sheared = T.copy()
    sheared[4, 0, 1] += 1e-3
    assert not is_rigid(sheared)
    nan = T.copy()
    nan[3, 0, 3] = np.nan
    assert not is_rigid(nan)
