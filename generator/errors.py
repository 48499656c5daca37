"""The one exception type that means "the user gave us something wrong".

The CLI prints these as a single line (``synthgen: error: ...``) and exits non-zero, without a
traceback. Anything else that escapes is a bug in synthgen and keeps its traceback.
"""

from __future__ import annotations

import json
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


#: Largest JSON record parsed (the manifest has its own, larger bound in shards/untrusted.py).
MAX_RECORD_BYTES = 16 << 20


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a record may hold")


def parse_json(text: str | bytes, where: str | Path, what: str) -> Any:
    """``text`` parsed as JSON, refusing NaN and +-Infinity (which Python's json would accept and every
    bound would then let through). One-line SynthgenError naming ``where`` otherwise."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as e:  # RecursionError: nesting
        raise SynthgenError(f"{where}: cannot read the {what} ({e})") from None


def load_json(path: str | Path, what: str, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """The JSON document in ``path``: a one-line SynthgenError when it is missing, a folder, larger than
    ``max_bytes``, unreadable or not JSON."""
    path = Path(path)
    if path.is_dir():
        raise SynthgenError(f"{path}: the {what} is a folder, not a file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SynthgenError(f"{path}: {what} not found") from None
    except OSError as e:
        raise SynthgenError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if size > max_bytes:
        raise SynthgenError(f"{path}: {what} of {size} bytes is larger than any synthgen writes "
                            f"({max_bytes} at most); refusing to parse it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SynthgenError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    return parse_json(data, path, what)


def read_json_file(path: str | Path, what: str) -> Any:
    """:func:`load_json` under the name the dataset readers use (CAF table, defects config)."""
    return load_json(path, what)
