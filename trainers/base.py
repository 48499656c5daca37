"""What every trainer produces and how ``synthgen-eval`` loads it.

A training run writes a *run folder*::

    RUN/run.json          method name, full config, seed, data provenance (shard manifest hash or
                          dataset + source hashes), backbone/weights sha256, library versions
    RUN/model.pt          the trained model for inference (loaded by the method's loader)
    RUN/checkpoints/      last.ckpt for --resume (Lightning's, or trainers/epoch_log.py's for PBAS and the ensemble)
    RUN/logs/             CSV logs

A trained model, whatever the method, is an :class:`AnomalyModel`: images in, per-pixel anomaly
maps and per-image scores out. ``synthgen-eval`` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from synthgen.generator.errors import SynthgenError
from synthgen.generator.records import read_record
from synthgen.generator.safe_load import load_torch_file, require_dict

RUN_FILE = "run.json"
MODEL_FILE = "model.pt"


class AnomalyModel(Protocol):
    """A trained anomaly detector/localizer."""

    #: (H, W) the model expects; the evaluator resizes test images to it
    image_size: tuple[int, int]

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) float in [0, 1] on the model's device ->
        (anomaly maps (B, H, W) float, higher = more anomalous; image scores (B,) float)."""
        ...

    def to(self, device: torch.device | str) -> Any: ...


Loader = Callable[[Path, torch.device], AnomalyModel]
_LOADERS: dict[str, Loader] = {}


def register_loader(method: str) -> Callable[[Loader], Loader]:
    """``@register_loader("reconstruction")`` on ``load(run_dir, device) -> AnomalyModel``."""

    def deco(fn: Loader) -> Loader:
        _LOADERS[method] = fn
        return fn

    return deco


def write_run_info(run_dir: str | Path, info: dict[str, Any]) -> Path:
    from synthgen.generator.atomic import write_json_atomic

    path = Path(run_dir) / RUN_FILE
    write_json_atomic(path, info)
    return path


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise SynthgenError(f"{path}: not a training run folder (no {RUN_FILE})")
    return read_record(path, "run record")  # method, status and config typed: generator/records.py


def write_model_file(run_dir: str | Path, method: str, version: int, blob: dict[str, Any]) -> Path:
    """Write ``RUN/model.pt`` atomically: ``blob`` plus the method name and its model-file version."""
    from synthgen.generator.atomic import atomic_path

    path = Path(run_dir) / MODEL_FILE
    # Saved through a file object: torch names the archive's records after a path's file name (here a
    # random temporary name), which made model.pt's bytes, and the sha256 run.json records, differ
    # between identical runs; a file object gets the fixed record name "archive".
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as f:
        torch.save({**blob, "method": method, "format": version}, f)
    return path


def read_model_file(run_dir: str | Path, method: str, version: int) -> dict[str, Any]:
    """The blob :func:`write_model_file` wrote, refused (one line) when missing or of another method/version."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise SynthgenError(f"{path}: not found (the run has not finished; run the same command again to resume it)")
    blob = require_dict(load_torch_file(path, "model file"), path, "model file")
    if blob.get("method") != method or blob.get("format") != version:
        raise SynthgenError(
            f"{path}: expected a {method} model file of format {version}, "
            f"found {blob.get('method')!r} format {blob.get('format')!r}"
        )
    return blob


def load_model(run_dir: str | Path, device: torch.device | str = "cpu") -> AnomalyModel:
    """Load the trained model of a run folder with its method's registered loader.

    Each method registers its loader when its package is imported; ``trainers.methods`` imports
    every method, and the entry points (``trainers/cli.py``) import it. This module imports no
    method, so the methods can import it without a circle.
    """
    info = read_run_info(run_dir)
    method = info.get("method")
    if method not in _LOADERS:
        raise SynthgenError(
            f"{Path(run_dir) / RUN_FILE}: unknown method {method!r} (registered: {', '.join(sorted(_LOADERS)) or 'none'}; "
            "`import synthgen.trainers.methods` registers every method)"
        )
    try:
        return _LOADERS[method](Path(run_dir), torch.device(device))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, RuntimeError) as e:
        # the model file loaded as plain data (read_model_file) but its entries do not fit the method
        # (RecursionError: an output ensemble whose members lead back to itself; RuntimeError: torch's
        # load_state_dict on tensors of the wrong shape)
        raise SynthgenError(
            f"{Path(run_dir) / MODEL_FILE}: does not fit a {method} model ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None
