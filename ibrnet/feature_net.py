"""IBRNet's feature extractor: a ResUNet whose encoder is ResNet-34 truncated after layer3.

As the original (ibrnet/feature_network.py): layer1 has stride 2 and there is no max-pool, every
norm is InstanceNorm2d(affine=True, no running stats), 3x3/7x7 convolutions pad with 'reflect',
the decoder upsamples bilinearly (align_corners=True) and concatenates [decoded, skip]; the 64-channel
output at 1/4 resolution is split into coarse (first 32) and fine (last 32) maps. Random init: the
original loads no ImageNet weights. Module names follow the original so checkpoints import 1:1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False, padding_mode="reflect")


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with instance norm."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = instance_norm(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = instance_norm(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            instance_norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on fresh outputs, as the original (its ReLU is inplace=True, `out += identity`)
        out = F.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu_(out.add_(identity))


class ConvELU(nn.Module):
    """Conv (with bias, reflect padding) + InstanceNorm + ELU: the original's `conv` block."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding=(kernel_size - 1) // 2,
                              padding_mode="reflect")
        self.bn = instance_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu_(self.bn(self.conv(x)))


class UpConvELU(nn.Module):
    """Bilinear x2 upsampling (align_corners=True) followed by ConvELU: the original's `upconv`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvELU(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


def concat_skip(decoded: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """[decoded, skip] along channels, the skip zero-padded (centred) to the decoded size (odd inputs)."""
    dy, dx = decoded.shape[-2] - skip.shape[-2], decoded.shape[-1] - skip.shape[-1]
    skip = F.pad(skip, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
    return torch.cat([decoded, skip], dim=1)


class ResUNet(nn.Module):
    """Images (V, 3, H, W) in [0, 1] -> coarse and fine features (V, 32, h, w), see below

    Precisely: the encoder reaches ceil(H/16); each decoder stage doubles it and pads the skip to
    match, so (h, w) = (4·ceil(H/16), 4·ceil(W/16)) — 32x40 for 120x160, as in the original. The
    projector samples these maps with the full-resolution normalised grid (align_corners=True).
    """

    def __init__(self, coarse_channels: int = 32, fine_channels: int = 32):
        super().__init__()
        self.coarse_channels, self.fine_channels = coarse_channels, fine_channels
        out_channels = coarse_channels + fine_channels
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False, padding_mode="reflect")
        self.bn1 = instance_norm(64)
        self.layer1 = self._make_layer(64, 64, 3, stride=2)
        self.layer2 = self._make_layer(64, 128, 4, stride=2)
        self.layer3 = self._make_layer(128, 256, 6, stride=2)
        self.upconv3 = UpConvELU(256, 128)
        self.iconv3 = ConvELU(128 + 128, 128, 3)
        self.upconv2 = UpConvELU(128, 64)
        self.iconv2 = ConvELU(64 + 64, out_channels, 3)
        self.out_conv = nn.Conv2d(out_channels, out_channels, 1, 1)

    @staticmethod
    def _make_layer(in_channels: int, channels: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_channels, channels, stride)]
        blocks += [BasicBlock(channels, channels) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu_(self.bn1(self.conv1(images)))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x = self.iconv3(concat_skip(self.upconv3(x3), x2))
        x = self.iconv2(concat_skip(self.upconv2(x), x1))
        out = self.out_conv(x)
        return out[:, : self.coarse_channels], out[:, -self.fine_channels :]
