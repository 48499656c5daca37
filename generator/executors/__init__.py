"""Engines that run a build's shards (and a precompute's images) somewhere other than this process.

``synthgen build`` / ``synthgen precompute`` pick one with ``--executor``:

- ``local`` (default): this machine; ``--workers N`` processes (local.py).
- ``ray``: one Ray task per shard on a Ray cluster (ray_executor.py); heavy read-only inputs travel
  through Ray's object store once (shipped.py).

Each has ``build_shards(plan, shards, out_dir, progress)`` and runs the one per-shard function,
:func:`generator.render.build_one_shard`, which :func:`generator.pipeline.build` leaves to it.

Slurm and other batch schedulers need no executor: a job array runs ``--num-shards N --shard-index I``
and ``synthgen build --merge-only`` writes the manifest (examples/slurm/).
"""

EXECUTORS = ("local", "ray")
