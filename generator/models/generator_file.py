"""What kind of generator file a file is: read without executing code, told apart by its format tag.

Both LogicAL renderers save their generator as a torch file holding a plain dict whose ``format``
names it; this module reads that dict (``weights_only``) with one-line errors for anything else, for
:mod:`.inpaint`, :mod:`.e2i` and the renderer table in :mod:`.renderers` (which renderer a tag is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SynthgenError

#: the format tags of generator files: :mod:`.inpaint`'s and :mod:`.e2i`'s
INPAINT_FORMAT, E2I_FORMAT = "synthgen-inpaint-generator", "synthgen-e2i-generator"
FORMATS = (INPAINT_FORMAT, E2I_FORMAT)

#: what every "no usable generator" error tells the user to do: for the inpainting generator (--renderer
#: inpaint) and the full-image one (--renderer full)
INPAINT_HINT = (
    "leave out --e2i and the build trains one on the category's normal images (cached), or train one with "
    "`synthgen train-e2i --renderer inpaint ... --out DIR` and pass DIR/inpaint_generator.pt"
)
FULL_HINT = (
    "train one with `synthgen train-e2i --dataset DATASET --root ROOT --category CATEGORY --out DIR` "
    "and pass DIR/e2i_generator.pt"
)


def generator_file_payload(path: str | Path, hint: str) -> dict[str, Any]:
    """The dict inside a generator file, loaded without executing code; one-line errors otherwise."""
    from ..safe_load import load_torch_file  # torch: imported when a file is read, not by the CLI's listing

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
