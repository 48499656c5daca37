"""synthgen: offline synthetic-anomaly datasets (sharded HDF5 + manifests) and the trainers that consume them.

One import package. Its parts live in the repository's top-level folders and are installed under this name:

- ``synthgen.generator``  everything that makes shards (readers, precompute, strategies, writer, verify, export, publish)
- ``synthgen.trainers``   localization networks that consume shards, metrics and evaluation
- ``synthgen.manifests``  the manifest JSON Schema and the recipes of benchmark datasets
"""

from .generator import __version__

__all__ = ["__version__"]
