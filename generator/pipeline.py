"""``synthgen build``: plan the samples, have an executor render the shards, merge the manifest.

The plan (which sample, which source image, which strategy, which seed) is made by
:mod:`generator.plan`; one shard is rendered by :func:`generator.render.build_one_shard`; an executor
(generator/executors/: this machine's :class:`~generator.executors.local.LocalExecutor` by default,
or Ray) runs it over the shards still to do. This module claims the output folder, resumes and
merges.

Shards. The plan is cut into ``ceil(N / samples_per_shard)`` shards up front. A shard is written
atomically and followed by its JSON sidecar; a shard whose file and sidecar verify is never redone,
so a killed build run again finishes the rest and is byte-identical to an uninterrupted one.
``num_shards``/``shard_index`` build every ``num_shards``-th shard starting at ``shard_index`` (one
slice of a cluster job array); the manifest is merged once every shard's sidecar is present.
Output does not depend on the executor or its worker count (generator/render.py says why).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__, code_fingerprint, preflight
from .atomic import remove_stale_temps, write_json_atomic
from .config import BuildConfig
from .errors import SynthgenError
from .executors.local import LocalExecutor
from .imageio import sha256_file
from .paths import cache_root
from .plan import BuildPlan, plan_build
from .records import check_sidecar, load_json, read_record
from .shards.format import sidecar_name
from .shards.manifest import BUILD_FILE, write_manifest
from .shards.untrusted import check_shard, open_shard

# --------------------------------------------------------------------------------------------------
# orchestration


@dataclass
class BuildReport:
    out_dir: Path
    num_shards: int
    built: list[int]
    skipped: list[int]
    manifest_written: bool


def build(
    config: BuildConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    num_shards: int = 1,
    shard_index: int = 0,
    progress: bool = True,
    executor: Any = None,
    merge_only: bool = False,
) -> BuildReport:
    """Build (or resume) the shards of this job-array slice and merge the manifest when complete.

    executor: what builds the shards still to do, an object with ``build_shards(plan, shards, out_dir,
    progress)``: by default a :class:`generator.executors.local.LocalExecutor` of ``workers`` processes;
    :class:`generator.executors.ray_executor.RayExecutor` for a Ray cluster.
    merge_only: build nothing; merge the sidecars of a finished job array into the manifest, or fail
    naming the shards that are missing.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise SynthgenError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    out_dir = Path(out_dir)
    preflight.check_out_path(out_dir)
    plan = plan_build(config, progress=progress)
    if merge_only:
        return _merge_only(plan, out_dir)
    preflight.refuse_own_inputs(out_dir, _input_folders(plan), roots=[plan.dataset.root])
    slice_of_array = num_shards > 1  # other slices may write into the folder at the same time
    with preflight.claimed_out_dir(out_dir, BUILD_FILE, shared=slice_of_array):  # claim taken back on early failure
        _claim_out_dir(out_dir, plan)
        mine = [s for s in range(plan.num_shards) if s % num_shards == shard_index]
        own_files = [name for s in mine for name in (plan.shard_file(s), sidecar_name(plan.shard_file(s)))]
        remove_stale_temps(out_dir, own_files if slice_of_array else None)
        done = [s for s in mine if _shard_verified(out_dir, plan, s)]
        todo = [s for s in mine if s not in done]
        preflight.require_shard_space(out_dir, sum(len(plan.shard_specs(s)) for s in todo), config.image_size,
                                      plan.extra_fields)
        if todo:
            (executor or LocalExecutor(workers)).build_shards(plan, todo, out_dir, progress)
        written = _merge_manifest_if_complete(plan, out_dir)
    return BuildReport(out_dir, plan.num_shards, todo, done, written)


def _input_folders(plan: BuildPlan) -> list[tuple[str, str | Path | None]]:
    """The folders a build reads, which its output folder must stay out of."""
    config = plan.config
    return [("category folder", Path(plan.dataset.root) / config.category), ("texture folder", config.texture_root),
            ("synthgen cache", cache_root()), ("weights folder", config.weights_dir),
            *(("folder of source", folder) for folder in sorted({s.path.parent for s in plan.sources.images}))]


def _claim_out_dir(out_dir: Path, plan: BuildPlan) -> None:
    """Refuse a folder that holds something else; remember this build's identity in build.json."""
    build_file = out_dir / BUILD_FILE
    if build_file.is_file():
        try:
            record = read_record(build_file, "build record")
        except SynthgenError as e:
            why = str(e).split(": ", 1)[-1]  # the message without the path, which comes first here
            raise SynthgenError(f"{build_file}: unreadable ({why}); delete the folder or choose another --out") from None
        previous = record["config_hash"]
        if previous != plan.config_hash:
            code = record.get("code")
            # same options, other code: name the cause (the hash differs because the code does)
            if record.get("config") == json.loads(json.dumps(plan.config.to_dict())) and code != code_fingerprint():
                raise SynthgenError(
                    f"{out_dir}: was started by other synthgen code (code {code[:12] if isinstance(code, str) else 'unrecorded'} "
                    f"!= {code_fingerprint()[:12]}); resuming would mix samples of both: finish it with that version, "
                    "or choose another --out"
                )
            raise SynthgenError(
                f"{out_dir}: holds a different build (config hash {previous[:12]} != {plan.config_hash[:12]}); "
                "choose another --out or delete the folder"
            )
        return
    if any(p for p in out_dir.iterdir() if not p.name.startswith(".tmp-")):
        if build_file.is_file():  # another slice of the same job array claimed the folder a moment ago
            return _claim_out_dir(out_dir, plan)
        raise SynthgenError(f"{out_dir}: folder is not empty and is not a synthgen build; choose another --out")
    write_json_atomic(
        build_file,
        {"config_hash": plan.config_hash, "config": plan.config.to_dict(), "synthgen_version": __version__,
         "code": code_fingerprint()},
    )


def _checked_sidecar(plan: BuildPlan, out_dir: Path, s: int, *, check_shard_file: bool) -> dict:
    """The sidecar of shard ``s``, checked as a record and against the plan (generator/records.py:
    its file, position, sample count, config hash and strategies); with ``check_shard_file``, also the
    shard it describes, as ``synthgen verify`` checks it: size, sha256 and sample count. One-line
    SynthgenError naming the sidecar or shard otherwise."""
    path = out_dir / plan.shard_file(s)
    side = out_dir / sidecar_name(path.name)
    if not side.is_file() or not path.is_file():
        raise SynthgenError(f"{side if path.is_file() else path}: not found (shard {s} is not finished)")
    specs = plan.shard_specs(s)
    sidecar = check_sidecar(load_json(side, "shard sidecar"), side, file=path.name, shard_index=s,
                            num_shards=plan.num_shards, first_index=specs[0].index, num_samples=len(specs),
                            config_hash=plan.config_hash, strategies=plan.strategies)
    if check_shard_file:
        if path.stat().st_size != sidecar["bytes"] or sha256_file(path) != sidecar["sha256"]:
            raise SynthgenError(f"{path}: bytes differ from its sidecar's size or sha256 (changed after it was written)")
        with open_shard(path) as f:
            check_shard(f, path, ("image", "mask", "strategy"), len(specs), plan.config.image_size)
    return sidecar


def _shard_verified(out_dir: Path, plan: BuildPlan, s: int) -> bool:
    try:
        _checked_sidecar(plan, out_dir, s, check_shard_file=True)
    except SynthgenError:
        return False
    return True


def _finished_sidecars(plan: BuildPlan, out_dir: Path) -> tuple[list[dict], list[int]]:
    """(sidecars of the shards that are finished, indices of those that are not)."""
    sidecars, missing = [], []
    for s in range(plan.num_shards):
        try:
            sidecars.append(_checked_sidecar(plan, out_dir, s, check_shard_file=False))
        except SynthgenError:
            missing.append(s)
    return sidecars, missing


def _merge_manifest_if_complete(plan: BuildPlan, out_dir: Path) -> bool:
    sidecars, missing = _finished_sidecars(plan, out_dir)
    if missing:
        return False
    write_manifest(out_dir, plan, sidecars, environment(plan.config.device))
    return True


def _merge_only(plan: BuildPlan, out_dir: Path) -> BuildReport:
    """``--merge-only``: the manifest of a build whose shards other jobs wrote (a job array's last step)."""
    build_file = out_dir / BUILD_FILE
    if not build_file.is_file():
        raise SynthgenError(f"{out_dir}: no synthgen build here ({BUILD_FILE} missing); run the build's jobs first")
    with preflight.claimed_out_dir(out_dir, BUILD_FILE):  # no job of the array may still be writing
        _claim_out_dir(out_dir, plan)  # the same config, or a one-line refusal
        _, missing = _finished_sidecars(plan, out_dir)
        missing = [s for s in missing if not (out_dir / sidecar_name(plan.shard_file(s))).exists()]
        if missing:
            listed = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
            raise SynthgenError(
                f"{out_dir}: cannot merge: shard(s) {listed} of {plan.num_shards} are not finished; run the jobs "
                "that build them again (shard s belongs to --shard-index s % --num-shards)"
            )
        # Every slice's sidecar and shard checked as `synthgen verify` will check the manifest, before
        # anything is written: a merge never writes a manifest that verify refuses.
        sidecars = [_checked_sidecar(plan, out_dir, s, check_shard_file=True) for s in range(plan.num_shards)]
        write_manifest(out_dir, plan, sidecars, environment(plan.config.device))
    return BuildReport(out_dir, plan.num_shards, [], list(range(plan.num_shards)), True)


def environment(device: str) -> dict[str, str]:
    """Library versions and hardware that produced the bytes (recorded, not hashed)."""
    import cv2
    import h5py
    import PIL

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "pillow": PIL.__version__,
        "opencv": cv2.__version__,
        "device": device,
        "synthgen_code": code_fingerprint(),  # also part of the config hash: which code drew the samples
    }
    if device == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(0)
    env["cpu_count"] = str(os.cpu_count())
    return env
