"""Does tunix's KV-cache Sampler decode what the model's plain forward pass says? (It did not, here.)

    python bench/sampler_check.py [--base models/base]

Greedy decoding two ways on the same prompts: (1) tunix.generate.sampler.Sampler (KV cache, left padding) and
(2) a loop of full forward passes without a cache, taking the argmax each step. They should give the same tokens.
Measured on CPU (jax 0.10.2, flax 0.12.8, tunix 0.1.7) with the real Gemma 3 270M from the base_model stage, in
bf16 and float32, with and without LoRA, and with a tiny-random model: they differ from the first tokens on
(e.g. "The capital of France is" → no cache: " the capital of the country of France. It is the largest";
Sampler: "The capital of France isThe capital of France isThe capital"). The evaluate stage (issue 5) waits on this.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import model as gemma  # noqa: E402

PROMPTS = ["The capital of France is", "Question: What is 2+2?\nAnswer:"]


def sampler_greedy(model, config, tok, prompt: str, steps: int) -> list[int]:
    from tunix.generate import sampler as sampler_lib
    from tunix.generate.tokenizer_adapter import TokenizerAdapter

    longest = len(tok.encode(prompt)) + 1
    prompt_len = 1 << (longest - 1).bit_length()  # the sampler left-pads prompts to this
    cache = 1 << (prompt_len + steps).bit_length()  # must exceed prompt + generation
    sampler = sampler_lib.Sampler(model, TokenizerAdapter(tok.sp), sampler_lib.CacheConfig(
        cache_size=cache, num_layers=config["num_hidden_layers"], num_kv_heads=config["num_key_value_heads"],
        head_dim=config["head_dim"]))
    out = sampler([prompt], max_generation_steps=steps, max_prompt_length=prompt_len, temperature=0.0,
                  eos_tokens=[gemma.EOS, tok.end_of_turn])
    return [int(t) for t in out.tokens[0]][:steps]


def plain_greedy(model, tok, prompt: str, steps: int) -> list[int]:
    import jax.numpy as jnp

    ids = [gemma.BOS] + tok.encode(prompt)
    start = len(ids)
    for _ in range(steps):
        n = len(ids)
        logits, _ = model(jnp.array([ids]), jnp.arange(n)[None], None, jnp.tril(jnp.ones((1, n, n), bool)))
        ids.append(int(logits[0, -1].argmax()))
    return ids[start:]


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
        print(f"{prompt!r}\n  sampler: {tok.decode(a)!r}\n  no cache: {tok.decode(b)!r}\n  same: {a == b}")
    print(f"{agree}/{len(PROMPTS)} prompts decode the same")


if __name__ == "__main__":
    main()
