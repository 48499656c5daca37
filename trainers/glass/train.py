"""Train GLASS on a synthgen build and write a run folder (run.json, model.pt, logs/metrics.csv).

Data: the build's anomalous samples are GLASS's local anomaly synthesis (LAS), each paired with the
normal source image it was made from, which is the step's normal image; every distinct normal source
of the build defines the center c. Their backbone features are computed once and cached
(:mod:`trainers.shard_features`), so an epoch costs what the adaptor and the discriminator cost.

One step (``batch_size`` anomalous samples; trainers/glass/model.py has the values and their sources):
u = A(E(normal)), f = A(E(anomalous)), r_t from the normal points, g = GAS(u), f' = LAS(f), then
loss = BCE(D(u), 0) + BCE(D(g), 1) + focal(D(f') hardest half, mask), one backward pass for the adaptor
and the discriminator. An epoch walks the anomalous samples in an order that is a function of
(seed, epoch) and stops once more than ``limit`` samples were seen (the code's ``sample_num > limit``).

Model selection: the last epoch (the code keeps the epoch of the best *test* AUROC; real test images
never take part here). Resume: ``checkpoints/last.ckpt`` after every epoch holds both networks, both
optimisers, the noise generator and the log; ``--resume`` continues to the same model.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from synthgen.generator.errors import SynthgenError
from synthgen.generator.safe_load import load_state_dict_checked

from ..backbones import Backbone
from ..epoch_log import EpochLog, epoch_plan, finish_plain_run, order_for_epoch, read_epoch_checkpoint
from ..lightning_utils import LOG_DIR, resolve_device, start_run
from ..losses import two_class_focal_loss
from ..shard_features import ShardFeatures, build_provenance, extractor_params, shard_features
from .model import (
    DISTRIBUTIONS,
    HARD_MINING_QUANTILE,
    METHOD,
    NOISE_STD,
    RADIUS_QUANTILE,
    GLASSConfig,
    GLASSModel,
    global_anomalies,
    hardest,
    local_anomalies,
    normal_radius,
    save_model,
)
from .options import GLASSOptions

#: Official code: the discriminator learns at twice the adaptor's rate (options.LR); the adaptor's weight decay.
DISCRIMINATOR_LR_FACTOR = 2.0
ADAPTOR_WEIGHT_DECAY = 1e-5
#: The code's ``dsc_margin``: a probability below it counts as "normal" in the p_true / p_fake logs.
DECISION_THRESHOLD = 0.5
METRICS_FILE = "metrics.csv"
LOG_FIELDS = ("epoch", "loss", "bce", "focal", "p_true", "p_fake", "r_t")


def steps_per_epoch(samples: int, batch_size: int, limit: int) -> int:
    """Batches of an epoch: all samples, or fewer once more than ``limit`` samples were seen."""
    return min(math.ceil(samples / batch_size), limit // batch_size + 1)


@torch.no_grad()
def feature_centers(adaptor: torch.nn.Module, normals: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """c: the mean adapted feature of the normal images, position by position, (H_m * W_m, D)."""
    total = None
    for start in range(0, len(normals), chunk):
        rows = normals[start:start + chunk].float()
        adapted = adaptor(rows.flatten(0, 1).to(next(adaptor.parameters()).device)).view(*rows.shape[:2], -1)
        total = adapted.sum(dim=0) if total is None else total + adapted.sum(dim=0)
    return total / len(normals)


def _check_options(options: GLASSOptions) -> None:
    for option, value, low in (("--epochs", options.epochs, 1), ("--batch-size", options.batch_size, 1), ("--limit", options.limit, 1),
                               ("--ascent-steps", options.ascent_steps, 0)):
        if value < low:
            raise SynthgenError(f"{option}: must be at least {low}, got {value}")
    if not options.lr > 0:
        raise SynthgenError(f"--lr: must be positive, got {options.lr}")
    if options.distribution not in DISTRIBUTIONS:
        raise SynthgenError(f"--distribution: expected one of {', '.join(DISTRIBUTIONS)}, got {options.distribution!r}")


def train(options: GLASSOptions) -> Path:
    """Train one GLASS model on the build ``options.shards`` into the run folder ``options.out`` (or continue it)."""
    out = Path(options.out)
    _check_options(options)
    epoch_plan(1, options.epochs, options.steps)  # a bad --steps is an error before any work
    data_provenance = build_provenance(options.shards)  # a one-line error for a missing or unfinished build, before any work
    device = resolve_device(options.device)
    net = Backbone(options.backbone, list(options.layers), weights=options.weights, weights_dir=options.weights_dir, device=device)
    config = GLASSConfig(
        backbone=options.backbone, layers=tuple(options.layers), weights=str(options.weights) if options.weights is not None else None,
        weights_sha256=net.weights_info()["sha256"], patch_size=options.patch_size, embed_dim=options.embed_dim, hidden=options.hidden,
        image_size=tuple(options.image_size),
    )
    model = GLASSModel.initialised(config, net, options.seed).to(device)
    training = {
        "epochs": None if options.steps is not None else options.epochs, "steps": options.steps, "batch_size": options.batch_size, "limit": options.limit, "lr": options.lr,
        "discriminator_lr": options.lr * DISCRIMINATOR_LR_FACTOR,
        "adaptor_weight_decay": ADAPTOR_WEIGHT_DECAY, "noise_std": NOISE_STD, "ascent_steps": options.ascent_steps,
        "radius_quantile": RADIUS_QUANTILE, "hard_mining_quantile": HARD_MINING_QUANTILE, "distribution": options.distribution,
        "seed": options.seed, "device": device,
    }
    provenance = {"seed": options.seed, "data": data_provenance, "backbone": net.weights_info()}
    last = start_run(out, METHOD, {**config.to_dict(), **training}, provenance, resume=options.resume)
    checkpoint = read_epoch_checkpoint(last) if last else None

    started = time.perf_counter()
    data = shard_features(options.shards, model.extractor, extractor_params(config), config.image_size, batch_size=options.batch_size,
                          device=device, progress=options.progress)
    epoch_log = EpochLog(out / LOG_DIR / METRICS_FILE, LOG_FIELDS, run_dir=out, checkpoint=checkpoint, progress=options.progress)
    plan = epoch_plan(steps_per_epoch(len(data.anomalous), options.batch_size, options.limit), options.epochs, options.steps)
    _fit(model, data, training, options.seed, epoch_log, checkpoint, plan)
    finish_plain_run(out, save_model(out, model), len(plan), started, {"feature_grid": list(data.grid), "features": data.counts}, plan)
    return out


def _fit(model: GLASSModel, data: ShardFeatures, training: dict, seed: int, epoch_log: EpochLog, checkpoint: dict | None,
         plan: list[int]) -> None:
    device = next(model.adaptor.parameters()).device
    adaptor_opt = torch.optim.Adam(model.adaptor.parameters(), lr=training["lr"], weight_decay=training["adaptor_weight_decay"])
    discriminator_opt = torch.optim.AdamW(model.discriminator.parameters(), lr=training["discriminator_lr"])
    noise = torch.Generator().manual_seed(seed)
    if checkpoint is not None:
        # a checkpoint whose tensors do not fit the network is one line, not torch's RuntimeError
        load_state_dict_checked(model.adaptor, checkpoint.get("adaptor"), "--resume", "the checkpoint's adaptor")
        load_state_dict_checked(model.discriminator, checkpoint.get("discriminator"), "--resume", "the checkpoint's discriminator")
        adaptor_opt.load_state_dict(checkpoint["adaptor_opt"])
        discriminator_opt.load_state_dict(checkpoint["discriminator_opt"])
        noise.set_state(checkpoint["noise"])
    batch_size, distribution = training["batch_size"], training["distribution"]
    for epoch in range(epoch_log.next_epoch, len(plan)):
        steps = plan[epoch]
        centers = feature_centers(model.adaptor, data.normals)
        model.adaptor.train()
        model.discriminator.train()
        order = order_for_epoch(len(data.anomalous), seed, epoch)
        sums = dict.fromkeys(LOG_FIELDS[1:], 0.0)
        for step in range(steps):
            chosen = order[step * batch_size:(step + 1) * batch_size]
            masks = data.masks[chosen].flatten().to(device)
            normal = model.adaptor(data.normals[data.sources[chosen]].flatten(0, 1).float().to(device))
            fake = model.adaptor(data.anomalous[chosen].flatten(0, 1).float().to(device))
            center_rows = centers.repeat(len(chosen), 1)
            outside = masks == 0
            radius = normal_radius(torch.cat((center_rows[outside], center_rows)), torch.cat((fake[outside], normal)))

            gaussian = global_anomalies(model.discriminator, normal, center_rows, radius, noise, distribution, training["ascent_steps"])
            scores = model.discriminator(torch.cat((normal, gaussian)))
            normal_scores, gaussian_scores = scores[:len(normal)], scores[len(normal):]
            bce = F.binary_cross_entropy(normal_scores, torch.zeros_like(normal_scores)) + F.binary_cross_entropy(gaussian_scores, torch.ones_like(gaussian_scores))
            fake_scores = model.discriminator(local_anomalies(fake, masks, center_rows, radius, distribution))
            hard_scores, hard_masks = hardest(fake_scores, masks)
            focal = two_class_focal_loss(1.0 - hard_scores, hard_scores, hard_masks)
            loss = bce + focal
            adaptor_opt.zero_grad()
            discriminator_opt.zero_grad()
            loss.backward()
            adaptor_opt.step()
            discriminator_opt.step()

            with torch.no_grad():  # the code's p_true / p_fake: normal and anomalous points classified right
                normal_points = torch.cat((normal_scores, fake_scores[outside]))
                anomalous_points = torch.cat((gaussian_scores, fake_scores[~outside]))
                sums["p_true"] += float((normal_points < DECISION_THRESHOLD).float().mean())
                sums["p_fake"] += float((anomalous_points >= DECISION_THRESHOLD).float().mean())
            sums["loss"] += loss.item()
            sums["bce"] += bce.item()
            sums["focal"] += focal.item()
            sums["r_t"] += float(radius)
        row = {"epoch": epoch + 1, **{k: round(v / steps, 6) for k, v in sums.items()}}
        epoch_log.end_epoch(row, {
            "adaptor": model.adaptor.state_dict(), "discriminator": model.discriminator.state_dict(),
            "adaptor_opt": adaptor_opt.state_dict(), "discriminator_opt": discriminator_opt.state_dict(), "noise": noise.get_state(),
        })
