"""Training throughput and memory: this project's train step against tunix's defaults and Hugging Face
transformers + peft, on the same data, LoRA config and device.

    python bench/train_bench.py --base models/base --seq 512 1024 --batch 8      # real Gemma 3 270M (GPU)
    python bench/train_bench.py --base models/base --random-weights ...          # its shape and tokenizer only
    python bench/train_bench.py --random-init --seq 1024 --batch-sweep           # no weights at all: 270M's shape
    python bench/train_bench.py --tiny                                           # CPU-sized smoke run (tests)

Systems, each in its own process (so peak memory is its own):
- `ours`: the `train` stage's step: packed rows, loss at model-turn positions only, float32 LoRA over the base dtype.
- `tunix-default`: tunix PeftTrainer out of the box: one example per row, its default loss (full logits, one-hot
  targets), LoRA in the base dtype.
- `hf-peft`: transformers `Gemma3ForCausalLM` + peft LoRA on the same projections, one example per row padded to
  the sequence length, labels -100 outside model turns, torch AdamW, eager (no torch.compile).

Data: a synthetic Toucan stand-in run through the project's filter and render stages, tokenized with the base's
tokenizer; examples longer than the sequence length are dropped. Each system consumes the examples in the same
order, `--batch` rows per step. Reported per system and sequence length: real (non-padding) tokens/s, step time
(`--steps` steps after `--warmup`, at least 2 since a JAX step compiles on its first two calls; dispatched back to
back and waited for once at the end, as a training loop that does not read values every step runs), padding share,
peak memory (the accelerator allocator's peak; on CPU the process's peak RSS), for the JAX systems the compiled
step's scratch memory as XLA plans it (activations, logits, gradients: the part the loss changes, comparable on
any device), and MFU.

`--batch-sweep` runs each system at `--batch`, doubling until the device runs out of memory (XLA's
RESOURCE_EXHAUSTED, torch's OutOfMemoryError) or `--max-batch`, and reports its fastest batch and the largest that fit.

FLOPs per step (what each system computes, padding included): frozen matmuls forward + backward through the
activations (4 x tokens x params), LoRA forward + backward with weight gradients (6 x tokens x LoRA params),
attention scores and values (causal, sliding window on local layers; backward = 2 x forward), and the vocabulary
projection (4 x positions x D x V) at the positions the system projects: every position for the baselines, the
gathered loss positions for ours. MFU = FLOPs / step time / the device's dense bf16 peak (H100/H200: 989 TFLOP/s;
`--peak-tflops` elsewhere).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gemma_toolcall import model as gemma, training  # noqa: E402
from gemma_toolcall.params import load_section  # noqa: E402

SYSTEMS = ("ours", "tunix-default", "hf-peft")
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}
HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- data ------------------------------------------------------------------------------------------------------
def prepare_data(base: Path, rows: int, work: Path) -> Path:
    """Synthetic Toucan → filter → render (the project's stages) → (ids, mask) examples in one .npz."""
    import pyarrow.parquet as pq

    from stages import download, filter as filter_stage, render

    download.run(load_section("download", download.DownloadParams, rows=rows, seed=0), work / "raw")
    filter_stage.run(load_section("filter", filter_stage.FilterParams), work / "raw", work / "filtered", work / "data.json")
    render.run(load_section("render", render.RenderParams), work / "filtered", work / "formatted", work / "render.json")
    tok = gemma.Tokenizer(base / "tokenizer.model")
    ids, masks, lengths = [], [], []
    for path in sorted((work / "formatted").glob("train-*.parquet")):
        for row in pq.read_table(path, columns=["text", "model_spans"]).to_pylist():
            i, m = training.tokenize_example(tok, row["text"], row["model_spans"])
            if any(m[1:]):
                ids += i
                masks += m
                lengths.append(len(i))
    out = work / "examples.npz"
    np.savez(out, ids=np.array(ids, np.int32), mask=np.array(masks, np.int8), lengths=np.array(lengths, np.int64))
    return out


def load_examples(path: Path, seq: int) -> list[tuple[list[int], list[int]]]:
    data = np.load(path)
    bounds = np.concatenate([[0], np.cumsum(data["lengths"])])
    return [(data["ids"][a:b].tolist(), data["mask"][a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])
            if b - a <= seq]


def step_batches(rows: list[dict], batch: int, steps: int) -> list[dict[str, np.ndarray]]:
    """`steps` batches of `batch` rows, in order, wrapping around the data."""
    return [{k: np.stack([rows[(s * batch + j) % len(rows)][k] for j in range(batch)]) for k in training.ROW_KEYS}
            for s in range(steps)]


# -- FLOPs -----------------------------------------------------------------------------------------------------
def step_flops(config: dict, batch: int, seq: int, rank: int, projected: int) -> float:
    d, f, hd, v = config["hidden_size"], config["intermediate_size"], config["head_dim"], config["vocab_size"]
    h, k, layers = config["num_attention_heads"], config["num_key_value_heads"], config["num_hidden_layers"]
    tokens = batch * seq
    frozen = d * h * hd + 2 * d * k * hd + h * hd * d + 3 * d * f
    lora = rank * ((d + h * hd) + (d + 2 * k * hd) + (h * hd + d) + 3 * (d + f))
    attention = 0.0
    for kind in config["layer_types"]:
        span = seq if kind == "full_attention" else min(seq, config["sliding_window"])
        attention += 3 * 2 * 2 * batch * seq * span / 2 * h * hd  # QK^T and AV, causal half, backward 2x
    return 4 * tokens * frozen * layers + 6 * tokens * lora * layers + attention + 4 * projected * d * v


def peak_flops(device_name: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    return next((t * 1e12 for key, t in PEAK_TFLOPS.items() if key in device_name), None)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- systems (each runs in its own process) ---------------------------------------------------------------------
def jax_step(system: str, a):
    """The system's jitted train step (a tunix PeftTrainer's), its batches already on the device, the model, its
    config, the positions its loss projects onto the vocabulary, and the compiled step's scratch bytes."""
    import jax
    import jax.numpy as jnp
    import optax
    from tunix.sft import peft_trainer

    packed = system == "ours"
    dtype = jnp.dtype(a.dtype)
    rows = list(training.pack(load_examples(a.data, a.seq), a.seq, packing=packed))
    batches = step_batches(rows, a.batch, a.warmup + a.steps)
    base, config = gemma.load(a.base, dtype=dtype)
    model = gemma.apply_lora(base, a.rank, a.alpha, dtype=jnp.float32 if packed else None)
    if packed:
        capacity = training.loss_capacity([r for b in batches for r in _unbatch(b)], a.batch)
        loss_fn, projected = training.make_loss_fn(capacity), capacity
    else:
        loss_fn, projected = peft_trainer._default_loss_fn, a.batch * a.seq  # tunix's own default
    trainer = (peft_trainer.PeftTrainer(model, optax.adamw(1e-4), peft_trainer.TrainingConfig(
        eval_every_n_steps=10**9, max_steps=a.warmup + a.steps))
        .with_gen_model_input_fn(training.model_inputs).with_loss_fn(loss_fn))
    train_step, _ = trainer.jit_train_and_eval_step()
    on_device = [jax.device_put(b) for b in batches]
    scratch = train_step.func.lower(*train_step.args, on_device[0]).compile().memory_analysis().temp_size_in_bytes
    return train_step, on_device, model, config, projected, scratch


def run_jax(system: str, a) -> dict:
    import jax
    from flax import nnx

    train_step, batches, model, config, projected, scratch = jax_step(system, a)
    # The first two calls compile: the second's inputs are the first's outputs (committed, donated), another key.
    for b in batches[:a.warmup]:
        jax.block_until_ready(train_step(b))
    start = time.perf_counter()
    for b in batches[a.warmup:]:  # no host sync inside: the device queue stays full
        loss, _, _ = train_step(b)
    jax.block_until_ready((loss, nnx.state(model, nnx.LoRAParam)))  # the last optimizer update included
    step = (time.perf_counter() - start) / a.steps
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return result(system, a, config, batches[a.warmup:], step, float(loss), projected,
                  device=device_name(device),
                  peak_bytes=stats.get("peak_bytes_in_use") or peak_rss_bytes(), step_scratch_bytes=scratch)


# SIMD features that decide a CPU's matmul speed: the same step runs several times slower on an AVX2-only CPU than on
# one with AVX-512, so a CPU result names its CPU.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_name(cpuinfo: str | None = None) -> str:
    """'<model name> x<logical CPUs> [features]' from /proc/cpuinfo (Linux); the platform's processor elsewhere."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            import platform
            return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    present = set(flags.group(1).split()) if flags else set()
    count = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or os.cpu_count()
    return (f"{model.group(1).strip() if model else 'unknown CPU'} x{count} "
            f"[{' '.join(f for f in CPU_FEATURES if f in present) or 'no avx2'}]")


def device_name(device) -> str:
    """The JAX device a result was measured on; for a CPU, which CPU (its device_kind says only 'cpu')."""
    if device.platform == "cpu":
        return f"cpu:{cpu_name()}"
    return f"{device.platform}:{getattr(device, 'device_kind', '')}"


def _unbatch(batch: dict) -> list[dict]:
    return [{k: v[i] for k, v in batch.items()} for i in range(len(batch["input_tokens"]))]


def run_hf(a) -> dict:
    import peft
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    model = transformers.Gemma3ForCausalLM.from_pretrained(str(a.base), dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    model = peft.get_peft_model(model, peft.LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0,
                                                       target_modules=HF_TARGETS, task_type="CAUSAL_LM")).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rows = list(training.pack(load_examples(a.data, a.seq), a.seq, packing=False))
    batches = step_batches(rows, a.batch, a.warmup + a.steps)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    on_device = [hf_inputs(b, device) for b in batches]
    model.train()

    def train_step(inputs):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for inputs in on_device[:a.warmup]:
        train_step(inputs)
    sync()
    start = time.perf_counter()
    for inputs in on_device[a.warmup:]:
        loss = train_step(inputs)
    sync()
    step = (time.perf_counter() - start) / a.steps
    name = torch.cuda.get_device_name() if device == "cuda" else cpu_name()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()
    return result("hf-peft", a, json.loads((a.base / "config.json").read_text()), batches[a.warmup:], step,
                  float(loss), a.batch * a.seq, device=f"torch:{name}", peak_bytes=peak, step_scratch_bytes=None)


def hf_inputs(batch: dict, device: str) -> dict:
    """transformers' arguments for one batch: padding masked out, labels -100 outside model turns."""
    import torch

    ids = torch.as_tensor(batch["input_tokens"], dtype=torch.long, device=device)
    labels = torch.where(torch.as_tensor(batch["input_mask"] > 0, device=device), ids, -100)
    return {"input_ids": ids, "attention_mask": torch.as_tensor(batch["segment_ids"] != 0, device=device).long(),
            "labels": labels}


def result(system, a, config, batches, step, loss, projected, *, device, peak_bytes, step_scratch_bytes) -> dict:
    real = statistics.mean(float((b["segment_ids"] != 0).sum()) for b in batches)
    flops = step_flops(config, a.batch, a.seq, a.rank, projected)
    peak = peak_flops(device, a.peak_tflops)
    return {"system": system, "seq": a.seq, "batch": a.batch, "device": device, "step_s": step,
            "tokens_per_s": real / step, "padding_share": 1 - real / (a.batch * a.seq),
            "peak_memory_gb": peak_bytes / 2**30,
            "step_scratch_gb": step_scratch_bytes / 2**30 if step_scratch_bytes is not None else None,
            "tflops_per_s": flops / step / 1e12,
            "mfu": flops / step / peak if peak else None, "last_loss": loss}


# -- driver ----------------------------------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    lines = ["| seq | system | batch | tokens/s | step (s) | padding | peak mem (GB) | XLA step scratch (GB) | TFLOP/s "
             "| MFU | largest batch |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        scratch = f"{r['step_scratch_gb']:.3f}" if r["step_scratch_gb"] is not None else "n/a"
        lines.append(f"| {r['seq']} | {r['system']} | {r['batch']} | {r['tokens_per_s']:.0f} | {r['step_s']:.3f} | "
                     f"{100 * r['padding_share']:.0f}% | {r['peak_memory_gb']:.2f} | {scratch} | "
                     f"{r['tflops_per_s']:.2f} | {mfu} | {largest_batch(r)} |")
    return "\n".join(lines)


def largest_batch(r: dict) -> str:
    if "largest_batch" not in r:
        return "not swept"
    return f"{r['largest_batch']}" + (" (OOM at 2x)" if r["oom_at"] else " (cap)")


def base_folder(a, tmp: Path) -> Path:
    """The model folder the run uses: `--base` itself, or random weights of a shape written under `tmp`."""
    if a.tiny:  # a 2-layer body under the real 262,144-token vocabulary: the projection still dominates
        config = gemma.hf_config(layers=2, vocab=262_144, hidden=64, ffn=128, heads=4, kv_heads=1, head_dim=16,
                                 sliding_window=64)
        gemma.random_folder(tmp / "base", config, gemma.build_sentencepiece(gemma.tiny_tokenizer_pieces()))
        return tmp / "base"
    if a.random_init:  # Gemma 3 270M's shape and vocabulary size, nothing downloaded
        gemma.full_size_random(tmp / "base")
        return tmp / "base"
    if not (a.base / "config.json").exists():
        raise SystemExit(f"{a.base}: no config.json; run `dvc repro base_model` or pass --random-init / --tiny")
    if a.random_weights:
        gemma.random_folder(tmp / "base", json.loads((a.base / "config.json").read_text()),
                            (a.base / "tokenizer.model").read_bytes())
        return tmp / "base"
    return a.base


def is_oom(error: BaseException) -> bool:
    """XLA's RESOURCE_EXHAUSTED (at compile or run time) or torch's CUDA out-of-memory error."""
    text = f"{type(error).__name__}: {error}"
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or "OutOfMemoryError" in text


def run_worker(a, system: str, seq: int, batch: int, data: Path) -> dict | None:
    """One system at one sequence length and batch, in its own process (so peak memory is its own); None when it
    ran out of device memory."""
    cmd = [sys.executable, __file__, "--worker", system, "--data", str(data), "--base", str(a.base), "--seq",
           str(seq), "--batch", str(batch), "--steps", str(a.steps), "--warmup", str(a.warmup), "--rank",
           str(a.rank), "--alpha", str(a.alpha), "--dtype", a.dtype]
    if a.peak_tflops:
        cmd += ["--peak-tflops", str(a.peak_tflops)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")  # JAX's default 0.75 would cap the batch sweep
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{system} at seq {seq}, batch {batch} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(line[len("RESULT "):])
    if out.get("oom"):  # another process holding the device's memory reads the same: say what XLA or torch said
        print(f"  {system} at seq {seq}, batch {batch}: out of memory: {out['error']}", file=sys.stderr, flush=True)
        return None
    return out


def sweep(a, system: str, seq: int, data: Path) -> dict:
    """`--batch`, doubled until out of memory or past `--max-batch`: the fastest run, with the largest batch
    that fit and every run under `sweep`."""
    runs, batch, oom_at = [], a.batch, None
    while batch <= a.max_batch:
        r = run_worker(a, system, seq, batch, data)
        if r is None:
            oom_at = batch
            break
        runs.append(r)
        print(f"  {system} seq {seq} batch {batch}: {r['tokens_per_s']:.0f} tokens/s", flush=True)
        batch *= 2
    if not runs:
        raise SystemExit(f"{system} at seq {seq}: batch {a.batch} does not fit")
    best = max(runs, key=lambda r: r["tokens_per_s"])
    return {**best, "largest_batch": runs[-1]["batch"], "oom_at": oom_at,
            "sweep": [{k: r[k] for k in ("batch", "tokens_per_s", "step_s", "peak_memory_gb")} for r in runs]}


def worker(a) -> dict:
    try:
        return run_hf(a) if a.worker == "hf-peft" else run_jax(a.worker, a)
    except Exception as e:  # out of memory is an answer in a batch sweep; anything else is a failure
        if not is_oom(e):
            raise
        return {"system": a.worker, "seq": a.seq, "batch": a.batch, "oom": True, "error": str(e)[:600]}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=ROOT / "models" / "base", help="HF-layout Gemma 3 folder")
    ap.add_argument("--random-weights", action="store_true", help="the base's shape and tokenizer, random weights")
    ap.add_argument("--random-init", action="store_true",
                    help="Gemma 3 270M's shape, random weights, a synthetic tokenizer of its vocabulary: no download")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model and short rows: a CPU smoke run")
    ap.add_argument("--seq", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--batch", type=int, default=8, help="rows per step (the first one tried with --batch-sweep)")
    ap.add_argument("--batch-sweep", action="store_true", help="double the batch until out of memory")
    ap.add_argument("--max-batch", type=int, default=1024, help="where --batch-sweep stops doubling")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--rows", type=int, default=4000, help="synthetic Toucan rows to render")
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--peak-tflops", type=float, help="the device's dense peak, where the script does not know it")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> list[dict]:
    a = parser().parse_args(argv)
    if a.warmup < 2 or a.steps < 1:
        raise SystemExit("--warmup must be at least 2 (the first two JAX steps compile) and --steps at least 1")
    if a.worker:  # one system, one sequence length, one batch, in this process
        a.seq = a.seq[0]
        out = worker(a)
        print("RESULT " + json.dumps(out), flush=True)
        return [out]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a.base = base_folder(a, tmp)
        data = prepare_data(a.base, a.rows, tmp / "data")
        results = []
        for seq in a.seq:
            for system in a.systems:
                r = sweep(a, system, seq, data) if a.batch_sweep else run_worker(a, system, seq, a.batch, data)
                if r is None:
                    raise SystemExit(f"{system} at seq {seq}: batch {a.batch} does not fit")
                results.append(r)
                print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    print("measured on: " + "; ".join(sorted({r["device"] for r in results})))
    if a.out:
        a.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
