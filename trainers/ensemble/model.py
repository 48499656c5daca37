"""The feature-level ensemble (thesis Sec. 2.1, 4.1, 4.4) and the output-level baseline it is compared with.

Feature-level ensemble (method ``ensemble``): the feature maps of two or more frozen extractors
(trainers/ensemble/extractors.py) are brought to one grid, the finest of them, by bilinear
interpolation (align_corners=False), reduced by a global or individual PCA transformation block
(trainers/ensemble/pca.py), and scored position by position by a SimpleNet discriminator: a
two-layer MLP (Linear(N, int(N // 1.5)) + BatchNorm + LeakyReLU(0.2) + Linear(., 1, no bias), Xavier
weights; SimpleNet's ``Discriminator(n_layers=2)``) trained on the ensembled normal features against
fakes made by adding Gaussian noise, with SimpleNet's truncated L1 loss

    L = mean(max(0, th - D(x))) + mean(max(0, th + D(x + noise))),   th = 0.5,

so D is positive for normal features.

The noise std. SimpleNet's 0.015 is set for its own adapted WideResNet features, whose 1536
channels include many directions in which normal features hardly vary: noise shows there. A PCA
block keeps exactly the directions that do vary (the default 384 of 768 channels keep 99.97% of the
variance of efficientnet_lite0 + PBAS features on bottle; the least of them has std 0.32), so noise
of std 0.015 lies far inside the normal spread everywhere and the discriminator cannot learn
(measured: loss stays at 1.0, chance, on bottle and juice_bottle). The block therefore scales its
output to unit mean variance (trainers/ensemble/pca.py) and the noise std is given in those units:
:data:`NOISE_STD` = 0.5, chosen on synthetic validation data only (draem + cutpaste anomalies made
by ``synthgen build`` from the *training* images of MVTec AD bottle and LOCO juice_bottle; extractors
efficientnet_lite0 layer3+4 and a trained PBAS; patch AUROC after about 300 discriminator steps;
never the test sets):

    noise std (unit-variance units)   0.1    0.2    0.3    0.5    1.0    SimpleNet: 0.015 unscaled
    bottle                            0.659  0.935  0.939  0.943  0.940  0.438 (loss 1.0: chance)
    juice_bottle                      0.575  0.846  0.887  0.897  0.891  0.429 (loss 1.0: chance)

0.5 is best on both; 0.3 to 1.0 is a plateau, 0.1 hardly learns. ``noise_std`` overrides the
default. benchmarks/ensemble_noise_validation.py reproduces the table (bottle --epochs 100,
juice_bottle --epochs 40).

Optionally (``adaptor=True``, not in the thesis, which takes SimpleNet's pipeline *after* its feature
adaptor) SimpleNet's feature adaptor, one Linear(N, N) trained jointly with D, maps the ensembled
features first and the noise is added to its output, as SimpleNet does.

The patch anomaly score is -D (SimpleNet); the image score is its maximum and the anomaly map its
bilinear upsampling smoothed by a Gaussian of sigma 4 (trainers/score_maps.py, as SimpleNet and PBAS).

Output-level baseline (method ``ensemble-output``): trained models (any run folders) each produce
their own map and score; each member's outputs are calibrated to z-scores with the mean and
standard deviation its maps' pixels and its image scores have on the normal training images, and
the ensemble's map and score are the means of the members' calibrated maps and scores. (The thesis
names "calibrate each output, then combine" without fixing a calibration; z-scoring on normal
data is the simplest one that makes unbounded scores and probabilities comparable.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file

from ..base import MODEL_FILE, load_model, read_model_file, read_run_info, register_loader, write_model_file
from ..feature_heads import MLPDiscriminator, Projector
from ..features import EMBED_DIM
from ..score_maps import SMOOTHING_SIGMA, scores_to_maps
from .extractors import build_extractor
from .pca import TransformationBlock

METHOD = "ensemble"
OUTPUT_METHOD = "ensemble-output"
MODEL_FORMAT = 2  # 2: the transformation block scales its output (a `block.scale` buffer)
OUTPUT_MODEL_FORMAT = 1

#: Gaussian noise std of the fake features, in units of the block's unit-mean-variance output (see
#: the module docstring: SimpleNet's 0.015 fits its own features, not PCA-reduced ones).
NOISE_STD = 0.5
#: SimpleNet: the margin th of the truncated L1 loss.
MARGIN = 0.5
#: A calibration std below this means a member's output is constant on normal images.
MIN_CALIBRATION_STD = 1e-12


def truncated_l1_loss(normal_scores: torch.Tensor, fake_scores: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
    """SimpleNet's loss: normal scores are pushed above +margin, fake scores below -margin."""
    return (margin - normal_scores).clamp_min(0).mean() + (margin + fake_scores).clamp_min(0).mean()


def gaussian_fakes(rows: torch.Tensor, generator: torch.Generator, std: float = NOISE_STD) -> torch.Tensor:
    """x + N(0, std^2), the noise drawn on the CPU from ``generator`` (reproducible on any device)."""
    noise = torch.randn(rows.shape, generator=generator, dtype=rows.dtype)
    return rows + std * noise.to(rows.device)


def resize_to_grid(maps: list[torch.Tensor], grid: tuple[int, int]) -> list[torch.Tensor]:
    """Bring every (B, C_k, H_k, W_k) map to ``grid`` bilinearly (maps already there are untouched)."""
    return [m if tuple(m.shape[-2:]) == tuple(grid) else F.interpolate(m, size=grid, mode="bilinear", align_corners=False) for m in maps]


def finest_grid(maps: list[torch.Tensor]) -> tuple[int, int]:
    return max((tuple(m.shape[-2:]) for m in maps), key=lambda hw: hw[0] * hw[1])


def map_rows(m: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B * H * W, C)."""
    return m.permute(0, 2, 3, 1).reshape(-1, m.shape[1])


@dataclass(frozen=True)
class EnsembleConfig:
    """What rebuilds a trained feature-level ensemble (model.pt and run.json)."""

    extractors: tuple[str, ...]
    block: str
    components: float
    embed_dim: int = EMBED_DIM
    weights: str | None = None
    image_size: tuple[int, int] = (256, 256)
    grid: tuple[int, int] = (32, 32)
    channels: tuple[int, ...] = ()
    pca_sizes: tuple[int, ...] = ()
    extractor_info: tuple[dict, ...] = field(default=())
    adaptor: bool = False
    smoothing_sigma: float = SMOOTHING_SIGMA

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("extractors", "image_size", "grid", "channels", "pca_sizes", "extractor_info"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EnsembleConfig":
        tuples = {k: tuple(d[k]) for k in ("extractors", "image_size", "grid", "channels", "pca_sizes", "extractor_info")}
        return cls(**{**d, **tuples})


class FeatureEnsembleModel(nn.Module):
    """Extractors -> one grid -> transformation block -> SimpleNet discriminator (an AnomalyModel)."""

    def __init__(self, config: EnsembleConfig, extractors: list[nn.Module], block: TransformationBlock):
        super().__init__()
        self.config = config
        self.image_size = tuple(config.image_size)
        self.extractors = nn.ModuleList(extractors)
        self.block = block
        self.adaptor = Projector(block.out_dim) if config.adaptor else nn.Identity()
        self.discriminator = MLPDiscriminator(block.out_dim, sigmoid=False)

    def extractor_rows(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every extractor's features on the ensemble grid, as (B * H * W, C_k) rows."""
        with torch.no_grad():
            maps = [extractor(images) for extractor in self.extractors]
        return [map_rows(m) for m in resize_to_grid(maps, tuple(self.config.grid))]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.eval()
        rows = self.adaptor(self.block(self.extractor_rows(images)))
        patch = -self.discriminator(rows).view(images.shape[0], *self.config.grid)
        return scores_to_maps(patch, images.shape[-2:], self.config.smoothing_sigma)


def build_extractors(config: EnsembleConfig, device="cpu") -> list[nn.Module]:
    return [build_extractor(spec, config.embed_dim, config.weights, None, device) for spec in config.extractors]


def save_feature_model(run_dir: Path, model: FeatureEnsembleModel) -> Path:
    """model.pt: the config, the PCA block and the discriminator (extractors are rebuilt from their specs)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("extractors.")}
    return write_model_file(run_dir, METHOD, MODEL_FORMAT, {"config": model.config.to_dict(), "state_dict": state})


def _check_extractor_provenance(run_dir: Path, config: EnsembleConfig, extractors: list[nn.Module]) -> None:
    """The rebuilt extractors must be the ones trained with (weights / PBAS model hashes)."""
    for recorded, extractor in zip(config.extractor_info, extractors):
        now = extractor.info()
        for key in ("sha256", "model_sha256"):
            if recorded.get(key) != now.get(key):
                raise SynthgenError(
                    f"{Path(run_dir) / MODEL_FILE}: extractor {recorded['spec']} now has {key} {now.get(key)}, trained with {recorded.get(key)}"
                )


@register_loader(METHOD)
def load_feature_model(run_dir: Path, device: torch.device) -> FeatureEnsembleModel:
    blob = read_model_file(run_dir, METHOD, MODEL_FORMAT)
    config = EnsembleConfig.from_dict(blob["config"])
    extractors = build_extractors(config, device)
    _check_extractor_provenance(run_dir, config, extractors)
    block = TransformationBlock(config.block, list(config.channels), list(config.pca_sizes))
    model = FeatureEnsembleModel(config, extractors, block)
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    if unexpected or any(not k.startswith("extractors.") for k in missing):
        raise SynthgenError(f"{Path(run_dir) / MODEL_FILE}: state does not fit the model ({(unexpected or missing)[0]!r})")
    return model.to(device).eval()


# ------------------------------------------------------------------------------- output-level baseline


@dataclass(frozen=True)
class Calibration:
    """A member's output statistics on normal training images."""

    map_mean: float
    map_std: float
    score_mean: float
    score_std: float


class OutputEnsembleModel:
    """Members' calibrated maps and scores, averaged (an AnomalyModel)."""

    def __init__(self, members: list, calibrations: list[Calibration], image_size: tuple[int, int]):
        self.members = members
        self.calibrations = calibrations
        self.image_size = tuple(image_size)

    def to(self, device):
        self.members = [m.to(device) for m in self.members]
        return self

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, scores = 0.0, 0.0
        for member, c in zip(self.members, self.calibrations):
            member_maps, member_scores = member.predict(images)
            maps = maps + (member_maps.float() - c.map_mean) / c.map_std
            scores = scores + (member_scores.float() - c.score_mean) / c.score_std
        return maps / len(self.members), scores / len(self.members)


def calibrate(member, batches) -> Calibration:
    """Mean and std (population, float64) of a member's map pixels and image scores over ``batches``."""
    pixel_sum = pixel_sq = pixel_n = 0.0
    scores = []
    for images in batches:
        maps, batch_scores = member.predict(images)
        maps = maps.double()
        pixel_sum += float(maps.sum())
        pixel_sq += float((maps * maps).sum())
        pixel_n += maps.numel()
        scores.append(batch_scores.double().cpu())
    scores = torch.cat(scores)
    map_mean = pixel_sum / pixel_n
    map_std = max(pixel_sq / pixel_n - map_mean**2, 0.0) ** 0.5
    score_std = float(scores.std(unbiased=False))
    if map_std < MIN_CALIBRATION_STD or score_std < MIN_CALIBRATION_STD:
        raise SynthgenError("--member: a member's output is constant on the normal images; it cannot be calibrated")
    return Calibration(map_mean, map_std, float(scores.mean()), score_std)


def member_record(run: Path) -> dict:
    """What the output ensemble records about a member: its folder and model hash."""
    info = read_run_info(run)
    return {"run": str(Path(run).resolve()), "method": info.get("method"), "model_sha256": sha256_file(Path(run) / MODEL_FILE)}


def save_output_model(run_dir: Path, records: list[dict], calibrations: list[Calibration], image_size: tuple[int, int]) -> Path:
    members = [{**r, "calibration": asdict(c)} for r, c in zip(records, calibrations)]
    return write_model_file(run_dir, OUTPUT_METHOD, OUTPUT_MODEL_FORMAT, {"members": members, "image_size": list(image_size)})


@register_loader(OUTPUT_METHOD)
def load_output_model(run_dir: Path, device: torch.device) -> OutputEnsembleModel:
    blob = read_model_file(run_dir, OUTPUT_METHOD, OUTPUT_MODEL_FORMAT)
    members, calibrations = [], []
    for record in blob["members"]:
        now = sha256_file(Path(record["run"]) / MODEL_FILE)
        if now != record["model_sha256"]:
            raise SynthgenError(f"{Path(run_dir) / MODEL_FILE}: member {record['run']} has changed since calibration (model sha256 {now})")
        members.append(load_model(record["run"], device))
        calibrations.append(Calibration(**record["calibration"]))
    return OutputEnsembleModel(members, calibrations, tuple(blob["image_size"])).to(device)
