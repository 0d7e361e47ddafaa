"""JDACS's co-segmentation (semantic) consistency loss (`UnSupSegLoss` + `SegDFF`, "deep feature factorisation").

Frozen VGG19 relu5_4 features of all V views (224×224 each) are stacked per batch element and factorised
by NMF into k parts; each view's 14×14×k part map (the rows of W) is upsampled to the depth resolution,
the source maps are inverse-warped to the reference with the predicted depth, and the cross-entropy of the
warped maps (as logits) against the reference's argmax part is averaged over the valid-warp pixels of each
source and summed over the sources. The part maps carry no gradient: the loss reaches the depth only
through the warp. As in the original, the raw W entries are the logits, so the loss's sharpness follows
NMF's arbitrary split of scale between W and H (small W: near-uniform logits, CE ≈ ln k per source).
Differences from the original, where implemented: a source with no valid pixel adds 0
(the original's empty cross-entropy is NaN), NaN retries use the seeds seed+1, seed+2, ... (the original
draws `random.randint(0, 255)`) and give up with an error after `MAX_NMF_ATTEMPTS`, and the warp uses K_src
(see `jdacs.losses.photometric`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from jdacs.losses.nmf import nmf
from jdacs.losses.photometric import warp_sources_to_reference
from multiview.vision.backbones import load_vgg19_features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_NMF_ATTEMPTS = 10


def factorise_parts(features: torch.Tensor, num_parts: int, max_iter: int, tol: float, seed: int) -> torch.Tensor:
    """NMF of each batch element's stacked features (B, n, C) -> W (B, n, num_parts).

    Every element starts from the seed `seed` (a generator on the features' device), as the original reseeds
    per element; an element whose W has NaNs is retried with seed+1, seed+2, ...
    """
    parts = []
    for index, V in enumerate(features):
        for attempt in range(MAX_NMF_ATTEMPTS):
            W = nmf(V, num_parts, max_iter, tol, torch.Generator(device=V.device).manual_seed(seed + attempt))[0]
            if not torch.isnan(W).any():
                break
        else:
            raise RuntimeError(f"NMF of batch element {index} gave NaNs with {MAX_NMF_ATTEMPTS} seeds from {seed} "
                               f"(non-finite features?)")
        parts.append(W)
    return torch.stack(parts)


class CoSegmentationLoss(nn.Module):
    """w_seg · Σ_sources CE(warped source part map, argmax reference part map) over valid pixels.

    Args:
        weight: w_seg (JDACS 0.01).
        num_parts: NMF parts k (JDACS `--seg_clusters` 4).
        nmf_max_iter, nmf_tol, nmf_seed: NMF settings (JDACS: 50, 1e-4, seed 1).
        backbone: "imagenet" (torchvision VGG19 weights from the torch cache; raises `PretrainedWeightsMissing`
            here, at construction, when offline with nothing cached) or "random" (tests and demos only).
            Recorded as `self.backbone`.
        feature_size: the square VGG input size (224).
        device: where to build the backbone first; other devices get a cached copy on first use.
    The VGG is not a submodule: it stays out of `state_dict`/checkpoints and `.to()`.
    """

    def __init__(self, weight: float = 0.01, num_parts: int = 4, nmf_max_iter: int = 50, nmf_tol: float = 1e-4,
                 nmf_seed: int = 1, backbone: str = "imagenet", feature_size: int = 224,
                 device: torch.device | str | None = None):
        super().__init__()
        self.weight, self.num_parts, self.feature_size = weight, num_parts, feature_size
        self.nmf_max_iter, self.nmf_tol, self.nmf_seed = nmf_max_iter, nmf_tol, nmf_seed
        self.backbone = backbone
        features = load_vgg19_features(backbone, device)
        self._features_by_device = {next(features.parameters()).device: features}

    def _features_on(self, device: torch.device) -> nn.Module:
        if device not in self._features_by_device:
            self._features_by_device[device] = copy.deepcopy(next(iter(self._features_by_device.values()))).to(device)
        return self._features_by_device[device]

    @torch.no_grad()
    def part_maps(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) views in [0, 1] -> (B, V, k, f/16, f/16) part maps (rows of W; 14×14 for f = 224).

        ImageNet mean/std normalisation, bilinear resize to feature_size² (not aspect-preserving), VGG19
        relu5_4, NMF of the (V·196, 512) stack of each batch element.
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
        B, V = images.shape[:2]
        mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
        std = images.new_tensor(IMAGENET_STD)[:, None, None]
        x = F.interpolate((images.flatten(0, 1) - mean) / std, size=(self.feature_size, self.feature_size),
                          mode="bilinear", align_corners=False)
        features = self._features_on(images.device)(x)  # (B·V, 512, f, f)
        f_h, f_w = features.shape[2:]
        stacked = features.permute(0, 2, 3, 1).reshape(B, V * f_h * f_w, -1)
        W = factorise_parts(stacked, self.num_parts, self.nmf_max_iter, self.nmf_tol, self.nmf_seed)
        return W.reshape(B, V, f_h, f_w, self.num_parts).permute(0, 1, 4, 2, 3)

    def cross_entropy(self, maps: torch.Tensor, depth: torch.Tensor, K_ref: torch.Tensor, K_src: torch.Tensor,
                      src_from_ref: torch.Tensor) -> torch.Tensor:
        """Unweighted loss from part maps (B, V, k, fh, fw) (reference first); other arguments as in `forward`."""
        h, w = depth.shape[1:]
        B, V = maps.shape[:2]
        upsampled = F.interpolate(maps.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False)
        upsampled = upsampled.unflatten(0, (B, V)).to(depth.dtype)
        labels = upsampled[:, 0].argmax(dim=1)  # (B, h, w)
        warped, valid = warp_sources_to_reference(upsampled[:, 1:], depth, K_ref, K_src, src_from_ref)
        ce = F.cross_entropy(warped.transpose(1, 2), labels[:, None].expand(-1, V - 1, -1, -1), reduction="none")
        valid = valid.to(ce.dtype)
        per_source = (ce * valid).sum(dim=(0, 2, 3)) / valid.sum(dim=(0, 2, 3)).clamp(min=1)
        return per_source.sum()

    def forward(self, images: torch.Tensor, depth: torch.Tensor, K_ref: torch.Tensor, K_src: torch.Tensor,
                src_from_ref: torch.Tensor):
        """
        Args:
            images: (B, V, 3, H, W) full-resolution views in [0, 1], reference first.
            depth: (B, h, w) predicted reference depth; K_ref (B, 3, 3), K_src (B, V−1, 3, 3) at the depth
                resolution; src_from_ref (B, V−1, 4, 4).
        Returns:
            (weight · loss, {"segmentation": unweighted loss, detached}).
        """
        loss = self.cross_entropy(self.part_maps(images), depth, K_ref, K_src, src_from_ref)
        return self.weight * loss, {"segmentation": loss.detach()}
