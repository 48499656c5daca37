"""pix2pixHD's training parts: the multi-scale PatchGAN discriminator, its losses, VGG perceptual loss.

Facts from pix2pixHD's published description and code, read for facts only (DESIGN.md sec. 5):

- Multi-scale PatchGAN discriminator: ``num_d``=2 identical discriminators, the second seeing the
  input average-pooled (3x3, stride 2, padding 1, padding not counted). Each: a 4x4 stride-2 conv
  (ndf=64) + LeakyReLU(0.2); ``n_layers``-1=2 more 4x4 stride-2 convs doubling the width (max 512)
  + InstanceNorm + LeakyReLU; one 4x4 stride-1 conv + InstanceNorm + LeakyReLU; a 4x4 stride-1 conv to
  one channel. Padding 2 for every 4x4 conv. It sees the condition (edge map) and the image
  concatenated (a conditional discriminator) and returns every layer's output, for feature matching.
- Losses: least-squares GAN (targets 1 real, 0 fake), discriminator feature matching weighted
  ``lambda_feat``=10, each scale 1/num_d and each layer 4/(n_layers+1), and a VGG19 perceptual loss
  (relu1_1..relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1; also times ``lambda_feat``) that is used ONLY
  when VGG19 ImageNet weights can be found (:func:`resolve_vgg19_weights`); without them feature
  matching alone is the reconstruction signal (DESIGN.md sec. 5) and the training run records that.
- Initialisation: conv weights N(0, 0.02) (pix2pixHD ``weights_init``); biases zero (pix2pixHD keeps
  PyTorch's random default; zero makes initialisation a pure function of the seed).

Tensors are in [0, 1]; the discriminator maps its input to pix2pixHD's [-1, 1] internally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import SynthgenError
from ..models.layers import check_ints
from ..safe_load import load_state_dict_checked, load_torch_file

#: VGG19 layers the perceptual loss compares: relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (torchvision
#: ``vgg19().features`` indices 1, 6, 11, 20, 29), with pix2pixHD's weights.
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision's file name for VGG19 ImageNet weights (``VGG19_Weights.IMAGENET1K_V1``)
VGG19_FILE = "vgg19-dcbb9e9d.pth"


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Widths of the multi-scale PatchGAN discriminator (defaults: pix2pixHD train options)."""

    ndf: int = 64
    n_layers: int = 3
    num_d: int = 2
    max_width: int = 512
    in_channels: int = 1 + 3  # edge map + image

    def __post_init__(self):
        check_ints(self, ("ndf", "n_layers", "num_d", "max_width", "in_channels"), minimum=1)



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



def resolve_vgg19_weights(explicit: str | Path | None) -> Path | None:
    """Where VGG19 ImageNet weights are, or None when there are none (no download is attempted).

    An explicit path must exist. Otherwise look for torchvision's file name in torch's hub cache
    (where ``torchvision.models.vgg19(weights=...)`` stores its verified download) and in synthgen's
    cache (``$SYNTHGEN_CACHE/weights``).
    """
    from ..paths import cache_root

    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise SynthgenError(f"{path}: VGG19 weights file not found (vgg19_weights)")
        return path
    for folder in (Path(torch.hub.get_dir()) / "checkpoints", cache_root() / "weights"):
        if (folder / VGG19_FILE).is_file():
            return folder / VGG19_FILE
    return None

