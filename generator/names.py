"""The one name rule for every name that becomes part of a file or folder name.

Strategy, category, dataset, split and source names end up in shard file names and in exported folder
trees, so a name like ``../x`` or ``/abs/x`` would be a path traversal. The rule is checked where names
are written (generator/config.py, the dataset readers) and where a build is read
(generator/shards/untrusted.py), so a build never holds a name its readers refuse. This module imports
nothing from synthgen but its error type, so every layer can use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .errors import SynthgenError

#: Longest allowed name (a single path component on every common file system takes 255 bytes; a shard
#: file name holds the dataset and category names, so each is kept well below that).
NAME_MAX_LEN = 100
#: Characters a name may not hold: path separators, and what Windows file names or shells treat specially.
FORBIDDEN_CHARACTERS = frozenset('/\\:*?"<>|')
#: A shard's file name: ``{dataset}-{category}-{split}-{i:05d}-of-{n:05d}.h5`` (format.shard_name).
SHARD_FILE_PATTERN = re.compile(r"^.+-[0-9]{5}-of-[0-9]{5}\.h5$")
#: A source id is ``split/defect/stem``; each of its parts follows the name rule.
SOURCE_ID_MAX_PARTS = 8


def name_problem(name: Any) -> str | None:
    """Why ``name`` breaks the name rule, or None when it follows it.

    The rule: a non-empty string of at most :data:`NAME_MAX_LEN` printable characters, none of them in
    :data:`FORBIDDEN_CHARACTERS`, without ``..``, not starting with ``.`` or ``-`` (hidden files,
    options) and not starting or ending with white space. Letters of any script are allowed: a
    category folder may be called ``Schraube`` or ``ねじ``.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if not name.isprintable():
        return "contains a control or other non-printable character"
    bad = sorted(set(name) & FORBIDDEN_CHARACTERS)
    if bad:
        return f"contains {bad[0]!r}"
    if ".." in name:
        return "contains '..'"
    if name[0] in ".-":
        return f"starts with {name[0]!r}"
    if name != name.strip():
        return "starts or ends with white space"
    if len(name) > NAME_MAX_LEN:
        return f"is longer than {NAME_MAX_LEN} characters"
    return None


def shown(value: Any) -> str:
    """``value`` for an error message: repr (so control characters stay visible), at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_name(name: Any, what: str, where: str | Path) -> str:
    """``name`` when it follows the name rule (:func:`name_problem`), else a one-line SynthgenError
    ``"{where}: {what} name {name!r} {problem}"``. ``what`` says which name (strategy, category ...);
    ``where`` the file or option it came from."""
    problem = name_problem(name)
    if problem is not None:
        raise SynthgenError(f"{where}: {what} name {shown(name)} {problem}")
    return name


def check_names(names: Iterable[Any], what: str, where: str | Path) -> None:
    """:func:`check_name` on each distinct value of ``names``."""
    for name in set(names):
        check_name(name, what, where)


def check_source_id(source_id: Any, where: str | Path) -> str:
    """A dataset-relative source id (``train/good/007``): 1 to :data:`SOURCE_ID_MAX_PARTS` parts joined
    by ``/``, each following the name rule."""
    if not isinstance(source_id, str):
        raise SynthgenError(f"{where}: source id {shown(source_id)} is not a string")
    parts = source_id.split("/")
    if len(parts) > SOURCE_ID_MAX_PARTS:
        raise SynthgenError(f"{where}: source id {shown(source_id)} has more than {SOURCE_ID_MAX_PARTS} parts")
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            raise SynthgenError(f"{where}: source id {shown(source_id)}: part {shown(part)} {problem}")
    return source_id


def check_shard_file_name(name: Any, where: str | Path) -> str:
    """A shard file name as a manifest lists it: one name (no folders) of the form
    ``{dataset}-{category}-{split}-{i:05d}-of-{n:05d}.h5``."""
    check_name(name, "shard file", where)
    if not SHARD_FILE_PATTERN.match(name):
        raise SynthgenError(f"{where}: shard file name {shown(name)} is not NAME-iiiii-of-nnnnn.h5")
    return name
