"""Training rows and the training loss, shared by the `train` stage and bench/train_bench.py.

- `tokenize_example`: one rendered row → token ids and a loss mask (a weight per token: 1 on model output, more on
  the token that decides whether to call and, optionally, on those that decide how many arguments a call states).
- `pack`: examples → fixed-length rows, several documents per row (first-fit decreasing over a buffer), each token
  tagged with its document (`segment_ids`, 0 = padding) and its position inside it. Unpacked rows are the same
  format with one document each, so there is one path through the model. It streams: one buffer in memory.
- `PackedRows`: packed rows written to a file and read back as a memory map (what grain reads), so the training set
  never has to fit in memory.
- `model_inputs`: attention that stays inside a document (same segment, causal) and per-document positions, built
  inside the jitted step from the segment ids.
- `loss_fn`: next-token NLL at loss positions only, weighted by the mask. The final hidden states at those positions are gathered into a
  static-size buffer and projected onto the 262,144-token vocabulary in chunks (each recomputed in the backward
  pass), so no `[batch, seq, vocab]` tensor exists. With bfloat16 base weights the float32 LoRA parameters are
  cast to bfloat16 for the forward pass; their gradients and optimizer state stay float32.
"""
from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from gemma_toolcall import chat_format, model as gemma

ROW_KEYS = ("input_tokens", "input_mask", "segment_ids", "positions")
LOSS_CHUNK = 1024  # gathered positions per vocabulary-projection chunk: chunk x 262,144 float32 logits = 1 GiB
PACK_BUFFER = 1024  # examples sorted together by the first-fit-decreasing packer


def tokenize_example(tok: gemma.Tokenizer, text: str, spans, decision_weight: int = 1,
                     argument_weight: int = 1) -> tuple[list[int], list[int]]:
    """Token ids and a loss mask (the token's loss weight: 0 off model output, 1 on it) for one rendered row.
    `<bos>` is a control token that text never produces, so it is added as an id. Each piece is tokenized on its
    own, so a model turn's tokens are what the model generates after `<start_of_turn>model\\n` at inference.

    The first token of the first model turn weighs `decision_weight`: there the model decides whether to call a
    tool (with `render.call_text: drop` a calling turn opens with `<tool_call>`), one token against the dozens of
    the call or answer that follow it. The token after each call argument's value weighs `argument_weight`: there
    it decides whether to state another argument or close the call (see `chat_format.argument_ends`)."""
    ids, mask, pos = [], [], 0
    if text.startswith("<bos>"):
        ids, mask, pos = [gemma.BOS], [0], len("<bos>")
    for span in list(spans) + [{"start": len(text), "end": len(text)}]:
        for piece, is_model in ((text[pos:span["start"]], 0), (text[span["start"]:span["end"]], 1)):
            if not piece:
                continue
            if is_model and argument_weight != 1:
                piece_ids, token_ends = tok.encode_with_offsets(piece)
                weights = [1] * len(piece_ids)
                for end in chat_format.argument_ends(piece):
                    weights[bisect.bisect_right(token_ends, end)] = argument_weight
            else:
                piece_ids = tok.encode(piece)
                weights = [is_model] * len(piece_ids)
            ids += piece_ids
            mask += weights
        pos = span["end"]
    if 1 in mask:
        mask[mask.index(1)] = decision_weight
    return ids, mask


def pack(examples: Iterable[tuple[Sequence[int], Sequence[int]]], seq_len: int, packing: bool = True,
         buffer: int = PACK_BUFFER) -> Iterator[dict[str, np.ndarray]]:
    """(ids, loss mask) examples of at most `seq_len` tokens → rows of exactly `seq_len`, as a stream.

    With `packing`, each run of `buffer` examples is sorted by length (longest first, ties in input order) and each
    example goes into the first row it fits: first-fit decreasing, deterministic. Rows come out in the order they
    were opened. Without, one example per row."""
    chunk = []
    for example in examples:
        if not 0 < len(example[0]) <= seq_len:
            raise ValueError(f"example of {len(example[0])} tokens does not fit max_seq_len={seq_len}")
        if not packing:
            yield _row([example], seq_len)
            continue
        chunk.append(example)
        if len(chunk) == buffer:
            yield from _first_fit_decreasing(chunk, seq_len)
            chunk = []
    if chunk:
        yield from _first_fit_decreasing(chunk, seq_len)


def _first_fit_decreasing(chunk, seq_len: int) -> list[dict[str, np.ndarray]]:
    bins: list[list[int]] = []
    room = np.zeros(0, np.int64)  # free tokens per open row
    for i in sorted(range(len(chunk)), key=lambda i: -len(chunk[i][0])):
        n = len(chunk[i][0])
        fits = np.flatnonzero(room >= n)
        if len(fits):
            bins[fits[0]].append(i)
            room[fits[0]] -= n
        else:
            bins.append([i])
            room = np.append(room, seq_len - n)
    return [_row([chunk[i] for i in b], seq_len) for b in bins]


class PackedRows:
    """Rows of `pack` in a file of int32 (row, key, position), read through a memory map: a sequence of row dicts
    (len and [i], what grain's MapDataset.source takes) that holds no row in memory until one is asked for."""

    def __init__(self, path: Path, seq_len: int):
        data = np.memmap(path, np.int32, "r") if os.path.getsize(path) else np.zeros(0, np.int32)
        self.data = data.reshape(-1, len(ROW_KEYS), seq_len)

    @classmethod
    def write(cls, rows: Iterable[dict[str, np.ndarray]], path: Path, seq_len: int) -> "PackedRows":
        with open(path, "wb") as f:
            for row in rows:
                f.write(np.stack([row[k] for k in ROW_KEYS]).astype(np.int32, copy=False).tobytes())
        return cls(path, seq_len)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        row = np.array(self.data[i])
        return dict(zip(ROW_KEYS, row))

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[i] for i in range(len(self)))


def _row(docs, seq_len: int) -> dict[str, np.ndarray]:
    row = {k: np.zeros(seq_len, np.int32) for k in ROW_KEYS}
    row["input_tokens"][:] = gemma.PAD
    at = 0
    for seg, (ids, mask) in enumerate(docs, start=1):
        n = len(ids)
        row["input_tokens"][at:at + n] = ids
        row["input_mask"][at:at + n] = mask
        row["segment_ids"][at:at + n] = seg
        row["positions"][at:at + n] = np.arange(n)
        at += n
    return row


def padding_share(rows: Iterable[dict[str, np.ndarray]]) -> float:
    """Share of row positions that hold no token."""
    empty = total = 0
    for r in rows:
        empty += int((r["segment_ids"] == 0).sum())
        total += r["segment_ids"].size
    return empty / max(total, 1)


def loss_capacity(rows: Iterable[dict[str, np.ndarray]], batch_size: int) -> int:
    """A static bound on the loss positions of any batch: the sum over the `batch_size` rows with the most, rounded
    up to whole chunks (a multiple of 8 below one chunk). Shapes stay fixed, so the step compiles once."""
    per_row = np.sort(np.fromiter((np.count_nonzero(r["input_mask"][1:]) for r in rows), np.int64))[::-1]
    need = max(int(per_row[:batch_size].sum()), 1)
    step = LOSS_CHUNK if need > LOSS_CHUNK else 8
    return -(-need // step) * step


def model_inputs(batch):
    """Inside the jitted step: attention within a document (same segment, causal), its padding excluded."""
    import jax.numpy as jnp

    seg = jnp.asarray(batch["segment_ids"])
    length = seg.shape[-1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    attention = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] != 0) & causal
    return {"input_tokens": batch["input_tokens"], "input_mask": batch["input_mask"],
            "positions": batch["positions"], "attention_mask": attention}


def compute_view(model):
    """The model with its LoRA parameters in the base weights' dtype, for the forward pass. The cast is part of
    the traced computation, so gradients reach the float32 parameters."""
    import jax
    from flax import nnx

    dtype = model.embedder.input_embedding.get_value().dtype
    graphdef, lora, rest = nnx.split(model, nnx.LoRAParam, ...)
    if all(x.dtype == dtype for x in jax.tree.leaves(lora)):
        return model
    return nnx.merge(graphdef, jax.tree.map(lambda x: x.astype(dtype), lora), rest)


def final_hidden(model, input_tokens, positions, attention_mask):
    """The last normalized hidden states [B, L, D]. The model computes logits too; nothing uses them, so under jit
    XLA removes that projection."""
    from flax import nnx

    model(input_tokens, positions, None, attention_mask, output_hidden_states=True)
    (hidden,) = nnx.pop(model, nnx.Intermediate)["all_hidden_states"].get_value()
    return hidden


def token_nll(hidden, project, targets, chunk: int):
    """-log p(target) for each row of `hidden` [K, D], projecting `chunk` rows at a time onto the vocabulary with
    `project` (float32 logits) and recomputing each chunk's logits in the backward pass."""
    import jax
    import jax.numpy as jnp

    k, d = hidden.shape

    @jax.checkpoint
    def one(h, t):
        logits = project(h)
        return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, t[:, None], axis=-1)[:, 0]

    return jax.lax.map(lambda ht: one(*ht), (hidden.reshape(k // chunk, chunk, d),
                                             targets.reshape(k // chunk, chunk))).reshape(k)


def loss_fn(model, input_tokens, input_mask, positions, attention_mask, *, capacity: int):
    """Next-token NLL averaged with `input_mask` as weights, computed where it is nonzero only (at most `capacity`
    positions per batch, see `loss_capacity`). The projection is the model's tied embedding, trained token rows
    included."""
    import jax.numpy as jnp

    model = compute_view(model)
    hidden = final_hidden(model, input_tokens, positions, attention_mask)[:, :-1]
    weights = input_mask[:, 1:].reshape(-1)
    (where,) = jnp.nonzero(weights, size=capacity, fill_value=0)
    count = jnp.count_nonzero(weights)
    picked_weights = jnp.where(jnp.arange(capacity) < count, weights[where], 0).astype(jnp.float32)
    picked = hidden.reshape(-1, hidden.shape[-1])[where]
    nll = token_nll(picked, lambda h: gemma.logits(model.embedder, h), input_tokens[:, 1:].reshape(-1)[where],
                    min(capacity, LOSS_CHUNK))
    return jnp.sum(nll * picked_weights) / jnp.maximum(jnp.sum(picked_weights), 1.0)


def make_loss_fn(capacity: int):
    """`loss_fn` with its static capacity bound, in the positional signature tunix's trainer calls."""
    def loss(model, input_tokens, input_mask, positions, attention_mask):
        return loss_fn(model, input_tokens, input_mask, positions, attention_mask, capacity=capacity)
    return loss
