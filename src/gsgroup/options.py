"""Command-line options generated from dataclass fields, so each default is written once.

A config field that the CLI exposes carries its flag and help text in its metadata::

    iterations: int = option(7000, "training length")
    model_type: str = option("vit_h", "SAM backbone", flag="--sam-model", choices=["vit_h", "vit_l", "vit_b"])

``add_options(parser, Config)`` adds one argparse option per such field (default: the field's
default, shown in --help); ``from_options(Config, args)`` builds the config from the parsed values.
Booleans become switches: ``--flag`` sets True (``--no-flag`` sets False where the default is True). Fields without metadata stay Python-only.

Numbers can carry bounds, ``option(7000, "training length", min=1)`` (``exclusive=True``: the
bounds themselves are out, as for a probability in (0, 1)): the option then rejects other values
with an argparse error naming the flag, and ``check_bounds(config)`` (called from a config's
``__post_init__``) raises an InputError naming the field, so the Python API is checked too. Fields
that the CLI does not expose take bounds through ``dataclasses.field(metadata=bounds(min=1))``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from .errors import InputError

_KEY = "cli"
_BOUNDS = "bounds"


def bounds(min: float | None = None, max: float | None = None, exclusive: bool = False) -> dict:
    """Field metadata: the value must lie in [min, max] ((min, max) when ``exclusive``); None = open."""
    return {_BOUNDS: {"min": min, "max": max, "exclusive": exclusive}}


def out_of_bounds(value, min=None, max=None, exclusive: bool = False) -> str | None:
    """None when ``value`` is within the bounds, else what it must be (``must be at least 1``)."""
    if value is None:
        return None
    low = min is not None and (value <= min if exclusive else value < min)
    high = max is not None and (value >= max if exclusive else value > max)
    if not (low or high):
        return None
    if min is not None and max is not None:
        return f"must be between {min} and {max}" + (" (both excluded)" if exclusive else "")
    if min is not None:
        return f"must be {'above' if exclusive else 'at least'} {min}"
    return f"must be {'below' if exclusive else 'at most'} {max}"


def bounded(kind: type = int, min=None, max=None, exclusive: bool = False):
    """An argparse ``type``: parse with ``kind`` (int / float), then reject values outside the bounds."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
        problem = out_of_bounds(value, min, max, exclusive)
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return value

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def check_bounds(config) -> None:
    """InputError naming the first field of dataclass instance ``config`` outside its bounds."""
    for f in dataclasses.fields(config):
        b = f.metadata.get(_BOUNDS)
        if b is None:
            continue
        value = getattr(config, f.name)
        problem = out_of_bounds(value, **b)
        if problem:
            raise InputError(f"{f.name} {value}: {problem}", f.name)


def option(
    default: Any,
    help: str,
    flag: str | None = None,
    *,
    min: float | None = None,
    max: float | None = None,
    exclusive: bool = False,
    **argparse_kwargs,
) -> Any:
    """A dataclass field with a default that the CLI exposes as ``flag`` (default ``--field-name``);
    ``min`` / ``max`` (``exclusive``): bounds checked by the option and by ``check_bounds``."""
    meta = {_KEY: {"help": help, "flag": flag, **argparse_kwargs}}
    if min is not None or max is not None:
        meta.update(bounds(min, max, exclusive))
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
        b = f.metadata.get(_BOUNDS)
        meta.setdefault("type", bounded(kind, **b) if b else kind)
        parser.add_argument(flag_of(f), dest=f.name, default=default, **meta)


def from_options(cls, args: argparse.Namespace, **overrides):
    """An instance of ``cls`` with its CLI fields read from ``args`` (plus ``overrides``)."""
    values = {f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
