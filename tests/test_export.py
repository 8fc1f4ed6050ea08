"""The exported adapter, trained token rows included, five ways, gives the trained model's logits: tunix + qwix
LoRA, transformers + PEFT, transformers merged, tunix merged, tunix + the npy files."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from gemma_toolcall import model as gemma
from stages import export, train
from conftest import stage_params

torch = pytest.importorskip("torch", reason="export checks need the `export` extra: pip install -e '.[export]'")
peft = pytest.importorskip("peft", reason="export checks need the `export` extra: pip install -e '.[export]'")

IDS = [2, 4, 105, 30, 31, 40, 50, 60, 70, 80, 90, 100, 110, 120, 200, 106, 5, 8, 1]
TRAIN_TOKENS = ("<start_of_turn>", "<end_of_turn>", "<tool_call>")  # ids 4, 5, 8 in the tiny vocabulary


@pytest.fixture(scope="module")
def exported(tiny_base, formatted, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    train.run(stage_params("lora", train.LoraParams, rank=4, alpha=8.0, train_tokens=TRAIN_TOKENS),
              stage_params("train", train.TrainParams, max_seq_len=512, batch_size=2, max_steps=12, warmup_steps=1, learning_rate=2e-2,
                                eval_batches=0, eval_every_n_steps=100, checkpoint_every_n_steps=100),
              tiny_base, formatted, tmp / "ck", tmp / "lora", tmp / "metrics")
    export.run(tmp / "lora", tiny_base, tmp / "export", metrics_path=tmp / "metrics" / "export.json")
    return tmp / "lora", tmp / "export"


def tunix_logits(model):
    import jax.numpy as jnp

    x = jnp.array([IDS])
    mask = jnp.tril(jnp.ones((1, len(IDS), len(IDS)), bool))
    return np.asarray(model(x, jnp.arange(len(IDS))[None], None, mask)[0][0], np.float32)


def torch_logits(model):
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].float().numpy()


def tunix_with_adapter(base, adapter, meta):
    import jax.numpy as jnp

    return gemma.with_adapter(gemma.load(base, dtype=jnp.float32)[0], meta, adapter)


def test_load_tuned_is_base_plus_adapter(tiny_base, exported):
    import jax.numpy as jnp

    lora_dir, _ = exported
    base, tuned, config = gemma.load_tuned(tiny_base, lora_dir, dtype=jnp.float32)
    meta, adapter = gemma.read_adapter(lora_dir)
    assert config["vocab_size"] == base.embedder.input_embedding.get_value().shape[0]
    np.testing.assert_array_equal(tunix_logits(tuned), tunix_logits(tunix_with_adapter(tiny_base, adapter, meta)))
    np.testing.assert_array_equal(tunix_logits(base), tunix_logits(gemma.load(tiny_base, dtype=jnp.float32)[0]))


def test_five_ways_to_the_same_logits(tiny_base, exported):
    import jax.numpy as jnp
    from transformers import Gemma3ForCausalLM

    lora_dir, out = exported
    meta = json.loads((lora_dir / "adapter.json").read_text())
    adapter = load_file(lora_dir / "adapter.safetensors")

    trained = tunix_logits(tunix_with_adapter(tiny_base, adapter, meta))                         # (a)
    base_only = tunix_logits(gemma.load(tiny_base, dtype=jnp.float32)[0])
    hf_base = Gemma3ForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    with_peft = torch_logits(peft.PeftModel.from_pretrained(hf_base, out / "peft").eval())        # (b)
    hf_merged = torch_logits(Gemma3ForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval())  # (c)
    tunix_merged = tunix_logits(gemma.load(out / "merged", dtype=jnp.float32)[0])                # (d)
    from_npy = tunix_logits(tunix_with_adapter(tiny_base, export.read_npy(out / "npy"), meta))   # (e)

    # A non-trivial adapter: the LoRA moves the logits far beyond the tolerance used below, and so do the token
    # rows alone, as input (ids 4, 5, 8 in IDS) and as output (their logit columns): an export that dropped them
    # would fail.
    assert all(np.abs(v).max() > 1e-3 for k, v in adapter.items() if "lora_b" in k)
    print(f"LoRA moves the logits by up to {np.abs(trained - base_only).max():.3f}")
    assert np.abs(trained - base_only).max() > 0.05
    assert meta["train_tokens"] == [4, 5, 8] and adapter[gemma.TOKEN_ROWS].shape == (3, 64)
    lora_only = {k: v for k, v in adapter.items() if k != gemma.TOKEN_ROWS}
    without_rows = tunix_logits(tunix_with_adapter(tiny_base, lora_only, {**meta, "train_tokens": []}))
    print(f"token rows move the logits by up to {np.abs(trained - without_rows).max():.3f}")
    assert np.abs(trained - without_rows)[:, meta["train_tokens"]].max() > 0.05  # output side
    assert np.abs(trained - without_rows)[IDS.index(5) + 1:].max() > 0.05  # positions after an input row
    for name, logits in (("peft", with_peft), ("hf merged", hf_merged), ("tunix merged", tunix_merged),
                         ("npy", from_npy)):
        print(f"{name}: max |logit difference| {np.abs(logits - trained).max():.2e}")
        np.testing.assert_allclose(logits, trained, atol=5e-5, rtol=1e-5, err_msg=name)  # measured: <= 2.6e-5 (logits up to ~36)


def test_export_layouts(exported):
    lora_dir, out = exported
    adapter = load_file(lora_dir / "adapter.safetensors")
    npy = sorted(p.name for p in (out / "npy").iterdir())
    assert len(npy) == len(adapter) == 2 * 2 * 6 + 1  # every target of every layer, attention included; the rows
    assert "model.layers.0.attn.q_einsum.lora_a.npy" in npy and "model.layers.1.mlp.down_proj.lora_b.npy" in npy
    assert "model.embedder.token_rows.npy" in npy
    config = json.loads((out / "peft" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8.0
    assert config["trainable_token_indices"] == [4, 5, 8]
    peft_tensors = load_file(out / "peft" / "adapter_model.safetensors")
    np.testing.assert_array_equal(peft_tensors[export.PEFT_TOKEN_ROWS], adapter[gemma.TOKEN_ROWS])
    assert config["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])
    assert {"config.json", "model.safetensors", "tokenizer.model", "NOTICE"} <= {p.name for p in (out / "merged").iterdir()}
    assert {"model-Q8_0.gguf", "model-F16.gguf", "NOTICE"} <= {p.name for p in (out / "gguf").iterdir()}
    metrics = json.loads((lora_dir.parent / "metrics" / "export.json").read_text())
    assert set(metrics["gguf"]) == {"F16", "Q8_0"} and metrics["relative_update"]["q"] > 0
    assert metrics["kept"]["F16"]["q"] > metrics["kept"]["Q8_0"]["q"]  # F16 keeps more of the update


def test_only_the_trained_rows_of_the_embedding_change(tiny_base, exported):
    lora_dir, out = exported
    meta, adapter = gemma.read_adapter(lora_dir)
    before = export.load_bf16_safetensors(tiny_base / "model.safetensors")["model.embed_tokens.weight"]
    after = load_file(out / "merged" / "model.safetensors")["model.embed_tokens.weight"]
    changed = np.flatnonzero(np.abs(after - before).max(axis=1) > 0)
    assert changed.tolist() == meta["train_tokens"]
    np.testing.assert_array_equal(after[meta["train_tokens"]], adapter[gemma.TOKEN_ROWS])


def test_export_refuses_an_adapter_of_another_base(exported, tmp_path):
    lora_dir, _ = exported
    from stages import base_model

    other = tmp_path / "other"
    base_model.run(stage_params("model", base_model.ModelParams, source="tiny-random", seed=1), other)
    with pytest.raises(SystemExit, match="trained on another base model"):
        export.run(lora_dir, other, tmp_path / "out")
