"""Procedural renderer and camera rigs: determinism, texture richness, exact geometry, camera convention."""

import numpy as np
import pytest

from multiview.synthetic.cameras import (
    ARC_SCENE_SCALE,
    arc_cameras,
    forward_facing_cameras,
    hemisphere_cameras,
    intrinsics,
    look_at,
    orbit_cameras,
)
from multiview.synthetic.render import Box, Cylinder, SceneSpec, Sphere, make_scene, render

H, W = 128, 160


def _project(K, cam_from_world, points):
    """(N, 3) world points -> (N, 2) pixels (u, v) and (N,) camera z."""
    cam = points @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:], cam[:, 2]


def _back_project(K, cam_from_world, depth):
    """(H, W) depth -> (H * W, 3) world points of each pixel, pixel centres at integer (u, v)."""
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]]
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    cam = (pixels @ np.linalg.inv(K).T) * depth.reshape(-1, 1)
    world_from_cam = np.linalg.inv(cam_from_world)
    return cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]


def _gradient_energy(rgb):
    gray = rgb.mean(axis=-1)
    return np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()


def _pool(rgb, k):
    h, w, _ = rgb.shape
    return rgb.reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))


# ---------------------------------------------------------------------------------------------- scenes


def test_same_seed_same_images_different_seed_different_images():
    K, cam = intrinsics(H, W, 50.0), orbit_cameras(1, seed=0)[0]
    first = render(make_scene(7), K, cam, H, W)
    again = render(make_scene(7), K, cam, H, W)
    other = render(make_scene(8), K, cam, H, W)
    for name in ("rgb", "depth", "mask", "alpha"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert np.abs(first.rgb - other.rgb).mean() > 0.05
    assert (first.mask != other.mask).mean() > 0.02


def test_scene_has_several_objects_of_several_kinds():
    scenes = [make_scene(seed) for seed in range(20)]
    assert all(2 <= len(scene.objects) <= 5 for scene in scenes)
    kinds = {type(shape) for scene in scenes for shape in scene.objects}
    assert kinds == {Sphere, Box, Cylinder}
    for scene in scenes:  # group within radius 0.8, every object resting on the ground
        assert max(np.linalg.norm(s.center) + s.bounding_radius() for s in scene.objects) <= 0.8 + 1e-9
        bottoms = [s.center[2] - s.extent_z() for s in scene.objects]
        np.testing.assert_allclose(bottoms, scene.ground.height, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_images_are_textured_at_several_scales(seed):
    view = render(make_scene(seed), intrinsics(H, W, 50.0), orbit_cameras(1, seed=seed)[0], H, W)
    assert view.rgb.dtype == np.float32 and view.rgb.shape == (H, W, 3)
    assert 0.0 <= view.rgb.min() and view.rgb.max() <= 1.0
    assert view.rgb.std() > 0.08
    assert view.mask.mean() > 0.05
    assert view.rgb[view.mask].std(axis=0).mean() > 0.06  # objects are textured, not flat shaded
    assert view.rgb[view.alpha == 0].std(axis=0).mean() > 0.01  # the environment is not flat either
    assert _gradient_energy(view.rgb) > 0.012  # fine detail
    assert _gradient_energy(_pool(view.rgb, 4)) > 0.03  # and coarse structure
    assert _gradient_energy(_pool(view.rgb, 8)) > 0.04


def test_mask_alpha_depth_and_transparent_background():
    scene, K, cam = make_scene(4), intrinsics(H, W, 50.0), orbit_cameras(1, seed=4)[0]
    view = render(scene, K, cam, H, W, background="transparent")
    alpha = view.alpha > 0
    assert view.mask.dtype == bool and set(np.unique(view.alpha)) == {0.0, 1.0}
    assert np.all(alpha[view.mask])  # objects are in alpha ...
    assert (alpha & ~view.mask).mean() > 0.1  # ... and so is the ground, which is not in the mask
    assert not alpha.all()
    assert np.all(view.rgb[~alpha] == 0) and np.all(view.depth[~alpha] == 0) and np.all(view.depth[alpha] > 0)
    with_env = render(scene, K, cam, H, W)
    np.testing.assert_array_equal(with_env.rgb[alpha], view.rgb[alpha])
    assert with_env.rgb[~alpha].mean() > 0.1
    bare = render(make_scene(4, with_ground=False, with_background=False), K, cam, H, W)
    np.testing.assert_array_equal(bare.alpha > 0, bare.mask)
    assert np.all(bare.rgb[~bare.mask] == 0)


def test_scale_enlarges_the_world_and_its_depths():
    K, cam = intrinsics(H, W, 50.0), orbit_cameras(1, seed=2)[0]
    view = render(make_scene(2), K, cam, H, W)
    cam_big = cam.copy()
    cam_big[:3, 3] *= 1000.0
    big = render(make_scene(2, scale=1000.0), K, cam_big, H, W)
    np.testing.assert_allclose(big.rgb, view.rgb, atol=1e-5)
    np.testing.assert_array_equal(big.mask, view.mask)
    np.testing.assert_allclose(big.depth, 1000.0 * view.depth, rtol=1e-5)


def test_render_rejects_bad_shapes():
    with pytest.raises(ValueError, match="cam_from_world"):
        render(make_scene(0), np.eye(3), np.eye(3), H, W)
    with pytest.raises(ValueError, match="background"):
        render(make_scene(0), np.eye(3), np.eye(4), H, W, background="white")


# ---------------------------------------------------------------------------------------------- geometry


def test_single_sphere_known_answer():
    radius, distance, f = 0.5, 3.0, 100.0
    height, width = 129, 161  # odd: the principal point is a pixel centre
    K = np.array([[f, 0.0, 80.0], [0.0, f, 64.0], [0.0, 0.0, 1.0]])
    cam_from_world = np.eye(4)
    cam_from_world[2, 3] = distance  # camera at world (0, 0, -distance) looking along +z at the origin
    view = render(SceneSpec(objects=[Sphere(radius=radius)]), K, cam_from_world, height, width)

    assert abs(view.depth[64, 80] - (distance - radius)) < 1e-5
    disc_radius = f * radius / np.sqrt(distance**2 - radius**2)
    assert abs(view.mask.sum() / (np.pi * disc_radius**2) - 1.0) < 0.02
    rows, cols = np.nonzero(view.mask)
    assert abs(cols.mean() - 80.0) < 1e-6 and abs(rows.mean() - 64.0) < 1e-6  # centred on the principal point
    points = _back_project(K, cam_from_world, view.depth)[view.mask.ravel()]
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), radius, atol=1e-5)
    assert np.all(view.depth[~view.mask] == 0) and np.all(view.alpha == view.mask)


def test_box_and_cylinder_depths_lie_on_their_surfaces():
    box = Box(half_extents=[0.3, 0.2, 0.4], center=[0.1, 0.0, 0.2],
              rotation=look_at([0, 0, 0], [1, 2, 3])[:3, :3])
    cylinder = Cylinder(radius=0.25, half_height=0.3, center=[-0.2, 0.1, 0.0],
                        rotation=look_at([0, 0, 0], [-1, 1, 2])[:3, :3])
    K, cam = intrinsics(H, W, 40.0), look_at([2.0, -2.5, 1.5], [0.0, 0.0, 0.0])
    for shape in (box, cylinder):
        view = render(SceneSpec(objects=[shape]), K, cam, H, W)
        assert view.mask.sum() > 500
        local = (_back_project(K, cam, view.depth)[view.mask.ravel()] - shape.center) @ shape.rotation
        if shape is box:  # on the surface: inside the box, touching one face
            excess = np.abs(local) - shape.half_extents
            np.testing.assert_allclose(excess.max(axis=1), 0.0, atol=1e-5)
        else:
            excess = np.stack([np.hypot(local[:, 0], local[:, 1]) - shape.radius,
                               np.abs(local[:, 2]) - shape.half_height], axis=1)
            np.testing.assert_allclose(excess.max(axis=1), 0.0, atol=1e-5)


def _reprojection(K, views, cams, i, j):
    """Back-project view i's surface pixels into view j; (visible fraction, median |rgb_i - rgb_j|)."""
    hit = views[i].depth.ravel() > 0
    points = _back_project(K, cams[i], views[i].depth)[hit]
    uv, z = _project(K, cams[j], points)
    u, v = np.round(uv).astype(int).T
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0)
    u, v, z, colours = u[inside], v[inside], z[inside], views[i].rgb.reshape(-1, 3)[hit][inside]
    visible = np.abs(views[j].depth[v, u] - z) < 0.01 * z
    diff = np.abs(colours[visible] - views[j].rgb[v[visible], u[visible]])
    return visible.mean(), np.median(diff)


def test_multi_view_consistency():
    scene, K = make_scene(3), intrinsics(H, W, 50.0)
    eyes = [2.5 * np.array([0.85 * np.cos(a), 0.85 * np.sin(a), 0.53]) for a in (0.3, 0.75)]  # 26° apart
    cams = [look_at(eye, np.zeros(3)) for eye in eyes]
    views = [render(scene, K, cam, H, W) for cam in cams]
    for i, j in ((0, 1), (1, 0)):
        visible, colour_error = _reprojection(K, views, cams, i, j)
        assert visible > 0.8
        assert colour_error < 0.01
    # control: the same check assuming the OpenGL camera convention (y up, z backwards) fails
    opengl_from_opencv = np.diag([1.0, -1.0, -1.0, 1.0])
    visible, colour_error = _reprojection(K, views, [opengl_from_opencv @ cam for cam in cams], 0, 1)
    assert visible < 0.7 and colour_error > 0.05


# ---------------------------------------------------------------------------------------------- cameras


@pytest.mark.parametrize("eye, target", [([3.0, -1.0, 2.0], [0.1, 0.2, -0.1]),
                                         ([-0.5, 4.0, -1.0], [0.0, 0.0, 0.5])])
def test_look_at(eye, target):
    cam_from_world = look_at(eye, target)
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert abs(np.linalg.det(R) - 1.0) < 1e-12
    np.testing.assert_allclose(-R.T @ t, eye, atol=1e-12)
    np.testing.assert_array_equal(cam_from_world[3], [0, 0, 0, 1])
    K = intrinsics(H, W, 50.0)
    uv, z = _project(K, cam_from_world, np.array([target, np.add(target, [0.0, 0.0, 0.1])]))
    np.testing.assert_allclose(uv[0], [(W - 1) / 2, (H - 1) / 2], atol=1e-9)
    assert z[0] > 0
    assert uv[1, 1] < uv[0, 1]  # world up is image up (v decreases)
    assert abs(R[0, 2]) < 1e-12  # image x axis is horizontal
    with pytest.raises(ValueError, match="parallel"):
        look_at([0.0, 0.0, 2.0], [0.0, 0.0, 0.0])


def test_intrinsics_centre_and_field_of_view():
    K = intrinsics(H, W, 60.0)
    assert (K[0, 2], K[1, 2]) == ((W - 1) / 2, (H - 1) / 2) and K[0, 0] == K[1, 1]
    left_edge = np.linalg.inv(K) @ [-0.5, K[1, 2], 1.0]  # the image's left border
    np.testing.assert_allclose(np.degrees(np.arctan(-left_edge[0])), 30.0)


def _assert_look_at_origin(cams):
    K = intrinsics(H, W, 50.0)
    for cam in cams:
        uv, z = _project(K, cam, np.zeros((1, 3)))
        np.testing.assert_allclose(uv[0], [(W - 1) / 2, (H - 1) / 2], atol=1e-9)
        assert z[0] > 0


def _centres(cams):
    return np.stack([-cam[:3, :3].T @ cam[:3, 3] for cam in cams])


def test_orbit_and_hemisphere_rigs():
    cams = orbit_cameras(12, radius=2.0, elevation_deg_range=(15.0, 45.0), seed=1)
    assert cams.shape == (12, 4, 4)
    _assert_look_at_origin(cams)
    centres = _centres(cams)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.0)
    elevation = np.degrees(np.arcsin(centres[:, 2] / 2.0))
    assert np.all((elevation >= 15.0) & (elevation <= 45.0)) and elevation.std() > 3.0
    azimuth = np.sort(np.degrees(np.arctan2(centres[:, 1], centres[:, 0])))
    np.testing.assert_allclose(np.diff(azimuth), 30.0, atol=1e-9)  # all around, evenly
    np.testing.assert_array_equal(cams, orbit_cameras(12, radius=2.0, seed=1))

    cams = hemisphere_cameras(20, radius=3.0, seed=2)
    _assert_look_at_origin(cams)
    assert np.all(_centres(cams)[:, 2] > 0)


def test_forward_facing_rig():
    cams = forward_facing_cameras(20, distance=3.5, spread=0.2, seed=0)
    _assert_look_at_origin(cams)
    axes = cams[:, 2, :3]  # optical axes in world
    mean_axis = axes.mean(axis=0) / np.linalg.norm(axes.mean(axis=0))
    assert np.degrees(np.arccos(np.clip(axes @ mean_axis, -1.0, 1.0))).max() < 12.0  # atan(0.2) = 11.3°
    distance = np.linalg.norm(_centres(cams), axis=1)
    assert np.all((distance > 3.3) & (distance < 3.8))
    offsets = _centres(cams) - _centres(cams).mean(axis=0)
    assert 0.3 < np.linalg.norm(offsets, axis=1).max() < 0.8  # a spread of ~0.2 x distance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arc_rig_depths_fit_dtu_range(seed):
    cams = arc_cameras()
    assert cams.shape == (49, 4, 4)
    _assert_look_at_origin(cams)
    scene = make_scene(seed, scale=ARC_SCENE_SCALE)
    for cam in cams[::8]:
        view = render(scene, intrinsics(H, W, 50.0), cam, H, W)
        depth = view.depth[view.alpha > 0]
        assert view.mask.any() and 0.425 < depth.min() and depth.max() < 0.9
