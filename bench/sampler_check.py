"""Does tunix's KV-cache Sampler decode what the model's plain forward pass says?

    python bench/sampler_check.py [--base models/base]

Greedy decoding two ways on the same prompts: (1) `gemma_toolcall.model.generate` (tunix's Sampler: KV cache, left
padding, batches) and (2) a loop of full forward passes without a cache, taking the argmax each step, up to the first
stop token. They must give the same tokens. They once did not: the tokenizer built from the GGUF vocabulary had no
BOS/EOS names, so SentencePiece reported bos_id = -1 and the sampler fed -1 as the first token.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import model as gemma, sampling  # noqa: E402

PROMPTS = ["The capital of France is", "Question: What is 2+2?\nAnswer:"]


def sampler_greedy(model, config, tok, prompt: str, steps: int) -> str:
    return sampling.generate(model, config, tok, [prompt], steps, 1)[0][0]


def plain_greedy(model, tok, prompt: str, steps: int) -> str:
    import jax.numpy as jnp

    ids = [gemma.BOS] + tok.encode(prompt)
    start = len(ids)
    for _ in range(steps):
        n = len(ids)
        logits, _ = model(jnp.array([ids]), jnp.arange(n)[None], None, jnp.tril(jnp.ones((1, n, n), bool)))
        ids.append(int(logits[0, -1].argmax()))
        if ids[-1] in (gemma.EOS, tok.end_of_turn):
            return tok.decode(ids[start:-1])
    return tok.decode(ids[start:])


def main() -> None:
    import jax.numpy as jnp

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    tok = gemma.Tokenizer(args.base / "tokenizer.model")
    model, config = gemma.load(args.base, dtype=jnp.float32)
    agree = 0
    for prompt in PROMPTS:
        a, b = sampler_greedy(model, config, tok, prompt, args.steps), plain_greedy(model, tok, prompt, args.steps)
        agree += a == b
        print(f"{prompt!r}\n  sampler: {a!r}\n  no cache: {b!r}\n  same: {a == b}")
    print(f"{agree}/{len(PROMPTS)} prompts decode the same")


if __name__ == "__main__":
    main()
