"""Every dataset convention -> OpenCV `cam_from_world` and back.

Each convention is checked against the formulas of formats.md (§0, §2.6, §3.2, §4.1, §4.2, §5) written
out here independently of the code (explicit matrices, column reorders, NDC projection), plus a
round trip on random cameras.
"""

from __future__ import annotations

import numpy as np
import pytest

from multiview.geometry.conventions import (
    cam_from_world_to_colmap,
    cam_from_world_to_llff,
    cam_from_world_to_opengl_c2w,
    co3d_to_opencv,
    colmap_to_cam_from_world,
    llff_to_cam_from_world,
    opencv_to_co3d,
    opencv_to_realestate,
    opencv_to_spaces,
    opengl_c2w_to_cam_from_world,
    realestate_to_opencv,
    spaces_to_opencv,
)

TOL = 1e-10


def _project(K: np.ndarray, cam_from_world: np.ndarray, X: np.ndarray):
    """Plain pinhole projection of (N, 3) world points: returns uv (N, 2), depth (N,)."""
    Xc = X @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
    uvw = Xc @ K.T
    return uvw[:, :2] / uvw[:, 2:], Xc[:, 2]


def _colmap_R(q) -> np.ndarray:
    """formats.md §3.2, for a unit Hamilton quaternion (w, x, y, z)."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _rodrigues(axis_angle) -> np.ndarray:
    """Rotation by angle |v| about v/|v| (right-hand rule): I + sin·[k]x + (1 − cos)·[k]x²."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(v)
    kx, ky, kz = v / angle
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _unit_quaternions(rng, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# --- OpenGL / Blender c2w --------------------------------------------------------------------------


def test_opengl_round_trip(random_rigid):
    T = random_rigid(8)
    np.testing.assert_allclose(opengl_c2w_to_cam_from_world(cam_from_world_to_opengl_c2w(T)), T, atol=TOL)
    c2w_gl = random_rigid(8)
    np.testing.assert_allclose(cam_from_world_to_opengl_c2w(opengl_c2w_to_cam_from_world(c2w_gl)), c2w_gl,
                               atol=TOL)


def test_opengl_matches_column_negation(random_rigid):
    """formats.md §4.2: OpenCV c2w = transform_matrix with columns 1 and 2 negated."""
    c2w_gl = random_rigid(6)
    c2w_cv = c2w_gl.copy()
    c2w_cv[:, :3, 1:3] *= -1
    np.testing.assert_allclose(opengl_c2w_to_cam_from_world(c2w_gl), np.linalg.inv(c2w_cv), atol=TOL)


def test_blender_known_answer():
    """A Blender camera at (0, 0, 4) with identity rotation looks down −z at the origin."""
    c2w_gl = np.eye(4)
    c2w_gl[2, 3] = 4.0
    T = opengl_c2w_to_cam_from_world(c2w_gl)
    H = W = 100
    focal = 0.5 * W / np.tan(0.5 * 0.6911112070083618)
    K = np.array([[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1]])
    uv, z = _project(K, T, np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0], [0, 0, 2.0]]))
    np.testing.assert_allclose(uv[0], [W / 2, H / 2], atol=TOL)
    np.testing.assert_allclose(z, [4.0, 4.0, 4.0, 2.0], atol=TOL)
    np.testing.assert_allclose(uv[1], [W / 2 + focal / 4, H / 2], atol=TOL)  # world +x: image right
    np.testing.assert_allclose(uv[2], [W / 2, H / 2 - focal / 4], atol=TOL)  # world +y (camera up): image up


# --- LLFF 3x5 + hwf --------------------------------------------------------------------------------


def test_llff_round_trip(random_rigid, rng):
    T = random_rigid(7)
    hwf = np.array([480.0, 640.0, 500.0])
    blocks = cam_from_world_to_llff(T, hwf)
    assert blocks.shape == (7, 3, 5)
    T_back, hwf_back = llff_to_cam_from_world(blocks)
    np.testing.assert_allclose(T_back, T, atol=TOL)
    np.testing.assert_allclose(hwf_back, np.broadcast_to(hwf, (7, 3)), atol=0)
    # and from random 3x5 blocks (rotation columns of any proper rotation)
    blocks = np.concatenate([random_rigid(5)[:, :3, :4], rng.uniform(100, 900, size=(5, 3, 1))], -1)
    np.testing.assert_allclose(cam_from_world_to_llff(*llff_to_cam_from_world(blocks)), blocks, atol=TOL)


def test_llff_matches_column_reorder(random_rigid):
    """formats.md §4.1: c2w_opencv[:, :3] = [c1, c0, −c2], c2w_opencv[:, 3] = t."""
    c2w = random_rigid(4)
    blocks = np.zeros((4, 3, 5))
    blocks[:, :, :4] = c2w[:, :3, :4]
    blocks[:, :, 4] = [60.0, 80.0, 70.0]
    c2w_cv = np.tile(np.eye(4), (4, 1, 1))
    c0, c1, c2 = blocks[:, :, 0], blocks[:, :, 1], blocks[:, :, 2]
    c2w_cv[:, :3, 0], c2w_cv[:, :3, 1], c2w_cv[:, :3, 2] = c1, c0, -c2
    c2w_cv[:, :3, 3] = blocks[:, :, 3]
    T, hwf = llff_to_cam_from_world(blocks)
    np.testing.assert_allclose(T, np.linalg.inv(c2w_cv), atol=TOL)
    np.testing.assert_array_equal(hwf, blocks[:, :, 4])


def test_llff_known_answer():
    """Camera at (0, −3, 0) looking along world +y with world z up: down = −z, right = +x, back = −y."""
    H, W, f = 60.0, 80.0, 90.0
    block = np.array([
        [0.0, 1.0, 0.0, 0.0, H],
        [0.0, 0.0, -1.0, -3.0, W],
        [-1.0, 0.0, 0.0, 0.0, f],
    ])  # columns: down, right, back, centre, hwf
    T, hwf = llff_to_cam_from_world(block)
    np.testing.assert_array_equal(hwf, [H, W, f])
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    uv, z = _project(K, T, np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 0, 1]]))
    np.testing.assert_allclose(z, [3.0, 3.0, 3.0], atol=TOL)
    np.testing.assert_allclose(uv, [[W / 2, H / 2], [W / 2 + f / 3, H / 2], [W / 2, H / 2 - f / 3]], atol=TOL)


def test_llff_shape_error():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 5\)"):
        llff_to_cam_from_world(np.zeros((3, 4)))


# --- COLMAP quaternion -----------------------------------------------------------------------------


def test_colmap_matches_explicit_rotation_formula(rng):
    q = _unit_quaternions(rng, 10)
    q[:5] *= np.sign(q[:5, :1])  # qw >= 0
    q[5:] *= -np.sign(q[5:, :1])  # qw < 0: the same rotations as -q
    t = rng.normal(size=(10, 3))
    T = colmap_to_cam_from_world(q, t)
    for i in range(10):
        np.testing.assert_allclose(T[i, :3, :3], _colmap_R(q[i]), atol=TOL)
        np.testing.assert_allclose(T[i, :3, 3], t[i], atol=0)
        np.testing.assert_array_equal(T[i, 3], [0, 0, 0, 1])
    # the camera centre is C = −R(q)ᵀ t (§3.2)
    C = -np.einsum("nji,nj->ni", T[:, :3, :3], t)
    np.testing.assert_allclose(np.linalg.inv(T)[:, :3, 3], C, atol=TOL)


def test_colmap_normalises_quaternion_and_accepts_negative_qw(rng):
    q = _unit_quaternions(rng, 1)[0]
    q = q * np.sign(q[0])
    t = rng.normal(size=3)
    T = colmap_to_cam_from_world(q, t)
    np.testing.assert_allclose(colmap_to_cam_from_world(3.7 * q, t), T, atol=TOL)
    np.testing.assert_allclose(colmap_to_cam_from_world(-1.0001 * q, t), T, atol=TOL)


def test_colmap_known_answer():
    """q = (cos 45°, 0, 0, sin 45°) is +90° about z: R = [[0, −1, 0], [1, 0, 0], [0, 0, 1]]."""
    s = np.sqrt(0.5)
    T = colmap_to_cam_from_world([s, 0.0, 0.0, s], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(T[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=TOL)
    np.testing.assert_allclose(T[:3, 3], [1.0, 2.0, 3.0], atol=0)


def test_colmap_round_trip(random_rigid, rng):
    T = random_rigid(20)
    q, t = cam_from_world_to_colmap(T)
    assert q.shape == (20, 4) and t.shape == (20, 3)
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=TOL)
    np.testing.assert_allclose(colmap_to_cam_from_world(q, t), T, atol=TOL)
    # COLMAP -> ours -> COLMAP: unit quaternion with qw >= 0, whatever sign/scale came in
    q_in = _unit_quaternions(rng, 20) * rng.uniform(0.5, 2.0, size=(20, 1))
    q_in[::2] *= -np.sign(q_in[::2, :1])
    t_in = rng.normal(size=(20, 3))
    q_out, t_out = cam_from_world_to_colmap(colmap_to_cam_from_world(q_in, t_in))
    expected = q_in / np.linalg.norm(q_in, axis=1, keepdims=True) * np.sign(q_in[:, :1])
    np.testing.assert_allclose(q_out, expected, atol=TOL)
    np.testing.assert_allclose(t_out, t_in, atol=0)


# --- CO3D / PyTorch3D NDC --------------------------------------------------------------------------

SIZES = {"landscape": (90, 160), "portrait": (160, 90), "square": (100, 100)}


def _ndc_pixels_per_unit(height: int, width: int, intrinsics_format: str) -> tuple[float, float]:
    """formats.md §2.6: (a) isotropic: s = min(H, W)/2 on both axes; (b) legacy: W/2 and H/2."""
    if intrinsics_format == "ndc_isotropic":
        return min(height, width) / 2, min(height, width) / 2
    return width / 2, height / 2


def _random_co3d_camera(rng):
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    R *= np.linalg.det(R)
    T = rng.normal(size=3) + [0.0, 0.0, 6.0]
    focal = rng.uniform(1.0, 3.0, size=2)
    principal = rng.uniform(-0.2, 0.2, size=2)
    return R, T, focal, principal


@pytest.mark.parametrize("intrinsics_format", ["ndc_isotropic", "ndc_norm_image_bounds"])
@pytest.mark.parametrize("shape", list(SIZES))
def test_co3d_projection_matches_pytorch3d_ndc_formula(rng, intrinsics_format, shape):
    """PyTorch3D: Xc = X @ R + T, x_ndc = fx·Xc.x/Xc.z + px; NDC +x left/+y up -> u = W/2 − x_ndc·s_x."""
    H, W = SIZES[shape]
    R, T, focal, principal = _random_co3d_camera(rng)
    Xc = np.concatenate([rng.uniform(-1, 1, size=(50, 2)), rng.uniform(2, 8, size=(50, 1))], -1)
    X = (Xc - T) @ R.T  # world points with those PyTorch3D camera coordinates
    np.testing.assert_allclose(X @ R + T, Xc, atol=TOL)
    x_ndc = focal[0] * Xc[:, 0] / Xc[:, 2] + principal[0]
    y_ndc = focal[1] * Xc[:, 1] / Xc[:, 2] + principal[1]
    s_x, s_y = _ndc_pixels_per_unit(H, W, intrinsics_format)
    expected_uv = np.stack([W / 2 - x_ndc * s_x, H / 2 - y_ndc * s_y], -1)

    K, cam_from_world = co3d_to_opencv(R, T, focal, principal, H, W, intrinsics_format)
    uv, depth = _project(K, cam_from_world, X)
    np.testing.assert_allclose(uv, expected_uv, atol=1e-9)
    np.testing.assert_allclose(depth, Xc[:, 2], atol=TOL)  # PyTorch3D z is forward, as OpenCV's
    assert np.linalg.det(cam_from_world[:3, :3]) == pytest.approx(1.0)


@pytest.mark.parametrize("intrinsics_format", ["ndc_isotropic", "ndc_norm_image_bounds"])
@pytest.mark.parametrize("shape", list(SIZES))
def test_co3d_round_trip(random_rigid, rng, intrinsics_format, shape):
    H, W = SIZES[shape]
    for T_cv in random_rigid(3):
        K = np.array([[rng.uniform(50, 200), 0, rng.uniform(0.3, 0.7) * W],
                      [0, rng.uniform(50, 200), rng.uniform(0.3, 0.7) * H], [0, 0, 1]])
        co3d = opencv_to_co3d(K, T_cv, H, W, intrinsics_format)
        K_back, T_back = co3d_to_opencv(*co3d, H, W, intrinsics_format)
        np.testing.assert_allclose(K_back, K, atol=1e-9)
        np.testing.assert_allclose(T_back, T_cv, atol=TOL)
        R, T, focal, principal = _random_co3d_camera(rng)
        back = opencv_to_co3d(*co3d_to_opencv(R, T, focal, principal, H, W, intrinsics_format), H, W,
                              intrinsics_format)
        for got, want in zip(back, (R, T, focal, principal)):
            np.testing.assert_allclose(got, want, atol=TOL)


@pytest.mark.parametrize("shape", list(SIZES))
def test_co3d_formats_related_by_implicitron_rescaling(rng, shape):
    """§2.6: legacy -> isotropic multiplies focal and principal point by [W, H] / min(W, H)."""
    H, W = SIZES[shape]
    R, T, focal, principal = _random_co3d_camera(rng)
    factor = np.array([W, H]) / min(W, H)
    K_legacy, T_legacy = co3d_to_opencv(R, T, focal, principal, H, W, "ndc_norm_image_bounds")
    K_iso, T_iso = co3d_to_opencv(R, T, focal * factor, principal * factor, H, W, "ndc_isotropic")
    np.testing.assert_allclose(K_iso, K_legacy, atol=1e-9)
    np.testing.assert_allclose(T_iso, T_legacy, atol=TOL)


def test_co3d_known_answer_and_default_format():
    """R = I, T = (0, 0, 5): PyTorch3D x is left, so world +x appears left of the principal point."""
    H, W = 100, 200
    K, T = co3d_to_opencv(np.eye(3), [0.0, 0.0, 5.0], [2.0, 2.0], [0.1, -0.2], H, W)  # legacy default
    np.testing.assert_allclose(K, [[200.0, 0, (1 - 0.1) * 100], [0, 100.0, (1 + 0.2) * 50], [0, 0, 1]])
    np.testing.assert_allclose(T, [[-1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 1.0, 5.0], [0, 0, 0, 1.0]])
    uv, z = _project(K, T, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    assert uv[0, 0] < K[0, 2] and uv[1, 1] < K[1, 2]  # +x left, +y up
    np.testing.assert_allclose(z, [5.0, 5.0])
    with pytest.raises(ValueError, match="ndc_isotropic"):
        co3d_to_opencv(np.eye(3), [0, 0, 5.0], [2.0, 2.0], [0, 0], H, W, "screen")


# --- RealEstate10K ---------------------------------------------------------------------------------


def test_realestate_known_answer_and_round_trip(random_rigid, rng):
    H, W = 90, 160
    w2c = random_rigid(1)[0][:3]
    K, T = realestate_to_opencv([0.5, 0.8, 0.45, 0.55], w2c.reshape(-1), H, W)
    np.testing.assert_allclose(K, [[80.0, 0, 72.0], [0, 72.0, 49.5], [0, 0, 1]], atol=TOL)
    np.testing.assert_array_equal(T[:3], w2c)  # world -> camera, OpenCV: used as is
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    normalized, w2c_back = opencv_to_realestate(K, T, H, W)
    np.testing.assert_allclose(normalized, [0.5, 0.8, 0.45, 0.55], atol=TOL)
    np.testing.assert_array_equal(w2c_back, w2c)
    for T_cv in random_rigid(3):
        fx, fy, cx = rng.uniform(50, 200), rng.uniform(50, 200), rng.uniform(60, 100)
        K = np.array([[fx, 0, cx], [0, fy, 45.0], [0, 0, 1]])
        K_back, T_back = realestate_to_opencv(*opencv_to_realestate(K, T_cv, H, W), H, W)
        np.testing.assert_allclose(K_back, K, atol=TOL)
        np.testing.assert_allclose(T_back, T_cv, atol=TOL)


# --- Spaces ----------------------------------------------------------------------------------------


def _spaces_camera(rng) -> dict:
    axis = rng.normal(size=3)
    return {
        "relative_path": "cam_00/image_000.JPG", "width": 80, "height": 60,
        "focal_length": rng.uniform(50, 100), "pixel_aspect_ratio": rng.uniform(0.9, 1.1),
        "principal_point": list(rng.uniform(20, 40, size=2)), "position": list(rng.normal(size=3)),
        "orientation": list(axis / np.linalg.norm(axis) * rng.uniform(0.2, 3.0)),
    }


def test_spaces_matches_ibrnet_formula(rng):
    """IBRNet: world_from_cam rotation = rotation(axis, −angle), translation = position; fy = f·aspect."""
    for _ in range(5):
        cam = _spaces_camera(rng)
        world_from_cam = np.eye(4)
        world_from_cam[:3, :3] = _rodrigues(-np.asarray(cam["orientation"]))
        world_from_cam[:3, 3] = cam["position"]
        K, T = spaces_to_opencv(cam)
        np.testing.assert_allclose(T, np.linalg.inv(world_from_cam), atol=TOL)
        f, (cx, cy) = cam["focal_length"], cam["principal_point"]
        fy = f * cam["pixel_aspect_ratio"]
        np.testing.assert_allclose(K, [[f, 0, cx], [0, fy, cy], [0, 0, 1]], atol=TOL)


def test_spaces_known_answer():
    """orientation (0, 0, π/2): world_from_cam = Rz(−90°) = [[0, 1, 0], [−1, 0, 0], [0, 0, 1]]."""
    cam = {"focal_length": 100.0, "principal_point": [40.0, 30.0], "position": [1.0, 2.0, 3.0],
           "orientation": [0.0, 0.0, np.pi / 2]}  # pixel_aspect_ratio absent: 1
    K, T = spaces_to_opencv(cam)
    R_wc = np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(T[:3, :3], R_wc.T, atol=TOL)
    np.testing.assert_allclose(T[:3, 3], -R_wc.T @ [1.0, 2.0, 3.0], atol=TOL)
    np.testing.assert_allclose(K, [[100.0, 0, 40.0], [0, 100.0, 30.0], [0, 0, 1]])
    # the camera centre is `position`, a point one unit ahead projects to the principal point
    ahead = np.array([1.0, 2.0, 3.0]) + R_wc[:, 2]
    uv, z = _project(K, T, ahead[None])
    np.testing.assert_allclose(uv[0], [40.0, 30.0], atol=TOL)
    np.testing.assert_allclose(z, [1.0], atol=TOL)


def test_spaces_round_trip(random_rigid, rng):
    for T_cv in random_rigid(6):
        K = np.array([[80.0, 0, 41.0], [0, 84.0, 29.5], [0, 0, 1]])
        K_back, T_back = spaces_to_opencv(opencv_to_spaces(K, T_cv))
        np.testing.assert_allclose(K_back, K, atol=TOL)
        np.testing.assert_allclose(T_back, T_cv, atol=TOL)
    for _ in range(6):
        cam = _spaces_camera(rng)
        back = opencv_to_spaces(*spaces_to_opencv(cam))
        for key in ("focal_length", "pixel_aspect_ratio", "principal_point", "position", "orientation"):
            np.testing.assert_allclose(back[key], cam[key], atol=TOL, err_msg=key)
