"""Trainer options declared once (trainers/options.py): each method's click command is built from its
options dataclass, the command line gives the same values as the dataclass's defaults, and a
sub-package registers its command with one line (trainers/cli.py add_train_command)."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from synthgen.generator.config import parse_image_size
from synthgen.trainers import ensemble, glass, logical, pbas, reconstruction
from synthgen.trainers.cli import add_train_command, train_cli
from synthgen.trainers.options import CLI, cli, device_field, options_command, options_from_cli

#: (the click command, its options dataclass, the train function's module and name)
COMMANDS = [
    (reconstruction.command, reconstruction.ReconstructionOptions, "synthgen.trainers.reconstruction.train", "train"),
    (logical.command, logical.LogicALOptions, "synthgen.trainers.logical.train", "train"),
    (pbas.command, pbas.PBASOptions, "synthgen.trainers.pbas.train", "train"),
    (glass.command, glass.GLASSOptions, "synthgen.trainers.glass.train", "train"),
    (ensemble.command.commands["feature"], ensemble.FeatureEnsembleOptions, "synthgen.trainers.ensemble.train", "train_feature"),
    (ensemble.command.commands["output"], ensemble.OutputEnsembleOptions, "synthgen.trainers.ensemble.train", "train_output"),
]
IDS = [c[1].__name__ for c in COMMANDS]


@dataclass(frozen=True, kw_only=True)
class ToyOptions:
    out: Path = field(metadata=cli("The run folder."))
    sizes: tuple[int, int] = field(default=(8, 8), metadata=cli("N or HxW.", parse=parse_image_size, text="8"))
    names: tuple[str, ...] = field(metadata=cli("Repeat for each name.", name="--name", multiple=True))
    rate: float = field(default=0.5, metadata=cli("A rate."))
    mode: str = field(default="a", metadata=cli("a or b.", choices=("a", "b")))
    note: str | None = field(default=None, metadata=cli())
    device: str = device_field()
    progress: bool = field(default=True, metadata=cli("Quiet.", name="--quiet", negate=True))


def _toy_command():
    seen = []

    @options_command("toy", ToyOptions)
    def command(options: ToyOptions) -> None:
        """A toy command."""
        seen.append(options)

    return command, seen


def test_a_command_built_from_options_parses_every_kind_of_field(tmp_path):
    command, seen = _toy_command()
    result = CliRunner().invoke(command, ["--out", str(tmp_path), "--name", "x", "--name", "y", "--sizes", "4x6", "--rate", "2",
                                          "--mode", "b", "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen == [ToyOptions(out=tmp_path, names=("x", "y"), sizes=(4, 6), rate=2.0, mode="b", progress=False)]
    assert isinstance(seen[0].out, Path)
    CliRunner().invoke(command, ["--out", "o", "--name", "x"])
    assert seen[1] == ToyOptions(out=Path("o"), names=("x",))  # the command line's defaults are the dataclass's


def test_a_command_built_from_options_shows_help_defaults_and_refuses_bad_values():
    command, _ = _toy_command()
    text = CliRunner().invoke(command, ["--help"], terminal_width=100).output
    assert "A toy command." in text and "[default: 8]" in text and "[default: a]" in text and "[default: auto]" in text
    assert text.index("--out") < text.index("--sizes") < text.index("--name") < text.index("--quiet")  # field order
    assert "[required]" in text.split("--sizes")[0]
    result = CliRunner().invoke(command, ["--out", "o", "--name", "x", "--mode", "c"])
    assert result.exit_code == 2 and "'c' is not one of 'a', 'b'" in result.output
    assert CliRunner().invoke(command, ["--name", "x"]).exit_code == 2  # --out is required


@pytest.mark.parametrize("command, options_type, module, function", COMMANDS, ids=IDS)
def test_each_method_command_is_its_options_dataclass(command, options_type, module, function):
    """The command's options are the dataclass's fields, in order, and train() takes the dataclass."""
    fields = dataclasses.fields(options_type)
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    assert [p.name for p in options] == [f.name for f in fields]
    for f in fields:
        assert f.metadata[CLI] is not None
    train_function = getattr(__import__(module, fromlist=[function]), function)
    first = next(iter(inspect.signature(train_function).parameters.values()))
    assert first.name == "options" and first.annotation in (options_type, options_type.__name__)


@pytest.mark.parametrize("command, options_type, module, function", COMMANDS, ids=IDS)
def test_each_method_command_line_defaults_are_the_dataclass_defaults(command, options_type, module, function):
    """What a command line without optional options trains with is what a Python caller gets."""
    required = [f for f in dataclasses.fields(options_type) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    args = [a for f in required for a in (f.metadata[CLI].name or "--" + f.name.replace("_", "-"), "x")]
    parsed = command.make_context(command.name, args).params  # what click hands the command, without running it
    hints = typing.get_type_hints(options_type)
    expected = options_type(**{f.name: (Path("x") if Path in typing.get_args(hints[f.name]) else "x",) if f.metadata[CLI].multiple
                               else Path("x") for f in required})
    assert options_from_cli(options_type, parsed) == expected


def test_a_sub_package_registers_its_command_with_one_line():
    package = types.ModuleType("synthgen.trainers.toy")
    package.command, _ = _toy_command()
    add_train_command(package)
    try:
        assert train_cli.commands["toy"] is package.command
        with pytest.raises(ValueError, match="registered twice"):
            add_train_command(package)
    finally:
        train_cli.commands.pop("toy")
    assert {"reconstruction", "logical", "pbas", "glass", "ensemble"} <= set(train_cli.commands)


def test_a_field_without_command_line_metadata_is_refused():
    @dataclass(frozen=True, kw_only=True)
    class Undeclared:
        out: Path = field(metadata=cli("The run folder."))
        secret: int = 3

    with pytest.raises(TypeError, match="Undeclared: fields without cli.*secret"):
        options_command("undeclared", Undeclared)
