"""How far a model is from writing another call, from its constrained samples' end margins: after each call it
closes, logit(`<end_of_turn>`) - logit(newline), the choice between ending the turn and opening another call.
Each such decision is labelled by whether the question asks for another call there (its expected calls outnumber
the calls written so far). Per source and question kind: the margins' quantiles both ways, how well the margin
tells them apart (AUC: the share of pairs where the decision that should go on has the lower margin), and how many
of the turns the model ended a bias of b nats towards another call would have turned, where another call is asked
and where it is not. Held-out rows are where such a bias would be chosen, BFCL where it would be checked.

    python bench/end_margins.py --samples metrics/eval_samples.jsonl --out end_margins.json

Run in a workspace where `data/bfcl` and `data/filtered/validation.parquet` are the samples' (params.yaml's
`evaluate` section picks the held-out rows, as evaluate does).
"""
from __future__ import annotations

import argparse
import bisect
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import bfcl  # noqa: E402
from gemma_toolcall.params import load_section, value  # noqa: E402
from stages.evaluate import EvaluateParams, heldout_cases  # noqa: E402

BIASES = (0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6)


def asked_calls(samples: list[dict], bfcl_dir: Path, validation: Path) -> dict:
    """(source, category, id) -> how many calls the question asks for."""
    p, style = load_section("evaluate", EvaluateParams), value("render.json_style")
    asked = {("heldout", c["category"], c["id"]): len(c["expected"]) for c in heldout_cases(validation, p, style)[0]}
    for category in sorted({s["category"] for s in samples if s["source"] == "bfcl"}):
        for q in bfcl.load(bfcl_dir, category):
            asked["bfcl", category, q["id"]] = len(q.get("possible_answer") or [])
    return asked


def quantiles(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), **({f"p{q}": xs[min(len(xs) - 1, len(xs) * q // 100)] for q in (10, 25, 50, 75, 90)}
                             if xs else {})}


def separation(go_on: list[float], end: list[float]) -> float | None:
    """AUC of the margin: the share of (should go on, should end) pairs whose go-on margin is lower; ties half."""
    if not go_on or not end:
        return None
    end = sorted(end)
    lower = 0.0
    for m in go_on:
        above, ties = len(end) - bisect.bisect_right(end, m), bisect.bisect_right(end, m) - bisect.bisect_left(end, m)
        lower += above + 0.5 * ties
    return round(lower / (len(go_on) * len(end)), 3)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, required=True, help="an eval_samples.jsonl of constrained decoding")
    ap.add_argument("--model", default="tuned", help="whose samples (the `model` field)")
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    samples = [s for s in map(json.loads, open(args.samples, encoding="utf-8")) if s["model"] == args.model]
    if not any("end_margins" in s for s in samples):
        raise SystemExit(f"{args.samples}: no end_margins (samples of constrained decoding, from today's evaluate)")
    asked = asked_calls(samples, args.bfcl, args.validation)
    groups: dict[str, dict] = {}
    for s in samples:
        n_asked = asked[s["source"], s["category"], s["id"]]
        group = groups.setdefault(f"{s['source']}/{'several calls' if n_asked > 1 else 'one call or none'}",
                                  {"rows": 0, "margins_another_asked": [], "margins_end_asked": [],
                                   "flips_another_asked": {b: 0 for b in BIASES},
                                   "flips_end_asked": {b: 0 for b in BIASES}})
        group["rows"] += 1
        for k, margin in enumerate(s.get("end_margins", []), 1):
            wanted = "another_asked" if n_asked > k else "end_asked"
            group[f"margins_{wanted}"].append(margin)
            for b in BIASES:  # only the last decision ended the turn; earlier ones went on to another call
                group[f"flips_{wanted}"][b] += k == len(s["end_margins"]) and s["ended_turn"] and 0 <= margin < b
    result = {"samples": str(args.samples), "model": args.model}
    for name, g in sorted(groups.items()):
        result[name] = {"rows": g["rows"], "margin_where_another_call_is_asked": quantiles(g["margins_another_asked"]),
                        "margin_where_the_turn_should_end": quantiles(g["margins_end_asked"]),
                        "auc": separation(g["margins_another_asked"], g["margins_end_asked"]),
                        "ends_a_bias_would_turn_into_another_call": {
                            str(b): {"another_asked": g["flips_another_asked"][b], "end_asked": g["flips_end_asked"][b]}
                            for b in BIASES}}
    for source in sorted({name.split("/")[0] for name in groups}):  # every question of the source together
        pooled = [g for name, g in groups.items() if name.startswith(source + "/")]
        result[f"{source}/auc"] = separation([m for g in pooled for m in g["margins_another_asked"]],
                                             [m for g in pooled for m in g["margins_end_asked"]])
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
