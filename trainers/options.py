"""Trainer options, declared once: one dataclass per method, from which its click command is built.

A method's options dataclass is what its ``train()`` takes. Each field carries its type and default
(the values ``train()`` sees) and, in ``field(metadata=cli(...))``, what the command line adds: the
help text and, where the command line spells a value differently, how. :func:`options_command` turns
the dataclass into a click command whose options are the fields, in field order:

    @dataclass(frozen=True, kw_only=True)
    class PBASOptions:
        out: Path = field(metadata=cli("The run folder to write."))                      # --out, required
        layers: tuple[str, ...] = field(default=LAYERS, metadata=cli("...", parse=parse_layers, text=",".join(LAYERS)))
        progress: bool = field(default=True, metadata=cli("No per-epoch progress lines.", name="--quiet", negate=True))

    @options_command("pbas", PBASOptions)
    def command(options: PBASOptions) -> None:   # its docstring is the command's help
        click.echo(f"run folder: {train(options)}")

From a field: the option is ``--field-name`` unless ``name`` says otherwise; a field without a default
is a required option; ``Path`` becomes ``click.Path``, ``int``/``float``/``str`` themselves, ``choices``
a ``click.Choice``, ``bool`` a flag (``negate``: the flag sets the field to False); ``parse`` turns the
command-line text into the value (``text``: the default as the command line shows it); a ``tuple``
field with ``multiple`` is a repeatable option. Every option with a default shows it in ``--help``.
Every field is an option: a field without ``cli`` metadata is a programming error, refused when the
command is built.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

#: The metadata key under which a field's command-line description is stored.
CLI = "synthgen_cli"
DEVICES = ("auto", "cpu", "cuda")

Options = TypeVar("Options")


@dataclass(frozen=True)
class CliSpec:
    """How one options field appears on the command line (see the module docstring)."""

    help: str | None = None
    name: str | None = None
    negate: bool = False
    choices: tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    text: str | None = None
    multiple: bool = False


def cli(help: str | None = None, **spec: Any) -> dict:
    """The ``metadata`` of an options field: its help text and :class:`CliSpec` settings."""
    return {CLI: CliSpec(help=help, **spec)}


def device_field() -> Any:
    """``--device``: the option every trainer has."""
    return field(default="auto", metadata=cli(choices=DEVICES))


def _value_type(hint: Any) -> Any:
    """``Path | None`` -> Path, ``tuple[Path, ...]`` -> Path: the type of one command-line value."""
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) in (typing.Union, types.UnionType, tuple) and len(args) == 1:
        return _value_type(args[0])
    return hint


def _click_option(f: dataclasses.Field, hint: Any) -> Callable:
    spec: CliSpec = f.metadata[CLI]
    name = spec.name or "--" + f.name.replace("_", "-")
    kind = _value_type(hint)
    if kind is bool:
        return click.option(name, f.name, is_flag=True, help=spec.help)
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    if spec.parse is not None:
        default, click_type = spec.text, click.STRING
    else:
        default = None if required or spec.multiple else f.default
        click_type = click.Path(path_type=Path) if kind is Path else click.Choice(spec.choices) if spec.choices else kind
    # no default at all rather than default=None: click counts an explicit None as a value of a required option
    defaults = {} if default is None else {"default": default}
    return click.option(name, f.name, type=click_type, required=required, multiple=spec.multiple, show_default=True,
                        help=spec.help, **defaults)


def options_from_cli(options_type: type[Options], values: dict[str, Any]) -> Options:
    """The options dataclass from the values click parsed (flags negated, text parsed)."""
    kwargs = {}
    for f in dataclasses.fields(options_type):
        spec: CliSpec = f.metadata[CLI]
        value = values[f.name]
        if spec.negate:
            value = not value
        elif spec.parse is not None and value is not None:
            value = spec.parse(value)
        elif spec.multiple:
            value = tuple(value)
        kwargs[f.name] = value
    return options_type(**kwargs)


def options_command(name: str, options_type: type[Options], group: click.Group | None = None) -> Callable[[Callable[[Options], None]], click.Command]:
    """Decorator: a click command named ``name`` with one option per field of ``options_type``; it
    calls the decorated function with the options. Its docstring is the command's help. With
    ``group``, the command is added to that group (a method with subcommands)."""
    hints = typing.get_type_hints(options_type)
    undeclared = [f.name for f in dataclasses.fields(options_type) if CLI not in f.metadata]
    if undeclared:
        raise TypeError(f"{options_type.__name__}: fields without cli(...) metadata: {', '.join(undeclared)}")

    def decorate(run: Callable[[Options], None]) -> click.Command:
        def callback(**values: Any) -> None:
            run(options_from_cli(options_type, values))

        callback.__doc__ = run.__doc__
        for f in reversed(dataclasses.fields(options_type)):
            callback = _click_option(f, hints[f.name])(callback)
        return (group.command if group is not None else click.command)(name)(callback)

    return decorate
