"""Recipes (recipes/*.yaml) compose into params every stage accepts, and run as ordinary DVC experiments."""
import json
import shutil

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import ROOT
from gemma_toolcall import recipes
from gemma_toolcall.params import from_dict
from stages import base_model, download, evaluate, filter as filter_stage, render, train
from test_dvc_pipeline import sh

SECTIONS = {"download": download.DownloadParams, "filter": filter_stage.FilterParams, "render": render.RenderParams,
            "model": base_model.ModelParams, "lora": train.LoraParams, "train": train.TrainParams,
            "evaluate": evaluate.EvaluateParams}
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NAMES = recipes.available(ROOT / "recipes")


def test_the_recipes_are_there():
    assert {"smoke", "quality", "gpu-full"} <= set(NAMES)
    assert set(PARAMS) == set(SECTIONS)  # every section has the dataclass the checks below use


@pytest.mark.parametrize("name", NAMES)
def test_a_recipe_composes_into_params_every_stage_accepts(name):
    composed = recipes.compose(recipes.load(name, ROOT / "recipes"), PARAMS)
    for section, cls in SECTIONS.items():
        from_dict(section, cls, composed[section])  # a ConfigError names the key and what to set


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_of_a_recipe_says_why(name):
    for line in (ROOT / "recipes" / f"{name}.yaml").read_text().splitlines():
        if line.startswith("  ") and ":" in line:  # a key of a section
            assert "#" in line, \
                f"recipes/{name}.yaml: {line.strip()!r} has no comment saying why"


def test_params_yaml_is_the_smoke_recipe():
    assert recipes.compose(recipes.load("smoke", ROOT / "recipes"), PARAMS) == PARAMS


def test_a_typo_in_a_recipe_stops_with_its_name(tmp_path):
    (tmp_path / "typo.yaml").write_text("train:\n  max_step: 3\n")
    with pytest.raises(SystemExit, match=r"train\.max_step is not in params.yaml"):
        recipes.command("typo", directory=tmp_path, params_file=ROOT / "params.yaml")
    with pytest.raises(SystemExit, match="no recipe 'nope'"):
        recipes.load("nope", tmp_path)


@pytest.mark.parametrize("value", [3, 0.0001, 1e-05, True, False, None, "SFT", "huggingface", "a b", "true", "it's",
                                   "x,y", ["Kimi-K2", "OSS"], {"simple_python": 100, "multiple": 0}, "q_einsum", ""])
def test_a_value_reads_back_through_the_parser_dvc_uses(value):
    (override,) = OverridesParser.create().parse_overrides([f"train.x={recipes.override_value(value)}"])
    assert override.value() == value


def test_two_recipes_queue_as_experiments(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    sh("git init -q && git config user.email t@t && git config user.name t && dvc init -q && git add -A "
       "&& git commit -qm init", tmp_path)
    for name in ("smoke", "quality"):
        sh(f"gemma-toolcall recipe {name} --queue", tmp_path)
    status = sh("dvc queue status", tmp_path)
    assert "smoke" in status and "quality" in status and status.count("Queued") == 2
    queued = {}
    for commit in json.loads(sh("dvc exp show --json 2>/dev/null", tmp_path)):
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                queued[rev["name"]] = rev["data"]["params"]["params.yaml"]["data"]
    assert queued["smoke"] == PARAMS
    quality = recipes.compose(recipes.load("quality", ROOT / "recipes"), PARAMS)
    assert queued["quality"]["train"] == quality["train"] and queued["quality"]["evaluate"] == quality["evaluate"]
