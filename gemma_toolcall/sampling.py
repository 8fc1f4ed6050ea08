"""Greedy decoding for evaluation: tunix's KV-cache sampler over prompts batched by length, each bucket with its
own KV cache, and a prefill that projects only the last position onto the vocabulary. Only evaluate (and the
benches) depend on it, so a decoding change reruns evaluate, not training."""
from __future__ import annotations

import functools

from gemma_toolcall.model import EOS, Tokenizer

FULL_BATCH_LENGTH = 2048  # padded prompt length up to which a batch has all `batch_size` rows


def generate(model, config: dict, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int,
             batch_size: int, progress=None) -> tuple[list[str], list[bool]]:
    """Greedy completions with tunix's KV-cache sampler, stopping at `<end_of_turn>` or `<eos>`, and for each
    whether it ended its turn (stopped on one of them before `max_new_tokens`). Prompts are rendered text without
    `<bos>` (the sampler adds it).

    Prompts are batched by length (shortest first, `plan_batches`), and each batch is left-padded only to the power
    of two above its longest prompt: one compilation per distinct padded length, and little prefill spent on
    padding. A batch stops decoding once all its rows have ended their turn."""
    from tunix.generate import sampler as sampler_lib
    from tunix.generate.tokenizer_adapter import TokenizerAdapter

    lengths = [len(tokenizer.encode(p)) + 1 for p in prompts]  # + <bos>
    view, samplers = sampling_view(model), {}

    def sampler_for(prompt_length: int):
        # One KV cache per bucket, sized to it: every decoding step reads the whole cache, so one sized for the
        # longest prompt of the set made a 200-token prompt's steps read 8k positions per layer.
        if prompt_length not in samplers:
            samplers[prompt_length] = sampler_lib.Sampler(view, TokenizerAdapter(tokenizer.sp), sampler_lib.CacheConfig(
                cache_size=prompt_length + max_new_tokens, num_layers=config["num_hidden_layers"],
                num_kv_heads=config["num_key_value_heads"], head_dim=config["head_dim"]))
        return samplers[prompt_length]

    texts, ended = [""] * len(prompts), [False] * len(prompts)
    for rows, prompt_length, batch_rows in plan_batches(lengths, batch_size):
        batch = [prompts[i] for i in rows]
        batch += [batch[-1]] * (batch_rows - len(batch))  # a fixed batch shape per bucket: no recompilation
        result = sampler_for(prompt_length)(batch, max_generation_steps=max_new_tokens,
                                            max_prompt_length=prompt_length,
                                            eos_tokens=[EOS, tokenizer.end_of_turn], temperature=0.0)
        for i, text, tokens in zip(rows, result.text, result.tokens):
            # The sampler cuts each output at its first stop token: a shorter output stopped on one.
            texts[i], ended[i] = text, len(tokens) < max_new_tokens
        if progress is not None:
            progress.update(len(rows))
    return texts, ended


def padded_length(n: int) -> int:
    """The bucket of an n-token prompt: the power of two at or above it (at least 32)."""
    return max(32, 1 << (n - 1).bit_length())


def plan_batches(lengths: list[int], batch_size: int) -> list[tuple[list[int], int, int]]:
    """(prompt indices, padded prompt length, batch rows) per batch: prompts shortest first, `batch_size` rows a
    batch, except past FULL_BATCH_LENGTH tokens, where a batch has rows x length^2 <= batch_size x
    FULL_BATCH_LENGTH^2 (prefill's attention scores grow with the square of the length: 16 prompts of 2,225
    tokens, padded to 4,096, took the 2-core machine's 24 GB and were killed)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    rows_at = lambda length: max(1, min(batch_size, batch_size * FULL_BATCH_LENGTH ** 2 // length ** 2))  # noqa: E731
    plan, start = [], 0
    while start < len(order):
        rows = order[start:start + batch_size]
        # A batch does not cross from one bucket past the full-batch length into a longer one: those prompts start
        # their own, smaller batches.
        cap = max(FULL_BATCH_LENGTH, padded_length(lengths[rows[0]]))
        rows = [i for i in rows if padded_length(lengths[i]) <= cap]
        rows = rows[:rows_at(padded_length(lengths[rows[-1]]))]
        length = padded_length(lengths[rows[-1]])
        plan.append((rows, length, rows_at(length)))
        start += len(rows)
    return plan


def sampling_view(model):
    """`model` as tunix's sampler should see it: the prefill computes logits at the last prompt position only.
    tunix's Gemma 3 has no `decode_only_last_token`, so its prefill projects every prompt position onto the
    262,144-token vocabulary (about two thirds of a 270M prefill's FLOPs, and a [batch, prompt, 262,144] float32
    tensor) to keep one row. The view shares the model's parameters."""
    return _last_token_view()(model)


@functools.cache
def _last_token_view():
    from flax import nnx

    class LastTokenLogits(nnx.Module):
        def __init__(self, model):
            self.model = model

        @property
        def config(self):
            return self.model.config

        @property
        def num_embed(self):
            return self.model.num_embed

        def get_attention_mask(self, *args, **kwargs):
            return self.model.get_attention_mask(*args, **kwargs)

        def __call__(self, tokens, positions, cache, attention_mask, decode_only_last_token: bool = False):
            if not decode_only_last_token:
                return self.model(tokens, positions, cache, attention_mask)
            # The full logits go unused, so under jit XLA drops their projection (as in training's loss).
            _, cache = self.model(tokens, positions, cache, attention_mask, output_hidden_states=True)
            (hidden,) = nnx.pop(self.model, nnx.Intermediate)["all_hidden_states"].get_value()
            return self.model.embedder.decode(hidden[:, -1:]), cache

    return LastTokenLogits
