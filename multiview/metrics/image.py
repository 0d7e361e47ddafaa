"""Image-quality metrics with the protocol of IBRNet's evaluation (`ibrnet.md` §9): PSNR, SSIM, LPIPS.

Inputs are channels-last float images in [0, 1]: (H, W, C) or a batch (N, H, W, C), numpy arrays or
torch tensors (any device). Nothing is clipped here: the protocol clips the *prediction* to [0, 1]
before calling these and leaves the ground truth as read. Batched inputs give the mean of the per-image
values (`reduction="mean"`, what papers report as "mean PSNR") or the per-image values (`"none"`).

* `psnr`: 10·log10(1 / MSE) per image, MSE over all pixels and channels (`tf.image.psnr(max_val=1)`);
  +inf for identical images.
* `ssim`: exactly `tf.image.ssim(max_val=1)` as IBRNet used it: 11×11 Gaussian window σ = 1.5 (kornia's
  normalised kernel = TF's `_fspecial_gauss`), k1 = 0.01, k2 = 0.03, population (co)variances, VALID
  filtering (no padding: the SSIM map is (H − 10) × (W − 10)), mean over the map and the channels.
  It equals `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`, which filters with reflect padding and
  then crops 5 pixels per side — leaving exactly the valid region.
* `lpips`: the `lpips` package's LPIPS v0.1 (`lpips.LPIPS(net=...)`, linear heads from the package's
  `weights/v0.1/<net>.pth`) called with `normalize=True` (inputs [0, 1] mapped to [−1, 1]), as IBRNet's
  TF port `lpips_tf.lpips(model='net-lin', net='vgg')`. The torchvision ImageNet backbone (VGG16 or
  AlexNet) is loaded from the torch hub cache by `multiview.vision.backbones.load_torchvision_weights`,
  so an offline machine without the file gets one `PretrainedWeightsMissing` naming the file and the
  cache path instead of a download attempt. `weights="random"` (random backbone AND heads, seeded) is for
  tests only and is recorded as such in `ImageMetrics.protocol`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multiview.vision.backbones import load_torchvision_weights

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
LPIPS_NETS = ("vgg", "alex")
LPIPS_WEIGHTS = ("imagenet", "random")
LPIPS_VERSION = "0.1"
LPIPS_MIN_SIZE = {"vgg": 16, "alex": 31}  # smaller images leave no pixel for the backbone's last layer
RANDOM_LPIPS_SEED = 0
REDUCTIONS = ("mean", "none")

PSNR_PROTOCOL = {"max_val": 1.0, "formula": "10*log10(1/MSE), MSE over all pixels and channels of one image",
                 "reduction": "mean of per-image values", "equivalent": "tf.image.psnr(max_val=1.0)"}
SSIM_PROTOCOL = {"window": f"gaussian {SSIM_WINDOW}x{SSIM_WINDOW}", "sigma": SSIM_SIGMA, "k1": SSIM_K1,
                 "k2": SSIM_K2, "max_val": 1.0, "filtering": "valid (no padding)", "covariance": "population",
                 "reduction": "mean over the SSIM map and channels per image; mean of per-image values",
                 "equivalent": "tf.image.ssim(max_val=1.0) (IBRNet's eval)"}


# --- inputs -------------------------------------------------------------------------------------------------


def _as_nchw(pred, gt, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (H, W, C) / (N, H, W, C) images of equal shape -> (N, C, H, W) tensors, float32 or float64."""
    tensors = []
    for value in (pred, gt):
        tensor = torch.from_numpy(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
        tensors.append(tensor)
    pred_t, gt_t = tensors
    if pred_t.shape != gt_t.shape:
        raise ValueError(f"{name}: pred and gt must have the same shape, got {tuple(pred_t.shape)} and "
                         f"{tuple(gt_t.shape)}")
    if pred_t.ndim not in (3, 4):
        raise ValueError(f"{name}: expected channels-last images (H, W, C) or (N, H, W, C), got shape "
                         f"{tuple(pred_t.shape)}")
    dtype = torch.float64 if torch.float64 in (pred_t.dtype, gt_t.dtype) else torch.float32
    pred_t, gt_t = (t.to(device=pred_t.device, dtype=dtype) for t in (pred_t, gt_t))
    if pred_t.ndim == 3:
        pred_t, gt_t = pred_t[None], gt_t[None]
    return pred_t.permute(0, 3, 1, 2), gt_t.permute(0, 3, 1, 2)


def _reduce(per_image: torch.Tensor, reduction: str):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    values = per_image.detach().double().cpu().numpy()
    return float(values.mean()) if reduction == "mean" else values


# --- PSNR, SSIM ---------------------------------------------------------------------------------------------


def psnr(pred, gt, reduction: str = "mean"):
    """PSNR in dB with max value 1, per image (MSE in float64); batches: mean of per-image values.

    Args:
        pred, gt: (H, W, C) or (N, H, W, C) in [0, 1].
        reduction: "mean" -> float; "none" -> (N,) float64 numpy array.
    """
    x, y = _as_nchw(pred, gt, "psnr")
    mse = ((x.double() - y.double()) ** 2).mean(dim=(1, 2, 3))
    return _reduce(-10.0 * torch.log10(mse), reduction)


@functools.lru_cache(maxsize=8)
def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    from kornia.filters import get_gaussian_kernel2d

    return get_gaussian_kernel2d((SSIM_WINDOW, SSIM_WINDOW), (SSIM_SIGMA, SSIM_SIGMA), device=device, dtype=dtype)


def ssim_map(pred, gt) -> torch.Tensor:
    """(N, C, H − 10, W − 10) SSIM map of `tf.image.ssim(max_val=1)` (see the module docstring).

    Local statistics are Gaussian-weighted means (kornia `filter2d`, VALID, no padding):
    SSIM = (2·μx·μy + c1)(2·σxy + c2) / ((μx² + μy² + c1)(σx² + σy² + c2)), c1 = (0.01)², c2 = (0.03)².
    """
    from kornia.filters import filter2d

    x, y = _as_nchw(pred, gt, "ssim")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim: images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} (the window), got "
                         f"{tuple(x.shape[-2:])}")
    window = _gaussian_window(x.device, x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return filter2d(t, window, padding="valid")

    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = blur(x), blur(y)
    mu_xy = mu_x * mu_y
    mu_sq = mu_x**2 + mu_y**2
    luminance = (2.0 * mu_xy + c1) / (mu_sq + c1)
    # TF's _ssim_helper: (2·E[xy] − 2·μxμy + c2) / (E[x² + y²] − (μx² + μy²) + c2), compensation 1
    contrast_structure = (2.0 * blur(x * y) - 2.0 * mu_xy + c2) / (blur(x * x + y * y) - mu_sq + c2)
    return luminance * contrast_structure


def ssim(pred, gt, reduction: str = "mean"):
    """SSIM as IBRNet's `tf.image.ssim(max_val=1)`: mean of the valid-region map over pixels and channels.

    Args:
        pred, gt: (H, W, C) or (N, H, W, C) in [0, 1], H and W at least 11.
        reduction: "mean" -> float (mean of per-image values); "none" -> (N,) float64 numpy array.
    """
    return _reduce(ssim_map(pred, gt).mean(dim=(1, 2, 3)), reduction)


# --- LPIPS --------------------------------------------------------------------------------------------------


def lpips_heads_path(net: str) -> Path:
    """The v0.1 linear-head weights shipped inside the `lpips` package: lpips/weights/v0.1/<net>.pth."""
    import lpips as lpips_package

    return Path(lpips_package.__file__).parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"


def _torchvision_features(net: str) -> nn.Sequential:
    """The ImageNet `features` of torchvision's VGG16 / AlexNet, the backbones the lpips package loads."""
    import torchvision

    if net == "vgg":
        model = load_torchvision_weights(torchvision.models.vgg16, torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    else:
        model = load_torchvision_weights(torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1)
    return model.features


def build_lpips(net: str = "vgg", weights: str = "imagenet", device: torch.device | str | None = None) -> nn.Module:
    """`lpips.LPIPS(net=net, version="0.1")` in eval mode with frozen weights, on `device`.

    The module is built on the meta device (no random initialisation, no download: the lpips package would
    call torchvision with `pretrained=True`), then every weight is loaded explicitly and strictly:
    backbone convolutions from torchvision's ImageNet weights (cache only, see `load_torchvision_weights`),
    linear heads from `lpips_heads_path(net)`, and the input scaling layer's constants.
    `weights="random"` (tests only): PyTorch's default init of backbone and heads under seed
    `RANDOM_LPIPS_SEED` (the global RNG is not touched).

    Raises:
        PretrainedWeightsMissing: the torchvision weight file is not in the torch hub cache.
        FileNotFoundError: the lpips package's head weights are missing (a broken installation).
    """
    import lpips as lpips_package

    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net must be one of {LPIPS_NETS}, got {net!r}")
    if weights not in LPIPS_WEIGHTS:
        raise ValueError(f"LPIPS weights must be one of {LPIPS_WEIGHTS}, got {weights!r}")
    features = _torchvision_features(net) if weights == "imagenet" else None  # fail fast when missing
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated" inside the lpips package
        model = lpips_package.LPIPS(pretrained=False, net=net, version=LPIPS_VERSION, pnet_rand=True,
                                    verbose=False)
    model.to_empty(device="cpu")
    state = {f"scaling_layer.{k}": v for k, v in lpips_package.ScalingLayer().state_dict().items()}
    if weights == "imagenet":
        for slice_name, block in model.net.named_children():
            for index, _ in block.named_children():
                for key, value in features[int(index)].state_dict().items():
                    state[f"net.{slice_name}.{index}.{key}"] = value
        heads = lpips_heads_path(net)
        if not heads.is_file():
            raise FileNotFoundError(f"{heads}: LPIPS v{LPIPS_VERSION} linear-head weights are missing from the "
                                    f"lpips package (reinstall it: pip install --force-reinstall lpips)")
        for key, value in torch.load(heads, map_location="cpu", weights_only=True).items():
            state[key] = value  # "lin<k>.model.1.weight"; the module holds each head as lin<k> and as lins.<k>
            state[f"lins.{key[3:]}"] = value
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_LPIPS_SEED)
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()
        state.update({k: v for k, v in model.state_dict().items() if not k.startswith("scaling_layer.")})
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    return model.eval().to(device)


@functools.lru_cache(maxsize=4)
def _cached_lpips(net: str, weights: str, device: str) -> nn.Module:
    return build_lpips(net, weights, device)


@torch.no_grad()
def lpips_with(model: nn.Module, pred, gt, reduction: str = "mean"):
    """LPIPS of (H, W, 3) / (N, H, W, 3) images in [0, 1] with a built LPIPS module (`normalize=True`).

    Images are sent one at a time (full-resolution VGG activations are large); the module's device is used.
    """
    x, y = _as_nchw(pred, gt, "lpips")
    if x.shape[1] != 3:
        raise ValueError(f"lpips: expected 3 colour channels, got {x.shape[1]}")
    min_size = LPIPS_MIN_SIZE.get(getattr(model, "pnet_type", None), 1)
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"lpips: the {model.pnet_type} backbone needs images of at least {min_size}x{min_size}, "
                         f"got {tuple(x.shape[-2:])}")
    device = next(model.parameters()).device
    values = [model(a[None].to(device, torch.float32), b[None].to(device, torch.float32), normalize=True).reshape(())
              for a, b in zip(x, y)]
    return _reduce(torch.stack(values), reduction)


def lpips(pred, gt, net: str = "vgg", weights: str = "imagenet", reduction: str = "mean"):
    """LPIPS v0.1 (lower is better) with inputs in [0, 1] mapped to [−1, 1]; the module is built once per
    (net, weights, device) and cached. `weights="random"` is for tests only."""
    device = pred.device if isinstance(pred, torch.Tensor) else torch.device("cpu")
    return lpips_with(_cached_lpips(net, weights, str(device)), pred, gt, reduction)


def lpips_protocol(net: str, weights: str) -> dict:
    """What an LPIPS value means: version, backbone and its weights, heads, input mapping."""
    try:
        package_version = importlib.metadata.version("lpips")
    except importlib.metadata.PackageNotFoundError:
        package_version = "unknown"
    backbone = {"vgg": "torchvision vgg16 VGG16_Weights.IMAGENET1K_V1",
                "alex": "torchvision alexnet AlexNet_Weights.IMAGENET1K_V1"}[net]
    return {
        "computed": True, "version": LPIPS_VERSION, "net": net, "lpips_package": package_version,
        "backbone_weights": backbone if weights == "imagenet" else "random (seeded; tests only, NOT comparable)",
        "linear_heads": f"lpips/weights/v{LPIPS_VERSION}/{net}.pth" if weights == "imagenet" else "random",
        "weights": weights, "input_mapping": "[0,1] -> [-1,1] (normalize=True)",
        "equivalent": "lpips_tf.lpips(model='net-lin', net='vgg') in IBRNet's eval" if net == "vgg" else None,
    }


class ImageMetrics:
    """PSNR, SSIM and optionally LPIPS of a prediction against its ground truth, with the protocol recorded.

    The LPIPS module is built once, in the constructor (so missing weights fail before any rendering).

    Args:
        lpips_net: "vgg" (IBRNet's), "alex", or None to skip LPIPS (then it is reported as not computed).
        lpips_weights: "imagenet", or "random" (tests only).
        device: where LPIPS and SSIM run.
    """

    def __init__(self, lpips_net: str | None = "vgg", lpips_weights: str = "imagenet",
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.lpips_model = None if lpips_net is None else build_lpips(lpips_net, lpips_weights, self.device)
        self.protocol = {
            "psnr": PSNR_PROTOCOL, "ssim": SSIM_PROTOCOL,
            "lpips": {"computed": False, "reason": "LPIPS not requested (--no_lpips)"} if lpips_net is None
            else lpips_protocol(lpips_net, lpips_weights),
            "inputs": "prediction clipped to [0, 1] by the caller, ground truth as read; full image, no mask/crop",
        }

    def __call__(self, pred, gt) -> dict[str, float | None]:
        """{"psnr", "ssim", "lpips"} of one image pair (or batch means); lpips is None when not computed."""
        pred_t, gt_t = torch.as_tensor(pred, device=self.device), torch.as_tensor(gt, device=self.device)
        return {"psnr": psnr(pred_t, gt_t), "ssim": ssim(pred_t, gt_t),
                "lpips": None if self.lpips_model is None else lpips_with(self.lpips_model, pred_t, gt_t)}
