"""MVSNet speed and memory benchmark (a benchmark, never a test): writes JSON.

    python bench/bench_mvsnet.py [--out bench/results/mvsnet.json] [--quick] [--profile] [--threads N]
                                 [--no-checkpoint_cost_volume] [--cases train_small infer train_dtu]

Cases (each in a fresh subprocess, so that the peak resident memory — ru_maxrss, a process-wide high-water
mark — is the case's own):
  train_small  training step, 3 views 128×160, D 48: forward + smooth-L1 to a random depth + backward + Adam step
  infer        inference (eval mode, no_grad), 5 views 256×320, D 192
  train_dtu    training step at DTU size, 3 views 640×512, D 192 (fewer repetitions)
`--quick` runs only the two small cases with fewer repetitions. As the trainers and evaluators do on the CPU, each
case keeps freed memory for reuse (`--reuse_freed_memory`; `--no-reuse_freed_memory` for glibc's defaults, which
page-fault about 1 GB in again per inference and make it 1.2–1.5 s instead of 1.0 s). Reported: median wall time and
median process CPU time over the repetitions after one warm-up, peak RSS. On a machine shared with other jobs the
wall time of a multi-threaded run is dominated by OpenMP threads waiting for a core at every operator (CPU time ≈
wall time is the sign): compare with `--threads 1` there. The scene: DTU-like cameras (fx ≈ 1446 px at 640×512) on
an arc 650 mm from the object, looking at it, smooth random images, depth hypotheses from 425 mm over the DTU range
(interval 2.65 mm at D 192).
The original MVSNet_pytorch measured on this machine (../shared/reference/jdacs.md §5): 0.32 s, 1.31 s, ~30 s
with 5.9 GiB peak; `--no-checkpoint_cost_volume` runs our equivalent of its storing training path.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere; the package is normally installed (-e)
    sys.path.insert(0, str(ROOT))

from jdacs.mvsnet import MVSNet  # noqa: E402
from multiview.engine.device import configure_cpu  # noqa: E402
from multiview.engine.options import add_reuse_freed_memory_option  # noqa: E402
from multiview.synthetic.cameras import intrinsics, look_at  # noqa: E402

CASES = {  # name: (views, height, width, depths, training)
    "train_small": (3, 128, 160, 48, True),
    "infer": (5, 256, 320, 192, False),
    "train_dtu": (3, 512, 640, 192, True),
}
DEPTH_MIN_MM, DEPTH_RANGE_MM = 425.0, 192 * 2.65


def make_inputs(num_views: int, height: int, width: int, num_depths: int, seed: int = 0):
    """images (1, V, 3, H, W), K (1, V, 3, 3), cam_from_world (1, V, 4, 4), depth_values (1, D)."""
    generator = torch.Generator().manual_seed(seed)
    azimuths = np.radians(np.linspace(-10.0, 10.0, num_views))
    order = np.argsort(np.abs(azimuths), kind="stable")  # reference = the middle camera
    eyes = 650.0 * np.stack([np.sin(azimuths), np.zeros_like(azimuths), -np.cos(azimuths)], axis=-1)[order]
    cam_from_world = torch.from_numpy(np.stack([look_at(eye, np.zeros(3), up=(0.0, -1.0, 0.0)) for eye in eyes]))
    K = torch.from_numpy(intrinsics(height, width, fov_x_deg=24.9)).expand(num_views, 3, 3)
    low = torch.rand(num_views, 3, height // 16, width // 16, generator=generator)
    images = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    interval = DEPTH_RANGE_MM / num_depths
    depth_values = DEPTH_MIN_MM + interval * torch.arange(num_depths, dtype=torch.float32)
    return images[None], K[None].float(), cam_from_world[None].float(), depth_values[None]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # ru_maxrss is in KiB on Linux


def run_case(args) -> dict:
    views, height, width, depths, training = CASES[args.case]
    torch.manual_seed(0)
    images, K, cam_from_world, depth_values = make_inputs(views, height, width, depths)
    model = MVSNet(refine=False, checkpoint_cost_volume=args.checkpoint_cost_volume)
    if training:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        target = DEPTH_MIN_MM + DEPTH_RANGE_MM * torch.rand(1, height // 4, width // 4)

        def step():
            depth = model(images, K, cam_from_world, depth_values).depth
            loss = F.smooth_l1_loss(depth, target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)  # as the trainers: gradients freed before the next forward
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(images, K, cam_from_world, depth_values)

    times, cpu_times = [], []
    for index in range(1 + args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if index >= 1:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
    if args.profile:
        profile(step, args.case)
    return {"views": views, "image": [height, width], "depths": depths, "training": training,
            "median_s": statistics.median(times), "times_s": times, "median_cpu_s": statistics.median(cpu_times),
            "peak_rss_gib": peak_rss_gib()}


def profile(function, title: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        function()
    print(f"\n=== {title}: top ops by self CPU time ===", file=sys.stderr)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mvsnet.json")
    parser.add_argument("--quick", action="store_true", help="only the two small cases, 2 repetitions")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table per case")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--checkpoint_cost_volume", action=argparse.BooleanOptionalAction, default=True,
                        help="MVSNet(checkpoint_cost_volume=...): recompute the warped volumes in backward")
    add_reuse_freed_memory_option(parser)  # as the trainers and evaluators
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 7, quick 2)")
    parser.add_argument("--dtu_repeats", type=int, default=2, help="timed repetitions of train_dtu")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=None)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 7)
    if args.case:
        configure_cpu(torch.device("cpu"), args.threads, args.reuse_freed_memory)
        print("RESULT " + json.dumps(run_case(args)))
        return
    cases = args.cases or (["train_small", "infer"] if args.quick else list(CASES))

    def load() -> str:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())

    report = {"device": "cpu", "torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
              "processor": platform.processor() or platform.machine(),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
              "checkpoint_cost_volume": args.checkpoint_cost_volume, "reuse_freed_memory": args.reuse_freed_memory,
              "original_here": {"train_small_s": 0.32, "infer_s": 1.31, "train_dtu_s": 30.0, "train_dtu_peak_gib": 5.9},
              "load_before": load(), "cases": {}}
    for case in cases:
        repeats = args.dtu_repeats if case == "train_dtu" else args.repeats
        command = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--threads", str(args.threads),
                   "--repeats", str(repeats),
                   "--checkpoint_cost_volume" if args.checkpoint_cost_volume else "--no-checkpoint_cost_volume",
                   "--reuse_freed_memory" if args.reuse_freed_memory else "--no-reuse_freed_memory"]
        if args.profile:
            command.append("--profile")
        completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        sys.stderr.write(completed.stderr)
        if completed.returncode != 0:
            raise SystemExit(f"case {case} failed (exit {completed.returncode})")
        line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
        report["cases"][case] = json.loads(line[len("RESULT "):])
        print(f"{case}: {report['cases'][case]['median_s']:.3f} s, peak {report['cases'][case]['peak_rss_gib']:.2f} "
              f"GiB (load {load()})", flush=True)
    report["load_after"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load {report['load_before']} -> {report['load_after']}; written to {args.out}")


if __name__ == "__main__":
    main()
