"""The generator of a build that was given none: trained once on the category's normal images, cached.

``synthgen build --strategy semantic-remove`` without ``--e2i`` (renderer ``inpaint``) calls
:func:`with_generator` before building: it trains an inpainting generator on the build's own source
images (the category's normal training images, read and resized as the build reads them, with the
build's precomputed maps) and returns the config with ``e2i`` pointing at the cached file, so the
manifest records it exactly like an explicit ``--e2i``.

Cache entry: ``$SYNTHGEN_CACHE/generators/<key>/`` where ``key`` hashes everything that determines the
generator: dataset, category, split, image size, renderer, the training config (network, steps,
losses), the sha256 of every source image, the maps' models and parameters, and the generator's own
training seed (``BuildConfig.generator_seed``, default 0; not the build's sampling ``--seed``, so a build
with another ``--seed`` reuses the category's generator). It holds ``inpaint_generator.pt``, its ``.json`` record with the file's sha256 and the
key, and, while training runs, ``checkpoint.pt`` (Ctrl-C resumes from it on the next run). A hit is
verified by content hash; a truncated or mismatching entry is retrained with a one-line warning.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

from ..config import BuildConfig, digest
from ..errors import SynthgenError
from ..records import read_own_record
from ..imageio import sha256_file
from ..models.renderers import get_renderer
from ..paths import cache_root
from .inpaint import GENERATOR_FILE, NETWORKS, InpaintTrainConfig, train_inpainter

#: the training preset of an automatic generator: the demo's short one for the embedded demo dataset,
#: the CPU preset (1200 steps, about 9 min of CPU time at 256x128) for real categories
DEMO_NETWORK, DEFAULT_NETWORK = "demo", "cpu"


def preset_name(config: BuildConfig) -> str:
    """The training preset (a key of :data:`generator.training.inpaint.NETWORKS`) of ``config``'s automatic generator."""
    return DEMO_NETWORK if config.dataset == "demo" else DEFAULT_NETWORK


def training_preset(config: BuildConfig) -> InpaintTrainConfig | None:
    """The training config of the generator ``config``'s build trains first; None when it trains none."""
    return NETWORKS[preset_name(config)] if needs_generator(config) else None


def needs_generator(config: BuildConfig) -> bool:
    """Whether the build's strategies render with a generator and none was given for a renderer whose
    generator a build trains itself (the inpaint renderer)."""
    from ..plan import resolve_build_strategies, strategies_needing

    if config.e2i is not None or not get_renderer(config.renderer).trains_automatically:
        return False
    return bool(strategies_needing(resolve_build_strategies(config), "models"))


def with_generator(config: BuildConfig, *, progress: bool = True) -> BuildConfig:
    """``config`` itself, or, when it needs a generator and has none, ``config`` with ``e2i`` set to
    the cached automatic generator (trained first when the cache has no valid one)."""
    if not needs_generator(config):
        return config
    return dataclasses.replace(config, e2i=str(cached_generator(config, progress=progress)))


def cached_generator(config: BuildConfig, *, progress: bool = True) -> Path:
    from ..precompute import category_sources_and_maps, settings_from_config

    sources, store, maps_record = category_sources_and_maps(
        config.dataset, config.root, config.category, config.split, config.image_size,
        settings_from_config(config), progress=progress)
    network = preset_name(config)
    train_config = NETWORKS[network]
    data = {"dataset": config.dataset, "category": config.category, "split": config.split,
            "sources": list(sources.sha256), "maps": maps_record}
    # keyed by the generator, not the renderer: real and inpaint run the same files and share one
    key = digest({"renderer": get_renderer(config.renderer).generator, "network": network, "train": train_config.to_dict(), "data": data,
                  "image_size": list(config.image_size), "seed": config.generator_seed})
    folder = cache_root() / "generators" / key
    path = folder / GENERATOR_FILE
    if _entry_valid(folder, key):
        return path
    for stale in (path, path.with_suffix(".json")):
        if stale.is_dir() or stale.is_symlink():  # not something training put there: never deleted
            raise SynthgenError(f"{stale}: a cache entry's file is a folder or a link; remove it by hand, or set "
                                "SYNTHGEN_CACHE to another folder")
    if path.exists() or path.with_suffix(".json").exists():
        warnings.warn(f"{folder}: cached generator is damaged (truncated or its hash does not match); training it again")
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    print(f"synthgen: no --e2i given: training an inpainting generator on the {len(sources)} normal images of "
          f"{config.dataset}/{config.category} at {config.image_size[0]}x{config.image_size[1]} ({train_config.steps} steps, "
          f"'{network}' preset; cached in {folder}, reused by later builds; Ctrl-C resumes)", file=sys.stderr)
    train_inpainter(sources.load_stack(), store, folder, config=train_config, seed=config.generator_seed,
                    device=config.device, data_identity={**data, "key": key, "network": network},
                    weights_dir=config.weights_dir, progress=progress)
    return path


def _entry_valid(folder: Path, key: str) -> bool:
    """The entry holds a complete generator of this key whose bytes match the recorded sha256."""
    path, record_file = folder / GENERATOR_FILE, folder / (Path(GENERATOR_FILE).stem + ".json")
    if not (path.is_file() and record_file.is_file()):
        return False
    record = read_own_record(record_file, "generator record")  # types and bounds: generator/records.py
    if record is None:
        return False
    return record["data"]["key"] == key and record["file"] == path.name and record["sha256"] == sha256_file(path)
