"""The trainers' command lines: ``synthgen-train METHOD ...`` and ``synthgen-eval RUN ...``.

``synthgen-train`` has one subcommand per method in trainers.methods.METHODS (each package's click
``command``, built from its options dataclass by trainers/options.py): adding a method to that list
adds its subcommand here and registers its model loader for ``synthgen-eval`` (``anomalib``, the
anomalib models fed by shards, is one entry like the others). As in ``synthgen``, a user's
mistake (SynthgenError) is one line on stderr and exit status 2; an interrupted command exits 130
and says how to resume. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import click

from synthgen.generator import __version__
from synthgen.generator.errors import SynthgenError

from .evaluate import DEFAULT_EVAL_SIDE, DEFAULT_SHEET_COUNT, REPORT_MD, evaluate
from .methods import METHODS

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, prog_name="synthgen-train")
def train_cli() -> None:
    """Train an anomaly localization model on synthgen shards; writes a run folder for synthgen-eval."""


def add_train_command(package: ModuleType) -> None:
    """Make ``package.command`` (a click command or group, e.g. built by trainers.options.options_command)
    the ``synthgen-train`` subcommand of the same name; a second command of that name is refused."""
    name = package.command.name
    if name in train_cli.commands:
        raise ValueError(f"synthgen-train {name}: registered twice ({package.__name__})")
    train_cli.add_command(package.command)


for _method in METHODS:
    add_train_command(_method)


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _eval_side(text: str) -> int | None:
    if text == "full":
        return None
    try:
        return int(text)
    except ValueError:
        raise SynthgenError(f"--eval-size: '{text}' is not a number of pixels or 'full'") from None


@click.command(context_settings=_CONTEXT)
@click.version_option(__version__, prog_name="synthgen-eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--dataset", required=True, help="Test set layout: mvtec_loco, mvtec_ad, visa, mpdd, madsim, folder, demo.")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root (the folder holding CATEGORY/). Not needed for demo.")
@click.option("--category", required=True, help="Category, e.g. juice_bottle.")
@click.option("--kinds", default="", help="Anomaly types to evaluate, comma-separated (LOCO: logical,structural). Default: all.")
@click.option("--extra-normals", default="", help="Add this split's normal images to the normal test images (validation).")
@click.option("--out", type=click.Path(path_type=Path), help="Report folder. Default: RUN/eval/DATASET-CATEGORY[-KINDS].")
@click.option("--eval-size", default=str(DEFAULT_EVAL_SIDE), show_default=True,
              help="Longer side in pixels of the grid metrics are computed on (aspect kept), or 'full'.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes reading test images.")
@click.option("--sheet-count", default=DEFAULT_SHEET_COUNT, show_default=True, help="Worst and best images shown on sheet.png (each).")
def eval_cli(run, dataset, root, category, kinds, extra_normals, out, eval_size, batch_size, device, workers, sheet_count):
    """Evaluate the model of training run RUN on a real test set: report.json, report.md, sheet.png."""
    report = evaluate(
        run,
        dataset=dataset,
        root=root,
        category=category,
        kinds=_split_names(kinds),
        extra_normals=_split_names(extra_normals),
        out=out,
        eval_side=_eval_side(eval_size),
        batch_size=batch_size,
        device=device,
        workers=workers,
        sheet_count=sheet_count,
    )
    folder = Path(report["folder"])
    click.echo((folder / REPORT_MD).read_text(), nl=False)
    click.echo(f"report: {folder}")


def _run(command: click.Command, prog: str, argv: list[str] | None) -> None:
    """Run a click command with synthgen's error policy (mirrors generator.cli.main)."""
    try:
        command.main(args=argv, prog_name=prog, standalone_mode=False)
    except SynthgenError as e:
        click.echo(f"{prog}: error: {e}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{prog}: interrupted; run the same command again (synthgen-train: with --resume) to continue", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)


def train_main(argv: list[str] | None = None) -> None:
    _run(train_cli, "synthgen-train", argv)


def eval_main(argv: list[str] | None = None) -> None:
    _run(eval_cli, "synthgen-eval", argv)


if __name__ == "__main__":
    train_main()
