"""``synthgen publish BUILD --to DIR``: a folder that can be uploaded to a dataset hub as it is, and cited.

DIR holds::

    README.md                 dataset card: YAML header hubs read + datasheet body (card.py)
    croissant.json            Croissant 1.0 + RAI metadata, written and re-read by mlcroissant (croissant.py)
    data/{split}-{i:05d}-of-{n:05d}.parquet   one row per sample, images as `datasets` Image features (parquet.py)
    images/contact_sheet.png  the card's contact sheet (shards/inspect.py)
    bench/bench.json, bench.md, bench.png   with ``--bench DIR``: what `synthgen bench` measured (bench.py)
    manifest.json             the build's manifest + "publication": sha256 of every file above

Order of work, each a refusal with one line before anything is written: the build must pass
``synthgen verify``; the source licence must be known and the requested one no more permissive
(licence.py); DIR must not exist, be empty, or already hold this same publication. Everything is
written to a temporary folder beside DIR and renamed into place at the end: an interrupted or failed
publish leaves nothing under DIR. ``synthgen verify DIR`` then checks every published file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterator

from ..atomic import temp_folder_beside, write_json_atomic
from ..diskspace import disk_full_error, is_disk_full
from ..errors import SynthgenError
from ..imageio import sha256_file
from ..shards.inspect import write_contact_sheet
from ..shards.manifest import MANIFEST_FILE
from ..shards.samples import BuildSample, check_strategy_counts, iter_samples
from ..shards.untrusted import check_output_apart, check_output_apart_from_inputs, read_manifest
from ..shards.verify import verify_build
from .bench import BENCH_FILES, read_bench
from .licence import publication_licence

SPLIT = "train"  # every synthetic sample is training data; real test images come from the real dataset
SHEET = "images/contact_sheet.png"


def publish_build(build_dir: str | Path, to: str | Path, *, license: str | None = None, with_normals: bool = False,
                  source_root: str | Path | None = None, rows_per_file: int | None = None,
                  hub_repo: str | None = None, bench: str | Path | None = None, progress: bool = True) -> Path:
    """Publish ``build_dir`` into the folder ``to``; returns ``to``. ``hub_repo``: the Hugging Face dataset
    repo it will be uploaded to (its URL goes into croissant.json); ``bench``: a `synthgen bench` folder
    of this build, whose table goes into the card and croissant.json (the card says so when there is none)."""
    _require_publish_extra()
    from .card import dataset_card
    from .croissant import croissant_metadata
    from .parquet import ROWS_PER_FILE, write_parquet_files

    build_dir, to = Path(build_dir), Path(to)
    check_output_apart(to, build_dir, "--to")
    manifest = _verified_build_manifest(build_dir)
    # never into, over or around the build's own inputs (its dataset, textures, weights, the cache)
    check_output_apart_from_inputs(to, manifest, "--to", "a publish", source_root)
    chosen, source = publication_licence(manifest, license, source_root)
    measured = read_bench(bench, build_dir) if bench is not None else None
    if _already_published(to, manifest, chosen, with_normals, measured):
        return to
    _refuse_occupied(to)

    ds = manifest["dataset"]
    constant = {"category": ds["category"], "source_dataset": ds["name"], "source_license": source.id,
                "synthgen_version": manifest["synthgen_version"]}
    counts: dict[str, Counter] = {}

    def counted(samples: Iterator[BuildSample]) -> Iterator[BuildSample]:
        for sample in samples:
            counts.setdefault(sample.strategy, Counter())["anomalous" if sample.label else "normal"] += 1
            yield sample

    tmp = temp_folder_beside(to, "publish")  # also removes what killed publishes to `to` left behind
    try:
        samples = iter_samples(build_dir, manifest, with_normals=with_normals, progress=progress, desc="publish")
        parquet_files = write_parquet_files(counted(samples), manifest["totals"]["samples"], tmp, split=SPLIT,
                                            constant=constant, with_normals=with_normals,
                                            rows_per_file=rows_per_file or ROWS_PER_FILE)
        table = {name: {"anomalous": c["anomalous"], "normal": c["normal"]} for name, c in sorted(counts.items())}
        check_strategy_counts(build_dir, manifest, table)
        (tmp / "images").mkdir()
        write_contact_sheet(build_dir, tmp / SHEET)
        if measured is not None:
            (tmp / "bench").mkdir()
            for name in BENCH_FILES:
                shutil.copyfile(Path(bench) / name, tmp / "bench" / name)
        (tmp / "README.md").write_text(dataset_card(
            manifest, licence=chosen, source=source, split=SPLIT, counts=table, with_normals=with_normals,
            sheet=SHEET, parquet_files=parquet_files, bench=measured), encoding="utf-8")
        croissant = croissant_metadata(manifest, licence=chosen, source_licence=source.id, with_normals=with_normals,
                                       counts=table, url=hub_url(hub_repo) if hub_repo else None, bench=measured)
        (tmp / "croissant.json").write_text(json.dumps(croissant, indent=2, default=str) + "\n", encoding="utf-8")
        _check_croissant(tmp / "croissant.json")
        files = {p.relative_to(tmp).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json_atomic(tmp / MANIFEST_FILE, {**manifest, "publication": {
            "files": files,
            "license": chosen,
            "source_license": {"id": source.id, "found_in": source.found_in, "attribution": source.attribution},
            "with_normals": with_normals,
            "counts": table,
            "bench": measured.record_sha256 if measured is not None else None,
        }})
        try:
            if to.is_dir():
                to.rmdir()  # empty (checked above)
            os.replace(tmp, to)
        except OSError as e:  # a concurrent publish to the same folder finished first
            if _already_published(to, manifest, chosen, with_normals):
                return to
            raise SynthgenError(f"{to}: another publish wrote this folder while this one ran ({e.strerror}); "
                                "choose an empty or new --to") from None
    except Exception as e:
        if is_disk_full(e):  # nothing under `to` changed; the temporary folder goes below
            raise disk_full_error(to.parent) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return to


def _require_publish_extra() -> None:
    for module in ("pyarrow", "datasets", "mlcroissant", "yaml"):
        try:
            __import__(module)
        except ImportError:
            raise SynthgenError(f"synthgen publish needs the Python package {module!r}: "
                                f"pip install 'synthgen[publish]'") from None


def _verified_build_manifest(build_dir: Path) -> dict:
    """The manifest of a build that passes ``synthgen verify`` (a refusal naming the first problem otherwise)."""
    manifest = read_manifest(build_dir)
    if "publication" in manifest:
        raise SynthgenError(f"{build_dir}: this is a published folder, not a build; publish the build it came from")
    report = verify_build(build_dir)
    if not report.passed:
        kind, name, *why = report.problems[0].split(maxsplit=2)  # e.g. "DAMAGED  file.h5: sha256 differs ..."
        more = f"; {len(report.problems) - 1} more problem(s)" if len(report.problems) > 1 else ""
        raise SynthgenError(f"{build_dir / name.rstrip(':')}: build fails `synthgen verify` ({kind}"
                            f"{': ' + why[0] if why else ''}{more}); rebuild it before publishing")
    return manifest


def _already_published(to: Path, manifest: dict, licence: str, with_normals: bool, bench) -> bool:
    """True when ``to`` holds this very publication, intact (a rerun is then a no-op)."""
    if not (to / MANIFEST_FILE).is_file():
        return False
    try:
        there = read_manifest(to)
    except SynthgenError:
        return False
    publication = there.get("publication")
    if publication is None or there["config_hash"] != manifest["config_hash"]:
        return False
    if publication["license"] != licence or publication["with_normals"] != with_normals:
        return False
    if publication.get("bench") != (bench.record_sha256 if bench is not None else None):
        return False
    return verify_build(to).passed


def _refuse_occupied(to: Path) -> None:
    if to.exists() and not to.is_dir():
        raise SynthgenError(f"{to}: exists and is not a folder; choose another --to")
    if to.is_dir() and any(to.iterdir()):
        raise SynthgenError(f"{to}: folder holds something else (not this publication); choose an empty or new --to")


def _check_croissant(path: Path) -> None:
    """Load the written croissant.json with mlcroissant: a document it rejects is a synthgen bug."""
    import mlcroissant as mlc

    mlc.Dataset(jsonld=str(path))


def push_to_hub(folder: str | Path, repo: str, *, private: bool = False) -> str:
    """Upload a published folder to a Hugging Face dataset repository (needs network and a token); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset",
                      commit_message=f"synthgen publish ({json.loads((Path(folder) / MANIFEST_FILE).read_text())['config_hash'][:12]})")
    return hub_url(repo)


def hub_url(repo: str) -> str:
    return f"https://huggingface.co/datasets/{repo}"
