"""The Berkeley Function-Calling Leaderboard, offline: data and scorer from the `bfcl-eval` wheel on PyPI.

The wheel's declared dependencies are heavy and clash with ours (numpy 1.26 pin, API SDKs, torch), so it is fetched
without them and unpacked; its AST checker imports only the standard library once the one module it needs from the
heavy chain (`bfcl_eval.constants.model_config`, used only to decide whether `.` in names becomes `_`) is stubbed.
Scores therefore come from BFCL's own rules, not a re-implementation.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

from gemma_toolcall.dataset.toucan import ToolCall

VERSION = "2026.3.23"
LANGUAGE_HINT = " Note that the provided function is in Python 3 syntax."  # what BFCL's own prompting appends
NO_ANSWER_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")


def fetch(out: Path) -> None:
    """`pip download bfcl-eval==VERSION --no-deps`, then unpack its `bfcl_eval` package (code and data) into `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                               "-d", tmp, f"bfcl-eval=={VERSION}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("bfcl_eval-*.whl"))
        if proc.returncode or not wheels:
            raise SystemExit(f"bfcl: could not download bfcl-eval=={VERSION} from the package index:\n{proc.stderr}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(out, [n for n in wheel.namelist() if n.startswith("bfcl_eval/")])


def load(root: Path, category: str, limit: int | None = None) -> list[dict]:
    """Questions of a category, each with `possible_answer` (None where BFCL has no answer file)."""
    data = Path(root) / "bfcl_eval" / "data"
    questions = [json.loads(line) for line in open(data / f"BFCL_v4_{category}.json", encoding="utf-8") if line.strip()]
    answers = {}
    answer_file = data / "possible_answer" / f"BFCL_v4_{category}.json"
    if answer_file.exists():
        for line in open(answer_file, encoding="utf-8"):
            if line.strip():
                a = json.loads(line)
                answers[a["id"]] = a["ground_truth"]
    for q in questions:
        q["possible_answer"] = answers.get(q["id"])
    return questions[:limit] if limit else questions


def tools(question: dict) -> list[dict]:
    """BFCL functions in our tool-list form; their `"type": "dict"` schemas pass through as given."""
    return [{"name": f["name"], "description": f.get("description", "") + LANGUAGE_HINT,
             "parameters": f.get("parameters", {})} for f in question["function"]]


def user_text(question: dict) -> str:
    """Single-turn categories: the first turn's user message(s)."""
    return "\n\n".join(m["content"] for m in question["question"][0] if m["role"] == "user")


def system_text(question: dict) -> str:
    return "\n\n".join(m["content"] for m in question["question"][0] if m["role"] == "system")


class Scorer:
    def __init__(self, root: Path):
        root = str(Path(root).resolve())
        if root not in sys.path:
            sys.path.insert(0, root)
        stub = types.ModuleType("bfcl_eval.constants.model_config")

        class _Config(dict):  # every model: keep dots in function names
            def __missing__(self, key):
                return types.SimpleNamespace(underscore_to_dot=False)

        stub.MODEL_CONFIG_MAPPING = _Config()
        sys.modules.setdefault("bfcl_eval.constants.model_config", stub)
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

        self.check, self.python = ast_checker, Language.PYTHON

    def __call__(self, category: str, question: dict, calls: list[ToolCall]) -> tuple[bool, str]:
        """(passed, reason). Irrelevance passes when the model calls nothing."""
        if category in NO_ANSWER_CATEGORIES:
            return (not calls, "no call" if not calls else f"called {calls[0].name} on an irrelevant question")
        output = [{c.name: c.arguments} for c in calls]
        try:
            result = self.check(question["function"], output, question["possible_answer"], self.python, category,
                                "gemma-toolcall")
        except Exception as e:  # a shape BFCL's checker does not expect is a wrong answer, not a crash
            return False, f"checker error: {type(e).__name__}: {e}"
        return bool(result["valid"]), "; ".join(map(str, result.get("error", []))) or "ok"
