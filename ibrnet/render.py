"""Chunked full-image rendering with a trained IBRNet, and the `python -m ibrnet.render` CLI.

    python -m ibrnet.render --run runs/EXP --scene SCENE --out DIR [--dataset NAME[@FOLDER]] [--data_root DIR]
        [--views 0 8 16] [--path auto|orbit|spiral|interpolate|none] [--num_frames 60] [--fps 15]
        [--format mp4|gif] [--chunk_size N] [--render_stride S] [--checkpoint PATH] [--device auto|cpu|cuda]

The CLI re-parses the run's `config.txt` (model, resolution, source-view count, data root, datasets)
and loads `ckpt/latest.pt` (or `--checkpoint`). It writes, into `--out`:

* `views/<index>_<name>_{fine,coarse}.png`: renders of the chosen views (default: the scene's test
  split, every view when the scene has none), each with its `num_source_views` nearest train-split
  views as sources (`ibrnet.data.evaluation_views`, the target itself excluded);
  `_depth.png`: depth visualisation (`ibrnet.train.depth_to_rgb`, near = bright);
  `_depth16.png`: depth as a 16-bit PNG of round(1000 · depth) in the dataset's units (the original
  IBRNet's convention: metres -> millimetres), clipped to 65535, 0 where the ray is invalid;
* `path_<kind>.<format>` and `path_<kind>_depth.<format>`: a video along a camera path
  (`ibrnet.camera_path`; `auto` = orbit for object-centric datasets, spiral for forward-facing ones)
  with the intrinsics and size of the scene's first train-split view; each frame's sources are the
  `num_source_views` views nearest to the frame's camera by the dataset's selection rule; the depth
  video uses one depth range for all frames; `path_<kind>_cameras.npy` holds the (N, 4, 4) cams_from_world;
* `render.json`: checkpoint, step, scene, per-view sources and PSNR against the stored image.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ibrnet.camera_path import PATH_KINDS
from ibrnet.model import IBRNet, Rays, Sources
from multiview.geometry.projection import pixel_grid, rays_through_pixels
from multiview.geometry.transforms import invert_rigid


@dataclass
class RenderedImage:
    """(H, W, 3) coarse/fine colours, (H, W) fine (or coarse) depth and ray validity, numpy float32."""

    coarse: np.ndarray
    fine: np.ndarray | None
    depth: np.ndarray
    valid: np.ndarray

    @property
    def best(self) -> np.ndarray:
        return self.fine if self.fine is not None else self.coarse


@torch.no_grad()
def render_image(model: IBRNet, K: torch.Tensor, cam_from_world: torch.Tensor, height: int, width: int,
                 near: float, far: float, sources: Sources, chunk_size: int = 4096, stride: int = 1,
                 deterministic: bool = True) -> RenderedImage:
    """Render every `stride`-th pixel of a target camera, `chunk_size` rays at a time.

    Source features are computed once. Coarse pixels of invalid rays are painted white, as the
    original does before computing metrics (its render_image.py).
    Args:
        K: (3, 3), cam_from_world: (4, 4) of the target, on the model's device.
    """
    uv = pixel_grid(height, width, device=K.device, dtype=K.dtype)[::stride, ::stride]
    h, w = uv.shape[:2]
    origins, directions = rays_through_pixels(uv.reshape(1, -1, 2), K[None], invert_rigid(cam_from_world)[None])
    rays = Rays(origins[0], directions[0], torch.full((h * w,), near, device=K.device, dtype=K.dtype),
                torch.full((h * w,), far, device=K.device, dtype=K.dtype))
    target_center = invert_rigid(cam_from_world)[:3, 3]
    features = model.encode(sources.images)
    parts: dict[str, list[torch.Tensor]] = {"coarse": [], "fine": [], "depth": [], "valid": []}
    for start in range(0, h * w, chunk_size):
        out = model(rays[start : start + chunk_size], sources, features, target_center, deterministic)
        coarse = torch.where(out.coarse.valid[:, None], out.coarse.rgb, torch.ones_like(out.coarse.rgb))
        parts["coarse"].append(coarse)
        best = out.fine if out.fine is not None else out.coarse
        if out.fine is not None:
            parts["fine"].append(out.fine.rgb)
        parts["depth"].append(best.depth)
        parts["valid"].append(best.valid)

    def image(key, channels):
        if not parts[key]:
            return None
        values = torch.cat(parts[key]).float().reshape(h, w, *channels)
        return values.cpu().numpy()

    return RenderedImage(image("coarse", (3,)), image("fine", (3,)), image("depth", ()), image("valid", ()))


# --- the `python -m ibrnet.render` CLI ---------------------------------------------------------------------


def build_render_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ibrnet.render", allow_abbrev=False,
                                     description="Render views and a camera-path video of one scene with a "
                                                 "trained IBRNet run (see the module docstring for the outputs).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="run directory holding config.txt and ckpt/")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--dataset", default=None,
                        help="NAME or NAME@FOLDER (default: the run's first validation dataset, else its first "
                             "training dataset)")
    parser.add_argument("--data_root", default=None, help="root the dataset folder is relative to (default: the run's)")
    parser.add_argument("--scene", default=None, help="scene name (default: the dataset's first scene)")
    parser.add_argument("--views", type=int, nargs="*", default=None,
                        help="indices of the scene's views to render (default: its test split, every view when it "
                             "has none; the option without values renders no single views)")
    parser.add_argument("--path", choices=["auto", *PATH_KINDS, "none"], default="auto",
                        help="camera path of the video (auto: orbit for object-centric datasets, spiral for "
                             "forward-facing ones; none: no video)")
    parser.add_argument("--num_frames", type=int, default=60, help="frames of the camera-path video")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second of the video")
    parser.add_argument("--format", choices=["mp4", "gif"], default="mp4", help="video container")
    parser.add_argument("--chunk_size", type=int, default=None, help="rays per chunk (default: the run's)")
    parser.add_argument("--render_stride", type=int, default=1, help="render every N-th pixel in x and y")
    parser.add_argument("--max_image_side", type=int, default=None,
                        help="shrink images so their longer side is at most this (default: the run's; 0 = native)")
    parser.add_argument("--num_source_views", type=int, default=None,
                        help="source views per frame (default: the run's)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: <run>/ckpt/latest.pt)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = cuda when available, else cpu")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    return parser


def load_run_options(run_dir: Path) -> argparse.Namespace:
    """The run's options, re-parsed from its `config.txt` with the IBRNet parser."""
    from ibrnet.options import build_ibrnet_parser
    from multiview.engine.options import parse_options

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run directory not found")
    config = run_dir / "config.txt"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the run's config.txt is missing (the trainer writes it when a run starts)")
    return parse_options(build_ibrnet_parser(), ["--config", str(config)])


def load_trained_model(args: argparse.Namespace, checkpoint: Path, device: torch.device) -> tuple[IBRNet, int | None]:
    """Model built from the run's options with the checkpoint's weights, in eval mode; and its step."""
    from ibrnet.train import build_model
    from multiview.engine.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found (train the run first or pass --checkpoint)")
    state = load_checkpoint(checkpoint, map_location=device)
    weights = state["model"] if isinstance(state, dict) and "model" in state else state
    model = build_model(args).to(device)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint}: weights do not fit the run's model ({error})") from error
    model.eval()
    return model, state.get("step") if isinstance(state, dict) else None


def colorize_depth(depth: np.ndarray, valid: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W, 3) grey depth visualisation with a fixed range (near = bright, invalid = black)."""
    grey = 1.0 - np.clip((depth - low) / max(high - low, 1e-8), 0, 1)
    return np.repeat((grey * valid)[..., None], 3, axis=-1).astype(np.float32)


def depth_to_uint16(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """round(1000 · depth) as uint16 (clipped to 65535), 0 where invalid (the original IBRNet's depth PNGs)."""
    return (np.clip(np.round(depth * 1000.0), 0, 65535) * valid).astype(np.uint16)


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Float [0, 1] (H, W, 3) frames -> .mp4 (libx264 via imageio-ffmpeg) or .gif (imageio/Pillow)."""
    import imageio.v2 as imageio

    from multiview.io.images import to_uint8

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames8 = [to_uint8(frame) for frame in frames]
    if path.suffix.lower() == ".gif":
        imageio.mimwrite(path, frames8, duration=1000.0 / fps, loop=0)
        return
    height, width = frames8[0].shape[:2]  # yuv420p needs even sizes: pad by edge replication
    frames8 = [np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge") for frame in frames8]
    imageio.mimwrite(path, frames8, fps=fps, macro_block_size=1)


@dataclass
class _RenderSetup:
    args: argparse.Namespace
    model: IBRNet
    step: int | None
    checkpoint: Path
    dataset: str
    selection: str
    scene: object
    views: list[int]
    device: torch.device


def _prepare(cli: argparse.Namespace) -> _RenderSetup:
    """Everything that can fail on user input (paths, names, indices), before any rendering."""
    from multiview.data.registry import dataset_spec, list_scene_handles, parse_dataset_entry
    from multiview.engine.device import configure_cpu, resolve_device

    args = load_run_options(cli.run)
    for key in ("chunk_size", "max_image_side", "num_source_views"):
        if getattr(cli, key) is not None:
            setattr(args, key, getattr(cli, key))
    if cli.render_stride < 1 or cli.num_frames < 1 or args.chunk_size < 1 or args.num_source_views < 1:
        raise ValueError("--render_stride, --num_frames, --chunk_size and --num_source_views must be >= 1")
    entry = cli.dataset or (args.val_datasets or args.train_datasets)[0]
    name, root = parse_dataset_entry(entry, cli.data_root if cli.data_root is not None else args.data_root)
    selection = dataset_spec(name).selection
    handles = list_scene_handles(name, root, "all", [cli.scene] if cli.scene else None)
    scene = handles[0].load()
    if cli.views is None:
        views = scene.splits.get("test", list(range(len(scene))))
    else:
        bad = [i for i in cli.views if not 0 <= i < len(scene)]
        if bad:
            raise ValueError(f"--views {bad}: scene {scene.name} has views 0..{len(scene) - 1}")
        views = list(cli.views)
    device = resolve_device(cli.device)
    configure_cpu(device, args.num_threads, args.reuse_freed_memory)
    checkpoint = cli.checkpoint or Path(cli.run) / "ckpt" / "latest.pt"
    model, step = load_trained_model(args, checkpoint, device)
    return _RenderSetup(args, model, step, Path(checkpoint), name, selection, scene, views, device)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _progress(items, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=description, dynamic_ncols=True)


class _SourceCache:
    """Source views loaded once (at the run's resolution) and moved to the device."""

    def __init__(self, scene, max_image_side: int, device: torch.device):
        self.scene, self.max_image_side, self.device = scene, max_image_side, device
        self.loaded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, ids: list[int]) -> Sources:
        from ibrnet.data import load_view

        for i in ids:
            if i not in self.loaded:
                image, K = load_view(self.scene.views[i], self.max_image_side)
                self.loaded[i] = (torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(K).float())
        images = torch.stack([self.loaded[i][0] for i in ids]).to(self.device)
        K = torch.stack([self.loaded[i][1] for i in ids]).to(self.device)
        cams = torch.from_numpy(np.stack([self.scene.views[i].cam_from_world for i in ids])).float().to(self.device)
        return Sources(images, K, cams)


def render_views(setup: _RenderSetup, out: Path, stride: int, progress: bool) -> list[dict]:
    """Render the chosen views with their nearest train-split sources; PNGs into out/views/."""
    from ibrnet.data import evaluation_views, load_view
    from ibrnet.train import depth_to_rgb, psnr_from_mse
    from multiview.io.images import write_image

    args, scene, device = setup.args, setup.scene, setup.device
    cache = _SourceCache(scene, args.max_image_side, device)
    records = []
    pairs = evaluation_views(scene, args.num_source_views, setup.selection, setup.views)
    for target, sources in _progress(pairs, progress, "views"):
        view = scene.views[target]
        truth, K = load_view(view, args.max_image_side)
        rendered = render_image(setup.model, torch.from_numpy(K).float().to(device),
                                torch.from_numpy(view.cam_from_world).float().to(device), truth.shape[0],
                                truth.shape[1], view.near, view.far, cache(sources), args.chunk_size, stride)
        truth = truth[::stride, ::stride]
        valid = rendered.valid > 0
        stem = out / "views" / f"{target:04d}_{_safe(view.name)}"
        write_image(f"{stem}_fine.png", np.clip(rendered.best, 0, 1))
        write_image(f"{stem}_coarse.png", np.clip(rendered.coarse, 0, 1))
        write_image(f"{stem}_depth.png", depth_to_rgb(rendered.depth, valid))
        write_image(f"{stem}_depth16.png", depth_to_uint16(rendered.depth, valid))
        records.append({"index": target, "name": view.name, "sources": [int(i) for i in sources],
                        "psnr_fine": psnr_from_mse(float(np.mean((np.clip(rendered.best, 0, 1) - truth) ** 2))),
                        "psnr_coarse": psnr_from_mse(float(np.mean((np.clip(rendered.coarse, 0, 1) - truth) ** 2)))})
    return records


def render_path(setup: _RenderSetup, out: Path, kind: str, num_frames: int, fps: float, video_format: str,
                stride: int, progress: bool) -> dict:
    """Render a camera-path video (+ depth video) with per-frame nearest sources; returns a summary."""
    from ibrnet.camera_path import make_path
    from ibrnet.data import load_view
    from multiview.data.view_selection import nearest_views

    args, scene, device = setup.args, setup.scene, setup.device
    pool = scene.splits.get("train", list(range(len(scene))))
    if len(pool) < 2:
        raise ValueError(f"scene {scene.name}: a camera path needs at least 2 train-split views, got {len(pool)}")
    if kind == "auto":
        kind = "orbit" if setup.selection == "vector" else "spiral"
    cams = scene.stack_cam_from_world()[pool]
    near = float(min(scene.views[i].near for i in pool))
    far = float(max(scene.views[i].far for i in pool))
    path = make_path(kind, cams, num_frames, near, far)
    reference, K = load_view(scene.views[pool[0]], args.max_image_side)
    height, width = reference.shape[:2]
    K_t = torch.from_numpy(K).float().to(device)
    cache = _SourceCache(scene, args.max_image_side, device)
    center = scene.meta.get("center", (0.0, 0.0, 0.0))
    colours, depths, valids = [], [], []
    for cam_from_world in _progress(path, progress, f"{kind} path"):
        ids = [pool[i] for i in nearest_views(cam_from_world, cams, args.num_source_views, setup.selection,
                                              None, center)]
        frame_near = float(min(scene.views[i].near for i in ids))
        frame_far = float(max(scene.views[i].far for i in ids))
        rendered = render_image(setup.model, K_t, torch.from_numpy(cam_from_world).float().to(device), height, width,
                                frame_near, frame_far, cache(ids), args.chunk_size, stride)
        colours.append(np.clip(rendered.best, 0, 1))
        depths.append(rendered.depth)
        valids.append(rendered.valid > 0)
    all_valid = np.concatenate([d[v] for d, v in zip(depths, valids)])
    low, high = np.percentile(all_valid, [2, 98]) if all_valid.size else (0.0, 1.0)
    video = out / f"path_{kind}.{video_format}"
    depth_video = out / f"path_{kind}_depth.{video_format}"
    write_video(video, colours, fps)
    write_video(depth_video, [colorize_depth(d, v, low, high) for d, v in zip(depths, valids)], fps)
    np.save(out / f"path_{kind}_cameras.npy", path)
    return {"kind": kind, "num_frames": num_frames, "fps": fps, "video": video.name, "depth_video": depth_video.name,
            "depth_range": [float(low), float(high)], "size": [int(height), int(width)]}


def render_run(cli: argparse.Namespace, setup: _RenderSetup | None = None) -> dict:
    """Render what the parsed CLI arguments ask for; returns the summary also written to out/render.json."""
    setup = setup or _prepare(cli)
    out = Path(cli.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run": str(cli.run), "checkpoint": str(setup.checkpoint), "step": setup.step,
               "dataset": setup.dataset, "scene": setup.scene.name, "render_stride": cli.render_stride,
               "max_image_side": setup.args.max_image_side, "num_source_views": setup.args.num_source_views,
               "depth16": "round(1000 * depth) in the dataset's units, clipped to 65535, 0 = invalid ray"}
    summary["views"] = render_views(setup, out, cli.render_stride, cli.progress) if setup.views else []
    if cli.path != "none":
        summary["path"] = render_path(setup, out, cli.path, cli.num_frames, cli.fps, cli.format, cli.render_stride,
                                      cli.progress)
    (out / "render.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = build_render_parser()
    cli = parser.parse_args(argv)
    try:
        setup = _prepare(cli)
    except (FileNotFoundError, ValueError) as error:  # bad paths, names or indices: one clear line
        parser.error(str(error))
    summary = render_run(cli, setup)
    for record in summary["views"]:
        print(f"view {record['index']} ({record['name']}): PSNR fine {record['psnr_fine']:.2f} dB, "
              f"coarse {record['psnr_coarse']:.2f} dB")
    if "path" in summary:
        print(f"video: {Path(cli.out) / summary['path']['video']}")
    print(f"wrote {Path(cli.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
