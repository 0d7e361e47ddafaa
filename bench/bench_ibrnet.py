"""IBRNet speed and memory benchmark (a benchmark, never a test): writes JSON.

    python bench/bench_ibrnet.py [--out bench/results/ibrnet.json] [--quick] [--profile] [--threads N]
                                 [--no-reuse_freed_memory] [--render_workers N] [--no-native_cpu_kernel]

Cases (each in a fresh subprocess, so that the peak resident memory is the case's own):
  train   one training step: 512 rays, 64 coarse + 64 fine samples, 10 source views of 120×160 —
          feature net on the 10 sources + coarse + fine + masked MSE on both + backward + Adam step.
          Median over `--repeats` steps after one warm-up step. Also timed alone: the feature net's part
          of the step (forward + backward on the 10 sources, `feature_net_step_s`), the rest being the
          rays' sampling, projection, aggregators, compositing and the optimiser. The aggregators' per-view
          layers run as the compiled C kernels, forward and backward, unless `--no-native_cpu_kernel`.
  render  deterministic, no-grad rendering of a whole 120×160 target (19,200 rays) in chunks of 4096
          rays, the feature maps computed once per image (included in the time); reported as rays/s.
          The model's slices run `--render_workers` at a time on threads (0 = one per torch thread, each
          slice's ops single-threaded; 1 = one slice at a time on all threads), as `--render_workers` of
          the trainer, ibrnet.render and the evaluation; the aggregators run as the compiled C kernel unless
          `--no-native_cpu_kernel` (ibrnet/aggregator_native.py).
          Median over `--render_repeats` images after a small warm-up.
The scene: 11 cameras on an arc around the origin looking at it (target = the middle one), smooth random
source images, near/far 2/6 — every sample is seen by most source views, as in a real object scene.

Besides wall time, each case reports its CPU time (user + system, all threads), the system part and
the minor page faults: on a machine shared with other jobs the wall time says little, and fresh large
allocations (page faults, system time) are a large part of the cost of this memory-bound workload.
The case processes keep freed memory for reuse as the trainers do (`--reuse_freed_memory`, glibc mallopt:
freed blocks stay in the heap and are reused without page faults; the resident size no longer shrinks);
`--no-reuse_freed_memory` measures glibc's defaults (large blocks mmap-ed and page-faulted afresh each time).
`--profile` prints torch.profiler tables (top ops by self CPU time) of one step / one render chunk.
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

from ibrnet.model import IBRNet, Rays, Sources  # noqa: E402
from multiview.engine.device import configure_cpu  # noqa: E402
from multiview.engine.options import add_reuse_freed_memory_option  # noqa: E402
from multiview.geometry.projection import rays_through_pixels  # noqa: E402
from multiview.geometry.transforms import invert_rigid  # noqa: E402
from multiview.synthetic.cameras import intrinsics, look_at  # noqa: E402


def make_scene(num_sources: int, height: int, width: int, seed: int = 0):
    """Sources (V views), the target's K / world_from_cam, near/far."""
    generator = torch.Generator().manual_seed(seed)
    azimuths = np.linspace(-50.0, 50.0, num_sources + 1)
    cam_from_world = np.stack([look_at(4.0 * np.array([np.cos(np.radians(a)), np.sin(np.radians(a)), 0.4]),
                                       np.zeros(3)) for a in azimuths])
    cam_from_world = torch.from_numpy(cam_from_world).float()
    K = torch.from_numpy(intrinsics(height, width, 50.0)).float().expand(num_sources + 1, 3, 3)
    target = num_sources // 2
    source_ids = [i for i in range(num_sources + 1) if i != target]
    low = torch.rand(num_sources, 3, height // 8, width // 8, generator=generator)
    images = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    sources = Sources(images.contiguous(), K[source_ids].contiguous(), cam_from_world[source_ids].contiguous())
    return sources, K[target], invert_rigid(cam_from_world[target]), (2.0, 6.0)


def target_rays(K, world_from_cam, height, width, near_far, pixels=None) -> Rays:
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    uv = torch.stack([u, v], dim=-1).reshape(-1, 2)
    if pixels is not None:
        uv = uv[pixels]
    origins, directions = rays_through_pixels(uv[None], K[None], world_from_cam[None])
    n = uv.shape[0]
    return Rays(origins[0].contiguous(), directions[0].contiguous(), torch.full((n,), near_far[0]),
                torch.full((n,), near_far[1]))


def masked_mse(prediction, target, valid):
    """IBRNet's Criterion: Σ‖ĉ − c‖²·m / (Σm·3 + 1e-6)."""
    mask = valid.to(prediction.dtype)[:, None]
    return ((prediction - target) ** 2 * mask).sum() / (mask.sum() * 3 + 1e-6)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # ru_maxrss is in KiB on Linux


class Meter:
    """Wall time, CPU time (user + system, all threads), system time and minor page faults of a block."""

    def __enter__(self):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.start = (time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_minflt)
        return self

    def __exit__(self, *exc):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        end = (time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_minflt)
        self.wall, self.cpu, self.sys, self.faults = (b - a for a, b in zip(self.start, end))


def summarise(meters: list[Meter], prefix: str) -> dict:
    return {f"{prefix}_s": statistics.median(m.wall for m in meters),
            f"{prefix}_times_s": [round(m.wall, 4) for m in meters],
            f"{prefix}_cpu_s": statistics.median(m.cpu for m in meters),
            f"{prefix}_sys_s": statistics.median(m.sys for m in meters),
            f"{prefix}_page_faults": int(statistics.median(m.faults for m in meters))}


def setup(args):
    torch.manual_seed(0)
    H, W = args.height, args.width
    sources, K, world_from_cam, near_far = make_scene(args.num_sources, H, W)
    model = IBRNet(num_coarse_samples=args.num_coarse, num_fine_samples=args.num_fine,
                   render_workers=args.render_workers, native_cpu_kernel=args.native_cpu_kernel)
    target_center = world_from_cam[:3, 3].contiguous()
    return model, sources, K, world_from_cam, near_far, target_center


def train_case(args) -> dict:
    model, sources, K, world_from_cam, near_far, center = setup(args)
    H, W = args.height, args.width
    optimizer = torch.optim.Adam([{"params": model.feature_net.parameters(), "lr": 1e-3},
                                  {"params": [p for n, p in model.named_parameters()
                                              if not n.startswith("feature_net.")], "lr": 5e-4}])
    generator = torch.Generator().manual_seed(1)
    target_image = torch.rand(H * W, 3, generator=generator)

    def step():
        pixels = torch.randperm(H * W, generator=generator)[: args.num_rays]
        rays = target_rays(K, world_from_cam, H, W, near_far, pixels)
        features = model.encode(sources.images)
        out = model(rays, sources, features, center, generator=generator)
        target = target_image[pixels]
        loss = masked_mse(out.coarse.rgb, target, out.coarse.valid) + masked_mse(out.fine.rgb, target, out.fine.valid)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # as the trainers: gradients freed before the next forward
        return loss.item(), out.coarse.valid.float().mean().item()

    model.train()
    meters, losses = [], []
    for index in range(args.warmup + args.repeats):
        with Meter() as meter:
            loss, valid_fraction = step()
        if index >= args.warmup:
            meters.append(meter)
            losses.append(loss)
    feature_meters = []
    cotangents = [torch.randn(f.shape, generator=generator) for f in model.encode(sources.images)]
    for _ in range(args.repeats):
        with Meter() as meter:
            torch.autograd.backward(model.encode(sources.images), cotangents)
        feature_meters.append(meter)
    optimizer.zero_grad(set_to_none=True)
    if args.profile:
        profile(step, "training step")
    return {**summarise(meters, "train_step"), **summarise(feature_meters, "feature_net_step"), "losses": losses,
            "valid_ray_fraction": valid_fraction}


def render_case(args) -> dict:
    model, sources, K, world_from_cam, near_far, center = setup(args)
    H, W = args.height, args.width
    rays = target_rays(K, world_from_cam, H, W, near_far)
    if args.quick:
        rays = rays[: args.render_rays]
    model.eval()

    def render(rays=rays):
        with torch.no_grad():
            features = model.encode(sources.images)
            colours = [model(rays[i:i + args.chunk], sources, features, center, deterministic=True).fine.rgb
                       for i in range(0, len(rays), args.chunk)]
        return torch.cat(colours)

    render(rays[:256])  # warm-up (kernel selection, allocator)
    meters = []
    for _ in range(args.render_repeats):
        with Meter() as meter:
            render()
        meters.append(meter)
    if args.profile:
        profile(lambda: render(rays[: args.chunk]), f"rendering {min(args.chunk, len(rays))} rays (one chunk)")
    result = summarise(meters, "render_image")
    result.update(render_rays_per_s=len(rays) / result["render_image_s"],
                  render_rays_per_cpu_s=len(rays) / result["render_image_cpu_s"],
                  render_rays=len(rays), chunk=args.chunk)
    return result


def profile(function, title: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        function()
    print(f"\n=== {title}: top ops by self CPU time ===", file=sys.stderr)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)


def run_case(args) -> None:
    configure_cpu(torch.device("cpu"), args.threads, args.reuse_freed_memory)
    result = {"train": train_case, "render": render_case}[args.case](args)
    result["peak_rss_gib"] = peak_rss_gib()
    print("RESULT " + json.dumps(result))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ibrnet.json")
    parser.add_argument("--quick", action="store_true", help="small smoke run (few rays, few samples)")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table per case")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_reuse_freed_memory_option(parser)  # as the trainers and evaluators
    parser.add_argument("--render_workers", type=int, default=0,
                        help="rendering slices evaluated at once on threads (0 = one per torch thread)")
    parser.add_argument("--native_cpu_kernel", action=argparse.BooleanOptionalAction, default=True,
                        help="the aggregators' C kernels (as the trainer): the per-view layers' forward and backward "
                             "passes in the training step, the whole aggregator when rendering")
    parser.add_argument("--repeats", type=int, default=None, help="timed training steps (default 7, quick 2)")
    parser.add_argument("--render_repeats", type=int, default=None, help="timed full renders (default 3)")
    parser.add_argument("--cases", nargs="+", default=["train", "render"], choices=["train", "render"])
    parser.add_argument("--case", choices=["train", "render"], help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    args.height, args.width, args.num_sources, args.chunk = 120, 160, 10, 4096
    args.num_rays, args.num_coarse, args.num_fine = 512, 64, 64
    args.warmup, args.render_rays = 1, 19200
    if args.quick:
        args.num_rays, args.num_coarse, args.num_fine, args.render_rays = 64, 16, 16, 512
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.render_repeats = args.render_repeats or (1 if args.quick else 3)
    if args.case:
        run_case(args)
        return

    report = {"device": "cpu", "torch": torch.__version__, "threads": args.threads,
              "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
              "reuse_freed_memory": args.reuse_freed_memory,
              "setting": {"rays": args.num_rays, "coarse_samples": args.num_coarse, "fine_samples": args.num_fine,
                          "source_views": args.num_sources, "image": [args.height, args.width],
                          "render_chunk": args.chunk, "render_workers": args.render_workers,
                          "native_cpu_kernel": args.native_cpu_kernel,
                          "train_repeats": args.repeats,
                          "render_repeats": args.render_repeats},
              "cases": {}}
    for case in args.cases:
        command = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--threads", str(args.threads),
                   "--reuse_freed_memory" if args.reuse_freed_memory else "--no-reuse_freed_memory",
                   "--render_workers", str(args.render_workers),
                   "--native_cpu_kernel" if args.native_cpu_kernel else "--no-native_cpu_kernel",
                   "--repeats", str(args.repeats),
                   "--render_repeats", str(args.render_repeats)]
        command += ["--quick"] * args.quick + ["--profile"] * args.profile
        load_before = load_average()
        completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        sys.stderr.write(completed.stderr)
        if completed.returncode != 0:
            raise SystemExit(f"case {case} failed (exit {completed.returncode})")
        line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
        report["cases"][case] = {**json.loads(line[len("RESULT "):]), "load_before": load_before,
                                 "load_after": load_average()}
    cases = report["cases"]
    report["summary"] = {
        "train_step_s": cases.get("train", {}).get("train_step_s"),
        "train_step_cpu_s": cases.get("train", {}).get("train_step_cpu_s"),
        "feature_net_step_s": cases.get("train", {}).get("feature_net_step_s"),
        "render_rays_per_s": cases.get("render", {}).get("render_rays_per_s"),
        "render_rays_per_cpu_s": cases.get("render", {}).get("render_rays_per_cpu_s"),
        "peak_rss_gib": max((c["peak_rss_gib"] for c in cases.values()), default=None),
        "load": {case: [c["load_before"], c["load_after"]] for case, c in cases.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
