"""Train the feature-level ensemble or calibrate the output-level baseline; write a run folder.

Feature-level training: the extractors are frozen and no augmentation is used, so the ensembled
features of every normal training image are computed once. The PCA block is fitted on at most
:data:`PCA_MAX_ROWS` positions drawn without replacement (seeded) from all training positions; the
discriminator then trains for ``epochs`` passes over the images in batches of ``batch_size``
(SimpleNet: Adam, learning rate 2e-4, weight decay 1e-5, batch size 8, 160 epochs = its 40 meta
epochs x 4 discriminator epochs). With the optional feature adaptor, it trains jointly with Adam,
learning rate 1e-4, weight decay 1e-5 (the projector optimiser of PBAS, which is built on SimpleNet's
code). The last epoch is kept. After every epoch ``checkpoints/last.ckpt`` holds the discriminator,
the adaptor, their optimisers, the noise generator and the log; ``--resume`` continues from it to the
same model as an uninterrupted run (the features and the PCA block are recomputed, deterministically).

Output-level calibration: every member predicts the normal training images once (no training).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.safe_load import load_state_dict_checked

from ..base import MODEL_FILE, load_model
from ..epoch_log import EpochLog, finish_plain_run, order_for_epoch, read_epoch_checkpoint
from ..features import NormalImages, load_normal_images
from ..lightning_utils import LOG_DIR, finish_run, resolve_device, start_run
from .extractors import check_extractors
from .model import (
    MARGIN,
    METHOD,
    OUTPUT_METHOD,
    EnsembleConfig,
    FeatureEnsembleModel,
    build_extractors,
    calibrate,
    finest_grid,
    gaussian_fakes,
    map_rows,
    member_record,
    resize_to_grid,
    save_feature_model,
    save_output_model,
    truncated_l1_loss,
)
from .options import FeatureEnsembleOptions, OutputEnsembleOptions
from .pca import BLOCKS, TransformationBlock

#: SimpleNet's optimiser settings (its learning rate, epochs and batch size: options.py).
WEIGHT_DECAY = 1e-5
ADAPTOR_LR = 1e-4
#: Positions used to fit the PCA (memory and time bound; 2 x 10^5 rows of 3072 floats is 2.4 GB).
PCA_MAX_ROWS = 200_000
METRICS_FILE = "metrics.csv"
LOG_FIELDS = ("epoch", "loss", "p_true", "p_fake")


def default_components(block: str, channels: list[int]) -> int:
    """Thesis: as many ensembled maps as a single extractor gives. Global: the widest extractor's
    channel count; individual: that count shared equally among the extractors."""
    widest = max(channels)
    return widest if block == "global" else max(1, widest // len(channels))


@torch.no_grad()
def ensemble_inputs(extractors: list, normals: NormalImages, batch_size: int, device: str) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """Every extractor's features of every image on the finest grid: one (N, H * W, C_k) CPU tensor each."""
    per_extractor: list[list[torch.Tensor]] = [[] for _ in extractors]
    grid = None
    for images in normals.batches(batch_size):
        maps = [extractor(images.to(device)) for extractor in extractors]
        grid = grid or finest_grid(maps)
        for store, m in zip(per_extractor, resize_to_grid(maps, grid)):
            store.append(map_rows(m).view(images.shape[0], grid[0] * grid[1], -1).cpu())
    return [torch.cat(store) for store in per_extractor], grid


def fit_block(block: str, features: list[torch.Tensor], components: float, seed: int) -> TransformationBlock:
    """Fit the PCA block on a seeded subset of at most PCA_MAX_ROWS training positions."""
    rows = [f.flatten(0, 1) for f in features]
    n = len(rows[0])
    if n > PCA_MAX_ROWS:
        chosen = torch.from_numpy(np.sort(np.random.default_rng([seed, 2]).choice(n, PCA_MAX_ROWS, replace=False)))
        rows = [r[chosen] for r in rows]
    return TransformationBlock.fit(block, rows, components)


def train_feature(options: FeatureEnsembleOptions) -> Path:
    """Train a feature-level ensemble into ``options.out`` (or continue it: ``options.resume``); returns the run folder."""
    out = Path(options.out)
    if not options.extractors:
        raise SynthgenError("--extractor: give at least one (two or more make an ensemble)")
    if options.block not in BLOCKS:
        raise SynthgenError(f"--block: expected one of {', '.join(BLOCKS)}, got {options.block!r}")
    if options.epochs < 1 or options.batch_size < 1 or not options.lr > 0 or not options.noise_std > 0:
        raise SynthgenError("--epochs/--batch-size/--lr/--noise-std: must be positive, "
                            f"got {options.epochs}, {options.batch_size}, {options.lr}, {options.noise_std}")
    device = resolve_device(options.device)
    normals = load_normal_images(options.image_size, dataset=options.dataset, root=options.root, category=options.category, shards=options.shards)
    draft = EnsembleConfig(tuple(options.extractors), options.block, 0.0, embed_dim=options.embed_dim, weights=options.weights,
                           image_size=tuple(options.image_size))
    nets = build_extractors(draft, device)
    check_extractors(nets, options.image_size)

    started = time.perf_counter()
    features, grid = ensemble_inputs(nets, normals, options.batch_size, device)
    channels = [f.shape[-1] for f in features]
    amount = default_components(options.block, channels) if options.components is None else options.components
    fitted = fit_block(options.block, features, amount, options.seed)
    config = EnsembleConfig(
        tuple(options.extractors), options.block, float(amount), embed_dim=options.embed_dim, weights=options.weights,
        image_size=tuple(options.image_size),
        grid=tuple(grid), channels=tuple(channels), pca_sizes=tuple(p.n_components for p in fitted.pcas),
        extractor_info=tuple(n.info() for n in nets), adaptor=options.adaptor,
    )
    training = {"epochs": options.epochs, "batch_size": options.batch_size, "lr": options.lr, "adaptor_lr": ADAPTOR_LR, "weight_decay": WEIGHT_DECAY,
                "noise_std": options.noise_std, "margin": MARGIN, "seed": options.seed, "device": device}
    last = start_run(out, METHOD, {**config.to_dict(), **training}, {"seed": options.seed, "data": normals.provenance}, resume=options.resume)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = FeatureEnsembleModel(config, nets, fitted).to(device)
    with torch.no_grad():
        ensembled = torch.stack([fitted(list(rows)) for rows in zip(*[f.unbind(0) for f in features])])
    checkpoint = read_epoch_checkpoint(last) if last else None
    epoch_log = EpochLog(out / LOG_DIR / METRICS_FILE, LOG_FIELDS, run_dir=out, checkpoint=checkpoint, progress=options.progress)
    _fit_discriminator(model, ensembled, training, options.seed, epoch_log, checkpoint)
    finish_plain_run(out, save_feature_model(out, model), options.epochs, started, {
        "explained_variance": [float(p.explained_variance_ratio.sum()) for p in fitted.pcas],
        "feature_scale": float(fitted.scale),  # the block's output is divided by it (unit mean variance)
    })
    return out


def _fit_discriminator(model: FeatureEnsembleModel, ensembled: torch.Tensor, training: dict, seed: int, epoch_log: EpochLog,
                       checkpoint: dict | None = None) -> None:
    """SimpleNet's discriminator training on (N, P, K) ensembled features, from ``checkpoint`` when
    resuming; ``epoch_log`` takes one row and a checkpoint per epoch."""
    device = next(model.discriminator.parameters()).device
    optimizers = [torch.optim.Adam(model.discriminator.parameters(), lr=training["lr"], weight_decay=training["weight_decay"])]
    adaptor_parameters = list(model.adaptor.parameters())
    if adaptor_parameters:
        optimizers.append(torch.optim.Adam(adaptor_parameters, lr=training["adaptor_lr"], weight_decay=training["weight_decay"]))
    noise = torch.Generator().manual_seed(seed)
    if checkpoint is not None:
        load_state_dict_checked(model.discriminator, checkpoint["discriminator"], "--resume", "the checkpoint's discriminator")
        load_state_dict_checked(model.adaptor, checkpoint["adaptor"], "--resume", "the checkpoint's adaptor")
        for optimizer, state in zip(optimizers, checkpoint["optimizers"]):
            optimizer.load_state_dict(state)
        noise.set_state(checkpoint["noise"])
    batch_size = training["batch_size"]
    for epoch in range(epoch_log.next_epoch, training["epochs"]):
        model.discriminator.train()
        model.adaptor.train()
        order = order_for_epoch(len(ensembled), seed, epoch)
        sums = dict.fromkeys(LOG_FIELDS[1:], 0.0)
        steps = 0
        for start in range(0, len(order), batch_size):
            rows = model.adaptor(ensembled[order[start:start + batch_size]].flatten(0, 1).to(device))
            fakes = gaussian_fakes(rows, noise, training["noise_std"])
            scores = model.discriminator(torch.cat((rows, fakes)))
            normal_scores, fake_scores = scores[: len(rows)], scores[len(rows):]
            loss = truncated_l1_loss(normal_scores, fake_scores, training["margin"])
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            sums["loss"] += loss.item()
            sums["p_true"] += (normal_scores.detach() >= training["margin"]).float().mean().item()
            sums["p_fake"] += (fake_scores.detach() < -training["margin"]).float().mean().item()
            steps += 1
        row = {"epoch": epoch + 1, **{k: round(v / steps, 6) for k, v in sums.items()}}
        epoch_log.end_epoch(row, {
            "discriminator": model.discriminator.state_dict(), "adaptor": model.adaptor.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in optimizers], "noise": noise.get_state(),
        })


def train_output(options: OutputEnsembleOptions) -> Path:
    """Calibrate the output-level ensemble of ``options.members`` (run folders) on normal training images."""
    out = Path(options.out)
    if len(options.members) < 2:
        raise SynthgenError("--member: an output-level ensemble needs at least two trained runs")
    device = resolve_device(options.device)
    models = [load_model(run, device) for run in options.members]
    sizes = {tuple(m.image_size) for m in models}
    if len(sizes) != 1:
        raise SynthgenError(f"--member: the runs take different image sizes ({', '.join(f'{h}x{w}' for h, w in sorted(sizes))})")
    image_size = sizes.pop()
    normals = load_normal_images(image_size, dataset=options.dataset, root=options.root, category=options.category, shards=options.shards)
    records = [member_record(Path(run)) for run in options.members]
    start_run(out, OUTPUT_METHOD, {"members": [r["run"] for r in records], "image_size": list(image_size), "combine": "mean of z-scores", "device": device},
              {"data": normals.provenance, "members": records}, resume=False)
    started = time.perf_counter()
    calibrations = [calibrate(m, (x.to(device) for x in normals.batches(options.batch_size))) for m in models]
    model_path = save_output_model(out, records, calibrations, image_size)
    finish_run(
        out,
        {
            "model": {"file": MODEL_FILE, "sha256": sha256_file(model_path)},
            "calibration": [c.__dict__ for c in calibrations],
            "train_seconds_this_session": round(time.perf_counter() - started, 1),
        },
        complete=True,
    )
    return out
