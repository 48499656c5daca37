"""synthgen-eval (trainers/evaluate.py): the evaluation grid, the ranking of cases, and the whole
report on the demo dataset with an oracle model that returns each test image's own ground truth (and
its inverse), so every number the report must contain is known in advance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from synthgen.generator.datasets import load_dataset
from synthgen.generator.imageio import read_mask, read_rgb, resize_mask, resize_rgb
from synthgen.trainers.base import MODEL_FILE, register_loader, write_run_info
from synthgen.trainers.cli import eval_main
from synthgen.trainers.data import select_test_images
from synthgen.trainers.evaluate import (
    SHEET_TILE,
    GroundTruth,
    Predictions,
    compute_metrics,
    defect_type_metrics,
    evaluate,
    evaluation_size,
    rank_cases,
)
from synthgen.generator.datasets.base import SourceImage

MODEL_SIZE = (64, 64)


def _key(image: torch.Tensor) -> bytes:
    return np.round(image.numpy() * 255).astype(np.uint8).tobytes()


class OracleModel:
    """Maps each test image (as the evaluator resizes it) to its ground truth at the model's size;
    ``inverted`` returns 1 - truth instead, the worst possible model."""

    def __init__(self, inverted: bool):
        index = load_dataset("demo", None, "parts_box")
        self.image_size = MODEL_SIZE
        self.truth = {}
        for item in select_test_images(index, extra_normals=("validation",)):
            rgb = resize_rgb(read_rgb(item.path), MODEL_SIZE)
            image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255.0)
            union = np.zeros(rgb.shape[:2], dtype=np.uint8)
            for ref in item.masks:
                union |= resize_mask((read_mask(ref.path) > 0).astype(np.uint8), MODEL_SIZE)
            truth = torch.from_numpy(union.astype(np.float32))
            self.truth[_key(image)] = 1 - truth if inverted else truth

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = torch.stack([self.truth[_key(image)] for image in images])
        return maps, maps.flatten(1).mean(dim=1)

    def to(self, device):
        return self


@register_loader("oracle-test")
def _load_oracle(run_dir, device):
    return OracleModel(inverted=(run_dir / MODEL_FILE).read_text() == "inverted")


def _oracle_run(folder, inverted: bool):
    folder.mkdir()
    (folder / MODEL_FILE).write_text("inverted" if inverted else "oracle")
    write_run_info(folder, {"method": "oracle-test", "status": "complete"})
    return folder


# ----------------------------------------------------------------------------------------- pieces


def test_evaluation_size_keeps_aspect_and_never_enlarges():
    assert evaluation_size((1600, 800), 512) == (512, 256)  # MVTec LOCO juice_bottle
    assert evaluation_size((256, 256), 512) == (256, 256)
    assert evaluation_size((900, 900), None) == (900, 900)


def test_rank_cases_orders_from_worst_to_best():
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8])
    labels = np.array([0, 1, 1, 0, 1])
    # quality = share of the other class ordered correctly: normal 0.9 beats none of 3 anomalies (0),
    # anomaly 0.1 is above no normal (0); anomaly 0.5 above one of two (0.5); normal 0.2 below 2 of 3;
    # anomaly 0.8 above one of two (0.5). Ties in quality: by the class-signed score.
    assert rank_cases(scores, labels).tolist() == [0, 1, 2, 4, 3]


def _item(defect: str, i: int) -> SourceImage:
    return SourceImage(f"test/{defect}/{i:03d}", None, "test", defect, int(defect != "good"))


def test_per_defect_type_breakdown_against_all_normals():
    # two normals, crack detected (scores and maps high where the mask is), hole missed (low scores)
    items = [_item("good", 0), _item("good", 1), _item("crack", 0), _item("hole", 0)]
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    maps = [np.full((4, 4), 0.2), np.full((4, 4), 0.3), np.where(mask, 0.9, 0.1), np.where(mask, 0.0, 0.25)]
    pred = Predictions(maps, np.array([0.2, 0.3, 0.9, 0.0]), 0.0)
    truth = GroundTruth([np.zeros((4, 4), bool), np.zeros((4, 4), bool), mask, mask], None)
    table = defect_type_metrics(pred, truth, items)
    assert list(table) == ["crack", "hole"]
    assert table["crack"]["images"] == 1 and table["crack"]["image_auroc"] == 1.0
    assert table["crack"]["pixel_auroc"] == 1.0 and table["crack"]["au_pro"] > 0.99
    assert table["hole"]["image_auroc"] == 0.0 and table["hole"]["pixel_auroc"] < 0.01


def test_all_empty_masks_leave_pixel_metrics_out_with_a_note():
    items = [_item("good", 0), _item("crack", 0)]
    empty = np.zeros((4, 4), bool)
    pred = Predictions([np.zeros((4, 4)), np.ones((4, 4))], np.array([0.0, 1.0]), 0.0)
    metrics, notes = compute_metrics(pred, GroundTruth([empty, empty], None), np.array([0, 1]))
    assert metrics["image_auroc"] == 1.0 and metrics["pixel_auroc"] is None
    assert any("every ground-truth mask" in note for note in notes)
    assert defect_type_metrics(pred, GroundTruth([empty, empty], None), items)["crack"]["pixel_auroc"] is None


# ------------------------------------------------------------------------------------------ report


def test_oracle_report_on_demo_logical_anomalies(tmp_path):
    run = _oracle_run(tmp_path / "oracle", inverted=False)
    report = evaluate(run, dataset="demo", root=None, category="parts_box", kinds=("logical",),
                      extra_normals=("validation",), device="cpu", sheet_count=2)
    folder = run / "eval" / "demo-parts_box-logical"
    assert report["folder"] == str(folder)
    assert report["test_set"]["counts"] == {"test/good": 8, "test/logical_anomalies": 8, "validation/good": 8}
    assert report["test_set"]["kinds"] == ["logical_anomalies"]
    m = report["metrics"]
    assert m["image_auroc"] == 1.0 and m["image_ap"] == 1.0
    assert m["pixel_auroc"] > 0.97 and m["au_pro"] > 0.9
    loco = report["loco"]
    assert loco["logical_anomalies"]["image_auroc"] == 1.0
    assert loco["logical_anomalies"]["au_spro"]["0.05"] > 0.9
    assert loco["structural_anomalies"]["image_auroc"] is None  # none selected
    assert report["evaluation"]["eval_sizes"] == [[256, 256]]

    on_disk = json.loads((folder / "report.json").read_text())
    assert on_disk["metrics"] == m
    markdown = (folder / "report.md").read_text()
    assert "| image AUROC | 1.0000 |" in markdown and "AU-sPRO FPR 0.05 (quoted)" in markdown
    assert list(report["by_defect_type"]) == ["logical_anomalies"]
    assert report["by_defect_type"]["logical_anomalies"]["image_auroc"] == 1.0
    assert "| logical_anomalies | 8 | 1.0000 |" in markdown
    assert report["cases"]["map_range"] == [0.0, 1.0] and "one scale, 0 blue to 1 red" in markdown
    sheet = np.asarray(Image.open(folder / "sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[0] > 4 * SHEET_TILE  # four rows: two worst, two best
    assert [c["label"] for c in report["cases"]["best"]] and len(report["cases"]["worst"]) == 2


def test_inverted_oracle_scores_zero_through_the_command(tmp_path, capsys):
    run = _oracle_run(tmp_path / "inverted", inverted=True)
    out = tmp_path / "report"
    eval_main([str(run), "--dataset", "demo", "--category", "parts_box", "--out", str(out),
               "--eval-size", "full", "--device", "cpu", "--sheet-count", "0"])
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["image_auroc"] == 0.0 and report["metrics"]["pixel_auroc"] < 0.03
    assert report["test_set"]["counts"]["test/structural_anomalies"] == 8
    assert not (out / "sheet.png").exists()
    printed = capsys.readouterr().out
    assert "| image AUROC | 0.0000 |" in printed
    # LOCO block: the official image score is the map's maximum, 1 on every image here (all tied:
    # 0.5), apart from the model's own score (the map's mean: every anomaly below every normal: 0).
    for kind in ("logical_anomalies", "structural_anomalies", "mean"):
        assert report["loco"][kind]["image_auroc"] == 0.5
        assert report["loco"][kind]["image_auroc_model_score"] == 0.0
    assert "| image AUROC (official: max of map) | 0.5000 | 0.5000 | 0.5000 |" in printed
    assert "| image AUROC (model's image score) | 0.0000 | 0.0000 | 0.0000 |" in printed

    for option, value, message in (("--eval-size", "big", "--eval-size: 'big' is not a number"),
                                   ("--kinds", "scratches", "--kinds: 'scratches'")):
        with pytest.raises(SystemExit) as exit_info:
            eval_main([str(run), "--dataset", "demo", "--category", "parts_box", option, value])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith(f"synthgen-eval: error: {message}")
