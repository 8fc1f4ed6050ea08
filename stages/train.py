"""Stage `train`: LoRA adapters on the base model with tunix's PeftTrainer and qwix, loss on model turns only.

Reads the render shards (data/formatted) as a stream, tokenizes them, packs several rows into each `max_seq_len` row
(segment ids keep attention and positions per document) and spills the packed rows to a temporary file that grain
reads through a memory map, so memory does not grow with the data. It trains with the loss of
gemma_toolcall/training.py: the vocabulary projection only at model-turn positions, in chunks. LoRA parameters and
optimizer state are float32 whatever the base dtype; with a bfloat16 base the forward pass runs in bfloat16.
Checkpoints of the LoRA parameters and optimizer state go to models/checkpoints/ every `checkpoint_every_n_steps`;
a rerun with the same params and inputs resumes from the last one. Per-step logs: metrics/train_log.tsv,
metrics/eval_log.tsv (DVC plots); final numbers: metrics/train.json; the adapter: models/lora/.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import csv
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np
import pyarrow.parquet as pq

from gemma_toolcall import model as gemma, training
from gemma_toolcall.dataset import dedup
from gemma_toolcall.artifacts import building
from gemma_toolcall.chat_format import parse_model_turn
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress

TRAIN_LOG_COLUMNS = ("step", "loss", "learning_rate", "grad_norm", "tokens_per_s")


@dataclass(frozen=True)
class LoraParams:
    rank: int
    alpha: float
    targets: tuple
    # Embedding rows trained with the LoRA (tied input/output, float32): `auto` = the format's tokens whose rows
    # pretraining never updated, `none`, or a list of token ids or pieces.
    train_tokens: Union[str, tuple]
    train_tokens_lr_scale: float  # the rows' learning rate, in multiples of train.learning_rate

    def validate(self):
        if self.rank < 1:
            return f"rank must be >= 1, got {self.rank}"
        unknown = set(self.targets) - set(gemma.LORA_TARGETS)
        if unknown:
            return f"targets: unknown {sorted(unknown)}; choose from {list(gemma.LORA_TARGETS)}"
        if not isinstance(self.train_tokens, (str, list, tuple)) or (
                isinstance(self.train_tokens, str) and self.train_tokens not in ("auto", "none")):
            return f"train_tokens must be auto, none or a list of token ids or pieces, got {self.train_tokens!r}"
        if not isinstance(self.train_tokens, str) and not all(
                isinstance(t, (int, str)) and not isinstance(t, bool) for t in self.train_tokens):
            return f"train_tokens: a list of token ids (int) or pieces (str), got {list(self.train_tokens)!r}"
        if self.train_tokens_lr_scale <= 0:
            return f"train_tokens_lr_scale must be > 0, got {self.train_tokens_lr_scale}"


@dataclass(frozen=True)
class TrainParams:
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    batch_size: int
    grad_accum_steps: int
    max_seq_len: int
    packing: bool
    overlong: Literal["drop", "truncate"]
    max_steps: int  # 0: as many as `epochs` passes over the data give
    epochs: int
    eval_every_n_steps: int
    eval_batches: int
    checkpoint_every_n_steps: int
    # Loss weight of the first token of the first model turn, where the model decides whether to call a tool.
    decision_weight: int
    # Loss weight of the token after each call argument's value, where the model decides whether to state another
    # argument or close the call: a small model most often stops a call one argument short.
    argument_weight: int
    # first: each example ends with its first model turn (the call, or the answer when no tool fits), so a step
    # holds more of them; the tool responses and the turns after them are not trained on.
    model_turns: Literal["all", "first"]
    # Share of the training examples that need no call (their first model turn calls no tool) kept, picked by a
    # seeded hash of the row's uuid: below 1, more of each step goes to calls. Validation keeps them all, so its
    # loss compares across values.
    no_call_keep: float
    seed: int
    dtype: Literal["float32", "bfloat16"]
    fsdp: int
    tp: int
    wandb: bool  # also needs WANDB_API_KEY and `pip install -e .[wandb]`

    def validate(self):
        for name in ("batch_size", "grad_accum_steps", "max_seq_len", "epochs", "eval_every_n_steps",
                     "checkpoint_every_n_steps", "decision_weight", "argument_weight", "fsdp", "tp"):
            if getattr(self, name) < 1:
                return f"{name} must be >= 1, got {getattr(self, name)}"
        if self.max_steps < 0:
            return f"max_steps must be >= 0, got {self.max_steps}"
        if not 0 < self.no_call_keep <= 1:
            return f"no_call_keep must be in (0, 1], got {self.no_call_keep}"
        if self.batch_size % self.fsdp:
            return f"batch_size ({self.batch_size}) must be a multiple of fsdp ({self.fsdp}): the batch is split over it"


# -- data ------------------------------------------------------------------------------------------------------
DATA_COUNTS = ("rows", "dropped_no_call", "truncated", "dropped_overlong", "dropped_no_model_tokens", "examples",
               "tokens")  # tokenized's


def first_turn_calls_nothing(text: str, spans) -> bool:
    """Whether a rendered row's first model turn calls no tool: a row where none of the offered tools fits."""
    return bool(spans) and not parse_model_turn(text[spans[0]["start"]:spans[0]["end"]]).calls


def tokenized(paths, tok, p: TrainParams, stats: dict, progress: Progress | None = None):
    """(ids, loss mask) per rendered row, read a record batch at a time, keeping `p.no_call_keep` of the rows whose
    first model turn calls no tool; counts what was dropped (and why) or truncated in `stats`."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["uuid", "text", "model_spans"]):
            for row in batch.to_pylist():
                stats["rows"] += 1
                text, spans = row["text"], row["model_spans"]
                if p.no_call_keep < 1 and first_turn_calls_nothing(text, spans) \
                        and not dedup.in_seeded_share(row["uuid"], p.no_call_keep, p.seed):
                    stats["dropped_no_call"] += 1
                    continue
                if p.model_turns == "first" and spans:
                    text, spans = text[:spans[0]["end"]], spans[:1]
                ids, mask = training.tokenize_example(tok, text, spans, p.decision_weight, p.argument_weight)
                if len(ids) > p.max_seq_len:
                    if p.overlong == "drop":
                        stats["dropped_overlong"] += 1
                        continue
                    ids, mask = ids[:p.max_seq_len], mask[:p.max_seq_len]
                    stats["truncated"] += 1
                if not any(mask[1:]):
                    stats["dropped_no_model_tokens"] += 1
                    continue
                stats["examples"] += 1
                stats["tokens"] += len(ids)
                yield ids, mask
            if progress is not None:
                progress.update(batch.num_rows)


def packed_rows(paths, tok, p: TrainParams, out: Path, desc: str) -> tuple[training.PackedRows, dict]:
    """The split's rows tokenized (see `tokenized`), packed and written to `out` (see training.PackedRows), and
    their counts."""
    stats = dict.fromkeys(DATA_COUNTS, 0)
    total = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
    with Progress(total=total, desc=desc, unit="row") as bar:
        rows = training.PackedRows.write(
            training.pack(tokenized(paths, tok, p, stats, bar), p.max_seq_len, p.packing), out, p.max_seq_len)
    return rows, stats


def batches(rows: Sequence[dict], p: TrainParams, *, shuffle: bool, epochs: int):
    """A grain pipeline: seeded shuffle, epochs, fixed-size batches. Deterministic, so a resumed run sees the
    same batches (tunix skips the ones already trained on by re-iterating)."""
    import grain

    ds = grain.MapDataset.source(rows)
    if shuffle:
        ds = ds.shuffle(seed=p.seed)
    return ds.repeat(epochs).batch(p.batch_size, drop_remainder=True)


# -- training --------------------------------------------------------------------------------------------------
class TsvLog:
    """A tunix logging backend: train and eval scalars by step, rewritten to TSV as they come (nothing lost on
    a crash), kept across resumes."""

    def __init__(self, train_path: Path, eval_path: Path, token_counter: list, schedule):
        self.schedule = schedule  # tunix finds no learning rate in a chained optimizer; the schedule knows it
        self.paths = {"train": train_path, "eval": eval_path}
        self.rows = {mode: self._read(path) for mode, path in self.paths.items()}
        self.tokens = token_counter  # real (non-pad) tokens consumed so far, updated by the data iterator
        self.last = (time.perf_counter(), 0)
        self.progress = None  # a Progress for plain lines in a log, set by `run`

    @staticmethod
    def _read(path: Path) -> dict[int, dict]:
        if not path.exists():
            return {}
        rows = csv.DictReader(open(path), delimiter="\t")
        return {int(r["step"]): {k: int(v) if k == "step" else float(v) for k, v in r.items() if v} for r in rows}

    def log_scalar(self, event: str, value, **kwargs):
        parts = event.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in self.paths or kwargs.get("step") is None:
            return
        mode, name = parts
        step = int(kwargs["step"])
        row = self.rows[mode].setdefault(step, {"step": step})
        row[name if mode == "train" else f"eval_{name}"] = float(np.asarray(value))
        if mode == "train" and name == "loss":
            row["learning_rate"] = float(self.schedule(step - 1))  # tunix logs step n for the n-th update
            now = time.perf_counter()
            row["tokens_per_s"] = (self.tokens[0] - self.last[1]) / max(now - self.last[0], 1e-9)
            self.last = (now, self.tokens[0])
            if self.progress is not None:
                self.progress.update(step - self.progress.done, loss=round(row[name], 4),
                                     tok_s=round(row["tokens_per_s"], 1))
        elif mode == "eval" and name == "loss" and self.progress is not None:
            self.progress.fields["eval_loss"] = round(row["eval_loss"], 4)
        self._write(mode)

    def _write(self, mode: str):
        rows = [self.rows[mode][s] for s in sorted(self.rows[mode])]
        columns = TRAIN_LOG_COLUMNS if mode == "train" else ("step", "eval_loss")
        path = self.paths[mode]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".tmp"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, delimiter="\t", extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            w.writerows({c: r.get(c, "") for c in columns} for r in rows)
        path.with_suffix(".tmp").replace(path)

    def close(self):
        pass


def run_fingerprint(lora: LoraParams, p: TrainParams, base_dir: Path, data_paths) -> str:
    """What a checkpoint belongs to: params, training code, base model and data. Resuming with any of them changed
    would mix two runs."""
    h = hashlib.sha256(json.dumps([asdict(lora), asdict(p)], sort_keys=True).encode())
    for code in (Path(__file__), Path(gemma.__file__), Path(training.__file__)):
        h.update(code.read_bytes())
    h.update(gemma.fingerprint(base_dir).encode())
    for path in data_paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def select_train_tokens(lora: LoraParams, embedding, tok, centroid) -> tuple[list[int], dict]:
    """The token ids whose rows train, and what the untrained-row check found (for metrics/train.json);
    `centroid` is `gemma.untrained_centroid` of this embedding."""
    candidates = gemma.format_token_ids(tok)
    report = {"criterion": f"cosine with the centroid of the <unusedN> rows > {gemma.UNTRAINED_COSINE}",
              "checked": gemma.untrained_report(embedding, centroid, candidates)}
    if lora.train_tokens == "auto":
        ids = [c["id"] for c in report["checked"].values() if c["untrained"]]
    elif lora.train_tokens == "none":
        ids = []
    else:
        ids = []
        for t in lora.train_tokens:
            i = t if isinstance(t, int) else tok.sp.piece_to_id(t)
            if not 0 <= i < tok.vocab_size or (isinstance(t, str) and i == gemma.UNK):
                raise SystemExit(f"params.yaml: lora.train_tokens: {t!r} is not a token of {tok.vocab_size} "
                                 "in this model's vocabulary")
            ids.append(i)
    report["trained"] = {tok.sp.id_to_piece(i): i for i in sorted(set(ids))}
    return sorted(set(ids)), report


def make_optimizer(lora: LoraParams, p: TrainParams, max_steps: int):
    """AdamW with warmup + cosine and global-norm clipping; the token rows at `train_tokens_lr_scale` times the
    learning rate. Returns the optimizer and the LoRA schedule (for the logs)."""
    import optax

    warmup = min(p.warmup_steps, max_steps - 1)

    def schedule(peak):
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(max_steps, warmup + 1),
                                                  end_value=peak * 0.1)

    def label(params):
        import jax

        def kind(path, _):  # e.g. ['embedder']['token_rows'].value
            return "token_rows" if any(getattr(k, "key", None) == "token_rows" for k in path) else "lora"
        return jax.tree_util.tree_map_with_path(kind, params)

    # The rows get no weight decay: decay would pull tied output rows towards zero, against `<end_of_turn>`'s logit.
    optimizer = optax.chain(optax.clip_by_global_norm(p.max_grad_norm), optax.multi_transform({
        "lora": optax.adamw(schedule(p.learning_rate), weight_decay=p.weight_decay),
        "token_rows": optax.adam(schedule(p.learning_rate * lora.train_tokens_lr_scale))}, label))
    return optimizer, schedule(p.learning_rate)


def lora_state(model) -> dict[str, np.ndarray]:
    from flax import nnx

    flat = nnx.state(model, nnx.LoRAParam).flat_state()
    return {".".join(map(str, path)): np.asarray(v.get_value(), np.float32)
            for path, v in flat}


def run(lora: LoraParams, p: TrainParams, base_dir: Path, data_dir: Path, ckpt_dir: Path, out_dir: Path,
        metrics_dir: Path) -> dict:
    import jax

    train_paths = sorted(Path(data_dir).glob("train-*.parquet"))
    val_paths = sorted(Path(data_dir).glob("validation-*.parquet"))
    if not train_paths:
        raise SystemExit(f"train: no train-*.parquet shards in {data_dir}: run `dvc repro render` first")
    n_devices = len(jax.devices())
    if p.fsdp * p.tp > n_devices:
        raise SystemExit(f"params.yaml: train.fsdp * train.tp = {p.fsdp * p.tp} but JAX sees {n_devices} device(s)")

    tok = gemma.Tokenizer(Path(base_dir) / "tokenizer.model")
    # Packed rows live on disk for the run (grain reads them), in the system's temporary folder.
    rows_dir = Path(tempfile.mkdtemp(prefix="train-rows-"))
    try:
        return train_and_save(lora, p, base_dir, tok, train_paths, val_paths, rows_dir, ckpt_dir, out_dir, metrics_dir)
    finally:
        shutil.rmtree(rows_dir, ignore_errors=True)


def train_and_save(lora: LoraParams, p: TrainParams, base_dir: Path, tok, train_paths, val_paths, rows_dir: Path,
                   ckpt_dir: Path, out_dir: Path, metrics_dir: Path) -> dict:
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from safetensors.numpy import save_file
    from tunix.sft import metrics_logger, peft_trainer

    train_rows, data_stats = packed_rows(train_paths, tok, p, rows_dir / "train.bin", "tokenize train")
    # Validation keeps every no-call row, so its loss compares across `no_call_keep`.
    val_rows, val_stats = packed_rows(val_paths, tok, dataclasses.replace(p, no_call_keep=1.0),
                                      rows_dir / "validation.bin", "tokenize validation")
    if len(train_rows) < p.batch_size:
        raise SystemExit(f"train: {data_stats['examples']} usable training rows make {len(train_rows)} rows of "
                         f"max_seq_len={p.max_seq_len}, fewer than train.batch_size={p.batch_size}")
    steps_per_epoch = len(train_rows) // p.batch_size // p.grad_accum_steps
    max_steps = p.max_steps or steps_per_epoch * p.epochs
    epochs = max(p.epochs, -(-max_steps * p.grad_accum_steps * p.batch_size // len(train_rows)))
    # The eval batches are the first full batches of val_rows, in order (no shuffle).
    eval_rows_used = min(len(val_rows) // p.batch_size, p.eval_batches) * p.batch_size
    eval_set = list(batches(val_rows, p, shuffle=False, epochs=1)[:eval_rows_used // p.batch_size]) or None
    capacity = training.loss_capacity(
        itertools.chain(train_rows, (val_rows[i] for i in range(eval_rows_used))), p.batch_size)
    examples, tokens = data_stats.pop("examples"), data_stats.pop("tokens")
    data_stats.update({
        "train_examples": examples, "validation_examples": val_stats["examples"],
        "train_rows": len(train_rows), "examples_per_row": round(examples / len(train_rows), 2),
        "padding_share": round(training.padding_share(train_rows), 4),
        "padding_share_unpacked": round(1 - tokens / (examples * p.max_seq_len), 4),
        "loss_positions_per_batch": capacity})

    # Checkpoints from another configuration are not resumed from.
    fp = run_fingerprint(lora, p, base_dir, train_paths)
    stamp = ckpt_dir / "run.json"
    if ckpt_dir.exists() and (not stamp.exists() or json.loads(stamp.read_text()).get("fingerprint") != fp):
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fp}) + "\n")

    mesh = None
    if p.fsdp * p.tp > 1:
        mesh = jax.make_mesh((p.fsdp, p.tp), ("fsdp", "tp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    dtype = jnp.float32 if p.dtype == "float32" else jnp.bfloat16
    base, _ = gemma.load(base_dir, dtype=dtype, mesh=mesh)
    embedding = base.embedder.input_embedding.get_value()
    centroid = gemma.untrained_centroid(embedding, tok)
    token_ids, token_report = select_train_tokens(lora, embedding, tok, centroid)
    print(f"train: token rows checked ({token_report['criterion']}): " + ", ".join(
        f"{piece} {c['id']} cos {c['cosine_to_untrained']}" for piece, c in token_report["checked"].items())
        + f"; training rows {token_report['trained'] or 'none'}", flush=True)
    with mesh if mesh is not None else contextlib.nullcontext():
        model = gemma.apply_lora(base, lora.rank, lora.alpha, lora.targets, seed=p.seed, dtype=jnp.float32)
        if token_ids:
            gemma.add_token_rows(model, token_ids, gemma.starting_rows(embedding, centroid, token_ids))
    del embedding, centroid

    optimizer, schedule = make_optimizer(lora, p, max_steps)
    tokens_seen = [0]
    log = TsvLog(ckpt_dir / "train_log.tsv", ckpt_dir / "eval_log.tsv", tokens_seen, schedule)
    backends = [lambda: log]
    if p.wandb and os.environ.get("WANDB_API_KEY"):
        from tunix.sft.metrics_logger import WandbBackend
        backends.append(lambda: WandbBackend(project="gemma-toolcall"))
    config = peft_trainer.TrainingConfig(
        eval_every_n_steps=p.eval_every_n_steps, max_steps=max_steps,
        gradient_accumulation_steps=p.grad_accum_steps if p.grad_accum_steps > 1 else None,
        checkpoint_root_directory=str(ckpt_dir.resolve()),
        checkpointing_options=ocp.CheckpointManagerOptions(save_interval_steps=p.checkpoint_every_n_steps,
                                                           max_to_keep=2),
        metrics_logging_options=metrics_logger.MetricsLoggerOptions(
            log_dir=str(ckpt_dir / "tb"), backend_kwargs={"custom_backend": backends}),
        pbar_description="train")
    trainer = (peft_trainer.PeftTrainer(model, optimizer, config)
               .with_gen_model_input_fn(training.model_inputs).with_loss_fn(training.make_loss_fn(capacity)))
    resumed_from = trainer.train_steps

    def train_iter():
        for b in batches(train_rows, p, shuffle=True, epochs=epochs):
            tokens_seen[0] += int((b["segment_ids"] != 0).sum())
            yield b

    start = time.perf_counter()
    if not sys.stderr.isatty():  # tunix draws its own bar on a terminal
        log.progress = Progress(total=max_steps, desc="train", unit="step", initial=resumed_from)
    try:
        with mesh if mesh is not None else contextlib.nullcontext():
            trainer.train(train_iter(), eval_set)
    finally:
        if log.progress is not None:
            log.progress.close()
    seconds = time.perf_counter() - start

    # The adapter, and what it belongs to.
    state = lora_state(model)
    with building(out_dir) as tmp:
        save_file(state, str(tmp / "adapter.safetensors"))
        (tmp / "adapter.json").write_text(json.dumps({
            "rank": lora.rank, "alpha": lora.alpha, "targets": list(lora.targets), "dtype": p.dtype,
            "train_tokens": token_ids,
            "base_model_sha256": gemma.fingerprint(base_dir), "steps": trainer.train_steps,
            "parameters": int(sum(v.size for v in state.values()))}, indent=2) + "\n")

    train_log = [r for s, r in sorted(log.rows["train"].items()) if s <= trainer.train_steps]
    eval_log = [r for s, r in sorted(log.rows["eval"].items()) if s <= trainer.train_steps]
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for name, header in (("train_log.tsv", TRAIN_LOG_COLUMNS), ("eval_log.tsv", ("step", "eval_loss"))):
        if (ckpt_dir / name).exists():
            shutil.copyfile(ckpt_dir / name, metrics_dir / name)
        else:  # no eval set, say: DVC still needs the declared plot file
            (metrics_dir / name).write_text("\t".join(header) + "\n")
    final = {
        "steps": trainer.train_steps, "resumed_from_step": resumed_from,
        "train_loss_first": train_log[0]["loss"] if train_log else None,
        "train_loss_last": train_log[-1]["loss"] if train_log else None,
        "eval_loss_first": eval_log[0].get("eval_loss") if eval_log else None,
        "eval_loss_last": eval_log[-1].get("eval_loss") if eval_log else None,
        "tokens_per_s": float(np.median([r["tokens_per_s"] for r in train_log[1:]])) if len(train_log) > 1 else None,
        "train_seconds": round(seconds, 1), "lora_parameters": int(sum(v.size for v in state.values())),
        "special_tokens": token_report, "data": data_stats,
    }
    (metrics_dir / "train.json").write_text(json.dumps(final, indent=2) + "\n")
    return final


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--data", type=Path, default=Path("data/formatted"))
    ap.add_argument("--checkpoints", type=Path, default=Path("models/checkpoints"))
    ap.add_argument("--out", type=Path, default=Path("models/lora"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = ap.parse_args(argv)
    run(load_section("lora", LoraParams), load_section("train", TrainParams), args.base, args.data,
        args.checkpoints, args.out, args.metrics)


if __name__ == "__main__":
    main()
