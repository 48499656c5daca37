"""Every user mistake gets one line on stderr naming the file and the problem, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.generator.cli import main


def _category(root: Path, n: int = 4, size: int = 48) -> Path:
    """A tiny MVTec AD category: root/widget/train/good/000.png ..."""
    good = root / "widget" / "train" / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(good / f"{i:03d}.png")
    return good


def _run(capsys, args: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    return exit_info.value.code, err


def _build_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "--dataset", "mvtec_ad", "--root", str(root), "--category", "widget", "--strategy", "cutpaste",
            "--image-size", "32", "--out", str(out), "--quiet", "--device", "cpu", *extra]


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("synthgen: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _nothing_written(out: Path) -> None:
    assert not out.exists() or not list(out.glob("*.h5")), list(out.iterdir())


def test_missing_root(capsys, tmp_path):
    code, err = _run(capsys, _build_args(tmp_path / "nope", tmp_path / "out"))
    _assert_one_line_error(code, err, str(tmp_path / "nope"))
    _nothing_written(tmp_path / "out")


def test_wrong_layout(capsys, tmp_path):
    (tmp_path / "widget" / "images").mkdir(parents=True)
    code, err = _run(capsys, _build_args(tmp_path, tmp_path / "out"))
    _assert_one_line_error(code, err, "widget")
    _nothing_written(tmp_path / "out")


def test_truncated_png(capsys, tmp_path):
    good = _category(tmp_path)
    victim = good / "002.png"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    code, err = _run(capsys, _build_args(tmp_path, tmp_path / "out"))
    _assert_one_line_error(code, err, str(victim), "truncated")
    _nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    "mode, dtype, needle",
    [("L", np.uint8, "greyscale"), ("RGBA", np.uint8, "alpha"), ("I;16", np.uint16, "16-bit")],
)
def test_odd_image_modes(capsys, tmp_path, mode, dtype, needle):
    good = _category(tmp_path)
    victim = good / "001.png"
    shape = (48, 48, 4) if mode == "RGBA" else (48, 48)
    image = Image.fromarray(np.full(shape, 1000 if dtype == np.uint16 else 100, dtype=dtype))
    assert image.mode == mode  # Pillow infers L / RGBA / I;16 from the array
    image.save(victim)
    code, err = _run(capsys, _build_args(tmp_path, tmp_path / "out"))
    _assert_one_line_error(code, err, str(victim), needle)
    _nothing_written(tmp_path / "out")


def test_wholly_greyscale_category_is_accepted(capsys, tmp_path):
    """MVTec AD grid/screw/zipper are greyscale: a category that is greyscale throughout builds."""
    good = tmp_path / "widget" / "train" / "good"
    good.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((40, 40), 40 * i, np.uint8)).save(good / f"{i:03d}.png")
    main(_build_args(tmp_path, tmp_path / "out"))
    assert len(list((tmp_path / "out").glob("*.h5"))) == 1


def test_mask_size_differs_from_image(capsys, tmp_path):
    _category(tmp_path)
    bad = tmp_path / "widget" / "test" / "crack"
    bad.mkdir(parents=True)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(bad / "000.png")
    gt = tmp_path / "widget" / "ground_truth" / "crack"
    gt.mkdir(parents=True)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(gt / "000_mask.png")
    code, err = _run(capsys, _build_args(tmp_path, tmp_path / "out"))
    _assert_one_line_error(code, err, str(gt / "000_mask.png"))
    _nothing_written(tmp_path / "out")


def test_unknown_dataset(capsys, tmp_path):
    code, err = _run(capsys, ["build", "--dataset", "mvtec_zz", "--root", str(tmp_path), "--category", "x",
                              "--strategy", "cutpaste", "--out", str(tmp_path / "out")])
    _assert_one_line_error(code, err, "mvtec_zz")


def test_unknown_strategy(capsys, tmp_path):
    _category(tmp_path)
    args = _build_args(tmp_path, tmp_path / "out")
    args[args.index("cutpaste")] = "cutpaste,glitter"
    code, err = _run(capsys, args)
    _assert_one_line_error(code, err, "glitter")
    _nothing_written(tmp_path / "out")


def test_output_folder_holding_a_different_build(capsys, tmp_path):
    _category(tmp_path)
    out = tmp_path / "out"
    main(_build_args(tmp_path, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    code, err = _run(capsys, _build_args(tmp_path, out, "--seed", "5"))
    _assert_one_line_error(code, err, str(out), "different build")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # earlier output untouched


def test_output_folder_that_is_not_a_build(capsys, tmp_path):
    _category(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code, err = _run(capsys, _build_args(tmp_path, out))
    _assert_one_line_error(code, err, str(out))
    assert (out / "thesis.tex").read_text() == "precious"
