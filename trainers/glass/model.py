"""GLASS (Chen et al., ECCV 2024, "A Unified Anomaly Synthesis Strategy with Gradient Ascent for Industrial
Anomaly Detection and Localization"): networks, anomaly synthesis in feature space, losses, inference.

Values from the authors' code (cqylunlun/GLASS: glass.py, model.py, loss.py, shell/run-mvtec.sh; read
for facts only and re-derived here):

- Features: the frozen backbone's patch features of PBAS/SimpleNet (WideResNet50 layer2 + layer3, 3 x 3
  neighbourhoods, 1536 dimensions): :class:`trainers.features.PatchFeatureExtractor`.
- Feature adaptor (``pre_proj 1``): one Linear(D, D), Xavier-normal weights: PBAS's :class:`Projector`.
- Discriminator (``dsc_layers 2, dsc_hidden 1024``): Linear(D, 1024) + BatchNorm1d + LeakyReLU(0.2) +
  Linear(1024, 1, no bias) + sigmoid: PBAS's :class:`MLPDiscriminator` with hidden width 1024.
- Center c: per feature-grid position, the mean adapted feature of the normal training images,
  recomputed at the start of every epoch (no gradient).
- r_t: the 0.75 quantile (``radius``) of the distances to c of the normal points of a step (the
  normal images' features and the anomalous images' features outside the mask).
- Global anomaly synthesis (GAS, ``mining 1``): g = u + N(0, 0.015^2) (``noise``); 20 steps (``step``)
  of gradient ascent on BCE(D(g), 1), each moving g by 0.001 along the row-normalised gradient (the
  code's fixed step size); every 5th step a truncated projection holds g to a band: distribution
  "hypersphere" (``svd 1``) ||g - c|| in [r_t, 2 r_t]; "manifold" (``svd 0``) ||g - u|| in [0.5, 1].
- Local anomaly synthesis (LAS): features of images with local anomalies and their masks on the
  feature grid (here: a synthgen build, :mod:`trainers.shard_features`); with "hypersphere" the
  features inside the mask are projected to ||f - c|| in [2 r_t, 4 r_t]; with "manifold" they stay.
- Loss: BCE(D(u), 0) + BCE(D(g), 1) + focal loss (gamma 2, smoothing 1e-5: the FocalLoss class DRAEM
  uses too, :func:`two_class_focal_loss`) of D on the LAS features against their mask, on the hardest half of the positions (``p 0.5``: squared error at or above its median).
- Optimisers: adaptor Adam lr 1e-4, weight decay 1e-5; discriminator AdamW lr 2e-4 (its default weight
  decay 0.01); batch 8; 640 epochs (``meta_epochs``), each stopping once more than 392 samples
  (``limit``) were seen; images 288 x 288 (``imagesize``).
- Distribution: the code reads it per category from a table (MVTec AD: hypersphere for bottle, cable,
  pill, screw, transistor; manifold for the textures and the other objects) or judges it from the mean
  training image's spectrum. The spectral judge is not reproduced: ``--distribution`` chooses, default
  hypersphere (the table's value for bottle; an object category like juice_bottle is not in the table).
- Inference: S = max over positions of D(adaptor(E(x))); map = bilinear upsampling + Gaussian sigma 4
  (the code's RescaleSegmentor, as PBAS).

Where this port departs: the gradient of the final GAS points reaches the adaptor through u only (g is
u plus a detached offset); the code's offset also carries the projection's scale factor. anomalib's port
(src/anomalib/models/image/glass) leaves out GAS's truncated projection; this one keeps it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone
from ..base import read_model_file, register_loader
from ..feature_heads import MLPDiscriminator, Projector, load_without_backbone, recorded_backbone, save_without_backbone
from ..features import EMBED_DIM, LAYERS, PATCH_SIZE, PatchFeatureExtractor
from ..losses import two_class_focal_loss
from ..score_maps import SMOOTHING_SIGMA, scores_to_maps

METHOD = "glass"
MODEL_FORMAT = 1

NOISE_STD = 0.015
ASCENT_STEPS = 20
ASCENT_STEP_SIZE = 0.001
PROJECTION_EVERY = 5
RADIUS_QUANTILE = 0.75
HARD_MINING_QUANTILE = 0.5
DISCRIMINATOR_HIDDEN = 1024
#: Bands of the truncated projection, in multiples of r_t (hypersphere) or absolute (manifold).
GAS_HYPERSPHERE_BAND = (1.0, 2.0)
LAS_HYPERSPHERE_BAND = (2.0, 4.0)
GAS_MANIFOLD_BAND = (0.5, 1.0)
DISTRIBUTIONS = ("hypersphere", "manifold")
IMAGE_SIZE = 288
#: Guards divisions by a norm (the code's 1e-10).
EPS = 1e-10


@dataclass(frozen=True)
class GLASSConfig:
    """Everything needed to rebuild a trained GLASS model (stored in model.pt and run.json)."""

    backbone: str = "wide_resnet50_2"
    layers: tuple[str, ...] = LAYERS
    weights: str | None = None
    weights_sha256: str | None = None
    patch_size: int = PATCH_SIZE
    embed_dim: int = EMBED_DIM
    hidden: int = DISCRIMINATOR_HIDDEN
    image_size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)
    smoothing_sigma: float = SMOOTHING_SIGMA

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, d: dict) -> "GLASSConfig":
        return cls(**{**d, "layers": tuple(d["layers"]), "image_size": tuple(int(v) for v in d["image_size"])})


class GLASSModel(nn.Module):
    """Frozen extractor, feature adaptor, discriminator: the trained detector (an AnomalyModel)."""

    def __init__(self, config: GLASSConfig, backbone: Backbone):
        super().__init__()
        self.config = config
        self.image_size = tuple(config.image_size)
        self.extractor = PatchFeatureExtractor(backbone, config.patch_size, config.embed_dim)
        self.adaptor = Projector(config.embed_dim)
        self.discriminator = MLPDiscriminator(config.embed_dim, hidden=config.hidden, sigmoid=True)

    @classmethod
    def initialised(cls, config: GLASSConfig, backbone: Backbone, seed: int) -> "GLASSModel":
        """Build with weights drawn from ``seed`` alone (the global RNG is left untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, backbone)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1] -> (maps (B, H, W), image scores (B,))."""
        self.eval()
        features, grid = self.extractor(images)
        patch = self.discriminator(self.adaptor(features.flatten(0, 1))).view(images.shape[0], *grid)
        return scores_to_maps(patch, images.shape[-2:], self.config.smoothing_sigma)


# ------------------------------------------------------------------------------------ synthesis


def truncate_to_band(points: torch.Tensor, origins: torch.Tensor, low: torch.Tensor | float, high: torch.Tensor | float) -> torch.Tensor:
    """The truncated projection: move each row along (point - origin) so that its distance to the origin
    lies in [low, high] (rows already inside the band stay)."""
    offsets = points - origins
    norms = offsets.norm(dim=1, keepdim=True)
    return origins + offsets * (norms.clamp(low, high) / (norms + EPS))


def normal_radius(center_rows: torch.Tensor, normal_rows: torch.Tensor, quantile: float = RADIUS_QUANTILE) -> torch.Tensor:
    """r_t: the ``quantile`` of the distances of normal points to their centers (no gradient)."""
    with torch.no_grad():
        return torch.quantile((normal_rows - center_rows).norm(dim=1), quantile)


def global_anomalies(
    discriminator: nn.Module,
    normal: torch.Tensor,
    centers: torch.Tensor,
    radius: torch.Tensor,
    noise: torch.Generator,
    distribution: str = "hypersphere",
    steps: int = ASCENT_STEPS,
    step_size: float = ASCENT_STEP_SIZE,
    std: float = NOISE_STD,
) -> torch.Tensor:
    """GAS: Gaussian noise on the normal rows, then gradient ascent on BCE(D(g), 1) with a truncated
    projection every :data:`PROJECTION_EVERY` steps. Returns g = normal + a detached offset.

    The discriminator sees the normal rows with g in every ascent step, as in training (its BatchNorm
    normalises over both).
    """
    anchor = normal.detach()
    drawn = torch.randn(anchor.shape, generator=noise, dtype=anchor.dtype)
    points = anchor + std * drawn.to(anchor.device)
    if distribution == "hypersphere":
        origins, low, high = centers, radius * GAS_HYPERSPHERE_BAND[0], radius * GAS_HYPERSPHERE_BAND[1]
    else:
        origins, (low, high) = anchor, GAS_MANIFOLD_BAND
    for step in range(steps):
        points.requires_grad_(True)
        scores = discriminator(torch.cat((anchor, points)))[len(anchor):]
        loss = F.binary_cross_entropy(scores, torch.ones_like(scores))
        (grad,) = torch.autograd.grad(loss, [points])
        with torch.no_grad():
            points = points + step_size * grad / (grad.norm(dim=1, keepdim=True) + EPS)
            if (step + 1) % PROJECTION_EVERY == 0:
                points = truncate_to_band(points, origins, low, high)
    return normal + (points.detach() - anchor)


def local_anomalies(features: torch.Tensor, masks: torch.Tensor, centers: torch.Tensor, radius: torch.Tensor, distribution: str = "hypersphere") -> torch.Tensor:
    """LAS features: with "hypersphere" the rows inside the mask are projected to [2 r_t, 4 r_t] from
    their centers (the gradient flows through the projection); outside the mask, and with "manifold",
    they stay as they are."""
    if distribution != "hypersphere":
        return features
    projected = truncate_to_band(features, centers, radius * LAS_HYPERSPHERE_BAND[0], radius * LAS_HYPERSPHERE_BAND[1])
    return torch.where(masks[:, None] > 0, projected, features)


def hardest(scores: torch.Tensor, targets: torch.Tensor, quantile: float = HARD_MINING_QUANTILE) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose squared error (score - target)^2 is at or above its ``quantile`` (hard mining)."""
    if quantile <= 0:
        return scores, targets
    errors = (scores.detach() - targets) ** 2
    keep = errors >= torch.quantile(errors, quantile)
    return scores[keep], targets[keep]


# ------------------------------------------------------------------------------------ run folder


def save_model(run_dir: Path, model: GLASSModel) -> Path:
    return save_without_backbone(run_dir, METHOD, MODEL_FORMAT, model)


@register_loader(METHOD)
def load(run_dir: Path, device: torch.device) -> GLASSModel:
    """The trained model of a GLASS run folder, in eval mode on ``device``."""
    blob = read_model_file(run_dir, METHOD, MODEL_FORMAT)
    config = GLASSConfig.from_dict(blob["config"])
    model = GLASSModel(config, recorded_backbone(config, run_dir))
    load_without_backbone(run_dir, model, blob["state_dict"])
    return model.to(device).eval()
