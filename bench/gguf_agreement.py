"""The exported GGUF files in llama.cpp against the JAX model (base + LoRA) on the same evaluation prompts: how often
their greedy outputs agree, each one's accuracy, and decoding speed.

    python bench/gguf_agreement.py --prompts 60 --out reports/<run>/gguf_agreement.json

Run in a workspace after `dvc repro export evaluate_base` (it reads models/base, models/lora, models/export/gguf/,
data/bfcl and data/filtered/validation.parquet, and params.yaml's render.json_style). Prompts are an even spread
over the evaluate stage's BFCL categories and held-out rows. Both engines decode greedily and freely (no call
grammar: llama.cpp has none of ours) from the same token ids; llama.cpp runs one prompt at a time on `--threads`
threads, the JAX sampler in batches of `--batch`, so its tokens/s is throughput, not one stream's speed. Needs the
`llama` extra (xllamacpp).

`--types ... Q4_K_M` also writes `model-Q4_K_M.gguf` beside the others: the merged weights with each tensor in the type
the base GGUF (the PyPI package's Q4_K_M file) gives it, quantized by ggml's own code in xllamacpp's library (the
`gguf` package has no K-quant writer), and reports the share of the LoRA update it keeps, as export.json does for
F16 and Q8_0. For this model that is mostly Q5_0: most matrices have 640-value rows, which K-quants' 256-value
blocks do not split, so llama.cpp falls back to Q5_0 (Q4_K) and Q8_0 (Q6_K) there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import bfcl, gguf_export, model as gemma  # noqa: E402
from gemma_toolcall.chat_format import BOS, parse_model_turn  # noqa: E402
from gemma_toolcall.decoding import sampling  # noqa: E402
from gemma_toolcall.params import load_section, value  # noqa: E402
from stages import evaluate  # noqa: E402


def llama_generate(path: Path, prompts: list[list[int]], max_new_tokens: int, threads: int):
    """(texts, ended, generated tokens, seconds) of llama.cpp's greedy decoding, one prompt after another."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 4096
    params.warmup = False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    texts, ended, tokens, seconds = [], [], 0, 0.0
    for ids in prompts:
        body = {"prompt": ids, "n_predict": max_new_tokens, "temperature": 0, "cache_prompt": False}
        request = urllib.request.Request(server.listening_address + "/completion", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            out = json.loads(response.read())
        seconds += time.perf_counter() - start
        texts.append(out["content"])
        ended.append(out.get("stop_type") == "eos")
        tokens += out["tokens_predicted"]
    del server
    return texts, ended, tokens, seconds


def ggml_quantizer():
    """ggml_quantize_chunk from xllamacpp's library: (float32 (rows, n) array, GGML type) -> its bytes."""
    import ctypes

    import numpy as np
    import xllamacpp.xllamacpp as ext

    lib = ctypes.CDLL(ext.__file__)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]

    def quantize(w, qtype):
        import gguf

        w = np.ascontiguousarray(w, np.float32)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        out = np.zeros((w.shape[0], w.shape[1] // block * size), np.uint8)
        lib.ggml_quantize_init(int(qtype))
        if lib.ggml_quantize_chunk(int(qtype), w.ctypes.data, out.ctypes.data, 0, w.shape[0], w.shape[1],
                                   None) != out.nbytes:
            raise RuntimeError(f"ggml_quantize_chunk wrote an unexpected size for {qtype.name}")
        return out

    return quantize


def write_like_base(merged: Path, base: Path, template: Path, out: Path) -> dict:
    """`out`: the merged weights, each tensor in the base GGUF's type for it, metadata from `template` (an exported
    GGUF) with file_type Q4_K_M. Returns the share of the LoRA update kept per tensor kind (cosine of the decoded
    change with the merged change) and the file's size."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    qtype = gguf.GGMLQuantizationType
    types = {t.name: qtype(t.tensor_type) for t in gguf.GGUFReader(gguf_export.package_gguf()).tensors}
    quantize, sums = ggml_quantizer(), {}
    meta = gguf_export.read_metadata(template)
    meta["general.file_type"] = (int(gguf.LlamaFileType.MOSTLY_Q4_K_M), gguf.GGUFValueType.UINT32, None)

    def tensors():
        with safe_open(str(base / "model.safetensors"), framework="flax") as f:  # numpy reads no bfloat16
            for name, hf, w in gguf_export.merged_tensors(merged):
                t = types[name]
                if t in (qtype.F32, qtype.F16):
                    yield (name, *gguf_export.encode_tensor(name, w, "F16"))
                    continue
                data = quantize(w, t)
                kind = gguf_export.KINDS.get(name.split(".")[-2])
                if kind:
                    before = np.asarray(f.get_tensor(hf), np.float32)
                    rows = gguf_export.updated_rows(kind, before, w)
                    decoded = gguf.quants.dequantize(data, t)[rows]
                    sums[kind] = sums.get(kind, 0.0) + gguf_export.update_sums(before[rows], w[rows], decoded)
                yield name, data, t

    counts = gguf_export.write_file(out, meta, tensors())
    return {"bytes": out.stat().st_size, "tensors": counts,
            "kept": {k: gguf_export.kept_share(v) for k, v in sums.items()}}


def scores(cases, outputs, ended, scorer) -> dict:
    verdicts = [evaluate.judge(c, o, scorer) for c, o in zip(cases, outputs)]
    out = {}
    for source in ("bfcl", "heldout"):
        rows = [v for c, v in zip(cases, verdicts) if c["source"] == source]
        out[source] = {"n": len(rows), "passed": sum(v["passed"] for v in rows)}
    out["ended_turn"] = sum(ended)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--lora", type=Path, default=Path("models/lora"))
    ap.add_argument("--gguf", type=Path, default=Path("models/export/gguf"))
    ap.add_argument("--types", nargs="+", default=["F16", "Q8_0"], choices=["F16", "Q8_0", "Q4_K_M"])
    ap.add_argument("--merged", type=Path, default=Path("models/export/merged"), help="for Q4_K_M")
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    p = load_section("evaluate", evaluate.EvaluateParams, limit=0, heldout_limit=0)
    style = value("render.json_style")
    cases = evaluate.bfcl_cases(args.bfcl, p, style) + evaluate.heldout_cases(args.validation, p, style)[0]
    cases = [cases[i * len(cases) // args.prompts] for i in range(min(args.prompts, len(cases)))]
    tok = gemma.Tokenizer(args.base / "tokenizer.model")
    prompts = [c["prompt"][len(BOS):] for c in cases]
    scorer = bfcl.Scorer(args.bfcl)

    _, tuned, config = gemma.load_tuned(args.base, args.lora)
    sampling.generate(tuned, config, tok, prompts[:args.batch], args.max_new_tokens, args.batch)  # compile
    start = time.perf_counter()
    completions = sampling.generate(tuned, config, tok, prompts, args.max_new_tokens, args.batch)
    jax_out, jax_ended = [c.text for c in completions], [c.ended for c in completions]
    jax_seconds = time.perf_counter() - start
    jax_tokens = sum(len(tok.encode(t)) + e for t, e in zip(jax_out, jax_ended))
    result = {"prompts": len(cases), "max_new_tokens": args.max_new_tokens, "json_style": style,
              "jax": {**scores(cases, jax_out, jax_ended, scorer), "batch": args.batch,
                      "tokens_per_s": round(jax_tokens / jax_seconds, 1)}}
    ids = [[gemma.BOS] + tok.encode(x) for x in prompts]
    for file_type in args.types:
        if file_type == "Q4_K_M":
            result["Q4_K_M file"] = write_like_base(args.merged, args.base, args.gguf / "model-Q8_0.gguf",
                                                    args.gguf / "model-Q4_K_M.gguf")
            print(f"Q4_K_M file: {json.dumps(result['Q4_K_M file'])}", flush=True)
        texts, ended, tokens, seconds = llama_generate(args.gguf / f"model-{file_type}.gguf", ids,
                                                       args.max_new_tokens, args.threads)
        same_calls = sum(parse_model_turn(a).calls == parse_model_turn(b).calls for a, b in zip(texts, jax_out))
        result[f"llama.cpp {file_type}"] = {
            **scores(cases, texts, ended, scorer), "threads": args.threads, "tokens_per_s": round(tokens / seconds, 1),
            "same_output_as_jax": sum(a.strip() == b.strip() for a, b in zip(texts, jax_out)),
            "same_calls_as_jax": same_calls}
        print(f"{file_type}: {json.dumps(result[f'llama.cpp {file_type}'])}", flush=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
