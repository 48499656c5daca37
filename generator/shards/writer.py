"""Writing one shard: fixed-shape datasets, one chunk per sample, atomic on disk.

The file is written under a temporary name, closed, fsynced and renamed into place (generator.atomic),
so a crash never leaves a truncated shard under its final name. HDF5 timestamps are switched off so
the same samples always give the same bytes (builds are compared by sha256).

HDF5 writes a chunk when its object is freed; when that write fails (a full disk) h5py can only print
"Exception ignored" with a traceback. The writer collects those errors instead and fails with the
first of them, so a full disk is one error (a one-line message from synthgen.generator.atomic), never a shard
committed without its data.
"""

from __future__ import annotations

import gc
import sys
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_path
from ..errors import SynthgenError
from ..imageio import sha256_file
from .format import CORE_FIELDS, GZIP_LEVEL, SCHEMA_VERSION

_STR = h5py.string_dtype("utf-8")


class _FreedObjectErrors:
    """While active, errors h5py raises freeing an object (it cannot raise them) are kept, not printed.

    Cython reports such an error twice: its traceback through ``sys.excepthook``, then one line
    through ``sys.unraisablehook``; both hooks are taken over for the errors of h5py's objects."""

    def __enter__(self) -> "_FreedObjectErrors":
        self.errors: list[BaseException] = []
        self._previous = sys.unraisablehook, sys.excepthook
        sys.unraisablehook, sys.excepthook = self._unraisable, self._excepthook
        return self

    def _unraisable(self, unraisable) -> None:
        if "h5py" not in f"{unraisable.object!r} {unraisable.err_msg}":
            self._previous[0](unraisable)
        elif unraisable.exc_value is not None and unraisable.exc_value not in self.errors:
            self.errors.append(unraisable.exc_value)

    def _excepthook(self, exc_type, exc, tb) -> None:
        frames = traceback.extract_tb(tb)
        if not any("h5py" in frame.filename for frame in frames):
            self._previous[1](exc_type, exc, tb)
        elif exc not in self.errors:
            self.errors.append(exc)

    def raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]

    def __exit__(self, *exc) -> None:
        gc.collect()  # objects still referenced by a traceback fail now, while errors are collected
        sys.unraisablehook, sys.excepthook = self._previous


class ShardWriter:
    """Context manager that fills one shard and commits it on a clean exit.

    >>> with ShardWriter(path, num_samples=n, height=h, width=w, extras=..., attrs=...) as w:
    ...     w.write(0, {"image": ..., "mask": ..., ...})
    >>> w.sha256, w.num_bytes
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_samples: int,
        height: int,
        width: int,
        extras: dict[str, Any] | None = None,
        attrs: dict[str, Any] | None = None,
        compress_images: bool = False,
    ):
        self.path = Path(path)
        self.n = int(num_samples)
        self.h, self.w = int(height), int(width)
        self.extras = dict(extras or {})
        self.attrs = dict(attrs or {})
        self.compress_images = compress_images
        self.sha256: str | None = None
        self.num_bytes: int | None = None
        self._written = np.zeros(self.n, dtype=bool)

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "ShardWriter":
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=".h5"))
        self._freed = self._stack.enter_context(_FreedObjectErrors())
        self._tmp = tmp
        self.f = h5py.File(tmp, "w", libver="earliest", track_order=False)
        try:
            self._create_datasets()
        except BaseException:
            self.f.close()
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        close_error = None
        try:
            self.f.close()
            self._freed.raise_first()
        except Exception as e:  # HDF5 flushes on close: a disk that filled up fails here
            close_error = e
            if exc_type is None:
                exc_type, exc, tb = type(e), e, e.__traceback__
        if exc_type is None and not self._written.all():
            exc = RuntimeError(f"shard {self.path.name}: {int((~self._written).sum())} samples never written")
            self._stack.__exit__(RuntimeError, exc, None)  # removes the temporary file
            raise exc
        if exc_type is None:
            self.sha256 = sha256_file(self._tmp)
            self.num_bytes = self._tmp.stat().st_size
        # atomic_path renames the file into place on a clean exit and deletes it on an exception (a full
        # disk becomes its one-line error)
        try:
            suppressed = bool(self._stack.__exit__(exc_type, exc, tb))
        except SynthgenError as error:
            if close_error is not None:
                # HDF5 could not close the file: its library state is broken and its own clean-up at
                # interpreter exit crashes (segmentation fault). The command line exits without it.
                error.skip_interpreter_cleanup = True
            raise
        if close_error is not None and close_error is exc:
            raise close_error
        return suppressed

    # -- layout ----------------------------------------------------------------------------------
    def _create_datasets(self) -> None:
        f, h, w = self.f, self.h, self.w
        for key, value in {"schema_version": SCHEMA_VERSION, **self.attrs}.items():
            f.attrs[key] = value
        for name, (shape_fn, dtype, compressed, doc) in CORE_FIELDS.items():
            compressed = compressed or (self.compress_images and name in ("image", "normal"))
            self._create(name, shape_fn(h, w), dtype, compressed, doc)
        for name, spec in self.extras.items():
            self._create(name, tuple(spec.shape(h, w)), spec.dtype, spec.compress, spec.doc)
            self._create(f"has_{name}", (), "uint8", False, f"1 where the sample has {name}")
        self._create("label", (), "uint8", False, "1 anomalous / 0 normal")
        self._create("index", (), "uint64", False, "position in the build plan")
        self._create("seed", (), "uint64", False, "per-sample seed")
        self._create("variant", (), "uint32", False, "variant number of the source image")
        self._create("strategy", (), _STR, False, "strategy name")
        self._create("source_id", (), _STR, False, "source image id")
        self._create("source_sha256", (), "S64", False, "sha256 of the source image file")
        self._create("params", (), _STR, False, "JSON parameters of the sample")

    def _create(self, name: str, sample_shape: tuple, dtype, compressed: bool, doc: str) -> None:
        kwargs: dict[str, Any] = {}
        if sample_shape:
            kwargs["chunks"] = (1, *sample_shape)  # one chunk per sample: random reads touch one chunk
            if compressed:
                kwargs.update(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True)
        ds = self.f.create_dataset(name, shape=(self.n, *sample_shape), dtype=dtype, track_times=False, **kwargs)
        ds.attrs["doc"] = doc

    # -- data ------------------------------------------------------------------------------------
    def write(self, start: int, batch: dict[str, Any]) -> None:
        """Write samples ``start .. start+B`` (B = len of every array in ``batch``)."""
        sizes = {len(v) for v in batch.values()}
        if len(sizes) != 1:
            raise ValueError(f"batch fields have different lengths: {sizes}")
        b = sizes.pop()
        stop = start + b
        if stop > self.n:
            raise ValueError(f"write past the end of the shard ({stop} > {self.n})")
        for name, value in batch.items():
            self.f[name][start:stop] = value
        self._freed.raise_first()  # a chunk that failed to reach the disk as its dataset was freed
        self._written[start:stop] = True

