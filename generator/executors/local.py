"""The local executor: a build's shards on this machine, in this process or in a pool of worker processes.

``--workers 1`` (default) renders every shard in this process with one strategy context (sources,
textures and generator loaded once) and a progress bar per sample; ``--workers N`` runs
:func:`generator.render.build_one_shard` in N processes (loky), each building whole shards. Both give
the same bytes (render.py: one intra-op thread per renderer).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from .. import preflight
from ..lifetime import die_with_parent
from ..plan import BuildPlan
from ..render import build_one_shard, build_shard, make_context, render_threads


class LocalExecutor:
    """Builds shards on this machine: ``workers`` processes, or this process when it is 1."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def build_shards(self, plan: BuildPlan, shards: Sequence[int], out_dir: Path, progress: bool) -> None:
        workers = max(1, min(self.workers, len(shards)))
        if workers == 1:
            self._build_in_process(plan, shards, out_dir, progress)
        else:
            # every worker renders a batch at once: N batches must fit in memory
            preflight.check_memory(plan.config.image_size, plan.config.batch_size, workers)
            self._build_in_workers(plan, shards, out_dir, workers, progress)

    @staticmethod
    def _build_in_process(plan: BuildPlan, shards: Sequence[int], out_dir: Path, progress: bool) -> None:
        total = sum(len(plan.shard_specs(s)) for s in shards)
        with render_threads(plan.config.device), tqdm(total=total, desc="samples", unit="sample", disable=not progress) as bar:
            ctx = make_context(plan, torch.device(plan.config.device))
            for s in shards:
                build_shard(plan, s, out_dir, ctx, bar)

    @staticmethod
    def _build_in_workers(plan: BuildPlan, shards: Sequence[int], out_dir: Path, workers: int, progress: bool) -> None:
        from joblib import Parallel, delayed

        jobs = (delayed(build_one_shard)(plan, s, out_dir) for s in shards)
        # Each worker is tied to this process at start-up: a killed build leaves no worker running.
        results = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered",
                           initializer=die_with_parent, initargs=(os.getpid(),))(jobs)
        for _ in tqdm(results, total=len(shards), desc="shards", unit="shard", disable=not progress):
            pass
