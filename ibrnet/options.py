"""The IBRNet option group (added to the shared groups of `multiview.engine.options`)."""

from __future__ import annotations

import argparse

import configargparse

from multiview.engine.options import build_parser


def add_ibrnet_options(parser: configargparse.ArgParser) -> None:
    group = parser.add_argument_group("ibrnet")
    group.add_argument("--num_rays", type=int, default=512,
                       help="target rays per step (N_rand; rescaled by num_source_views / sources drawn)")
    group.add_argument("--num_source_views", type=int, default=10, help="source views per target")
    group.add_argument("--source_count_jitter", type=int, default=2,
                       help="training draws num_source_views + U{-jitter..jitter} sources")
    group.add_argument("--max_pool_factor", type=int, default=3,
                       help="training source pool = nearest num_source_views*k views, k ~ U{1..factor}")
    group.add_argument("--target_as_source_probability", type=float, default=0.005,
                       help="probability that one training source is replaced by the target itself")
    group.add_argument("--max_image_side", type=int, default=0,
                       help="shrink images so their longer side is at most this (0 = native resolution)")
    group.add_argument("--crop_height", type=int, default=0, help="random training crop height (0 = no crop)")
    group.add_argument("--crop_width", type=int, default=0, help="random training crop width (0 = no crop)")
    group.add_argument("--random_flip", action=argparse.BooleanOptionalAction, default=False,
                       help="random horizontal flip of all views of a training sample")
    group.add_argument("--num_coarse_samples", type=int, default=64, help="coarse samples per ray (N_samples)")
    group.add_argument("--num_fine_samples", type=int, default=64,
                       help="importance samples per ray (N_importance; 0 = coarse only)")
    group.add_argument("--inverse_depth", action=argparse.BooleanOptionalAction, default=True,
                       help="coarse samples uniform in inverse depth (inv_uniform)")
    group.add_argument("--anti_alias_pooling", action=argparse.BooleanOptionalAction, default=True,
                       help="IBRNet's view-alignment pooling weights")
    group.add_argument("--white_background", action=argparse.BooleanOptionalAction, default=False,
                       help="composite rendered rays on white")
    group.add_argument("--use_sdpa", action=argparse.BooleanOptionalAction, default=True,
                       help="ray attention via scaled_dot_product_attention (else the explicit reference)")
    group.add_argument("--lr_feature", type=float, default=1e-3, help="learning rate of the feature network")
    group.add_argument("--lr_mlp", type=float, default=5e-4, help="learning rate of the coarse and fine aggregators")
    group.add_argument("--render_workers", type=int, default=0,
                       help="CPU rendering without gradients (validation, ibrnet.render, evaluation): ray slices "
                            "evaluated at once on threads, each slice's ops on one thread "
                            "(0 = torch's thread count, 1 = one slice at a time on all threads)")
    group.add_argument("--native_cpu_kernel", action=argparse.BooleanOptionalAction, default=True,
                       help="on the CPU in float32, run the aggregators as C kernels (ibrnet/aggregator_kernel.c): "
                            "the whole aggregator when rendering without gradients, the per-view layers' forward "
                            "and backward passes when training; compiled at first use with $CC or cc and cached "
                            "under ~/.cache/mvpretrain/native; without a working compiler it warns and uses PyTorch")
    group.add_argument("--chunk_size", type=int, default=4096, help="rays per chunk when rendering full images")
    group.add_argument("--render_stride", type=int, default=2, help="pixel stride of validation renders")
    group.add_argument("--num_val_views", type=int, default=2, help="target views rendered per validation")


def build_ibrnet_parser() -> configargparse.ArgParser:
    parser = build_parser("Train IBRNet (generalizable image-based rendering).")
    add_ibrnet_options(parser)
    return parser
