"""CLI: write the embedded synthetic data in one or every dataset layout.

    python -m multiview.synthetic --format FORMAT --out DIR --scenes N --views M --size HxW --seed S

With `--format all` each layout goes to DIR/<format>/. Prints what was written and how long it took.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

# format name -> (writer module under multiview.synthetic.writers, fixed keyword options)
FORMATS: dict[str, tuple[str, dict]] = {
    "mvimgnet": ("mvimgnet", {}),
    "llff": ("llff", {"layout": "nerf_llff_data"}),
    "ibrnet_collected": ("llff", {"layout": "ibrnet_collected"}),
    "real_iconic_noface": ("llff", {"layout": "real_iconic_noface"}),
    "nerf_synthetic": ("nerf_synthetic", {}),
    "deepvoxels": ("deepvoxels", {}),
    "co3d": ("co3d", {"version": "v2"}),
    "co3d_v1": ("co3d", {"version": "v1"}),
    "dtu_train": ("dtu", {"layout": "train"}),
    "dtu_test": ("dtu", {"layout": "test"}),
    "google_scanned": ("google_scanned", {}),
    "realestate": ("realestate", {}),
    "spaces": ("spaces", {}),
}


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--size must look like 128x160 (HxW), got {text!r}") from error
    if height < 8 or width < 8:
        raise argparse.ArgumentTypeError(f"--size must be at least 8x8, got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m multiview.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--format", required=True, choices=[*FORMATS, "all"], help="dataset layout to write")
    parser.add_argument("--out", required=True, type=Path, help="output root directory")
    parser.add_argument("--scenes", type=int, default=2, help="number of scenes (instances, sequences, scans)")
    parser.add_argument("--views", type=int, default=30, help="views per scene")
    parser.add_argument("--size", type=parse_size, default=(128, 160), help="image size HxW")
    parser.add_argument("--seed", type=int, default=0, help="random seed; scene k uses seed + k")
    parser.add_argument("--scan_ids", type=int, nargs="+", default=None,
                        help="DTU layouts only: scan numbers to write (default: the first --scenes of the "
                             "official list of that layout); --scenes is then their count")
    return parser


def write_format(name: str, out: Path, num_scenes: int, num_views: int, size: tuple[int, int], seed: int,
                 scan_ids: list[int] | None = None):
    """Write one layout; returns the writer's list of WrittenScene."""
    module_name, options = FORMATS[name]
    writer = importlib.import_module(f"multiview.synthetic.writers.{module_name}")
    if scan_ids is not None and module_name == "dtu":
        options, num_scenes = {**options, "scans": scan_ids}, len(scan_ids)
    return writer.write(out, num_scenes, num_views, size[0], size[1], seed, **options)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scan_ids is not None and args.format not in ("dtu_train", "dtu_test"):
        parser.error("--scan_ids applies to the dtu_train and dtu_test formats only")
    names = list(FORMATS) if args.format == "all" else [args.format]
    for name in names:
        out = args.out / name if args.format == "all" else args.out
        start = time.perf_counter()
        scenes = write_format(name, out, args.scenes, args.views, args.size, args.seed, args.scan_ids)
        seconds = time.perf_counter() - start
        num_files = sum(len(scene.files) for scene in scenes)
        num_bytes = sum(path.stat().st_size for scene in scenes for path in scene.files if path.is_file())
        print(f"{name:>18}: {len(scenes)} scenes x {args.views} views at {args.size[0]}x{args.size[1]} "
              f"-> {out} ({num_files} files, {num_bytes / 2**20:.1f} MiB, {seconds:.1f} s)")
        for scene in scenes:
            print(f"{'':>20}{scene.name}: {scene.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
