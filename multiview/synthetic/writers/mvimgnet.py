"""Synthetic MVImgNet root: object-centric orbit "videos" with legacy binary COLMAP models.

Written tree (what `multiview.data.readers.mvimgnet` reads)::

    <out>/mvimgnet_category.txt                 "<id>,<name>" CRLF lines of the classes used (real ids/names)
    <out>/<class_id>/<instance_id>/images/001.jpg ... NNN.jpg   1-based, zero-padded to >= 3 digits
    <out>/<class_id>/<instance_id>/sparse/0/{cameras,images,points3D}.bin, project.ini

Scene k uses `make_scene(seed + k)` and class `CATEGORIES[k % 5]`; its instance id is 8 hex digits
drawn from `seed + k`. Cameras: one shared camera (PINHOLE, or SIMPLE_RADIAL with k = 0) on a 360°
orbit in frame order, looking at the object with a little hand-held jitter. Image ids are 1..N in
name order. Sparse points: random pixels with a surface (objects and ground, depth > 0) of every
view, back-projected; each point's track holds every view where it is visible (in the image, in
front, rendered depth within 1 % of its depth); points seen by fewer than 2 views are dropped.
Keypoints are the exact projections in COLMAP's pixel convention (ours + 0.5), plus ~25 %
untriangulated keypoints (point3D id -1); point ids are increasing but not contiguous.

`num_broken` extra instances are written after the good ones, with instance ids
`broken_instance_id(b)` = "bad000NN", each broken in the way `BROKEN_KINDS[b % len(BROKEN_KINDS)]`
says; they are not returned (tests find them by that id).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from multiview.io.colmap import (
    ColmapImage,
    ColmapPoints,
    colmap_camera_from_K,
    read_colmap_cameras,
    write_colmap_binary,
)
from multiview.io.images import to_uint8, write_image
from multiview.synthetic.cameras import intrinsics, orbit_cameras
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render

CATEGORIES = ((2, "wahser"), (17, "mug"), (39, "can"), (52, "plush toy"), (203, "Toy butterfly "))
"""Real (id, name) pairs of mvimgnet_category.txt, verbatim (id 2's typo and id 203's trailing space)."""

BROKEN_KINDS = ("empty_sparse", "missing_image", "no_registered_images", "missing_points3D", "truncated_images_bin")
CAMERA_MODELS = ("SIMPLE_RADIAL", "PINHOLE")

_PROJECT_INI = "log_to_stderr=false\nrandom_seed=0\nlog_level=2\n[ImageReader]\nsingle_camera=true\ncamera_model={}\n"
_DEPTH_TOLERANCE = 0.01  # relative depth agreement for a point to count as visible in a view


def broken_instance_id(index: int) -> str:
    """Instance id of the `index`-th broken instance ("bad00000", "bad00001", ...)."""
    return f"bad{index:05x}"


def _sparse_model(depths: list[np.ndarray], rgbs: list[np.ndarray], K: np.ndarray, cams: np.ndarray,
                  num_points: int, rng: np.random.Generator) -> tuple[ColmapPoints, list[tuple]]:
    """Sample surface points from the depth maps and build their tracks.

    Returns the points and, per view, (keypoints (N, 2) in COLMAP pixel convention, point3D ids (N,)).
    """
    num_views = len(depths)
    height, width = depths[0].shape
    K_inv = np.linalg.inv(K)
    per_view = -(-num_points // num_views)
    xyz, colours = [], []
    for depth, rgb, cam in zip(depths, rgbs, cams):
        v, u = np.nonzero(depth > 0)
        pick = rng.choice(len(u), size=min(per_view, len(u)), replace=False)
        u, v = u[pick], v[pick]
        points_cam = np.stack([u, v, np.ones_like(u)], axis=1) @ K_inv.T * depth[v, u, None]
        world_from_cam = np.linalg.inv(cam)
        xyz.append(points_cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3])
        colours.append(to_uint8(rgb[v, u]))
    xyz, colours = np.concatenate(xyz), np.concatenate(colours)

    visible, uvs = [], []
    for depth, cam in zip(depths, cams):
        points_cam = xyz @ cam[:3, :3].T + cam[:3, 3]
        z = points_cam[:, 2]
        uv = points_cam[:, :2] / np.where(z > 0, z, 1.0)[:, None] @ K[:2, :2].T + K[:2, 2]
        pixel = np.round(uv).astype(np.int64)
        inside = (z > 0) & (pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0) & (pixel[:, 1] < height)
        seen = np.zeros(len(xyz))
        seen[inside] = depth[pixel[inside, 1], pixel[inside, 0]]
        visible.append(inside & (np.abs(seen - z) < _DEPTH_TOLERANCE * z))
        uvs.append(uv)
    visible = np.stack(visible)
    keep = visible.sum(axis=0) >= 2
    ids = np.cumsum(rng.integers(1, 4, keep.sum()))
    points = ColmapPoints(ids=ids, xyz=xyz[keep], rgb=colours[keep])

    observations = []
    for seen, uv in zip(visible[:, keep], (uv[keep] for uv in uvs)):
        num_extra = seen.sum() // 4
        keypoints = np.concatenate([uv[seen] + 0.5, rng.uniform((0.5, 0.5), (width - 0.5, height - 0.5),
                                                                 (num_extra, 2))])
        point_ids = np.concatenate([ids[seen], np.full(num_extra, -1)])
        order = rng.permutation(len(keypoints))
        observations.append((keypoints[order], point_ids[order]))
    return points, observations


def _write_instance(instance_dir: Path, scene_seed: int, num_views: int, height: int, width: int,
                    num_points: int, camera_model: str) -> WrittenScene:
    rng = np.random.default_rng(scene_seed)
    scene = make_scene(scene_seed)
    K = intrinsics(height, width, fov_x_deg=50.0)
    cams = orbit_cameras(num_views, radius=2.3, elevation_deg_range=(15.0, 40.0), seed=rng,
                         azimuth_jitter_deg=2.0, target_jitter=0.05)
    rendered = [render(scene, K, cam, height, width) for cam in cams]
    digits = max(3, len(str(num_views)))
    names = [f"{i + 1:0{digits}d}.jpg" for i in range(num_views)]
    files = []
    for name, view in zip(names, rendered):
        write_image(instance_dir / "images" / name, view.rgb)
        files.append(instance_dir / "images" / name)
    points, observations = _sparse_model([v.depth for v in rendered], [v.rgb for v in rendered], K, cams,
                                         num_points, rng)
    images = [ColmapImage(name, 1, cam, keypoints, point_ids)
              for name, cam, (keypoints, point_ids) in zip(names, cams, observations)]
    camera = colmap_camera_from_K(1, K, height, width, camera_model)
    files += write_colmap_binary(instance_dir / "sparse" / "0", [camera], images, points,
                                 project_ini=_PROJECT_INI.format(camera_model))
    return WrittenScene(
        root=instance_dir, name=f"{instance_dir.parent.name}/{instance_dir.name}",
        K=np.repeat(K[None], num_views, axis=0), cam_from_world=cams,
        images=[v.rgb for v in rendered], depths=[v.depth for v in rendered], masks=[v.mask for v in rendered],
        files=files,
    )


def _break_instance(instance_dir: Path, kind: str) -> None:
    """Damage a written instance the way MVImgNet's known defects look (formats.md §1.2)."""
    sparse = instance_dir / "sparse" / "0"
    if kind == "empty_sparse":
        shutil.rmtree(sparse)
        sparse.mkdir()
    elif kind == "missing_image":
        images = sorted((instance_dir / "images").iterdir())
        images[len(images) // 2].unlink()
    elif kind == "no_registered_images":
        cameras = read_colmap_cameras(sparse / "cameras.bin").values()
        write_colmap_binary(sparse, cameras, [], ColmapPoints(ids=[], xyz=np.zeros((0, 3))))
    elif kind == "missing_points3D":
        (sparse / "points3D.bin").unlink()
    elif kind == "truncated_images_bin":
        data = (sparse / "images.bin").read_bytes()
        (sparse / "images.bin").write_bytes(data[: len(data) // 2])
    else:
        raise ValueError(f"unknown broken kind {kind!r}; expected one of {BROKEN_KINDS}")


def write(out: Path, num_scenes: int, num_views: int, height: int, width: int, seed: int, *,
          num_broken: int = 0, num_points: int = 1500, camera_model: str = "SIMPLE_RADIAL") -> list[WrittenScene]:
    """Write `num_scenes` good instances (returned in scene order k = 0..num_scenes-1, each with its views
    in name order) plus `num_broken` broken ones (not returned) under `out`.

    Args:
        num_points: sparse points sampled before dropping those seen by fewer than 2 views.
        camera_model: "SIMPLE_RADIAL" (k = 0, as MVImgNet-like captures) or "PINHOLE".
    """
    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model must be one of {CAMERA_MODELS}, got {camera_model!r}")
    if num_views < 2:
        raise ValueError(f"an MVImgNet instance needs at least 2 views, got {num_views}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenes, used = [], set()
    for k in range(num_scenes + num_broken):
        class_id, _ = CATEGORIES[k % len(CATEGORIES)]
        used.add(k % len(CATEGORIES))
        if k < num_scenes:
            instance_id = f"{int(np.random.default_rng(seed + k).integers(2**32)):08x}"
        else:
            instance_id = broken_instance_id(k - num_scenes)
        instance_dir = out / str(class_id) / instance_id
        if instance_dir.exists():
            shutil.rmtree(instance_dir)
        written = _write_instance(instance_dir, seed + k, num_views, height, width, num_points, camera_model)
        if k < num_scenes:
            scenes.append(written)
        else:
            _break_instance(instance_dir, BROKEN_KINDS[(k - num_scenes) % len(BROKEN_KINDS)])
    lines = [f"{class_id},{name}\r\n" for class_id, name in sorted(CATEGORIES[i] for i in used)]
    (out / "mvimgnet_category.txt").write_bytes("".join(lines).encode("utf-8"))
    return scenes
