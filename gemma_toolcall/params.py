"""Typed access to one section of `params.yaml`: each stage declares a frozen dataclass and reads only its section.
The dataclasses declare keys and types, never values: params.yaml is the one place defaults live.

A wrong key, type or value stops the stage with a message that names the key and says what to set instead.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class ConfigError(SystemExit):
    """Raised for a bad params.yaml: exits with the message, no traceback."""

    def __init__(self, message: str):
        super().__init__(f"params.yaml: {message}")


def load_section(section: str, cls, path: Path = PARAMS_FILE, **overrides):
    """The section as `cls`; `overrides` replace keys of it (what a test or a script changes)."""
    if not Path(path).exists():
        raise ConfigError(f"{path} not found; run from the project root")
    data = yaml.safe_load(Path(path).read_text()) or {}
    return from_dict(section, cls, {**(data.get(section) or {}), **overrides})


def from_dict(section: str, cls, values: dict):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {[f'{section}.{k}' for k in unknown]}; known: {sorted(fields)}")
    missing = [name for name in fields if name not in values]
    if missing:  # params.yaml is the one place defaults live
        raise ConfigError(f"missing key(s) {[f'{section}.{k}' for k in missing]}; copy them from recipes/smoke.yaml")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        want = hints[name]
        origin = typing.get_origin(want) or (want if want in (list, tuple) else None)
        if origin is typing.Literal:
            if value not in typing.get_args(want):
                raise ConfigError(f"{section}.{name} must be one of {list(typing.get_args(want))}, got {value!r}")
        elif want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{section}.{name} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(want, type) and (not isinstance(value, want) or (want is int and isinstance(value, bool))):
            raise ConfigError(f"{section}.{name} must be {want.__name__}, got {value!r}")
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check:
        problem = check()
        if problem:
            raise ConfigError(f"{section}.{problem}")
    return obj


def value(dotted: str, path: Path = PARAMS_FILE):
    """One value of another stage's section (declared as a param dep in dvc.yaml), e.g. `render.json_style`."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    section, _, key = dotted.partition(".")
    if key not in (data.get(section) or {}):
        raise ConfigError(f"{dotted} is missing")
    return data[section][key]
