"""Shard writer and reader on hand-made data: layout, atomicity, determinism, lazy per-worker handles."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from synthgen.generator.errors import SynthgenError
from synthgen.generator.shards.format import shard_name, sidecar_name
from synthgen.generator.shards.reader import ShardDataset
from synthgen.generator.shards.writer import ShardWriter

H, W = 16, 24


def _batch(start: int, n: int) -> dict:
    rng = np.random.default_rng(start)
    masks = np.zeros((n, H, W), np.uint8)
    masks[::2, 4:8, 4:10] = 255  # every other sample anomalous
    return {
        "image": rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8),
        "mask": masks,
        "normal": rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8),
        "label": (masks.reshape(n, -1).max(1) > 0).astype(np.uint8),
        "index": np.arange(start, start + n, dtype=np.uint64),
        "seed": np.arange(n, dtype=np.uint64) + 1000,
        "variant": np.zeros(n, np.uint32),
        "strategy": ["a" if i % 3 else "b" for i in range(start, start + n)],
        "source_id": [f"train/good/{i:03d}" for i in range(start, start + n)],
        "source_sha256": np.array(["0" * 64] * n, dtype="S64"),
        "params": [json.dumps({"i": i}) for i in range(start, start + n)],
    }


def _write(path, n=6, attrs=None):
    with ShardWriter(path, num_samples=n, height=H, width=W, attrs=attrs or {"dataset": "t"}) as w:
        w.write(0, _batch(0, n // 2))
        w.write(n // 2, _batch(n // 2, n - n // 2))
    return w


def test_names():
    assert shard_name("mvtec_loco", "juice_bottle", "train", 3, 12) == "mvtec_loco-juice_bottle-train-00003-of-00012.h5"
    assert sidecar_name("x-00003-of-00012.h5") == "x-00003-of-00012.json"


def test_layout_chunks_and_compression(tmp_path):
    path = tmp_path / "s.h5"
    w = _write(path)
    assert w.sha256 and len(w.sha256) == 64 and w.num_bytes == path.stat().st_size
    with h5py.File(path, "r") as f:
        assert f["image"].shape == (6, H, W, 3) and f["image"].dtype == np.uint8
        assert f["image"].chunks == (1, H, W, 3) and f["image"].compression is None
        assert f["mask"].chunks == (1, H, W) and f["mask"].compression is None
        assert f.attrs["schema_version"] == 2 and f.attrs["dataset"] == "t"
        assert list(f["strategy"].asstr()[:3]) == ["b", "a", "a"]
        assert json.loads(f["params"].asstr()[4]) == {"i": 4}


def test_same_content_same_bytes(tmp_path):
    """No timestamps in the file: two writes of the same samples hash the same."""
    a, b = _write(tmp_path / "a.h5"), _write(tmp_path / "b.h5")
    assert a.sha256 == b.sha256


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(ValueError):
        with ShardWriter(path, num_samples=4, height=H, width=W) as w:
            w.write(0, _batch(0, 2))
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_shard_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="never written"):
        with ShardWriter(path, num_samples=4, height=H, width=W) as w:
            w.write(0, _batch(0, 2))
    assert list(tmp_path.iterdir()) == []


def test_dataset_reads_back_and_filters(tmp_path):
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for p in paths:
        _write(p)
    ds = ShardDataset(paths, fields=("image", "mask", "normal"), with_params=True)
    assert len(ds) == 12
    s = ds[7]
    with h5py.File(paths[1], "r") as f:  # sample 7 = file b, row 1
        expected = f["image"][1]
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    assert torch.equal((s["image"] * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(expected))
    assert s["mask"].shape == (1, H, W) and set(s["mask"].unique().tolist()) <= {0.0, 1.0}
    assert s["params"] == {"i": 1} and s["source_id"] == "train/good/001"
    only_b = ShardDataset(paths, strategies=["b"])
    assert len(only_b) == 4 and all(only_b[i]["strategy"] == "b" for i in range(len(only_b)))


def _as_format_1(src, dst):
    """A copy of shard ``src`` as format 1 wrote it: masks gzip-4 + shuffle, schema_version 1."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        g.attrs["schema_version"] = 1
        for name, ds in f.items():
            extra = dict(compression="gzip", compression_opts=4, shuffle=True) if name == "mask" else {}
            g.create_dataset(name, data=ds[...], chunks=ds.chunks, **extra)


def test_format_1_builds_read_the_same_and_unknown_versions_are_refused(tmp_path):
    _write(tmp_path / "new.h5")
    _as_format_1(tmp_path / "new.h5", tmp_path / "old.h5")
    fields = ("image", "mask", "normal")
    new, old = ShardDataset(tmp_path / "new.h5", fields=fields), ShardDataset(tmp_path / "old.h5", fields=fields)
    for i in range(len(new)):
        for name in fields:
            assert torch.equal(new[i][name], old[i][name])
    old.close()
    with h5py.File(tmp_path / "old.h5", "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(SynthgenError, match=r"old\.h5: shard format version 99 is not one this synthgen reads"):
        ShardDataset(tmp_path / "old.h5", fields=fields)


def test_dataloader_with_forked_workers(tmp_path):
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for p in paths:
        _write(p)
    ds = ShardDataset(paths, fields=("image", "mask"))
    ds[0]  # open a handle in the parent first: workers must not reuse it
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    seen = torch.cat([b["index"] for b in loader])
    assert sorted(seen.tolist()) == sorted([0, 1, 2, 3, 4, 5] * 2)
