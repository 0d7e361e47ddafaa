"""Evaluate a JDACS/MVSNet run on DTU (training layout): per-image depth metrics, depth maps, fused point clouds.

    python -m jdacs.evaluate --run runs/jdacs_ft_dtu --split test
    python -m jdacs.evaluate --config configs/jdacs/eval_dtu.txt --run runs/jdacs_ft_dtu   # the paper protocol

The run's saved `config.txt` is re-parsed (`jdacs.options.build_jdacs_parser`) for the model and data settings
(refinement, normalisation, image size, views, D, interval scale, data root and dataset folder), and
`ckpt/latest.pt` (or `--checkpoint`) supplies the weights. Options here override the run's values.

Protocol (`summary.json["protocol"]` records every value used):
* Samples: the DTU training layout (640x512 images, 1/4-resolution ground truth) of the official scan list of
  `--split` (test: 22 scans, val: 18, train: 79) restricted to the scans present under the data root (the
  missing ones are listed in the log and in summary.json), or `--scans`. One sample per (scan, reference view,
  lighting) in that order; sources = the first num_views − 1 of pair.txt.
* Lightings: `--lights 3` (default: one lighting, the reader's default and the only one fusion uses — 7x
  cheaper) or `--lights all` (all 7, what JDACS's in-training validation and MVImgNet's Table 5 average over:
  22 x 49 x 7 = 7,546 test samples), or any single index 0..6.
* Metrics (`multiview.metrics.depth`): per image, over the ground-truth-valid pixels (depth_visual mask) at the
  network's output resolution (1/4 of the input, no upsampling): abs error (mm) and accuracy <= 2/4/8 mm (% of
  the valid pixels); the summary is the mean over images (each image weighs the same), also per scan.
* Outputs under `--out` (default <run>/eval/<split>): `per_image.json`, `per_image.csv`, `summary.json` (means,
  per-scan means, the protocol, fusion counts, and the command, commit, device and time of the evaluation);
  per image `scan{N}/depth_est/{vid:08d}_l{light}.{pfm,png}` and `scan{N}/confidence/{vid:08d}_l{light}.{pfm,png}`
  (PFM: float32 values at the output resolution; PNG: matplotlib colour maps — depth over the hypothesis range
  with "viridis", confidence over [0, 1] with "magma"); per scan `fused/scan{N}.ply`.
* Fusion (`--fuse`, default on): `jdacs.fusion.fuse_scan` (MVSNet_pytorch's filter: photometric confidence >
  `--prob_threshold`, geometric consistency in >= `--num_consistent` of the reference's pair.txt sources with
  reprojection < `--reproj_threshold_px` pixels of the depth map and relative depth difference <
  `--rel_depth_threshold`), on the depth maps of every view of a scan at the fusion lighting (light 3 with
  `--lights all`, else the evaluated one), coloured by the input images area-downsampled to the depth resolution.
  A scan with a view not evaluated (`--max_samples`) is not fused; summary.json lists it with the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import configargparse
import numpy as np
import torch
import torch.nn.functional as F

from jdacs.data import DTUTrainingSet, collate_mvs_samples
from jdacs.fusion import fuse_scan
from jdacs.mvsnet import MVSNet
from jdacs.options import build_jdacs_parser
from multiview.data.readers.dtu import DTU_NUM_LIGHTS, DTU_SPLITS, list_dtu_train_scans, read_dtu_scan_list
from multiview.data.registry import parse_dataset_entry
from multiview.engine.checkpoint import load_checkpoint
from multiview.engine.device import configure_cpu, resolve_device
from multiview.engine.options import add_reuse_freed_memory_option, parse_options
from multiview.geometry.intrinsics import scale_intrinsics
from multiview.io.images import write_image
from multiview.io.pfm import write_pfm
from multiview.io.ply import write_ply
from multiview.metrics.depth import DEFAULT_THRESHOLDS_MM, accuracy_key, aggregate_depth_metrics, depth_metrics
from multiview.studies.provenance import provenance

logger = logging.getLogger("mvpretrain.jdacs.evaluate")

FUSION_LIGHT = 3  # the lighting whose depth maps are fused when every lighting is evaluated
METRIC_KEYS = ("abs_error_mm", *(accuracy_key(t) for t in DEFAULT_THRESHOLDS_MM), "num_valid_pixels")
CSV_COLUMNS = ("scan", "ref_view", "light", *METRIC_KEYS, "depth_file", "confidence_file")


def build_evaluate_parser() -> configargparse.ArgParser:
    parser = configargparse.ArgParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", is_config_file=True,
                        help="config file of these options (configs/jdacs/eval_dtu.txt)")
    parser.add_argument("--run", required=True, help="run directory holding config.txt and ckpt/latest.pt")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file (default: <run>/ckpt/latest.pt)")
    parser.add_argument("--split", choices=DTU_SPLITS, default="test", help="official DTU scan list to evaluate")
    parser.add_argument("--scans", type=int, nargs="+", default=None, help="scan numbers, overriding --split's list")
    parser.add_argument("--data_root", default=None, help="data root (default: the run's)")
    parser.add_argument("--dataset", default=None,
                        help="dtu or dtu@FOLDER under the data root (default: the run's DTU entry, else dtu)")
    parser.add_argument("--lights", default="3",
                        help="lighting index 0..6, or 'all' (every lighting, as JDACS's validation; 7x the samples)")
    parser.add_argument("--max_samples", type=int, default=0, help="evaluate only the first N samples (0 = all)")
    parser.add_argument("--num_views", type=int, default=None, help="reference + source views (default: the run's)")
    parser.add_argument("--num_depths", type=int, default=None, help="depth hypotheses D (default: the run's)")
    parser.add_argument("--interval_scale", type=float, default=None,
                        help="multiplier of the cam.txt depth interval (default: the run's)")
    parser.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                        help="fuse each scan's depth maps into a coloured point cloud (.ply)")
    parser.add_argument("--prob_threshold", type=float, default=0.8, help="fusion: photometric confidence threshold")
    parser.add_argument("--num_consistent", type=int, default=3,
                        help="fusion: geometrically consistent source views needed")
    parser.add_argument("--reproj_threshold_px", type=float, default=1.0,
                        help="fusion: round-trip reprojection error threshold (pixels of the depth map)")
    parser.add_argument("--rel_depth_threshold", type=float, default=0.01,
                        help="fusion: relative depth difference threshold")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto = cuda when available")
    parser.add_argument("--num_threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    add_reuse_freed_memory_option(parser)
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--out", default=None, help="output directory (default: <run>/eval/<split>)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    return parser


def load_run(run: Path, checkpoint: Path | None = None) -> tuple[argparse.Namespace, Path]:
    """(the run's re-parsed options, the checkpoint path); clear errors for a missing run, config or checkpoint."""
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: run directory not found")
    config = run / "config.txt"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the run's config.txt is missing (written by the trainer at its start)")
    checkpoint = checkpoint or run / "ckpt" / "latest.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found (train the run, or pass --checkpoint)")
    return parse_options(build_jdacs_parser(), ["--config", str(config)]), checkpoint


def dtu_entry(run_args: argparse.Namespace) -> str:
    """The run's DTU dataset entry (validation first, then training), else plain "dtu"."""
    for entry in (run_args.val_datasets or []) + list(run_args.train_datasets):
        if entry.partition("@")[0] == "dtu":
            return entry
    return "dtu"


def parse_lights(value: str) -> str | int:
    """'all' -> "random" (DTUTrainingSet's every-lighting mode), 'k' -> k."""
    if value == "all":
        return "random"
    if value.isdigit() and 0 <= int(value) < DTU_NUM_LIGHTS:
        return int(value)
    raise ValueError(f"--lights must be 'all' or a lighting index 0..{DTU_NUM_LIGHTS - 1}, got {value!r}")


def select_scans(root: Path, split: str, scans: list[int] | None) -> tuple[list[int], list[int]]:
    """(scans to evaluate, scans of the official list missing under root); an empty selection is an error."""
    if scans:
        missing = [s for s in scans if not (root / "Rectified" / f"scan{s}_train").is_dir()]
        if missing:
            raise FileNotFoundError(f"{root}: --scans {missing} have no Rectified/scanN_train folder")
        return list(scans), []
    present, missing = list_dtu_train_scans(root, split, allow_missing=True)
    if not present:
        raise FileNotFoundError(f"{root}: none of the {len(read_dtu_scan_list(split))} scans of the DTU {split} list "
                                f"is present (Rectified/scanN_train + Depths/scanN_train)")
    return present, missing


def colourise(values: np.ndarray, low: float, high: float, colormap: str) -> np.ndarray:
    """(h, w) values -> (h, w, 3) uint8 through a matplotlib colour map over [low, high]."""
    from matplotlib import colormaps

    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    return (colormaps[colormap](scaled)[..., :3] * 255.0 + 0.5).astype(np.uint8)


@dataclass
class _ScanViews:
    """Depth maps of one scan at the fusion lighting, filled as its samples are evaluated."""

    num_views: int
    pairs: dict
    depths: dict = field(default_factory=dict)
    confidences: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    K: dict = field(default_factory=dict)
    cam_from_world: dict = field(default_factory=dict)


def _fuse(scan_name: str, views: _ScanViews, args, out: Path) -> dict:
    missing = [v for v in range(views.num_views) if v not in views.depths]
    if missing:
        return {"fused": False, "reason": f"{len(missing)} of {views.num_views} views not evaluated at the fusion "
                                          f"lighting (e.g. view {missing[0]})"}
    order = range(views.num_views)
    points, colours = fuse_scan(torch.stack([views.depths[v] for v in order]),
                                torch.stack([views.confidences[v] for v in order]),
                                torch.stack([views.images[v] for v in order]),
                                torch.stack([views.K[v] for v in order]),
                                torch.stack([views.cam_from_world[v] for v in order]), views.pairs,
                                args.prob_threshold, args.num_consistent, args.reproj_threshold_px,
                                args.rel_depth_threshold)
    path = out / "fused" / f"{scan_name}.ply"
    write_ply(path, points, colours)
    logger.info("%s: fused %d points -> %s", scan_name, len(points), path)
    return {"fused": True, "num_points": len(points), "file": str(path.relative_to(out))}


def evaluate(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """Run the evaluation (module docstring); returns the summary written to summary.json.

    `argv` (the CLI arguments, default sys.argv[1:]) is recorded as the summary's "command".
    """
    run = Path(args.run)
    run_args, checkpoint_path = load_run(run, Path(args.checkpoint) if args.checkpoint else None)
    device = resolve_device(args.device)
    configure_cpu(device, args.num_threads, args.reuse_freed_memory)
    data_root = args.data_root if args.data_root is not None else run_args.data_root
    entry = args.dataset or dtu_entry(run_args)
    name, root = parse_dataset_entry(entry, data_root)
    if name != "dtu":
        raise ValueError(f"jdacs.evaluate measures DTU depth accuracy; --dataset must be dtu[@FOLDER], got {entry!r}")
    light = parse_lights(str(args.lights))
    fusion_light = FUSION_LIGHT if light == "random" else light
    scans, missing_scans = select_scans(root, args.split, args.scans)
    if missing_scans:
        logger.warning("%d scans of the DTU %s list are not under %s and are not evaluated: %s", len(missing_scans),
                       args.split, root, " ".join(f"scan{s}" for s in missing_scans))
    num_views = args.num_views or run_args.num_views
    num_depths = args.num_depths or run_args.num_depths
    interval_scale = args.interval_scale or run_args.interval_scale
    image_size = (run_args.image_height, run_args.image_width) if run_args.image_height and run_args.image_width \
        else None
    dataset = DTUTrainingSet(root, scans, num_views, num_depths, interval_scale, light, image_size,
                             run_args.normalisation)
    num_samples = min(len(dataset), args.max_samples) if args.max_samples > 0 else len(dataset)

    state = load_checkpoint(checkpoint_path, map_location="cpu")
    model = MVSNet(refine=run_args.refine)
    model.load_state_dict(state["model"] if "model" in state else state)
    model.to(device).eval()
    out = Path(args.out) if args.out else run / "eval" / args.split
    out.mkdir(parents=True, exist_ok=True)

    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(num_samples)), batch_size=None,
                                         num_workers=args.num_workers, collate_fn=_identity)
    progress = None
    if args.progress:
        from tqdm import tqdm

        progress = tqdm(total=num_samples, desc=f"eval {run.name} {args.split}", dynamic_ncols=True)
    records, fusion, scan_views = [], {}, {}
    protocol_facts: dict = {}
    try:
        with torch.no_grad():
            for sample in loader:
                batch = collate_mvs_samples([sample])
                output = model(batch.images.to(device), batch.K.to(device), batch.cam_from_world.to(device),
                               batch.depth_values.to(device))
                depth = (output.refined_depth if output.refined_depth is not None else output.depth)[0].float().cpu()
                confidence = output.confidence[0].float().cpu()
                metrics = depth_metrics(depth, sample.depth, sample.mask)
                scan, vid = sample.scene, int(sample.ref_view)
                low, high = sample.depth_values[0].item(), sample.depth_values[-1].item()
                stem = f"{vid:08d}_l{sample.light}"
                depth_file = Path(scan) / "depth_est" / f"{stem}.pfm"
                confidence_file = Path(scan) / "confidence" / f"{stem}.pfm"
                write_pfm(out / depth_file, depth.numpy())
                write_pfm(out / confidence_file, confidence.numpy())
                write_image((out / depth_file).with_suffix(".png"), colourise(depth.numpy(), low, high, "viridis"))
                write_image((out / confidence_file).with_suffix(".png"), colourise(confidence.numpy(), 0, 1, "magma"))
                records.append({"scan": scan, "ref_view": vid, "light": sample.light, **metrics,
                                "depth_file": str(depth_file), "confidence_file": str(confidence_file)})
                if not protocol_facts:
                    protocol_facts = {"input_resolution_hw": list(sample.images.shape[-2:]),
                                      "output_resolution_hw": list(depth.shape),
                                      "depth_interval_mm": (sample.depth_values[1] - sample.depth_values[0]).item(),
                                      "depth_range_mm": [low, high]}
                if args.fuse and sample.light == fusion_light:
                    if scan not in scan_views:
                        for done in list(scan_views):  # samples come scan by scan: fuse the finished ones
                            fusion[done] = _fuse(done, scan_views.pop(done), args, out)
                        scene = dataset.scenes[[s.name for s in dataset.scenes].index(scan)]
                        scan_views[scan] = _ScanViews(len(scene.views), scene.meta["pairs"])
                    views = scan_views[scan]
                    h, w = depth.shape
                    H, W = sample.images.shape[-2:]
                    views.depths[vid], views.confidences[vid] = depth, confidence
                    small = F.interpolate(sample.images_raw[:1], size=(h, w), mode="area")[0]
                    views.images[vid] = small.permute(1, 2, 0)
                    views.K[vid] = scale_intrinsics(sample.K[0].double(), w / W, h / H)
                    views.cam_from_world[vid] = sample.cam_from_world[0].double()
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(abs_mm=f"{metrics['abs_error_mm']:.3g}")
            for done in list(scan_views):
                fusion[done] = _fuse(done, scan_views.pop(done), args, out)
    finally:
        if progress is not None:
            progress.close()
    for scan in scans:
        if args.fuse and f"scan{scan}" not in fusion:
            fusion[f"scan{scan}"] = {"fused": False, "reason": "no sample of the scan was evaluated at the fusion "
                                                               f"lighting {fusion_light}"}

    made_by = provenance(["-m", "jdacs.evaluate", *(sys.argv[1:] if argv is None else argv)], with_device=False)
    summary = {
        **made_by, "device": str(device), "data": f"DTU training layout, {args.split} scans, {root}",
        "metrics": _mean_metrics(records),
        "per_scan": {scan: _mean_metrics([r for r in records if r["scan"] == scan])
                     for scan in dict.fromkeys(r["scan"] for r in records)},
        "protocol": {
            "dataset": "dtu_train_layout", "data_root": str(root), "split": args.split, "scans": scans,
            "missing_scans": missing_scans, "lights": "all" if light == "random" else light,
            "num_samples": num_samples, "num_samples_available": len(dataset), "num_views": num_views,
            "num_depths": num_depths, "interval_scale": interval_scale, **protocol_facts,
            "normalisation": run_args.normalisation, "refine": run_args.refine,
            "metric": "per image over GT-valid pixels at the output resolution; mean over images",
            "thresholds_mm": list(DEFAULT_THRESHOLDS_MM),
            "checkpoint": str(checkpoint_path), "checkpoint_step": state.get("step"),
            "run": str(run), "coseg_backbone": run_args.coseg_backbone, "supervised": run_args.supervised,
            "device": str(device), "torch": torch.__version__,
        },
        "fusion": {"enabled": args.fuse, "light": fusion_light, "prob_threshold": args.prob_threshold,
                   "num_consistent": args.num_consistent, "reproj_threshold_px": args.reproj_threshold_px,
                   "rel_depth_threshold": args.rel_depth_threshold, "scans": fusion},
    }
    _write_outputs(out, records, summary)
    metrics = summary["metrics"]
    logger.info("%s %s: %d images, abs %.3f mm, <=2/4/8 mm %.2f / %.2f / %.2f %% -> %s", run.name, args.split,
                metrics["num_images"], metrics["abs_error_mm"], metrics["accuracy_2mm"], metrics["accuracy_4mm"],
                metrics["accuracy_8mm"], out)
    return summary


def _mean_metrics(records: list[dict]) -> dict:
    """`aggregate_depth_metrics` of the metric fields of per-image records."""
    return aggregate_depth_metrics([{k: r[k] for k in METRIC_KEYS} for r in records])


def _identity(item):
    return item


def _json_safe(value):
    """NaN -> None (strict JSON), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_outputs(out: Path, records: list[dict], summary: dict) -> None:
    (out / "per_image.json").write_text(json.dumps(_json_safe(records), indent=1) + "\n")
    with open(out / "per_image.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=1) + "\n")


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    return evaluate(parse_options(build_evaluate_parser(), argv), argv)


if __name__ == "__main__":
    main()
