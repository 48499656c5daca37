"""The log, checkpoints and data order of the plain (non-Lightning) training loops: PBAS, GLASS and the
ensemble's discriminator.

    epoch_log = EpochLog(log_path, fields, run_dir=out, checkpoint=checkpoint, progress=True)
    for epoch in range(epoch_log.next_epoch, epochs):   # 0 for a fresh run, after the last logged one on resume
        ...
        epoch_log.end_epoch(row, state)                  # CSV row, progress line, checkpoint of state

After every epoch the CSV log (all rows so far) and ``checkpoints/last.ckpt`` (``state``: networks,
optimisers, random generator states ..., plus the rows) are rewritten atomically, so an interruption
leaves the previous epoch's whole files. :func:`trainers.lightning_utils.start_run` returns that
checkpoint on ``--resume``; :func:`read_epoch_checkpoint` reads it back.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from synthgen.generator.atomic import atomic_path
from synthgen.generator.errors import SynthgenError
from synthgen.generator.imageio import sha256_file
from synthgen.generator.safe_load import load_torch_file, require_dict

from .base import MODEL_FILE
from .lightning_utils import CHECKPOINT_DIR, LAST_CHECKPOINT, finish_run


def epoch_plan(steps_per_epoch: int, epochs: int, steps: int | None) -> list[int]:
    """Optimizer steps of each epoch: ``epochs`` whole epochs, or, with a budget of ``steps``, as
    many epochs as it takes, the last one cut short. A budget in steps is the same for every build (a
    GLASS epoch walks the build's anomalous samples, so ``--epochs`` means a different budget per build)."""
    if steps is None:
        return [steps_per_epoch] * epochs
    if steps < 1:
        raise SynthgenError(f"--steps: must be at least 1, got {steps}")
    whole, rest = divmod(steps, steps_per_epoch)
    return [steps_per_epoch] * whole + ([rest] if rest else [])


def read_epoch_checkpoint(path: str | Path) -> dict[str, Any]:
    return require_dict(load_torch_file(path, "training checkpoint"), path, "training checkpoint", ("log",))


class EpochLog:
    """One CSV row and one checkpoint per epoch; continues the log of a checkpoint it resumes from."""

    def __init__(self, path: str | Path, fields: Sequence[str], *, run_dir: str | Path | None = None,
                 checkpoint: dict[str, Any] | None = None, progress: bool = False):
        self.path = Path(path)
        self.fields = list(fields)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.rows: list[dict[str, Any]] = list(checkpoint["log"]) if checkpoint is not None else []
        self._write_csv()

    @property
    def next_epoch(self) -> int:
        """The 0-based epoch to train next."""
        return len(self.rows)

    def end_epoch(self, row: dict[str, Any], state: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write_csv()
        if self.run_dir is not None:
            with atomic_path(self.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, suffix=".ckpt") as tmp:
                torch.save({**state, "log": self.rows}, tmp)
        if self.progress:
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    def _write_csv(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.fields)
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_path(self.path, suffix=".csv") as tmp:
            tmp.write_text(text.getvalue())


def finish_plain_run(run_dir: str | Path, model_path: Path, epochs: int, started: float, extras: dict[str, Any],
                     plan: list[int] | None = None) -> None:
    """run.json of a plain loop that ran all its epochs: the last epoch is the model (``started``: the
    session's time.perf_counter() at its start; ``plan``: the steps of each epoch, see :func:`epoch_plan`)."""
    finish_run(run_dir, {
        "epochs_trained": epochs,
        **({"optimizer_steps": sum(plan), "steps_per_epoch": plan[0]} if plan else {}),
        **extras,
        "model": {"file": MODEL_FILE, "sha256": sha256_file(model_path), "selected": "last", "epochs": epochs},
        "train_seconds_this_session": round(time.perf_counter() - started, 1),
    }, complete=True)


def order_for_epoch(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of an epoch: a pure function of (seed, epoch), so a resumed run sees the
    order an uninterrupted one would."""
    return np.random.default_rng([seed, 1, epoch]).permutation(n)
