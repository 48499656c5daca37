"""What kind of generator file a file is: read without executing code, told apart by its format tag.

Both LogicAL renderers save their generator as a torch file holding a plain dict whose ``format``
names it; this module reads that dict (``weights_only``) with one-line errors for anything else, for
:mod:`.inpaint`, :mod:`.e2i` and the dispatch in :mod:`.renderers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SynthgenError
from ..safe_load import load_torch_file

#: format tag of a generator file -> its renderer (e2i.GENERATOR_FORMAT, inpaint.FORMAT)
FORMATS = {"synthgen-inpaint-generator": "inpaint", "synthgen-e2i-generator": "full"}


def generator_file_payload(path: str | Path, hint: str) -> dict[str, Any]:
    """The dict inside a generator file, loaded without executing code; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SynthgenError(f"{path}: generator file not found; {hint}")
    try:
        payload = load_torch_file(path, "generator file")
    except SynthgenError as e:  # truncated zip, pickle with code, not a torch file at all
        raise SynthgenError(f"{e}; {hint}") from None
    if not isinstance(payload, dict) or payload.get("format") not in FORMATS:
        raise SynthgenError(f"{path}: not a synthgen generator file; {hint}")
    return payload
