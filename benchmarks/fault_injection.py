"""Faults that need a real kernel, run against `synthgen publish` and `synthgen export` (issue 26).

    sudo python benchmarks/fault_injection.py WORKDIR [--image-size 128 --num-samples 96]

Needs root (it mounts a 2 MiB tmpfs) and the publish extra. It builds a small demo build in WORKDIR,
then, each as a separate command line with `python -m synthgen.generator.cli`:

1. full disk: publish and export (mvtec, webdataset) into the tmpfs; expected: exit 2, one line
   "disk full", nothing left on the tmpfs (no DIR, no .tmp-*);
2. kill -9 during publish and during export, once its temporary folder exists; then the same command
   again: expected success, and no .tmp-* folder left beside the target;
3. two publishes of the same build to one folder at once: expected both succeed (the second finds the
   same publication) or one says in one line that another publish wrote the folder; `verify` passes.

Prints one line per case (what happened) and exits 1 if any case misbehaved. Not a test: it needs root
and mounts a filesystem.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "synthgen.generator.cli"]


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True, **kw)


def one_line(err: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("synthgen: error: ") and "Traceback" not in err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-")) if folder.is_dir() else []


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--image-size", default="128")
    parser.add_argument("--num-samples", default="96")
    a = parser.parse_args()
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    build = work / "build"
    ok = True
    if not (build / "manifest.json").is_file():
        done = run(["build", "--dataset", "demo", "--category", "parts_box", "--strategy",
                    "draem,cutpaste", "--textures", "perlin", "--image-size", a.image_size, "--num-samples",
                    a.num_samples, "--seed", "1", "--device", "cpu", "--quiet", "--out", str(build)])
        if done.returncode:
            print("build failed:", done.stderr)
            return 1
    size = sum(p.stat().st_size for p in build.glob("*.h5"))
    print(f"build: {a.num_samples} samples at {a.image_size}px, {size / 2**20:.1f} MiB of shards")

    # 1. full disk
    disk = work / "tmpfs"
    disk.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        for name, args in (("publish", ["publish", str(build), "--to", str(disk / "pub"), "--quiet"]),
                           ("export mvtec", ["export", str(build), "--to", str(disk / "exp"), "--quiet"]),
                           ("export webdataset", ["export", str(build), "--to", str(disk / "wds"), "--format",
                                                  "webdataset", "--quiet"])):
            start = time.monotonic()
            done = run(args)
            left = sorted(p.name for p in disk.iterdir())
            good = done.returncode == 2 and one_line(done.stderr) and "disk full" in done.stderr and not left
            ok &= good
            print(f"full disk, {name}: exit {done.returncode} in {time.monotonic() - start:.1f} s, "
                  f"{'one line' if one_line(done.stderr) else 'NOT one line'}: {done.stderr.strip().splitlines()[-1:]}; "
                  f"left on the disk: {left or 'nothing'} -> {'ok' if good else 'MISBEHAVED'}")
    finally:
        subprocess.run(["umount", str(disk)], check=False)

    # 2. kill -9 in the middle, then the same command again
    for name, args, target in (("publish", ["publish", str(build), "--to", str(work / "pub-killed"), "--quiet"], work / "pub-killed"),
                               ("export", ["export", str(build), "--to", str(work / "exp-killed"), "--quiet"], work / "exp-killed")):
        proc = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while not leftovers(work) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # let it write into the temporary folder for a moment
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after_kill, target_after_kill = leftovers(work), target.exists()
        again = run(args)
        left = leftovers(work)
        good = killed and again.returncode == 0 and not left and target.is_dir()
        ok &= good
        print(f"kill -9 during {name}: {'killed' if killed else 'finished before the kill'}; target existed after the "
              f"kill: {target_after_kill}; temp folders after the kill: "
              f"{after_kill}; rerun exit {again.returncode}, temp folders after the rerun: {left or 'none'} "
              f"-> {'ok' if good else 'MISBEHAVED'}")
        verify = run(["verify", str(target)]) if name == "publish" else None
        if verify is not None:
            ok &= verify.returncode == 0
            print(f"  verify of the rerun's publication: exit {verify.returncode}")

    # 3. two publishes to one folder at once
    target = work / "pub-twice"
    procs = [subprocess.Popen(CLI + ["publish", str(build), "--to", str(target), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    verify = run(["verify", str(target)])
    good = (all(code in (0, 2) for code, _ in results) and all(code == 0 or one_line(err) for code, err in results)
            and any(code == 0 for code, _ in results) and verify.returncode == 0 and not leftovers(work))
    ok &= good
    print(f"two publishes at once: exits {[c for c, _ in results]}, stderr {[e.strip()[-160:] for _, e in results]}; "
          f"verify exit {verify.returncode}; temp folders left: {leftovers(work) or 'none'} -> {'ok' if good else 'MISBEHAVED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
