"""Camera rigs for the procedural scenes: intrinsics and `cam_from_world` paths around the origin.

All functions are pure numpy float64. Cameras are OpenCV (x right, y down, z forward), `cam_from_world`
is (4, 4) and maps world points to camera points; the world is z up and the object sits near the origin.
Distances are in world units: for a scene made with `make_scene(seed, scale=s)` multiply the defaults'
distances by `s` (the defaults of every rig but `arc_cameras` suit `scale=1`, objects within radius 0.8).
"""

from __future__ import annotations

import numpy as np

ARC_SCENE_SCALE = 0.22  # `make_scene(..., scale=)` that `arc_cameras`' default distance is made for
_GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _direction(azimuth_deg, elevation_deg) -> np.ndarray:
    """Unit vectors (..., 3) from azimuth (from +x towards +y) and elevation (above the xy plane), degrees."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def intrinsics(height: int, width: int, fov_x_deg: float = 50.0) -> np.ndarray:
    """(3, 3) K with square pixels, horizontal field of view `fov_x_deg`, centre ((W-1)/2, (H-1)/2).

    The image spans [-0.5, W-0.5] in u (pixel centres at integers), hence f = W / (2 tan(fov_x / 2)).
    """
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f"fov_x_deg must be in (0, 180), got {fov_x_deg}")
    f = width / (2.0 * np.tan(np.radians(fov_x_deg) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) `cam_from_world` of a camera at `eye` (3,) whose optical axis (+z) points at `target` (3,).

    The image x axis is horizontal (perpendicular to `up`) and the image y axis points down, i.e. `up`
    projects upwards in the image. Raises ValueError if the viewing direction is parallel to `up`.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    for name, a in (("eye", eye), ("target", target), ("up", up)):
        if a.shape != (3,):
            raise ValueError(f"look_at: {name} must have shape (3,), got {a.shape}")
    z = target - eye
    if np.linalg.norm(z) == 0.0:
        raise ValueError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9 * np.linalg.norm(up):
        raise ValueError(f"look_at: viewing direction {z} is parallel to up {up}")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    cam_from_world = np.eye(4)
    cam_from_world[:3, :3] = np.stack([x, y, z])
    cam_from_world[:3, 3] = -cam_from_world[:3, :3] @ eye
    return cam_from_world


def orbit_cameras(
    num_views: int,
    radius: float = 2.5,
    elevation_deg_range: tuple[float, float] = (15.0, 45.0),
    seed: int | np.random.Generator = 0,
    azimuth_jitter_deg: float = 0.0,
    target_jitter: float = 0.0,
) -> np.ndarray:
    """(V, 4, 4) object-centric 360° orbit (MVImgNet / Blender / CO3D-like) looking at the origin.

    Azimuths are evenly spaced from a random start (plus uniform jitter of +-`azimuth_jitter_deg`),
    elevations uniform in `elevation_deg_range`, all at distance `radius` from the origin; each camera
    looks at a point drawn uniformly in a cube of half-size `target_jitter` around the origin.
    """
    rng = _rng(seed)
    azimuth = rng.uniform(0.0, 360.0) + np.arange(num_views) * 360.0 / num_views
    azimuth = azimuth + rng.uniform(-azimuth_jitter_deg, azimuth_jitter_deg, num_views)
    elevation = rng.uniform(*elevation_deg_range, num_views)
    eyes = radius * _direction(azimuth, elevation)
    targets = rng.uniform(-target_jitter, target_jitter, (num_views, 3))
    return np.stack([look_at(e, t) for e, t in zip(eyes, targets)])


def hemisphere_cameras(
    num_views: int,
    radius: float = 2.5,
    elevation_deg_range: tuple[float, float] = (5.0, 80.0),
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """(V, 4, 4) cameras uniform (in area) on the upper-hemisphere band `elevation_deg_range`, at distance
    `radius`, looking at the origin (DeepVoxels / GSO-like)."""
    rng = _rng(seed)
    low, high = np.sin(np.radians(elevation_deg_range))
    elevation = np.degrees(np.arcsin(rng.uniform(low, high, num_views)))
    azimuth = rng.uniform(0.0, 360.0, num_views)
    return np.stack([look_at(e, np.zeros(3)) for e in radius * _direction(azimuth, elevation)])


def forward_facing_cameras(
    num_views: int,
    distance: float = 3.5,
    spread: float = 0.2,
    azimuth_deg: float = -90.0,
    elevation_deg: float = 15.0,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """(V, 4, 4) LLFF / RealEstate-like forward-facing views of the origin.

    Camera centres fill a disc of radius `spread * distance` (sunflower pattern, randomly rotated, with
    depth jitter of +-5 % of `distance`) in the plane facing the origin from direction
    (`azimuth_deg`, `elevation_deg`) at `distance`; every camera looks at the origin, so optical axes
    differ by at most atan(spread).
    """
    rng = _rng(seed)
    forward_cam = look_at(distance * _direction(azimuth_deg, elevation_deg), np.zeros(3))
    right, down, forward = forward_cam[:3, :3]
    index = np.arange(num_views)
    angle = rng.uniform(0.0, 2 * np.pi) + index * _GOLDEN_ANGLE
    offset = spread * distance * np.sqrt((index + 0.5) / num_views)
    along = distance * rng.uniform(-0.05, 0.05, num_views)
    eyes = (
        -distance * forward
        + (offset * np.cos(angle))[:, None] * right
        + (offset * np.sin(angle))[:, None] * down
        + along[:, None] * forward
    )
    return np.stack([look_at(e, np.zeros(3)) for e in eyes])


def arc_cameras(
    num_rows: int = 7,
    num_cols: int = 7,
    distance: float = 0.63,
    azimuth_range_deg: tuple[float, float] = (-125.0, -55.0),
    elevation_range_deg: tuple[float, float] = (35.0, 60.0),
) -> np.ndarray:
    """(num_rows * num_cols, 4, 4) DTU-like rig: a grid of views in front of the object, looking at it.

    Rows go from the highest to the lowest elevation, columns from the first to the last azimuth,
    all at `distance` from the origin. The defaults are made for `make_scene(seed, scale=ARC_SCENE_SCALE)`
    (object radius <= 0.176): everything hit (objects and ground) then has depth within about
    [0.45, 0.88] for any fov_x <= 50° (objects alone: [0.46, 0.79]), i.e. inside DTU's 425-900 mm once
    translations and depths are multiplied by 1000. DTU's own field of view is fov_x ~ 31°.
    """
    elevation, azimuth = np.meshgrid(np.linspace(*elevation_range_deg, num_rows)[::-1],
                                     np.linspace(*azimuth_range_deg, num_cols), indexing="ij")
    eyes = distance * _direction(azimuth.ravel(), elevation.ravel())
    return np.stack([look_at(e, np.zeros(3)) for e in eyes])
