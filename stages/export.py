"""Stage `export`: the trained adapter in four forms, from models/lora/ and models/base/.

- models/export/npy/: `model.<tunix layer path>.lora_a.npy` / `.lora_b.npy` for every LoRA target, and `model.embedder.token_rows.npy`, the trained
  token rows. Load back with `gemma_toolcall.model.with_adapter(base, meta, read_npy(...))`.
- models/export/peft/: `adapter_model.safetensors` + `adapter_config.json` for Hugging Face PEFT on transformers'
  `Gemma3ForCausalLM` built from models/base/; token rows as `trainable_token_indices`.
- models/export/merged/: base + LoRA folded into the weights, token rows written into the (tied) embedding,
  float32 (a bf16 merge would round most of a small LoRA update away), in Hugging Face layout, loadable by
  transformers and by tunix.

merged/ and peft/ also hold the tokenizer (tokenizer.model, tokenizer_config.json) with the chat template of the
training format (`gemma_toolcall.chat_template`, in the training data's JSON style), also as chat_template.jinja:
transformers' `apply_chat_template(messages, tools=...)` then writes the prompts training saw.
- models/export/gguf/: the merged model for llama.cpp (`model-Q8_0.gguf`, `model-F16.gguf`), the chat template
  embedded; metrics/export.json says how large the update is per weight kind and how much of it each type keeps.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from gemma_toolcall import gguf_export, model as gemma
from gemma_toolcall.artifacts import building
from gemma_toolcall.chat_format import JSON_STYLES
from gemma_toolcall.chat_template import chat_template

PEFT_TOKEN_ROWS = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
PEFT_TARGETS = {"q_einsum": ["q_proj"], "kv_einsum": ["k_proj", "v_proj"], "attn_vec_einsum": ["o_proj"],
                "gate_proj": ["gate_proj"], "up_proj": ["up_proj"], "down_proj": ["down_proj"]}


def write_npy(adapter: dict, out: Path) -> None:
    """One file per LoRA matrix, `model.<path>.lora_a|lora_b.npy`, and the trained token rows (k, D) as
    `model.embedder.token_rows.npy` (their ids are adapter.json's `train_tokens`)."""
    out.mkdir(parents=True)
    for name, value in adapter.items():
        if name == gemma.TOKEN_ROWS:
            np.save(out / f"model.{name}.npy", value)
            continue
        path, _, kind = name.rpartition(".")  # e.g. layers.0.attn.q_einsum . w_lora_a
        np.save(out / f"model.{path}.{kind.split('_', 1)[1]}.npy", value)  # lora_a / lora_b


def read_npy(npy_dir: Path) -> dict[str, np.ndarray]:
    """Inverse of write_npy: the adapter dict `set_lora` takes."""
    adapter = {}
    for f in sorted(Path(npy_dir).glob("model.*.npy")):
        name = f.name[len("model."):-len(".npy")]
        if name == gemma.TOKEN_ROWS:
            adapter[name] = np.load(f)
            continue
        path, _, kind = name.rpartition(".")
        prefix = "w_" if "einsum" in path else "kernel_"
        adapter[f"{path}.{prefix}{kind}"] = np.load(f)
    return adapter


def write_peft(pairs: dict, token_rows, meta: dict, base_dir: Path, out: Path) -> None:
    """LoRA pairs, and the trained token rows as PEFT's `trainable_token_indices`: the key below holds the rows'
    new values (PEFT's forward index-copies them into the embedding; the tied lm_head follows it)."""
    out.mkdir(parents=True)
    tensors = {}
    for module, (a, b) in pairs.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = np.ascontiguousarray(a, np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = np.ascontiguousarray(b, np.float32)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base_dir),
        "r": meta["rank"], "lora_alpha": meta["alpha"], "lora_dropout": 0.0, "bias": "none",
        "target_modules": sorted({hf for t in meta["targets"] for hf in PEFT_TARGETS[t]}),
        "fan_in_fan_out": False, "use_rslora": False, "inference_mode": True}
    if meta.get("train_tokens"):
        tensors[PEFT_TOKEN_ROWS] = np.ascontiguousarray(token_rows, np.float32)
        config["trainable_token_indices"] = list(meta["train_tokens"])
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def write_merged(pairs: dict, token_rows, meta: dict, base_dir: Path, out: Path) -> None:
    out.mkdir(parents=True)
    weights = {k: v.astype(np.float32) for k, v in load_bf16_safetensors(base_dir / "model.safetensors").items()}
    scale = meta["alpha"] / meta["rank"]
    for module, (a, b) in pairs.items():
        weights[f"{module}.weight"] += scale * (b.astype(np.float32) @ a.astype(np.float32))
    if meta.get("train_tokens"):  # the embedding is tied: the output projection follows
        weights["model.embed_tokens.weight"][meta["train_tokens"]] = token_rows
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((base_dir / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}, indent=2) + "\n")
    for name in ("NOTICE", "GEMMA_TERMS.html"):  # the tokenizer: write_tokenizer
        if (base_dir / name).exists():
            shutil.copyfile(base_dir / name, out / name)
    (out / "README.md").write_text(f"Gemma 3 with a LoRA adapter (rank {meta['rank']}, alpha {meta['alpha']}) merged "
                                   "into its weights by gemma-toolcall's export stage: modified Gemma weights, "
                                   "subject to the Gemma Terms of Use (NOTICE).\n")


def write_tokenizer(base_dir: Path, out: Path, json_style: str) -> None:
    """tokenizer.model, and a tokenizer_config.json that names its class (peft/ has no config.json to infer it
    from) and its special tokens, with the chat template; the template also as chat_template.jinja, the file
    transformers 5 reads first."""
    shutil.copyfile(base_dir / "tokenizer.model", out / "tokenizer.model")
    sp = gemma.Tokenizer(base_dir / "tokenizer.model").sp
    template = chat_template(json_style)
    config = {
        "tokenizer_class": "GemmaTokenizer",
        **{f"{kind}_token": sp.id_to_piece(i) for kind, i in
           (("bos", gemma.BOS), ("eos", gemma.EOS), ("pad", gemma.PAD), ("unk", gemma.UNK))},
        # transformers' Gemma tokenizer adds a `<mask>` of its own where the vocabulary has none (the tiny one),
        # an id past the embedding.
        "mask_token": "<mask>" if sp.piece_to_id("<mask>") != sp.unk_id() else None,
        # The template writes `<bos>` itself, as the rendered training text does: tokenizing that text must not
        # add a second one.
        "add_bos_token": False, "add_eos_token": False,
        "chat_template": template}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (out / "chat_template.jinja").write_text(template)


def load_bf16_safetensors(path: Path) -> dict[str, np.ndarray]:
    """numpy has no bfloat16: read through JAX, which does."""
    from safetensors.flax import load_file as load_jax

    return {k: np.asarray(v, np.float32) for k, v in load_jax(str(path)).items()}


def write_gguf(merged: Path, base_dir: Path, out: Path, json_style: str, base_gguf: Path | None) -> dict:
    """models/export/gguf/: the merged model as `model-Q8_0.gguf` and `model-F16.gguf` for llama.cpp, the chat
    template inside; metadata copied from the base GGUF where the base came from one. Q8_0 is half the size, F16
    keeps a small LoRA update that Q8_0's rounding can bury: `update_share` says how much of it each keeps."""
    out.mkdir(parents=True)
    files = {t: gguf_export.write_gguf(merged, out / f"model-{t}.gguf", t, chat_template(json_style), base_gguf)
             for t in gguf_export.FILE_TYPES}
    for name in ("NOTICE", "GEMMA_TERMS.html"):  # modified Gemma weights travel with Gemma's terms
        if (base_dir / name).exists():
            shutil.copyfile(base_dir / name, out / name)
    return {"gguf": files, **gguf_export.update_share(merged, base_dir)}


def run(lora_dir: Path, base_dir: Path, out: Path, json_style: str = "pretty", base_gguf: Path | None = None,
        metrics_path: Path | None = None) -> dict:
    meta, adapter = gemma.read_adapter(lora_dir, base_dir)
    pairs = gemma.hf_lora_pairs(adapter, json.loads((base_dir / "config.json").read_text()))
    token_rows = adapter.get(gemma.TOKEN_ROWS)
    with building(out) as tmp:
        write_npy(adapter, tmp / "npy")
        write_peft(pairs, token_rows, meta, base_dir, tmp / "peft")
        write_merged(pairs, token_rows, meta, base_dir, tmp / "merged")
        for form in ("peft", "merged"):
            write_tokenizer(base_dir, tmp / form, json_style)
        metrics = write_gguf(tmp / "merged", base_dir, tmp / "gguf", json_style, base_gguf)
    if metrics_path:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lora", type=Path, default=Path("models/lora"))
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--out", type=Path, default=Path("models/export"))
    ap.add_argument("--json-style", choices=JSON_STYLES, default="pretty",
                    help="the chat template's JSON style: render.json_style of the training data")
    ap.add_argument("--model-source", default="",
                    help="model.source: gguf-package copies the GGUF metadata from the base's own GGUF file")
    ap.add_argument("--metrics", type=Path, help="where to write ||dW||/||W|| and the share each GGUF type keeps")
    args = ap.parse_args(argv)
    base_gguf = gguf_export.package_gguf() if args.model_source == "gguf-package" else None
    run(args.lora, args.base, args.out, args.json_style, base_gguf, args.metrics)


if __name__ == "__main__":
    main()
