"""trainers/data.py: the synthetic validation split, the seeded epoch order, the shard DataModule on a
real demo build (source numbers for the parity split, resizing), the real test-set selection; and the
command lines' error policy (trainers/cli.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synthgen.generator.config import BuildConfig
from synthgen.generator.datasets import load_dataset
from synthgen.generator.errors import SynthgenError
from synthgen.generator.pipeline import build
from synthgen.trainers.cli import eval_main, train_cli, train_main
from synthgen.trainers.data import (
    EpochShuffleSampler,
    RealTestImages,
    SynthgenDataModule,
    select_test_images,
    split_indices,
)


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    """24 draem samples of the demo dataset at 64x64, in two shards."""
    config = BuildConfig(dataset="demo", category="parts_box", root=None, strategies=("draem",), num_samples=24,
                         samples_per_shard=12, batch_size=8, image_size=(64, 64), texture_source="perlin", seed=3)
    out = tmp_path_factory.mktemp("build") / "demo"
    build(config, out, progress=False)
    return out


# -------------------------------------------------------------------------------------- splitting


def test_split_indices_partition_and_determinism():
    train, val = split_indices(50, 0.1, seed=4)
    assert len(val) == 5 and len(train) == 45
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))
    assert list(train) == sorted(train) and list(val) == sorted(val)
    again = split_indices(50, 0.1, seed=4)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(split_indices(50, 0.1, seed=5)[1], val)
    assert len(split_indices(3, 0.1, seed=0)[1]) == 1  # a positive fraction holds out at least one sample
    assert len(split_indices(3, 0.0, seed=0)[1]) == 0


@pytest.mark.parametrize("n, fraction, message", [(10, 0.6, "must be in"), (10, -0.1, "must be in"), (1, 0.5, "none for training")])
def test_split_indices_refuses_bad_fractions(n, fraction, message):
    with pytest.raises(SynthgenError, match=f"--val-fraction: .*{message}"):
        split_indices(n, fraction, seed=0)


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(20, seed=1), EpochShuffleSampler(20, seed=1)
    first = list(a)
    assert sorted(first) == list(range(20)) and first == list(b)
    a.set_epoch(1)
    second = list(a)
    assert sorted(second) == list(range(20)) and second != first
    b.set_epoch(1)
    assert list(b) == second


# ----------------------------------------------------------------------------------------- shards


def test_datamodule_numbers_samples_by_their_source_position(demo_build):
    data = SynthgenDataModule(demo_build, val_fraction=0.25, seed=0)
    data.setup("fit")
    manifest = json.loads((demo_build / "manifest.json").read_text())
    position = {s["id"]: i + 1 for i, s in enumerate(manifest["dataset"]["sources"])}
    assert data.image_size == (64, 64)
    assert len(data.val_indices) == 6 and len(data.train_indices) == 18
    assert not set(data.val_indices) & set(data.train_indices)
    for i in (0, 7, 23):
        sample = data.shard_dataset[i]
        assert sample["source_number"] == position[sample["source_id"]]
        assert sample["image"].shape == sample["normal"].shape == (3, 64, 64)
    summary = data.split_summary()
    numbers = [position[data.shard_dataset[int(i)]["source_id"]] for i in data.train_indices]
    assert summary["train_sources_odd"] == len({n for n in numbers if n % 2})
    assert summary["train_sources_even"] == len({n for n in numbers if n % 2 == 0})
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["source_number"].shape == (8,)
    assert len(data.val_dataloader().dataset) == 6


def test_datamodule_resizes_to_the_model_size(demo_build):
    data = SynthgenDataModule(demo_build, image_size=(32, 64), val_fraction=0.0)
    data.setup("fit")
    sample = data.shard_dataset[1]
    assert sample["image"].shape == (3, 32, 64) and sample["mask"].shape == (1, 32, 64)
    assert set(torch.unique(sample["mask"]).tolist()) <= {0.0, 1.0}
    assert data.val_dataloader() == []
    with pytest.raises(SynthgenError, match="not resized"):
        SynthgenDataModule(demo_build, image_size=(32, 32), extra_fields=("label",)).setup("fit")


def test_datamodule_errors(tmp_path):
    with pytest.raises(SynthgenError, match="no manifest"):
        SynthgenDataModule(tmp_path).setup("fit")
    with pytest.raises(SynthgenError, match="--batch-size"):
        SynthgenDataModule(tmp_path, batch_size=0)
    with pytest.raises(SynthgenError, match="image size is needed"):
        SynthgenDataModule(test=object()).setup("test")


# --------------------------------------------------------------------------------------- test sets


def test_test_selection_kinds_and_extra_normals():
    index = load_dataset("demo", None, "parts_box")
    everything = select_test_images(index)
    logical = select_test_images(index, kinds=("logical",), extra_normals=("validation",))
    test_normals = [s for s in index.split("test") if s.is_normal]
    validation = index.split("validation", normal_only=True)
    assert [s.id for s in logical] == [s.id for s in test_normals + validation] + sorted(
        s.id for s in index.split("test") if s.defect_type == "logical_anomalies")
    assert {s.defect_type for s in everything if not s.is_normal} == {"logical_anomalies", "structural_anomalies"}
    with pytest.raises(SynthgenError, match="--kinds: 'scratches'"):
        select_test_images(index, kinds=("scratches",))
    with pytest.raises(SynthgenError, match="--extra-normals: 'train' is not allowed"):
        select_test_images(index, extra_normals=("train",))

    images = RealTestImages(logical[:2], (32, 48), gray=False)
    item = images[1]
    assert item["image"].shape == (3, 32, 48) and item["position"] == 1
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert tuple(item["original_size"].tolist()) == (256, 256)


# ------------------------------------------------------------------------------------- commands


def test_train_command_lists_every_method():
    result = CliRunner().invoke(train_cli, ["--help"])
    assert result.exit_code == 0
    assert "reconstruction" in result.output and "logical" in result.output


def test_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["reconstruction", "--shards", str(tmp_path / "nothing"), "--out", str(tmp_path / "run"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synthgen-train: error: ") and "no manifest" in err and "\n" not in err

    with pytest.raises(SystemExit) as exit_info:
        eval_main([str(tmp_path), "--dataset", "demo", "--category", "parts_box"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"synthgen-eval: error: {tmp_path / 'run.json'}: not a training run folder (no run.json)"
