"""Two runs' outputs on the same prompts, paired: per BFCL category and per held-out kind, how many prompts both
pass, only one passes, or neither, and a two-sided exact sign test on the prompts where they disagree. A change
judged this way is judged on its flips, not on two rates that each carry their own sampling noise.

    python bench/paired_samples.py --a reports/quality15/eval_samples.jsonl \
        --b reports/compare-run15-rows/samples.jsonl --b-model models/lora --out paired.json
    python bench/paired_samples.py --a reports/quality15/eval_samples.jsonl \
        --b reports/quality23/eval_samples.jsonl --source bfcl --out paired_bfcl.json

Prompts pair by (source, id); held-out ids only mean the same row where both runs read the same
`validation.parquet` (another stand-in reuses ids for other rows: pass `--source bfcl` then). Held-out kinds are
taken from B's samples (the evaluator tags them; older samples have none). Prompts only one side has are counted,
not judged.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from math import comb
from pathlib import Path


def sign_test(only_a: int, only_b: int) -> float:
    """Two-sided exact binomial p-value of `only_a` against `only_b` flips at p = 1/2 (1.0 with no flips)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


def load(path: Path, model: str, source: str | None = None) -> dict[tuple[str, str], dict]:
    rows = {}
    for line in open(path, encoding="utf-8"):
        s = json.loads(line)
        if s.get("model") == model and source in (None, s["source"]):
            rows[(s["source"], s["id"])] = s
    return rows


def groups(sample: dict) -> list[str]:
    """The tallies a prompt counts in: its BFCL category, or the held-out call/no-call split and each kind."""
    if sample["source"] == "bfcl":
        return [sample["category"]]
    if not sample.get("needs_call", True):
        return ["heldout_no_call"] + [f"heldout_no_call:{k}" for k in sample.get("kinds") or ()]
    return ["heldout_call"] + [f"heldout_call:{k}" for k in sample.get("kinds") or ["plain"]]


def pair(a: dict, b: dict) -> dict:
    tallies = defaultdict(Counter)
    for key in sorted(a.keys() & b.keys()):
        verdict = {(True, True): "both", (True, False): "only_a", (False, True): "only_b",
                   (False, False): "neither"}[(bool(a[key]["passed"]), bool(b[key]["passed"]))]
        for group in groups(b[key]):
            tallies[group][verdict] += 1
            tallies[group]["ended_a"] += bool(a[key].get("ended_turn"))
            tallies[group]["ended_b"] += bool(b[key].get("ended_turn"))
    out = {}
    for group, t in sorted(tallies.items()):
        n = sum(t[v] for v in ("both", "only_a", "only_b", "neither"))
        out[group] = {"n": n, **{v: t[v] for v in ("both", "only_a", "only_b", "neither")},
                      "rate_a": round((t["both"] + t["only_a"]) / n, 4),
                      "rate_b": round((t["both"] + t["only_b"]) / n, 4),
                      "sign_test_p": round(sign_test(t["only_a"], t["only_b"]), 4),
                      "ended_a": t["ended_a"], "ended_b": t["ended_b"]}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="the first run's eval_samples.jsonl")
    ap.add_argument("--b", type=Path, required=True, help="the second run's")
    ap.add_argument("--a-model", default="tuned", help="the `model` field of A's samples to read")
    ap.add_argument("--b-model", default="tuned", help="the `model` field of B's samples to read")
    ap.add_argument("--source", choices=("bfcl", "heldout"), help="only these prompts (default: both)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    a, b = load(args.a, args.a_model, args.source), load(args.b, args.b_model, args.source)
    if not a or not b:
        raise SystemExit(f"no samples with model {args.a_model!r} in {args.a} or {args.b_model!r} in {args.b}")
    result = {"a": f"{args.a} ({args.a_model})", "b": f"{args.b} ({args.b_model})", "paired": len(a.keys() & b.keys()),
              "only_in_a": len(a.keys() - b.keys()), "only_in_b": len(b.keys() - a.keys()), "groups": pair(a, b)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for group, t in result["groups"].items():
        print(f"{group:40s} n={t['n']:4d}  A {t['rate_a']:.3f}  B {t['rate_b']:.3f}  "
              f"flips {t['only_a']}/{t['only_b']}  p={t['sign_test_p']:.3f}")


if __name__ == "__main__":
    main()
