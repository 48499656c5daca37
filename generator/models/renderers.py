"""The two renderers of the LogicAL strategies, and which one a generator file belongs to.

- ``inpaint`` (default): edge-guided inpainting of the edit region inside the real photo
  (:mod:`.inpaint`); trainable on a CPU, and a build trains and caches one when given no file.
- ``full``: LogicAL's own configuration, the pix2pixHD/DeepSIM generator that renders the whole photo
  from its edge map (:mod:`.e2i`); a GPU's job, trained with ``synthgen train-e2i --renderer full``.

A generator file says which renderer it is for (its ``format`` tag); a file of the other renderer,
or not a generator at all, is a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import SynthgenError

RENDERERS = ("inpaint", "full")
DEFAULT_RENDERER = "inpaint"
#: format tag of a generator file -> its renderer (e2i_train.GENERATOR_FORMAT, inpaint.FORMAT)
FORMATS = {"synthgen-inpaint-generator": "inpaint", "synthgen-e2i-generator": "full"}


def generator_file_payload(path: str | Path, hint: str) -> dict[str, Any]:
    """The dict inside a generator file, loaded without executing code; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SynthgenError(f"{path}: generator file not found; {hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, not a torch file at all
        raise SynthgenError(f"{path}: not a readable generator file ({type(e).__name__}); {hint}") from None
    if not isinstance(payload, dict) or payload.get("format") not in FORMATS:
        raise SynthgenError(f"{path}: not a synthgen generator file; {hint}")
    return payload


def check_renderer(name: str) -> str:
    if name not in RENDERERS:
        raise SynthgenError(f"--renderer: must be one of {', '.join(RENDERERS)}, got {name!r}")
    return name
