"""bench/train_bench.py and bench/profile_step.py at CPU size: every system trains, what the issue promises is what it
measures, the full-size bfloat16 path runs without the weights, and the batch sweep and the profile work."""
import json
import math
import subprocess
import sys

from conftest import ROOT

from bench import profile_step, train_bench
from gemma_toolcall import model as gemma

BENCH = [sys.executable, str(ROOT / "bench" / "train_bench.py")]


def bench(tmp_path, *args) -> list[dict]:
    out = tmp_path / "bench.json"
    subprocess.run(BENCH + list(args) + ["--out", str(out)], check=True, cwd=ROOT, capture_output=True)
    return json.loads(out.read_text())


def test_train_bench_tiny_runs_every_system(tmp_path):
    # --batch-sweep under a cap of 3: batch 2 runs, 4 would pass the cap (the loop a GPU run doubles through)
    results = {r["system"]: r for r in bench(tmp_path, "--tiny", "--seq", "1024", "--batch", "2", "--steps", "1",
                                             "--warmup", "2", "--rows", "600", "--dtype", "float32",
                                             "--batch-sweep", "--max-batch", "3")}
    assert set(results) == {"ours", "tunix-default", "hf-peft"}
    for r in results.values():
        assert [s["batch"] for s in r["sweep"]] == [2] and r["largest_batch"] == 2 and r["oom_at"] is None
    for r in results.values():
        assert r["tokens_per_s"] > 0 and r["step_s"] > 0 and math.isfinite(r["last_loss"]) and r["tflops_per_s"] > 0
    ours, tunix = results["ours"], results["tunix-default"]
    assert ours["padding_share"] < tunix["padding_share"] == results["hf-peft"]["padding_share"]
    # Under a 262,144-token vocabulary, full logits dominate a step's scratch memory: ours needs under half.
    assert ours["step_scratch_gb"] < 0.5 * tunix["step_scratch_gb"], (ours, tunix)


def test_out_of_memory_is_recognised():
    assert train_bench.is_oom(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.0GiB"))
    assert train_bench.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not train_bench.is_oom(ValueError("shapes do not match"))


def test_cpu_results_name_the_cpu_and_its_matmul_features():
    # A CPU's speed depends on its vector units (AVX-512 against AVX2 alone: several times the step speed)
    info = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert train_bench.cpu_name(info) == "AMD EPYC 9B14 x2 [avx2 avx512f avx512_bf16]"
    assert train_bench.cpu_name("processor\t: 0\nmodel name\t: Old\nflags\t\t: fpu sse2\n") == "Old x1 [no avx2]"
    assert train_bench.cpu_name().split(" x")[0]  # this machine's, whatever it is


def test_full_size_random_init_trains_in_bfloat16(tmp_path):
    """Gemma 3 270M's exact shape, from nothing but the pip dependencies, three bfloat16 steps of the GPU path on CPU.
    Rendered examples are 280+ tokens and bf16 matmuls are slow on CPU, so the worker gets short made-up examples."""
    import numpy as np

    gemma.full_size_random(tmp_path / "base")
    rng = np.random.default_rng(0)
    lengths = np.array([40, 24, 56])
    np.savez(tmp_path / "examples.npz", ids=rng.integers(107, 262_144, lengths.sum()).astype(np.int32),
             mask=np.tile([0, 1], lengths.sum() // 2).astype(np.int8), lengths=lengths)
    proc = subprocess.run(BENCH + ["--worker", "ours", "--data", str(tmp_path / "examples.npz"), "--base",
                                   str(tmp_path / "base"), "--seq", "64", "--batch", "1", "--steps", "1",
                                   "--warmup", "2", "--dtype", "bfloat16"],
                          check=True, cwd=ROOT, capture_output=True, text=True)
    r = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    assert r["tokens_per_s"] > 0 and r["step_scratch_gb"] > 0
    assert r["device"].startswith("cpu:") and r["device"] != "cpu:cpu"  # names the CPU
    # random weights over 262,144 tokens: the loss starts near log(262,144) = 12.5
    assert 10 < r["last_loss"] < 15, r


def test_full_size_tokenizer_has_gemma_layout(tmp_path):
    pieces = gemma.full_size_tokenizer_pieces()
    blob = gemma.build_sentencepiece(pieces)
    assert blob == gemma.build_sentencepiece(gemma.full_size_tokenizer_pieces())  # deterministic
    (tmp_path / "tokenizer.model").write_bytes(blob)
    tok = gemma.Tokenizer(tmp_path / "tokenizer.model")
    sp = tok.sp
    assert tok.vocab_size == 262_144 == gemma.full_size_config()["vocab_size"]
    assert (sp.pad_id(), sp.eos_id(), sp.bos_id(), sp.unk_id()) == (0, 1, 2, 3)
    assert (sp.piece_to_id("<start_of_turn>"), tok.end_of_turn, sp.piece_to_id("<0x00>")) == (105, 106, 238)
    text = '<start_of_turn>user\nWhat is "the weather" in Zürich? 日本<end_of_turn>\n<start_of_turn>model\n'
    ids = tok.encode(text)
    assert ids[0] == 105 and 106 in ids and tok.decode(ids) == text
    assert len(ids) < 0.6 * len(text)  # merges: not one token per character


def test_profile_step_breaks_a_step_down(capsys):
    text = profile_step.main(["--tiny", "--seq", "1024", "--batch", "1", "--rows", "600", "--dtype", "float32"])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    for part in ("attention", "MLP", "LoRA", "vocabulary projection + loss", "optimizer", "rest"):
        assert part in rows
    ms = {p: float(rows[p].split(" | ")[1]) for p in ("attention", "MLP", "vocabulary projection + loss")}
    assert all(v > 0 for v in ms.values()), text
    assert "top 10 ops" in text
