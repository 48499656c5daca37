"""``--executor ray``: every shard of a build, and every chunk of a precompute, is one Ray task.

Ray schedules; synthgen only says what each task needs and collects the results.

- Cluster: the one at ``--ray-address`` (``ray start --head`` on one node, ``ray start --address``
  on the others), else a local one started for the command and stopped after it. A session that has
  already called ``ray.init`` (a notebook, the tests) keeps its own cluster.
- Resources: a task asks for one GPU when the build renders on CUDA (one shard per GPU at a time),
  else for one CPU (each renders with one intra-op thread, like a local worker).
- Inputs: the build plan and the heavy read-only inputs (ShippedInputs: prepared sources, texture
  files, edge and region maps, the generator network) are put in the object store once; tasks get
  references, so each node fetches them once whatever the number of tasks.
- Output: a build task writes its shard and sidecar into ``--out`` itself, atomically, exactly as a
  local worker does, so ``--out`` must be a folder every node sees (a shared filesystem, as for a
  Slurm job array); the manifest is merged once at the end by the same code as a local build. A
  precompute task returns its maps, and this process writes them into its own cache (no shared
  folder needed), where the build that follows finds them.
- Failures: a task whose worker process or node dies is run again (``max_retries``), so is one that
  hit an OSError (a shared filesystem's hiccup); a SynthgenError (bad input) stops the command with
  its one line. Ctrl-C cancels the tasks still running; finished shards and maps stay, and the same
  command resumes from them.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..errors import SynthgenError
from ..pipeline import BuildPlan, _worker_build
from ..precompute import EDGES_KIND, REGIONS_KIND, MapMaker, PrecomputeReport, missing_maps, precompute
from ..cache import MapCache
from .shipped import ShippedInputs

INSTALL_HINT = "--executor ray: Ray is not installed; pip install 'synthgen[ray]' (or pip install ray)"


def import_ray():
    """The ray module, or a one-line error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise SynthgenError(INSTALL_HINT) from None
    return ray


def task_resources(device: str) -> dict[str, float]:
    """What one task asks Ray for, given the device it computes on."""
    return {"num_cpus": 1, "num_gpus": 1} if device.startswith("cuda") else {"num_cpus": 1}


class RayExecutor:
    """Runs a build's shards and a precompute's images as Ray tasks (module docstring).

    address: a running cluster (``host:port`` or ``auto``); None starts a local one unless this
    process is already connected. resources: what each task asks for, instead of
    :func:`task_resources` (e.g. ``{"num_gpus": 0.5}`` to run two shards per GPU).
    images_per_task: how many source images one precompute task computes maps for. Default: what
    the edge detector runs in one forward pass on its device, so the tasks' batches are a local
    run's and the maps are byte-identical to it (the convolution algorithm, chosen per batch
    size, may round a pixel of another batch size one level differently, as in a resumed local run).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        resources: dict[str, float] | None = None,
        max_retries: int = 3,
        images_per_task: int | None = None,
    ):
        self.ray = import_ray()
        self.address = address
        self.resources = resources
        self.max_retries = max_retries
        self.images_per_task = images_per_task

    def _remote(self, function, device: str):
        options = self.resources if self.resources is not None else task_resources(device)
        return self.ray.remote(function).options(max_retries=self.max_retries, retry_exceptions=[OSError], **options)

    def build_shards(self, plan: BuildPlan, shards: Sequence[int], out_dir: Path, progress: bool) -> None:
        """Build ``shards`` of ``plan`` into ``out_dir``; returns once every one is written."""
        ray = self.ray
        with self._connected():
            plan_ref = ray.put(plan)
            shipped_ref = ray.put(ShippedInputs.collect(plan))
            task = self._remote(_worker_build, plan.config.device)
            refs = [task.remote(plan_ref, s, out_dir, shipped_ref) for s in shards]
            total = sum(len(plan.shard_specs(s)) for s in shards)
            with tqdm(total=total, desc="samples", unit="sample", disable=not progress) as bar:
                for sidecar in self._as_completed(refs):
                    _check_visible(out_dir, sidecar)
                    bar.update(sidecar["num_samples"])

    def precompute(
        self, images: np.ndarray, image_ids: Sequence[str], maker: MapMaker, *, progress: bool = False
    ) -> PrecomputeReport:
        """Compute the maps of ``images`` missing from this machine's cache on the cluster; cache them here."""
        ray = self.ray
        missing = missing_maps(images, image_ids, maker)
        edges_computed = regions_computed = 0
        if missing:
            edge_cache, region_cache = MapCache(EDGES_KIND), MapCache(REGIONS_KIND)
            with self._connected():
                maker_ref = ray.put(maker)  # the networks' weights, once
                images_ref = ray.put(np.ascontiguousarray(images[missing]))
                ids = [image_ids[i] for i in missing]
                task = self._remote(_precompute_chunk, str(maker.detector.device))
                per_task = self.images_per_task or maker.detector.images_per_pass(*images.shape[1:3])
                chunks = [range(k, min(k + per_task, len(missing))) for k in range(0, len(missing), per_task)]
                refs = [task.remote(maker_ref, images_ref, [ids[i] for i in chunk], list(chunk)) for chunk in chunks]
                with tqdm(total=len(missing), desc="maps", unit="image", disable=not progress) as bar:
                    for edges, regions, report in self._as_completed(refs):
                        for key, arrays in edges.items():
                            edge_cache.put(key, arrays)
                        for key, arrays in regions.items():
                            region_cache.put(key, arrays)
                        edges_computed += report.edges_computed
                        regions_computed += report.regions_computed
                        bar.update(report.images)
        return PrecomputeReport(len(images), edges_computed, regions_computed)

    @contextmanager
    def _connected(self) -> Iterator[None]:
        ray = self.ray
        if ray.is_initialized():  # the caller's own cluster: use it, leave it running
            yield
            return
        try:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"--ray-address {self.address}" if self.address else "--executor ray"
            raise SynthgenError(f"{where}: cannot start or reach a Ray cluster ({e})") from None
        try:
            yield
        finally:
            ray.shutdown()

    def _as_completed(self, refs: list) -> Iterator[Any]:
        """Each task's result as it finishes (any order). A SynthgenError inside a task is raised here
        as itself (its one line); on any error or Ctrl-C the tasks still pending are cancelled."""
        ray = self.ray
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    yield ray.get(done[0])
                except ray.exceptions.RayTaskError as e:
                    if isinstance(e.cause, SynthgenError):
                        raise e.cause from None
                    raise
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _check_visible(out_dir: Path, sidecar: dict) -> None:
    """The shard a task wrote must be where this process merges the manifest."""
    path = out_dir / sidecar["file"]
    if not path.is_file() or path.stat().st_size != sidecar["bytes"]:
        raise SynthgenError(
            f"{path}: a Ray worker wrote this shard but it is not here; --out must be a folder that every "
            "node of the cluster shares (a shared filesystem)"
        )


def _precompute_chunk(
    maker: MapMaker, images: np.ndarray, image_ids: list[str], indices: list[int]
) -> tuple[dict[str, dict], dict[str, dict], PrecomputeReport]:
    """One precompute task: the maps of ``images[indices]``, computed into a private cache and returned
    as ({edge key: entry}, {region key: entry}, what was computed)."""
    with tempfile.TemporaryDirectory(prefix="synthgen-maps-") as tmp:
        store, report = precompute(np.ascontiguousarray(images[indices]), image_ids, maker, cache_root=tmp)
        edges = {key: MapCache(EDGES_KIND, tmp).get(key) for key in store.edge_keys}
        regions = {key: MapCache(REGIONS_KIND, tmp).get(key) for key in store.region_keys}
    return edges, regions, report
