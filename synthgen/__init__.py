"""synthgen: offline synthetic-anomaly datasets (sharded HDF5 + manifests) and the trainers that consume them.

The public API is at this top (``synthgen/api.py``; README "Python API")::

    import synthgen
    [result] = synthgen.build(["draem", "cutpaste"], textures="perlin", out="out/demo")
    build = synthgen.open_build(result.out_dir)      # .manifest (typed record), .samples() (torch Dataset)

One import package. Its parts live in the repository's top-level folders and are installed under this name:

- ``synthgen.generator``  everything that makes shards (readers, precompute, strategies, writer, verify, export, publish)
- ``synthgen.trainers``   localization networks that consume shards, metrics and evaluation
- ``synthgen.manifests``  the manifest JSON Schema and the recipes of benchmark datasets
"""

from . import api
from .api import *  # noqa: F403  (the public API: api.__all__)
from .generator import __version__

__all__ = [*api.__all__, "__version__"]
