"""The one exception type that means "the user gave us something wrong".

The CLI prints these as a single line (``synthgen: error: ...``) and exits non-zero, without a
traceback. Anything else that escapes is a bug in synthgen and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SynthgenError(Exception):
    """A user-facing error. The message must name the file or option and the problem, on one line."""

    def __init__(self, message: str):
        message = str(message)
        # A DataLoader worker's error is raised again in the parent as SynthgenError("Caught SynthgenError
        # in DataLoader worker process N.\nOriginal Traceback ...\ngenerator.errors.SynthgenError: MSG"):
        # keep only MSG, the line the user needs.
        if message.startswith("Caught SynthgenError") and "SynthgenError: " in message:
            message = message.rsplit("SynthgenError: ", 1)[1]
        one_line = " ".join(message.split())
        # A file name that is not UTF-8 reaches Python with surrogate escapes, which no terminal can
        # print: show them as \udcXX escapes rather than fail while reporting the error.
        super().__init__(one_line.encode("utf-8", "backslashreplace").decode("utf-8"))


def read_json_file(path: str | Path, what: str) -> Any:
    """The parsed JSON file ``path`` (a ``what``, e.g. "CAF table"), or a one-line SynthgenError naming
    the file and the problem (missing, a folder, too large, unreadable, not UTF-8, broken JSON, NaN).
    The one JSON reader is :func:`generator.records.load_json`; this name stays for the dataset readers."""
    from .records import load_json  # records imports this module

    return load_json(path, what)
