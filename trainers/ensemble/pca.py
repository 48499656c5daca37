"""PCA over feature channels and the thesis's two transformation blocks (Heller et al. 2023, via the thesis Sec. 2.1).

- Global block: the extractors' feature maps (already on one grid) are concatenated along channels,
  then one PCA keeps N maps.
- Individual block: one PCA per extractor, then the reduced maps are concatenated.

The block's output is divided by one scalar fitted with it: the root of the mean variance of its
components on the training rows, so ensembled features have unit mean variance whatever the
extractors' own scales. PCA is a rotation and keeps the extractors' units (efficientnet_lite0 plus
PBAS features: component stds 0.3 to 49), in which no fixed noise std means anything; after the
scaling, the discriminator's Gaussian noise std is a fraction of the features' typical spread
(trainers/ensemble/model.py says which).

N is either a number of components (an integer >= 1) or a share of the variance to explain (a
fraction in (0, 1): the fewest leading components whose explained-variance ratios sum to at least it).

PCA is fitted on the rows (one per position) of the normal training features: mean-centred
covariance in float64, eigendecomposed; components in decreasing variance, each with its sign fixed
so that its largest-magnitude entry is positive (deterministic output). Projection: (x - mean) W^T.
"""

from __future__ import annotations

import torch
from torch import nn

from synthgen.generator.errors import SynthgenError

BLOCKS = ("global", "individual")


def components_for(amount: float, ratios: torch.Tensor) -> int:
    """How many leading components ``amount`` asks for, given the explained-variance ratios."""
    if amount >= 1:
        if amount != int(amount):
            raise SynthgenError(f"--components: {amount} is neither a whole number of maps nor a fraction in (0, 1)")
        if int(amount) > len(ratios):
            raise SynthgenError(f"--components: {int(amount)} maps asked for, but the features have only {len(ratios)} channels")
        return int(amount)
    if not amount > 0:
        raise SynthgenError(f"--components: must be a number of maps or a fraction in (0, 1), got {amount}")
    cumulative = torch.cumsum(ratios, dim=0)
    return int(torch.searchsorted(cumulative, torch.tensor(amount, dtype=cumulative.dtype)).item()) + 1


class PCA(nn.Module):
    """A fitted PCA: rows (n, D) -> (n, K)."""

    def __init__(self, dim: int, n_components: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.zeros(n_components, dim))
        self.register_buffer("explained_variance_ratio", torch.zeros(n_components))

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def n_components(self) -> int:
        return self.components.shape[0]

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return (rows - self.mean) @ self.components.T

    @classmethod
    def fit(cls, rows: torch.Tensor, amount: float) -> "PCA":
        if rows.ndim != 2 or len(rows) < 2:
            raise SynthgenError(f"PCA: needs at least 2 feature rows, got shape {tuple(rows.shape)}")
        x = rows.double()
        mean = x.mean(dim=0)
        centred = x - mean
        covariance = centred.T @ centred / (len(x) - 1)
        variances, vectors = torch.linalg.eigh(covariance)  # ascending
        variances, vectors = variances.flip(0).clamp_min(0.0), vectors.flip(1).T  # rows = components
        ratios = variances / variances.sum().clamp_min(torch.finfo(torch.float64).tiny)
        k = components_for(amount, ratios)
        components = vectors[:k]
        signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
        pca = cls(x.shape[1], k)
        pca.mean.copy_(mean.float())
        pca.components.copy_((components * signs).float())
        pca.explained_variance_ratio.copy_(ratios[:k].float())
        return pca


class TransformationBlock(nn.Module):
    """Reduces the extractors' rows to the ensembled features: global or individual PCA."""

    def __init__(self, kind: str, channels: list[int], n_components: list[int]):
        super().__init__()
        if kind not in BLOCKS:
            raise SynthgenError(f"--block: expected one of {', '.join(BLOCKS)}, got {kind!r}")
        self.kind = kind
        self.channels = list(channels)
        dims = [sum(channels)] if kind == "global" else self.channels
        if len(dims) != len(n_components):
            raise ValueError(f"{kind} block over {len(channels)} extractors needs {len(dims)} PCA sizes, got {len(n_components)}")
        self.pcas = nn.ModuleList(PCA(d, k) for d, k in zip(dims, n_components))
        self.register_buffer("scale", torch.ones(()))

    @property
    def out_dim(self) -> int:
        return sum(p.n_components for p in self.pcas)

    def forward(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """One (n, C_k) row tensor per extractor -> (n, out_dim), scaled to unit mean variance."""
        return self._project(rows) / self.scale

    def _project(self, rows: list[torch.Tensor]) -> torch.Tensor:
        if self.kind == "global":
            return self.pcas[0](torch.cat(rows, dim=1))
        return torch.cat([pca(r) for pca, r in zip(self.pcas, rows)], dim=1)

    @classmethod
    def fit(cls, kind: str, rows: list[torch.Tensor], amount: float) -> "TransformationBlock":
        """Fit on one (n, C_k) row tensor per extractor; ``amount`` applies to every PCA of the block."""
        channels = [r.shape[1] for r in rows]
        fitted = [PCA.fit(torch.cat(rows, dim=1), amount)] if kind == "global" else [PCA.fit(r, amount) for r in rows]
        block = cls(kind, channels, [p.n_components for p in fitted])
        for target, source in zip(block.pcas, fitted):
            target.load_state_dict(source.state_dict())
        with torch.no_grad():
            mean_variance = block._project(rows).double().var(dim=0).mean()
        if not mean_variance > 0:
            raise SynthgenError("PCA: the training features do not vary (every position has the same features)")
        block.scale.fill_(float(mean_variance.sqrt()))
        return block
