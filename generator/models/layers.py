"""The pieces both LogicAL generators are built from (pix2pixHD's global generator, :mod:`.e2i`, and the
edge-guided inpainter, :mod:`.inpaint`): network blocks, the checks of their config dataclasses, and the
Gaussian filter that the SSIM masks and the real-pixel renderer's seam share.

Kept apart from either network's module, the way timm keeps ``layers/`` apart from its model files,
so that a change to one generator's file never reaches into the other's.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SynthgenError


def gaussian_kernel(size: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The 1-D Gaussian of ``sigma`` px over ``size`` taps, summing to 1."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def separable_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable filter of every channel of (B, C, H, W) with the 1-D ``kernel``, borders reflected."""
    c, r = x.shape[1], kernel.numel() // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def check_ints(config, names, minimum: int) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < minimum:
            raise SynthgenError(f"{type(config).__name__}.{name}: must be an integer >= {minimum}, got {value!r}")


def config_from_dict(cls, values: dict, where: str):
    """Build a config dataclass from a dict, naming ``where`` (a file or option) on unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SynthgenError(f"{where}: unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except SynthgenError as e:
        raise SynthgenError(f"{where}: {e}") from None


class ResidualBlock(nn.Module):
    """x + (reflect-pad d, 3x3 conv dilated d, InstanceNorm, ReLU, reflect-pad 1, 3x3 conv, InstanceNorm)(x).

    pix2pixHD's block is ``dilation=1``; the inpainting renderer's EdgeConnect blocks are dilated."""

    def __init__(self, width: int, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(width, width, 3, dilation=dilation),
            nn.InstanceNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3),
            nn.InstanceNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stem_layers(in_channels: int, width: int) -> list[nn.Module]:
    """pix2pixHD's first block, shared by both renderers' generators: reflection-padded 7x7 conv,
    InstanceNorm, ReLU (a list, so the layers keep their places and state-dict keys in a Sequential)."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), nn.InstanceNorm2d(width), nn.ReLU(inplace=True)]


def output_layers(width: int, out_channels: int) -> list[nn.Module]:
    """pix2pixHD's last block without its activation: reflection-padded 7x7 conv to the output channels."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7)]
