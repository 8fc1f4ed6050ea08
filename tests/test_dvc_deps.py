"""dvc.yaml lists, for every stage, each project module the stage runs: DVC reruns a stage only when a listed dep
changes, so a module left out would let a code change go by without rerunning what it affects."""
import ast
import re
from pathlib import Path

import yaml

from conftest import ROOT

# Package data a module reads at run time: a stage that runs the module depends on the file too.
DATA_READ_BY = {"gemma_toolcall/dataset/mcp_catalogue.py": ["gemma_toolcall/data/mcp_tools.jsonl.gz"]}


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a package's __init__.py), or None outside the project."""
    base = ROOT / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module a file imports, at any depth of its code (a lazy import inside a function
    runs too), with `from pkg import mod` resolved to the module where `mod` is one."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_file(f"{node.module}.{alias.name}")}
    return {n for n in names if n.split(".")[0] in ("gemma_toolcall", "stages")}


def import_closure(path: Path) -> set[str]:
    """Project files (relative to the root) that running `path` imports, directly or through other modules.
    Packages' __init__.py are left out: they hold only a docstring (checked below)."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        for name in imported_modules(current):
            file = module_file(name)
            if file and file not in seen:
                seen.add(file)
                todo.append(file)
    files = {str(f.relative_to(ROOT)) for f in seen if f.name != "__init__.py"}
    return files | {d for f in files for d in DATA_READ_BY.get(f, [])}


def stage_module(spec: dict) -> Path:
    (name,) = re.findall(r"python -m stages\.(\w+)", spec["cmd"])  # evaluate_base runs stages.evaluate
    return ROOT / "stages" / f"{name}.py"


def test_every_stage_lists_every_module_it_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        module = stage_module(spec)
        deps = set(spec["deps"])
        assert str(module.relative_to(ROOT)) in deps, f"dvc.yaml: stage {name} does not list its own module"
        missing = sorted(import_closure(module) - deps)
        assert not missing, f"dvc.yaml: stage {name} imports {missing}; add them to its deps"


def test_stages_import_no_other_stage():
    for path in sorted((ROOT / "stages").glob("*.py")):
        others = {n for n in imported_modules(path) if n.startswith("stages.")}
        assert not others, f"{path.name} imports {others}: shared code belongs in gemma_toolcall"


def test_package_inits_hold_only_a_docstring():
    """What lets the closure above leave them out: importing a package runs nothing."""
    for init in (ROOT / "gemma_toolcall").rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init


def test_the_closure_follows_imports_through_modules():
    """evaluate reaches the call grammar only through the sampler: the check must see it."""
    closure = import_closure(ROOT / "stages" / "evaluate.py")
    assert "gemma_toolcall/decoding/call_grammar.py" in closure
    assert "gemma_toolcall/dataset/toucan.py" in closure

