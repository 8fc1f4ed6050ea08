"""Recipes: reviewable files of the params a run sets over params.yaml, run as DVC experiments.

A recipe, `recipes/NAME.yaml`, has params.yaml's shape: the sections and keys it changes, each with a comment that
says why. Running it is one ordinary `dvc exp run -n NAME -S section.key=value ...`, so `dvc exp show` and
`dvc metrics diff` list exactly what it changed, `--queue` works as for any experiment, and params.yaml stays the one
file of defaults (the smoke recipe is what it holds).

    gemma-toolcall recipe quality            # runs it
    gemma-toolcall recipe quality --print    # prints the command only
    gemma-toolcall recipe quality --queue    # queues it; `dvc exp run --run-all` runs the queue
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from gemma_toolcall.params import PARAMS_FILE, ConfigError

RECIPES_DIR = Path("recipes")


class RecipeError(SystemExit):
    """A recipe that cannot run: exits with the message, no traceback."""

    def __init__(self, message: str):
        super().__init__(f"recipe: {message}")

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


def available(directory: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load(name: str, directory: Path = RECIPES_DIR) -> dict:
    path = Path(name) if name.endswith(".yaml") else directory / f"{name}.yaml"
    if not path.is_file():
        raise RecipeError(f"no recipe {name!r}: {path} not found; recipes here: {available(directory)}")
    recipe = yaml.safe_load(path.read_text()) or {}
    if not isinstance(recipe, dict) or not all(isinstance(v, dict) for v in recipe.values()):
        raise RecipeError(f"{path}: a recipe maps params.yaml sections to {{key: value}}")
    return recipe


def settings(recipe: dict, params: dict) -> list[tuple[str, object]]:
    """(section.key, value) for every setting of the recipe, in its order. A section or key params.yaml lacks is a
    typo the stage would reject only when it runs: stop here instead, naming it."""
    out = []
    for section, values in recipe.items():
        if section not in params:
            raise RecipeError(f"section {section!r} is not one of params.yaml's: {sorted(params)}")
        for key, value in values.items():
            if key not in params[section]:
                raise RecipeError(f"key {section}.{key} is not in params.yaml; known: {sorted(params[section])}")
            out.append((f"{section}.{key}", value))
    return out


def compose(recipe: dict, params: dict) -> dict:
    """params.yaml as the recipe leaves it."""
    composed = {section: dict(values) for section, values in params.items()}
    for dotted, value in settings(recipe, params):
        section, key = dotted.split(".", 1)
        composed[section][key] = value
    return composed


def override_value(value) -> str:
    """A value in Hydra's override grammar, which `dvc exp run -S` parses: quoted where a bare word would read as
    another type or break the grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("true", "false", "null", "inf", "nan"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def command(name: str, *, queue: bool = False, exp_name: str | None = None, directory: Path = RECIPES_DIR,
            params_file: Path = PARAMS_FILE) -> list[str]:
    """The `dvc exp run` argv that runs recipe `name` as an experiment named `exp_name` (default: the recipe's)."""
    if not Path(params_file).is_file():
        raise ConfigError(f"{params_file} not found; run from the project root")
    params = yaml.safe_load(Path(params_file).read_text())
    argv = ["dvc", "exp", "run", "-n", exp_name or Path(name).stem]
    if queue:
        argv.append("--queue")
    for dotted, value in settings(load(name, directory), params):
        argv += ["-S", f"{dotted}={override_value(value)}"]
    return argv
