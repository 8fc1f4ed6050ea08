"""Decoding speed of the evaluate stage's sampler, free and under the call grammar (`evaluate.constrained`), on the
same held-out prompts: seconds, prompts/s and generated tokens/s of each, and how many outputs are the same. Where
the grammar never binds (the base model, which writes no call) the outputs must all be the same; elsewhere they
differ only where the grammar changed a token.

    python bench/decode_speed.py --base models/base [--lora models/lora] --prompts 16 --batch 16

Run from a workspace that has `data/filtered/validation.parquet` (after `dvc repro filter base_model`). Each mode runs
twice; the second time is without compilation, and is the one to quote.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import model as gemma  # noqa: E402
from gemma_toolcall.decoding import sampling  # noqa: E402
from gemma_toolcall.chat_format import BOS  # noqa: E402
from stages import evaluate  # noqa: E402
from gemma_toolcall.params import load_section  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--lora", type=Path, help="base + this LoRA (default: the base model alone)")
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--style", default="compact", help="render.json_style of the prompts")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args(argv)

    p = load_section("evaluate", evaluate.EvaluateParams, limit=0, heldout_limit=args.prompts)
    cases, _ = evaluate.heldout_cases(args.validation, p, args.style)
    if args.lora:
        _, model, config = gemma.load_tuned(args.base, args.lora)
    else:
        model, config = gemma.load(args.base)
    tok = gemma.Tokenizer(args.base / "tokenizer.model")
    prompts, tools = [c["prompt"][len(BOS):] for c in cases], [c["tools"] for c in cases]
    outputs, seconds = {}, {}
    for mode in ("free", "constrained", "free", "constrained"):
        start = time.perf_counter()
        out = sampling.generate(model, config, tok, prompts, args.max_new_tokens, args.batch,
                                tools=tools if mode == "constrained" else None)
        seconds[mode] = time.perf_counter() - start
        outputs.setdefault(mode, out)
        tokens = sum(len(tok.encode(c.text)) + c.ended for c in out)  # + the stop token
        print(f"{mode}: {seconds[mode]:.1f} s, {len(prompts) / seconds[mode]:.3f} prompt/s, "
              f"{tokens / seconds[mode]:.1f} generated token/s", flush=True)
    same = sum(a.text == b.text for a, b in zip(outputs["free"], outputs["constrained"]))
    touched = sum(c.changed > 0 for c in outputs["constrained"])
    print(f"{len(prompts)} prompts ({'base + ' + str(args.lora) if args.lora else 'base'}): {same} outputs the same, "
          f"{touched} with a token the grammar changed")


if __name__ == "__main__":
    main()
