"""Which licence a published build may carry: found from the source dataset's own files.

A synthetic sample is an adaptation of its source image (resized, with an anomaly painted in), so the
source's licence decides what the publication may be:

- The licence is read from the dataset's files (``license.txt``, ``LICENSE*``, ``readme*`` in the
  category folder or the dataset root; MVTec AD and MVTec LOCO ship "Attribution-NonCommercial-
  ShareAlike 4.0 International" there). Every such file counts: when they disagree, the most
  restrictive licence wins (a stray CC0 ``LICENSE`` beside MVTec's licence.txt changes nothing), and
  when neither of two permits the other the publish stops with one line naming both files. Where the files are not on this machine, the licence the
  dataset's publisher states for a dataset synthgen knows by name is used, and the card says so.
- A user's own folder has no such statement: ``--license`` is required, and is the user's assertion
  that they may publish the images under it.
- The output may never be more permissive than the source: ShareAlike sources must keep exactly their
  licence (CC BY-NC-SA 4.0 is compatible only with itself), NonCommercial stays NonCommercial,
  Attribution stays required. Anything else is refused with one line naming both licences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SynthgenError


@dataclass(frozen=True)
class LicenceInfo:
    name: str
    url: str
    # licences (hub ids) a derived dataset may be published under
    allows: tuple[str, ...]


_BY_NC_SA = "cc-by-nc-sa-4.0"
_BY_NC = "cc-by-nc-4.0"
_BY_SA = "cc-by-sa-4.0"
_BY = "cc-by-4.0"
_CC0 = "cc0-1.0"

#: Hugging Face hub licence ids synthgen understands, with what a derivative may carry.
LICENCES: dict[str, LicenceInfo] = {
    _BY_NC_SA: LicenceInfo("Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International",
                           "https://creativecommons.org/licenses/by-nc-sa/4.0/", (_BY_NC_SA,)),
    _BY_NC: LicenceInfo("Creative Commons Attribution-NonCommercial 4.0 International",
                        "https://creativecommons.org/licenses/by-nc/4.0/", (_BY_NC, _BY_NC_SA)),
    _BY_SA: LicenceInfo("Creative Commons Attribution-ShareAlike 4.0 International",
                        "https://creativecommons.org/licenses/by-sa/4.0/", (_BY_SA,)),
    _BY: LicenceInfo("Creative Commons Attribution 4.0 International",
                     "https://creativecommons.org/licenses/by/4.0/", (_BY, _BY_SA, _BY_NC, _BY_NC_SA)),
    _CC0: LicenceInfo("Creative Commons Zero v1.0 Universal",
                      "https://creativecommons.org/publicdomain/zero/1.0/", (_CC0, _BY, _BY_SA, _BY_NC, _BY_NC_SA)),
}

# Phrases of the licence texts, most specific first ("Attribution 4.0" is a substring of none of the others
# only because the others are tested before it).
_PHRASES = (
    (re.compile(r"attribution[- ]noncommercial[- ]sharealike 4\.0|by-nc-sa/4\.0", re.I), _BY_NC_SA),
    (re.compile(r"attribution[- ]noncommercial 4\.0|by-nc/4\.0", re.I), _BY_NC),
    (re.compile(r"attribution[- ]sharealike 4\.0|by-sa/4\.0", re.I), _BY_SA),
    (re.compile(r"attribution 4\.0 international|licenses/by/4\.0", re.I), _BY),
    (re.compile(r"cc0 1\.0|publicdomain/zero/1\.0", re.I), _CC0),
)

#: What a dataset's publisher states, for datasets synthgen reads by name (used when the files holding
#: the statement were not copied along): MVTec AD and LOCO readme/license.txt; VisA's repository LICENSE.
#: The demo set is rendered by synthgen's own code from nothing: no third party holds rights in it.
PUBLISHER_LICENCE = {
    "mvtec_ad": (_BY_NC_SA, "MVTec AD's license.txt (MVTec Software GmbH)"),
    "mvtec_loco": (_BY_NC_SA, "MVTec LOCO AD's license.txt and readme.txt (MVTec Software GmbH)"),
    "visa": (_BY, "VisA's repository LICENSE (Amazon)"),
    "demo": (_CC0, "synthgen's procedural demo set (no third-party images)"),
}

_FILE_PATTERNS = ("license*", "licence*", "LICENSE*", "LICENCE*", "readme*", "README*")


@dataclass(frozen=True)
class SourceLicence:
    id: str  # hub licence id
    found_in: str  # the file that states it, or where the statement comes from
    attribution: str  # the source's own attribution text (citation), or ''
    all_found: tuple[tuple[str, str], ...] = ()  # (licence id, file) of every licence file found


def licences_from_files(folders: list[Path]) -> list[tuple[str, Path]]:
    """(licence id, file) for every licence/readme file in ``folders`` that names a licence (the first
    licence phrase of each file, most specific first), in folder and file order."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        files = sorted({p for pattern in _FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})
        for path in files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")[:200_000]
            except OSError:
                continue
            licence = next((licence for pattern, licence in _PHRASES if pattern.search(text)), None)
            if licence is not None:
                found.append((licence, path))
    return found


def most_restrictive(found: list[tuple[str, Path]]) -> tuple[str, Path]:
    """The licence among ``found`` under which a derivative respects every other one found (CC BY-NC-SA
    beside a stray CC0: CC BY-NC-SA). When none does (CC BY-SA beside CC BY-NC: each forbids what the other
    demands), a one-line SynthgenError names both files."""
    for licence, path in found:
        if all(licence in LICENCES[other].allows for other, _ in found):
            return licence, path
    (a, a_path), (b, b_path) = next(((x, y) for x in found for y in found
                                     if x[0] not in LICENCES[y[0]].allows and y[0] not in LICENCES[x[0]].allows))
    raise SynthgenError(f"{a_path}: says {a}, but {b_path} says {b}, and neither licence permits the other; "
                        "remove the file that is wrong, or publish with --source-root pointing at a copy without it")


def _attribution_section(folder: Path) -> str:
    """The "Attribution" paragraph of a readme (MVTec's readmes say how to cite the dataset there)."""
    for path in sorted(folder.glob("readme*")) + sorted(folder.glob("README*")):
        text = path.read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^Attribution\s*\n-+\s*\n(.*?)(?:\n\s*\n[A-Z][^\n]*\n-+|\Z)", text, re.S | re.M)
        if match:
            return " ".join(match.group(1).split())
    return ""


def source_licence(manifest: dict, source_root: str | Path | None = None) -> SourceLicence | None:
    """The licence of the build's source images, or None when it cannot be determined. Every licence file
    of the category folder and the dataset root counts: the most restrictive one wins (or a refusal)."""
    ds = manifest["dataset"]
    root = Path(source_root) if source_root else Path(ds["root"])
    found = licences_from_files([root / ds["category"], root])
    if found:
        licence, path = most_restrictive(found)
        return SourceLicence(licence, str(path), _attribution_section(path.parent),
                             tuple((other, str(p)) for other, p in found))
    if ds["name"] in PUBLISHER_LICENCE:
        licence, where = PUBLISHER_LICENCE[ds["name"]]
        return SourceLicence(licence, where, "")
    return None


def publication_licence(manifest: dict, requested: str | None, source_root: str | Path | None = None
                        ) -> tuple[str, SourceLicence]:
    """(licence id of the publication, the source's licence). Raises SynthgenError when the source licence
    cannot be determined and none was given, or when ``requested`` is more permissive than the source."""
    if requested is not None and requested not in LICENCES:
        raise SynthgenError(f"--license: unknown licence '{requested}' (known: {', '.join(LICENCES)})")
    source = source_licence(manifest, source_root)
    if source is None:
        if requested is None:
            root = manifest["dataset"]["root"]
            raise SynthgenError(f"{root}: the licence of the source images cannot be determined (no licence or "
                                f"readme file names one); pass --license with the licence you may publish them under")
        return requested, SourceLicence(requested, "--license (asserted by the publisher)", "")
    chosen = requested or source.id
    # never more permissive than any licence found (the winner respects all of them; checked against each anyway)
    for licence, where in source.all_found or ((source.id, source.found_in),):
        if chosen not in LICENCES[licence].allows:
            raise SynthgenError(f"--license {chosen}: the source images are {licence} ({where}); a derived "
                                f"dataset may only be published under {', '.join(LICENCES[licence].allows)}")
    return chosen, source
