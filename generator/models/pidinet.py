"""PiDiNet edge detector (Su et al., "Pixel Difference Networks for Efficient Edge Detection", ICCV 2021).

LogicAL (sec. 3.1, 4.2) extracts "four scales" of edge maps with a pre-trained PiDiNet and edits them to
synthesise anomalies; this module is synthgen's own implementation, written from the paper and from the
facts of the official checkpoints (key names, shapes, ops per layer; ../shared/weights/SOURCES.md, read in
hellozhuo/pidinet for facts only).

The network, for width C:
- init_block: a 3x3 convolution 3 -> C (pixel-difference op of layer 0);
- 15 residual blocks in 4 stages of widths C, 2C, 4C, 4C (3, 4, 4, 4 blocks). A block is a depthwise 3x3
  pixel-difference convolution, ReLU, a pointwise 1x1 convolution, plus the input. The first block of
  stages 2-4 first max-pools 2x2 and widens its shortcut with a 1x1 convolution (with bias);
- per stage: an optional compact dilation module (CDCM: 1x1 to ``dil`` channels, then four 3x3
  convolutions at dilations 5, 7, 9, 11, summed), an optional compact spatial attention module (CSAM:
  ReLU, 1x1 to 4 channels, 3x3 to 1, sigmoid, multiply), a 1x1 convolution to one logit map, bilinear
  upsampling to the input size;
- a 1x1 convolution over the 4 stage logits gives the fused map; the output is the sigmoid of all five.

Pixel-difference convolutions (paper sec. 3): with weights w over a 3x3 neighbourhood x_1..x_9 of centre x_c,
    cd (central):  y = sum_i w_i (x_i - x_c)
    ad (angular):  y = sum_i w_i (x_i - x_i'),  x_i' the clockwise neighbour of x_i around the centre
    rd (radial):   y = sum_k w_k (x_outer_k - x_inner_k), the pixels at distance 2 and 1 in direction k
    cv:            a plain convolution.
Each is linear in x, hence equal to a plain convolution with a rearranged kernel (3x3 for cd and ad, 5x5 for
rd). Training needs the raw weights; inference does not, so :func:`convert_to_vanilla` folds every op into
a plain ``nn.Conv2d`` once, which is faster and runs on any backend.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SynthgenError
from ..safe_load import load_torch_file

# ImageNet statistics: the checkpoints were trained on RGB in [0, 1] normalised with them (SOURCES.md).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Three 2x2 max-poolings: stage 4 has H/8 x W/8 cells, so each side needs at least 8 pixels.
MIN_SIDE = 2**3

# Op of each of the 16 layers (init_block, then the blocks in order). carv4 is the configuration of the
# published table5 checkpoints: [cd, ad, rd, cv] repeated for the 4 stages (paper Table 5; official config.py).
CONFIGS: dict[str, tuple[str, ...]] = {"carv4": ("cd", "ad", "rd", "cv") * 4}

BLOCKS_PER_STAGE = (3, 4, 4, 4)  # plus init_block: 16 layers
CDCM_DILATIONS = (5, 7, 9, 11)
CSAM_CHANNELS = 4


@dataclass(frozen=True)
class Variant:
    """Width C, CDCM channels (None: no CDCM) and whether CSAM is used."""

    width: int
    dil: int | None
    sa: bool


# Paper Table 5 / official pidinet.py: C = 60, 30, 20 with CDCM widths 24, 12, 8; the "-l" (lite) forms drop
# both CDCM and CSAM.
VARIANTS: dict[str, Variant] = {
    "pidinet": Variant(60, 24, True),
    "pidinet-small": Variant(30, 12, True),
    "pidinet-tiny": Variant(20, 8, True),
    "pidinet-l": Variant(60, None, False),
    "pidinet-small-l": Variant(30, None, False),
    "pidinet-tiny-l": Variant(20, None, False),
}

# ad: pairing each pixel with its clockwise successor gives, per kernel position j, the weight of j minus
# the weight of the position whose successor j is. Row-major 3x3 positions; the ring clockwise (y down) is
# 0 -> 1 -> 2 -> 5 -> 8 -> 7 -> 6 -> 3 -> 0, and the centre 4 pairs with itself. _AD_PREDECESSOR[j] is the
# position whose clockwise successor is j (the official ops.py's "clock-wise" list).
_AD_PREDECESSOR = (3, 0, 1, 6, 4, 2, 7, 8, 5)

# rd: the 8 directions in raster order. The checkpoints hold direction k's weight at flat position k + 1 of
# the 3x3 weight tensor (position 0 is unused by rd; official ops.py), so that layout is kept here.
_RD_DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_RD_OUTER = tuple((2 + 2 * dy) * 5 + (2 + 2 * dx) for dy, dx in _RD_DIRECTIONS)  # distance 2 in the 5x5
_RD_INNER = tuple((2 + dy) * 5 + (2 + dx) for dy, dx in _RD_DIRECTIONS)  # distance 1


def cd_kernel(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernel of the central difference: sum_i w_i (x_i - x_c) = conv(x, w) - x_c * sum(w)."""
    kernel = weight.clone()
    kernel[:, :, 1, 1] -= weight.sum(dim=(2, 3))
    return kernel


def ad_kernel(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernel of the angular (clockwise) difference: w - w[predecessor]."""
    flat = weight.flatten(2)
    return (flat - flat[:, :, list(_AD_PREDECESSOR)]).view_as(weight)


def rd_kernel(weight: torch.Tensor) -> torch.Tensor:
    """5x5 kernel of the radial difference: +w_k at distance 2, -w_k at distance 1, direction k."""
    out_ch, in_ch = weight.shape[:2]
    flat = weight.flatten(2)
    kernel = weight.new_zeros(out_ch, in_ch, 25)
    kernel[:, :, list(_RD_OUTER)] = flat[:, :, 1:]
    kernel[:, :, list(_RD_INNER)] = -flat[:, :, 1:]
    return kernel.view(out_ch, in_ch, 5, 5)


_VANILLA_KERNEL = {"cv": lambda w: w, "cd": cd_kernel, "ad": ad_kernel, "rd": rd_kernel}


class PixelDifferenceConv(nn.Module):
    """A 3x3 pixel-difference convolution (stride 1, no bias, output size = input size).

    The forward pass follows the definition the network was trained with: cd as a convolution minus the
    centre pixel times the kernel sum (paper eq. for CPDC), ad and rd by convolving with the difference
    kernel rebuilt from the raw weights on every call.
    """

    def __init__(self, op: str, in_channels: int, out_channels: int, groups: int = 1):
        super().__init__()
        if op not in _VANILLA_KERNEL:
            raise ValueError(f"unknown pixel-difference op {op!r}")
        self.op = op
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "cd":
            centre_weight = self.weight.sum(dim=(2, 3), keepdim=True)
            return F.conv2d(x, self.weight, padding=1, groups=self.groups) - F.conv2d(
                x, centre_weight, groups=self.groups
            )
        if self.op == "rd":
            return F.conv2d(x, rd_kernel(self.weight), padding=2, groups=self.groups)
        return F.conv2d(x, _VANILLA_KERNEL[self.op](self.weight), padding=1, groups=self.groups)

    @torch.no_grad()
    def to_vanilla(self) -> nn.Conv2d:
        """The equivalent plain convolution (3x3, or 5x5 with padding 2 for rd)."""
        kernel = _VANILLA_KERNEL[self.op](self.weight)
        out_ch, in_per_group, size, _ = kernel.shape
        conv = nn.Conv2d(
            in_per_group * self.groups, out_ch, size, padding=size // 2, groups=self.groups, bias=False
        ).to(kernel.device, kernel.dtype)
        conv.weight.copy_(kernel)
        return conv


class PDCBlock(nn.Module):
    """Depthwise pixel-difference conv -> ReLU -> pointwise conv, plus a residual connection."""

    def __init__(self, op: str, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2) if downsample else None
        self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if downsample else None
        self.conv1 = PixelDifferenceConv(op, in_channels, in_channels, groups=in_channels)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        # In place: the convolutions' backward passes need their inputs, not these outputs.
        y = self.conv2(F.relu(self.conv1(x), inplace=True))
        return y.add_(self.shortcut(x) if self.shortcut is not None else x)


class CDCM(nn.Module):
    """Compact dilation convolution module: enlarges the receptive field of a stage's features."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=1)
        self.branch_names = []
        for k, dilation in enumerate(CDCM_DILATIONS, start=1):
            name = f"conv2_{k}"  # checkpoint key names
            setattr(self, name, nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False))
            self.branch_names.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return sum(getattr(self, name)(x) for name in self.branch_names)


class CSAM(nn.Module):
    """Compact spatial attention module: a per-pixel gate that suppresses background texture."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, CSAM_CHANNELS, kernel_size=1)
        self.conv2 = nn.Conv2d(CSAM_CHANNELS, 1, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class MapReduce(nn.Module):
    """1x1 convolution of a stage's features to one edge logit map."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNet(nn.Module):
    """PiDiNet. Input: (B, 3, H, W) RGB in [0, 1]. Output: (B, 5, H, W) edge probabilities, channels
    0-3 the side outputs of stages 1-4 (fine to coarse), channel 4 the fused map.

    Module names follow the official checkpoints' keys (init_block, block{stage}_{i}, dilations,
    attentions, conv_reduces, classifier) so they load without renaming.
    """

    def __init__(self, variant: Variant, config: str = "carv4"):
        super().__init__()
        ops = CONFIGS[config]
        self.variant = variant
        self.converted = False
        width = variant.width
        stage_widths = (width, 2 * width, 4 * width, 4 * width)
        self.init_block = PixelDifferenceConv(ops[0], 3, width)
        self.stage_blocks: list[list[str]] = []
        layer, in_ch = 1, width
        for stage, (out_ch, n_blocks) in enumerate(zip(stage_widths, BLOCKS_PER_STAGE), start=1):
            names = []
            for i in range(1, n_blocks + 1):
                name = f"block{stage}_{i}"
                setattr(self, name, PDCBlock(ops[layer], in_ch, out_ch, downsample=stage > 1 and i == 1))
                names.append(name)
                layer, in_ch = layer + 1, out_ch
            self.stage_blocks.append(names)
        side_widths = (variant.dil,) * 4 if variant.dil is not None else stage_widths
        self.dilations = nn.ModuleList(CDCM(c, variant.dil) for c in stage_widths) if variant.dil else None
        self.attentions = nn.ModuleList(CSAM(c) for c in side_widths) if variant.sa else None
        self.conv_reduces = nn.ModuleList(MapReduce(c) for c in side_widths)
        self.classifier = nn.Conv2d(4, 1, kernel_size=1)
        # Not part of the state dict: the checkpoints do not hold them.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        if min(height, width) < MIN_SIDE:
            raise SynthgenError(
                f"image {width}x{height}: too small for PiDiNet (each side needs at least {MIN_SIDE} pixels)"
            )
        x = self.init_block((rgb - self.mean) / self.std)
        logits = []
        for stage, names in enumerate(self.stage_blocks):
            for name in names:
                x = getattr(self, name)(x)
            side = x
            if self.dilations is not None:
                side = self.dilations[stage](side)
            if self.attentions is not None:
                side = self.attentions[stage](side)
            side = self.conv_reduces[stage](side)
            logits.append(F.interpolate(side, size=(height, width), mode="bilinear", align_corners=False))
        logits.append(self.classifier(torch.cat(logits, dim=1)))
        return torch.sigmoid(torch.cat(logits, dim=1))


def build_pidinet(variant: str = "pidinet", config: str = "carv4") -> PiDiNet:
    """A randomly initialised PiDiNet of a named variant (pixel-difference form)."""
    if variant not in VARIANTS:
        raise SynthgenError(f"PiDiNet variant {variant!r}: unknown; known: {', '.join(VARIANTS)}")
    if config not in CONFIGS:
        raise SynthgenError(f"PiDiNet config {config!r}: unknown; known: {', '.join(CONFIGS)}")
    return PiDiNet(VARIANTS[variant], config)


def convert_to_vanilla(model: PiDiNet) -> PiDiNet:
    """A copy of ``model`` with every pixel-difference convolution folded into a plain convolution."""
    converted = copy.deepcopy(model)
    for parent in converted.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, PixelDifferenceConv):
                setattr(parent, name, child.to_vanilla())
    converted.converted = True
    return converted


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a PiDiNet checkpoint file, without the 'module.' prefix DataParallel adds.

    Accepts the official layout {'epoch', 'state_dict'} and a bare state dict. Loads tensors only
    (``weights_only``): a checkpoint cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise SynthgenError(f"{path}: checkpoint file not found")
    checkpoint = load_torch_file(path, "PyTorch checkpoint")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not state or not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SynthgenError(f"{path}: not a PiDiNet checkpoint (expected {{'epoch', 'state_dict'}} or a state dict)")
    prefix = "module."
    if all(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def infer_variant(state: dict[str, torch.Tensor]) -> Variant:
    """The architecture a PiDiNet state dict was saved from, read off its tensor shapes."""
    init = state.get("init_block.weight")
    width = int(init.shape[0]) if init is not None and init.dim() == 4 else 0
    cdcm = state.get("dilations.0.conv1.weight")
    dil = int(cdcm.shape[0]) if cdcm is not None else None
    sa = any(key.startswith("attentions.") for key in state)
    return Variant(width, dil, sa)


def _check_state_dict(path: Path, name: str, expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    """Strict key and shape match; the error names the first key that differs."""
    for key, tensor in expected.items():
        if key not in got:
            raise SynthgenError(f"{path}: not a {name} checkpoint: key {key!r} is missing")
        if got[key].shape != tensor.shape:
            raise SynthgenError(
                f"{path}: not a {name} checkpoint: key {key!r} has shape {tuple(got[key].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
    for key in got:
        if key not in expected:
            raise SynthgenError(f"{path}: not a {name} checkpoint: unexpected key {key!r}")


def load_pidinet(path: str | Path, variant: str | None = None, *, converted: bool = True) -> PiDiNet:
    """A PiDiNet with the weights of checkpoint ``path``, in eval mode, on the CPU.

    ``variant`` names the architecture (see VARIANTS); None reads it off the checkpoint's shapes. With
    ``converted`` the pixel-difference ops are folded into plain convolutions (same outputs, faster).
    """
    path = Path(path)
    state = read_checkpoint(path)
    if variant is None:
        arch, name = infer_variant(state), "PiDiNet"
        if arch.width < 1:
            raise SynthgenError(f"{path}: not a PiDiNet checkpoint: key 'init_block.weight' is missing")
        model = PiDiNet(arch)
    else:
        model, name = build_pidinet(variant), variant
    _check_state_dict(path, name, model.state_dict(), state)
    model.load_state_dict(state, strict=True)
    model.eval()
    return convert_to_vanilla(model) if converted else model
