"""Several adapters on the same held-out rows, by kind: a training change judged on one set of rows, not on each
run's own (a changed stand-in gives each run other held-out rows). `--bfcl-category` adds that BFCL category's
questions (as many as params.yaml's `evaluate.limit` takes); `--max-new-tokens` sets the decoding budget instead of
params.yaml's.

    python bench/heldout_compare.py --lora models/lora --lora ../run16/models/lora --out compare.json
    python bench/heldout_compare.py --lora models/lora --heldout-limit 0 --bfcl-category parallel \
        --max-new-tokens 256 --out budget.json

Run in a workspace whose `data/filtered/validation.parquet` holds the rows to compare on; it reads params.yaml's
`evaluate` section (heldout_limit, max_new_tokens, batch_size, constrained) and render.json_style, as the evaluate
stage does, and decodes only the held-out rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import bfcl, model as gemma  # noqa: E402
from gemma_toolcall.params import load_section, value  # noqa: E402
from stages import evaluate  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lora", type=Path, action="append", required=True, help="an adapter folder; repeat to compare")
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--bfcl-category", action="append", default=[], help="also this BFCL category; repeat for more")
    ap.add_argument("--heldout-limit", type=int, help="held-out rows (default: params.yaml's; 0: none)")
    ap.add_argument("--max-new-tokens", type=int, help="the decoding budget (default: params.yaml's)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=Path, help="also every output, one JSON line each, tagged by adapter")
    args = ap.parse_args(argv)
    p, style = load_section("evaluate", evaluate.EvaluateParams), value("render.json_style")
    if args.max_new_tokens is not None:
        p = dataclasses.replace(p, max_new_tokens=args.max_new_tokens)
    cases, skipped = ([], 0) if args.heldout_limit == 0 else \
        evaluate.heldout_cases(args.validation, dataclasses.replace(p, heldout_limit=args.heldout_limit or
                                                                    p.heldout_limit), style)
    cases = evaluate.bfcl_cases(args.bfcl, dataclasses.replace(p, categories=tuple(args.bfcl_category)), style) + cases
    tok, scorer = gemma.Tokenizer(args.base / "tokenizer.model"), bfcl.Scorer(args.bfcl)
    out = {"validation": str(args.validation), "rows": len(cases), "skipped_malformed": skipped,
           "max_new_tokens": p.max_new_tokens, "adapters": {}}
    all_samples = []
    for lora in args.lora:
        _, tuned, config = gemma.load_tuned(args.base, lora)
        metrics, samples = evaluate.evaluate_model(str(lora), tuned, config, tok, cases, p, p.max_new_tokens, scorer)
        all_samples += samples
        out["adapters"][str(lora)] = {**metrics["heldout"], "bfcl": metrics["bfcl"],
                                      "runaway_values": metrics["runaway_values"], "ended_turn": metrics["ended_turn"],
                                      "seconds": metrics["seconds"]}
        print(json.dumps({str(lora): {"bfcl": metrics["bfcl"], **out["adapters"][str(lora)]["by_kind"]}}, indent=1),
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    if args.samples:
        args.samples.parent.mkdir(parents=True, exist_ok=True)
        args.samples.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in all_samples))


if __name__ == "__main__":
    main()
