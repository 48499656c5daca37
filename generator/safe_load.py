"""Loading a PyTorch file a user can be handed (weights, checkpoints, model files): data, never code.

``torch.load`` unpickles, and a pickle can run any code it names. Every file synthgen and its trainers
read back (PiDiNet/SAM/VGG/backbone weights, e2i generator files, ``model.pt`` of a run, Lightning and
plain-loop ``last.ckpt``/``best.ckpt`` for ``--resume``) goes through :func:`load_torch_file`, which
loads with ``weights_only=True``: tensors, numbers, strings and plain containers only. A file that
names any other Python object is refused before that object is built, so its code never runs.
Lightning's own resume loading gets ``weights_only=True`` too (:data:`LIGHTNING_WEIGHTS_ONLY`).

Every failure is one line naming the file: missing, a folder, truncated, random bytes, a pickle that
needs code, or (:func:`load_state_dict_checked`) weights whose names or shapes do not fit the network.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import SynthgenError

#: Pass as ``trainer.fit(..., weights_only=LIGHTNING_WEIGHTS_ONLY)``: Lightning's checkpoint loading
#: otherwise leaves the choice to torch's default, which an environment variable can turn off.
LIGHTNING_WEIGHTS_ONLY = True


def load_torch_file(path: str | Path, what: str) -> Any:
    """The contents of the PyTorch file ``path`` (a ``what``, e.g. "training checkpoint"), loaded onto the
    CPU with ``weights_only=True``; a one-line SynthgenError when it is missing, unreadable, or would
    need code to unpickle."""
    path = Path(path)
    if not path.exists():
        raise SynthgenError(f"{path}: {what} not found")
    if not path.is_file():
        raise SynthgenError(f"{path}: {what} is a folder, not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # the weights-only unpickler met a class or function it will not build
            raise SynthgenError(
                f"{path}: {what} refused: it holds Python objects other than tensors and plain data, and "
                f"loading them could run code ({_global_named(e)})"
            ) from None
        raise SynthgenError(f"{path}: not a readable {what} ({_first_line(e)})") from None
    except MemoryError:
        raise SynthgenError(f"{path}: not a readable {what} (it claims more memory than this machine has)") from None
    except Exception as e:  # noqa: BLE001 - truncated zips, random bytes: torch raises RuntimeError, EOFError, ValueError, KeyError ...
        raise SynthgenError(f"{path}: not a readable {what} ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _global_named(error: BaseException) -> str:
    """What torch's weights-only refusal says the file asked for, e.g. ``it names posix.system``."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return f"it names {found.group(1)}" if found else _first_line(error)


def require_dict(blob: Any, path: str | Path, what: str, keys: tuple[str, ...] = ()) -> dict:
    """``blob`` when it is a dict holding ``keys``; else a one-line error naming the file."""
    if not isinstance(blob, dict):
        raise SynthgenError(f"{path}: not a {what} (holds a {type(blob).__name__}, expected a dict)")
    missing = [k for k in keys if k not in blob]
    if missing:
        raise SynthgenError(f"{path}: not a {what} (no {missing[0]!r} entry)")
    return blob


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], got: Any, *, allow_missing: tuple[str, ...] = ()) -> str | None:
    """Why the state dict ``got`` does not fit ``expected`` (a module's ``state_dict()``), or None.

    allow_missing: key prefixes that may be absent from ``got`` (frozen parts loaded elsewhere).
    """
    if not isinstance(got, Mapping):
        return f"weights are a {type(got).__name__}, not a dict of tensors"
    for key, value in got.items():
        if key not in expected:
            return f"unexpected weight {str(key)[:80]!r}"
        if not isinstance(value, torch.Tensor):
            return f"weight {key!r} is a {type(value).__name__}, not a tensor"
        if tuple(value.shape) != tuple(expected[key].shape):
            return f"weight {key!r} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
    for key in expected:
        if key not in got and not key.startswith(allow_missing or ("\0",)):
            return f"weight {key!r} is missing"
    return None


def load_state_dict_checked(module: torch.nn.Module, state: Any, path: str | Path, what: str,
                            *, allow_missing: tuple[str, ...] = ()) -> None:
    """``module.load_state_dict(state)`` after checking names and shapes (:func:`state_dict_mismatch`);
    a mismatch is a one-line error naming the file instead of torch's multi-line RuntimeError."""
    problem = state_dict_mismatch(module.state_dict(), state, allow_missing=allow_missing)
    if problem:
        raise SynthgenError(f"{path}: {what} does not fit the network: {problem}")
    module.load_state_dict(state, strict=not allow_missing)


def check_lightning_checkpoint(path: str | Path, module: torch.nn.Module) -> dict:
    """A Lightning checkpoint to resume ``module`` from, checked before Lightning sees it: loadable as
    plain data, holding Lightning's entries, with weights that fit ``module``. Returns its contents
    (the caller may compare its hyper-parameters). Resume with
    ``trainer.fit(..., ckpt_path=path, weights_only=LIGHTNING_WEIGHTS_ONLY)``."""
    what = "training checkpoint"
    blob = require_dict(load_torch_file(path, what), path, what, ("state_dict", "epoch", "global_step"))
    problem = state_dict_mismatch(module.state_dict(), blob["state_dict"])
    if problem:
        raise SynthgenError(f"{path}: {what} does not fit this run's network: {problem}")
    return blob
