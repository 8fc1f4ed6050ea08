"""What decoding's rule that a turn never repeats a call does to outputs decoded without it: each output is cut
where it closes a call equal to an earlier one (as `sampling._Rows` cuts it while decoding, greedy decoding being the
same up to there), re-judged with evaluate's own checks, and summarized beside the uncut outputs.

    python bench/rescore_samples.py --samples reports/quality17/eval_samples.jsonl --out rescore.json

Run in a workspace whose params.yaml, `data/bfcl` and `data/filtered/validation.parquet` made the samples' prompts
(BFCL questions are the same in every workspace; held-out rows only in one with the same stand-in, since another
stand-in reuses row ids for other rows: pass `--source bfcl` there). Samples with no case here are left out and
counted. A cut output counts as not having ended its turn, as decoding counts it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import bfcl  # noqa: E402
from gemma_toolcall.chat_format import parse_model_turn  # noqa: E402
from gemma_toolcall.decoding import sampling  # noqa: E402
from gemma_toolcall.params import load_section, value  # noqa: E402
from stages import evaluate  # noqa: E402

_BLOCK = re.compile(r"<tool_call>.*?</tool_call>", re.DOTALL)


def cut_repeated_call(output: str) -> str | None:
    """The output up to the call block that repeats an earlier call, or None where no call repeats."""
    seen = []
    for block in _BLOCK.finditer(output):
        calls = parse_model_turn(block.group(0)).calls
        if calls and calls[0] in seen:
            return output[:block.start()]
        seen += calls
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=Path, required=True, help="an eval_samples.jsonl")
    ap.add_argument("--model", default="tuned", help="whose samples (the `model` field)")
    ap.add_argument("--source", choices=["bfcl", "heldout", "all"], default="all",
                    help="bfcl: only BFCL samples, for samples from a workspace with another stand-in")
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    p, style = load_section("evaluate", evaluate.EvaluateParams), value("render.json_style")
    cases, _ = evaluate.cases_for(p, style, args.bfcl, args.validation)
    by_key = {(c["source"], c["category"], c["id"]): c for c in cases}
    samples = [json.loads(line) for line in open(args.samples, encoding="utf-8")]
    samples = [s for s in samples if s["model"] == args.model and args.source in ("all", s["source"])]
    scorer, before, after, missing, cut = bfcl.Scorer(args.bfcl), [], [], 0, []
    for s in samples:
        case = by_key.get((s["source"], s["category"], s["id"]))
        if case is None:
            missing += 1
            continue
        shorter = cut_repeated_call(s["output"])
        # Samples decoded before decoding noted what stopped them: the model's end, or else the budget.
        uncut = s["output"], s["ended_turn"], \
            s.get("stop") or (sampling.END_OF_TURN if s["ended_turn"] else sampling.MAX_NEW_TOKENS)
        cut_here = uncut if shorter is None else (shorter, False, sampling.REPEATED_CALL)
        for results, (output, ended, stop) in ((before, uncut), (after, cut_here)):
            results.append({"source": s["source"], "category": s["category"], **evaluate.judge(case, output, scorer),
                            "ended_turn": ended, "stop": stop})
        if shorter is not None:
            cut.append({"id": s["id"], "passed_before": before[-1]["passed"], "passed_after": after[-1]["passed"]})
    out = {"samples": str(args.samples), "model": args.model, "scored": len(before), "no_case_here": missing,
           "cut": len(cut), "cut_rows": cut, "uncut": evaluate.summarize(before),
           "cut_at_repeat": evaluate.summarize(after)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("scored", "no_case_here", "cut")}), flush=True)


if __name__ == "__main__":
    main()
