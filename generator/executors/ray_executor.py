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
- Connecting: an address where nothing listens is refused within ``CONNECT_TIMEOUT_S`` with one line,
  before ``--out`` is claimed; SIGTERM stops the command as Ctrl-C does; a ray whose import fails is
  one line too.
- Failures: a task whose worker process or node dies is run again (``max_retries``), so is one that
  hit an OSError (a shared filesystem's hiccup); a SynthgenError (bad input) stops the command with
  its one line. Ctrl-C cancels the tasks still running; finished shards and maps stay, and the same
  command resumes from them.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..cache import MapCache
from ..errors import SynthgenError
from ..render import build_one_shard
from ..plan import BuildPlan
from ..precompute import (
    EDGES_KIND,
    REGIONS_KIND,
    MapMaker,
    PrecomputeReport,
    edge_entries,
    missing_edges,
    missing_regions,
    region_entries,
)
from .shipped import ShippedInputs

INSTALL_HINT = "--executor ray: Ray is not installed; pip install 'synthgen[ray]' (or pip install ray)"


#: Seconds to wait for a cluster at --ray-address to accept a connection before giving up with one line
#: (Ray itself retries an address where nothing listens for minutes, ignoring SIGTERM meanwhile).
CONNECT_TIMEOUT_S = 10.0


def import_ray():
    """The ray module, or a one-line error saying how to get it (or, for a ray whose import fails
    otherwise, a broken installation or a clash of its dependencies, what failed)."""
    try:
        import ray
    except ImportError:
        raise SynthgenError(INSTALL_HINT) from None
    except Exception as e:  # noqa: BLE001 - any failure inside ray's own import is the installation's, not ours
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise SynthgenError(f"--executor ray: importing ray failed ({type(e).__name__}: {first}); "
                            "reinstall it: pip install --force-reinstall 'synthgen[ray]'") from None
    return ray


def check_reachable(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse (one line, within ``timeout_s``) a ``--ray-address`` ``host:port`` (or ``ray://host:port``)
    where nothing accepts a connection, before anything is claimed or started. ``auto``, ``local`` and
    None are resolved by Ray itself from this machine's session files and are not probed."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SynthgenError(f"--ray-address {address}: expected host:port (or ray://host:port, auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise SynthgenError(f"--ray-address {address}: no Ray cluster answers there within {timeout_s:.0f} s "
                            f"({e.strerror or type(e).__name__}); start one with `ray start --head`, or check the address") from None


def task_resources(device: str) -> dict[str, float]:
    """What one task asks Ray for, given the device it computes on."""
    return {"num_cpus": 1, "num_gpus": 1} if device.startswith("cuda") else {"num_cpus": 1}


class RayExecutor:
    """Runs a build's shards and a precompute's images as Ray tasks (module docstring).

    address: a running cluster (``host:port`` or ``auto``); None starts a local one unless this
    process is already connected. resources: what each task asks for, instead of
    :func:`task_resources` (e.g. ``{"num_gpus": 0.5}`` to run two shards per GPU).
    regions_per_task: how many images one region-map task of a precompute takes (SAM: seconds each
    on a GPU). An edge-map task takes what the detector runs in one forward pass on its device: a
    local run's batches, so the maps are byte-identical to a local run's (the convolution algorithm,
    chosen per batch size, may round a pixel of another batch size one level differently).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        resources: dict[str, float] | None = None,
        max_retries: int = 3,
        regions_per_task: int = 8,
    ):
        self.ray = import_ray()
        check_reachable(address)  # before the build claims its --out folder
        self.address = address
        self.resources = resources
        self.max_retries = max_retries
        self.regions_per_task = max(1, regions_per_task)

    def _remote(self, function, device: str):
        options = self.resources if self.resources is not None else task_resources(device)
        return self.ray.remote(function).options(max_retries=self.max_retries, retry_exceptions=[OSError], **options)

    def build_shards(self, plan: BuildPlan, shards: Sequence[int], out_dir: Path, progress: bool) -> None:
        """Build ``shards`` of ``plan`` into ``out_dir``; returns once every one is written."""
        ray = self.ray
        with self._connected():
            plan_ref = ray.put(plan)
            shipped_ref = ray.put(ShippedInputs.collect(plan))
            task = self._remote(_build_shard_task, plan.config.device)
            refs = [task.remote(plan_ref, s, out_dir, [shipped_ref]) for s in shards]
            total = sum(len(plan.shard_specs(s)) for s in shards)
            with tqdm(total=total, desc="samples", unit="sample", disable=not progress) as bar:
                for sidecar in self._as_completed(refs):
                    _check_visible(out_dir, sidecar)
                    bar.update(sidecar["num_samples"])

    def precompute(
        self, images: np.ndarray, image_ids: Sequence[str], maker: MapMaker, *, progress: bool = False
    ) -> PrecomputeReport:
        """Compute the maps of ``images`` missing from this machine's cache on the cluster; cache them here.

        Two rounds: edge maps in the detector's forward-pass batches (one task each), then region
        maps ``regions_per_task`` images a task (the classical proposer reads the fused edges)."""
        edges_todo = missing_edges(images, image_ids, maker.detector)
        regions_todo: list = []
        with self._connected():
            if edges_todo:
                per_task = maker.detector.images_per_pass(*images.shape[1:3])
                self._run_map_tasks(_edges_task, maker.detector, images, image_ids, [(i, None) for i in edges_todo],
                                    per_task, MapCache(EDGES_KIND), str(maker.detector.device), "edges", progress)
            regions_todo = missing_regions(images, image_ids, maker)
            if regions_todo:
                self._run_map_tasks(_regions_task, maker.proposer, images, image_ids, regions_todo,
                                    self.regions_per_task, MapCache(REGIONS_KIND), str(maker.detector.device),
                                    "regions", progress)
        return PrecomputeReport(len(images), len(edges_todo), len(regions_todo))

    def _run_map_tasks(self, function, model, images, image_ids, todo, per_task, cache, device, what, progress) -> None:
        """``function(model, images, ids, fused edges) -> {key: entry}`` over chunks of ``todo`` ((index,
        fused edges) pairs); the model and the images go to the object store once; entries into ``cache``."""
        ray = self.ray
        model_ref = ray.put(model)
        images_ref = ray.put(np.ascontiguousarray(images[[i for i, _ in todo]]))
        task = self._remote(function, device)
        refs = []
        for start in range(0, len(todo), per_task):
            chunk = todo[start : start + per_task]
            rows = list(range(start, start + len(chunk)))  # rows of the shipped stack
            refs.append(task.remote([model_ref], images_ref, rows, [image_ids[i] for i, _ in chunk], [f for _, f in chunk]))
        with tqdm(total=len(todo), desc=what, unit="image", disable=not progress) as bar:
            for entries in self._as_completed(refs):
                for key, arrays in entries.items():
                    cache.put(key, arrays)
                bar.update(len(entries))

    @contextmanager
    def _connected(self) -> Iterator[None]:
        ray = self.ray
        if ray.is_initialized():  # the caller's own cluster: use it, leave it running
            yield
            return
        where = f"--ray-address {self.address}" if self.address else "--executor ray"
        with _sigterm_interrupts():  # Ray's connection loop and task waits otherwise outlive a SIGTERM
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
                _arm_sigterm()  # again: ray.init may install its own handler
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise SynthgenError(f"{where}: cannot start or reach a Ray cluster ({first})") from None
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


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block, as Ctrl-C does: the tasks still pending are
    cancelled and the connection closed on the way out (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    _arm_sigterm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _arm_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _check_visible(out_dir: Path, sidecar: dict) -> None:
    """The shard a task wrote must be where this process merges the manifest."""
    path = out_dir / sidecar["file"]
    if not path.is_file() or path.stat().st_size != sidecar["bytes"]:
        raise SynthgenError(
            f"{path}: a Ray worker wrote this shard but it is not here; --out must be a folder that every "
            "node of the cluster shares (a shared filesystem)"
        )


# Per worker process: the last shipped object it received (ObjectRef hex -> value). Ray resolves a
# task's top-level reference arguments anew for every task, and for a network that means unpickling
# its weights every time (seconds for pix2pixHD's 680 MB); passed inside a list, the reference stays a
# reference, and a worker fetches each object once however many tasks it runs.
_RECEIVED: dict[str, Any] = {}


def _received(boxed_ref: list) -> Any:
    import ray

    key = boxed_ref[0].hex()
    if key not in _RECEIVED:
        _RECEIVED.clear()  # one build's (or one precompute round's) inputs at a time
        _RECEIVED[key] = ray.get(boxed_ref[0])
    return _RECEIVED[key]


def _build_shard_task(plan: BuildPlan, s: int, out_dir: Path, shipped: list) -> dict:
    """One build task: shard ``s`` written into ``out_dir``; returns its sidecar."""
    return build_one_shard(plan, s, out_dir, _received(shipped))


def _edges_task(detector: list, images: np.ndarray, rows: list[int], image_ids: list[str], _fused) -> dict:
    """One precompute task of the first round: edge-map cache entries of ``images[rows]``."""
    return edge_entries(images[rows], image_ids, _received(detector))


def _regions_task(proposer: list, images: np.ndarray, rows: list[int], image_ids: list[str], fused: list) -> dict:
    """One precompute task of the second round: region-map cache entries of ``images[rows]``."""
    return region_entries(images[rows], image_ids, _received(proposer), fused)
