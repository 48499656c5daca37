"""The augmentation framework's per-class selection (``--strategy caf``).

Lin & Yan (AAAI 2024) argue that one augmentation is not anomalous for every class, and select per
class (their Fig. 1): transparent and opaque anomalies always; NDAA only where a change of relative
position (a bend, a distortion) is anomalous; rotation, presented as *normal*, only where the class
allows rotation. The paper does not publish its table, so synthgen ships its own
(``caf_table.json`` beside this file; its ``_comment`` and each row's ``why`` say how the row was
derived). A user may override rows with their own JSON file of the same form::

    {"my_part": {"strategies": ["transparent", "opaque", "ndaa"], "why": "..."}}

Rows of the override replace the shipped rows of the same category; the others stay. Category
names match case-insensitively; an unknown category uses the ``default`` row.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SynthgenError, read_json_file
from .base import strategy_names

TABLE_PATH = Path(__file__).with_name("caf_table.json")
DEFAULT_ROW = "default"


def _read_table(path: Path) -> dict[str, list[str]]:
    """Parse and check one table file: {category: {"strategies": [names...], "why": "..."}}."""
    raw = read_json_file(path, "CAF table")
    if not isinstance(raw, dict):
        raise SynthgenError(f"{path}: a CAF table must be a JSON object of category rows")
    known = set(strategy_names())
    table: dict[str, list[str]] = {}
    for category, row in raw.items():
        if category.startswith("_"):  # "_comment" and other documentation keys
            continue
        names = row.get("strategies") if isinstance(row, dict) else None
        if not isinstance(names, list) or not names:
            raise SynthgenError(f"{path}: row '{category}' needs a non-empty \"strategies\" list")
        for name in names:
            if name not in known:
                raise SynthgenError(
                    f"{path}: row '{category}': unknown strategy {name!r}; known: {', '.join(sorted(known))}"
                )
        table[category.lower()] = list(dict.fromkeys(names))
    return table


def load_caf_table(override: str | Path | None = None) -> dict[str, list[str]]:
    """The shipped table, with the rows of ``override`` (a user JSON file) replacing its own."""
    table = _read_table(TABLE_PATH)
    if override is not None:
        table.update(_read_table(Path(override)))
    return table


def caf_strategies(category: str, table_path: str | Path | None = None) -> list[str]:
    """The strategies the framework selects for ``category`` (the ``default`` row when unlisted)."""
    table = load_caf_table(table_path)
    return list(table.get(category.lower(), table[DEFAULT_ROW]))
