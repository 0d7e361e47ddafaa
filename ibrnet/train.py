"""IBRNet on the shared engine: the `Task` that builds the model, its batches, losses and validation."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from ibrnet.data import RayBatch, SamplingOptions, TrainingSet, evaluation_views, load_sources, load_view
from ibrnet.model import IBRNet
from ibrnet.render import render_image
from multiview.data.registry import dataset_spec, list_scene_handles, parse_dataset_entry
from multiview.engine.trainer import Trainer
from multiview.io.images import write_image


def masked_mse(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The original's criterion: Σ‖ĉ − c‖²·m / (3·Σm + 1e-6) over valid rays."""
    mask = valid.to(predicted.dtype)[:, None]
    return ((predicted - target) ** 2 * mask).sum() / (3.0 * mask.sum() + 1e-6)


def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def depth_to_rgb(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Grey-scale (H, W, 3) visualisation of a depth map, near = bright, normalised over valid pixels."""
    if not valid.any():
        return np.zeros((*depth.shape, 3), dtype=np.float32)
    low, high = np.percentile(depth[valid], [2, 98])
    grey = 1.0 - np.clip((depth - low) / max(high - low, 1e-8), 0, 1)
    return np.repeat((grey * valid)[..., None], 3, axis=-1).astype(np.float32)


def build_model(args: argparse.Namespace) -> IBRNet:
    return IBRNet(num_coarse_samples=args.num_coarse_samples, num_fine_samples=args.num_fine_samples,
                  inverse_depth=args.inverse_depth, anti_alias_pooling=args.anti_alias_pooling,
                  use_sdpa=args.use_sdpa, white_background=args.white_background,
                  render_workers=args.render_workers, native_cpu_kernel=args.native_cpu_kernel)


def sampling_options(args: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(args.num_source_views, args.source_count_jitter, args.max_pool_factor,
                           args.target_as_source_probability, args.num_rays, args.max_image_side,
                           args.crop_height, args.crop_width, args.random_flip)


class IBRNetTask:
    """Training: masked MSE on coarse + fine colours. Validation: full renders of held-out targets."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.options = sampling_options(args)
        self.val_handles = []
        for entry in args.val_datasets or []:
            name, root = parse_dataset_entry(entry, args.data_root)
            self.val_handles += list_scene_handles(name, root, args.val_split, args.val_scenes)

    def build_model(self) -> IBRNet:
        return build_model(self.args)

    def parameter_groups(self, model: IBRNet) -> list[dict]:
        mlp = [p for name, p in model.named_parameters() if not name.startswith("feature_net.")]
        return [{"params": model.feature_net.parameters(), "lr": self.args.lr_feature},
                {"params": mlp, "lr": self.args.lr_mlp}]

    def training_dataset(self) -> TrainingSet:
        handles = {}
        for entry in self.args.train_datasets:
            name, root = parse_dataset_entry(entry, self.args.data_root)
            handles[name] = list_scene_handles(name, root, "train", self.args.train_scenes)
        return TrainingSet(handles, self.args.train_dataset_weights, self.options)

    def training_stages(self, model, batch: RayBatch, step: int):
        features = model.module.encode(batch.sources.images) if hasattr(model, "module") else model.encode(
            batch.sources.images)
        out = model(batch.rays, batch.sources, features, batch.target_center)
        loss = masked_mse(out.coarse.rgb, batch.target_rgb, out.coarse.valid)
        scalars = {"loss_coarse": loss.item()}
        if out.fine is not None:
            fine = masked_mse(out.fine.rgb, batch.target_rgb, out.fine.valid)
            loss = loss + fine
            scalars["loss_fine"] = fine.item()
        best = out.fine if out.fine is not None else out.coarse
        scalars["psnr"] = psnr_from_mse(masked_mse(best.rgb.detach(), batch.target_rgb, best.valid).item())
        scalars["loss"] = loss.item()
        yield loss, scalars

    def validate(self, model: IBRNet, step: int, run_dir: Path) -> tuple[dict, dict]:
        """Render `num_val_views` held-out targets (cycling through the validation scenes by step)."""
        if not self.val_handles:
            return {}, {}
        device = next(model.parameters()).device
        totals: dict[str, list[float]] = {"psnr_fine": [], "psnr_coarse": [], "psnr_mean_colour": []}
        images = {}
        for k in range(self.args.num_val_views):
            handle = self.val_handles[(step + k) % len(self.val_handles)]
            scene = handle.load()
            pairs = evaluation_views(scene, self.args.num_source_views, dataset_spec(handle.dataset).selection)
            target, sources = pairs[(step // max(1, len(self.val_handles)) + k) % len(pairs)]
            # the same resolution as training (max_image_side), K rescaled with the images
            source_views = load_sources(scene, sources, self.args.max_image_side)
            source_views = type(source_views)(*(getattr(source_views, f).to(device)
                                                for f in ("images", "K", "cam_from_world")))
            view = scene.views[target]
            truth, K = load_view(view, self.args.max_image_side)
            rendered = render_image(model, torch.from_numpy(K).float().to(device),
                                    torch.from_numpy(view.cam_from_world).float().to(device),
                                    truth.shape[0], truth.shape[1], view.near, view.far, source_views,
                                    self.args.chunk_size, self.args.render_stride)
            truth = truth[:: self.args.render_stride, :: self.args.render_stride]
            totals["psnr_coarse"].append(psnr_from_mse(float(np.mean((np.clip(rendered.coarse, 0, 1) - truth) ** 2))))
            totals["psnr_fine"].append(psnr_from_mse(float(np.mean((np.clip(rendered.best, 0, 1) - truth) ** 2))))
            mean_colour = truth.reshape(-1, 3).mean(axis=0)
            totals["psnr_mean_colour"].append(psnr_from_mse(float(np.mean((truth - mean_colour) ** 2))))
            strip = np.concatenate([truth, np.clip(rendered.coarse, 0, 1), np.clip(rendered.best, 0, 1),
                                    depth_to_rgb(rendered.depth, rendered.valid > 0)], axis=1)
            images[f"{handle.name}/{view.name}"] = strip
            write_image(Path(run_dir) / "val" / f"step_{step:07d}_{k}.png", strip)
        return {key: float(np.mean(values)) for key, values in totals.items()}, images


def run(args: argparse.Namespace, parser=None) -> dict:
    """Train IBRNet with the shared engine; returns the last validation scalars."""
    return Trainer(IBRNetTask(args), args, parser).run()
