"""Frozen ImageNet backbones from torchvision, loaded offline-safely (JDACS's VGG19, LPIPS's AlexNet/VGG16).

Pretrained weights load the standard torchvision way (`builder(weights=...)`, file in
`torch.hub.get_dir()/checkpoints/`). The cache file is checked BEFORE torchvision is called, so an
offline machine gets one `PretrainedWeightsMissing` naming the file, the cache path and the URL instead
of a download attempt and a network timeout. Models are built under a forked RNG, so loading a backbone
never changes the global random state (resuming a run stays exact).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import VGG19_Weights, vgg

BACKBONE_WEIGHTS = ("imagenet", "random")
RANDOM_BACKBONE_SEED = 0
VGG19_RELU5_4 = 36  # `features[:36]` ends at relu5_4: the last MaxPool (module '36') is dropped


class PretrainedWeightsMissing(RuntimeError):
    """Pretrained weights are neither in the torch hub cache nor loadable from it."""


def weights_cache_path(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torchvision looks for (and downloads) `weights`: torch.hub.get_dir()/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def load_torchvision_weights(builder: Callable[..., nn.Module], weights: torchvision.models.WeightsEnum) -> nn.Module:
    """`builder(weights=weights)` (e.g. `torchvision.models.vgg19`, `VGG19_Weights.IMAGENET1K_V1`) from the cache only.

    Raises:
        PretrainedWeightsMissing: the weight file is not in the cache (message: file, cache path, URL) or
            cannot be loaded (e.g. a truncated download).
    """
    path = weights_cache_path(weights)
    if not path.is_file():
        raise PretrainedWeightsMissing(
            f"pretrained weights {path.name} are not in the torch hub cache: expected {path}. On a machine with "
            f"internet access download {weights.url} and copy it to {path} (the cache is torch.hub.get_dir(), "
            f"set with $TORCH_HOME). Random-weight backbones exist for tests and demos only."
        )
    try:
        with torch.random.fork_rng(devices=[]):
            return builder(weights=weights)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:  # corrupt/truncated file, wrong state dict
        raise PretrainedWeightsMissing(
            f"pretrained weights {path} exist but could not be loaded ({error}); delete the file and download "
            f"{weights.url} again"
        ) from error


def load_vgg19_features(weights: str = "imagenet", device: torch.device | str | None = None) -> nn.Sequential:
    """Frozen VGG19 `features` up to relu5_4 (512 channels, stride 16), in eval mode, on `device`.

    Args:
        weights: "imagenet" (`VGG19_Weights.IMAGENET1K_V1`, from the cache, see `load_torchvision_weights`)
            or "random" (tests and demos only: torchvision's VGG conv init, kaiming-normal fan-out, zero bias,
            with the fixed seed `RANDOM_BACKBONE_SEED`; only the conv stack is built — the unused 120M-parameter
            classifier would take seconds to initialise).
    Input: (N, 3, H, W) ImageNet-normalised images; output (N, 512, H/16, W/16).
    """
    if weights == "imagenet":
        features = load_torchvision_weights(torchvision.models.vgg19, VGG19_Weights.IMAGENET1K_V1).features
    elif weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_BACKBONE_SEED)
            features = vgg.make_layers(vgg.cfgs["E"])  # VGG19's `features`
            for conv in (m for m in features if isinstance(m, nn.Conv2d)):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
    else:
        raise ValueError(f"weights must be one of {BACKBONE_WEIGHTS}, got {weights!r}")
    features = features[:VGG19_RELU5_4]
    features.requires_grad_(False)
    return features.eval().to(device)
