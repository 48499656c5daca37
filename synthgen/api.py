"""synthgen's public Python API: what the ``synthgen`` command does, called from Python.

    import synthgen

    [result] = synthgen.build(["draem", "cutpaste"], textures="perlin", out="out/demo")
    build = synthgen.open_build(result.out_dir)
    build.manifest.totals.samples, build.manifest.image_size   # the manifest as a typed record
    sample = build.samples()[0]                                  # a torch Dataset (ShardDataset)

:func:`build` behaves like ``synthgen build`` (the command is a thin layer over it): it finds the
dataset's root, builds every category when none is given, picks the image size, trains and caches the
LogicAL inpainting generator on first use, shows progress bars on stderr and raises
:class:`SynthgenError` (one line naming the file and the problem) on bad input. It sits above
``generator.pipeline`` like the CLI: training code is imported here, lazily, never on the build path.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .generator import code_fingerprint
from .generator.config import BuildConfig, parse_image_size
from .generator.errors import SynthgenError
from .generator.models.renderers import DEFAULT_RENDERER

if TYPE_CHECKING:
    from .generator.shards.reader import ShardDataset
    from .generator.shards.verify import VerifyReport

__all__ = [
    "Build",
    "BuildConfig",
    "BuildResult",
    "Manifest",
    "ShardRecord",
    "SynthgenError",
    "Totals",
    "build",
    "build_recipe",
    "export",
    "open_build",
    "publish",
    "verify",
]

#: without an explicit image size, the short side of a category's images is resized to this many pixels
DEFAULT_SHORT_SIDE = 256
#: ...and both sides are rounded to multiples of this: the networks a LogicAL build runs halve the image
#: size per downsampling, pix2pixHD's global generator (``--renderer full``) four times, the inpainting
#: generator twice (tests/test_api.py checks that every preset divides it)
SIZE_MULTIPLE = 16

# --------------------------------------------------------------------------------------------------
# building


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build` did for one category."""

    category: str
    out_dir: Path
    config: BuildConfig  # as built: image size chosen, ``e2i`` set to the generator used
    built: tuple[int, ...] = ()  # shard numbers written by this call
    skipped: tuple[int, ...] = ()  # shard numbers that were already complete (resumed build)
    manifest_written: bool = False  # False: other job-array slices still have shards to build
    prediction: str | None = None  # ``dry_run``: the predicted time and disk size; nothing was written


def build(
    strategies: str | Sequence[str],
    *,
    dataset: str = "demo",
    root: str | Path | None = None,
    category: str | None = None,
    out: str | Path | None = None,
    num_samples: int | None = None,
    image_size: int | str | tuple[int, int] | None = None,
    seed: int = 0,
    textures: str | Path | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    caf_table: str | Path | None = None,
    samples_per_shard: int = 256,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 1,
    num_shards: int = 1,
    shard_index: int = 0,
    compress_images: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    merge_only: bool = False,
    edge_model: str = "pidinet",
    regions: str = "auto",
    sam_model: str = "vit_b",
    sam_checkpoint: str | Path | None = None,
    weights_dir: str | Path | None = None,
    renderer: str = DEFAULT_RENDERER,
    e2i: str | Path | None = None,
    generator_seed: int = 0,
    move_stale: bool = False,
    dry_run: bool = False,
    cost_table: str | Path | None = None,
    progress: bool = True,
    on_result: Callable[[BuildResult], None] | None = None,
) -> list[BuildResult]:
    """Synthesize anomalies and write sharded HDF5 + manifest (resumable); one result per category.

    The options are ``synthgen build``'s (``synthgen build --help`` explains each); in short:

    strategies: names (a list, or one comma-separated string); ``caf`` is the framework's per-class selection.
    dataset, root: the layout and the folder holding its categories. ``root`` None: ``$SYNTHGEN_DATA/DATASET``,
        then ``./datasets/DATASET`` (the demo renders itself into the cache).
    category: None builds every category of the dataset (the demo: its one, parts_box), each into
        ``out/CATEGORY`` (``out`` default ``out/DATASET``); a failing category is named on stderr, the
        rest are built, and a SynthgenError naming the failed ones is raised at the end.
        Given, the build goes into ``out`` (default ``out/DATASET-CATEGORY``).
    image_size: N or "HxW" (or (H, W)) resizes every sample to it; None keeps the aspect ratio of the
        category's first training image, its short side resized to 256 and both sides rounded to
        multiples of 16 (said in one line on stderr when ``progress``).
    textures: a DTD-style folder, "normals" or "perlin". options: {strategy: {key: value}} (``--set``).
    device: "auto", "cpu" or "cuda". executor: "local" (``workers`` processes) or "ray".
    e2i: the LogicAL renderer's generator file; None with the inpaint renderer trains one on the
        category's normal images once and caches it (``~/.cache/synthgen/generators``).
    generator_seed: the training seed of that automatic generator (not the sampling ``seed``: builds with
        other seeds reuse the category's cached generator); recorded in the manifest.
    move_stale: an ``out`` folder started by other synthgen code (an older version) is renamed to
        ``OUT.stale-CODE`` and the build starts afresh, instead of stopping; nothing is deleted.
    dry_run: write nothing; each result's ``prediction`` holds the predicted time and disk size.
    on_result: called with each category's result as soon as it is done (the CLI prints it).
    """
    given = [strategies] if isinstance(strategies, str) else list(strategies)
    names = tuple(name.strip() for text in given for name in text.split(",") if name.strip())
    device = resolve_device(device)
    engine = None if merge_only or dry_run else make_executor(executor, ray_address)
    if root is None and dataset != "demo":
        from .generator.datasets import locate_root

        root = locate_root(dataset)
    if category is None and dataset == "demo":
        category = "parts_box"  # the demo's one category, built into out/demo-parts_box like an explicit one
    texture_source, texture_root = None, None
    if textures in ("normals", "perlin"):
        texture_source = str(textures)
    elif textures:
        texture_source, texture_root = "dtd", str(Path(textures))

    def config_of(name: str) -> BuildConfig:
        return BuildConfig(
            dataset=dataset,
            category=name,
            root=str(root) if root else None,
            strategies=names,
            num_samples=num_samples,
            image_size=choose_image_size(image_size, dataset, root, name, say=progress),
            seed=seed,
            samples_per_shard=samples_per_shard,
            batch_size=batch_size,
            device=device,
            texture_source=texture_source,
            texture_root=texture_root,
            options={k: dict(v) for k, v in (options or {}).items()},
            caf_table=str(caf_table) if caf_table else None,
            compress_images=compress_images,
            edge_model=edge_model,
            regions=regions,
            sam_model=sam_model,
            sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None,
            weights_dir=str(weights_dir) if weights_dir else None,
            e2i=str(e2i) if e2i else None,
            renderer=renderer,
            generator_seed=generator_seed,
        )

    def build_category(name: str, out_dir: Path) -> BuildResult:
        config = config_of(name)
        if dry_run:
            from .generator.cost_model import dry_run as predict

            return BuildResult(name, out_dir, config, prediction=predict(config, workers=workers, cost_table=cost_table))
        return _build_config(config, out_dir, engine=engine, workers=workers, num_shards=num_shards,
                             shard_index=shard_index, merge_only=merge_only, move_stale=move_stale, progress=progress)

    if category is not None:
        result = build_category(category, Path(out) if out else Path("out") / f"{dataset}-{category}")
        if on_result:
            on_result(result)
        return [result]

    from .generator.datasets import dataset_categories

    assert root is not None  # located above (only the demo has no root, and it has a category)
    out_root = Path(out) if out else Path("out") / dataset
    categories = dataset_categories(dataset, root)
    return _each_category(categories, lambda name: build_category(name, out_root / name),
                          f"{dataset}/{{}} from {root}", progress, on_result)


def build_recipe(
    recipe: str | Path,
    *,
    root: str | Path | None = None,
    category: str | None = None,
    out: str | Path | None = None,
    textures: str | Path | None = None,
    device: str = "auto",
    weights_dir: str | Path | None = None,
    sam_checkpoint: str | Path | None = None,
    workers: int = 1,
    num_shards: int = 1,
    shard_index: int = 0,
    executor: str = "local",
    ray_address: str | None = None,
    merge_only: bool = False,
    progress: bool = True,
    on_recipe: Callable[[Any], None] | None = None,
    on_result: Callable[[BuildResult], None] | None = None,
) -> list[BuildResult]:
    """Build a versioned recipe (``synthgen recipes``; manifests/recipes/NAME-vN.json): NAME-vN, NAME (its
    latest version) or a recipe file. Every category of it (or ``category``) goes into ``out/CATEGORY``
    (``out`` default ``out/NAME-vN``); the recipe fixes everything that changes the samples, so only where
    the data, textures and weights are and how to run are given here. The recipe's name, version and
    sha256 are in each build's config (and so its hash) and manifest. Failing categories as in :func:`build`.
    ``on_recipe``: called with the recipe (generator/recipes.py's Recipe) once every category's config is
    checked, before any work (the CLI names it)."""
    from .generator.recipes import find_recipe

    chosen = find_recipe(recipe)
    if root is None and chosen.dataset != "demo":
        from .generator.datasets import locate_root

        root = locate_root(chosen.dataset)
    resolved_device = resolve_device(device)
    configs = {name: chosen.config(name, root=str(root) if root else None,
                                   texture_root=str(Path(textures)) if textures else None, device=resolved_device,
                                   weights_dir=str(weights_dir) if weights_dir else None,
                                   sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None)
               for name in ([category] if category else chosen.categories)}  # every category checked before any work
    out_root = Path(out) if out else Path("out") / chosen.full_name
    if on_recipe:
        on_recipe(chosen)
    engine = None if merge_only else make_executor(executor, ray_address)
    return _each_category(
        list(configs),
        lambda name: _build_config(configs[name], out_root / name, engine=engine, workers=workers, num_shards=num_shards,
                                   shard_index=shard_index, merge_only=merge_only, move_stale=False, progress=progress),
        f"{chosen.dataset}/{{}} ({chosen.full_name})", progress, on_result)


def _build_config(config: BuildConfig, out_dir: Path, *, engine: Any, workers: int, num_shards: int, shard_index: int,
                  merge_only: bool, move_stale: bool, progress: bool) -> BuildResult:
    """One category's build: the automatic generator first (trained once, cached) when it needs one."""
    from .generator.pipeline import build as run_build
    from .generator.training.auto import with_generator  # trains (once, cached) when no e2i is given

    if move_stale and not merge_only:
        _move_stale_build(out_dir)
    config = with_generator(config, progress=progress)
    report = run_build(config, out_dir, workers=workers, num_shards=num_shards, shard_index=shard_index,
                       progress=progress, executor=engine, merge_only=merge_only)
    if report.manifest_written:
        _warn_fallbacks(report.out_dir, config.max_attempts)
    assert config.category is not None
    return BuildResult(config.category, report.out_dir, config, tuple(report.built), tuple(report.skipped),
                       report.manifest_written)


def _each_category(categories: Sequence[str], build_one: Callable[[str], BuildResult], where: str, progress: bool,
                   on_result: Callable[[BuildResult], None] | None) -> list[BuildResult]:
    """``build_one`` for each category, a line each on stderr (``where`` formatted with its name); a failing
    category is named and does not stop the rest, and one SynthgenError naming the failed ones ends it."""
    results, failed = [], []
    for i, name in enumerate(categories, start=1):
        if progress:
            print(f"[{i}/{len(categories)}] {where.format(name)}", file=sys.stderr)
        try:
            result = build_one(name)
        except SynthgenError as e:
            print(f"synthgen: error: {name}: {e}", file=sys.stderr)
            failed.append(name)
            continue
        results.append(result)
        if on_result:
            on_result(result)
    if failed:
        raise SynthgenError(f"{len(failed)} of {len(categories)} categories failed ({', '.join(failed)}); fix them "
                            "and run the same command again (finished categories are skipped)")
    return results


def choose_image_size(image_size: int | str | tuple[int, int] | None, dataset: str, root: str | Path | None,
                      category: str, split: str = "train", *, say: bool = True) -> tuple[int, int]:
    """(H, W) of a build's samples: ``image_size`` as given (N, "N", "HxW" or (H, W)), or, when None, the
    aspect ratio of the category's first normal ``split`` image kept (:func:`aspect_size`), said in one
    line on stderr when ``say``."""
    if isinstance(image_size, str):
        return parse_image_size(image_size)
    if isinstance(image_size, int):
        return image_size, image_size
    if image_size is not None:
        h, w = image_size
        return int(h), int(w)
    from .generator.datasets import load_dataset
    from .generator.imageio import probe_image

    index = load_dataset(dataset, root, category)
    images = index.split(split, normal_only=True)
    if not images:
        raise SynthgenError(f"{index.root}: no normal images in split '{split}' of {category}")
    info = probe_image(images[0].path)
    size = aspect_size(info.height, info.width)
    if say:
        print(f"synthgen: image size {size[0]}x{size[1]} (HxW): {dataset}/{category}'s {info.height}x{info.width} "
              f"photos, short side at {DEFAULT_SHORT_SIDE}, aspect ratio kept (--image-size to choose)", file=sys.stderr)
    return size


def aspect_size(height: int, width: int, short_side: int = DEFAULT_SHORT_SIDE) -> tuple[int, int]:
    """(H, W) with the short side at ``short_side`` and the aspect ratio of ``height`` x ``width``, both
    sides rounded to the nearest multiple of :data:`SIZE_MULTIPLE` (at least one multiple)."""
    scale = short_side / min(height, width)

    def rounded(side: int) -> int:
        return max(SIZE_MULTIPLE, round(side * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE)

    return rounded(height), rounded(width)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; other names as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def make_executor(executor: str, ray_address: str | None) -> Any:
    """None for the local executor, else the engine object that pipeline.build / precompute take."""
    if executor not in ("local", "ray"):
        raise SynthgenError(f"--executor: must be local or ray, got '{executor}'")
    if executor == "local":
        if ray_address:
            raise SynthgenError("--ray-address: only with --executor ray")
        return None
    from .generator.executors.ray_executor import RayExecutor

    return RayExecutor(ray_address)


def _warn_fallbacks(out_dir: Path, max_attempts: int) -> None:
    """One warning per strategy whose samples fell back to normals (every attempt rejected), from the
    manifest's totals: such a build has fewer anomalies than asked for, and a strategy that never
    renders (e.g. LogicAL edits its generator cannot make visible) none."""
    from .generator.errors import read_json_file

    totals = read_json_file(out_dir / "manifest.json", "manifest").get("totals", {})
    for strategy, count in sorted(totals.get("fallback_normal", {}).items()):
        drawn = totals.get("strategies", {}).get(strategy, count)
        reasons = totals.get("rejections", {}).get(strategy, {})
        why = ""
        if reasons:
            reason, times = max(reasons.items(), key=lambda item: item[1])
            why = f"; most often: {reason} ({times} of {sum(reasons.values())} rejections)"
        # the folder in the text keeps two categories' equal counts two warnings (Python shows a text once)
        warnings.warn(f"{strategy}: {count} of {drawn} samples were rejected {max_attempts} times and stored as "
                      f"normals (label 0){why}; see the totals in {out_dir / 'manifest.json'}", stacklevel=2)


def _move_stale_build(out_dir: Path) -> Path | None:
    """Rename ``out_dir`` to ``OUT.stale-CODE`` when its build was started by other synthgen code (its
    ``build.json`` records another code fingerprint), so that a build can start afresh there; returns the
    new name, or None when the folder is not such a build (then the build decides, as always). Nothing
    is deleted, and a folder another build is writing into is left alone."""
    import fcntl
    import os

    from .generator.shards.manifest import BUILD_FILE

    from .generator.records import read_own_record

    record = read_own_record(out_dir / BUILD_FILE, "build record")
    if record is None or record.get("code") == code_fingerprint():
        return None
    code = record.get("code")
    stem = f"{out_dir.name}.stale-{code[:12] if isinstance(code, str) else 'unrecorded'}"
    target = out_dir.with_name(stem)
    n = 1
    while target.exists():
        target, n = out_dir.with_name(f"{stem}-{n}"), n + 1
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock every build holds while it writes
        except OSError:
            raise SynthgenError(f"{out_dir}: another synthgen build is writing into this folder; wait for it "
                                "to end or choose another --out") from None
        os.rename(out_dir, target)
    finally:
        os.close(fd)
    print(f"synthgen: {out_dir} was started by other synthgen code; moved it to {target} and starting afresh",
          file=sys.stderr)
    return target


# --------------------------------------------------------------------------------------------------
# reading a build


@dataclass(frozen=True)
class ShardRecord:
    """One shard file of a build, as its manifest lists it."""

    file: str
    sha256: str
    bytes: int
    first_index: int
    num_samples: int
    strategies: Mapping[str, int]  # samples per strategy


@dataclass(frozen=True)
class Totals:
    """The build's counts, summed over its shards."""

    samples: int
    strategies: Mapping[str, int]  # samples per strategy
    labels: Mapping[str, int]  # samples per label ("0" normal, "1" anomalous)
    redraws: Mapping[str, int]  # per strategy: samples redrawn because a draw collapsed or was rejected
    fallback_normal: Mapping[str, int]  # per strategy: samples stored as normals after every redraw failed
    rejections: Mapping[str, Mapping[str, int]]  # per strategy: rejected draws by reason


@dataclass(frozen=True)
class Manifest:
    """A build's ``manifest.json`` as a typed record (the full JSON stays in ``raw``)."""

    dataset: str
    category: str
    split: str
    strategies: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W)
    seed: int
    config_hash: str  # two builds with the same hash are the same dataset
    config: BuildConfig
    synthgen_version: str
    schema_version: int
    source_root: str
    num_sources: int
    totals: Totals
    shards: tuple[ShardRecord, ...]
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, manifest: Mapping[str, Any], where: str | Path = "manifest.json") -> Manifest:
        """The record of a manifest already checked (``shards.untrusted.read_manifest``)."""
        config = BuildConfig.from_dict(dict(manifest["config"]), where=str(where))
        totals = manifest["totals"]
        shard_keys = [f.name for f in fields(ShardRecord)]
        return cls(
            dataset=manifest["dataset"]["name"],
            category=manifest["dataset"]["category"],
            split=manifest["dataset"]["split"],
            strategies=tuple(manifest["strategies"]),
            image_size=config.image_size,
            seed=manifest["seed"],
            config_hash=manifest["config_hash"],
            config=config,
            synthgen_version=manifest["synthgen_version"],
            schema_version=manifest["schema_version"],
            source_root=manifest["dataset"]["root"],
            num_sources=len(manifest["dataset"]["sources"]),
            totals=Totals(**{f.name: totals.get(f.name, {}) for f in fields(Totals)}),
            shards=tuple(ShardRecord(**{k: s[k] for k in shard_keys}) for s in manifest["shards"]),
            raw=manifest,
        )


class Build:
    """A finished build folder: its manifest (:attr:`manifest`) and its samples (:meth:`samples`)."""

    def __init__(self, path: str | Path):
        from .generator.shards.untrusted import read_manifest

        self.path = Path(path)
        manifest = read_manifest(self.path)  # schema-valid, names checked: one-line SynthgenError otherwise
        if "publication" in manifest:
            raise SynthgenError(f"{self.path}: a `synthgen publish` folder, not a build (read its Parquet files, "
                                "e.g. with datasets.load_dataset)")
        self.manifest = Manifest.from_json(manifest, where=self.path / "manifest.json")

    def samples(self, fields: Sequence[str] = ("image", "mask"), *, strategies: Sequence[str] | None = None,
                transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                with_params: bool = False) -> ShardDataset:
        """Every sample (or those of ``strategies``) as a torch Dataset of dicts; see ShardDataset for the fields."""
        from .generator.shards.reader import ShardDataset

        return ShardDataset(self.path, fields, strategies=strategies, transform=transform, with_params=with_params)

    def verify(self) -> VerifyReport:
        return verify(self.path)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Build({str(self.path)!r}: {m.dataset}/{m.category}, {m.totals.samples} samples of "
                f"{', '.join(m.strategies)}, {m.image_size[0]}x{m.image_size[1]})")


def open_build(path: str | Path) -> Build:
    """Open the finished build in ``path`` (a folder with ``manifest.json``)."""
    return Build(path)


# --------------------------------------------------------------------------------------------------
# checking and handing on a build


def verify(path: str | Path) -> VerifyReport:
    """Recompute every shard's (or published file's) sha256; ``report.passed``, ``report.problems``."""
    from .generator.shards.verify import verify_build

    return verify_build(path)


def export(build_dir: str | Path, to: str | Path, *, format: str = "mvtec", overwrite: bool = False,
           source_root: str | Path | None = None, progress: bool = True) -> Path:
    """Write a build in a layout third-party trainers read: "mvtec" (MVTec AD folders), "anomalib" (the
    same plus samples.parquet) or "webdataset" (tar shards); returns the folder a reader opens."""
    from .generator.shards.export import export_build

    return export_build(build_dir, to, fmt=format, overwrite=overwrite, source_root=source_root, progress=progress)


def publish(build_dir: str | Path, to: str | Path, *, license: str | None = None, with_normals: bool = False,
            source_root: str | Path | None = None, rows_per_file: int | None = None, push_to_hub: str | None = None,
            bench: str | Path | None = None, progress: bool = True) -> Path:
    """Write a build as a dataset-hub folder (Parquet, dataset card, croissant.json, checksums) and, with
    ``push_to_hub`` (a Hugging Face dataset repo), upload it; returns the folder. ``bench``: a ``synthgen
    bench`` folder of this build, whose usefulness table goes into the card and croissant.json (without
    it the card says that no bench was run)."""
    from .generator.publish import publish_build
    from .generator.publish import push_to_hub as upload

    path = publish_build(build_dir, to, license=license, with_normals=with_normals, source_root=source_root,
                         rows_per_file=rows_per_file, hub_repo=push_to_hub, bench=bench, progress=progress)
    if push_to_hub:
        upload(path, push_to_hub)
    return path
