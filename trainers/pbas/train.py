"""Train PBAS on normal images and write a run folder (run.json, model.pt, logs/metrics.csv).

Training (Sec. III and IV-B, official code for what the paper leaves open):

1. E_phi is frozen and PBAS uses no augmentation, so the patch features t = E_phi(x) of every
   training image are computed once and kept (N, H_m * W_m, D) on the CPU.
2. Centers: projected with the freshly initialised, frozen projector, then :func:`initial_centers`.
3. Each step takes ``batch_size`` images: u = P(t), L_c (Eq. 6), z by AFS (Eq. 7) or noise, and
   loss = L_c + L_n + L_a, one backward pass for both networks (the official code; Eq. 10's two
   minimisations share theta). Regularisation, as the official code applies it: gamma = 1e-5 is
   Adam's weight decay (an L2 term in the gradient) on the projector, delta = 1e-2 is AdamW's
   decoupled weight decay on the discriminator (AdamW's default, which the official code keeps).
   Learning rates 1e-4 (projector) and 2e-4 (discriminator), batch size 8, 400 epochs (Sec. IV-B).
   With ``components="abl"`` only L_c trains the projector and there is no discriminator.

With ``anomaly_shards`` (``--anomaly-shards BUILD``; default off, which is the paper's PBAS) each step
also takes ``batch_size`` anomalous samples of a synthgen build (an order that is a function of (seed,
epoch), cycled), projects their cached patch features (trainers/shard_features.py) and adds
BCE(D(P(t_a)), mask on the feature grid) to the loss; D sees them in the same forward pass as u and z.

Model selection: the last epoch. (The official code keeps the epoch with the best *test* AUROC;
real test images never take part in training or selection here.)

Resume: after every epoch ``checkpoints/last.ckpt`` holds the centers, both networks, both
optimisers, the noise generator and the log so far; ``--resume`` continues from it and gives the
same model as an uninterrupted run (the epoch order is a function of (seed, epoch)).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synthgen.generator.errors import SynthgenError
from synthgen.generator.safe_load import load_state_dict_checked

from ..backbones import Backbone
from ..epoch_log import EpochLog, epoch_plan, finish_plain_run, order_for_epoch, read_epoch_checkpoint
from ..features import NormalImages, PatchFeatureExtractor, load_normal_images
from ..lightning_utils import LOG_DIR, resolve_device, start_run
from ..shard_features import ShardFeatures, build_provenance, extractor_params, shard_features
from .model import (
    CENTER_METHODS,
    COMPONENTS,
    METHOD,
    NOISE_STD,
    SYNTHESES,
    PBASConfig,
    PBASModel,
    adaptive_anomalies,
    boundary_loss,
    center_terms,
    initial_centers,
    noisy_anomalies,
    save_model,
)
from .options import PBASOptions

#: Sec. IV-B: gamma and delta of Eq. 10.
GAMMA = 1e-5
DELTA = 1e-2
#: The official code gives the discriminator twice the projector's learning rate (options.LR).
DISCRIMINATOR_LR_FACTOR = 2.0
#: Official code: a probability below 0.5 counts as "normal" in its p_true / p_fake logs.
DECISION_THRESHOLD = 0.5
METRICS_FILE = "metrics.csv"
LOG_FIELDS = ("epoch", "center_loss", "normal_bce", "anomaly_bce", "p_true", "p_fake")
#: Logged as well when the discriminator also sees a build's anomalous samples.
SHARD_LOG_FIELDS = ("shard_bce",)
#: Seed stream of the anomalous samples' order (the images' order uses stream 1).
_SHARD_ORDER_STREAM = 2


@torch.no_grad()
def extract_features(extractor: PatchFeatureExtractor, normals: NormalImages, batch_size: int, device: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """t = E_phi(x) for every training image: (N, H_m * W_m, D) on the CPU, and the grid."""
    chunks, grid = [], None
    for images in normals.batches(batch_size):
        features, grid = extractor(images.to(device))
        chunks.append(features.cpu())
    return torch.cat(chunks), grid


def _check_options(options: PBASOptions) -> None:
    if options.epochs < 1:
        raise SynthgenError(f"--epochs: must be at least 1, got {options.epochs}")
    if options.batch_size < 1:
        raise SynthgenError(f"--batch-size: must be at least 1, got {options.batch_size}")
    if not options.lr > 0:
        raise SynthgenError(f"--lr: must be positive, got {options.lr}")
    if not options.alpha > 0:
        raise SynthgenError(f"--alpha: must be positive, got {options.alpha}")
    for option, value, allowed in (("--center", options.center, CENTER_METHODS), ("--synthesis", options.synthesis, SYNTHESES),
                                   ("--components", options.components, COMPONENTS)):
        if value not in allowed:
            raise SynthgenError(f"{option}: expected one of {', '.join(allowed)}, got {value!r}")


def train(options: PBASOptions) -> Path:
    """Train one PBAS model into the run folder ``options.out`` (or continue it: ``options.resume``); returns it."""
    out = Path(options.out)
    _check_options(options)
    epoch_plan(1, options.epochs, options.steps)  # a bad --steps is an error before any work
    device = resolve_device(options.device)
    normals = load_normal_images(options.image_size, dataset=options.dataset, root=options.root, category=options.category,
                                 shards=options.shards)
    net = Backbone(options.backbone, list(options.layers), weights=options.weights, weights_dir=options.weights_dir, device=device)
    config = PBASConfig(
        backbone=options.backbone,
        layers=tuple(options.layers),
        weights=str(options.weights) if options.weights is not None else None,  # None: resolved by name again at load time
        weights_sha256=net.weights_info()["sha256"],
        patch_size=options.patch_size,
        embed_dim=options.embed_dim,
        image_size=tuple(options.image_size),
        components=options.components,
    )
    model = PBASModel.initialised(config, net, options.seed).to(device)
    training = {
        "epochs": None if options.steps is not None else options.epochs, "steps": options.steps, "batch_size": options.batch_size, "lr": options.lr,
        "discriminator_lr": options.lr * DISCRIMINATOR_LR_FACTOR,
        "gamma": GAMMA, "delta": DELTA, "alpha": options.alpha, "center": options.center, "synthesis": options.synthesis,
        "noise_std": NOISE_STD if options.synthesis == "noise" else None, "seed": options.seed, "device": device,
    }
    provenance = {"seed": options.seed, "data": normals.provenance, "backbone": net.weights_info()}
    if options.anomaly_shards is not None:
        if options.components != "full":
            raise SynthgenError("--anomaly-shards: needs the discriminator (--components full)")
        training["anomaly_shards"] = True
        provenance["anomaly_shards"] = build_provenance(options.anomaly_shards)
    last = start_run(out, METHOD, {**config.to_dict(), **training}, provenance, resume=options.resume)
    checkpoint = read_epoch_checkpoint(last) if last else None

    started = time.perf_counter()
    features, grid = extract_features(model.extractor, normals, options.batch_size, device)
    if checkpoint is None:
        with torch.no_grad():
            projected = model.projector(features.to(device).flatten(0, 1)).view(*features.shape[:2], -1)
            model.centers = initial_centers(projected, options.batch_size, options.center)
        del projected
    else:
        model.centers = checkpoint["centers"].to(device)

    anomalies, extras = None, {"feature_grid": list(grid)}
    if options.anomaly_shards is not None:
        anomalies = shard_features(options.anomaly_shards, model.extractor, extractor_params(config), config.image_size,
                                   batch_size=options.batch_size, device=device, progress=options.progress)
        if anomalies.grid != tuple(grid):
            raise SynthgenError(f"--anomaly-shards: feature grid {anomalies.grid} differs from the training images' {tuple(grid)}")
        extras["anomaly_features"] = anomalies.counts
    fields = LOG_FIELDS + (SHARD_LOG_FIELDS if anomalies is not None else ())
    epoch_log = EpochLog(out / LOG_DIR / METRICS_FILE, fields, run_dir=out, checkpoint=checkpoint, progress=options.progress)
    plan = epoch_plan(-(-len(features) // options.batch_size), options.epochs, options.steps)
    _fit(model, features, training, options.seed, epoch_log, checkpoint, anomalies, plan)
    finish_plain_run(out, save_model(out, model), len(plan), started, extras, plan)
    return out


def _fit(model: PBASModel, features: torch.Tensor, training: dict, seed: int, epoch_log: EpochLog, checkpoint: dict | None = None,
         anomalies: ShardFeatures | None = None, plan: list[int] | None = None) -> None:
    """The epochs of joint ABL + AFS + RBO training (or ABL alone), from ``checkpoint`` when resuming;
    ``epoch_log`` takes one row and a checkpoint per epoch; ``anomalies``: a build's anomalous samples
    the discriminator also learns from (their masks on the feature grid as targets)."""
    device = model.centers.device
    full = model.config.components == "full"
    projector_opt = torch.optim.Adam(model.projector.parameters(), lr=training["lr"], weight_decay=training["gamma"])
    discriminator_opt = torch.optim.AdamW(model.discriminator.parameters(), lr=training["discriminator_lr"], weight_decay=training["delta"])
    noise = torch.Generator().manual_seed(seed)
    if checkpoint is not None:
        load_state_dict_checked(model.projector, checkpoint["projector"], "--resume", "the checkpoint's projector")
        load_state_dict_checked(model.discriminator, checkpoint["discriminator"], "--resume", "the checkpoint's discriminator")
        projector_opt.load_state_dict(checkpoint["projector_opt"])
        discriminator_opt.load_state_dict(checkpoint["discriminator_opt"])
        noise.set_state(checkpoint["noise"])
    batch_size = training["batch_size"]
    plan = plan if plan is not None else epoch_plan(-(-len(features) // batch_size), training["epochs"], None)
    for epoch in range(epoch_log.next_epoch, len(plan)):
        model.projector.train()
        model.discriminator.train()
        order = order_for_epoch(len(features), seed, epoch)
        sums = dict.fromkeys(epoch_log.fields[1:], 0.0)
        steps = 0
        if anomalies is not None:  # enough of the anomalous samples' order for every step, cycled
            shard_order = np.random.default_rng([seed, _SHARD_ORDER_STREAM, epoch]).permutation(len(anomalies.anomalous))
            shard_order = np.resize(shard_order, -(-len(order) // batch_size) * batch_size)
        for start in range(0, plan[epoch] * batch_size, batch_size):
            rows = features[order[start:start + batch_size]].flatten(0, 1).to(device)
            u = model.projector(rows)
            terms = center_terms(u, model.centers)
            loss = terms.center_loss
            projector_opt.zero_grad()
            discriminator_opt.zero_grad()
            if full:
                z = adaptive_anomalies(u, terms, training["alpha"]) if training["synthesis"] == "adaptive" else noisy_anomalies(u, noise)
                rows_in = [u, z]
                if anomalies is not None:
                    chosen = shard_order[start:start + batch_size]
                    rows_in.append(model.projector(anomalies.anomalous[chosen].flatten(0, 1).float().to(device)))
                scores = model.discriminator(torch.cat(rows_in))
                normal_scores, anomaly_scores = scores[: len(u)], scores[len(u):2 * len(u)]
                normal_bce, anomaly_bce = boundary_loss(normal_scores, anomaly_scores)
                loss = loss + normal_bce + anomaly_bce
                if anomalies is not None:
                    shard_bce = F.binary_cross_entropy(scores[2 * len(u):], anomalies.masks[chosen].flatten().to(device))
                    loss = loss + shard_bce
                    sums["shard_bce"] += shard_bce.item()
                sums["normal_bce"] += normal_bce.item()
                sums["anomaly_bce"] += anomaly_bce.item()
                sums["p_true"] += float((normal_scores < DECISION_THRESHOLD).float().mean())
                sums["p_fake"] += float((anomaly_scores >= DECISION_THRESHOLD).float().mean())
            loss.backward()
            projector_opt.step()
            if full:
                discriminator_opt.step()
            sums["center_loss"] += terms.center_loss.item()
            steps += 1
        row = {"epoch": epoch + 1, **{k: round(v / steps, 6) for k, v in sums.items()}}
        epoch_log.end_epoch(row, {
            "centers": model.centers.cpu(), "projector": model.projector.state_dict(),
            "discriminator": model.discriminator.state_dict(), "projector_opt": projector_opt.state_dict(),
            "discriminator_opt": discriminator_opt.state_dict(), "noise": noise.get_state(),
        })
