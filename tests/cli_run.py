"""Run a click ``main`` in-process the way a user runs the command: (exit status, stdout, stderr)."""

from __future__ import annotations

from collections.abc import Callable


def run_main(main: Callable[[list[str]], None], argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)``'s exit status (0 when it returns) and what it printed, read from pytest's ``capsys``."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
