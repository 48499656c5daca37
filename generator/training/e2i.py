"""Training the edge-to-image generator (LogicAL sec. 3.1 / 4.2; pix2pixHD + DeepSIM TPS).

What ``synthgen train-e2i`` runs; a build never imports this module (it loads the exported file with
:func:`generator.models.e2i.load_e2i_model`).

- :class:`E2ITrainingModule`: a LightningModule with manual optimisation of generator and
  discriminator (pix2pixHD: one Adam each, lr 2e-4, betas (0.5, 0.999); lr constant for the first
  half of the epochs, then decayed linearly towards 0, as ``--niter 100 --niter_decay 100``).
  Every training pair is TPS-warped (DeepSIM), the same warp for edge map and photo, drawn from a
  numpy Generator seeded by (seed, epoch, batch index), so a run is reproducible and a resumed run
  sees the same warps as an uninterrupted one.
- :func:`train_e2i`: trains with checkpoints, resume and a CSV log, then exports the generator with
  :func:`generator.models.e2i.save_generator`.
- :func:`category_pairs`: the (first-scale PiDiNet edge map, photo) pairs of a dataset category,
  read and resized as a build reads its sources (``synthgen train-e2i`` trains on these).

The VGG19 perceptual loss is used only when VGG19 ImageNet weights resolve (see
:func:`generator.training.gan.resolve_vgg19_weights`); otherwise the generator trains on LSGAN +
discriminator feature matching alone, and ``perceptual_loss: "none"`` is recorded in the
hyperparameters, the log and the exported generator file.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..atomic import atomic_path, write_json_atomic
from ..errors import SynthgenError
from ..imageio import resize_mask, resize_rgb, sha256_file, write_png
from ..models.e2i import GeneratorConfig, GlobalGenerator, check_image_size, save_generator, to_uint8
from ..models.layers import config_from_dict
from ..models.tps import MAX_SHIFT, POINTS_PER_DIM, draw_tps, warp_pair
from ..safe_load import LIGHTNING_WEIGHTS_ONLY, check_lightning_checkpoint, require_dict
from ..seeding import stable_hash32
from .gan import (
    DiscriminatorConfig,
    MultiscaleDiscriminator,
    VGGPerceptualLoss,
    feature_matching_loss,
    init_weights,
    load_vgg19_features,
    lsgan_loss,
    resolve_vgg19_weights,
)

log = logging.getLogger(__name__)

#: samples shown in the per-epoch preview grid
PREVIEW_SAMPLES = 4


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines an edge-to-image training run besides data, epochs and seed."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    lr: float = 2e-4  # pix2pixHD --lr
    beta1: float = 0.5  # pix2pixHD --beta1
    beta2: float = 0.999  # pix2pixHD Adam
    lambda_feat: float = 10.0  # pix2pixHD --lambda_feat (feature matching, and VGG when used)
    lr_decay_fraction: float = 0.5  # final share of epochs with linear lr decay (--niter = --niter_decay)
    tps_points_per_dim: int = POINTS_PER_DIM
    tps_max_shift: float = MAX_SHIFT
    #: the edge maps are binary (thresholded); re-binarised after the TPS warp, as in DeepSIM.
    #: False for soft edge probability maps, which are warped bilinearly and kept soft.
    binary_edges: bool = True
    #: VGG19 ImageNet weights for the perceptual loss; None looks in the usual caches (see
    #: resolve_vgg19_weights) and trains without the perceptual loss when there are none.
    vgg19_weights: str | None = None

    def __post_init__(self):
        ranges = {"lr": (0, np.inf), "lambda_feat": (0, np.inf), "tps_max_shift": (0, 0.5),
                  "beta1": (0, 1), "beta2": (0, 1), "lr_decay_fraction": (0, 1)}  # fmt: skip
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low <= value <= high):
                raise SynthgenError(f"TrainConfig.{name}: must be in [{low}, {high}], got {value!r}")
        if self.tps_points_per_dim < 2:
            raise SynthgenError(f"TrainConfig.tps_points_per_dim: must be >= 2, got {self.tps_points_per_dim}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        values = dict(values)
        if "generator" in values:
            values["generator"] = config_from_dict(GeneratorConfig, values["generator"], where)
        if "discriminator" in values:
            values["discriminator"] = config_from_dict(DiscriminatorConfig, values["discriminator"], where)
        return config_from_dict(cls, values, where)


def tiny_config(**overrides) -> TrainConfig:
    """A CPU smoke-test configuration: the same architecture with few, narrow layers."""
    return TrainConfig(
        generator=GeneratorConfig(ngf=8, n_downsampling=2, n_blocks=2),
        discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_d=2),
        **overrides,
    )


def small_config(**overrides) -> TrainConfig:
    """A configuration a CPU can train in hours: half pix2pixHD's widths, 3 downsamplings, 6 blocks,
    3-layer PatchGANs at half width (one step of 4 pairs at 256x128 takes about 2.5 s on one core)."""
    return TrainConfig(
        generator=GeneratorConfig(ngf=32, n_downsampling=3, n_blocks=6),
        discriminator=DiscriminatorConfig(ndf=32, n_layers=3, num_d=2),
        **overrides,
    )


#: ``synthgen train-e2i --network``: the configurations by name.
NETWORKS = {"full": TrainConfig, "small": small_config, "tiny": tiny_config}


def _substream_seed(seed: int, purpose: str, *keys: int) -> np.random.SeedSequence:
    """An independent random stream per purpose (weights, shuffling, warps) from one run seed."""
    return np.random.SeedSequence([int(seed), stable_hash32(purpose), *map(int, keys)])


# --------------------------------------------------------------------------------------------
# Data


class EdgeImagePairs(Dataset):
    """(edge map, photo) pairs as training samples: {"edge": (1,H,W), "image": (3,H,W)} float in [0,1].

    pairs: (edge (H, W) uint8, image (H, W, 3) uint8) of the same size. Pairs are resized to
    ``image_size`` (H, W): photos with an area/bilinear filter, binary edge maps with nearest
    neighbour (as DeepSIM resizes its edge maps; better, extract edges at the training size).
    """

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], image_size: tuple[int, int], *, binary_edges: bool):
        if len(pairs) == 0:
            raise SynthgenError("pairs: no (edge map, image) pairs to train on")
        self.edges, self.images = [], []
        for i, (edge, image) in enumerate(pairs):
            edge, image = np.asarray(edge), np.asarray(image)
            if edge.dtype != np.uint8 or edge.ndim != 2:
                raise SynthgenError(f"pairs[{i}]: edge map must be (H, W) uint8, got {edge.shape} {edge.dtype}")
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise SynthgenError(f"pairs[{i}]: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            if edge.shape != image.shape[:2]:
                raise SynthgenError(f"pairs[{i}]: edge map {edge.shape} and image {image.shape[:2]} differ in size")
            if binary_edges and not np.isin(edge, (0, 255)).all():
                raise SynthgenError(
                    f"pairs[{i}]: edge map is not binary (values other than 0 and 255); "
                    "threshold it, or train with binary_edges=False for soft edge maps"
                )
            self.edges.append(resize_mask(edge, image_size) if binary_edges else resize_rgb(edge, image_size))
            self.images.append(resize_rgb(image, image_size))

    def __len__(self) -> int:
        return len(self.edges)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        edge = torch.from_numpy(self.edges[index]).float().div(255).unsqueeze(0)
        image = torch.from_numpy(self.images[index]).float().div(255).permute(2, 0, 1)
        return {"edge": edge, "image": image}


class EpochShuffleSampler(Sampler[int]):
    """Shuffles anew each epoch from (seed, epoch) alone (Lightning calls ``set_epoch``), so the
    order of epoch k is the same whether or not the run was interrupted and resumed before it."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng(_substream_seed(self.seed, "e2i-shuffle", self.epoch))
        return iter(rng.permutation(self.size).tolist())

    def __len__(self) -> int:
        return self.size


# --------------------------------------------------------------------------------------------
# Training


def lr_factor(epoch: int, epochs: int, decay_fraction: float) -> float:
    """pix2pixHD's schedule: constant, then lr * (1 - k/n_decay) in the k-th of the last n_decay epochs."""
    n_decay = round(epochs * decay_fraction)
    k = epoch - (epochs - n_decay)
    return 1.0 if k < 0 else 1.0 - k / n_decay


class E2ITrainingModule(L.LightningModule):
    """pix2pixHD training of :class:`GlobalGenerator` against :class:`MultiscaleDiscriminator`.

    config: :meth:`TrainConfig.to_dict` (plain values, so Lightning stores them in checkpoints).
    seed: initialises the weights and seeds the TPS warps and data order.
    epochs: the planned number of epochs (defines the learning-rate schedule).
    vgg19_weights: resolved VGG19 weights path, or None for feature matching alone.
    """

    def __init__(self, config: dict[str, Any], seed: int, epochs: int, vgg19_weights: str | None = None):
        super().__init__()
        self.save_hyperparameters()  # vgg19_weights=None in hparams.yaml: no perceptual loss
        self.config = TrainConfig.from_dict(config)
        self.automatic_optimization = False
        self.generator = GlobalGenerator(self.config.generator)
        self.discriminator = MultiscaleDiscriminator(self.config.discriminator)
        init_weights(self.generator, _substream_seed(seed, "e2i-generator-init").generate_state(1)[0])
        init_weights(self.discriminator, _substream_seed(seed, "e2i-discriminator-init").generate_state(1)[0])
        self.perceptual = VGGPerceptualLoss(load_vgg19_features(vgg19_weights)) if vgg19_weights else None

    def configure_optimizers(self):
        betas = (self.config.beta1, self.config.beta2)
        return (
            torch.optim.Adam(self.generator.parameters(), lr=self.config.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.config.lr, betas=betas),
        )

    def on_train_epoch_start(self) -> None:
        lr = self.config.lr * lr_factor(self.current_epoch, self.hparams.epochs, self.config.lr_decay_fraction)
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.log("lr", lr, on_step=False, on_epoch=True)

    def tps_augment(self, batch: dict[str, torch.Tensor], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """DeepSIM's augmentation: one TPS warp per sample, the same for its edge map and photo."""
        edges, images = batch["edge"], batch["image"]
        rng = np.random.default_rng(_substream_seed(self.hparams.seed, "e2i-tps", self.current_epoch, batch_idx))
        shifts = np.stack(
            [
                draw_tps(rng, points_per_dim=self.config.tps_points_per_dim, max_shift=self.config.tps_max_shift)
                for _ in range(edges.shape[0])
            ]
        )
        return warp_pair(edges, images, shifts, binary_edges=self.config.binary_edges)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        edges, real = self.tps_augment(batch, batch_idx)
        opt_g, opt_d = self.optimizers()
        fake = self.generator(edges)

        # Discriminator: fake (detached) -> 0, real -> 1; halved as in pix2pixHD.
        pred_real = self.discriminator(edges, real)
        pred_fake_detached = self.discriminator(edges, fake.detach())
        loss_d = 0.5 * (lsgan_loss(pred_fake_detached, real=False) + lsgan_loss(pred_real, real=True))

        # Generator: fool D, match D's features of the real image (and VGG's, when available).
        # D's parameters get no gradient from this pass; its activations still pass one to G.
        self.discriminator.requires_grad_(False)
        pred_fake = self.discriminator(edges, fake)
        self.discriminator.requires_grad_(True)
        loss_g_gan = lsgan_loss(pred_fake, real=True)
        loss_g_feat = self.config.lambda_feat * feature_matching_loss(pred_fake, pred_real)
        loss_g = loss_g_gan + loss_g_feat
        losses = {"loss_d": loss_d, "loss_g_gan": loss_g_gan, "loss_g_feat": loss_g_feat}
        if self.perceptual is not None:
            losses["loss_g_vgg"] = self.config.lambda_feat * self.perceptual(fake, real)
            loss_g = loss_g + losses["loss_g_vgg"]
        losses["loss_g"] = loss_g

        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        losses["l1"] = F.l1_loss(fake.detach().float(), real)  # a readable progress measure, not trained on
        self.log_dict({k: v.detach() for k, v in losses.items()}, prog_bar=True, on_step=True, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        """Write a preview grid (edge | generated | real) of the first samples, without augmentation."""
        dataset = self.trainer.train_dataloader.dataset
        batch = default_collate([dataset[i] for i in range(min(PREVIEW_SAMPLES, len(dataset)))])
        edges, real = batch["edge"].to(self.device), batch["image"].to(self.device)
        with torch.no_grad():
            fake = self.generator(edges).float()
        path = Path(self.trainer.log_dir) / "samples" / f"epoch_{self.current_epoch:04d}.png"
        with atomic_path(path, suffix=".png") as tmp:
            write_png(tmp, sample_grid(edges, fake, real))


def sample_grid(edges: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """One row per sample: edge map | generated | real, as (B*H, 3*W, 3) uint8."""
    columns = [edges.expand(-1, 3, -1, -1), fake, real]
    rows = torch.cat(columns, dim=3)  # (B, 3, H, 3W)
    grid = torch.cat(list(rows), dim=1)  # (3, B*H, 3W)
    return to_uint8(grid.permute(1, 2, 0))


def _trainer_device(device: str | torch.device) -> tuple[str, list[int] | int, str]:
    """Lightning's (accelerator, devices, precision) for a torch device; bf16 autocast on GPU only."""
    try:
        device = torch.device(device)
    except RuntimeError:
        raise SynthgenError(f"device: {device!r} is not a device name (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SynthgenError(f"device: {device} requested but CUDA is not available")
        return "gpu", [device.index or 0], "bf16-mixed"
    if device.type == "cpu":
        return "cpu", 1, "32-true"
    raise SynthgenError(f"device: {device} is not supported for training (use cpu or cuda)")


def _check_resumable(checkpoint: Path, module: L.LightningModule) -> None:
    """Refuse to resume from an unsafe or damaged checkpoint (generator.safe_load), or from one of a
    different run (config, seed, epochs, VGG)."""
    blob = require_dict(check_lightning_checkpoint(checkpoint, module), checkpoint, "training checkpoint", ("hyper_parameters",))
    saved, hparams = blob["hyper_parameters"], dict(module.hparams)
    differing = sorted(k for k in set(saved) | set(hparams) if saved.get(k) != hparams.get(k))
    if differing:
        raise SynthgenError(
            f"{checkpoint}: was written by a run with different {', '.join(differing)}; "
            "use the same settings, another output folder, or resume=False"
        )


def train_e2i(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    out_dir: str | Path,
    *,
    config: TrainConfig,
    epochs: int,
    batch_size: int,
    image_size: int | tuple[int, int],
    seed: int,
    device: str | torch.device,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train an edge-to-image generator on (edge map, photo) pairs; return the exported generator file.

    out_dir receives ``checkpoints/last.ckpt`` (after every epoch; resumed from when ``resume`` and it
    exists), ``logs/version_N/`` (CSV metrics, hyperparameters, per-epoch preview grids),
    ``e2i_generator.pt`` (:func:`save_generator`) and ``e2i_generator.json`` (its training record and
    sha256). Resuming needs the same config, seed and epochs (the learning-rate schedule depends on
    them). On CPU the result is reproducible bit for bit from the seed; CUDA kernels used in
    training (e.g. reflection-padding backward) are not deterministic.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise SynthgenError(f"epochs: must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SynthgenError(f"batch_size: must be a positive integer, got {batch_size!r}")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    check_image_size(config.generator, *size, where="image_size")
    accelerator, devices, precision = _trainer_device(device)
    out_dir = Path(out_dir)

    dataset = EdgeImagePairs(pairs, size, binary_edges=config.binary_edges)
    vgg19 = resolve_vgg19_weights(config.vgg19_weights)
    if vgg19 is None:
        log.warning("VGG19 weights not found: training with LSGAN + feature matching only (no perceptual loss)")
    module = E2ITrainingModule(config.to_dict(), seed=seed, epochs=epochs, vgg19_weights=str(vgg19) if vgg19 else None)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=EpochShuffleSampler(len(dataset), seed))

    last = out_dir / "checkpoints" / "last.ckpt"
    resume_from = None
    if resume and last.is_file():
        _check_resumable(last, module)
        resume_from = last
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision=precision,
        max_epochs=epochs,
        logger=CSVLogger(out_dir, name="logs"),
        # One rolling file: "last.ckpt", rewritten at the end of every epoch.
        callbacks=[ModelCheckpoint(dirpath=last.parent, filename="last", enable_version_counter=False)],
        log_every_n_steps=1,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=out_dir,
    )
    trainer.fit(module, loader, ckpt_path=resume_from, weights_only=LIGHTNING_WEIGHTS_ONLY)

    record = {
        "perceptual_loss": "vgg19" if vgg19 else "none",
        "perceptual_loss_note": (
            "VGG19 perceptual loss (pix2pixHD)" if vgg19 else "VGG19 weights not available: LSGAN + feature matching only"
        ),
        "vgg19_weights_sha256": sha256_file(vgg19) if vgg19 else None,
        "config": config.to_dict(),
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "image_size": list(size),
        "num_pairs": len(dataset),
        "precision": precision,
        "versions": {"torch": torch.__version__, "lightning": L.__version__},
    }
    out = out_dir / "e2i_generator.pt"
    save_generator(module.generator, out, training=record)
    write_json_atomic(out_dir / "e2i_generator.json", {**record, "file": out.name, "sha256": sha256_file(out)})
    return out


def category_pairs(
    dataset: str,
    root: str | Path | None,
    category: str,
    split: str,
    image_size: tuple[int, int],
    *,
    edge_model: str,
    weights_dir: str | Path | None,
    device: str,
    progress: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(first-scale PiDiNet edge map, photo) pairs of a category's normal images, as a build sees them.

    The photos are read and resized by :func:`generator.sources.read_sources`, like a build's
    sources, and the edges are the precompute stage's cached maps (computed into its cache when
    missing), so the generator is trained on exactly the edge maps a build of the same images edits.
    """
    from ..models.edges import EdgeDetector
    from ..precompute import cached_edge_maps, source_image_id
    from ..sources import read_sources

    _, sources = read_sources(dataset, root, category, split, image_size, progress=progress)
    stack = np.array(sources.load_stack())
    ids = [source_image_id(sha) for sha in sources.sha256]
    edges = cached_edge_maps(stack, ids, EdgeDetector(edge_model, device, weights_dir=weights_dir), progress=progress)
    return [(edges[i, 0], stack[i]) for i in range(len(stack))]
