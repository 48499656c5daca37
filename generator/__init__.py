"""synthgen generator: reads normal images, synthesizes anomalies, writes sharded HDF5 with manifests.

Data flows one way: dataset reader -> per-image precompute (edges, regions; cached) -> strategy ->
mask derivation -> shard writer -> manifest. Nothing here imports from ``trainers``.
"""

__version__ = "0.1.0"
