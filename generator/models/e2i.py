"""The edge-to-image generator: a pix2pixHD-style conditional GAN, re-derived (not ported).

LogicAL (sec. 3.1, 4.2) turns edited edge maps into anomalous photos with a generator trained like
pix2pixHD, with DeepSIM's TPS augmentation (see :mod:`generator.models.tps`). Its input is the
first-scale PiDiNet edge map of an image (LogicAL 4.2: "the first scale edge map contains more
detail edges"), one channel; its output is the RGB photo.

Architecture facts come from pix2pixHD's published description and code, read for facts only
(DESIGN.md sec. 5; DeepSIM trains pix2pixHD's "global" generator):

- Global generator: 7x7 conv (ngf=64) -> ``n_downsampling``=4 stride-2 3x3 convs doubling the width
  -> ``n_blocks``=9 residual blocks -> 4 stride-2 3x3 transposed convs halving it -> 7x7 conv to RGB
  -> tanh. InstanceNorm without affine parameters and ReLU after every conv but the last; reflection
  padding for the 7x7 convs and inside the residual blocks.
- Multi-scale PatchGAN discriminator: ``num_d``=2 identical discriminators, the second seeing the
  input average-pooled (3x3, stride 2, padding 1, padding not counted). Each: a 4x4 stride-2 conv
  (ndf=64) + LeakyReLU(0.2); ``n_layers``-1=2 more 4x4 stride-2 convs doubling the width (max 512)
  + InstanceNorm + LeakyReLU; one 4x4 stride-1 conv + InstanceNorm + LeakyReLU; a 4x4 stride-1 conv to
  one channel. Padding 2 for every 4x4 conv. It sees the edge map and the image concatenated
  (a conditional discriminator) and returns every layer's output, for feature matching.
- Losses: least-squares GAN (targets 1 real, 0 fake), discriminator feature matching weighted
  ``lambda_feat``=10, each scale 1/num_d and each layer 4/(n_layers+1), and a VGG19 perceptual loss
  (relu1_1..relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1; also times ``lambda_feat``) that is used ONLY
  when VGG19 ImageNet weights can be found; without them feature matching alone is the
  reconstruction signal (DESIGN.md sec. 5) and the training run records that.
- Initialisation: conv weights N(0, 0.02) (pix2pixHD ``weights_init``); biases zero (pix2pixHD keeps
  PyTorch's random default; zero makes initialisation a pure function of the seed).

All tensors outside this module are in [0, 1] (the project's convention); the networks map to and
from pix2pixHD's [-1, 1] internally.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..errors import SynthgenError
from ..safe_load import load_state_dict_checked, load_torch_file

#: VGG19 layers the perceptual loss compares: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (torchvision
#: ``vgg19().features`` indices 1, 6, 11, 20, 29), with pix2pixHD's weights.
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class GeneratorConfig:
    """Widths of the global generator (defaults: pix2pixHD/DeepSIM ``--netG global``)."""

    ngf: int = 64
    n_downsampling: int = 4  # DeepSIM --n_downsample_global 4
    n_blocks: int = 9
    in_channels: int = 1  # one edge map
    out_channels: int = 3

    def __post_init__(self):
        _check_ints(self, ("ngf", "in_channels", "out_channels"), minimum=1)
        _check_ints(self, ("n_downsampling", "n_blocks"), minimum=0)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (each downsampling halves them)."""
        return 2**self.n_downsampling


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Widths of the multi-scale PatchGAN discriminator (defaults: pix2pixHD train options)."""

    ndf: int = 64
    n_layers: int = 3
    num_d: int = 2
    max_width: int = 512
    in_channels: int = 1 + 3  # edge map + image

    def __post_init__(self):
        _check_ints(self, ("ndf", "n_layers", "num_d", "max_width", "in_channels"), minimum=1)


def _check_ints(config, names, minimum: int) -> None:
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


def check_image_size(config: GeneratorConfig, height: int, width: int, where: str) -> None:
    """Refuse image sizes the generator cannot reproduce exactly (sides not multiples of 2^n_down)."""
    m = config.size_multiple
    if height % m or width % m:
        raise SynthgenError(
            f"{where}: image size {height}x{width} is not a multiple of {m} "
            f"(the generator downsamples {config.n_downsampling} times)"
        )


class ResidualBlock(nn.Module):
    """x + (reflect-pad, 3x3 conv, InstanceNorm, ReLU, reflect-pad, 3x3 conv, InstanceNorm)(x)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3),
            nn.InstanceNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3),
            nn.InstanceNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GlobalGenerator(nn.Module):
    """Edge map (B, 1, H, W) in [0, 1] -> image (B, 3, H, W) in [0, 1]."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        ngf, n_down = config.ngf, config.n_downsampling
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(config.in_channels, ngf, 7),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(inplace=True),
        ]
        for i in range(n_down):
            width = ngf * 2**i
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * width), nn.ReLU(inplace=True)]
        layers += [ResidualBlock(ngf * 2**n_down) for _ in range(config.n_blocks)]
        for i in range(n_down, 0, -1):
            width = ngf * 2**i
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, config.out_channels, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        return (self.layers(edges * 2 - 1) + 1) / 2


def _conv4x4(c_in: int, c_out: int, stride: int) -> nn.Conv2d:
    """pix2pixHD's discriminator conv: 4x4 kernel, padding ceil((4-1)/2) = 2."""
    return nn.Conv2d(c_in, c_out, 4, stride=stride, padding=2)


class PatchDiscriminator(nn.Module):
    """One PatchGAN; ``forward`` returns the output of every layer, the last being the patch scores."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        width = config.ndf
        layers = [nn.Sequential(_conv4x4(config.in_channels, width, 2), nn.LeakyReLU(0.2, inplace=True))]
        for _ in range(1, config.n_layers):
            prev, width = width, min(2 * width, config.max_width)
            layers.append(nn.Sequential(_conv4x4(prev, width, 2), nn.InstanceNorm2d(width), nn.LeakyReLU(0.2, inplace=True)))
        prev, width = width, min(2 * width, config.max_width)
        layers.append(nn.Sequential(_conv4x4(prev, width, 1), nn.InstanceNorm2d(width), nn.LeakyReLU(0.2, inplace=True)))
        layers.append(nn.Sequential(_conv4x4(width, 1, 1)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on successively 2x average-pooled (edge, image) pairs; finest scale first."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(PatchDiscriminator(config) for _ in range(config.num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, edges: torch.Tensor, images: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([edges, images], dim=1) * 2 - 1
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            outputs.append(scale(x))
        return outputs


def init_weights(module: nn.Module, seed: int) -> None:
    """pix2pixHD's initialisation from an explicit seed: conv weights N(0, 0.02), biases 0."""
    generator = torch.Generator().manual_seed(int(seed))
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)
                if m.bias is not None:
                    m.bias.zero_()


def lsgan_loss(outputs: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """Least-squares GAN loss summed over scales: mean((score - target)^2), target 1 real / 0 fake."""
    target = 1.0 if real else 0.0
    return sum(F.mse_loss(features[-1].float(), torch.full_like(features[-1].float(), target)) for features in outputs)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's discriminator feature matching: L1 between the intermediate features of fake and
    real inputs (all layers but the scores), each layer weighted 4/(n_layers+1), each scale 1/num_d.

    Unweighted by ``lambda_feat``; the caller multiplies. The real features are treated as constants.
    """
    num_d = len(fake)
    layer_weight = 4.0 / len(fake[0])  # len = n_layers + 1 intermediate outputs + the scores
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for fake_scale, real_scale in zip(fake, real):
        for f, r in zip(fake_scale[:-1], real_scale[:-1]):
            total = total + layer_weight / num_d * F.l1_loss(f.float(), r.detach().float())
    return total


class VGGPerceptualLoss(nn.Module):
    """pix2pixHD's VGG loss: sum_i w_i L1(vgg_i(fake), vgg_i(real)) over relu1_1..relu5_1.

    ``features`` is torchvision's ``vgg19().features`` with ImageNet weights. Inputs are [0, 1]
    images, normalised with ImageNet statistics as those weights expect (pix2pixHD feeds its [-1, 1]
    tensors unnormalised; normalising is what the weights were trained with).
    """

    def __init__(self, features: nn.Sequential):
        super().__init__()
        starts = (0,) + VGG_SLICE_ENDS[:-1]
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(starts, VGG_SLICE_ENDS))
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        x, y = (fake - self.mean) / self.std, (real - self.mean) / self.std
        total = fake.new_zeros((), dtype=torch.float32)
        for weight, layer in zip(VGG_LAYER_WEIGHTS, self.slices):
            x, y = layer(x), layer(y)
            total = total + weight * F.l1_loss(x.float(), y.detach().float())
        return total


def load_vgg19_features(path: str | Path) -> nn.Sequential:
    """VGG19 convolutional layers with the weights in ``path`` (torchvision's vgg19-dcbb9e9d.pth layout)."""
    from torchvision.models import vgg19

    path = Path(path)
    if not path.is_file():
        raise SynthgenError(f"{path}: VGG19 weights file not found")
    state = load_torch_file(path, "VGG19 weights file")  # before building the 140M-parameter network
    model = vgg19()
    load_state_dict_checked(model, state, path, "VGG19 weights file")
    return model.features.eval()


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), via PyTorch's counter.

    Works on meta tensors (pass a module moved to ``device="meta"``), so no real compute is done.
    """
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
