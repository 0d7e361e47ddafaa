"""Camera paths for rendered videos, built from a scene's cameras (OpenCV convention, numpy float64).

Every function takes the scene's `cams_from_world` (V, 4, 4) (world -> OpenCV camera: x right, y down,
z forward) and returns the path's `cams_from_world` (N, 4, 4). Three kinds:

* `orbit_path`: a circle around the scene centre at the cameras' mean distance and height, looking
  at the centre (object-centric captures: MVImgNet, CO3D, Blender, DeepVoxels, ...).
* `spiral_path`: LLFF's `render_path_spiral` for forward-facing captures (LLFF, ibrnet_collected,
  RealEstate, Spaces): the eye circles around the mean camera, looking at a focus point in front of it.
* `interpolate_path`: through the given cameras in order (slerp of rotations, Catmull-Rom of centres).

"Up" is the mean of the cameras' −y axes (the image's up direction in world coordinates), so paths
work in any world frame (COLMAP reconstructions have an arbitrary one).
"""

from __future__ import annotations

import numpy as np

from multiview.geometry.transforms import invert_rigid

PATH_KINDS = ("orbit", "spiral", "interpolate")


def _check_cams(cams_from_world: np.ndarray, minimum: int = 1) -> np.ndarray:
    cams = np.asarray(cams_from_world, dtype=np.float64)
    if cams.ndim != 3 or cams.shape[1:] != (4, 4) or len(cams) < minimum:
        raise ValueError(f"cams_from_world must be (V, 4, 4) with V >= {minimum}, got {cams.shape}")
    return cams


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("cannot normalise a zero vector (degenerate camera set)")
    return v / norm


def look_at(eye, target, up) -> np.ndarray:
    """(4, 4) `cam_from_world` of an OpenCV camera at `eye` (3,) looking at `target` (3,), `up` (3,) up in
    the image (the camera's −y axis lies in the plane of `up` and the viewing direction)."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = _unit(target - eye)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError(f"look_at: viewing direction {z} is parallel to up {up}")
    x = _unit(x)
    y = np.cross(z, x)
    cam_from_world = np.eye(4)
    cam_from_world[:3, :3] = np.stack([x, y, z])
    cam_from_world[:3, 3] = -cam_from_world[:3, :3] @ eye
    return cam_from_world


def camera_centers(cams_from_world: np.ndarray) -> np.ndarray:
    """(V, 3) camera centres in world coordinates."""
    return invert_rigid(_check_cams(cams_from_world))[:, :3, 3]


def mean_up(cams_from_world: np.ndarray) -> np.ndarray:
    """(3,) unit world direction that points up in the images on average (mean of the cameras' −y axes)."""
    return _unit(-_check_cams(cams_from_world)[:, 1, :3].mean(axis=0))


def axes_focus_point(cams_from_world: np.ndarray) -> np.ndarray:
    """(3,) least-squares point nearest to every camera's optical axis (where the cameras look).

    Solves Σ (I − z zᵀ)(p − c) = 0 over cameras with centres c and axes z; raises ValueError when the
    axes are (nearly) parallel, as in forward-facing captures.
    """
    cams = _check_cams(cams_from_world, 2)
    centers, axes = camera_centers(cams), cams[:, 2, :3]
    projectors = np.eye(3) - axes[:, :, None] * axes[:, None, :]  # (V, 3, 3)
    A = projectors.sum(axis=0)
    b = (projectors @ centers[:, :, None]).sum(axis=0)[:, 0]
    if np.linalg.cond(A) > 1e6:
        raise ValueError("the optical axes are nearly parallel: no point they all look at (use a spiral path)")
    return np.linalg.solve(A, b)


def orbit_path(cams_from_world: np.ndarray, num_frames: int, center=None, num_turns: float = 1.0,
               elevation_offset: float = 0.0) -> np.ndarray:
    """(N, 4, 4) circular orbit around `center` (default: the point the cameras look at).

    The circle lies in the plane perpendicular to `mean_up`, at the cameras' median distance from the
    axis through `center` and their median height above it (+ `elevation_offset` world units); it starts
    at the azimuth of the first camera and turns in the direction the cameras are ordered in (their
    median step), `num_turns` times over the N frames (the last frame is not a repeat of the first).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    cams = _check_cams(cams_from_world, 2)
    center = axes_focus_point(cams) if center is None else np.asarray(center, dtype=np.float64)
    up = mean_up(cams)
    offsets = camera_centers(cams) - center
    heights = offsets @ up
    horizontal = offsets - heights[:, None] * up
    radius = float(np.median(np.linalg.norm(horizontal, axis=-1)))
    if radius < 1e-9:
        raise ValueError("the cameras sit on the orbit axis: cannot fit an orbit")
    e1 = _unit(horizontal[0])
    e2 = np.cross(up, e1)
    angles = np.arctan2(horizontal @ e2, horizontal @ e1)
    steps = np.angle(np.exp(1j * np.diff(angles))) if len(angles) > 1 else np.ones(1)
    direction = 1.0 if np.median(steps) >= 0 else -1.0
    height = float(np.median(heights)) + elevation_offset
    theta = direction * 2 * np.pi * num_turns * np.arange(num_frames) / num_frames
    eyes = center + radius * (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2) + height * up
    return np.stack([look_at(eye, center, up) for eye in eyes])


def spiral_path(cams_from_world: np.ndarray, near: float, far: float, num_frames: int,
                num_rotations: float = 2.0, z_rate: float = 0.5, radius_percentile: float = 90.0) -> np.ndarray:
    """(N, 4, 4) LLFF's spiral (`render_path_spiral`) around the mean camera, in OpenCV axes.

    As LLFF: the focus depth is 1 / (0.25 / (0.9·near) + 0.75 / (5·far)) in front of the mean camera,
    the spiral radii per camera axis are the `radius_percentile` of the cameras' absolute offsets from
    the mean centre, and the eye moves by radii · (cos θ, sin θ, sin(z_rate·θ)) in the mean camera's
    (right, down, forward) axes for θ over `num_rotations` turns, always looking at the focus point.
    """
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    cams = _check_cams(cams_from_world)
    centers = camera_centers(cams)
    mean_center = centers.mean(axis=0)
    forward = _unit(cams[:, 2, :3].mean(axis=0))
    up = mean_up(cams)
    right = _unit(np.cross(forward, up))
    down = np.cross(forward, right)
    axes = np.stack([right, down, forward])  # rows: the mean camera's axes in world coordinates
    radii = np.percentile(np.abs((centers - mean_center) @ axes.T), radius_percentile, axis=0)
    focus_depth = 1.0 / (0.25 / (0.9 * near) + 0.75 / (5.0 * far))
    focus = mean_center + focus_depth * forward
    theta = 2 * np.pi * num_rotations * np.arange(num_frames) / num_frames
    offsets = np.stack([np.cos(theta), np.sin(theta), np.sin(z_rate * theta)], axis=-1) * radii
    eyes = mean_center + offsets @ axes
    return np.stack([look_at(eye, focus, -down) for eye in eyes])


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    w = np.sqrt(np.maximum(0.0, 1 + R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2])) / 2
    x = np.sqrt(np.maximum(0.0, 1 + R[..., 0, 0] - R[..., 1, 1] - R[..., 2, 2])) / 2
    y = np.sqrt(np.maximum(0.0, 1 - R[..., 0, 0] + R[..., 1, 1] - R[..., 2, 2])) / 2
    z = np.sqrt(np.maximum(0.0, 1 - R[..., 0, 0] - R[..., 1, 1] + R[..., 2, 2])) / 2
    x = np.copysign(x, R[..., 2, 1] - R[..., 1, 2])
    y = np.copysign(y, R[..., 0, 2] - R[..., 2, 0])
    z = np.copysign(z, R[..., 1, 0] - R[..., 0, 1])
    q = np.stack([w, x, y, z], axis=-1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z), normalised first -> (..., 3, 3) rotations."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64) / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (the shorter arc)."""
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    angle = np.arccos(dot)
    return (np.sin((1 - t) * angle) * q0 + np.sin(t * angle) * q1) / np.sin(angle)


def interpolate_path(cams_from_world: np.ndarray, num_frames: int, closed: bool = True) -> np.ndarray:
    """(N, 4, 4) smooth path through the cameras in the given order, evenly in keyframe parameter.

    Camera centres follow a uniform Catmull-Rom spline through the given centres, rotations are slerped
    between consecutive cameras; `closed` returns from the last camera to the first. Frame 0 equals
    the first camera.
    """
    cams = _check_cams(cams_from_world, 2)
    world_from_cam = invert_rigid(cams)
    centers, rotations = world_from_cam[:, :3, 3], world_from_cam[:, :3, :3]
    quats = rotation_to_quaternion(rotations)
    count = len(cams)
    num_segments = count if closed else count - 1
    params = np.arange(num_frames) * num_segments / (num_frames if closed else max(num_frames - 1, 1))

    def point(i):
        return centers[i % count] if closed else centers[min(max(i, 0), count - 1)]

    frames = []
    for s in params:
        i = min(int(np.floor(s)), num_segments - 1)
        t = s - i
        p0, p1, p2, p3 = point(i - 1), point(i), point(i + 1), point(i + 2)
        center = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                        + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        pose = np.eye(4)
        pose[:3, :3] = quaternion_to_rotation(slerp(quats[i], quats[(i + 1) % count], t))
        pose[:3, 3] = center
        frames.append(invert_rigid(pose))
    return np.stack(frames)


def make_path(kind: str, cams_from_world: np.ndarray, num_frames: int, near: float, far: float,
              center=None) -> np.ndarray:
    """Dispatch on `kind` in PATH_KINDS (`near`/`far` are used by the spiral, `center` by the orbit)."""
    if kind == "orbit":
        return orbit_path(cams_from_world, num_frames, center)
    if kind == "spiral":
        return spiral_path(cams_from_world, near, far, num_frames)
    if kind == "interpolate":
        return interpolate_path(cams_from_world, num_frames)
    raise ValueError(f"unknown camera path {kind!r}; expected one of {PATH_KINDS}")
