"""The usefulness measurement a publication carries: a `synthgen bench` folder of the published build.

`synthgen bench` (synthgen.trainers.bench) writes bench.json, bench.md and bench.png. Publishing reads
them here without importing the trainers (generator/ never does): it checks that the bench measured
this very build (the sha256 of its manifest.json), copies the three files under ``bench/``, puts
bench.md (the table with method, budget, seeds and test split) into the card and a summary into
croissant.json (property ``synthgen:bench``, see :func:`croissant_property`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SynthgenError, read_json_file
from ..imageio import sha256_file

BENCH_FILES = ("bench.json", "bench.md", "bench.png")
#: Namespace of synthgen's own Croissant properties (declared in the document's @context).
CROISSANT_NAMESPACE = "https://synthgen.dev/croissant#"


@dataclass(frozen=True)
class Bench:
    record: dict[str, Any]  # bench.json
    table: str  # bench.md
    record_sha256: str


def read_bench(folder: str | Path, build_dir: str | Path) -> Bench:
    """The bench of ``folder``, checked to be complete and to have measured the build in ``build_dir``."""
    folder = Path(folder)
    for name in BENCH_FILES:
        if not (folder / name).is_file():
            raise SynthgenError(f"{folder / name}: missing; --bench takes a finished `synthgen bench` folder")
    record = read_json_file(folder / "bench.json", "bench record")
    for key in ("build", "settings", "seeds", "test_split", "summary", "runs"):
        if not isinstance(record, dict) or key not in record:
            raise SynthgenError(f"{folder / 'bench.json'}: not a bench record (no {key!r})")
    if record["build"].get("manifest_sha256") != sha256_file(Path(build_dir) / "manifest.json"):
        raise SynthgenError(f"{folder / 'bench.json'}: measured another build ({record['build'].get('path')}), "
                            f"not {build_dir}")
    return Bench(record, (folder / "bench.md").read_text(encoding="utf-8"), sha256_file(folder / "bench.json"))


def card_section(bench: Bench | None) -> str:
    """The card's "Usefulness" section: the bench table, or a plain statement that none was run."""
    if bench is None:
        return ("**No bench was run for this publication**: nothing here measures whether these samples help a "
                "detector on real test images. `synthgen bench BUILD --dataset D --root R --category C --out DIR` "
                "measures it, and `synthgen publish BUILD --bench DIR` puts the result here.")
    return (f"{bench.table.strip()}\n\n![bench](bench/bench.png)\n\n"
            f"Measured by `synthgen bench`; the runs, seeds and per-seed numbers are in `bench/bench.json` "
            f"(sha256 `{bench.record_sha256[:12]}...`).")


def croissant_property(bench: Bench | None) -> dict[str, Any]:
    """``synthgen:bench``: what bench measured (method, budget, seeds, test split, mean and sd per arm and
    metric over the seeds), or ``{"run": false}``."""
    if bench is None:
        return {"run": False}
    r = bench.record
    return {
        "run": True,
        "method": r["settings"]["method"],
        "budget": {"optimizer_steps": r["settings"]["steps"], "preset": r["settings"]["preset"],
                   "image_size": r["settings"]["image_size"], "device": r.get("device")},
        "seeds": r["seeds"],
        "test_split": {k: r["test_split"][k] for k in ("dataset", "category", "counts", "normals_from")},
        "baseline": "the same detector with its own synthesis, at the same budget",
        "summary": r["summary"],
        "file": "bench/bench.json",
        "sha256": bench.record_sha256,
    }
