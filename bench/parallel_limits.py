"""What limits a model on BFCL `parallel` and `parallel_multiple`, from its decoded samples: how many calls each
question asks for against how many the output writes, how many outputs copy an earlier call's value where the
question varies it, how many never ended (decoding is greedy, so only those can change under a larger token budget),
and how many questions' shortest correct answer does not fit the budget at all.

    python bench/parallel_limits.py --samples metrics/eval_samples.jsonl --out parallel_limits.json

Run in a workspace where `data/bfcl` and `models/base` exist (after `dvc repro`); the budget and the JSON style are
read from params.yaml unless given.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import bfcl  # noqa: E402
from gemma_toolcall.chat_format import render_model_turn  # noqa: E402
from gemma_toolcall.dataset.toucan import ToolCall  # noqa: E402
from gemma_toolcall.model import Tokenizer  # noqa: E402
from gemma_toolcall.params import value  # noqa: E402

CATEGORIES = ("parallel", "parallel_multiple")
COUNTS = ("n", "passed", "too_few_calls", "calls_as_asked", "too_many_calls", "copies_a_value", "not_ended",
          "answer_over_budget", "passed_over_budget")


def shortest_answer(answer: list[dict]) -> list[ToolCall]:
    """The correct calls with each argument's shortest accepted value, and optional ones ("" accepted) left out."""
    calls = []
    for expected in answer:
        (name, options), = expected.items()
        args = {key: min(accepted, key=lambda v: len(json.dumps(v))) for key, accepted in options.items()
                if "" not in accepted}
        calls.append(ToolCall(name, args))
    return calls


def _accepts(options: list, value) -> bool:
    norm = (lambda v: v.strip().lower()) if isinstance(value, str) else (lambda v: v)
    return any(type(o) is type(value) and norm(o) == norm(value) for o in options)


def copies(calls: list[dict], answer: list[dict]) -> bool:
    """Whether a later call repeats an earlier call's value that only one of the question's calls takes (the
    "20" of "20 and 15 minutes respectively" written twice): the earlier call copied, not a value the calls share."""
    expected = [next(iter(e.items())) for e in answer]
    for k, call in enumerate(calls):
        for earlier in calls[:k]:
            if earlier["name"] != call["name"]:
                continue
            for key, v in call["arguments"].items():
                if earlier["arguments"].get(key) == v and sum(
                        name == call["name"] and _accepts(opts.get(key, []), v) for name, opts in expected) == 1:
                    return True
    return False


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, required=True, help="an eval_samples.jsonl")
    ap.add_argument("--model", default="tuned", help="whose samples (the `model` field)")
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--tokenizer", type=Path, default=Path("models/base/tokenizer.model"))
    ap.add_argument("--budget", type=int, help="tokens a turn may hold (default: evaluate.max_new_tokens)")
    ap.add_argument("--json-style", help="default: render.json_style")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    budget = args.budget or value("evaluate.max_new_tokens")
    style = args.json_style or value("render.json_style")
    tok = Tokenizer(args.tokenizer)
    questions = {(c, q["id"]): q for c in CATEGORIES for q in bfcl.load(args.bfcl, c)}
    result = {"samples": str(args.samples), "budget": budget, "json_style": style}
    rows = {category: Counter() for category in CATEGORIES}
    for line in open(args.samples, encoding="utf-8"):
        s = json.loads(line)
        if s["model"] != args.model or s["category"] not in rows:
            continue
        answer = questions[s["category"], s["id"]]["possible_answer"]
        turn = render_model_turn("", shortest_answer(answer), style)
        fits = len(tok.encode(turn)) + 1 <= budget  # + the turn's end
        asked, written = len(answer), len(s["calls"])
        rows[s["category"]].update({"n": 1, "passed": s["passed"], "too_few_calls": written < asked,
                                    "calls_as_asked": written == asked, "too_many_calls": written > asked,
                                    "copies_a_value": copies(s["calls"], answer),
                                    "not_ended": not s["ended_turn"], "answer_over_budget": not fits,
                                    "passed_over_budget": s["passed"] and not fits})
    for category, counts in rows.items():
        result[category] = {key: counts[key] for key in COUNTS}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
