"""Evaluate a trained IBRNet run with the original IBRNet protocol: PSNR / SSIM / LPIPS per image.

    python eval/eval_ibrnet.py --run runs/EXP --datasets deepvoxels nerf_synthetic co3d llff_test
        [--checkpoint PATH] [--data_root DIR] [--dataset_folders NAME=FOLDER ...] [--scenes [DATASET:]SCENE ...]
        [--co3d_scene_list FILE|all] [--num_source_views 10] [--chunk_size N] [--max_views_per_scene N]
        [--lpips_net vgg|alex] [--no_lpips] [--device auto|cpu|cuda] [--out RUN/eval]
    python eval/eval_ibrnet.py --make_co3d_list CO3D_ROOT --num_sequences 88 [--categories ...]
        [--list_seed 0] --list_out configs/eval/co3d_scenes.txt

The run's `config.txt` is re-parsed (model options, data root) and `ckpt/latest.pt` (or `--checkpoint`) is
loaded. Datasets are registry names (`multiview.data.registry`), `NAME@FOLDER` for a folder under the data
root other than the default, or the aliases `blender` (= nerf_synthetic) and `llff` (= llff_test, the 8
forward-facing evaluation scenes). The protocol (`ibrnet.md` §9), recorded in `summary.json`:

* targets: the reader's "test" split of each scene: NeRF-synthetic `transforms_test.json[::8]`; DeepVoxels
  `test/<scene>[::10]`; LLFF every 8th image (0, 8, 16, ...) of `images_4`; CO3D every 8th frame of each
  listed sequence. Sources: the `--num_source_views` (10) views nearest to the target from the scene's
  "train" split by the dataset's rule ('vector' for object-centric sets, 'dist' for forward-facing),
  target excluded — a deterministic set. Other registry datasets use their "test" split the same way
  (every view when a scene has none).
* full dataset resolution, deterministic ray sampling (`det=True`), the run's coarse/fine sample counts;
  coarse pixels of invalid rays painted white (as the original); metrics on the fine output, prediction
  clipped to [0, 1], ground truth as read (NeRF-synthetic RGBA composited on white), no crop, no mask.
* metrics (`multiview.metrics.image`): PSNR (max 1), SSIM (`tf.image.ssim`: Gaussian 11x11 σ 1.5, valid
  region), LPIPS v0.1 (VGG by default, inputs mapped to [−1, 1]); dataset and scene scores are means of
  per-image values. Without cached VGG/AlexNet ImageNet weights and no network, the script stops with one
  message naming the file to put in the torch cache, unless `--no_lpips` is given (results then say LPIPS
  was not computed).

Outputs in `--out` (default `<run>/eval`): `per_image.json` / `per_image.csv` (dataset, scene, view, view_name,
psnr, ssim, lpips), `per_scene.csv`, `per_dataset.csv` (means over images; also the mean of scene means),
`table.md` (the paper's Table-3 layout for this run), `summary.json` (every protocol choice, checkpoint step,
device, commit, command, means), and `images/<dataset>/<scene>/<view>_<name>_{fine,coarse,error,depth,depth16}.png`
(error = |pred − gt| averaged over channels, colour-mapped with a fixed range; depth16 = round(1000·depth)).

`--make_co3d_list` writes a CO3D scene-list file with our default rule
(`multiview.data.readers.co3d.select_co3d_eval_sequences`) and exits.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so `--help` and `--make_co3d_list` start fast
    import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CO3D_SCENE_LIST = REPO / "configs" / "eval" / "co3d_scenes.txt"
DATASET_ALIASES = {"blender": "nerf_synthetic", "llff": "llff_test"}
METRICS = ("psnr", "ssim", "lpips")
ERROR_MAP_RANGE = (0.0, 0.25)
ERROR_MAP_COLORMAP = "inferno"

# The original protocol per dataset (targets and ground truth); sources are always the nearest train-split views.
DATASET_PROTOCOLS = {
    "nerf_synthetic": {
        "paper_name": "Realistic Synthetic 360° (Blender)",
        "table_name": "Blender",
        "targets": "transforms_test.json frames [::8] (testskip 8: 25 of 200 per scene in the release)",
        "source_pool": "transforms_train.json views (100 per scene in the release)",
        "ground_truth": "RGBA composited on white (rgb*alpha + 1 - alpha), as IBRNet's loader",
        "resolution": "800x800 in the release",
    },
    "deepvoxels": {
        "paper_name": "Diffuse Synthetic 360° (DeepVoxels)",
        "table_name": "DeepVoxels",
        "targets": "test/<scene>/rgb views [::10] (testskip 10)",
        "source_pool": "train/<scene>/rgb views",
        "ground_truth": "RGB files as stored (white background baked into the release's images)",
        "resolution": "512x512 in the release",
    },
    "llff_test": {
        "paper_name": "Real Forward-Facing (LLFF)",
        "table_name": "LLFF",
        "targets": "every 8th image (0, 8, 16, ...) of images_4 (llffhold 8)",
        "source_pool": "the other images of the scene",
        "ground_truth": "RGB files as stored",
        "resolution": "images_4 (1008x756 in the release)",
    },
    "co3d": {
        "paper_name": "CO3D",
        "table_name": "CO3D",
        "targets": "every 8th frame (0, 8, 16, ...) of each listed sequence (holdout_every 8; ours, formats.md §2.7)",
        "source_pool": "the other frames of the sequence",
        "ground_truth": "RGB JPEGs as stored (no mask)",
        "resolution": "as stored",
    },
}
GENERIC_PROTOCOL = {
    "targets": "the reader's 'test' split of each scene (every view when a scene has none)",
    "source_pool": "the reader's 'train' split of the scene (every view when a scene has none)",
    "ground_truth": "as read by the dataset's reader",
    "resolution": "as stored",
}


# --- CO3D scene lists -----------------------------------------------------------------------------------------


def read_scene_list(path: str | Path) -> list[str]:
    """Scene names of a list file: one per line, '#' starts a comment, blank lines ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scene list file not found")
    names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"{path}: the scene list is empty")
    return names


def co3d_categories(root: str | Path) -> list[str]:
    """Sorted category folders of a CO3D root (those holding sequence_annotations.jgz)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: CO3D root not found")
    categories = sorted(p.parent.name for p in root.glob("*/sequence_annotations.jgz"))
    if not categories:
        raise ValueError(f"{root}: no CO3D category folder (<category>/sequence_annotations.jgz) found")
    return categories


def make_co3d_scene_list(root: str | Path, num_sequences: int, categories: list[str] | None = None,
                         seed: int = 0) -> list[str]:
    """Our default CO3D evaluation scenes as '<category>/<sequence_name>' (`select_co3d_eval_sequences`)."""
    from multiview.data.readers.co3d import select_co3d_eval_sequences

    categories = categories or co3d_categories(root)
    return [f"{category}/{sequence}"
            for category, sequence in select_co3d_eval_sequences(root, categories, num_sequences, seed)]


def co3d_scene_list_text(root: str | Path, entries: list[str], num_sequences: int, categories: list[str],
                         seed: int) -> str:
    """The list file: a header stating the rule, how the list was made and how to remake it, then the entries."""
    header = f"""\
# CO3D evaluation scenes for eval/eval_ibrnet.py (--co3d_scene_list), one <category>/<sequence_name> per line.
#
# The MVImgNet paper evaluates on "88 CO3D scenes" but does not say which: that list, and its source/target
# protocol, are UNKNOWN to us (shared reference formats.md §2.7). This list follows OUR rule instead
# (multiview.data.readers.co3d.select_co3d_eval_sequences): within each category, sequences are ranked by
# viewpoint_quality_score (highest first, missing scores last, ties in a seeded random order); categories
# take turns in a seeded random order, each adding its next-ranked sequence, until N sequences are chosen.
# Evaluation: every 8th frame (0, 8, 16, ...) of a sequence is a target, its sources are the 10 nearest
# other frames by viewing angle ('vector').
#
# This list: root {root}, N = {num_sequences}, seed {seed}, categories {" ".join(categories)}
# Remake it for a real CO3D root (e.g. 88 sequences over all its categories) with:
#   python eval/eval_ibrnet.py --make_co3d_list data/co3d --num_sequences 88 --list_seed 0 \\
#       --list_out configs/eval/co3d_scenes.txt
"""
    return header + "\n".join(entries) + "\n"


# --- planning: datasets, scenes, protocol ------------------------------------------------------------------------


def canonical_dataset(name: str) -> str:
    return DATASET_ALIASES.get(name, name)


def parse_dataset_folders(entries: list[str] | None) -> dict[str, str]:
    folders = {}
    for entry in entries or []:
        name, sep, folder = entry.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--dataset_folders entries look like NAME=FOLDER, got {entry!r}")
        folders[canonical_dataset(name)] = folder
    return folders


def parse_scene_filters(entries: list[str] | None, datasets: list[str]) -> dict[str, list[str]]:
    """--scenes entries 'DATASET:SCENE' (or plain 'SCENE' when one dataset is evaluated) -> {dataset: [scenes]}."""
    filters: dict[str, list[str]] = {}
    for entry in entries or []:
        dataset, sep, scene = entry.rpartition(":")
        if not sep:
            if len(datasets) != 1:
                raise ValueError(f"--scenes {entry!r}: with several datasets name scenes as DATASET:SCENE")
            dataset, scene = datasets[0], entry
        dataset = canonical_dataset(dataset)
        if dataset not in datasets:
            raise ValueError(f"--scenes {entry!r}: dataset {dataset!r} is not in --datasets {datasets}")
        filters.setdefault(dataset, []).append(scene)
    return filters


def plan_datasets(cli: argparse.Namespace, data_root: Path) -> list[dict]:
    """For each --datasets entry: name, folder, scene handles and its protocol (errors before any rendering)."""
    from multiview.data.registry import dataset_spec, list_scene_handles

    folders = parse_dataset_folders(cli.dataset_folders)
    entries = []
    for entry in cli.datasets:
        raw_name, _, folder = entry.partition("@")
        name = canonical_dataset(raw_name)
        spec = dataset_spec(name)
        entries.append((name, folder or folders.get(name) or spec.folder, raw_name))
    names = [name for name, _, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"--datasets names a dataset twice: {cli.datasets}")
    unused = sorted(set(folders) - set(names))
    if unused:
        raise ValueError(f"--dataset_folders names datasets that are not evaluated: {unused}")
    filters = parse_scene_filters(cli.scenes, names)
    plans = []
    for name, folder, raw_name in entries:
        scene_list = None
        scenes = filters.get(name)
        if name == "co3d" and scenes is None and cli.co3d_scene_list != "all":
            scene_list = Path(cli.co3d_scene_list)
            scenes = read_scene_list(scene_list)
        root = data_root / folder
        try:
            handles = list_scene_handles(name, root, cli.scene_split, scenes)
        except ValueError as error:
            if scene_list is not None:
                raise ValueError(f"{error}. The CO3D scene list {scene_list} does not fit this CO3D root: make one "
                                 f"with `python eval/eval_ibrnet.py --make_co3d_list {root} --num_sequences N "
                                 f"--list_out FILE` and pass --co3d_scene_list FILE (or 'all')") from error
            raise
        protocol = dict(DATASET_PROTOCOLS.get(name, GENERIC_PROTOCOL))
        protocol.update(folder=str(root), requested_as=raw_name, selection_rule=dataset_spec(name).selection,
                        scene_split=cli.scene_split, scenes=[h.name for h in handles],
                        scene_list=None if scene_list is None else str(scene_list))
        plans.append({"name": name, "root": root, "handles": handles, "protocol": protocol})
    return plans


# --- rendering and metrics ------------------------------------------------------------------------------------


class SourceCache:
    """A scene's source views loaded once, as tensors on the device."""

    def __init__(self, scene, max_image_side: int, device: torch.device):
        self.scene, self.max_image_side, self.device = scene, max_image_side, device
        self.loaded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, ids: list[int]):
        import torch

        from ibrnet.data import load_view
        from ibrnet.model import Sources

        for i in ids:
            if i not in self.loaded:
                image, K = load_view(self.scene.views[i], self.max_image_side)
                self.loaded[i] = (torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(K).float())
        sizes = {tuple(self.loaded[i][0].shape) for i in ids}
        if len(sizes) != 1:
            raise ValueError(f"scene {self.scene.name}: source views of different sizes {sorted(sizes)}")
        images = torch.stack([self.loaded[i][0] for i in ids]).to(self.device)
        K = torch.stack([self.loaded[i][1] for i in ids]).to(self.device)
        cams = torch.from_numpy(np.stack([self.scene.views[i].cam_from_world for i in ids])).float().to(self.device)
        return Sources(images, K, cams)


def error_map(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(H, W, 3) colour map of |pred − gt| averaged over channels, fixed range ERROR_MAP_RANGE."""
    from matplotlib import colormaps

    error = np.abs(pred - truth).mean(axis=-1)
    low, high = ERROR_MAP_RANGE
    return colormaps[ERROR_MAP_COLORMAP](np.clip((error - low) / (high - low), 0, 1))[..., :3].astype(np.float32)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def evaluate_scene(model, handle, metrics, cli, chunk_size: int, device: torch.device, out: Path) -> list[dict]:
    """Render every target of one scene, score it, save its images; one record per target."""
    import torch
    from tqdm import tqdm

    from ibrnet.data import evaluation_views, load_view
    from ibrnet.render import depth_to_uint16, render_image
    from ibrnet.train import depth_to_rgb
    from multiview.data.registry import dataset_spec
    from multiview.io.images import write_image
    from multiview.metrics.image import psnr

    scene = handle.load()
    selection = dataset_spec(handle.dataset).selection
    pairs = evaluation_views(scene, cli.num_source_views, selection)
    if cli.max_views_per_scene:
        pairs = pairs[: cli.max_views_per_scene]
    if not pairs:
        raise ValueError(f"{handle.dataset}/{handle.name}: the scene has no test views")
    if any(len(sources) == 0 for _, sources in pairs):
        raise ValueError(f"{handle.dataset}/{handle.name}: a target has no source view (the train split is empty)")
    cache = SourceCache(scene, cli.max_image_side, device)
    records = []
    for target, sources in tqdm(pairs, desc=f"{handle.dataset}/{handle.name}", disable=not cli.progress,
                                dynamic_ncols=True):
        start = time.perf_counter()
        view = scene.views[target]
        truth, K = load_view(view, cli.max_image_side)
        rendered = render_image(model, torch.from_numpy(K).float().to(device),
                                torch.from_numpy(view.cam_from_world).float().to(device), truth.shape[0],
                                truth.shape[1], view.near, view.far, cache(sources), chunk_size, stride=1,
                                deterministic=True)
        pred = np.clip(rendered.best, 0.0, 1.0)
        coarse = np.clip(rendered.coarse, 0.0, 1.0)
        scores = metrics(pred, truth)
        if cli.save_images:
            stem = out / "images" / _safe(handle.dataset) / _safe(handle.name) / f"{target:04d}_{_safe(view.name)}"
            valid = rendered.valid > 0
            write_image(f"{stem}_fine.png", pred)
            write_image(f"{stem}_coarse.png", coarse)
            write_image(f"{stem}_error.png", error_map(pred, truth))
            write_image(f"{stem}_depth.png", depth_to_rgb(rendered.depth, valid))
            write_image(f"{stem}_depth16.png", depth_to_uint16(rendered.depth, valid))
        records.append({"dataset": handle.dataset, "scene": handle.name, "view": int(target), "view_name": view.name,
                        **scores, "psnr_coarse": psnr(coarse, truth), "sources": [int(i) for i in sources],
                        "height": int(truth.shape[0]), "width": int(truth.shape[1]), "near": float(view.near),
                        "far": float(view.far), "background": view.background,
                        "seconds": round(time.perf_counter() - start, 3)})
    return records


# --- aggregation and result files ---------------------------------------------------------------------------------


def _mean(values: list) -> float | None:
    """Mean of the values, None when any is None (a metric that was not computed)."""
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def aggregate(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(per_scene, per_dataset) means of per-image values; datasets also get the mean of their scene means."""
    per_scene, per_dataset = [], []
    scene_keys = list(dict.fromkeys((r["dataset"], r["scene"]) for r in records))
    for dataset, scene in scene_keys:
        rows = [r for r in records if (r["dataset"], r["scene"]) == (dataset, scene)]
        per_scene.append({"dataset": dataset, "scene": scene, "num_views": len(rows),
                          **{m: _mean([r[m] for r in rows]) for m in METRICS}})
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        scenes = [s for s in per_scene if s["dataset"] == dataset]
        per_dataset.append({"dataset": dataset, "num_scenes": len(scenes), "num_views": len(rows),
                            **{m: _mean([r[m] for r in rows]) for m in METRICS},
                            **{f"scene_mean_{m}": _mean([s[m] for s in scenes]) for m in METRICS}})
    return per_scene, per_dataset


def _cell(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows([[_cell(row.get(c)) for c in columns] for row in rows])


def _json_safe(value):
    """JSON without NaN/Infinity tokens: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(_json_safe(value), indent=2, ensure_ascii=False) + "\n")


def table_markdown(run_name: str, per_dataset: list[dict], summary: dict) -> str:
    """The paper's Table-3 layout for one run: column groups = datasets, PSNR↑ SSIM↑ LPIPS↓ each."""
    def fmt(value, digits):
        return "–" if value is None else f"{value:.{digits}f}"

    names = [DATASET_PROTOCOLS.get(d["dataset"], {}).get("table_name", d["dataset"]) for d in per_dataset]
    lpips_net = summary["protocol"]["metrics"]["lpips"].get("net", "not computed")
    lines = [f"<!-- {summary['command']} | commit {summary['commit']} | device {summary['device']} | "
             f"step {summary['step']} | LPIPS: {lpips_net} -->",
             "| run | " + " | ".join(f"{n} PSNR↑ | {n} SSIM↑ | {n} LPIPS↓" for n in names) + " |",
             "|---|" + "---|---|---|" * len(names),
             f"| {run_name} | " + " | ".join(f"{fmt(d['psnr'], 2)} | {fmt(d['ssim'], 3)} | {fmt(d['lpips'], 3)}"
                                          for d in per_dataset) + " |"]
    return "\n".join(lines) + "\n"


def write_results(out: Path, records: list[dict]) -> tuple[list[dict], list[dict]]:
    per_scene, per_dataset = aggregate(records)
    write_json(out / "per_image.json", records)
    write_csv(out / "per_image.csv", records, ["dataset", "scene", "view", "view_name", *METRICS])
    write_csv(out / "per_scene.csv", per_scene, ["dataset", "scene", "num_views", *METRICS])
    write_csv(out / "per_dataset.csv", per_dataset,
              ["dataset", "num_scenes", "num_views", *METRICS, *(f"scene_mean_{m}" for m in METRICS)])
    return per_scene, per_dataset


def commit_hash() -> str | None:
    """`git rev-parse HEAD` of the repository holding this script, or None (not a git checkout, no git)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


# --- the CLI -------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from multiview.engine.options import add_reuse_freed_memory_option

    parser = argparse.ArgumentParser(prog="python eval/eval_ibrnet.py", allow_abbrev=False,
                                     description="Evaluate an IBRNet run with the original IBRNet protocol "
                                                 "(see the module docstring for the protocol and the outputs).")
    parser.add_argument("--run", type=Path, help="run directory holding config.txt and ckpt/")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: <run>/ckpt/latest.pt)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="datasets to evaluate: NAME or NAME@FOLDER (deepvoxels nerf_synthetic co3d llff_test; "
                             "aliases: blender, llff)")
    parser.add_argument("--data_root", type=Path, default=None, help="root of the dataset folders (default: the run's)")
    parser.add_argument("--dataset_folders", nargs="*", default=None, metavar="NAME=FOLDER",
                        help="folder of a dataset under the data root (default: the registry's)")
    parser.add_argument("--scenes", nargs="*", default=None, metavar="[DATASET:]SCENE",
                        help="evaluate only these scenes (DATASET:SCENE; plain SCENE with a single dataset); "
                             "datasets not named use all their scenes")
    parser.add_argument("--scene_split", choices=["train", "test", "all"], default="all",
                        help="which scenes of datasets with a scene-level split (e.g. mvimgnet) to use")
    parser.add_argument("--co3d_scene_list", default=str(DEFAULT_CO3D_SCENE_LIST),
                        help="CO3D scenes file, one <category>/<sequence> per line ('all' = every sequence found; "
                             "ignored when --scenes names co3d scenes)")
    parser.add_argument("--num_source_views", type=int, default=10, help="nearest train-split source views per target")
    parser.add_argument("--chunk_size", type=int, default=None, help="rays per chunk (default: the run's)")
    parser.add_argument("--max_views_per_scene", type=int, default=0,
                        help="evaluate only the first N targets of each scene (0 = all; N > 0 is NOT the protocol)")
    parser.add_argument("--max_image_side", type=int, default=0,
                        help="shrink images so the longer side is at most this (0 = full resolution, the protocol)")
    parser.add_argument("--white_background", action=argparse.BooleanOptionalAction, default=None,
                        help="composite rendered rays on white (default: the run's setting; the original eval "
                             "renders without it)")
    parser.add_argument("--lpips_net", choices=["vgg", "alex"], default="vgg", help="LPIPS backbone (IBRNet: vgg)")
    parser.add_argument("--no_lpips", action="store_true", help="do not compute LPIPS (results say so)")
    parser.add_argument("--lpips_random_backbone", action="store_true",
                        help="TESTS ONLY: LPIPS with random backbone and heads (values are meaningless)")
    parser.add_argument("--save_images", action=argparse.BooleanOptionalAction, default=True,
                        help="write rendered images, error maps and depth maps")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = cuda when available, else cpu")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: the run's)")
    add_reuse_freed_memory_option(parser)
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <run>/eval)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    group = parser.add_argument_group("CO3D scene list (--make_co3d_list mode: write the list and exit)")
    group.add_argument("--make_co3d_list", type=Path, default=None, metavar="CO3D_ROOT",
                       help="write a CO3D scene list made on this CO3D root with our rule, then exit")
    group.add_argument("--num_sequences", type=int, default=88, help="sequences in the list")
    group.add_argument("--categories", nargs="+", default=None, help="categories to draw from (default: all)")
    group.add_argument("--list_seed", type=int, default=0, help="seed of the rule's tie-breaks and category order")
    group.add_argument("--list_out", type=Path, default=Path("co3d_scenes.txt"), help="list file to write")
    return parser


def make_list(cli: argparse.Namespace) -> Path:
    categories = cli.categories or co3d_categories(cli.make_co3d_list)
    entries = make_co3d_scene_list(cli.make_co3d_list, cli.num_sequences, categories, cli.list_seed)
    cli.list_out.parent.mkdir(parents=True, exist_ok=True)
    cli.list_out.write_text(co3d_scene_list_text(cli.make_co3d_list, entries, cli.num_sequences, categories,
                                                 cli.list_seed))
    return cli.list_out


def prepare(cli: argparse.Namespace) -> dict:
    """Everything that can fail on user input, before any rendering: options, datasets, scenes, LPIPS, model."""

    from ibrnet.render import load_run_options, load_trained_model
    from multiview.engine.device import configure_cpu, resolve_device
    from multiview.metrics.image import ImageMetrics

    if cli.run is None or not cli.datasets:
        raise ValueError("--run and --datasets are required (or use --make_co3d_list)")
    if cli.num_source_views < 1 or cli.max_views_per_scene < 0 or cli.max_image_side < 0:
        raise ValueError("--num_source_views must be >= 1, --max_views_per_scene and --max_image_side >= 0")
    args = load_run_options(cli.run)
    chunk_size = cli.chunk_size or args.chunk_size
    if chunk_size < 1:
        raise ValueError(f"--chunk_size must be >= 1, got {chunk_size}")
    data_root = Path(cli.data_root if cli.data_root is not None else args.data_root)
    plans = plan_datasets(cli, data_root)
    device = resolve_device(cli.device)
    configure_cpu(device, cli.num_threads if cli.num_threads is not None else args.num_threads,
                  cli.reuse_freed_memory)
    metrics = ImageMetrics(None if cli.no_lpips else cli.lpips_net,
                           "random" if cli.lpips_random_backbone else "imagenet", device)
    checkpoint = cli.checkpoint or cli.run / "ckpt" / "latest.pt"
    model, step = load_trained_model(args, checkpoint, device)
    if cli.white_background is not None:
        model.white_background = cli.white_background
    return {"args": args, "plans": plans, "device": device, "metrics": metrics, "model": model, "step": step,
            "checkpoint": checkpoint, "chunk_size": chunk_size, "data_root": data_root}


def evaluate(cli: argparse.Namespace, setup: dict | None = None, argv: list[str] | None = None) -> dict:
    """Run the evaluation the parsed CLI asks for; returns the summary also written to <out>/summary.json."""
    import torch

    setup = setup or prepare(cli)
    started = time.time()
    out = Path(cli.out or cli.run / "eval")
    out.mkdir(parents=True, exist_ok=True)
    model, metrics, device, args = setup["model"], setup["metrics"], setup["device"], setup["args"]
    records: list[dict] = []
    datasets = {}
    for plan in setup["plans"]:
        for handle in plan["handles"]:
            records += evaluate_scene(model, handle, metrics, cli, setup["chunk_size"], device, out)
            write_results(out, records)  # partial results survive an interrupted evaluation
        protocol = plan["protocol"]
        backgrounds = sorted({r["background"] or "none (RGB files as stored)" for r in records
                              if r["dataset"] == plan["name"]})
        protocol["view_backgrounds"] = backgrounds
        datasets[plan["name"]] = protocol
    per_scene, per_dataset = write_results(out, records)
    resolution = ("full dataset resolution (protocol)" if not cli.max_image_side
                  else f"longer side shrunk to {cli.max_image_side} px (NOT the original protocol)")
    summary = {
        "run": str(cli.run), "checkpoint": str(setup["checkpoint"]), "step": setup["step"],
        "command": " ".join(["python", "eval/eval_ibrnet.py", *(sys.argv[1:] if argv is None else argv)]),
        "commit": commit_hash(), "device": str(device), "torch": torch.__version__,
        "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1), "data_root": str(setup["data_root"]),
        "model": {key: getattr(args, key) for key in ("num_coarse_samples", "num_fine_samples", "inverse_depth",
                                                      "anti_alias_pooling", "use_sdpa")}
        | {"white_background": model.white_background},
        "protocol": {
            "targets": "the reader's 'test' split per scene (per dataset below)",
            "sources": f"{cli.num_source_views} nearest views of the scene's 'train' split by the dataset's "
                       "selection rule, target excluded, nearest first (deterministic set)",
            "resolution": resolution,
            "max_views_per_scene": cli.max_views_per_scene or "all (protocol)",
            "sampling": "deterministic (det=True): coarse + fine samples as in the run's config",
            "render_white_background": model.white_background,
            "invalid_rays": "coarse pixels of invalid rays painted white (render_image); fine output as rendered",
            "evaluated_output": "fine" if model.num_fine_samples > 0 else "coarse (the model has no fine network)",
            "prediction": "clipped to [0, 1]", "ground_truth": "as read (per dataset below); no crop, no mask",
            "scores": "scene and dataset scores = mean of per-image values (scene_mean_* = mean of scene means)",
            "metrics": metrics.protocol, "chunk_size": setup["chunk_size"],
            "datasets": datasets,
            "error_maps": f"mean over channels of |pred - gt|, colormap {ERROR_MAP_COLORMAP}, range "
                          f"{list(ERROR_MAP_RANGE)} (clipped)",
            "depth_maps": "_depth.png: grey, near = bright, 2-98 percentile range; _depth16.png: round(1000*depth) "
                          "uint16 in dataset units, 0 = invalid ray",
        },
        "per_dataset": per_dataset, "per_scene": per_scene,
        "files": {"per_image": ["per_image.json", "per_image.csv"], "per_scene": "per_scene.csv",
                  "per_dataset": "per_dataset.csv", "table": "table.md", "images": "images/"},
    }
    if metrics.lpips_model is None:
        summary["lpips"] = "not computed (--no_lpips)"
    (out / "table.md").write_text(table_markdown(Path(cli.run).name, per_dataset, summary))
    write_json(out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    cli = parser.parse_args(argv)
    if cli.make_co3d_list is not None:
        try:
            path = make_list(cli)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        print(f"wrote {path}")
        return 0
    from multiview.vision.backbones import PretrainedWeightsMissing

    try:
        setup = prepare(cli)
    except PretrainedWeightsMissing as error:
        parser.exit(2, f"error: LPIPS cannot be computed: {error}\nOr pass --no_lpips to evaluate without LPIPS "
                       f"(the results then say LPIPS was not computed).\n")
    except (FileNotFoundError, ValueError, KeyError) as error:
        parser.error(str(error))
    summary = evaluate(cli, setup, argv)
    for row in summary["per_dataset"]:
        lpips_text = "not computed" if row["lpips"] is None else f"{row['lpips']:.4f}"
        print(f"{row['dataset']}: {row['num_views']} views in {row['num_scenes']} scenes  PSNR {row['psnr']:.2f}  "
              f"SSIM {row['ssim']:.4f}  LPIPS {lpips_text}")
    print(f"wrote {Path(cli.out or cli.run / 'eval')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
