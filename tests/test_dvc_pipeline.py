"""Real `dvc repro` on a copy of the project: caching, and reruns only where params or inputs changed."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

DATA_STAGES = ["download", "analyze", "filter", "render"]


def sh(cmd, cwd):
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, shell=True)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ran(output):
    """The stages a repro ran (as a sorted list: DVC may order independent stages either way)."""
    return sorted(re.findall(r"Running stage '([\w-]+)'", output))


@pytest.fixture
def project(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for pkg in ("stages", "gemma_toolcall"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["download"]["rows"] = 400
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git init -q && git config user.email t@t && git config user.name t && dvc init -q", tmp_path)
    return tmp_path


def set_param(cwd, section, key, value):
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    params[section][key] = value
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_caches_and_reruns_only_what_changed(project):
    assert ran(sh(f"dvc repro {' '.join(DATA_STAGES)}", project)) == sorted(DATA_STAGES)
    assert (project / "data/formatted").is_dir() and (project / "metrics/data.json").is_file()

    assert ran(sh(f"dvc repro {' '.join(DATA_STAGES)}", project)) == []  # nothing changed: nothing runs

    set_param(project, "filter", "max_tools_available", 5)
    assert ran(sh(f"dvc repro {' '.join(DATA_STAGES)}", project)) == ["filter", "render"]

    set_param(project, "render", "json_style", "compact")
    assert ran(sh(f"dvc repro {' '.join(DATA_STAGES)}", project)) == ["render"]

    sh("git add -A && git commit -qm base", project)
    set_param(project, "filter", "max_tools_available", 3)
    sh("dvc repro render", project)
    diff = sh("dvc metrics diff", project)
    assert "metrics/data.json" in diff and "kept" in diff


# Keys a stage's module loads that the stage itself never uses: the base model decodes at its own budget, so the
# tuned model's can change without rerunning it.
UNUSED_BY_STAGE = {"evaluate_base": {"evaluate.max_new_tokens"}}


def test_every_param_a_stage_reads_is_a_dependency():
    """Stages read params.yaml through `load_section(section, Params)` and `value("section.key")`; dvc.yaml must list
    each key they read (or its whole section), or changing that param would not rerun the stage."""
    import dataclasses
    import importlib

    checked = 0
    for name, spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        listed = set(spec.get("params", []))
        (module_name,) = re.findall(r"python -m stages\.(\w+)", spec["cmd"])  # evaluate_base runs stages.evaluate
        source = (ROOT / "stages" / f"{module_name}.py").read_text()
        module = importlib.import_module(f"stages.{module_name}")
        keys = [f"{section}.{f.name}" for section, cls in re.findall(r'load_section\("(\w+)", (\w+)\)', source)
                for f in dataclasses.fields(getattr(module, cls))]
        keys += re.findall(r'value\("([\w.]+)"\)', source)
        unused = UNUSED_BY_STAGE.get(name, set())
        assert not unused & listed and unused <= set(keys), f"dvc.yaml: stage {name} lists {unused & listed}"
        missing = [k for k in keys if k not in listed and k.split(".")[0] not in listed and k not in unused]
        assert not missing, f"dvc.yaml: stage {name} reads {missing} but does not list them under params"
        checked += len(keys)
    assert checked > 40


def test_the_base_model_is_evaluated_apart_from_training():
    """`evaluate_base` reads nothing training writes or reads, so a new LoRA or training param reruns only
    `evaluate` (the base model's evaluation is most of the quality profile's); `evaluate` reads its results."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    base, tuned = stages["evaluate_base"], stages["evaluate"]
    trained = {out if isinstance(out, str) else next(iter(out)) for name in ("train", "render")
               for out in stages[name]["outs"]}
    assert not trained & set(base["deps"]) and "models/base" in base["deps"]
    assert all(p.split(".")[0] not in ("lora", "train") for p in base["params"])
    assert {"metrics/eval_base.json", "metrics/eval_base_samples.jsonl", "models/lora"} <= set(tuned["deps"])
