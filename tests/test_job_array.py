"""Job arrays: the Slurm example script run as Slurm would run it, and ``synthgen build --merge-only``.

The script (examples/slurm/build_array.sbatch) is executed with bash, once per array task with the
variables Slurm sets, then once as the dependent merge job; its result must equal a local build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.errors import SynthgenError
from synthgen.generator import preflight
from synthgen.generator.pipeline import build
from synthgen.generator.shards.manifest import BUILD_FILE

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "slurm" / "build_array.sbatch"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return render_demo(tmp_path_factory.mktemp("demo")).parent


def _config(demo_root: Path) -> BuildConfig:
    return BuildConfig(dataset="demo", category="parts_box", root=str(demo_root), strategies=("draem", "cutpaste"),
                       num_samples=12, samples_per_shard=4, batch_size=4, image_size=(48, 48), seed=3,
                       texture_source="perlin", device="cpu")


def _build_args(demo_root: Path, out: Path) -> str:
    return (f"--dataset demo --root {demo_root} --category parts_box --strategy draem,cutpaste --num-samples 12 "
            f"--samples-per-shard 4 --batch-size 4 --image-size 48 --seed 3 --textures perlin --device cpu --out {out}")


def _run_script(build_args: str, **slurm: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(slurm, BUILD_ARGS=build_args, SYNTHGEN=f"{sys.executable} -m synthgen.generator.cli",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def test_sbatch_script_declares_a_job_and_parses():
    text = SCRIPT.read_text()
    directives = [line.split()[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    assert any(d.startswith("--job-name") for d in directives) and any(d.startswith("--time") for d in directives)
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_sbatch_array_then_merge_equals_a_local_build(demo_root, tmp_path):
    local = tmp_path / "local"
    assert build(_config(demo_root), local, progress=False).manifest_written
    out = tmp_path / "array"
    args = _build_args(demo_root, out)
    for task in ("1", "0"):  # N = 2 slices of 3 shards, in any order
        done = _run_script(args, SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_COUNT="2", SLURM_ARRAY_TASK_MIN="0")
        assert done.returncode == 0, done.stderr
    (out / "manifest.json").unlink()  # what the last slice wrote: the merge job must write it again
    merged = _run_script(args)
    assert merged.returncode == 0, merged.stderr
    assert "manifest:" in merged.stdout
    for path in local.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


def test_merge_only_names_the_missing_shards(demo_root, tmp_path):
    out = tmp_path / "half"
    build(_config(demo_root), out, num_shards=2, shard_index=0, progress=False)  # shards 0 and 2
    with pytest.raises(SynthgenError, match=r"cannot merge: shard\(s\) 1 of 3 are not finished"):
        build(_config(demo_root), out, merge_only=True, progress=False)
    assert not (out / "manifest.json").exists()
    with pytest.raises(SynthgenError, match="no synthgen build here"):
        build(_config(demo_root), tmp_path / "empty", merge_only=True, progress=False)
    assert not (tmp_path / "empty").exists()


def test_array_numbered_from_one_is_refused(demo_root, tmp_path):
    done = _run_script(_build_args(demo_root, tmp_path / "o"), SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_COUNT="2",
                       SLURM_ARRAY_TASK_MIN="1")
    assert done.returncode == 2 and "number the array 0..N-1" in done.stderr


def test_slices_share_the_folder_and_keep_each_others_temporary_files(demo_root, tmp_path):
    """Slice 1 is writing (shared lock, a temporary shard file) while slice 0 starts, builds and ends:
    slice 0 leaves slice 1's file alone, a whole build is refused meanwhile, and the array completes."""
    local = tmp_path / "local"
    build(_config(demo_root), local, progress=False)
    out = tmp_path / "array"
    in_flight = out / ".tmp-demo-parts_box-train-00001-of-00003.h5.x1y2"
    with preflight.claimed_out_dir(out, BUILD_FILE, shared=True):
        in_flight.write_bytes(b"slice 1 is writing this")
        assert build(_config(demo_root), out, num_shards=2, shard_index=0, progress=False).built == [0, 2]
        assert in_flight.exists()
        with pytest.raises(SynthgenError, match="another synthgen build is writing"):
            build(_config(demo_root), out, progress=False)
    report = build(_config(demo_root), out, num_shards=2, shard_index=1, progress=False)  # slice 1, rerun
    assert report.built == [1] and report.manifest_written and not in_flight.exists()
    for path in local.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
