"""The ``synthgen`` command line.

Every command turns a user's mistake (a missing file, a wrong layout, an unknown name) into one line
on stderr and exit status 2; an interrupted command exits 130 and says how to resume. Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .errors import SynthgenError


def _split_names(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--strategy a,b --strategy c`` -> (a, b, c)."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synthgen")
def cli() -> None:
    """Offline synthetic-anomaly datasets: sharded HDF5 with manifests."""


@cli.command()
@click.option("--dataset", default="demo", show_default=True, help="Dataset layout (see `synthgen datasets`).")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root (the folder holding CATEGORY/). Not needed for demo.")
@click.option("--category", help="Category to read, e.g. juice_bottle. Default for demo: parts_box.")
@click.option("--strategy", "strategies", multiple=True, required=True,
              help="Strategy name(s), repeatable or comma-separated; 'caf' = the framework's per-class selection.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder. Default: out/DATASET-CATEGORY.")
@click.option("--num-samples", type=int, help="Samples to make. Default: one per (source image, strategy).")
@click.option("--image-size", default="256", show_default=True, help="N or HxW; every sample is resized to it.")
@click.option("--seed", default=0, show_default=True, help="Global seed; fixes every sample.")
@click.option("--textures", help="Anomaly texture source: a DTD-style folder, 'normals' (in-distribution) or 'perlin'.")
@click.option("--set", "settings", multiple=True, metavar="STRATEGY.KEY=VALUE", help="Strategy option, repeatable.")
@click.option("--caf-table", type=click.Path(path_type=Path), help="Per-class selection table overriding the shipped one.")
@click.option("--samples-per-shard", default=256, show_default=True)
@click.option("--batch-size", default=32, show_default=True, help="Samples rendered together on the device.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", default=1, show_default=True, help="Processes building shards in parallel (CPU).")
@click.option("--num-shards", default=1, show_default=True, help="Job-array size: split the shards over this many jobs.")
@click.option("--shard-index", default=0, show_default=True, help="This job's slice, 0 <= I < --num-shards.")
@click.option("--compress-images", is_flag=True, help="gzip the image datasets too (smaller, slower to read).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build(dataset, root, category, strategies, out, num_samples, image_size, seed, textures, settings, caf_table,
          samples_per_shard, batch_size, device, workers, num_shards, shard_index, compress_images, quiet):
    """Synthesize anomalies for one category and write sharded HDF5 + manifest (resumable)."""
    from .config import BuildConfig, parse_image_size, parse_option
    from .pipeline import build as run_build

    if category is None:
        if dataset != "demo":
            raise SynthgenError("--category: required for this dataset (e.g. --category juice_bottle)")
        category = "parts_box"
    texture_source, texture_root = None, None
    if textures in ("normals", "perlin"):
        texture_source = textures
    elif textures:
        texture_source, texture_root = "dtd", str(Path(textures))
    options: dict = {}
    for text in settings:
        name, key, value = parse_option(text)
        options.setdefault(name, {})[key] = value
    config = BuildConfig(
        dataset=dataset,
        category=category,
        root=str(root) if root else None,
        strategies=_split_names(strategies),
        num_samples=num_samples,
        image_size=parse_image_size(image_size),
        seed=seed,
        samples_per_shard=samples_per_shard,
        batch_size=batch_size,
        device=_resolve_device(device),
        texture_source=texture_source,
        texture_root=texture_root,
        options=options,
        caf_table=str(caf_table) if caf_table else None,
        compress_images=compress_images,
    )
    out = out or Path("out") / f"{dataset}-{category}"
    report = run_build(config, out, workers=workers, num_shards=num_shards, shard_index=shard_index, progress=not quiet)
    click.echo(f"built {len(report.built)} shard(s), {len(report.skipped)} already complete, into {report.out_dir}")
    if report.manifest_written:
        click.echo(f"manifest: {report.out_dir / 'manifest.json'}")
    else:
        click.echo("manifest not written yet: other job-array slices still have shards to build")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
def verify(build_dir):
    """Recompute every shard's sha256; report damaged, missing or unlisted shards (exit 1 if any)."""
    from .shards.verify import verify_build

    report = verify_build(build_dir)
    for line in report.problems:
        click.echo(line)
    click.echo(f"{len(report.ok)} shard(s) ok, {len(report.problems)} problem(s)")
    sys.exit(0 if report.passed else 1)


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--sheet", type=click.Path(path_type=Path), help="Contact sheet PNG. Default: BUILD_DIR/contact_sheet.png.")
@click.option("--per-strategy", default=4, show_default=True, help="Samples per strategy on the sheet.")
def inspect(build_dir, sheet, per_strategy):
    """Print counts per strategy and write a contact sheet (image | mask overlay)."""
    from .shards.inspect import summary_table, write_contact_sheet

    click.echo(summary_table(build_dir))
    path = write_contact_sheet(build_dir, sheet or Path(build_dir) / "contact_sheet.png", per_strategy=per_strategy)
    click.echo(f"contact sheet: {path}")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="mvtec", show_default=True, help="Output layout.")
@click.option("--to", "to", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--quiet", is_flag=True)
def export(build_dir, fmt, to, overwrite, quiet):
    """Write a build as the MVTec AD folder layout (readable by anomalib's Folder datamodule)."""
    from .shards.export import export_build

    path = export_build(build_dir, to, fmt=fmt, overwrite=overwrite, progress=not quiet)
    click.echo(f"exported to {path}")


@cli.command()
def strategies():
    """List the synthesis strategies."""
    from .strategies import get_strategy, strategy_names

    for name in strategy_names():
        click.echo(f"{name:<20} {get_strategy(name).summary}")
    click.echo(f"{'caf':<20} the augmentation framework's per-class selection of the above")


@cli.command()
def datasets():
    """List the dataset layouts that --dataset accepts."""
    from .datasets import reader_names

    for name in reader_names():
        click.echo(name)


@cli.command("demo-data")
@click.option("--to", "to", type=click.Path(path_type=Path), required=True, help="Folder to render the demo dataset into.")
@click.option("--seed", default=0, show_default=True)
def demo_data(to, seed):
    """Render the embedded demo dataset (MVTec LOCO layout) into a folder."""
    from .datasets.demo import render_demo

    click.echo(f"demo dataset: {render_demo(to, seed=seed)}")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="synthgen", standalone_mode=False)
    except SynthgenError as e:
        click.echo(f"synthgen: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("synthgen: interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("synthgen: interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
