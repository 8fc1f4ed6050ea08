"""How a model decides between calling a tool and answering in words, at the first token of its first turn.

Every calling turn opens with `<tool_call>`, whose first token is '<'; a no-call answer opens with one of several
words ("I", "Unfortunately", "None", ...). Greedy decoding calls whenever P('<') beats every single other token, so
a model that has only learned the split of its training data (55% of first turns call) calls on every prompt,
although it gives the words 45% of the mass. This prints, for rows that need a call and rows that need none,
P('<') and how often greedy would open with '<', base beside tuned (the base model's '<' starts a copy of the
prompt's `<tools>` list, not a call).

    python bench/call_decision.py --split validation --rows 16
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import model as gemma, sampling, training  # noqa: E402
from gemma_toolcall.chat_format import BOS  # noqa: E402
from gemma_toolcall.params import value  # noqa: E402
from stages import evaluate  # noqa: E402


def first_turn_prompts(path: Path, rows: int, style: str) -> dict[str, list[str]]:
    """The first `rows` prompts of each kind (the first model turn calls, or does not), as evaluate renders them."""
    cases, _ = evaluate.heldout_cases(path, evaluate.EvaluateParams(heldout_limit=0), style)
    return {kind: [c["prompt"][len(BOS):] for c in cases if bool(c["expected"]) == calls][:rows]
            for kind, calls in (("needs a call", True), ("needs no call", False))}


def first_token_probs(model, tok: gemma.Tokenizer, prompt: str):
    """The next-token distribution after `prompt`, one prompt at a time, right-padded to its bucket (one
    compilation per bucket; causal attention, so the padding after the last token changes nothing before it)."""
    import jax.numpy as jnp

    ids = [gemma.BOS] + tok.encode(prompt)
    tokens = jnp.asarray([ids + [gemma.PAD] * (sampling.padded_length(len(ids)) - len(ids))])
    return _forward()(model, tokens, jnp.int32(len(ids) - 1))


@functools.cache
def _forward():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit
    def forward(model, tokens, last):
        length = tokens.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))[None]
        hidden = training.final_hidden(model, tokens, jnp.arange(length)[None], causal)
        h = jax.lax.dynamic_slice_in_dim(hidden[0], last, 1)
        return jax.nn.softmax(gemma.logits(model.embedder, h).astype(jnp.float32)[0])

    return forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--lora", type=Path, default=Path("models/lora"))
    ap.add_argument("--split", default="validation", help="train | validation (data/filtered/<split>.parquet)")
    ap.add_argument("--rows", type=int, default=16, help="rows of each kind")
    args = ap.parse_args()
    import numpy as np

    tok = gemma.Tokenizer(args.base / "tokenizer.model")
    call_token = tok.sp.piece_to_id("<")
    prompts = first_turn_prompts(Path(f"data/filtered/{args.split}.parquet"), args.rows, value("render.json_style"))
    base, tuned, _ = gemma.load_tuned(args.base, args.lora)
    print("| model | rows | n | mean P('<') | P('<') > 0.5 | '<' is the top token (greedy opens a tag) | "
          "most common top token besides '<' |")
    print("|---|---|---|---|---|---|---|")
    for name, model in (("base", base), ("tuned", tuned)):
        for kind, texts in prompts.items():
            p_call, greedy_calls, top_text = [], 0, []
            for text in texts:
                p = np.array(first_token_probs(model, tok, text))
                p_call.append(float(p[call_token]))
                greedy_calls += int(p.argmax() == call_token)
                p[call_token] = 0
                top_text.append(tok.sp.id_to_piece(int(p.argmax())))
            common = max(set(top_text), key=top_text.count) if top_text else "-"
            print(f"| {name} | {kind} | {len(texts)} | {statistics.fmean(p_call):.3f} | "
                  f"{sum(x > 0.5 for x in p_call)} | {greedy_calls} | {common!r} |", flush=True)


if __name__ == "__main__":
    main()
