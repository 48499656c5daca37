"""``synthgen verify``: recompute every shard's sha256 and compare it with the manifest.

Reports each shard as ok, DAMAGED (hash differs: bit rot, truncation, a flipped byte), MISSING, or
UNLISTED (an .h5 file in the folder that the manifest does not know). A damaged manifest is itself
reported. Nothing is modified. The manifest is untrusted input (generator/shards/untrusted.py): a
shard entry that names a file outside the build folder is refused before any file is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..imageio import sha256_file
from .untrusted import manifest_shard_paths, read_manifest


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def verify_build(build_dir: str | Path) -> VerifyReport:
    build_dir = Path(build_dir)
    manifest = read_manifest(build_dir)  # schema-valid, names checked
    report = VerifyReport()
    listed = set()
    for shard, path in zip(manifest["shards"], manifest_shard_paths(build_dir, manifest)):
        name = shard["file"]
        listed.add(name)
        if not path.is_file():
            report.problems.append(f"MISSING  {name}")
        elif path.stat().st_size != shard["bytes"]:
            report.problems.append(f"DAMAGED  {name}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
        else:
            try:
                digest = sha256_file(path)
            except OSError as e:  # no permission, an I/O error on a failing disk
                report.problems.append(f"UNREADABLE {name}: {e.strerror or e}")
                continue
            if digest != shard["sha256"]:
                report.problems.append(f"DAMAGED  {name}: sha256 differs from the manifest")
            else:
                report.ok.append(name)
    for path in sorted(build_dir.glob("*.h5")):
        if path.name not in listed:
            report.problems.append(f"UNLISTED {path.name}: not in the manifest")
    return report
