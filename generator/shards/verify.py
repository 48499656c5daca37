"""``synthgen verify``: recompute every shard's sha256 and compare it with the manifest.

On a ``synthgen publish`` folder (its manifest has a "publication" record) the published files are
checked the same way instead of the shards.

Reports each shard as ok, DAMAGED (hash differs: bit rot, truncation, a flipped byte), MISSING, or
UNLISTED (an .h5 file in the folder that the manifest does not know). A damaged manifest is itself
reported. Nothing is modified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..imageio import sha256_file
from .manifest import validate_manifest
from .reader import read_manifest


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def verify_build(build_dir: str | Path) -> VerifyReport:
    build_dir = Path(build_dir)
    manifest = read_manifest(build_dir)
    validate_manifest(manifest, where=build_dir / "manifest.json")
    if "publication" in manifest:
        return verify_publication(build_dir, manifest["publication"]["files"])
    report = VerifyReport()
    listed = set()
    for shard in manifest["shards"]:
        name = shard["file"]
        listed.add(name)
        path = build_dir / name
        if not path.is_file():
            report.problems.append(f"MISSING  {name}")
        elif path.stat().st_size != shard["bytes"]:
            report.problems.append(f"DAMAGED  {name}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
        elif sha256_file(path) != shard["sha256"]:
            report.problems.append(f"DAMAGED  {name}: sha256 differs from the manifest")
        else:
            report.ok.append(name)
    for path in sorted(build_dir.glob("*.h5")):
        if path.name not in listed:
            report.problems.append(f"UNLISTED {path.name}: not in the manifest")
    return report


def verify_publication(folder: Path, files: dict[str, dict]) -> VerifyReport:
    """A `synthgen publish` folder: every listed file present with its size and sha256, nothing unlisted."""
    report = VerifyReport()
    for name, record in sorted(files.items()):
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not path.is_file():
            report.problems.append(f"MISSING  {name}")
        elif path.stat().st_size != record["bytes"]:
            report.problems.append(f"DAMAGED  {name}: {path.stat().st_size} bytes, manifest says {record['bytes']}")
        elif sha256_file(path) != record["sha256"]:
            report.problems.append(f"DAMAGED  {name}: sha256 differs from the manifest")
        else:
            report.ok.append(name)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        # .cache/: what huggingface_hub's download into a local folder adds beside the files
        if name != "manifest.json" and name not in files and not name.startswith(".cache/"):
            report.problems.append(f"UNLISTED {name}: not in the manifest")
    return report
