"""The ``synthgen`` command: generator/cli.py's commands, plus those that live in other parts of the package.

``bench`` trains detectors, so it lives in the trainers; generator/ never imports trainers/
(tests/test_imports.py), so the package top, which sits above both, adds it. It is loaded only when it
runs (the trainers import Lightning).
"""

from __future__ import annotations

import click

from .generator.cli import cli, main

__all__ = ["cli", "main"]


def _bench() -> click.Command:
    from .trainers.bench import command

    return command


cli.add_lazy_command("bench", _bench)

if __name__ == "__main__":
    main()
