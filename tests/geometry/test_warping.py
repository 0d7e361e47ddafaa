"""MVSNet plane-sweep warping against an independent homography and a hand-written bilinear sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiview.geometry.warping import plane_sweep_pixels, plane_sweep_warp

F64 = torch.float64


def _K(f: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def _batch(*arrays):
    return [torch.from_numpy(np.stack(a)) for a in arrays]


def _rotation(axis, angle: float) -> np.ndarray:
    k = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def _bilinear_zeros(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(C, H, W) image sampled at float pixel coordinates (pixel centres at integers), zeros outside."""
    C, H, W = image.shape
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    out = np.zeros((C, *u.shape))
    for du in (0, 1):
        for dv in (0, 1):
            ui, vi = u0 + du, v0 + dv
            w = (1 - np.abs(u - ui)) * (1 - np.abs(v - vi))
            ok = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
            out += np.where(ok, image[:, np.clip(vi, 0, H - 1), np.clip(ui, 0, W - 1)] * w, 0.0)
    return out


def _smooth_texture(rng, C: int, H: int, W: int) -> np.ndarray:
    v, u = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    tex = np.zeros((C, H, W))
    for c in range(C):
        for _ in range(6):
            freq = rng.uniform(0.15, 0.6, size=2) * rng.choice([-1, 1], size=2)
            tex[c] += rng.uniform(0.3, 1.0) * np.sin(freq[0] * u + freq[1] * v + rng.uniform(0, 2 * np.pi))
    return tex


def _shifted_pair(f: float = 20.0, H: int = 12, W: int = 16):
    """Reference at the origin; source centre at x = +1 in the reference frame (so t = (−1, 0, 0))."""
    K = _K(f, (W - 1) / 2, (H - 1) / 2)
    src_from_ref = np.eye(4)
    src_from_ref[0, 3] = -1.0
    return K, src_from_ref


def test_known_answer_unit_baseline_at_depth_f_shifts_one_pixel_left(rng):
    """u_src = u_ref + fx·tx/d = u_ref − 1 at d = f: the source sits to the right, content moves left."""
    f, H, W = 20.0, 12, 16
    K, src_from_ref = _shifted_pair(f, H, W)
    K_ref, K_src, T = _batch([K], [K], [src_from_ref])
    depth = torch.full((1, 1, H, W), f, dtype=F64)
    uv, z = plane_sweep_pixels(depth, K_ref, K_src, T)
    v, u = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    torch.testing.assert_close(uv[0, 0, ..., 0], u - 1, atol=1e-12, rtol=0)
    torch.testing.assert_close(uv[0, 0, ..., 1], v, atol=1e-12, rtol=0)
    torch.testing.assert_close(z, depth, atol=1e-12, rtol=0)

    src = torch.from_numpy(rng.normal(size=(1, 3, H, W)))
    warped, valid = plane_sweep_warp(src, depth, K_ref, K_src, T)
    assert warped.shape == (1, 3, 1, H, W) and valid.shape == (1, 1, H, W) and valid.dtype == torch.bool
    torch.testing.assert_close(warped[0, :, 0, :, 1:], src[0, :, :, :-1], atol=1e-12, rtol=0)
    assert not valid[0, 0, :, 0].any() and valid[0, 0, :, 1:].all()
    # at depth 2f the shift is half a pixel: the average of two neighbours
    warped_half, _ = plane_sweep_warp(src, 2 * depth, K_ref, K_src, T)
    torch.testing.assert_close(warped_half[0, :, 0, :, 1:], (src[0, :, :, :-1] + src[0, :, :, 1:]) / 2,
                               atol=1e-12, rtol=0)


def _plane_scene(rng):
    """Two reference/source pairs with different intrinsics, rotations, baselines and image sizes."""
    H, W, Hs, Ws = 12, 16, 18, 22
    Ks_ref = [_K(18.0, 7.3, 5.6), _K(22.0, 8.1, 6.2)]
    Ks_src = [_K(30.0, 10.4, 8.7), _K(26.0, 11.2, 8.1)]
    poses = []
    motions = (((0.2, 1.0, 0.1), 0.08, (-0.6, 0.15, 0.1)), ((1.0, -0.3, 0.4), -0.06, (0.4, -0.5, -0.2)))
    for axis, angle, t in motions:
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = _rotation(axis, angle), t
        poses.append(T)
    src = np.stack([_smooth_texture(rng, 3, Hs, Ws) for _ in range(2)])
    return (H, W), Ks_ref, Ks_src, poses, src


def _expected_by_homography(K_ref, K_src, src_from_ref, src_image, depth, H, W):
    """H(d) = K_src (R + t nᵀ/d) K_ref⁻¹, n = (0, 0, 1); returns (expected (C, H, W), valid (H, W))."""
    R, t = src_from_ref[:3, :3], src_from_ref[:3, 3]
    homography = K_src @ (R + np.outer(t, [0.0, 0.0, 1.0]) / depth) @ np.linalg.inv(K_ref)
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    p = np.stack([u, v, np.ones_like(u)], -1) @ homography.T
    us, vs = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    Hs, Ws = src_image.shape[-2:]
    valid = (p[..., 2] > 0) & (us >= 0) & (us <= Ws - 1) & (vs >= 0) & (vs <= Hs - 1)
    return _bilinear_zeros(src_image, us, vs), valid


def test_fronto_parallel_plane_matches_independent_homography(rng):
    (H, W), Ks_ref, Ks_src, poses, src = _plane_scene(rng)
    d_true = 2.5
    hypotheses = torch.tensor([[0.7 * d_true, d_true, 1.4 * d_true]] * 2, dtype=F64)
    depth = hypotheses[:, :, None, None].expand(2, 3, H, W)
    K_ref, K_src, T = _batch(Ks_ref, Ks_src, poses)
    warped, valid = plane_sweep_warp(torch.from_numpy(src), depth, K_ref, K_src, T)
    assert warped.shape == (2, 3, 3, H, W) and valid.shape == (2, 3, H, W)
    for b in range(2):
        expected, expected_valid = _expected_by_homography(Ks_ref[b], Ks_src[b], poses[b], src[b], d_true,
                                                           H, W)
        assert 0.2 < expected_valid.mean() < 0.98  # the test covers both valid and invalid pixels
        np.testing.assert_array_equal(valid[b, 1].numpy(), expected_valid)
        np.testing.assert_allclose(warped[b, :, 1].numpy()[:, expected_valid], expected[:, expected_valid],
                                   atol=1e-10)
        for wrong in (0, 2):  # a wrong hypothesis warps clearly differently
            both = expected_valid & valid[b, wrong].numpy()
            error = np.abs(warped[b, :, wrong].numpy()[:, both] - expected[:, both]).mean()
            assert error > 0.1, error


def test_per_pixel_depth_equals_plane_at_the_same_depth(rng):
    (H, W), Ks_ref, Ks_src, poses, src = _plane_scene(rng)
    K_ref, K_src, T = _batch(Ks_ref, Ks_src, poses)
    src_t = torch.from_numpy(src)
    planes = torch.tensor([1.5, 2.0, 3.0, 4.5], dtype=F64)
    plane_depths = planes[None, :, None, None].expand(2, 4, H, W)
    sweep, sweep_valid = plane_sweep_warp(src_t, plane_depths, K_ref, K_src, T)
    # constant per-pixel depth map (D = 1) == the plane at that depth
    const, const_valid = plane_sweep_warp(src_t, torch.full((2, 1, H, W), 3.0, dtype=F64), K_ref, K_src, T)
    torch.testing.assert_close(const[:, :, 0], sweep[:, :, 2], atol=1e-12, rtol=0)
    assert torch.equal(const_valid[:, 0], sweep_valid[:, 2])
    # a depth map mixing the planes picks, pixel by pixel, the matching plane's warp
    index = torch.from_numpy(rng.integers(0, 4, size=(2, H, W)))
    depth_map = planes[index][:, None]
    warped, valid = plane_sweep_warp(src_t, depth_map, K_ref, K_src, T)
    picked = torch.gather(sweep, 2, index[:, None, None].expand(2, 3, 1, H, W))
    torch.testing.assert_close(warped, picked, atol=1e-12, rtol=0)
    assert torch.equal(valid[:, 0], torch.gather(sweep_valid, 1, index[:, None])[:, 0])


def test_points_behind_the_source_camera_are_invalid():
    K, src_from_ref = _shifted_pair()
    src_from_ref[:3, :3] = np.diag([-1.0, 1.0, -1.0])  # source looks backwards
    src_from_ref[:3, 3] = 0.0
    K_ref, K_src, T = _batch([K], [K], [src_from_ref])
    depth = torch.full((1, 1, 12, 16), 3.0, dtype=F64)
    _, valid = plane_sweep_warp(torch.ones(1, 1, 12, 16, dtype=F64), depth, K_ref, K_src, T)
    assert not valid.any()  # the mirrored pixels would fall inside the image, but z < 0


def test_plane_sweep_warp_gradcheck(rng):
    H, W, Hs, Ws = 3, 4, 5, 6
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = _rotation((0.3, 1.0, 0.2), 0.1), (-0.3, 0.1, 0.05)
    K_ref, K_src, pose = _batch([_K(4.0, 1.6, 1.1)], [_K(5.0, 2.4, 2.1)], [T])
    src = torch.from_numpy(rng.normal(size=(1, 2, Hs, Ws))).requires_grad_(True)
    depth = torch.from_numpy(rng.uniform(2.0, 4.0, size=(1, 2, H, W))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, d: plane_sweep_warp(s, d, K_ref, K_src, pose)[0], (src, depth))


_K2 = torch.eye(3, dtype=F64)[None].expand(2, 3, 3)
_T2 = torch.eye(4, dtype=F64)[None].expand(2, 4, 4)
_DEPTH = torch.ones(2, 3, 4, 5, dtype=F64)
_SRC = torch.ones(2, 1, 6, 7, dtype=F64)


def test_plane_sweep_pixels_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        plane_sweep_pixels(_DEPTH[0], _K2, _K2, _T2)
    with pytest.raises(ValueError, match=r"K_ref must have shape \(2, 3, 3\)"):
        plane_sweep_pixels(_DEPTH, _K2[0], _K2, _T2)
    with pytest.raises(ValueError, match=r"K_src must have shape \(2, 3, 3\)"):
        plane_sweep_pixels(_DEPTH, _K2, _K2[:1], _T2)
    with pytest.raises(ValueError, match=r"src_from_ref must have shape \(2, 4, 4\)"):
        plane_sweep_pixels(_DEPTH, _K2, _K2, _T2[:, :3])


@pytest.mark.parametrize(
    "args, message",
    [
        ((_SRC, _DEPTH, _K2[0], _K2, _T2), r"K_ref must have shape \(2, 3, 3\)"),
        ((_SRC, _DEPTH[0], _K2, _K2, _T2), r"depth_hypotheses must be \(B, D, H, W\)"),
        ((_SRC[0], _DEPTH, _K2, _K2, _T2), r"src_features must be \(B, C, Hs, Ws\)"),
        ((_SRC[:1], _DEPTH, _K2, _K2, _T2), r"src_features must be \(B, C, Hs, Ws\)"),
    ],
    ids=["K_ref_unbatched", "depth_3d", "src_3d", "src_batch_mismatch"],
)
def test_plane_sweep_warp_shape_errors(args, message):
    """Wrong shapes give a ValueError naming the expected shape (not an unpacking or grid_sample error)."""
    with pytest.raises(ValueError, match=message):
        plane_sweep_warp(*args)
