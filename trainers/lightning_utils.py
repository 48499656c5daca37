"""What every Lightning trainer shares: the run folder's life cycle, the Trainer it runs, versions.

Run folder (trainers/base.py): ``run.json`` is written when training starts (``status: training``,
the full config and the data provenance) and completed when the model is saved (``status:
complete``); ``checkpoints/last.ckpt`` is rewritten after every epoch and ``checkpoints/best.ckpt``
keeps the epoch with the lowest synthetic validation loss (when there is a validation set);
``logs/version_N/metrics.csv`` holds one CSV log per training session (a resumed run starts a new
version, so no earlier log is overwritten).

Resume: ``--resume`` continues from ``last.ckpt`` (epoch count, weights, optimiser and scheduler
state; the data order depends only on seed and epoch). The config must be the one the run started
with, except the keys in :data:`RUNTIME_KEYS` (where and how it runs, not what it computes); a
different ``--epochs`` would silently keep the old learning-rate milestones, so it is refused.

Precision: bf16 mixed precision on a CUDA device, float32 on the CPU (bf16 autocast on CPUs is
slow and changes the numbers the tests pin). Determinism: ``deterministic=True`` on the CPU; on a
GPU some kernels (bilinear upsampling's backward) have no deterministic version, so Lightning only
warns there.
"""

from __future__ import annotations

import platform
import time
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from synthgen.generator import __version__ as synthgen_version
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.safe_load import LIGHTNING_WEIGHTS_ONLY, check_lightning_checkpoint

from .base import MODEL_FILE, RUN_FILE, read_run_info, write_run_info
from .data import DEFAULT_VAL_FRACTION
from .options import DEVICES, cli

if TYPE_CHECKING:
    from .data import SynthgenDataModule

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_NAME = "best"  # -> checkpoints/best.ckpt
LOG_DIR = "logs"
#: Config keys that may differ between a run and its resumption.
RUNTIME_KEYS = frozenset({"device", "workers"})
#: --select: keep the last epoch, or the epoch with the lowest loss on held-out synthetic samples
SELECTIONS = ("last", "val")
VAL_MONITOR = "val/loss"
#: Lightning's default logging interval (steps), lowered for epochs shorter than that.
LOG_EVERY_N_STEPS = 50
#: DRAEM's train_DRAEM.py: MultiStepLR(milestones=[0.8 * epochs, 0.9 * epochs], gamma=0.2), used by
#: the reconstruction and LogicAL trainers (the DRAEM -> OmniAL -> LogicAL line trains with it).
MILESTONE_FRACTIONS = (0.8, 0.9)
LR_GAMMA = 0.2


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a device is a user error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SynthgenError("--device cuda: no CUDA device is available on this machine")
    if name not in ("cpu", "cuda"):
        raise SynthgenError(f"--device: expected auto, cpu or cuda, got {name!r}")
    return name


def draem_milestones(epochs: int) -> list[int]:
    """Epochs after which the learning rate is multiplied by :data:`LR_GAMMA`: 80% and 90% of ``epochs``.

    Rounded to whole epochs (DRAEM passes ``epochs * 0.8`` as a float, which an integer epoch counter
    never equals unless it is whole), at least 1, duplicates merged (short runs).
    """
    return sorted({max(1, round(f * epochs)) for f in MILESTONE_FRACTIONS})


def library_versions() -> dict[str, str]:
    import h5py
    import numpy

    return {
        "synthgen": synthgen_version,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
    }


def _config_differences(old: dict, new: dict) -> list[str]:
    keys = (set(old) | set(new)) - RUNTIME_KEYS
    return sorted(k for k in keys if old.get(k) != new.get(k))


#: The options every shard-trained Lightning command shares (reconstruction, logical; last on their
#: command lines): field name -> (default, command-line description). See :func:`shard_run_field`.
_SHARD_RUN_OPTIONS = {
    "val_fraction": (DEFAULT_VAL_FRACTION, cli("Share of shard samples held out for synthetic validation.")),
    "select": ("last", cli("Model to keep: the last epoch, or the lowest synthetic validation loss.", choices=SELECTIONS)),
    "device": ("auto", cli(choices=DEVICES)),
    "workers": (2, cli("DataLoader worker processes.")),
    "resume": (False, cli("Continue the run in --out from checkpoints/last.ckpt.")),
    "progress": (True, cli("No progress bar or model summary.", name="--quiet", negate=True)),
}


def shard_run_field(name: str) -> Any:
    """An options field every shard-trained Lightning command shares: ``val_fraction``, ``select``,
    ``device``, ``workers``, ``resume`` or ``progress`` (``--quiet``)."""
    default, metadata = _SHARD_RUN_OPTIONS[name]
    return field(default=default, metadata=metadata)


def start_run(run_dir: str | Path, method: str, config: dict, provenance: dict, resume: bool) -> Path | None:
    """Prepare the run folder; returns the checkpoint to resume from (None for a fresh run).

    A fresh run refuses a folder that already holds a run; a resumed one needs the same method and
    config (up to :data:`RUNTIME_KEYS`) and a ``last.ckpt``.
    """
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume:
        info = read_run_info(run_dir)
        if info.get("method") != method:
            raise SynthgenError(f"--resume: {run_dir} is a {info.get('method')!r} run, not {method!r}")
        changed = _config_differences(info.get("config", {}), config)
        if changed:
            key = changed[0]
            old, new = info.get("config", {}).get(key), config.get(key)
            raise SynthgenError(f"--resume: option {key} is {new!r} but the run was started with {old!r}")
        if not last.is_file():
            raise SynthgenError(f"--resume: {last} not found (the run has not finished an epoch yet)")
        return last
    if ((run_dir / RUN_FILE).exists() or (run_dir / CHECKPOINT_DIR).exists()) and not _abandoned_claim(run_dir):
        raise SynthgenError(f"--out: {run_dir} already holds a training run; pass --resume to continue it, or choose another folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_info(run_dir, {"method": method, "status": "training", "config": config, **provenance, "versions": library_versions()})
    return None


def _abandoned_claim(run_dir: Path) -> bool:
    """True when ``run_dir`` holds only the claim of a run that failed before its first epoch ended
    (run.json says "training", no checkpoint, no model): a bad input found after ``--out`` was claimed.
    The corrected command may then take the folder over; nothing trained is lost."""
    if (run_dir / CHECKPOINT_DIR).exists() or (run_dir / MODEL_FILE).exists():
        return False
    info = read_run_info(run_dir)  # a run.json that is a folder or damaged: one line, never taken over
    return info["status"] == "training"


def finish_run(run_dir: str | Path, updates: dict[str, Any], complete: bool) -> None:
    """Record the saved model in run.json, adding ``updates`` (model hash, selected epoch ...).

    complete: every planned epoch ran (status ``complete``); else training stopped early (a callback
    or an error ended it) and the status is ``stopped``: ``--resume`` finishes it.
    """
    info = read_run_info(run_dir)
    info.update(updates, status="complete" if complete else "stopped", versions=library_versions())
    write_run_info(run_dir, info)


def shard_provenance(data: "SynthgenDataModule") -> dict:
    """What run.json records about the training shards of a fitted SynthgenDataModule, besides the config."""
    manifest = data.manifest
    return {
        "seed": data.seed,
        "data": {
            "shards_config_hash": manifest["config_hash"],
            "dataset": manifest["dataset"]["name"],
            "category": manifest["dataset"]["category"],
            "strategies": manifest["strategies"],
            "num_samples": manifest["totals"]["samples"],
            "synthgen_version": manifest["synthgen_version"],
        },
        "split": data.split_summary(),
    }


def trainer_arguments(
    run_dir: str | Path,
    *,
    epochs: int,
    device: str,
    monitor: str | None,
    steps_per_epoch: int,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    checkpoint_class: type[ModelCheckpoint] = ModelCheckpoint,
) -> tuple[dict, ModelCheckpoint]:
    """(keyword arguments of a single-device Trainer writing checkpoints and CSV logs into ``run_dir``,
    its checkpoint callback). Plain arguments, so that anomalib's Engine can build the Trainer from
    them as well as :func:`make_trainer`.

    monitor: the logged metric whose minimum is kept as best.ckpt (None: only last.ckpt).
    checkpoint_class: a subclass of Lightning's ModelCheckpoint (anomalib's Engine adds its own unless
    the callbacks already hold one of anomalib's class).
    """
    if epochs < 1:
        raise SynthgenError(f"--epochs: must be at least 1, got {epochs}")
    run_dir = Path(run_dir)
    checkpoint = checkpoint_class(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=BEST_NAME,
        monitor=monitor,
        mode="min",
        save_top_k=1 if monitor else 0,
        save_last=True,
        enable_version_counter=False,
    )
    on_gpu = device == "cuda"
    arguments = dict(
        default_root_dir=run_dir,
        max_epochs=epochs,
        accelerator="gpu" if on_gpu else "cpu",
        devices=1,
        precision="bf16-mixed" if on_gpu else "32-true",
        deterministic="warn" if on_gpu else True,
        logger=CSVLogger(run_dir, name=LOG_DIR),
        callbacks=[checkpoint, *callbacks],
        log_every_n_steps=max(1, min(LOG_EVERY_N_STEPS, steps_per_epoch)),
        enable_progress_bar=progress,
        enable_model_summary=progress,
    )
    return arguments, checkpoint


def make_trainer(run_dir: str | Path, **kwargs) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Lightning Trainer with :func:`trainer_arguments` (same keywords) and its checkpoint callback."""
    arguments, checkpoint = trainer_arguments(run_dir, **kwargs)
    return L.Trainer(**arguments), checkpoint


def check_training_options(select: str, lr: float) -> None:
    """The options every Lightning trainer shares, checked before any data is read."""
    if select not in SELECTIONS:
        raise SynthgenError(f"--select: expected one of {', '.join(SELECTIONS)}, got {select!r}")
    if not lr > 0:
        raise SynthgenError(f"--lr: must be positive, got {lr}")


def fit_select_and_finish(
    run_dir: Path,
    trainer: L.Trainer | None,
    checkpoint: ModelCheckpoint,
    module: L.LightningModule,
    data: "SynthgenDataModule",
    *,
    resume_from: Path | None,
    select: str,
    epochs: int,
    save_model: Callable[[L.LightningModule], Path],
    fit: Callable[[L.LightningModule, L.LightningDataModule, Path | None], L.Trainer] | None = None,
) -> None:
    """Train, load the selected epoch's weights (``select == "val"``: best.ckpt), write model.pt with
    ``save_model(module)`` and record the outcome in run.json.

    ``fit(module, data, resume_from)`` trains instead of ``trainer.fit`` and returns the Trainer it used
    (anomalib's Engine builds its own)."""
    if resume_from is not None:  # plain data that fits, before Lightning reads it (whether or not the caller checked)
        check_lightning_checkpoint(resume_from, module)
    started = time.perf_counter()
    if fit is None:
        trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=LIGHTNING_WEIGHTS_ONLY)
    else:
        trainer = fit(module, data, resume_from)
    elapsed = time.perf_counter() - started

    selected_epoch = trainer.current_epoch
    if select == "val":
        best = check_lightning_checkpoint(checkpoint.best_model_path, module)
        module.load_state_dict(best["state_dict"])
        selected_epoch = int(best["epoch"]) + 1  # epochs completed when it was saved
    model_path = save_model(module)
    finish_run(
        run_dir,
        {
            "epochs_trained": trainer.current_epoch,
            "model": {"file": MODEL_FILE, "sha256": sha256_file(model_path), "selected": select, "epochs": selected_epoch},
            "train_seconds_this_session": round(elapsed, 1),
        },
        complete=trainer.current_epoch >= epochs,
    )
