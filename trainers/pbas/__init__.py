"""PBAS: progressive boundary guided anomaly synthesis in feature space (Chen et al.).

``synthgen-train pbas --dataset mvtec_ad --root ROOT --category bottle --out RUN`` trains on the
normal training images of a dataset (PBAS needs no shards); ``--shards BUILD`` trains on the normal
source images of a synthgen build instead. Importing this package registers the loader, so
``synthgen-eval RUN`` can evaluate the model. Networks, centers and losses: :mod:`.model`; the
patch features, score maps and normal-image loading shared with the ensemble: :mod:`.features`;
the training loop: :mod:`.train`.
"""

from __future__ import annotations

from pathlib import Path

import click

from .features import EMBED_DIM, LAYERS, PATCH_SIZE
from .model import ALPHA, CENTER_METHODS, COMPONENTS, METHOD, SYNTHESES, load  # noqa: F401  (registers the loader)
from ..presets import preset_option, preset_values, steps_option

__all__ = ["METHOD", "command", "load"]


def parse_layers(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@click.command(METHOD)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--dataset", help="Dataset layout of the normal training images (mvtec_ad, mvtec_loco, visa, ...).")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root (the folder holding CATEGORY/).")
@click.option("--category", help="Category, e.g. bottle.")
@click.option("--shards", type=click.Path(path_type=Path), help="Instead of --dataset: a synthgen build whose normal source images train PBAS.")
@click.option("--anomaly-shards", type=click.Path(path_type=Path),
              help="A synthgen build whose anomalous samples the discriminator also sees, labelled by their masks (default: none, the paper's PBAS).")
@click.option("--backbone", default="wide_resnet50_2", show_default=True, help="wide_resnet50_2 (the paper), resnet18 or efficientnet_lite0.")
@click.option("--layers", default=",".join(LAYERS), show_default=True, help="Backbone layers, comma-separated (the paper: levels 2 and 3).")
@click.option("--weights", help="Backbone checkpoint file (default: resolved by name), or 'none' for random weights.")
@click.option("--weights-dir", type=click.Path(path_type=Path), help="Folder to look for backbone checkpoints in.")
@click.option("--embed-dim", default=EMBED_DIM, show_default=True, help="Patch feature dimension D (official: 1536).")
@click.option("--patch-size", default=PATCH_SIZE, show_default=True, help="Neighbourhood size p (the paper: 3).")
@click.option("--image-size", default="256", show_default=True, help="N or HxW the images are resized to (the paper: 256).")
@click.option("--epochs", default=400, show_default=True, help="Training epochs (the paper: 400).")
@click.option("--batch-size", default=8, show_default=True, help="Images per step (the paper: 8).")
@click.option("--lr", default=1e-4, show_default=True, help="Projector learning rate; the discriminator gets twice this.")
@click.option("--alpha", default=ALPHA, show_default=True, help="Anomaly degree alpha of Eq. 7.")
@click.option("--center", type=click.Choice(CENTER_METHODS), default="alignment", show_default=True,
              help="Center initialisation (Table VI): alignment (Algorithm 1), average, iterative (EMA), clustering (k-means).")
@click.option("--synthesis", type=click.Choice(SYNTHESES), default="adaptive", show_default=True,
              help="Anomaly synthesis (Table V): adaptive (Eq. 7) or noise (Gaussian, std 0.015).")
@click.option("--components", type=click.Choice(COMPONENTS), default="full", show_default=True,
              help="Table V: full (ABL + AFS + RBO) or abl (center loss only, scored by distance to the nearest center).")
@click.option("--seed", default=0, show_default=True, help="Seeds initialisation, data order and noise.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch (same options).")
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines.")
@steps_option
@preset_option
@click.pass_context
def command(ctx, out, dataset, root, category, shards, anomaly_shards, backbone, layers, weights, weights_dir, embed_dim, patch_size, image_size,
            epochs, batch_size, lr, alpha, center, synthesis, components, seed, device, resume, quiet, steps, preset):
    """Train PBAS (ABL + AFS + RBO) on normal images; no shards needed.

    The paper's networks take about 3.2 s per step on a 2-core CPU: --preset cpu (EfficientNet-Lite0,
    width 256) is a much smaller model for CPUs; --steps N fixes the budget in optimizer steps."""
    from synthgen.generator.config import parse_image_size

    from .train import train

    chosen = preset_values(preset, {"backbone": backbone, "embed_dim": embed_dim}, ctx)
    backbone, embed_dim = chosen["backbone"], chosen["embed_dim"]

    run = train(
        out,
        dataset=dataset,
        root=root,
        category=category,
        shards=shards,
        anomaly_shards=anomaly_shards,
        backbone=backbone,
        layers=parse_layers(layers),
        weights=weights,
        weights_dir=weights_dir,
        patch_size=patch_size,
        embed_dim=embed_dim,
        image_size=parse_image_size(image_size),
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        alpha=alpha,
        center=center,
        synthesis=synthesis,
        components=components,
        seed=seed,
        device=device,
        resume=resume,
        progress=not quiet,
    )
    click.echo(f"run folder: {run} (model.pt, run.json, logs/)")
