"""Source-view selection: nearest centres ('dist'), angle around the scene centre ('vector'),
rotation geodesic ('matrix'), target exclusion and capping."""

from __future__ import annotations

import numpy as np
import pytest

from multiview.data.view_selection import nearest_views, view_distances


def _rotation(axis, angle: float) -> np.ndarray:
    k = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def _cam_from_world(world_from_cam_R: np.ndarray, centre) -> np.ndarray:
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3], world_from_cam[:3, 3] = world_from_cam_R, centre
    return np.linalg.inv(world_from_cam)


def _looking_at(centre, target) -> np.ndarray:
    """OpenCV camera at `centre` looking at `target`, world z up."""
    forward = np.asarray(target, dtype=np.float64) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return _cam_from_world(np.stack([right, np.cross(forward, right), forward], -1), centre)


def test_dist_picks_nearest_centres(rng):
    centres = np.stack([np.arange(8.0), np.zeros(8), np.zeros(8)], -1)  # x = 0..7 on a line
    cams = np.stack([_cam_from_world(_rotation(rng.normal(size=3), rng.uniform(0, 3)), c) for c in centres])
    target = _cam_from_world(_rotation((0, 0, 1), 2.0), [3.2, 0.0, 0.0])  # rotation irrelevant for 'dist'
    assert nearest_views(target, cams, 4, "dist").tolist() == [3, 4, 2, 5]
    np.testing.assert_allclose(view_distances(target, cams, "dist"), np.abs(np.arange(8.0) - 3.2), atol=1e-12)


def test_dist_matches_brute_force_on_random_cameras(random_rigid):
    cams = random_rigid(20, scale=3.0)
    target = random_rigid(1, scale=3.0)[0]
    centres = np.linalg.inv(cams)[:, :3, 3]
    target_centre = np.linalg.inv(target)[:3, 3]
    expected = np.argsort(np.linalg.norm(centres - target_centre, axis=1))[:6]
    np.testing.assert_array_equal(nearest_views(target, cams, 6, "dist"), expected)


def _circle_cameras(center):
    """Cameras around `center` at known angles (degrees) and very different radii, all looking at it."""
    angles = np.array([170.0, 10.0, -25.0, 95.0, 40.0, -60.0, 250.0])
    radii = np.array([3.0, 12.0, 7.0, 2.0, 2.1, 1.5, 9.0])
    cams = []
    for a, r in zip(np.deg2rad(angles), radii):
        centre = center + r * np.array([np.cos(a), np.sin(a), 0.3])
        cams.append(_looking_at(centre, center))
    target = _looking_at(center + 2.0 * np.array([1.0, 0.0, 0.3]), center)  # at angle 0
    return np.stack(cams), target, angles


def test_vector_picks_by_angle_around_the_scene_centre():
    center = np.array([1.0, -2.0, 0.5])
    cams, target, angles = _circle_cameras(center)
    wrapped = np.abs((angles + 180) % 360 - 180)  # |angle to the target|: 170, 10, 25, 95, 40, 60, 110
    expected = np.argsort(wrapped)  # 1, 2, 4, 5, 3, 6, 0
    got = nearest_views(target, cams, 7, "vector", scene_center=center)
    np.testing.assert_array_equal(got, expected)
    # (equal elevation ratios: the ray angle grows with the azimuth difference); the nearest in angle
    # (radius 12) is not the nearest in distance
    assert nearest_views(target, cams, 1, "dist")[0] != got[0]
    # the scene centre matters: around the origin the ordering changes
    assert nearest_views(target, cams, 7, "vector").tolist() != got.tolist()


def test_vector_distance_is_the_angle_between_centre_rays():
    center = np.array([0.5, 0.5, 0.0])
    cams = np.stack([_looking_at(center + [2.0, 0, 0], center), _looking_at(center + [0, 5.0, 0], center),
                     _looking_at(center + [-1.0, 1.0, 0], center)])
    target = _looking_at(center + [3.0, 0, 0], center)
    np.testing.assert_allclose(view_distances(target, cams, "vector", scene_center=center),
                               [0.0, np.pi / 2, 3 * np.pi / 4], atol=1e-6)  # arccos near 1: ~sqrt(eps)


def test_matrix_picks_by_rotation_geodesic(rng):
    R_target = _rotation(rng.normal(size=3), 1.0)
    angles = np.array([0.9, 0.2, 1.5, 0.4, 2.5, 0.1])
    cams = np.stack([_cam_from_world(R_target @ _rotation(rng.normal(size=3), a), rng.normal(size=3) * 5)
                     for a in angles])
    target = _cam_from_world(R_target, rng.normal(size=3))
    np.testing.assert_allclose(view_distances(target, cams, "matrix"), angles, atol=1e-7)
    np.testing.assert_array_equal(nearest_views(target, cams, 3, "matrix"), [5, 1, 3])


@pytest.mark.parametrize("method", ["dist", "vector", "matrix"])
def test_target_excluded_and_num_select_capped(method):
    cams, _, _ = _circle_cameras(np.zeros(3))
    target_index = 4
    got = nearest_views(cams[target_index], cams, 3, method, exclude=target_index)
    assert target_index not in got and len(got) == 3
    # without exclusion the target itself (distance 0) comes first
    assert nearest_views(cams[target_index], cams, 3, method)[0] == target_index
    everything = nearest_views(cams[target_index], cams, 100, method, exclude=target_index)
    assert sorted(everything.tolist()) == [i for i in range(len(cams)) if i != target_index]
    assert len(nearest_views(cams[target_index], cams, 100, method)) == len(cams)
    assert len(nearest_views(cams[target_index], cams, 0, method)) == 0


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown view selection method 'angle'"):
        nearest_views(np.eye(4), np.eye(4)[None], 1, "angle")
