"""Command-line options generated from dataclass fields, so each default is written once.

A config field that the CLI exposes carries its flag and help text in its metadata::

    iterations: int = option(7000, "training length")
    model_type: str = option("vit_h", "SAM backbone", flag="--sam-model", choices=["vit_h", "vit_l", "vit_b"])

``add_options(parser, Config)`` adds one argparse option per such field (default: the field's
default, shown in --help); ``from_options(Config, args)`` builds the config from the parsed values.
Booleans become switches: ``--flag`` sets True (``--no-flag`` sets False where the default is True). Fields without metadata stay Python-only.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

_KEY = "cli"


def option(default: Any, help: str, flag: str | None = None, **argparse_kwargs) -> Any:
    """A dataclass field with a default that the CLI exposes as ``flag`` (default ``--field-name``)."""
    meta = {_KEY: {"help": help, "flag": flag, **argparse_kwargs}}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(field: dataclasses.Field) -> str:
    """The command-line flag of a field."""
    return field.metadata[_KEY]["flag"] or "--" + field.name.replace("_", "-")


def cli_fields(cls) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that carry CLI metadata, in declaration order."""
    return [f for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _base_type(cls, field: dataclasses.Field):
    """int / float / str / bool of a field (``X | None`` -> X)."""
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, skip: tuple[str, ...] = ()) -> None:
    """Add an option for every CLI field of dataclass ``cls`` (except the names in ``skip``)."""
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        meta = {k: v for k, v in f.metadata[_KEY].items() if k != "flag"}
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = _base_type(cls, f)
        if kind is bool:  # a switch: --flag sets True, or (default True) --no-flag sets False
            action = "store_false" if default else "store_true"
            parser.add_argument(flag_of(f), dest=f.name, action=action, default=default, help=meta["help"])
            continue
        if default is not None:
            meta["help"] = f"{meta['help']} (default {default})"
        meta.setdefault("type", kind)
        parser.add_argument(flag_of(f), dest=f.name, default=default, **meta)


def from_options(cls, args: argparse.Namespace, **overrides):
    """An instance of ``cls`` with its CLI fields read from ``args`` (plus ``overrides``)."""
    values = {f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
