"""Every training method, in one list: importing this module registers each method's loader.

Each method is a package under trainers/ that exposes a click ``command`` (its ``synthgen-train``
subcommand, built from the options dataclass in its ``options.py``; trainers/cli.py adds every one
listed here), imports no other method (shared code lives in trainers/), and registers its model loader with
``@trainers.base.register_loader(METHOD)`` when it is imported. This table sits at the top: the
entry points (trainers/cli.py) import it, nothing below does, so ``trainers.base.load_model`` finds
every loader registered without base importing its members.

Adding a method is one line: import its package below and append it to :data:`METHODS`.
"""

from __future__ import annotations

from . import anomalib, ensemble, glass, logical, pbas, reconstruction

METHODS = (
    reconstruction,
    logical,
    pbas,
    ensemble,
    glass,
    anomalib,  # anomalib's own models fed by shards (the library is an optional extra, imported on use)
)
