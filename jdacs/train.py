"""JDACS on the shared engine: datasets, the two optimizer stages per step, and depth validation.

Stage 1: photometric consistency (+ co-segmentation) on the first pass; stage 2: the augmented pass
against the detached first-pass depth, with its own optimizer step — as JDACS's train_sample and
train_sample_aug. With `--supervised` there is one stage: MVSNet's smooth-L1 to ground truth.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jdacs.data import DTUTrainingSet, MVImgNetMVSSet, MVSSample, SeededBatches, collate_mvs_samples, normalise_images
from jdacs.fractions import dtu_fraction_scans, fraction_list_path, read_scan_list_file
from jdacs.losses.augmentation import AugmentationConsistencyLoss, augment_views, random_box_mask, weight_at_epoch
from jdacs.losses.photometric import PhotometricLoss
from jdacs.losses.segmentation import CoSegmentationLoss
from jdacs.losses.supervised import masked_smooth_l1_depth
from jdacs.mvsnet import MVSNet
from multiview.data.readers.dtu import read_dtu_scan_list
from multiview.data.readers.mvimgnet import index_mvimgnet
from multiview.data.registry import parse_dataset_entry
from multiview.engine.trainer import Trainer
from multiview.geometry.intrinsics import scale_intrinsics
from multiview.geometry.transforms import invert_rigid
from multiview.metrics.depth import aggregate_depth_metrics, depth_metrics


def image_size(args: argparse.Namespace) -> tuple[int, int] | None:
    return (args.image_height, args.image_width) if args.image_height and args.image_width else None


def build_mvs_dataset(entry: str, args: argparse.Namespace, split: str):
    """An MVS dataset for a `NAME[@FOLDER]` entry: DTU (fraction of the training scans / test scans) or MVImgNet."""
    name, root = parse_dataset_entry(entry, args.data_root)
    if name == "dtu":
        # validation: the official test scans present under root (the training layout holds every scan)
        scans = dtu_training_scans(args) if split == "train" else [
            s for s in read_dtu_scan_list("test") if (root / "Rectified" / f"scan{s}_train").is_dir()]
        return DTUTrainingSet(root, scans, args.num_views, args.num_depths, args.interval_scale,
                              "random" if split == "train" else 3, image_size(args), args.normalisation)
    if name == "mvimgnet":
        if image_size(args) is None:
            raise ValueError("MVImgNet samples need --image_height and --image_width (the network input size)")
        index = index_mvimgnet(root, split={"train": "train", "test": "val", "all": None}[split])
        return MVImgNetMVSSet(index, image_size(args), args.num_views, args.num_depths, args.normalisation)
    raise ValueError(f"JDACS trains on dtu or mvimgnet, not {name!r} (entry {entry!r})")


def dtu_training_scans(args: argparse.Namespace) -> list[int]:
    """--dtu_scans, or the scans of --dtu_fraction: the shipped list file (checked against its seeded rule)."""
    if args.dtu_scans:
        return list(args.dtu_scans)
    scans = read_scan_list_file(fraction_list_path(args.dtu_fraction))
    if scans != dtu_fraction_scans(args.dtu_fraction):
        raise ValueError(f"{fraction_list_path(args.dtu_fraction)} differs from the seeded rule; regenerate it "
                         "with `python -m jdacs.fractions`")
    return scans


def depth_resolution_geometry(batch: MVSSample, height: int, width: int):
    """K of every view at the depth resolution (B, V, 3, 3) and src_from_ref (B, V−1, 4, 4)."""
    H, W = batch.images.shape[-2:]
    K = scale_intrinsics(batch.K, width / W, height / H)
    src_from_ref = batch.cam_from_world[:, 1:] @ invert_rigid(batch.cam_from_world[:, :1])
    return K, src_from_ref


class JDACSTask:
    """MVSNet trained with JDACS's losses (or supervised); validation = DTU depth accuracy."""

    def __init__(self, args: argparse.Namespace, run_dir: Path):
        self.args = args
        if args.coseg_image_size <= 0 or args.coseg_image_size % 16:
            raise ValueError(f"--coseg_image_size must be a positive multiple of 16 (VGG19 relu5_4 has stride 16), "
                             f"got {args.coseg_image_size}")
        self.photometric = PhotometricLoss(args.w_reconstruction, args.w_ssim, args.w_smooth, args.num_best_views,
                                           smooth_lambda=args.smooth_lambda)
        self.coseg = None
        if args.w_seg > 0 and not args.supervised:
            self.coseg = CoSegmentationLoss(args.w_seg, args.seg_clusters, backbone=args.coseg_backbone,
                                            feature_size=args.coseg_image_size)
        self.augmentation = AugmentationConsistencyLoss(args.w_aug)
        self.val_set = build_mvs_dataset(args.val_datasets[0], args, args.val_split) if args.val_datasets else None
        if not args.dtu_scans and "dtu" in [parse_dataset_entry(e, args.data_root)[0] for e in args.train_datasets]:
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(fraction_list_path(args.dtu_fraction), run_dir / fraction_list_path(args.dtu_fraction).name)

    def build_model(self) -> MVSNet:
        return MVSNet(refine=self.args.refine)

    def parameter_groups(self, model: MVSNet) -> list[dict]:
        return [{"params": model.parameters(), "lr": self.args.lr}]

    def training_dataset(self) -> SeededBatches:
        if len(self.args.train_datasets) != 1:
            raise ValueError(f"JDACS trains on one dataset at a time, got {self.args.train_datasets}")
        dataset = build_mvs_dataset(self.args.train_datasets[0], self.args, "train")
        # an epoch = every sample once over all processes (each draws batch_size samples per step)
        world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        self.steps_per_epoch = self.args.steps_per_epoch or max(1, len(dataset) // (self.args.batch_size * world_size))
        return SeededBatches(dataset, self.args.batch_size)

    def training_stages(self, model, batch: MVSSample, step: int):
        out = model(batch.images, batch.K, batch.cam_from_world, batch.depth_values)
        depth = out.refined_depth if out.refined_depth is not None else out.depth
        scalars = {}
        if batch.mask.any():
            truth = [depth_metrics(d, g, m) for d, g, m in zip(depth.detach(), batch.depth, batch.mask)]
            scalars.update({f"gt_{k}": v for k, v in aggregate_depth_metrics(truth).items() if "mm" in k})
        if self.args.supervised:
            loss = masked_smooth_l1_depth(depth, batch.depth, batch.mask)
            yield loss, {**scalars, "loss": loss.item()}
            return
        h, w = depth.shape[-2:]
        K, src_from_ref = depth_resolution_geometry(batch, h, w)
        small = F.interpolate(batch.images.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False)
        small = small.unflatten(0, batch.images.shape[:2])
        with torch.autocast(depth.device.type, enabled=False):
            loss, parts = self.photometric(small[:, 0].float(), small[:, 1:].float(), depth.float(), K[:, 0], K[:, 1:],
                                           src_from_ref)
            if self.coseg is not None:
                seg, seg_parts = self.coseg(batch.images_raw, depth.float(), K[:, 0], K[:, 1:], src_from_ref)
                loss, parts = loss + seg, {**parts, **seg_parts}
        yield loss, {**scalars, **{k: float(v) for k, v in parts.items()}, "loss": loss.item()}
        if self.args.w_aug <= 0:
            return
        generator = torch.Generator().manual_seed(int(np.random.default_rng([int(batch.seed[0]), 1]).integers(2**31)))
        augmented = augment_views(batch.images_raw.cpu(), generator).to(depth.device)
        box = random_box_mask(*batch.images.shape[-2:], generator).to(depth.device)
        augmented = normalise_images(augmented, self.args.normalisation)
        augmented[:, 0] = augmented[:, 0] * box
        out_aug = model(augmented, batch.K, batch.cam_from_world, batch.depth_values)
        depth_aug = out_aug.refined_depth if out_aug.refined_depth is not None else out_aug.depth
        weight = weight_at_epoch(step // self.steps_per_epoch, self.args.w_aug, tuple(self.args.aug_doubling_epochs))
        aug_loss, aug_parts = self.augmentation(depth_aug, depth.detach(), box, weight)
        yield aug_loss, {"augmentation": float(aug_parts["augmentation"]), "w_aug": weight}

    def validate(self, model: MVSNet, step: int, run_dir: Path) -> tuple[dict, dict]:
        """Depth metrics on `num_val_samples` evenly spaced samples of the validation set, with the same metrics of
        the constant-depth guesses (`CONSTANT_BASELINES`) as `<guess>_<metric>` beside them."""
        if self.val_set is None:
            return {}, {}
        device = next(model.parameters()).device
        indices = np.linspace(0, len(self.val_set) - 1, min(self.args.num_val_samples, len(self.val_set))).astype(int)
        per_image, images = [], {}
        baselines: dict[str, list[dict]] = {name: [] for name in CONSTANT_BASELINES}
        for i in indices:
            sample = collate_mvs_samples([self.val_set[int(i)]])
            out = model(sample.images.to(device), sample.K.to(device), sample.cam_from_world.to(device),
                        sample.depth_values.to(device))
            depth = (out.refined_depth if out.refined_depth is not None else out.depth)[0].float().cpu()
            per_image.append(depth_metrics(depth, sample.depth[0], sample.mask[0]))
            for name, constant in constant_depth_guesses(sample.depth_values[0], sample.depth[0],
                                                         sample.mask[0]).items():
                baselines[name].append(depth_metrics(torch.full_like(depth, constant), sample.depth[0],
                                                     sample.mask[0]))
            if len(images) < 2:
                images[f"{sample.scene[0]}/{sample.ref_view[0]}"] = depth_strip(depth, sample.depth[0],
                                                                              out.confidence[0].float().cpu())
        scalars = {k: v for k, v in aggregate_depth_metrics(per_image).items() if isinstance(v, float)}
        for name, metrics in baselines.items():
            scalars.update({f"{name}_{k}": v for k, v in aggregate_depth_metrics(metrics).items()
                            if isinstance(v, float) and k != "num_images_without_ground_truth"})
        return scalars, images


# Constant-depth guesses logged beside the validation metrics (a trained model must beat both):
# "const_mid" predicts the middle of the hypothesis range, (d_0 + d_{D-1}) / 2, at every pixel (a guess needing
# no ground truth); "const_median" predicts the median ground-truth depth of the image at every pixel (an oracle
# constant: the best single depth for the abs error of that image).
CONSTANT_BASELINES = ("const_mid", "const_median")


def constant_depth_guesses(depth_values: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """{"const_mid": mid-range hypothesis depth, "const_median": median valid ground-truth depth (NaN if none)}."""
    valid = truth[mask]
    median = valid.median().item() if valid.numel() else float("nan")
    return {"const_mid": 0.5 * (depth_values[0].item() + depth_values[-1].item()), "const_median": median}


def depth_strip(depth: torch.Tensor, truth: torch.Tensor, confidence: torch.Tensor) -> np.ndarray:
    """(h, 3w, 3) grey strip: predicted depth | ground truth | confidence, depths on the same scale."""
    valid = truth > 0
    low, high = (truth[valid].min().item(), truth[valid].max().item()) if valid.any() else (
        depth.min().item(), depth.max().item())
    scale = max(high - low, 1e-6)
    panels = [((depth - low) / scale).clamp(0, 1), ((truth - low) / scale).clamp(0, 1) * valid, confidence.clamp(0, 1)]
    return torch.cat(panels, dim=1)[..., None].expand(-1, -1, 3).numpy()


def run(args: argparse.Namespace, parser=None) -> dict:
    """Train with the shared engine; returns the last validation scalars."""
    run_dir = Path(args.runs_dir) / args.expname
    return Trainer(JDACSTask(args, run_dir), args, parser).run()
