"""Seeded procedural scenes (textured primitives on a ground disc inside an environment sphere) and an
exact analytic ray caster giving colour, depth, object mask and alpha.

Frames (DESIGN.md §3): world z up, object near the origin; cameras OpenCV (x right, y down, z forward)
given as (4, 4) `cam_from_world`; `K` (3, 3) in pixels with pixel centres at integer coordinates, so
pixel (u, v) looks along inv(K) @ [u, v, 1]. Depth is camera z of the first hit.

Shading is Lambertian (ambient + one directional light, no shadows) and albedo is a solid texture of
the 3D hit point, so a surface point has the same colour in every view.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace

import numpy as np

TEXTURE_KINDS = ("fbm", "marble", "checker", "stripes")
BACKGROUNDS = ("scene", "transparent")
_T_MIN = 1e-6  # hits closer than this (camera z in canonical scene units) are ignored
_OCTAVE_ROTATION = np.linalg.qr(np.random.default_rng(12345).normal(size=(3, 3)))[0]  # breaks grid alignment


# ----------------------------------------------------------------------------------------------------------
# Solid textures


_LATTICE_BITS = 6  # value noise repeats every 64 lattice cells, far beyond any scene's extent in cells
_LATTICE = np.random.default_rng(2024).uniform(size=1 << (3 * _LATTICE_BITS))


def _value_noise(points: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with unit lattice spacing, a different field per seed: (N, 3) -> (N,)."""
    points = points + np.random.default_rng(seed).uniform(0.0, 1 << _LATTICE_BITS, 3)
    cell = np.floor(points)
    frac = points - cell
    w = frac * frac * (3.0 - 2.0 * frac)
    mask = (1 << _LATTICE_BITS) - 1
    cell = cell.astype(np.int64)
    # flat lattice indices of the lower and upper corner along each axis
    corner_index = [[((cell[:, axis] + step) & mask) << (_LATTICE_BITS * (2 - axis)) for step in (0, 1)]
                    for axis in range(3)]
    x0, x1 = corner_index[0]
    values = []
    for y in corner_index[1]:
        for z in corner_index[2]:
            low, high = _LATTICE[x0 + y + z], _LATTICE[x1 + y + z]
            values.append(low + (high - low) * w[:, 0])
    wy, wz = w[:, 1], w[:, 2]
    v00, v01, v10, v11 = values  # (y, z) = (0, 0), (0, 1), (1, 0), (1, 1)
    v0 = v00 + (v10 - v00) * wy
    v1 = v01 + (v11 - v01) * wy
    return v0 + (v1 - v0) * wz


def _fbm(points: np.ndarray, seed: int, num_octaves: int = 4) -> np.ndarray:
    """Sum of value-noise octaves (lacunarity 2, gain 0.5), contrast-stretched to [0, 1]: (N, 3) -> (N,)."""
    total = np.zeros(len(points))
    amplitude, norm = 1.0, 0.0
    for octave in range(num_octaves):
        total += amplitude * _value_noise(points, seed + octave)
        norm += amplitude
        amplitude *= 0.5
        points = 2.0 * points @ _OCTAVE_ROTATION
    return np.clip((total / norm - 0.5) * 2.5 + 0.5, 0.0, 1.0)


def _lerp(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    return a + (b - a) * s[:, None]


@dataclass(eq=False)
class Texture:
    """Solid albedo texture: `albedo(points)` maps (N, 3) points of the owner's frame to (N, 3) RGB in [0, 1].

    kind: one of TEXTURE_KINDS; colors: (3, 3) palette, one RGB row per colour; frequency: cycles per
    scene unit of the coarsest pattern (noise adds 3 octaves up to 8x finer); axis: (3,) direction of
    stripes and marble veins.
    """

    kind: str = "fbm"
    colors: np.ndarray = field(default_factory=lambda: np.array([[0.8, 0.3, 0.2], [0.2, 0.5, 0.8],
                                                                 [0.9, 0.8, 0.3]]))
    frequency: float = 2.0
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    seed: int = 0

    def __post_init__(self):
        if self.kind not in TEXTURE_KINDS:
            raise ValueError(f"Texture kind must be one of {TEXTURE_KINDS}, got {self.kind!r}")
        self.colors = np.asarray(self.colors, dtype=np.float64)
        self.axis = np.asarray(self.axis, dtype=np.float64)
        if self.colors.shape != (3, 3) or self.axis.shape != (3,):
            raise ValueError(f"Texture: colors must be (3, 3) and axis (3,), got {self.colors.shape}, "
                             f"{self.axis.shape}")

    def albedo(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N, 3) float64 RGB in [0, 1]."""
        p = points * self.frequency
        c0, c1, c2 = self.colors
        noise = _fbm(p, self.seed)
        if self.kind == "fbm":
            color = _lerp(_lerp(c0[None], c1[None], noise), c2[None], _fbm(1.7 * p + 31.0, self.seed + 100))
            return np.clip(color, 0.0, 1.0)
        if self.kind == "marble":
            veins = 0.5 + 0.5 * np.sin(2.0 * np.pi * (p @ self.axis) + 6.0 * noise)
            color = _lerp(_lerp(c0[None], c1[None], veins), c2[None], np.clip(2.0 * veins - 1.5, 0.0, 1.0))
        elif self.kind == "checker":
            parity = np.floor(1.5 * p).astype(np.int64).sum(axis=1) % 2
            color = _lerp(_lerp(c0[None], c1[None], parity.astype(np.float64)), c2[None], 0.5 * noise)
        else:  # stripes: three-colour bands along `axis`, their edges warped by noise
            band = np.floor(3.0 * (p @ self.axis) + 1.5 * noise).astype(np.int64) % 3
            color = self.colors[band]
        detail = _fbm(4.0 * p + 17.0, self.seed + 200, num_octaves=2)
        return np.clip(color * (0.75 + 0.5 * detail)[:, None], 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Primitives (intersected in their own frame)


def _sphere_roots(origins: np.ndarray, dirs: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Both t where (R, 3) rays `origins + t * dirs` meet the sphere |x| = radius: near (R,), far (R,);
    nan on a miss."""
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = np.einsum("ij,ij->i", origins, dirs)
    c = np.einsum("ij,ij->i", origins, origins) - radius**2
    with np.errstate(invalid="ignore"):
        root = np.sqrt(b * b - a * c)
    return (-b - root) / a, (-b + root) / a


@dataclass(eq=False, kw_only=True)
class Shape:
    """A solid primitive: `center` (3,) world position, `rotation` (3, 3) world_from_object, `texture`
    evaluated at object-frame points."""

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    texture: Texture = field(default_factory=Texture)

    def __post_init__(self):
        self.center = np.asarray(self.center, dtype=np.float64)
        self.rotation = np.asarray(self.rotation, dtype=np.float64)
        if self.center.shape != (3,) or self.rotation.shape != (3, 3):
            raise ValueError(f"Shape: center must be (3,) and rotation (3, 3), got {self.center.shape}, "
                             f"{self.rotation.shape}")

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays `origins + t * dirs` ((R, 3) each, object frame, dirs not necessarily unit) -> t (R,) of the
        first entry with t > _T_MIN (inf for a miss) and outward unit normals (R, 3) there (object frame)."""
        raise NotImplementedError

    def extent_z(self) -> float:
        """Half of the world-z extent: the shape spans center_z +- extent_z()."""
        raise NotImplementedError

    def bounding_radius(self) -> float:
        """Radius of the smallest centred sphere containing the shape."""
        raise NotImplementedError


@dataclass(eq=False, kw_only=True)
class Sphere(Shape):
    radius: float

    def intersect(self, origins, dirs):
        t_near, _ = _sphere_roots(origins, dirs, self.radius)
        t = np.where(t_near > _T_MIN, t_near, np.inf)
        hit_point = origins + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
        return t, hit_point / self.radius

    def extent_z(self):
        return self.radius

    def bounding_radius(self):
        return self.radius


@dataclass(eq=False, kw_only=True)
class Box(Shape):
    half_extents: np.ndarray

    def __post_init__(self):
        super().__post_init__()
        self.half_extents = np.asarray(self.half_extents, dtype=np.float64)
        if self.half_extents.shape != (3,):
            raise ValueError(f"Box: half_extents must be (3,), got {self.half_extents.shape}")

    def intersect(self, origins, dirs):
        safe_dirs = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
        t_a = (-self.half_extents - origins) / safe_dirs
        t_b = (self.half_extents - origins) / safe_dirs
        t_near, t_far = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
        t_enter = np.maximum(np.maximum(t_near[:, 0], t_near[:, 1]), t_near[:, 2])
        t_exit = np.minimum(np.minimum(t_far[:, 0], t_far[:, 1]), t_far[:, 2])
        axis = np.where(t_near[:, 0] == t_enter, 0, np.where(t_near[:, 1] == t_enter, 1, 2))
        t = np.where((t_enter <= t_exit) & (t_enter > _T_MIN), t_enter, np.inf)
        rows = np.arange(len(dirs))
        normals = np.zeros_like(dirs)
        normals[rows, axis] = -np.sign(safe_dirs[rows, axis])
        return t, normals

    def extent_z(self):
        return float(np.abs(self.rotation[2]) @ self.half_extents)

    def bounding_radius(self):
        return float(np.linalg.norm(self.half_extents))


@dataclass(eq=False, kw_only=True)
class Cylinder(Shape):
    """Solid capped cylinder around the object z axis, z in [-half_height, half_height]."""

    radius: float
    half_height: float

    def intersect(self, origins, dirs):
        # side: the nearer root of |o_xy + t d_xy|^2 = r^2, kept if it lies within the height
        a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
        b = origins[:, 0] * dirs[:, 0] + origins[:, 1] * dirs[:, 1]
        c = origins[:, 0] ** 2 + origins[:, 1] ** 2 - self.radius**2
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
            z_side = origins[:, 2] + t_side * dirs[:, 2]
            on_side = (a > 0) & (disc >= 0) & (t_side > _T_MIN) & (np.abs(z_side) <= self.half_height)
            t_side = np.where(on_side, t_side, np.inf)
            # caps: planes z = +-half_height, kept inside the disc
            t_caps = (np.array([[self.half_height, -self.half_height]]) - origins[:, 2:3]) / dirs[:, 2:3]
        xy = origins[:, None, :2] + np.where(np.isfinite(t_caps), t_caps, 0.0)[..., None] * dirs[:, None, :2]
        inside = ((xy**2).sum(axis=-1) <= self.radius**2) & np.isfinite(t_caps) & (t_caps > _T_MIN)
        t_caps = np.where(inside, t_caps, np.inf)
        t_all = np.concatenate([t_side[:, None], t_caps], axis=1)  # (R, 3): side, top, bottom
        which = t_all.argmin(axis=1)
        t = t_all[np.arange(len(dirs)), which]
        hit_point = origins + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
        side_normal = np.concatenate([hit_point[:, :2] / self.radius, np.zeros((len(dirs), 1))], axis=1)
        cap_normal = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
        normals = np.where((which == 0)[:, None], side_normal, cap_normal[np.maximum(which - 1, 0)])
        return t, normals

    def extent_z(self):
        cos_tilt = abs(self.rotation[2, 2])
        return float(cos_tilt * self.half_height + np.sqrt(max(1.0 - cos_tilt**2, 0.0)) * self.radius)

    def bounding_radius(self):
        return float(np.hypot(self.radius, self.half_height))


# ----------------------------------------------------------------------------------------------------------
# Scene


@dataclass(eq=False)
class Ground:
    """Horizontal disc z = `height` of radius `radius` around the world z axis; texture at world points."""

    height: float
    radius: float = 1.1
    texture: Texture = field(default_factory=lambda: Texture(kind="checker"))


@dataclass(eq=False)
class Environment:
    """Sphere of radius `radius` around the origin seen from inside: a sky gradient (colors rows: horizon,
    zenith, below the horizon) mixed with `texture` evaluated at world points of the sphere."""

    radius: float = 20.0
    colors: np.ndarray = field(default_factory=lambda: np.array([[0.85, 0.85, 0.8], [0.3, 0.5, 0.85],
                                                                 [0.35, 0.3, 0.25]]))
    texture: Texture = field(default_factory=lambda: Texture(kind="fbm", frequency=0.15))

    def color(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points on the sphere -> (N, 3) RGB in [0, 1]."""
        elevation = points[:, 2] / self.radius
        horizon, zenith, below = self.colors
        sky = np.where((elevation >= 0)[:, None],
                       _lerp(horizon[None], zenith[None], np.sqrt(np.clip(elevation, 0.0, 1.0))),
                       _lerp(horizon[None], below[None], np.sqrt(np.clip(-elevation, 0.0, 1.0))))
        return np.clip(0.55 * sky + 0.45 * self.texture.albedo(points), 0.0, 1.0)


@dataclass(eq=False)
class Light:
    """Directional light: `direction` (3,) unit vector from surfaces towards the light (world), `color` (3,)
    its RGB intensity, `ambient` (3,) the RGB ambient term."""

    direction: np.ndarray = field(default_factory=lambda: np.array([0.3, -0.4, 0.866]))
    color: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.8, 0.8]))
    ambient: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.3, 0.3]))

    def __post_init__(self):
        self.direction = np.asarray(self.direction, dtype=np.float64)
        self.direction = self.direction / np.linalg.norm(self.direction)
        self.color = np.asarray(self.color, dtype=np.float64)
        self.ambient = np.asarray(self.ambient, dtype=np.float64)


@dataclass(eq=False)
class SceneSpec:
    """A scene in canonical units (object group within radius ~0.8 of the origin) enlarged by `scale`:
    the world is `scale` times the canonical scene, so cameras and depths are in world units."""

    objects: list[Shape]
    light: Light = field(default_factory=Light)
    ground: Ground | None = None
    environment: Environment | None = None
    scale: float = 1.0


@dataclass
class RenderedView:
    """rgb (H, W, 3) float32 in [0, 1]; depth (H, W) float32 camera z in world units, 0 where no object
    or ground is hit (the environment is at infinity: depth 0 = invalid); mask (H, W) bool, objects only;
    alpha (H, W) float32, 1 on objects and ground, 0 elsewhere."""

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray


def _random_palette(rng: np.random.Generator, saturation=(0.35, 0.9), value=(0.3, 0.95)) -> np.ndarray:
    """(3, 3) RGB palette: three hues around a random one, one dark, one mid, one light colour."""
    hue = rng.uniform()
    hues = hue + np.array([0.0, rng.choice([0.08, 0.33, 0.5]), rng.uniform(-0.15, 0.15)])
    values = np.sort(rng.uniform(*value, 3)) + np.array([-0.1, 0.0, 0.1])
    rows = [colorsys.hsv_to_rgb(h % 1.0, rng.uniform(*saturation), np.clip(v, 0.05, 1.0))
            for h, v in zip(hues, rng.permutation(values))]
    return np.array(rows)


def _random_texture(rng: np.random.Generator, frequency_range=(1.5, 2.5)) -> Texture:
    return Texture(
        kind=str(rng.choice(TEXTURE_KINDS)),
        colors=_random_palette(rng),
        frequency=rng.uniform(*frequency_range),
        axis=_random_rotation(rng)[:, 2],
        seed=int(rng.integers(2**31)),
    )


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _random_shape(rng: np.random.Generator) -> Shape:
    """A sphere, box or cylinder at the origin, bounding radius in [0.18, 0.4], random texture and pose."""
    size = rng.uniform(0.18, 0.4)
    kind = rng.choice(["sphere", "box", "cylinder"])
    yaw = rng.uniform(0.0, 2 * np.pi)
    upright = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    rotation = upright if rng.uniform() < 0.5 else _random_rotation(rng)
    texture = _random_texture(rng)
    if kind == "sphere":
        return Sphere(radius=size, texture=texture)
    if kind == "box":
        half_extents = rng.uniform(0.4, 1.0, 3)
        return Box(half_extents=size * half_extents / np.linalg.norm(half_extents), rotation=rotation,
                   texture=texture)
    angle = rng.uniform(0.25, 1.3)
    return Cylinder(radius=size * np.cos(angle), half_height=size * np.sin(angle), rotation=rotation,
                    texture=texture)


def _scaled(shape: Shape, factor: float, center: np.ndarray) -> Shape:
    sizes = {name: getattr(shape, name) * factor for name in ("radius", "half_extents", "half_height")
             if hasattr(shape, name)}
    return replace(shape, center=center * factor, **sizes)


def make_scene(
    seed: int, with_ground: bool = True, with_background: bool = True, *, scale: float = 1.0
) -> SceneSpec:
    """A random scene, deterministic under `seed`: 2-5 textured spheres / boxes / cylinders resting on
    z = ground height, the group centred on the origin within radius 0.8 (times `scale`), an optional
    textured ground disc of radius 1.1 and environment sphere of radius 20, a random light.

    `scale` enlarges the whole scene (e.g. `cameras.ARC_SCENE_SCALE` for `arc_cameras`).
    """
    if scale <= 0:
        raise ValueError(f"make_scene: scale must be positive, got {scale}")
    rng = np.random.default_rng(seed)
    shapes = [_random_shape(rng) for _ in range(rng.integers(2, 6))]
    centers = []
    for shape in shapes:  # rest each on z = 0, spread in xy with limited overlap
        for _ in range(100):
            xy = rng.uniform(-0.5, 0.5, 2)
            if all(np.linalg.norm(xy - c[:2]) >= 0.8 * (shape.bounding_radius() + other.bounding_radius())
                   for c, other in zip(centers, shapes)):
                break
        centers.append(np.array([*xy, shape.extent_z()]))
    centers = np.array(centers)
    centers[:, :2] -= centers[:, :2].mean(axis=0)
    ground_height = -centers[:, 2].max()  # the tallest object's top is at 2 * extent_z
    centers[:, 2] += ground_height
    group_radius = max(np.linalg.norm(c) + s.bounding_radius() for c, s in zip(centers, shapes))
    factor = min(1.0, 0.8 / group_radius)
    objects = [_scaled(s, factor, c) for s, c in zip(shapes, centers)]

    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(25), np.radians(75))
    tint = 1.0 - 0.3 * rng.uniform(size=3)
    light = Light(
        direction=[np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                   np.sin(elevation)],
        color=rng.uniform(0.7, 0.95) * tint / tint.max(),
        ambient=rng.uniform(0.3, 0.45) * (1.0 - 0.2 * rng.uniform(size=3)),
    )
    ground = Ground(
        height=ground_height * factor,
        texture=Texture(kind="checker", colors=_random_palette(rng, saturation=(0.1, 0.5)),
                        frequency=rng.uniform(1.2, 2.0), seed=int(rng.integers(2**31))),
    )
    environment = Environment(
        colors=_random_palette(rng, saturation=(0.1, 0.6), value=(0.4, 0.95)),
        texture=Texture(kind="fbm", colors=_random_palette(rng), frequency=rng.uniform(0.12, 0.2),
                        seed=int(rng.integers(2**31))),
    )
    return SceneSpec(objects=objects, light=light, ground=ground if with_ground else None,
                     environment=environment if with_background else None, scale=scale)


# ----------------------------------------------------------------------------------------------------------
# Rendering


def render(
    scene: SceneSpec,
    K: np.ndarray,
    cam_from_world: np.ndarray,
    height: int,
    width: int,
    background: str = "scene",
) -> RenderedView:
    """Ray-cast `scene` from a camera (`K` (3, 3) pixels, `cam_from_world` (4, 4), world units) into an
    image of `height` x `width`.

    background="scene" shows the scene's environment where no object or ground is hit (black if the
    scene has none); "transparent" leaves rgb 0 there. In both, depth is 0 and alpha 0 there.
    """
    K = np.asarray(K, dtype=np.float64)
    cam_from_world = np.asarray(cam_from_world, dtype=np.float64)
    if K.shape != (3, 3) or cam_from_world.shape != (4, 4):
        raise ValueError(f"render: expected K (3, 3) and cam_from_world (4, 4), got {K.shape} and "
                         f"{cam_from_world.shape}")
    if background not in BACKGROUNDS:
        raise ValueError(f"render: background must be one of {BACKGROUNDS}, got {background!r}")
    if height <= 0 or width <= 0:
        raise ValueError(f"render: height and width must be positive, got {height} x {width}")

    # rays in canonical scene units: origin + t * dir with dir's camera z = 1, so camera z = t * scale
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    dirs_cam = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1) @ np.linalg.inv(K).T
    dirs_cam /= dirs_cam[:, 2:3]
    world_from_cam = np.linalg.inv(cam_from_world)
    dirs = dirs_cam @ world_from_cam[:3, :3].T
    origins = np.broadcast_to(world_from_cam[:3, 3] / scene.scale, dirs.shape)

    num_rays = len(dirs)
    t_hit = np.full(num_rays, np.inf)
    hit_id = np.full(num_rays, -1)  # object index, len(objects) for the ground, -1 for nothing
    normals = np.zeros((num_rays, 3))
    for index, shape in enumerate(scene.objects):
        # exact test only for rays whose bounding sphere entry is in front of the current hit
        near, far = _sphere_roots(origins - shape.center, dirs, shape.bounding_radius())
        rays = np.flatnonzero((far > _T_MIN) & (near < t_hit))
        t, n = shape.intersect((origins[rays] - shape.center) @ shape.rotation, dirs[rays] @ shape.rotation)
        closer = t < t_hit[rays]
        rays, n = rays[closer], n[closer]
        t_hit[rays], hit_id[rays], normals[rays] = t[closer], index, n @ shape.rotation.T
    ground_id = len(scene.objects)
    if scene.ground is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (scene.ground.height - origins[:, 2]) / dirs[:, 2]
        t = np.where(np.isfinite(t) & (t > _T_MIN), t, np.inf)
        on_disc = np.hypot(*(origins[:, :2] + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs[:, :2]).T)
        t = np.where(on_disc <= scene.ground.radius, t, np.inf)
        closer = t < t_hit
        t_hit[closer], hit_id[closer], normals[closer] = t[closer], ground_id, (0.0, 0.0, 1.0)

    hit = hit_id >= 0
    points = origins + np.where(hit, t_hit, 0.0)[:, None] * dirs
    albedo = np.zeros((num_rays, 3))
    for index, shape in enumerate(scene.objects):
        sel = hit_id == index
        albedo[sel] = shape.texture.albedo((points[sel] - shape.center) @ shape.rotation)
    if scene.ground is not None:
        sel = hit_id == ground_id
        albedo[sel] = scene.ground.texture.albedo(points[sel])
    light = scene.light
    lambert = np.clip(normals @ light.direction, 0.0, None)[:, None]
    rgb = np.where(hit[:, None], albedo * (light.ambient + light.color * lambert), 0.0)

    if background == "scene" and scene.environment is not None:
        env = scene.environment
        o, d = origins[~hit], dirs[~hit]
        _, t_far = _sphere_roots(o, d, env.radius)  # the camera is inside the sphere
        rgb[~hit] = env.color(o + t_far[:, None] * d)

    shape_hw = (height, width)
    return RenderedView(
        rgb=np.clip(rgb, 0.0, 1.0).reshape(*shape_hw, 3).astype(np.float32),
        depth=np.where(hit, t_hit * scene.scale, 0.0).reshape(shape_hw).astype(np.float32),
        mask=((hit_id >= 0) & (hit_id < ground_id)).reshape(shape_hw),
        alpha=hit.reshape(shape_hw).astype(np.float32),
    )
