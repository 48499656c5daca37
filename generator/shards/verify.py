"""``synthgen verify``: recompute every shard's sha256 and compare it with the manifest.

On a ``synthgen publish`` folder (its manifest has a "publication" record) the published files are
checked the same way instead of the shards.

Reports each shard as ok, DAMAGED (hash differs: bit rot, truncation, a flipped byte), WRONG (its bytes
match but it does not hold the samples the manifest says), MISSING, or UNLISTED (an .h5 file in the folder that the manifest does not know). A damaged manifest is itself
reported. Nothing is modified. The manifest is untrusted input (generator/shards/untrusted.py): a
shard entry that names a file outside the build folder is refused before any file is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SynthgenError
from ..imageio import sha256_file
from .untrusted import check_shard, manifest_shard_paths, open_shard, read_manifest, resolve_inside


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unit: str = "shard"  # what ``ok`` counts: shards of a build, files of a publication

    @property
    def passed(self) -> bool:
        return not self.problems


def _check_file(report: VerifyReport, name: str, path: Path, size: int, sha256: str) -> None:
    if not path.is_file():
        report.problems.append(f"MISSING  {name}")
    elif path.stat().st_size != size:
        report.problems.append(f"DAMAGED  {name}: {path.stat().st_size} bytes, manifest says {size}")
    else:
        try:
            digest = sha256_file(path)
        except OSError as e:  # no permission, an I/O error on a failing disk
            report.problems.append(f"UNREADABLE {name}: {e.strerror or e}")
            return
        if digest != sha256:
            report.problems.append(f"DAMAGED  {name}: sha256 differs from the manifest")
        else:
            report.ok.append(name)


def _check_count(report: VerifyReport, shard: dict, path: Path) -> None:
    """A shard whose bytes match may still be described wrongly: its sample count and image size must be
    what the manifest says (a manifest edited to claim 40 samples of a shard that holds 16)."""
    try:
        with open_shard(path) as f:
            check_shard(f, path, ("label",), shard["num_samples"])
    except SynthgenError as e:
        report.ok.pop()
        report.problems.append(f"WRONG    {shard['file']}: {str(e).split(': ', 1)[-1]}")


def verify_build(build_dir: str | Path) -> VerifyReport:
    build_dir = Path(build_dir)
    manifest = read_manifest(build_dir)  # schema-valid, names checked
    if "publication" in manifest:
        return verify_publication(build_dir, manifest["publication"]["files"])
    report = VerifyReport()
    listed = set()
    for shard, path in zip(manifest["shards"], manifest_shard_paths(build_dir, manifest)):
        listed.add(shard["file"])
        _check_file(report, shard["file"], path, shard["bytes"], shard["sha256"])
        if report.ok and report.ok[-1] == shard["file"]:
            _check_count(report, shard, path)
    for path in sorted(build_dir.glob("*.h5")):
        if path.name not in listed:
            report.problems.append(f"UNLISTED {path.name}: not in the manifest")
    return report


def verify_publication(folder: Path, files: dict[str, dict]) -> VerifyReport:
    """A `synthgen publish` folder: every listed file present with its size and sha256, nothing unlisted."""
    report = VerifyReport(unit="file")
    for name, record in sorted(files.items()):
        path = resolve_inside(folder, name, what="published file", where=folder / "manifest.json")
        _check_file(report, name, path, record["bytes"], record["sha256"])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        # .cache/: what huggingface_hub's download into a local folder adds beside the files
        if name != "manifest.json" and name not in files and not name.startswith(".cache/"):
            report.problems.append(f"UNLISTED {name}: not in the manifest")
    return report
