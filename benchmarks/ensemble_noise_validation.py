"""Choose the feature-level ensemble's noise std on synthetic validation data (never on a test set).

The discriminator of trainers/ensemble is trained, as ``synthgen-train ensemble feature`` trains it,
on the ensembled features of a category's normal training images, once per candidate noise std.
Each is scored on a synthgen build of synthetic anomalies made from those same training images
(e.g. ``synthgen build ... --strategy draem,cutpaste``): the patch AUROC of -D between patches
the anomaly covers (more than half) and patches it does not touch, on the build's anomalous samples.
``--unscaled`` adds SimpleNet's setting for comparison: std 0.015 on the PCA output before scaling.

    python benchmarks/ensemble_noise_validation.py --dataset mvtec_ad --root DATA --category bottle \\
        --extractor efficientnet_lite0:layer3+layer4 --extractor pbas:RUN --validation BUILD \\
        --noise-std 0.1,0.2,0.3,0.5,1 --unscaled

Prints one JSON line per setting: first/last 50-step mean loss (chance is 1.0) and the patch AUROC.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from synthgen.generator.shards.reader import ShardDataset
from synthgen.trainers.ensemble.model import EnsembleConfig, build_extractors, map_rows, resize_to_grid
from synthgen.trainers.ensemble.train import LOG_FIELDS, _fit_discriminator, ensemble_inputs, fit_block
from synthgen.trainers.epoch_log import EpochLog
from synthgen.trainers.feature_heads import MLPDiscriminator
from synthgen.trainers.features import load_normal_images


@torch.no_grad()
def validation_rows(nets, build: Path, grid, batch_size: int):
    """Per-extractor feature rows (N, P, C_k) of the build's anomalous samples and their patch mask shares (N, P)."""
    data = ShardDataset(build)  # image (3, H, W) float in [0, 1], mask (1, H, W) in {0, 1}
    samples = [s for s in (data[i] for i in range(len(data))) if s["label"] == 1]
    images = torch.stack([s["image"] for s in samples])
    masks = torch.stack([s["mask"] for s in samples])
    rows = [[] for _ in nets]
    for start in range(0, len(images), batch_size):
        maps = [net(images[start:start + batch_size]) for net in nets]
        for store, m in zip(rows, resize_to_grid(maps, grid)):
            store.append(map_rows(m).view(m.shape[0], grid[0] * grid[1], -1))
    return [torch.cat(r) for r in rows], F.adaptive_avg_pool2d(masks, grid).flatten(1)


def patch_auroc(disc, ensembled: torch.Tensor, shares: torch.Tensor) -> float:
    with torch.no_grad():
        scores = -disc.eval()(ensembled.flatten(0, 1)).view(shares.shape)
    keep = (shares > 0.5) | (shares == 0)
    return float(roc_auc_score((shares[keep] > 0.5).numpy(), scores[keep].numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument("--extractor", action="append", required=True)
    parser.add_argument("--validation", required=True, type=Path, help="A synthgen build of anomalies made from the training images.")
    parser.add_argument("--block", default="global")
    parser.add_argument("--embed-dim", type=int, default=384)
    parser.add_argument("--components", type=float, default=384)
    parser.add_argument("--noise-std", default="0.1,0.2,0.3,0.5,1")
    parser.add_argument("--unscaled", action="store_true", help="Also SimpleNet's std 0.015 on the unscaled PCA output.")
    parser.add_argument("--epochs", type=int, default=160, help="Discriminator epochs (steps = epochs x images / 8; the trainer: 160).")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    normals = load_normal_images((256, 256), dataset=args.dataset, root=args.root, category=args.category)
    nets = build_extractors(EnsembleConfig(tuple(args.extractor), args.block, 0.0, embed_dim=args.embed_dim), "cpu")
    features, grid = ensemble_inputs(nets, normals, 8, "cpu")
    block = fit_block(args.block, features, args.components, seed=0)
    ensembled = torch.stack([block(list(rows)) for rows in zip(*[f.unbind(0) for f in features])])
    val_rows, shares = validation_rows(nets, args.validation, grid, 8)
    val = torch.stack([block(list(rows)) for rows in zip(*[f.unbind(0) for f in val_rows])])

    settings = [(float(s), 1.0) for s in args.noise_std.split(",")]
    if args.unscaled:
        settings.append((0.015, float(block.scale)))
    for noise_std, scale in settings:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = SimpleNamespace(discriminator=MLPDiscriminator(ensembled.shape[-1], sigmoid=False), adaptor=torch.nn.Identity())
        training = {"epochs": args.epochs, "batch_size": 8, "lr": 2e-4, "weight_decay": 1e-5, "noise_std": noise_std, "margin": 0.5}
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            _fit_discriminator(model, ensembled * scale, training, seed=0, epoch_log=EpochLog(Path(tmp) / "log.csv", LOG_FIELDS))
            loss = np.genfromtxt(Path(tmp) / "log.csv", delimiter=",", names=True)["loss"]
        print(json.dumps({
            "category": args.category, "noise_std": noise_std, "features": "unscaled PCA" if scale != 1.0 else "scaled",
            "loss_first": round(float(loss[0]), 3), "loss_last": round(float(loss[-1]), 3),
            "val_patch_auroc": round(patch_auroc(model.discriminator, val * scale, shares), 3),
            "seconds": round(time.perf_counter() - started, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
