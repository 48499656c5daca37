"""PBAS (Chen et al., Progressive Boundary Guided Anomaly Synthesis): networks, centers, losses, inference.

Components, with the paper's equations and where the official code (cqylunlun/PBAS, read for facts
only; DESIGN.md 5) fixes what the paper leaves open:

- E_phi: :class:`~trainers.features.PatchFeatureExtractor` (frozen backbone, p = 3, layers 2 + 3).
- P_theta, the projector (trainers/feature_heads.py, shared with GLASS and the ensemble): one Linear(D, D) with Xavier-normal weights (paper: "a fully-connected layer
  with equal input and output nodes", "initialized with a normal distribution").
- D_psi, the discriminator: Linear(D, int(D // 1.5)) + BatchNorm1d + LeakyReLU(0.2) + Linear(., 1, no
  bias) + Sigmoid, Xavier-normal weights (official ``Discriminator(n_layers=2)``; 1536 -> 1024).
- Centers c: one vector per position of the feature grid (H_m * W_m rows), initialised by
  :func:`initial_centers` from projected features with the projector frozen (Algorithm 1, lines 3-17).
- Nearest center: the center of highest cosine similarity to a feature (the official code's
  argmax over normalised dot products); distances are Euclidean (Eq. 6).
- L_c = mean Euclidean distance of each u to its nearest center (Eq. 6).
- AFS (Eq. 7): z = u + alpha * L_c * (u - c~) / ||u - c~||, the offset detached (official code), or, for
  the Table V ablation "N", z = u + Gaussian noise of std 0.015 (SimpleNet's noise).
- RBO: BCE(D(u), 0) + BCE(D(z), 1), each a mean over all positions (Eqs. 8-9).
- Inference: S_AD = max of D(u) over positions (Eq. 11); S_AL = Gaussian(sigma 4)(bilinear upsample
  of D(u)) (Eq. 12). With ``components="abl"`` (Table V, ABL alone) the patch score is the Euclidean
  distance of u to its nearest center instead, as the paper defines it for that ablation.

Run folder file ``model.pt``: ``{"format": 1, "config": PBASConfig dict, "state_dict": projector,
discriminator, centers}``; the backbone is rebuilt from its name and its weights are resolved again
and checked against the sha256 recorded at training time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.errors import SynthgenError

from ..backbones import Backbone
from ..base import read_model_file, register_loader
from ..feature_heads import MLPDiscriminator, Projector, load_without_backbone, recorded_backbone, save_without_backbone
from ..features import EMBED_DIM, LAYERS, PATCH_SIZE, PatchFeatureExtractor
from ..score_maps import SMOOTHING_SIGMA, scores_to_maps

METHOD = "pbas"
MODEL_FORMAT = 1

#: Sec. IV-B: EMA smoothing factor of the center initialisation.
EMA_BETA = 0.1
#: Sec. IV-B: anomaly degree alpha of Eq. 7 (the official script's default k is 0.25).
ALPHA = 0.3
#: SimpleNet's Gaussian noise std, the "noisy anomaly synthesis N" of Table V.
NOISE_STD = 0.015
#: Guards the division of Eq. 7 when a feature sits exactly on its center.
DISTANCE_EPS = 1e-12

CENTER_METHODS = ("alignment", "average", "iterative", "clustering")  # Table VI: ours, average, EMA, k-means
SYNTHESES = ("adaptive", "noise")  # Table V: S (Eq. 7), N (Gaussian noise)
COMPONENTS = ("full", "abl")  # Table V: ABL + AFS + RBO, or ABL alone
#: Lloyd iterations of the k-means center ablation (it stops earlier when assignments stop changing).
KMEANS_ITERATIONS = 20


@dataclass(frozen=True)
class PBASConfig:
    """Everything needed to rebuild a trained PBAS model (stored in model.pt and run.json)."""

    backbone: str = "wide_resnet50_2"
    layers: tuple[str, ...] = LAYERS
    weights: str | None = None  # explicit checkpoint path, "none" (random init, tests), or None (registry)
    weights_sha256: str | None = None
    patch_size: int = PATCH_SIZE
    embed_dim: int = EMBED_DIM
    image_size: tuple[int, int] = (256, 256)
    components: str = "full"
    smoothing_sigma: float = SMOOTHING_SIGMA

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, d: dict) -> "PBASConfig":
        return cls(**{**d, "layers": tuple(d["layers"]), "image_size": tuple(int(v) for v in d["image_size"])})


# ------------------------------------------------------------------------------------------- centers


def nearest_centers(features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the cosine-nearest center of every row of ``features`` (official code's 1-NN)."""
    similarity = F.normalize(features, dim=1) @ F.normalize(centers, dim=1).T
    return similarity.argmax(dim=1)


def align_and_update(centers: torch.Tensor, batch_mean: torch.Tensor, beta: float = EMA_BETA) -> torch.Tensor:
    """Algorithm 1 lines 10-14 on one batch: each row a^{h,w} of the batch mean finds its nearest
    center (against the centers before this batch), which moves to (1 - beta) c + beta a.

    Rows are applied in order, so a center matched by several rows takes each update in turn (as
    the official code's loop does). Centers no row matched stay unchanged (the set V1).
    """
    matched = nearest_centers(batch_mean, centers).tolist()
    updated = centers.clone()
    for row, index in enumerate(matched):
        updated[index] = (1.0 - beta) * updated[index] + beta * batch_mean[row]
    return updated


def kmeans_centers(rows: torch.Tensor, initial: torch.Tensor, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Lloyd's k-means (Euclidean) of ``rows`` from ``initial`` centers; an emptied cluster keeps its center."""
    centers = initial.clone()
    assignment = None
    for _ in range(iterations):
        new_assignment = torch.cdist(rows, centers).argmin(dim=1)
        if assignment is not None and torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sums = torch.zeros_like(centers).index_add_(0, assignment, rows)
        counts = torch.bincount(assignment, minlength=len(centers)).to(rows.dtype)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return centers


def initial_centers(features: torch.Tensor, batch_size: int, method: str = "alignment", beta: float = EMA_BETA) -> torch.Tensor:
    """Centers (P, D) from the projected training features (N, P, D) (frozen projector, Algorithm 1).

    The features are taken in batches of ``batch_size`` images; a_i is each batch's mean (line 6).
    alignment: Algorithm 1 (c_0 = a_0, then feature alignment with EMA beta, lines 10-14).
    average: Eq. 5, the mean feature of the whole training set, position by position.
    iterative: EMA position by position, c_i = (1 - beta) c_{i-1} + beta a_i, with no alignment.
    clustering: k-means with P clusters over the rows of all a_i, started from a_0.
    """
    if len(features) == 0:
        raise SynthgenError("center initialisation: no training features")
    if method == "average":
        return features.mean(dim=0)
    means = [features[i:i + batch_size].mean(dim=0) for i in range(0, len(features), batch_size)]
    if method == "alignment":
        centers = means[0]
        for batch_mean in means[1:]:
            centers = align_and_update(centers, batch_mean, beta)
        return centers
    if method == "iterative":
        centers = means[0]
        for batch_mean in means[1:]:
            centers = (1.0 - beta) * centers + beta * batch_mean
        return centers
    if method == "clustering":
        return kmeans_centers(torch.cat(means), means[0])
    raise SynthgenError(f"--center: expected one of {', '.join(CENTER_METHODS)}, got {method!r}")


# -------------------------------------------------------------------------------------------- losses


@dataclass
class CenterTerms:
    """The ABL quantities of one batch: nearest centers, offsets u - c~, their lengths, and L_c (Eq. 6)."""

    offsets: torch.Tensor
    distances: torch.Tensor
    center_loss: torch.Tensor


def center_terms(features: torch.Tensor, centers: torch.Tensor) -> CenterTerms:
    """features (N, D) (u, with gradient) against centers (P, D) (constant)."""
    nearest = centers[nearest_centers(features.detach(), centers)]
    offsets = features - nearest
    distances = offsets.norm(dim=1)
    return CenterTerms(offsets, distances, distances.mean())


def adaptive_anomalies(features: torch.Tensor, terms: CenterTerms, alpha: float = ALPHA) -> torch.Tensor:
    """Eq. 7: z = u + alpha * L_c * (u - c~) / ||u - c~||, the offset detached as in the official code."""
    directions = terms.offsets / terms.distances.clamp_min(DISTANCE_EPS)[:, None]
    return features + (alpha * terms.center_loss * directions).detach()


def noisy_anomalies(features: torch.Tensor, generator: torch.Generator, std: float = NOISE_STD) -> torch.Tensor:
    """Table V's "N": z = u + N(0, std^2) noise, independent per value."""
    noise = torch.randn(features.shape, generator=generator, device=generator.device, dtype=features.dtype)
    return features + std * noise.to(features.device)


def boundary_loss(normal_scores: torch.Tensor, anomaly_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_n, L_a): BCE of D(u) against 0 (Eq. 8) and of D(z) against 1 (Eq. 9), means over positions."""
    normal = F.binary_cross_entropy(normal_scores, torch.zeros_like(normal_scores))
    anomalous = F.binary_cross_entropy(anomaly_scores, torch.ones_like(anomaly_scores))
    return normal, anomalous


# ---------------------------------------------------------------------------------------- the model


class PBASModel(nn.Module):
    """E_phi, P_theta, D_psi and the centers: the trained detector (an AnomalyModel)."""

    def __init__(self, config: PBASConfig, backbone: Backbone):
        super().__init__()
        self.config = config
        self.image_size = tuple(config.image_size)
        self.extractor = PatchFeatureExtractor(backbone, config.patch_size, config.embed_dim)
        self.projector = Projector(config.embed_dim)
        self.discriminator = MLPDiscriminator(config.embed_dim, sigmoid=True)
        self.register_buffer("centers", torch.zeros(0, config.embed_dim))

    @classmethod
    def initialised(cls, config: PBASConfig, backbone: Backbone, seed: int) -> "PBASModel":
        """Build with weights drawn from ``seed`` alone (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, backbone)

    def projected(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """u = P(E(x)) as rows (B * H_m * W_m, D), and the grid (H_m, W_m)."""
        features, grid = self.extractor(images)
        return self.projector(features.flatten(0, 1)), grid

    def patch_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """Per-row anomaly scores: D(u) (Eq. 11's argument), or the distance to the nearest center (ABL alone)."""
        if self.config.components == "abl":
            return center_terms(rows, self.centers).distances
        return self.discriminator(rows)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1] -> (maps (B, H, W), image scores (B,)), Eqs. 11-12."""
        self.eval()
        rows, grid = self.projected(images)
        patch = self.patch_scores(rows).view(images.shape[0], *grid)
        return scores_to_maps(patch, images.shape[-2:], self.config.smoothing_sigma)


def save_model(run_dir: Path, model: PBASModel) -> Path:
    return save_without_backbone(run_dir, METHOD, MODEL_FORMAT, model)


@register_loader(METHOD)
def load(run_dir: Path, device: torch.device) -> PBASModel:
    """The trained model of a PBAS run folder, in eval mode on ``device``."""
    blob = read_model_file(run_dir, METHOD, MODEL_FORMAT)
    config = PBASConfig.from_dict(blob["config"])
    model = PBASModel(config, recorded_backbone(config, run_dir))
    model.centers = torch.zeros_like(blob["state_dict"]["centers"])
    load_without_backbone(run_dir, model, blob["state_dict"])
    return model.to(device).eval()
