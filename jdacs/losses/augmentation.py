"""JDACS's data-augmentation consistency: augmented views, the random box mask, the loss and its schedule.

The second optimizer step of a JDACS iteration runs the network on colour-augmented views whose reference
has a random H/3 × W/3 box zeroed, and pulls that depth towards the (detached) first-pass depth outside
the box. As in JDACS (`datasets/dtu_yao.py` `transform_aug`, `train.py` `train_sample_aug`,
`models/augmentations.py` `random_image_mask`/`aug_loss`); the `Augmentor` class there (weaker jitter,
H/4 box) is unused by the original and not reproduced. All randomness comes from the `generator`
argument, so a batch is reproducible from its seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn

_ADJUSTMENTS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator, device=generator.device))


def _augment_view(image: torch.Tensor, generator: torch.Generator, ranges, gamma_range) -> torch.Tensor:
    """One (3, H, W) view: torchvision ColorJitter semantics (adjustments in a random order), then gamma."""
    order = torch.randperm(len(_ADJUSTMENTS), generator=generator, device=generator.device).tolist()
    factors = [_uniform(*r, generator) for r in ranges]
    for index in order:
        image = _ADJUSTMENTS[index](image, factors[index])
    return image.pow(_uniform(*gamma_range, generator)).clamp(0.0, 1.0)


def augment_views(images: torch.Tensor, generator: torch.Generator, *, brightness: float = 1.0,
                  contrast: float = 1.0, saturation: float = 0.5, hue: float = 0.5,
                  gamma_range: tuple[float, float] = (0.5, 2.0)) -> torch.Tensor:
    """Colour-jitter and gamma-change every view independently (JDACS `transform_aug`).

    Per view: ColorJitter(brightness, contrast, saturation, hue) — factors uniform in [max(0, 1 − b), 1 + b],
    [max(0, 1 − c), 1 + c], [max(0, 1 − s), 1 + s] and [−hue, hue], applied in a random order — then
    x ↦ clip(x^γ, 0, 1), γ ~ U[gamma_range] (JDACS: 1, 1, 0.5, 0.5, [0.5, 2]). The original jitters 8-bit
    PIL images; here the same operations run on float tensors (clamped to [0, 1] after each step).

    Args:
        images: (B, V, 3, H, W) in [0, 1]. generator: the only source of randomness.
    Returns:
        (B, V, 3, H, W) augmented views in [0, 1].
    """
    if images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
    ranges = [(max(0.0, 1 - brightness), 1 + brightness), (max(0.0, 1 - contrast), 1 + contrast),
              (max(0.0, 1 - saturation), 1 + saturation), (-hue, hue)]
    views = [_augment_view(view, generator, ranges, gamma_range) for view in images.flatten(0, 1)]
    return torch.stack(views).unflatten(0, images.shape[:2])


def random_box_mask(height: int, width: int, generator: torch.Generator, *, device=None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W) mask, 1 everywhere except a random (H//3) × (W//3) box of 0 (JDACS `random_image_mask`).

    The box's top-left corner is uniform in [0, H − H//3) × [0, W − W//3) (numpy randint bounds, as the
    original). One box per batch, as the original; the trainer multiplies the reference image by it.
    """
    box_h, box_w = height // 3, width // 3
    top = int(torch.randint(0, height - box_h, (1,), generator=generator, device=generator.device))
    left = int(torch.randint(0, width - box_w, (1,), generator=generator, device=generator.device))
    mask = torch.ones(height, width, device=device, dtype=dtype)
    mask[top:top + box_h, left:left + box_w] = 0
    return mask


def weight_at_epoch(epoch: int, base: float = 0.01, doubling_epochs: tuple[int, ...] = (1, 3, 5, 7)) -> float:
    """w_aug at 0-based `epoch`: base doubled once per listed epoch already reached (JDACS: 0.01 → 0.16).

    Stateless, unlike the original (which doubled `args.w_aug` in place and so lost the doublings on resume).
    """
    return base * 2 ** sum(epoch >= e for e in doubling_epochs)


class AugmentationConsistencyLoss(nn.Module):
    """weight · smoothL1(depth_aug[m], depth_pseudo[m]), m = pixels outside the box (JDACS `aug_loss`).

    Args:
        weight: w_aug (JDACS 0.01 at the start; see `weight_at_epoch` for its schedule).
    """

    def __init__(self, weight: float = 0.01):
        super().__init__()
        self.weight = weight

    def forward(self, depth_aug: torch.Tensor, depth_pseudo: torch.Tensor, box_mask: torch.Tensor,
                weight: float | None = None):
        """
        Args:
            depth_aug: (B, h, w) depth of the augmented pass; depth_pseudo: (B, h, w) first-pass depth
                (detached here).
            box_mask: (H, W) or (B, H, W) mask of `random_box_mask` at image resolution; it is downsampled to
                (h, w) by nearest neighbour (for H = 4h this is JDACS's `interpolate(scale_factor=0.25)`).
            weight: overrides the constructor's weight (e.g. `weight_at_epoch(epoch)`).
        Returns:
            (weight · loss, {"augmentation": unweighted loss, detached}); smooth-L1 (β = 1, depth units) mean.
        """
        if depth_aug.dim() != 3 or depth_aug.shape != depth_pseudo.shape:
            raise ValueError(f"depth_aug and depth_pseudo must both be (B, h, w), got {tuple(depth_aug.shape)} "
                             f"and {tuple(depth_pseudo.shape)}")
        if box_mask.dim() not in (2, 3):
            raise ValueError(f"box_mask must be (H, W) or (B, H, W), got {tuple(box_mask.shape)}")
        masks = box_mask.expand(depth_aug.shape[0], *box_mask.shape[-2:])
        keep = F.interpolate(masks[:, None].float(), size=depth_aug.shape[1:], mode="nearest")[:, 0] > 0.5
        loss = F.smooth_l1_loss(depth_aug[keep], depth_pseudo.detach()[keep])
        w = self.weight if weight is None else weight
        return w * loss, {"augmentation": loss.detach()}
