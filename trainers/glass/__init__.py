"""GLASS: global (gradient-ascent) and local anomaly synthesis for a patch discriminator (Chen et al., ECCV 2024).

``synthgen-train glass --shards BUILD --out RUN`` trains on a synthgen build: its anomalous samples and
their masks are GLASS's local anomaly synthesis, so any synthgen strategy (draem, the paper's own; cutpaste,
caf, logical ...) becomes it; the build's normal source images train the normal side. Importing this
package registers the loader, so ``synthgen-eval RUN`` can evaluate the model. Networks, synthesis and
losses: :mod:`.model`; the training loop: :mod:`.train`; the cached shard features: trainers/shard_features.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..pbas import parse_layers
from ..presets import preset_option, preset_values, steps_option
from ..pbas.features import EMBED_DIM, LAYERS, PATCH_SIZE
from .model import ASCENT_STEPS, DISCRIMINATOR_HIDDEN, DISTRIBUTIONS, IMAGE_SIZE, METHOD, load  # noqa: F401  (registers the loader)
from .train import BATCH_SIZE, EPOCHS, LIMIT, LR

__all__ = ["METHOD", "command", "load"]


@click.command(METHOD)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--shards", required=True, type=click.Path(path_type=Path), help="A synthgen build: its anomalous samples (with masks) and normal sources.")
@click.option("--backbone", default="wide_resnet50_2", show_default=True, help="wide_resnet50_2 (the paper), resnet18 or efficientnet_lite0.")
@click.option("--layers", default=",".join(LAYERS), show_default=True, help="Backbone layers, comma-separated (the paper: levels 2 and 3).")
@click.option("--weights", help="Backbone checkpoint file (default: resolved by name), or 'none' for random weights.")
@click.option("--weights-dir", type=click.Path(path_type=Path), help="Folder to look for backbone checkpoints in.")
@click.option("--embed-dim", default=EMBED_DIM, show_default=True, help="Patch feature dimension D (official: 1536).")
@click.option("--hidden", default=DISCRIMINATOR_HIDDEN, show_default=True, help="Discriminator hidden width (official: 1024).")
@click.option("--patch-size", default=PATCH_SIZE, show_default=True, help="Neighbourhood size p (official: 3).")
@click.option("--image-size", default=str(IMAGE_SIZE), show_default=True, help="N or HxW the images are resized to (official: 288).")
@click.option("--epochs", default=EPOCHS, show_default=True, help="Training epochs (official: 640).")
@click.option("--batch-size", default=BATCH_SIZE, show_default=True, help="Anomalous samples per step (official: 8).")
@click.option("--limit", default=LIMIT, show_default=True, help="An epoch ends once more than this many samples were seen (official: 392).")
@click.option("--lr", default=LR, show_default=True, help="Adaptor learning rate; the discriminator gets twice this.")
@click.option("--ascent-steps", default=ASCENT_STEPS, show_default=True, help="Gradient ascent steps of the global synthesis (official: 20).")
@click.option("--distribution", type=click.Choice(DISTRIBUTIONS), default="hypersphere", show_default=True,
              help="Band of the truncated projection: around the center (hypersphere) or the normal feature (manifold).")
@click.option("--seed", default=0, show_default=True, help="Seeds initialisation, data order and noise.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch (same options).")
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines.")
@steps_option
@preset_option
@click.pass_context
def command(ctx, out, shards, backbone, layers, weights, weights_dir, embed_dim, hidden, patch_size, image_size, epochs, batch_size,
            limit, lr, ascent_steps, distribution, seed, device, resume, quiet, steps, preset):
    """Train GLASS (global + local anomaly synthesis) with a synthgen build as its local synthesis.

    The paper's networks take about 38 s per step on a 2-core CPU: --preset cpu (EfficientNet-Lite0,
    width 256, 5 ascent steps) is a much smaller model for CPUs; --steps N fixes the budget for any build."""
    from synthgen.generator.config import parse_image_size

    from .train import train

    chosen = preset_values(preset, {"backbone": backbone, "embed_dim": embed_dim, "hidden": hidden, "ascent_steps": ascent_steps}, ctx)
    backbone, embed_dim, hidden, ascent_steps = chosen["backbone"], chosen["embed_dim"], chosen["hidden"], chosen["ascent_steps"]

    run = train(
        out, shards=shards, backbone=backbone, layers=parse_layers(layers), weights=weights, weights_dir=weights_dir,
        patch_size=patch_size, embed_dim=embed_dim, hidden=hidden, image_size=parse_image_size(image_size), epochs=epochs,
        steps=steps, batch_size=batch_size, limit=limit, lr=lr, ascent_steps=ascent_steps, distribution=distribution, seed=seed,
        device=device, resume=resume, progress=not quiet,
    )
    click.echo(f"run folder: {run} (model.pt, run.json, logs/)")
