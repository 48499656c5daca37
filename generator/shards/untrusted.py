"""Reading a build somebody else made: every byte of it is untrusted input.

A build folder may come from a download, a colleague or an attacker. Everything that reads one
(``verify``, ``inspect``, ``export``, ``publish``, :class:`generator.shards.reader.ShardDataset`, the
trainers) goes through this module, so the rules below hold everywhere and exist once:

- **Names.** Strategy, category, dataset, split and source names (and shard file names) follow
  :func:`check_name` (generator/names.py): printable, at most 100 characters, no path separator or
  other character a file system treats specially, no ``..``, not hidden. The same rule is applied
  where names are *written* (:class:`generator.config.BuildConfig`, the dataset readers), so a build
  never produces a name its readers refuse.
- **Paths stay inside their root.** :func:`resolve_inside` joins a relative name read from a build to
  its root and refuses anything that ends up outside it: an absolute path, ``..``, or a symbolic link
  that leads out.
- **The manifest is checked before use.** :func:`read_manifest` reads ``manifest.json``, validates it
  against ``manifests/manifest.schema.json`` and checks every name in it; :func:`manifest_shard_paths`
  gives the shard files, each resolved inside the build.
- **Shards are checked before use.** :func:`open_shard` opens an HDF5 file with a one-line error for a
  missing, truncated or foreign file; :func:`check_shard` checks the datasets a reader needs (present,
  stored in the file itself rather than linked to another, dtype, shape, sample count) and :func:`read_names` reads a string column whose values become names.
- **Outputs never touch the input.** :func:`check_output_apart` refuses an output folder that is, holds,
  or lies inside the input folder (an ``--overwrite`` there would delete the input);
  :func:`check_output_file` refuses an output file path that is a folder, lies under a file, or has
  the wrong suffix.

Every refusal is a :class:`generator.errors.SynthgenError`: one line naming the file and the problem.

    >>> manifest = read_manifest(build_dir)
    >>> for path, entry in zip(manifest_shard_paths(build_dir, manifest), manifest["shards"]):
    ...     with open_shard(path) as f:
    ...         n = check_shard(f, path, ("image", "mask", "label", "strategy"), entry["num_samples"])
    ...         strategies = read_names(f, "strategy", path)
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from ..errors import SynthgenError
from ..names import check_name, check_names, check_shard_file_name, check_source_id, name_problem, shown
from .format import CORE_FIELDS
from ..records import check_manifest_bounds, check_manifest_counts, check_record, load_json
from .manifest import MANIFEST_FILE, validate_manifest

__all__ = [
    # the name rule (defined in generator/names.py, part of this module's API)
    "check_name", "check_names", "check_source_id", "check_shard_file_name", "name_problem",
    # paths, manifest, shards, outputs
    "resolve_inside", "read_manifest", "manifest_path", "manifest_shard_paths", "existing_shard_paths",
    "build_input_folders", "check_output_apart_from_inputs", "open_shard", "check_shard", "read_names", "read_text_column", "check_output_apart", "check_output_file",
]

# ------------------------------------------------------------------------------------------- paths


def resolve_inside(root: str | Path, relative: Any, *, what: str, where: str | Path) -> Path:
    """``root / relative`` resolved (symbolic links followed), refused with a one-line SynthgenError
    unless it stays inside ``root``.

    ``relative`` comes from an untrusted file (a manifest's shard ``file``): an absolute path (POSIX or
    Windows), a ``..`` part, or a link inside ``root`` that points out of it are all refused. The
    path need not exist; the caller reports a missing file in its own words.
    """
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise SynthgenError(f"{where}: {what} {shown(relative)} is not a relative file name")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or relative.startswith("\\"):
        raise SynthgenError(f"{where}: {what} {shown(relative)} is an absolute path; it must be inside {root}")
    if ".." in posix.parts or ".." in windows.parts:
        raise SynthgenError(f"{where}: {what} {shown(relative)} contains '..'; it must stay inside {root}")
    try:
        root_resolved = Path(root).resolve()
        resolved = (root_resolved / relative).resolve()
    except (OSError, RuntimeError) as e:  # a symbolic link loop
        raise SynthgenError(f"{where}: {what} {shown(relative)} cannot be resolved ({e})") from None
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise SynthgenError(
            f"{where}: {what} {shown(relative)} leads outside {root} (through a symbolic link, to {resolved})"
        )
    return resolved


# ---------------------------------------------------------------------------------------- manifest


#: Largest manifest.json parsed. A build's manifest grows by ~150 bytes per source image and ~400 per
#: shard, so a million sources and shards stay far below this; a larger file is not a manifest.
MAX_MANIFEST_BYTES = 512 << 20


def manifest_path(build_dir: str | Path) -> Path:
    return Path(build_dir) / MANIFEST_FILE


def read_manifest(build_dir: str | Path) -> dict:
    """``manifest.json`` of the build in ``build_dir``, checked: schema-valid, its counts consistent
    (:func:`generator.records.check_manifest_counts`), every name following the name rule, shard file
    names unique and of the shard pattern. One-line SynthgenError otherwise."""
    build_dir = Path(build_dir)
    if build_dir.exists() and not build_dir.is_dir():
        raise SynthgenError(f"{build_dir}: not a build folder (it is a file)")
    path = manifest_path(build_dir)
    if not path.is_file():
        raise SynthgenError(f"{path}: no manifest (not a synthgen build, or the build has not finished)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise SynthgenError(f"{path}: manifest of {path.stat().st_size >> 20} MiB is larger than any build's "
                            f"({MAX_MANIFEST_BYTES >> 20} MiB at most); refusing to parse it")
    manifest = load_json(path, "manifest", MAX_MANIFEST_BYTES)  # NaN and Infinity refused
    validate_manifest(manifest, where=path)
    # its numbers against each other (generator/records.py): totals, per-shard counts, sample positions
    check_manifest_bounds(manifest, path)
    check_manifest_counts(manifest, path)
    if "publication" in manifest:
        check_record(manifest["publication"], "publication", path)
    dataset = manifest["dataset"]
    check_name(dataset["name"], "dataset", path)
    check_name(dataset["category"], "category", path)
    check_name(dataset["split"], "split", path)
    check_names(manifest["strategies"], "strategy", path)
    check_names(manifest["config"]["strategies"], "strategy", path)
    check_names(manifest["totals"]["strategies"], "strategy", path)
    source_ids: set[str] = set()
    for source in dataset["sources"]:
        check_source_id(source["id"], path)
        if source["id"] in source_ids:
            raise SynthgenError(f"{path}: source id {source['id']!r} is listed twice")
        source_ids.add(source["id"])
    seen: set[str] = set()
    for shard in manifest["shards"]:
        name = check_shard_file_name(shard["file"], path)
        if name in seen:
            raise SynthgenError(f"{path}: shard file {name!r} is listed twice")
        seen.add(name)
        check_names(shard["strategies"], "strategy", path)
    return manifest


def manifest_shard_paths(build_dir: str | Path, manifest: dict) -> list[Path]:
    """The shard files a checked manifest lists, each resolved inside ``build_dir`` (they need not exist)."""
    where = manifest_path(build_dir)
    return [resolve_inside(build_dir, s["file"], what="shard file", where=where) for s in manifest["shards"]]


def existing_shard_paths(build_dir: str | Path, manifest: dict) -> list[Path]:
    """:func:`manifest_shard_paths`, each of which must be a file (one-line error naming the first missing one)."""
    paths = manifest_shard_paths(build_dir, manifest)
    for path in paths:
        if not path.is_file():
            raise SynthgenError(f"{path}: shard file listed in {manifest_path(build_dir)} is missing")
    return paths


# ------------------------------------------------------------------------------------------ shards

#: What a synthgen shard's datasets must look like: name -> (dtype kinds allowed, dimensions after N).
#: ``None`` for the dimensions of the image-like fields: they are checked against ``image``'s (H, W).
_EXPECTED: dict[str, tuple[str, int | None]] = {
    "label": ("ub", 0),
    "index": ("u", 0),
    "seed": ("u", 0),
    "variant": ("u", 0),
    "strategy": ("str", 0),
    "source_id": ("str", 0),
    "params": ("str", 0),
    "source_sha256": ("S", 0),
}


#: Largest sample of one dataset a reader will allocate (a 16384 x 16384 RGB image is 768 MiB). A shard's
#: header can claim any shape while storing almost nothing (unwritten chunks cost no bytes), so without a
#: bound one hostile file would make a reader allocate terabytes.
MAX_SAMPLE_BYTES = 1 << 30


@contextmanager
def open_shard(path: str | Path) -> Iterator[h5py.File]:
    """``path`` opened read-only as HDF5; a missing, truncated, foreign or unreadable file, and a read
    error inside the ``with`` block, become one-line SynthgenErrors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SynthgenError(f"{path}: shard file not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SynthgenError(f"{path}: not a readable HDF5 shard ({_first_line(e)})") from None
    try:
        with f:
            yield f
    except OSError as e:  # h5py's read errors (a damaged chunk, a truncated dataset) are OSErrors
        raise SynthgenError(f"{path}: damaged shard ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def check_shard(f: h5py.File, path: str | Path, fields: Iterable[str], num_samples: int | None = None,
                image_size: tuple[int, int] | None = None) -> int:
    """The number of samples N of the open shard ``f`` after checking that each of ``fields`` exists
    with the format's dtype and shape (generator/shards/format.py): metadata columns (N,), ``image`` and
    ``normal`` uint8 (N, H, W, 3), ``mask`` uint8 (N, H, W), any other field (N, ...), no sample larger
    than :data:`MAX_SAMPLE_BYTES`. ``num_samples`` and ``image_size`` (H, W): what the manifest says.
    One-line SynthgenError naming the file and the dataset otherwise."""
    fields = list(dict.fromkeys(["label", *fields]))
    for name in fields:
        link = f.get(name, getlink=True)
        if link is None:
            raise SynthgenError(f"{path}: shard has no dataset {name!r} (has: {', '.join(sorted(f)) or 'none'})")
        # HDF5 can point a dataset at other files (external and soft links, virtual datasets, external
        # raw storage): reading it would read outside the build, so a shard's data must be its own.
        if not isinstance(link, h5py.HardLink):
            raise SynthgenError(f"{path}: dataset {name!r} is a link ({type(link).__name__}); a shard must hold its own data")
        if not isinstance(f[name], h5py.Dataset):
            raise SynthgenError(f"{path}: {name!r} is a group, not a dataset")
        if f[name].is_virtual or f[name].external:
            raise SynthgenError(f"{path}: dataset {name!r} stores its data in other files; a shard must hold its own data")
    n = f["label"].shape[0] if f["label"].ndim == 1 else -1
    if n < 0:
        raise SynthgenError(f"{path}: dataset 'label' has shape {f['label'].shape}, expected (N,)")
    if num_samples is not None and n != num_samples:
        raise SynthgenError(f"{path}: shard holds {n} samples but the manifest says {num_samples}")
    height = width = None
    for name in fields:
        d = f[name]
        if d.ndim == 0 or d.shape[0] != n:
            raise SynthgenError(f"{path}: dataset {name!r} has shape {d.shape}, expected {n} samples on its first axis")
        if int(np.prod(d.shape[1:], dtype=np.float64)) * d.dtype.itemsize > MAX_SAMPLE_BYTES:
            raise SynthgenError(f"{path}: dataset {name!r} claims samples of shape {d.shape[1:]}, larger than "
                                f"{MAX_SAMPLE_BYTES >> 20} MiB each")
        if name in _EXPECTED:
            kinds, dims = _EXPECTED[name]
            is_str = h5py.check_string_dtype(d.dtype) is not None  # also true for fixed-length bytes (S64)
            if kinds == "str":
                ok = is_str and d.dtype.kind == "O"  # variable-length utf-8 text
            elif kinds == "S":
                ok = d.dtype.kind == "S"
            else:
                ok = d.dtype.kind in kinds
            if not ok or d.ndim != 1 + dims:
                wanted = "strings" if kinds == "str" else {"u": "unsigned integers", "ub": "uint8", "S": "bytes"}[kinds]
                raise SynthgenError(f"{path}: dataset {name!r} is {d.dtype} {d.shape}, expected {wanted} of shape (N,)")
        elif name in CORE_FIELDS:
            if height is None:
                image = f["image"] if "image" in f else d
                if image.ndim < 3:
                    raise SynthgenError(f"{path}: dataset 'image' has shape {image.shape}, expected (N, H, W, 3)")
                height, width = image.shape[1], image.shape[2]
                if image_size is not None and (height, width) != tuple(image_size):
                    raise SynthgenError(f"{path}: images are {height}x{width} but the manifest says "
                                        f"{image_size[0]}x{image_size[1]}")
            expected = (n, *CORE_FIELDS[name][0](height, width))
            if d.shape != expected or d.dtype != np.uint8:
                raise SynthgenError(f"{path}: dataset {name!r} is {d.dtype} {d.shape}, expected uint8 {expected}")
    return n


def read_names(f: h5py.File, column: str, path: str | Path) -> np.ndarray:
    """A string column whose values are names (``strategy``) as a numpy array of str, every distinct
    value checked by the name rule (the caller has run :func:`check_shard` on ``column``)."""
    try:
        values = np.asarray(f[column].asstr()[...], dtype=object).astype(str)
    except UnicodeDecodeError:
        raise SynthgenError(f"{path}: dataset {column!r} holds text that is not UTF-8") from None
    check_names(values, column.replace("_", " "), path)
    return values


def read_text_column(f: h5py.File, column: str, path: str | Path) -> np.ndarray:
    """A string column (``source_id``, ``params``) as a numpy array of str, with a one-line error for bytes
    that are not UTF-8."""
    try:
        return np.asarray(f[column].asstr()[...], dtype=object).astype(str)
    except UnicodeDecodeError:
        raise SynthgenError(f"{path}: dataset {column!r} holds text that is not UTF-8") from None


# ----------------------------------------------------------------------------------------- outputs


def check_output_apart(out: str | Path, input_dir: str | Path, option: str) -> None:
    """Refuse (one line) an output folder ``out`` that is the input folder ``input_dir``, holds it, or lies
    inside it (links followed): writing there, let alone replacing it with ``--overwrite``, would
    damage or delete the input. Also refuses an ``out`` that is an existing file."""
    out, input_dir = Path(out), Path(input_dir)
    if out.exists() and not out.is_dir():
        raise SynthgenError(f"{option}: {out} is a file, not a folder")
    out_r, in_r = out.resolve(), input_dir.resolve()
    if out_r == in_r:
        raise SynthgenError(f"{option}: {out} is the input build {input_dir} itself; choose another folder")
    if out_r in in_r.parents:
        raise SynthgenError(f"{option}: {out} holds the input build {input_dir}; choose a folder outside it")
    if in_r in out_r.parents:
        raise SynthgenError(f"{option}: {out} lies inside the input build {input_dir}; choose a folder outside it")
    for parent in out_r.parents:
        if parent.exists() and not parent.is_dir():
            raise SynthgenError(f"{option}: {out} lies under {parent}, which is a file")


def build_input_folders(manifest: dict, source_root: str | Path | None = None) -> tuple[list[Path], list[tuple[str, Path]]]:
    """(dataset roots, (what, folder) inputs) of the build a checked manifest describes: its dataset root
    (as recorded, as configured and ``source_root``), the category folder and every source image's folder,
    the texture folder, the folders of its model files, the weights folder and synthgen's cache. Paths
    that are not strings are skipped: this list only ever widens what a writer refuses."""
    from ..paths import cache_root

    def path(value: Any) -> Path | None:
        return Path(value).expanduser() if isinstance(value, str) and value and "\0" not in value else None

    config, dataset = manifest["config"], manifest["dataset"]
    roots = [p for p in (path(dataset.get("root")), path(config.get("root")),
                         path(str(source_root)) if source_root is not None else None) if p is not None]
    inputs: list[tuple[str, Path]] = [("synthgen cache", cache_root())]
    for root in roots:
        inputs.append(("category folder", root / dataset["category"]))
        inputs.extend(("folder of source", (root / s["file"]).parent) for s in dataset["sources"]
                      if path(s.get("file")) is not None)
    for what, value in (("texture folder", manifest.get("textures", {}).get("root")),
                        ("texture folder", config.get("texture_root")), ("weights folder", config.get("weights_dir"))):
        if path(value) is not None:
            inputs.append((what, path(value)))
    inputs.extend(("folder of model file", path(a["file"]).parent) for a in manifest.get("artifacts", [])
                  if path(a.get("file")) is not None and path(a["file"]).is_absolute())
    return roots, list(dict.fromkeys(inputs))


def check_output_apart_from_inputs(out: str | Path, manifest: dict, option: str, writer: str,
                                   source_root: str | Path | None = None) -> None:
    """Refuse (one line) an output folder that is, holds or lies inside any input of the build the manifest
    describes (:func:`build_input_folders`): whatever the flags (``--overwrite`` included), a writer never
    writes into, over or around what the build read."""
    from ..preflight import refuse_own_inputs

    roots, inputs = build_input_folders(manifest, source_root)
    refuse_own_inputs(Path(out), inputs, roots=roots, option=option, writer=writer)


def check_output_file(path: str | Path, option: str, suffix: str) -> Path:
    """``path`` as an output file: refused (one line) when it is a folder, lies under a file, or does not
    end in ``suffix`` (e.g. ``.png``)."""
    path = Path(path)
    if path.is_dir():
        raise SynthgenError(f"{option}: {path} is a folder; give a {suffix} file name")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise SynthgenError(f"{option}: {path} lies under {parent}, which is a file")
    if path.suffix.lower() != suffix:
        raise SynthgenError(f"{option}: {path} must end in {suffix}")
    return path
