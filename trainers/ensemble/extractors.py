"""The ensemble's feature extractors: frozen modules mapping images to feature maps (B, C, H_k, W_k).

An extractor is named by a spec string (``--extractor``, repeatable):

- ``BACKBONE:LAYER+LAYER`` (e.g. ``efficientnet_lite0:layer1+layer2``): the backbone's locally aware
  patch features (the PatchCore/SimpleNet/PBAS aggregation of trainers/features.py, p = 3,
  ``embed_dim`` channels). Layers default to layer2+layer3.
- ``pbas:RUN``: the projected features u = P(E(x)) of a trained PBAS run (its extractor and
  projector), so a trained synthesis-based model can join the ensemble, as the thesis suggests.

Every extractor of one ensemble sees the same input size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file

from ..backbones import Backbone
from ..base import MODEL_FILE, load_model, read_run_info
from ..features import LAYERS, PatchFeatureExtractor

PBAS_PREFIX = "pbas:"
#: The method of the runs ``pbas:RUN`` names (run.json's "method"). The run is loaded through the loader
#: registry (trainers.base), so this package imports nothing of trainers/pbas/.
PBAS_METHOD = "pbas"


def _grid_map(rows: torch.Tensor, batch: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B * H * W, C) or (B, H * W, C) -> (B, C, H, W)."""
    return rows.reshape(batch, grid[0], grid[1], -1).permute(0, 3, 1, 2)


class BackboneExtractor(nn.Module):
    """Locally aware patch features of a frozen backbone."""

    def __init__(self, spec: str, embed_dim: int, weights: str | None = None, weights_dir: str | Path | None = None, device="cpu"):
        super().__init__()
        name, _, layer_text = spec.partition(":")
        layers = [layer for layer in layer_text.split("+") if layer] or list(LAYERS)
        backbone = Backbone(name, layers, weights=weights, weights_dir=weights_dir, device=device)
        self.spec = spec
        self.features = PatchFeatureExtractor(backbone, embed_dim=embed_dim)
        self.channels = embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows, grid = self.features(images)
        return _grid_map(rows, images.shape[0], grid)

    def info(self) -> dict:
        return {"spec": self.spec, **self.features.backbone.weights_info()}


class PBASExtractor(nn.Module):
    """u = P(E(x)) of a trained PBAS run."""

    def __init__(self, spec: str, device="cpu"):
        super().__init__()
        run = Path(spec[len(PBAS_PREFIX):])
        info = read_run_info(run)
        if info.get("method") != PBAS_METHOD:
            raise SynthgenError(f"--extractor {spec}: {run} is a {info.get('method')!r} run, not a PBAS run")
        self.spec = spec
        self.run = run.resolve()
        self.model_sha256 = sha256_file(run / MODEL_FILE)
        self.model = load_model(run, torch.device(device))
        self.channels = self.model.config.embed_dim
        self.image_size = tuple(self.model.image_size)
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "PBASExtractor":
        """Frozen: the PBAS model stays in eval mode when the ensemble trains."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            rows, grid = self.model.projected(images)
        return _grid_map(rows, images.shape[0], grid)

    def info(self) -> dict:
        return {"spec": self.spec, "run": str(self.run), "model_sha256": self.model_sha256}


def build_extractor(spec: str, embed_dim: int, weights: str | None, weights_dir: str | Path | None, device="cpu") -> nn.Module:
    """The extractor a spec names (see the module docstring)."""
    if spec.startswith(PBAS_PREFIX):
        return PBASExtractor(spec, device)
    return BackboneExtractor(spec, embed_dim, weights, weights_dir, device)


def check_extractors(extractors: list[nn.Module], image_size: tuple[int, int]) -> None:
    """PBAS extractors must have been trained at the ensemble's input size."""
    for extractor in extractors:
        if isinstance(extractor, PBASExtractor) and extractor.image_size != tuple(image_size):
            raise SynthgenError(
                f"--extractor {extractor.spec}: the PBAS run takes {extractor.image_size[0]}x{extractor.image_size[1]} images, "
                f"the ensemble {image_size[0]}x{image_size[1]} (set --image-size to match)"
            )
