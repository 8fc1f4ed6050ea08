"""Prompts per second of evaluation decoding: the previous loop (the raw model, whose prefill projects every prompt
position onto the vocabulary; every batch left-padded to the longest prompt of the whole set) against
`gemma_toolcall.sampling.generate` (the last-position prefill of `sampling_view`; batches by length, each padded to
its own power of two), on the same prompts, model and settings. Both stop a batch once all its rows have ended.

    python bench/eval_speed.py --lora models/lora --prompts 32 --batch 4 --max-new-tokens 128
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import model as gemma, sampling  # noqa: E402
from gemma_toolcall.chat_format import BOS  # noqa: E402
from gemma_toolcall.params import value  # noqa: E402
from stages import evaluate  # noqa: E402


def previous_generate(model, config, tok, prompts, max_new_tokens, batch_size):
    """The loop evaluate used before length bucketing."""
    from tunix.generate import sampler as sampler_lib
    from tunix.generate.tokenizer_adapter import TokenizerAdapter

    longest = max(len(tok.encode(p)) for p in prompts) + 1
    prompt_len = 1 << (longest - 1).bit_length()
    sampler = sampler_lib.Sampler(model, TokenizerAdapter(tok.sp), sampler_lib.CacheConfig(
        cache_size=1 << (prompt_len + max_new_tokens).bit_length(), num_layers=config["num_hidden_layers"],
        num_kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"]))
    texts = []
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i:i + batch_size]
        batch += [batch[-1]] * (batch_size - len(batch))
        result = sampler(batch, max_generation_steps=max_new_tokens, max_prompt_length=prompt_len,
                         eos_tokens=[gemma.EOS, tok.end_of_turn], temperature=0.0)
        texts += list(result.text[:len(batch)])
    return texts[:len(prompts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--lora", type=Path, default=Path("models/lora"))
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    p = evaluate.EvaluateParams(limit=args.prompts, heldout_limit=args.prompts, batch_size=args.batch,
                                max_new_tokens=args.max_new_tokens)
    style = value("render.json_style")
    cases = evaluate.bfcl_cases(args.bfcl, p, style) + evaluate.heldout_cases(args.validation, p, style)[0]
    # An even spread over categories and held-out rows, in a fixed order.
    cases = [cases[i * len(cases) // args.prompts] for i in range(args.prompts)]
    prompts = [c["prompt"][len(BOS):] for c in cases]
    tok = gemma.Tokenizer(args.base / "tokenizer.model")
    _, tuned, config = gemma.load_tuned(args.base, args.lora)
    for name, run in (("previous", previous_generate), ("bucketed", lambda *a: sampling.generate(*a)[0])):
        start = time.perf_counter()
        texts = run(tuned, config, tok, prompts, args.max_new_tokens, args.batch)
        seconds = time.perf_counter() - start
        print(f"{name}: {len(prompts)} prompts in {seconds:.1f} s = {len(prompts) / seconds:.3f} prompt/s "
              "(compilation included)", flush=True)
        if name == "previous":
            reference = texts
        else:
            same = sum(a == b for a, b in zip(reference, texts))
            print(f"same outputs: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
