"""Synthetic CO3D category (v2 or v1 layout, formats.md §2): one sequence per scene, orbit cameras.

Writes `<out>/<category>/{frame_annotations.jgz, sequence_annotations.jgz}`, the set list and eval
batches of one subset (v2: `set_lists/set_lists_<subset>.json` + `eval_batches/eval_batches_<subset>.json`
and `<out>/category_to_subset_name_list.json`; v1: `set_lists.json` + `eval_batches_<subset>.json`) and,
per sequence, `images/frameXXXXXX.jpg`, `masks/frameXXXXXX.png`, `depths/frameXXXXXX.jpg.geometric.png`
(float16 bits, a random per-frame scale_adjustment), `depth_masks/frameXXXXXX.png` and `pointcloud.ply`
(binary, xyz float + rgb uchar, surface points back-projected from the depth maps).

Frame k of a sequence has frame_number k and file suffix k + 1 (as in CO3D, the suffix is not the frame
number); the frame annotations of all sequences are written in a shuffled order. Every `holdout_every`-th
frame (0, n, 2n, ...) is a test frame; each eval batch is [test frame, `num_source_views` training
frames nearest in frame number].
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from multiview.geometry.conventions import opencv_to_co3d
from multiview.geometry.intrinsics import make_K
from multiview.io.co3d_depth import write_co3d_depth
from multiview.io.images import write_image
from multiview.synthetic.cameras import intrinsics, orbit_cameras
from multiview.synthetic.records import WrittenScene
from multiview.synthetic.render import make_scene, render

# With mixed formats, frame k uses entry k % 3; None = field omitted (the legacy default applies).
MIXED_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds", None)
DEFAULT_SUBSETS = {"v2": "fewview_dev", "v1": "multisequence"}
NUM_PLY_POINTS = 5000


def _write_jgz(path: Path, data) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(data, f)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _write_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """Binary little-endian PLY: float x, y, z and uchar red, green, blue per vertex."""
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for axis, name in enumerate("xyz"):
        vertex[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertex[name] = colors[:, channel]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    path.write_bytes(header.encode("ascii") + vertex.tobytes())


def _surface_points(rendered, K: np.ndarray, cam_from_world: np.ndarray, rng: np.random.Generator,
                    count: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` random surface points (world) of one rendered view and their uint8 colours."""
    v, u = np.nonzero(rendered.depth > 0)
    pick = rng.choice(len(u), size=min(count, len(u)), replace=False)
    u, v = u[pick], v[pick]
    z = rendered.depth[v, u].astype(np.float64)
    cam = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T * z[:, None]
    world_from_cam = np.linalg.inv(cam_from_world)
    points = cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]
    return points, (np.clip(rendered.rgb[v, u], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _frame_ref(frame: dict, with_path: bool) -> list:
    ref = [frame["sequence_name"], frame["frame_number"]]
    return ref + [frame["image"]["path"]] if with_path else ref


def write(
    out: Path,
    num_scenes: int,
    num_views: int,
    height: int,
    width: int,
    seed: int,
    *,
    version: str = "v2",
    intrinsics_format: str | None = None,
    mixed_formats: bool = False,
    category: str = "synthetic_object",
    subset: str | None = None,
    holdout_every: int = 8,
    num_source_views: int = 3,
    fov_x_deg: float = 50.0,
) -> list[WrittenScene]:
    """Write `num_scenes` sequences of `num_views` frames (H x W) of one category; see the module docstring.

    Args:
        version: "v2" or "v1" (v1: no `intrinsics_format` field, i.e. "ndc_norm_image_bounds", principal
            point at the image centre = (0, 0) in NDC, as in the v1 release).
        intrinsics_format: v2 only: "ndc_isotropic" (default) or "ndc_norm_image_bounds", on every frame.
        mixed_formats: v2 only: frames cycle through isotropic / norm_image_bounds / field omitted.
        subset: subset name (default "fewview_dev" in v2, "multisequence" in v1).
    Returns:
        one WrittenScene per sequence (root = the sequence folder), views in frame_number order.
    """
    if version not in DEFAULT_SUBSETS:
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    if version == "v1" and (mixed_formats or intrinsics_format not in (None, "ndc_norm_image_bounds")):
        raise ValueError("CO3D v1 frames have no intrinsics_format (always ndc_norm_image_bounds)")
    if version == "v1":
        formats = [None]
    elif mixed_formats:
        formats = list(MIXED_FORMATS)
    else:
        formats = [intrinsics_format or "ndc_isotropic"]
    subset = subset or DEFAULT_SUBSETS[version]
    out = Path(out)
    category_dir = out / category
    category_dir.mkdir(parents=True, exist_ok=True)

    frames, sequences, scenes = [], [], []
    for k in range(num_scenes):
        rng = np.random.default_rng([seed, k])
        name = f"{100 + k}_{rng.integers(10000, 99999)}_{rng.integers(10000, 99999)}"
        sequence_dir = category_dir / name
        scene = make_scene(seed + k)
        K = intrinsics(height, width, fov_x_deg)
        if version == "v1":
            K = make_K(K[0, 0], K[1, 1], width / 2.0, height / 2.0)
        cams = orbit_cameras(num_views, radius=3.0, seed=rng, azimuth_jitter_deg=5.0, target_jitter=0.05)
        written = WrittenScene(root=sequence_dir, name=name, K=np.repeat(K[None], num_views, axis=0),
                               cam_from_world=cams, images=[], depths=[], masks=[])
        points, colors = [], []
        for i, cam in enumerate(cams):
            view = render(scene, K, cam, height, width)
            stem = f"frame{i + 1:06d}"
            files = {kind: sequence_dir / folder / f"{stem}{suffix}" for kind, folder, suffix in (
                ("image", "images", ".jpg"), ("mask", "masks", ".png"),
                ("depth", "depths", ".jpg.geometric.png"), ("depth_mask", "depth_masks", ".png"))}
            scale = float(rng.uniform(0.5, 2.0))
            write_image(files["image"], view.rgb)
            write_image(files["mask"], view.mask.astype(np.uint8) * 255)
            write_co3d_depth(files["depth"], view.depth, scale)
            write_image(files["depth_mask"], (view.depth > 0).astype(np.uint8) * 255)
            fmt = formats[i % len(formats)]
            R, T, focal, principal = opencv_to_co3d(K, cam, height, width, fmt or "ndc_norm_image_bounds")
            viewpoint = {"R": R.tolist(), "T": T.tolist(), "focal_length": focal.tolist(),
                         "principal_point": principal.tolist()}
            if fmt is not None:
                viewpoint["intrinsics_format"] = fmt
            rel = {kind: path.relative_to(out).as_posix() for kind, path in files.items()}
            frames.append({
                "sequence_name": name, "frame_number": i, "frame_timestamp": i / 30.0,
                "image": {"path": rel["image"], "size": [height, width]},
                "depth": {"path": rel["depth"], "scale_adjustment": scale, "mask_path": rel["depth_mask"]},
                "mask": {"path": rel["mask"], "mass": float(view.mask.sum())},
                "viewpoint": viewpoint,
                "meta": None,
            })
            surface = _surface_points(view, K, cam, rng, -(-NUM_PLY_POINTS // num_views))
            points.append(surface[0])
            colors.append(surface[1])
            written.images.append(view.rgb)
            written.depths.append(view.depth)
            written.masks.append(view.mask)
            written.files.extend(files.values())
        ply = sequence_dir / "pointcloud.ply"
        _write_ply(ply, np.concatenate(points), np.concatenate(colors))
        written.files.append(ply)
        sequences.append({
            "sequence_name": name, "category": category, "video": None,
            "point_cloud": {"path": ply.relative_to(out).as_posix(), "quality_score": 1.0,
                            "n_points": int(sum(len(p) for p in points))},
            "viewpoint_quality_score": float(rng.uniform(0.0, 10.0)),
        })
        scenes.append(written)

    split_files = _write_splits(out, category_dir, frames, version, subset, holdout_every, num_source_views)
    order = np.random.default_rng(seed).permutation(len(frames))
    _write_jgz(category_dir / "frame_annotations.jgz", [frames[i] for i in order])
    _write_jgz(category_dir / "sequence_annotations.jgz", sequences)
    shared = [category_dir / "frame_annotations.jgz", category_dir / "sequence_annotations.jgz", *split_files]
    for written in scenes:
        written.files.extend(shared)
    return scenes


def _write_splits(out: Path, category_dir: Path, frames: list[dict], version: str, subset: str,
                  holdout_every: int, num_source_views: int) -> list[Path]:
    """Set list and eval batches (v2: 3-tuples, v1: 2-tuples); returns the files written."""
    with_path = version == "v2"
    is_test = [frame["frame_number"] % holdout_every == 0 for frame in frames]
    train = [_frame_ref(f, with_path) for f, test in zip(frames, is_test) if not test]
    test = [_frame_ref(f, with_path) for f, test in zip(frames, is_test) if test]
    batches = []
    for frame, target in zip(frames, is_test):
        if target:
            name = frame["sequence_name"]
            pool = [f for f, t in zip(frames, is_test) if not t and f["sequence_name"] == name]
            pool.sort(key=lambda f, n=frame["frame_number"]: (abs(f["frame_number"] - n), f["frame_number"]))
            batches.append([_frame_ref(f, with_path) for f in [frame, *pool[:num_source_views]]])
    if version == "v2":
        set_list = category_dir / "set_lists" / f"set_lists_{subset}.json"
        eval_batches = category_dir / "eval_batches" / f"eval_batches_{subset}.json"
        _write_json(set_list, {"train": train, "val": [], "test": test})
        index = out / "category_to_subset_name_list.json"
        subsets = json.loads(index.read_text()) if index.is_file() else {}
        subsets[category_dir.name] = sorted(set(subsets.get(category_dir.name, [])) | {subset})
        _write_json(index, subsets)
    else:
        set_list = category_dir / "set_lists.json"
        eval_batches = category_dir / f"eval_batches_{subset}.json"
        _write_json(set_list, {"train_known": train, "train_unseen": [], "test_known": test,
                               "test_unseen": []})
    _write_json(eval_batches, batches)
    return [set_list, eval_batches]
