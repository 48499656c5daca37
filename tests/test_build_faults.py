"""Faults a real build meets: SIGKILL (with workers), a full disk, two builds into one folder.

Every test here runs real ``synthgen build`` processes on the demo dataset and compares what they
leave with an uninterrupted build of the same command, byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthgen.generator.cli import main
from synthgen.generator.datasets.demo import render_demo
from synthgen.generator.shards.reader import read_manifest
from synthgen.generator.shards.verify import verify_build

BUILD = ["--dataset", "demo", "--category", "parts_box", "--strategy", "draem,cutpaste", "--textures", "perlin",
         "--image-size", "64", "--num-samples", "48", "--samples-per-shard", "8", "--batch-size", "4", "--seed", "3",
         "--device", "cpu", "--quiet"]
STARTUP_TIMEOUT_S = 300  # a busy 2-core CI machine takes tens of seconds to import torch in 3 processes


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return render_demo(tmp_path_factory.mktemp("demo")).parent


@pytest.fixture(scope="module")
def reference(demo_root, tmp_path_factory) -> dict[str, str]:
    """Shard file -> sha256 of the uninterrupted build."""
    out = tmp_path_factory.mktemp("reference") / "b"
    main(["build", *BUILD, "--root", str(demo_root), "--out", str(out)])
    return _hashes(out)


def _hashes(out: Path) -> dict[str, str]:
    return {s["file"]: s["sha256"] for s in read_manifest(out)["shards"]}


def _command(demo_root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "synthgen.generator.cli", "build", *BUILD, "--root", str(demo_root), "--out", str(out), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper does not run)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _rendering(out: Path) -> bool:
    """A shard is being written (its temporary file exists) or done."""
    return out.is_dir() and any(p.suffix == ".h5" for p in out.iterdir())


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_sigkill_with_two_workers_leaves_no_worker_and_resumes_identically(demo_root, reference, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(demo_root, out, "--workers", "2"), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _rendering(out) or proc.poll() is not None, STARTUP_TIMEOUT_S, "a worker to start a shard")
        workers = _descendants(proc.pid)
        assert proc.poll() is None and len(workers) >= 2, (proc.poll(), workers)
    finally:
        proc.kill()
        proc.wait()
    # Workers end with their parent: the kernel's parent-death signal, or their watchdog within a second.
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    for p in survivors:  # do not leave them running on the test machine
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} of {len(workers)} worker processes outlived the killed build"
    done = subprocess.run(_command(demo_root, out), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _hashes(out) == reference
    assert not list(out.glob(".tmp-*"))


def _kill_loop(demo_root: Path, out: Path, kills: int, seed: int) -> int:
    """SIGKILL ``kills`` builds of one command at random moments; returns how many kills found shards
    in progress or written (the rest landed while the process was starting)."""
    rng = random.Random(seed)
    mid_build = 0
    for k in range(kills):
        workers = "2" if k % 2 else "1"
        proc = subprocess.Popen(_command(demo_root, out, "--workers", workers), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait for the build to begin writing, then a random moment more (up to about a shard's time).
        _wait_for(lambda: _rendering(out) or proc.poll() is not None, STARTUP_TIMEOUT_S, "the build to start writing")
        time.sleep(rng.uniform(0.0, 1.5))
        mid_build += proc.poll() is None
        proc.kill()
        proc.wait()
    return mid_build


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_few_sigkills_then_a_rerun_are_byte_identical(demo_root, reference, tmp_path):
    out = tmp_path / "loop"
    mid_build = _kill_loop(demo_root, out, kills=2, seed=0)
    print(f"{mid_build} of 2 SIGKILLs landed while the build was running")
    done = subprocess.run(_command(demo_root, out), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _hashes(out) == reference and verify_build(out).passed
    assert not list(out.glob(".tmp-*"))


@pytest.mark.slow
def test_twenty_sigkills_then_a_rerun_are_byte_identical(demo_root, reference, tmp_path):
    out = tmp_path / "loop20"
    mid_build = _kill_loop(demo_root, out, kills=20, seed=1)
    print(f"{mid_build} of 20 SIGKILLs landed while the build was running")  # the report's figure (pytest -s)
    done = subprocess.run(_command(demo_root, out), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _hashes(out) == reference and verify_build(out).passed


def test_two_builds_into_one_folder_at_once(demo_root, reference, tmp_path):
    """The first build is paused (SIGSTOP) while it writes, so the second surely meets it."""
    out = tmp_path / "shared"
    first = subprocess.Popen(_command(demo_root, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        _wait_for(lambda: _rendering(out) or first.poll() is not None, STARTUP_TIMEOUT_S, "the first build to write")
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(_command(demo_root, out), env=_env(), capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
        _, first_err = first.communicate(timeout=STARTUP_TIMEOUT_S)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert lines[0] == f"synthgen: error: {out}: another synthgen build is writing into this folder; " \
                       "wait for it to end or choose another --out"
    assert first.returncode == 0, first_err
    assert _hashes(out) == reference and verify_build(out).passed


# ----- a full disk, on a real small filesystem ------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 3 MiB tmpfs mounted for the test (needs mount rights: root in most CI containers)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command on this machine")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "the free-space check is still covered by test_build_hardening's faked disk_usage")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _full_disk_error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_out_on_a_full_disk_is_refused_before_writing(demo_root, small_fs, capsys):
    out = small_fs / "out"
    line = _full_disk_error(capsys, ["build", *BUILD, "--root", str(demo_root), "--out", str(out),
                                     "--image-size", "256"])
    assert line.startswith(f"synthgen: error: {out}: not enough free disk space for 48 samples: needs about "), line
    assert list(small_fs.iterdir()) == []  # not even the claimed folder is left


def test_cache_on_a_full_disk_is_refused_before_writing(demo_root, small_fs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYNTHGEN_CACHE", str(small_fs / "cache"))
    line = _full_disk_error(capsys, ["build", *BUILD, "--root", str(demo_root), "--out", str(tmp_path / "out"),
                                     "--image-size", "256"])
    assert line.startswith(f"synthgen: error: {small_fs / 'cache' / 'sources'}: not enough free disk space for the "
                           "resized source images (synthgen cache)"), line
    assert not (tmp_path / "out").exists()


# Runs a build with the free-space check told that the disk is empty, so the write itself meets the
# full disk: a subprocess, since HDF5 cannot be used again in a process where it met one.
_BUILD_WITHOUT_SPACE_CHECK = """
import sys
from synthgen.generator import diskspace
real = diskspace.shutil.disk_usage
diskspace.shutil.disk_usage = lambda path: real(path)._replace(free=1 << 40)
from synthgen.generator.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("where", ["out", "cache"])
def test_disk_filling_up_during_the_build_is_one_line(demo_root, small_fs, tmp_path, where):
    """The estimate passes (another program freed space, then took it back): the write itself fails."""
    out = small_fs / "out" if where == "out" else tmp_path / "out"
    env = {**_env(), "SYNTHGEN_CACHE": str(small_fs / "cache" if where == "cache" else tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", _BUILD_WITHOUT_SPACE_CHECK, "build", *BUILD, "--root", str(demo_root),
                           "--out", str(out), "--image-size", "256", "--samples-per-shard", "4"],
                          env=env, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    folder = out if where == "out" else small_fs / "cache" / "sources"
    assert lines[0].startswith(f"synthgen: error: {folder}: disk full ("), lines[0]
    assert lines[0].endswith("; free some space or choose another folder"), lines[0]
    assert not list(small_fs.rglob(".tmp-*"))  # the half-written file was removed
