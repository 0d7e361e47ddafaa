"""The JDACS/MVSNet option group (added to the shared groups of `multiview.engine.options`)."""

from __future__ import annotations

import argparse

import configargparse

from multiview.engine.options import build_parser


def add_jdacs_options(parser: configargparse.ArgParser) -> None:
    group = parser.add_argument_group("jdacs")
    group.add_argument("--dtu_fraction", type=int, choices=[5, 15, 25, 100], default=100,
                       help="train on this percentage of DTU's 79 training scans (nested seeded lists, "
                            "configs/jdacs/lists/); the list is copied into the run")
    group.add_argument("--dtu_scans", type=int, nargs="*", default=None,
                       help="explicit DTU training scans, overriding --dtu_fraction (custom or synthetic data)")
    group.add_argument("--num_views", type=int, default=7, help="views per sample (reference + sources; MVSNet: 3)")
    group.add_argument("--num_depths", type=int, default=192, help="depth hypotheses D")
    group.add_argument("--interval_scale", type=float, default=1.6,
                       help="DTU: multiplier of the cam.txt depth interval (JDACS 1.6, MVSNet 1.06)")
    group.add_argument("--image_height", type=int, default=0,
                       help="network input height (0 = the dataset's size; required for MVImgNet)")
    group.add_argument("--image_width", type=int, default=0, help="network input width (0 = the dataset's size)")
    group.add_argument("--normalisation", choices=["center", "unit"], default="center",
                       help="input images: JDACS per-image standardisation (center) or MVSNet's [0, 1] (unit)")
    group.add_argument("--batch_size", type=int, default=4, help="samples per step (per process)")
    group.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    group.add_argument("--refine", action=argparse.BooleanOptionalAction, default=False,
                       help="MVSNet's depth refinement network (off in the published JDACS/MVSNet models)")
    group.add_argument("--supervised", action=argparse.BooleanOptionalAction, default=False,
                       help="train with MVSNet's supervised smooth-L1 depth loss instead of the JDACS losses")
    group.add_argument("--w_reconstruction", type=float, default=12.0, help="photometric reconstruction weight")
    group.add_argument("--w_ssim", type=float, default=6.0, help="SSIM weight")
    group.add_argument("--w_smooth", type=float, default=0.18, help="edge-aware depth smoothness weight")
    group.add_argument("--smooth_lambda", type=float, default=1.0, help="edge-aware smoothness lambda")
    group.add_argument("--num_best_views", type=int, default=3, help="k of the robust per-pixel view selection")
    group.add_argument("--w_seg", type=float, default=0.01, help="co-segmentation loss weight (0 = off)")
    group.add_argument("--seg_clusters", type=int, default=4, help="NMF parts of the co-segmentation loss")
    group.add_argument("--coseg_backbone", choices=["imagenet", "random"], default="imagenet",
                       help="VGG19 weights of the co-segmentation loss; random is for tests and demos only")
    group.add_argument("--coseg_image_size", type=int, default=224,
                       help="square VGG19 input size of the co-segmentation loss, a multiple of 16 (JDACS 224 -> "
                            "14x14 part maps; smaller is cheaper on a CPU)")
    group.add_argument("--w_aug", type=float, default=0.01, help="augmentation-consistency weight at epoch 0 (0 = off)")
    group.add_argument("--aug_doubling_epochs", type=int, nargs="*", default=[1, 3, 5, 7],
                       help="epochs at which the augmentation weight doubles")
    group.add_argument("--steps_per_epoch", type=int, default=0,
                       help="steps per epoch for the augmentation schedule (0 = training samples / (batch size x "
                            "processes))")
    group.add_argument("--num_val_samples", type=int, default=8, help="validation samples per validation run")


def build_jdacs_parser() -> configargparse.ArgParser:
    parser = build_parser("Train MVSNet with JDACS's self-supervised losses (or supervised).")
    add_jdacs_options(parser)
    return parser
