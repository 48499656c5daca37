"""The ``synthgen`` command line.

Every command turns a user's mistake (a missing file, a wrong layout, an unknown name) into one line
on stderr and exit status 2; an interrupted command exits 130 and says how to resume. Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from collections.abc import Callable

import click

from synthgen import api  # the commands parse options and call the public API

from . import __version__
from .errors import SynthgenError
from .models.renderers import DEFAULT_RENDERER, RENDERERS, get_renderer

#: ``--renderer`` of build and train-e2i: the renderer table's names, each with what it does
_RENDERER_HELP = "; ".join(f"{r.name}: {r.summary}" for r in RENDERERS.values())

#: what --image-size says when it is left out (synthgen.api.choose_image_size)
IMAGE_SIZE_HELP = ("N or HxW: every sample is resized to it. Default: the category's aspect ratio, short side 256 "
                   "(sides multiples of 16; the choice is printed unless --quiet).")


def _map_options(command):
    """Options of the precompute stage (edge and region maps), shared by `build` and `precompute`."""
    options = [
        click.option("--edge-model", default="pidinet", show_default=True,
                     help="PiDiNet weights: a registered name (see `synthgen weights`) or a checkpoint path."),
        click.option("--regions", type=click.Choice(["auto", "sam", "classical"]), default="auto", show_default=True,
                     help="Candidate regions: Segment Anything, the weight-free classical proposer, or auto "
                          "(SAM if a checkpoint is on this machine, else classical with a warning)."),
        click.option("--sam-model", type=click.Choice(["vit_b", "vit_l", "vit_h"]), default="vit_b", show_default=True,
                     help="SAM architecture; must match the checkpoint."),
        click.option("--sam-checkpoint", type=click.Path(path_type=Path),
                     help="SAM checkpoint file. Default: sam_<model>'s file, looked up like all weights."),
        click.option("--weights-dir", type=click.Path(path_type=Path),
                     help="Folder holding pretrained weights (searched with its subfolders). Default: $SYNTHGEN_WEIGHTS."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _executor_options(command):
    """Where the work runs, shared by `build` and `precompute` (generator/executors/)."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: this machine (--workers); ray: one Ray task per shard (pip install 'synthgen[ray]')."),
        click.option("--ray-address", metavar="ADDR",
                     help="Ray cluster to use (host:port or auto). Default: start a local one for this command."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"synthgen: warning: {message}", err=True)


class _Commands(click.Group):
    """synthgen's own commands plus commands of other parts of the project (``bench``, in the trainers),
    which the package top (synthgen/cli.py) adds with :meth:`add_lazy_command`: generator/ never imports
    trainers/, and a lazy command loads its module (torch, Lightning) only when it runs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, Callable[[], click.Command]] = {}

    def add_lazy_command(self, name: str, load: Callable[[], click.Command]) -> None:
        self.lazy[name] = load

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in self.lazy:
            command = self.lazy[name]()
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="synthgen")
def cli() -> None:
    """Offline synthetic-anomaly datasets: sharded HDF5 with manifests."""


@cli.command()
@click.option("--dataset", default="demo", show_default=True, help="Dataset layout (see `synthgen datasets`).")
@click.option("--root", type=click.Path(path_type=Path),
              help="Dataset root (the folder holding CATEGORY/). Default: $SYNTHGEN_DATA/DATASET, else ./datasets/DATASET.")
@click.option("--category", help="Category to read, e.g. juice_bottle. Default: every category (demo: parts_box).")
@click.option("--strategy", "strategies", multiple=True,
              help="Strategy name(s), repeatable or comma-separated; 'caf' = the framework's per-class selection.")
@click.option("--recipe", help="Build a versioned recipe (see `synthgen recipes`): NAME-vN, NAME (latest) or a file; "
                               "every category of it (or --category) into OUT/CATEGORY.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output folder. Default: out/DATASET-CATEGORY; without --category OUT/CATEGORY (OUT: out/DATASET).")
@click.option("--num-samples", type=int, help="Samples to make. Default: one per (source image, strategy).")
@click.option("--image-size", help=IMAGE_SIZE_HELP)
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
@_executor_options
@click.option("--merge-only", is_flag=True,
              help="Build nothing: merge the shards' sidecars into manifest.json (the last step of a job array).")
@_map_options
@click.option("--renderer", type=click.Choice(list(RENDERERS)), default=DEFAULT_RENDERER, show_default=True,
              help=f"LogicAL renderer. {_RENDERER_HELP}.")
@click.option("--e2i", type=click.Path(path_type=Path),
              help="Generator file of the renderer (made by `synthgen train-e2i`). Default for real and inpaint: train one on "
                   "the category's normal images, cached and reused.")
@click.option("--generator-seed", default=0, show_default=True,
              help="Training seed of the automatic generator (not --seed: builds with other seeds reuse it).")
@click.option("--move-stale", is_flag=True,
              help="If --out holds a build started by other synthgen code (an older version), rename it to "
                   "OUT.stale-CODE and start afresh instead of stopping. Nothing is deleted.")
@click.option("--dry-run", is_flag=True,
              help="Print the predicted time and disk size of this build (of each category without --category); write nothing.")
@click.option("--cost-table", type=click.Path(path_type=Path),
              help="Per-stage costs for --dry-run (benchmarks/bench_cost_model.py). Default: the shipped table.")
@click.pass_context
def build(ctx, dataset, root, category, strategies, recipe, out, num_samples, image_size, seed, textures, settings, caf_table,
          samples_per_shard, batch_size, device, workers, num_shards, shard_index, compress_images, quiet,
          executor, ray_address, merge_only, edge_model, regions, sam_model, sam_checkpoint, weights_dir, renderer,
          e2i, generator_seed, move_stale, dry_run, cost_table):
    """Synthesize anomalies and write sharded HDF5 + manifest (resumable).

    Without --root the dataset is looked for in $SYNTHGEN_DATA/DATASET, then ./datasets/DATASET.
    Without --category every category of the dataset is built, each into its own OUT/CATEGORY.
    Without --e2i the LogicAL strategies' inpainting generator is trained once per category and cached.
    """
    from .config import parse_option

    if recipe:
        _refuse_what_the_recipe_fixes(ctx)
    elif not strategies:
        raise SynthgenError("--strategy: give at least one strategy (or --recipe NAME)")
    options: dict = {}
    for text in settings:
        name, key, value = parse_option(text)
        options.setdefault(name, {})[key] = value
    every_category = bool(recipe) or (category is None and dataset != "demo")

    def say(result: api.BuildResult) -> None:
        if result.prediction is not None:
            click.echo(f"{result.category}:\n{result.prediction}" if every_category else result.prediction)
        elif every_category:
            manifest = "manifest written" if result.manifest_written else "manifest waits for other job-array slices"
            click.echo(f"{result.category}: built {len(result.built)} shard(s), {len(result.skipped)} already "
                       f"complete, into {result.out_dir} ({manifest})")
        else:
            if not merge_only:
                click.echo(f"built {len(result.built)} shard(s), {len(result.skipped)} already complete, into "
                           f"{result.out_dir}")
            if result.manifest_written:
                click.echo(f"manifest: {result.out_dir / 'manifest.json'}")
            else:
                click.echo("manifest not written yet: other job-array slices still have shards to build")

    if recipe:
        def announce(chosen) -> None:
            count = 1 if category else len(chosen.categories)
            click.echo(f"recipe {chosen.full_name} (sha256 {chosen.sha256[:12]}...): {count} category(ies) of "
                       f"{chosen.dataset}", err=True)

        api.build_recipe(recipe, root=root, category=category, out=out, textures=textures, device=device,
                         weights_dir=weights_dir, sam_checkpoint=sam_checkpoint, workers=workers, num_shards=num_shards,
                         shard_index=shard_index, executor=executor, ray_address=ray_address, merge_only=merge_only,
                         progress=not quiet, on_recipe=announce, on_result=say)
        return
    api.build(
        strategies, dataset=dataset, root=root, category=category, out=out, num_samples=num_samples,
        image_size=image_size, seed=seed, textures=textures, options=options, caf_table=caf_table,
        samples_per_shard=samples_per_shard, batch_size=batch_size, device=device, workers=workers,
        num_shards=num_shards, shard_index=shard_index, compress_images=compress_images, executor=executor,
        ray_address=ray_address, merge_only=merge_only, edge_model=edge_model, regions=regions, sam_model=sam_model,
        sam_checkpoint=sam_checkpoint, weights_dir=weights_dir, renderer=renderer, e2i=e2i, generator_seed=generator_seed,
        move_stale=move_stale,
        dry_run=dry_run, cost_table=cost_table, progress=not quiet, on_result=say,
    )


#: The build options a recipe fixes: given with --recipe they are an error, not silently ignored.
_RECIPE_FIXES = ("dataset", "strategies", "num_samples", "image_size", "seed", "settings", "caf_table",
                 "samples_per_shard", "batch_size", "compress_images", "edge_model", "regions", "sam_model",
                 "renderer", "e2i", "generator_seed", "move_stale")
_NOT_WITH_RECIPE = ("dry_run", "cost_table")


def _refuse_what_the_recipe_fixes(ctx: click.Context) -> None:
    """One line naming the first build option given beside --recipe that the recipe fixes."""
    given = [p for p in _RECIPE_FIXES + _NOT_WITH_RECIPE if ctx.get_parameter_source(p) != click.core.ParameterSource.DEFAULT]
    if given and given[0] in _NOT_WITH_RECIPE:
        raise SynthgenError(f"--{given[0].replace('_', '-')}: not available with --recipe")
    if given:
        option = "--" + {"settings": "set", "strategies": "strategy"}.get(given[0], given[0]).replace("_", "-")
        raise SynthgenError(f"{option}: the recipe fixes it; leave it out with --recipe (or build from options)")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
def verify(build_dir):
    """Recompute every shard's (or published file's) sha256; report damaged, missing or unlisted ones (exit 1 if any)."""
    report = api.verify(build_dir)
    for line in report.problems:
        click.echo(line)
    click.echo(f"{len(report.ok)} {report.unit}(s) ok, {len(report.problems)} problem(s)")
    sys.exit(0 if report.passed else 1)


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--sheet", type=click.Path(path_type=Path), help="Contact sheet PNG. Default: BUILD_DIR/contact_sheet.png.")
@click.option("--per-strategy", default="4", show_default=True,
              help="Anomalous samples per strategy on the sheet (evenly spread over the build), or 'all'.")
@click.option("--maps", "maps_sheet", is_flag=True,
              help="Also write BUILD_DIR/maps_sheet.png: source | 4 edge scales | fused edges | regions.")
def inspect(build_dir, sheet, per_strategy, maps_sheet):
    """Print counts per strategy and write a contact sheet (image | mask overlay)."""
    from .shards.inspect import summary_table, write_contact_sheet
    from .shards.untrusted import check_output_file

    sheet = check_output_file(sheet or Path(build_dir) / "contact_sheet.png", "--sheet", ".png")  # before any output
    if per_strategy == "all":
        per_strategy = None
    elif not per_strategy.isdigit() or int(per_strategy) < 1:
        raise SynthgenError(f"--per-strategy: expected a number of samples (1 or more) or 'all', got {per_strategy!r}")
    else:
        per_strategy = int(per_strategy)
    click.echo(summary_table(build_dir))
    path = write_contact_sheet(build_dir, sheet, per_strategy=per_strategy)
    click.echo(f"contact sheet: {path}")
    if maps_sheet:
        from .shards.inspect import build_maps_sheet

        click.echo(f"maps sheet: {build_maps_sheet(build_dir, Path(build_dir) / 'maps_sheet.png')}")


@cli.command()
@click.option("--dataset", default="demo", show_default=True, help="Dataset layout (see `synthgen datasets`).")
@click.option("--root", type=click.Path(path_type=Path),
              help="Dataset root (the folder holding CATEGORY/). Default: $SYNTHGEN_DATA/DATASET, else ./datasets/DATASET.")
@click.option("--category", help="Category to read, e.g. juice_bottle. Default for demo: parts_box.")
@click.option("--split", default="train", show_default=True, help="Split whose normal images get maps.")
@click.option("--image-size", help=IMAGE_SIZE_HELP.replace("every sample is resized to it", "the build's image size"))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@_map_options
@click.option("--sheet", type=click.Path(path_type=Path), help="Also write a contact sheet PNG: image | 4 edge scales | fused | regions.")
@click.option("--sheet-rows", default=6, show_default=True, help="Images on the sheet, spread over the split.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_executor_options
def precompute(dataset, root, category, split, image_size, device, edge_model, regions, sam_model, sam_checkpoint,
               weights_dir, sheet, sheet_rows, quiet, executor, ray_address):
    """Compute and cache the edge and region maps of a category's normal images (a build reuses them)."""
    from .precompute import MapSettings, precompute_category

    if category is None:
        if dataset != "demo":
            raise SynthgenError("--category: required for this dataset (e.g. --category juice_bottle)")
        category = "parts_box"
    settings = MapSettings(
        edge_model=edge_model,
        weights_dir=str(weights_dir) if weights_dir else None,
        regions=regions,
        sam_model=sam_model,
        sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None,
        device=api.resolve_device(device),
    )
    size = api.choose_image_size(image_size, dataset, root, category, split, say=not quiet)
    result = precompute_category(dataset, root, category, split, size, settings, sheet=sheet, sheet_rows=sheet_rows,
                                 progress=not quiet, executor=api.make_executor(executor, ray_address))
    for line in result:
        click.echo(line)


@cli.command("train-e2i")
@click.option("--dataset", default="demo", show_default=True, help="Dataset layout (see `synthgen datasets`).")
@click.option("--root", type=click.Path(path_type=Path),
              help="Dataset root (the folder holding CATEGORY/). Default: $SYNTHGEN_DATA/DATASET, else ./datasets/DATASET.")
@click.option("--category", help="Category to train on, e.g. juice_bottle. Default for demo: parts_box.")
@click.option("--split", default="train", show_default=True, help="Split whose normal images are the training pairs.")
@click.option("--image-size", help=IMAGE_SIZE_HELP.replace("every sample is resized to it", "train at the builds' image size"))
@click.option("--renderer", type=click.Choice(list(RENDERERS)), default=DEFAULT_RENDERER, show_default=True,
              help=f"{_RENDERER_HELP}.")
@click.option("--epochs", default=300, show_default=True, help="full: training epochs (LogicAL sec. 4.2: 300).")
@click.option("--steps", type=int, help="inpaint: training steps. Default: the --network preset's.")
@click.option("--batch-size", type=int, help="Pairs per step. Default: 56 for full (LogicAL sec. 4.2), the preset's for inpaint.")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder. Default: out/e2i-DATASET-CATEGORY.")
@click.option("--seed", default=0, show_default=True, help="Seeds the weights, the data order and the augmentations.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="full: cuda trains in bf16 mixed precision, cpu in float32.")
@click.option("--network", type=click.Choice(sorted({p for r in RENDERERS.values() for p in r.network_presets})),
              help="inpaint: cpu (default; ~5 min of CPU time at 256x128), demo (~70 s at 256x256), edgeconnect "
                   "(EdgeConnect's widths, GPU). full: full (default, pix2pixHD's sizes, GPU), small (a CPU in hours), "
                   "tiny (smoke tests).")
@click.option("--vgg19", type=click.Path(path_type=Path),
              help="VGG19 ImageNet weights for the perceptual loss. Default: torchvision's cache, else none.")
@_map_options
@click.option("--no-resume", is_flag=True, help="Start over even if the run folder has a checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_e2i(dataset, root, category, split, image_size, renderer, epochs, steps, batch_size, out, seed, device, network,
              vgg19, edge_model, regions, sam_model, sam_checkpoint, weights_dir, no_resume, quiet):
    """Train the generator of a LogicAL renderer on a category's normal images."""
    if category is None:
        if dataset != "demo":
            raise SynthgenError("--category: required for this dataset (e.g. --category juice_bottle)")
        category = "parts_box"
    size = api.choose_image_size(image_size, dataset, root, category, split, say=not quiet)
    device = api.resolve_device(device)
    out = out or Path("out") / f"e2i-{dataset}-{category}"
    presets = get_renderer(renderer).network_presets
    network = network or presets[0]
    if network not in presets:
        raise SynthgenError(f"--network {network}: not a preset of --renderer {renderer} ({', '.join(presets)})")
    if get_renderer(renderer).generator == "inpaint":  # the training code (models/ must not reach it)
        import dataclasses

        from .precompute import MapSettings, category_sources_and_maps
        from .training.inpaint import CHECKPOINT_FILE, NETWORKS, train_inpainter

        config = NETWORKS[network]
        config = dataclasses.replace(config, steps=steps or config.steps, batch_size=batch_size or config.batch_size)
        settings = MapSettings(edge_model=edge_model, weights_dir=str(weights_dir) if weights_dir else None,
                               regions=regions, sam_model=sam_model, device=device,
                               sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None)
        sources, store, maps_record = category_sources_and_maps(dataset, root, category, split, size, settings,
                                                                progress=not quiet)
        if no_resume:
            (out / CHECKPOINT_FILE).unlink(missing_ok=True)
        data = {"dataset": dataset, "category": category, "split": split, "sources": list(sources.sha256),
                "maps": maps_record, "network": network}
        path = train_inpainter(sources.load_stack(), store, out, config=config, seed=seed, device=device,
                               data_identity=data, weights_dir=settings.weights_dir,
                               vgg19_weights=str(vgg19) if vgg19 else None, progress=not quiet)
    else:
        from .training import e2i as e2i_training

        # The precompute stage's edge maps are PiDiNet probabilities, not binary: train on them as they are.
        overrides = {"binary_edges": False, "vgg19_weights": str(vgg19) if vgg19 else None}
        config = e2i_training.NETWORKS[network](**overrides)
        pairs = e2i_training.category_pairs(dataset, root, category, split, size, edge_model=edge_model,
                                            weights_dir=weights_dir, device=device, progress=not quiet)
        path = e2i_training.train_e2i(pairs, out, config=config, epochs=epochs, batch_size=batch_size or 56,
                                      image_size=size, seed=seed, device=device, resume=not no_resume, progress=not quiet)
    click.echo(f"generator: {path}")
    click.echo(f"use it with: synthgen build ... --strategy logical --renderer {renderer} --e2i {path}")


@cli.command()
@click.option("--weights-dir", type=click.Path(path_type=Path),
              help="Folder holding pretrained weights (searched with its subfolders). Default: $SYNTHGEN_WEIGHTS.")
def weights(weights_dir):
    """List the pretrained weights synthgen knows and where each is on this machine (sha256 checked)."""
    from .models.weights import list_weights

    for row in list_weights(weights_dir):
        state = "ok" if row.verified else ("missing" if row.path == "missing" else "BAD HASH")
        where = row.path if row.path != "missing" else f"get it from {row.url}"
        click.echo(f"{row.name:<18} {row.file:<32} {state:<8} {where}")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["mvtec", "anomalib", "webdataset"]), default="mvtec",
              show_default=True, help="mvtec: MVTec AD folders (anomalib Folder/MVTecAD); anomalib: the same plus "
                                      "samples.parquet (anomalib Tabular); webdataset: tar shards.")
@click.option("--to", "to", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--source-root", type=click.Path(path_type=Path),
              help="Where the source dataset is now, if it moved since the build (train/good is read from it).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--quiet", is_flag=True)
def export(build_dir, fmt, to, source_root, overwrite, quiet):
    """Write a build in a layout third-party trainers read (see README: exports)."""
    path = api.export(build_dir, to, format=fmt, overwrite=overwrite, source_root=source_root, progress=not quiet)
    click.echo(f"exported to {path}")


@cli.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--to", "to", type=click.Path(path_type=Path), required=True, help="Publication folder (new or empty).")
@click.option("--license", "license_id", help="Licence of the publication (hub id, e.g. cc-by-4.0). Default: the source "
                                              "dataset's; required when it cannot be found from the dataset's files.")
@click.option("--with-normals", is_flag=True, help="Also publish each sample's clean normal image (column `normal`).")
@click.option("--source-root", type=click.Path(path_type=Path),
              help="Where the source dataset is now, if it moved since the build (its licence files are read there).")
@click.option("--rows-per-file", type=click.IntRange(min=1), help="Samples per Parquet file. Default: 2000.")
@click.option("--push-to-hub", "repo", help="Also upload the folder to this Hugging Face dataset repo (needs network).")
@click.option("--bench", "bench_dir", type=click.Path(path_type=Path),
              help="A `synthgen bench` folder of this build: its table goes into the card and croissant.json.")
@click.option("--quiet", is_flag=True)
def publish(build_dir, to, license_id, with_normals, source_root, rows_per_file, repo, bench_dir, quiet):
    """Write a build as a dataset-hub folder: Parquet + dataset card + croissant.json + checksums."""
    from .publish import hub_url

    path = api.publish(build_dir, to, license=license_id, with_normals=with_normals, source_root=source_root,
                       rows_per_file=rows_per_file, push_to_hub=repo, bench=bench_dir, progress=not quiet)
    click.echo(f"published to {path} (check it with: synthgen verify {path})")
    if repo:
        click.echo(f"uploaded to {hub_url(repo)}")


@cli.command()
def strategies():
    """List the synthesis strategies."""
    from .strategies import get_strategy, strategy_names

    for name in strategy_names():
        click.echo(f"{name:<20} {get_strategy(name).summary}")
    click.echo(f"{'caf':<20} the augmentation framework's per-class selection of the above")


@cli.command()
def recipes():
    """List the shipped recipes (versioned build definitions of benchmark datasets)."""
    from .recipes import shipped_recipes

    for r in shipped_recipes():
        b = r.data["build"]
        click.echo(f"{r.full_name:<20} {r.dataset}: {len(r.categories)} categor{'y' if len(r.categories) == 1 else 'ies'}, "
                   f"{','.join(b['strategies'])}, {b['num_samples']} samples each, seed {b['seed']}  sha256 {r.sha256[:12]}")


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
    import warnings

    warnings.showwarning = _one_line_warning  # a user reads one line, not a source location
    try:
        cli.main(args=argv, prog_name="synthgen", standalone_mode=False)
    except SynthgenError as e:
        click.echo(f"synthgen: error: {e}", err=True)
        if getattr(e, "skip_interpreter_cleanup", False):  # see generator/shards/writer.py
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
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
