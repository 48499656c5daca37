"""The edge-to-image generator: a pix2pixHD-style network, its file format, and running it.

LogicAL (sec. 3.1, 4.2) turns edited edge maps into anomalous photos with a generator trained like
pix2pixHD, with DeepSIM's TPS augmentation. Its input is the first-scale PiDiNet edge map of an image
(LogicAL 4.2: "the first scale edge map contains more detail edges"), one channel; its output is the
RGB photo. This module is what a build needs: the network, generator files
(:func:`save_generator` / :func:`load_e2i_model`) and inference (:func:`generate_tensor`,
:func:`generate`). Training (discriminator, losses, the Lightning loop) lives in
:mod:`generator.training`; a build never imports it.

Architecture facts come from pix2pixHD's published description and code, read for facts only
(DESIGN.md sec. 5; DeepSIM trains pix2pixHD's "global" generator):

- Global generator: 7x7 conv (ngf=64) -> ``n_downsampling``=4 stride-2 3x3 convs doubling the width
  -> ``n_blocks``=9 residual blocks -> 4 stride-2 3x3 transposed convs halving it -> 7x7 conv to RGB
  -> tanh. InstanceNorm without affine parameters and ReLU after every conv but the last; reflection
  padding for the 7x7 convs and inside the residual blocks.

A generator file holds its config, its weights and how it was trained (a JSON-able record), so a
build can check it and record its sha256.

All tensors outside this module are in [0, 1] (the project's convention); the network maps to and
from pix2pixHD's [-1, 1] internally.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..atomic import atomic_path
from ..errors import SynthgenError
from ..imageio import sha256_file
from .generator_file import E2I_FORMAT as GENERATOR_FORMAT
from .generator_file import FULL_HINT as TRAIN_HINT  # what every "no usable generator" error tells the user to do
from .generator_file import generator_file_payload
from .layers import ResidualBlock, check_ints, config_from_dict, output_layers, stem_layers

GENERATOR_FORMAT_VERSION = 1


@dataclass(frozen=True)
class GeneratorConfig:
    """Widths of the global generator (defaults: pix2pixHD/DeepSIM ``--netG global``)."""

    ngf: int = 64
    n_downsampling: int = 4  # DeepSIM --n_downsample_global 4
    n_blocks: int = 9
    in_channels: int = 1  # one edge map
    out_channels: int = 3

    def __post_init__(self):
        check_ints(self, ("ngf", "in_channels", "out_channels"), minimum=1)
        check_ints(self, ("n_downsampling", "n_blocks"), minimum=0)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (each downsampling halves them)."""
        return 2**self.n_downsampling



def check_image_size(config: GeneratorConfig, height: int, width: int, where: str) -> None:
    """Refuse image sizes the generator cannot reproduce exactly (sides not multiples of 2^n_down)."""
    m = config.size_multiple
    if height % m or width % m:
        raise SynthgenError(
            f"{where}: image size {height}x{width} is not a multiple of {m} "
            f"(the generator downsamples {config.n_downsampling} times)"
        )


class GlobalGenerator(nn.Module):
    """Edge map (B, 1, H, W) in [0, 1] -> image (B, 3, H, W) in [0, 1]."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        ngf, n_down = config.ngf, config.n_downsampling
        layers = stem_layers(config.in_channels, ngf)
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
        layers += [*output_layers(ngf, config.out_channels), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        return (self.layers(edges * 2 - 1) + 1) / 2




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


# --------------------------------------------------------------------------------------------
# Generator files and inference


def save_generator(generator: GlobalGenerator, path: str | Path, *, training: dict[str, Any] | None = None) -> None:
    """Write the generator (config + weights + training record, JSON-able) atomically to ``path``.

    The file is a function of its contents alone, so equal generators have equal sha256.
    """
    payload = {
        "format": GENERATOR_FORMAT,
        "version": GENERATOR_FORMAT_VERSION,
        "config": dataclasses.asdict(generator.config),
        "training": json.loads(json.dumps(training or {})),  # plain values only: loadable with weights_only
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
    }
    # Serialise in memory: torch.save to a path names the archive's root folder after the (here
    # temporary, random) file name, which would make identical generators give different files.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


def read_generator_file(path: str | Path) -> dict[str, Any]:
    """The validated contents of a generator file: format, version, config, training, state_dict."""
    payload = generator_file_payload(path, TRAIN_HINT)
    if payload.get("format") != GENERATOR_FORMAT:
        raise SynthgenError(f"{path}: an inpainting generator file (--renderer inpaint), not a full-image one; {TRAIN_HINT}")
    if payload.get("version") != GENERATOR_FORMAT_VERSION:
        raise SynthgenError(
            f"{path}: generator file version {payload.get('version')!r}; this synthgen reads {GENERATOR_FORMAT_VERSION}"
        )
    if not isinstance(payload.get("config"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise SynthgenError(f"{path}: generator file lacks its config or weights")
    return payload


def generator_config(path: str | Path) -> GeneratorConfig:
    """The architecture recorded in a generator file (validated, weights not loaded)."""
    return config_from_dict(GeneratorConfig, read_generator_file(path)["config"], str(path))


def generator_training_size(path: str | Path) -> tuple[int, int] | None:
    """The (H, W) a generator file was trained at (its training record), or None if it does not say."""
    size = (read_generator_file(path).get("training") or {}).get("image_size")
    return (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 else None


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> GlobalGenerator:
    """The generator saved in ``path``, in eval mode on ``device``."""
    payload = read_generator_file(path)
    config = config_from_dict(GeneratorConfig, payload["config"], str(path))
    with torch.device("meta"):  # no point initialising weights that are about to be replaced
        generator = GlobalGenerator(config)
    try:
        generator.load_state_dict(payload["state_dict"], assign=True)
    except RuntimeError as e:
        raise SynthgenError(f"{path}: weights do not match the generator config ({str(e).splitlines()[0]})") from None
    return generator.to(device).eval()


@dataclass(frozen=True)
class E2IModel:
    """A generator file loaded for synthesis: the network, how it reads edges, and what identifies it.

    binary_edges: the generator was trained on binary edge maps (TrainConfig.binary_edges), so edge
    maps are binarised at one half before it sees them, as in training.
    """

    #: it renders the whole photo from its edge map (so a sample can collapse globally)
    repaints_whole_image: ClassVar[bool] = True
    renderer_name: ClassVar[str] = "full"  # the --renderer it renders for (recorded in every sample)

    generator: GlobalGenerator
    binary_edges: bool
    path: Path
    sha256: str


def load_e2i_model(path: str | Path, device: str | torch.device = "cpu") -> E2IModel:
    """A generator file (:func:`save_generator`) ready for :func:`generate_tensor` on ``device``."""
    path = Path(path)
    training = read_generator_file(path).get("training") or {}
    binary = (training.get("config") or {}).get("binary_edges", False)
    return E2IModel(load_generator(path, device), bool(binary), path, sha256_file(path))


def generate_tensor(model: E2IModel, edges: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) float32 in [0, 1] from edge maps (B, 1, H, W) float in [0, 1], on the
    generator's device; bf16 autocast on CUDA (pix2pixHD's generator is conv + instance norm, which
    bf16 handles; the SSIM ground truth is computed from these images in float32)."""
    if model.binary_edges:
        edges = (edges >= 0.5).float()
    device = next(model.generator.parameters()).device
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model.generator(edges.to(device, torch.float32)).float().clamp(0, 1)


def generate(
    generator: GlobalGenerator,
    edges,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 from edge maps (N, H, W) or (N, 1, H, W), numpy or torch.

    uint8 edges are read as 0..255, float edges must be in [0, 1]. ``dtype`` other than float32
    runs the generator under autocast at that precision (bfloat16 on GPU). Each image depends only on
    its own edge map (instance normalisation is per sample). The generator is moved to ``device``.
    """
    edges = edges if isinstance(edges, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(edges))
    if edges.ndim == 4 and edges.shape[1] == 1:
        edges = edges[:, 0]
    if edges.ndim != 3:
        raise SynthgenError(f"edges: expected (N, H, W) edge maps, got shape {tuple(edges.shape)}")
    if edges.dtype == torch.uint8:
        edges = edges.float() / 255
    elif edges.is_floating_point():
        if edges.numel() and (edges.min() < 0 or edges.max() > 1):
            raise SynthgenError("edges: float edge maps must lie in [0, 1]")
    else:
        raise SynthgenError(f"edges: unsupported dtype {edges.dtype} (use uint8 or float)")
    check_image_size(generator.config, edges.shape[1], edges.shape[2], where="edges")
    device = torch.device(device)
    generator = generator.to(device).eval()
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for start in range(0, edges.shape[0], batch_size):
            batch = edges[start : start + batch_size].to(device=device, dtype=torch.float32).unsqueeze(1)
            out.append(to_uint8(generator(batch).permute(0, 2, 3, 1)))
    return np.concatenate(out) if out else np.zeros((0, *edges.shape[1:], 3), np.uint8)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1], any layout -> uint8 numpy, rounded (what a generator's output becomes)."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
