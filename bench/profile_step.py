"""Where a training step's time goes: an XLA profile (jax.profiler) of one step of `ours` (or `tunix-default`) and
its device time split into attention, MLP, LoRA, the vocabulary projection (with the loss), the optimizer and the
rest, plus the ten most expensive ops.

    python bench/profile_step.py --random-init --seq 1024 --batch 8          # Gemma 3 270M's shape (GPU)
    python bench/profile_step.py --tiny --seq 1024 --batch 1 --dtype float32  # CPU smoke run (tests)

How ops are attributed: the profile's events are named after the compiled module's HLO instructions (fusions,
dots, custom calls), and each instruction's metadata carries its JAX name stack (`op_name`). tunix's Gemma 3 already
names its scopes (`attention`, `feed_forward`, `embedder_decode`, `layer_N`, ...); for the profile, this script adds
`lora` (qwix's LoRA einsums and dot_generals, minus the frozen matmul inside them), `token_nll` (our loss's
vocabulary projection), `default_loss` (tunix's) and `optimizer` (nnx.Optimizer.update). Scopes only rename, so the
compiled step is the one the bench times. The innermost known scope decides an op's part; gradients keep their
forward op's scopes (`transpose(jvp(layer_3))/attention/...`), so each part counts its forward and backward pass. A
fusion without metadata of its own takes its fused computation's (its matmul's, else its root's). Per-event time is
summed over the device's op lines (on a GPU, "XLA Ops"; on CPU, the threads that run the step).
The trace stays in `--trace-dir` (TensorBoard's profile plugin or Perfetto open it).
"""
from __future__ import annotations

import collections
import contextlib
import gzip
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import train_bench  # noqa: E402

PARTS = ("attention", "MLP", "LoRA", "vocabulary projection + loss", "optimizer", "rest")
SCOPE_PARTS = {"attention": "attention", "feed_forward": "MLP", "lora": "LoRA", "embedder_decode": PARTS[3],
               "token_nll": PARTS[3], "default_loss": PARTS[3], "optimizer": "optimizer", "rms_norm": "rest",
               "embedder_encode": "rest"}
BASE_MATMUL = "base_matmul"  # the frozen matmul inside qwix's LoRA op: not LoRA's cost
INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = (.*)$")
COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+) .*\{\s*$")
OP_NAME = re.compile(r'metadata=\{[^}]*?op_name="((?:[^"\\]|\\.)*)"')
CALLS = re.compile(r"calls=%?([\w.\-]+)")


@contextlib.contextmanager
def named_parts():
    """Name scopes around LoRA, the losses and the optimizer while the step is traced (tunix names the rest)."""
    import jax
    import qwix._src.providers.lora as qwix_lora
    from flax import nnx
    from tunix.sft import peft_trainer

    from gemma_toolcall import training

    targets = [(qwix_lora.LoraProvider, "einsum", "lora"), (qwix_lora.LoraProvider, "dot_general", "lora"),
               (qwix_lora.LoraProvider.__mro__[1], "einsum", BASE_MATMUL),
               (qwix_lora.LoraProvider.__mro__[1], "dot_general", BASE_MATMUL),
               (training, "token_nll", "token_nll"), (peft_trainer, "_default_loss_fn", "default_loss"),
               (nnx.Optimizer, "update", "optimizer")]
    saved = [(owner, attr, owner.__dict__[attr]) for owner, attr, _ in targets]
    for owner, attr, scope in targets:
        setattr(owner, attr, jax.named_scope(scope)(getattr(owner, attr)))
    try:
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


def part_of(op_name: str) -> str:
    """The part of the innermost scope that names one; a base matmul inside LoRA counts for the scope around it."""
    inside_base = False
    for scope in reversed(re.findall(r"[A-Za-z_]\w*", op_name)):
        if scope == BASE_MATMUL:
            inside_base = True
        elif scope == "lora" and inside_base:
            inside_base = False
        elif scope in SCOPE_PARTS:
            return SCOPE_PARTS[scope]
        elif re.fullmatch(r"layer_\d+", scope):
            return "rest"
    return "rest"


def instruction_op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> op_name (its JAX name stack) from the compiled module's metadata. A fusion without
    metadata of its own takes its fused computation's: a matmul's if it has one (the costly part), else its root's."""
    own, calls, inner = {}, {}, {}
    computation = None
    for line in hlo_text.splitlines():
        m = COMPUTATION.match(line)
        if m and " = " not in line:
            computation = m.group(1)
            continue
        m = INSTRUCTION.match(line)
        if not m:
            continue
        name, rest = m.groups()
        op_name = OP_NAME.search(rest)
        if op_name:
            own[name] = op_name.group(1)
            is_matmul = " dot(" in rest or " convolution(" in rest or "custom-call(" in rest
            if computation and (is_matmul or (line.lstrip().startswith("ROOT") and computation not in inner)):
                inner[computation] = op_name.group(1)  # the root comes last: it never replaces a matmul
        c = CALLS.search(rest)
        if c:
            calls[name] = c.group(1)
    return {**{n: inner[c] for n, c in calls.items() if c in inner}, **own}


def op_events(trace: dict, names: set[str]) -> list[tuple[str, float]]:
    """(HLO instruction, microseconds) of every complete event named after an instruction, compiler threads left
    out; on a GPU only the "XLA Ops" lines (the kernels' own lines name the kernels, and would count twice)."""
    threads = {(e["pid"], e["tid"]): e["args"].get("name", "") for e in trace["traceEvents"]
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("name") in names
              and not re.search("compiler|codegen", threads.get((e["pid"], e["tid"]), ""), re.I)]
    xla_ops = [e for e in events if "XLA Ops" in threads.get((e["pid"], e["tid"]), "")]
    return [(e["name"], float(e.get("dur", 0))) for e in (xla_ops or events)]


def breakdown(events: list[tuple[str, float]], op_names: dict[str, str]) -> tuple[dict[str, float], list[tuple]]:
    """Microseconds per part, and per instruction (name, part, µs, count, op_name) most expensive first."""
    per_op = collections.defaultdict(lambda: [0.0, 0])
    for name, us in events:
        per_op[name][0] += us
        per_op[name][1] += 1
    parts = dict.fromkeys(PARTS, 0.0)
    ops = []
    for name, (us, count) in per_op.items():
        part = part_of(op_names.get(name, ""))
        parts[part] += us
        ops.append((name, part, us, count, op_names.get(name, "")))
    return parts, sorted(ops, key=lambda o: -o[2])


def report(parts: dict[str, float], ops: list[tuple], top: int) -> str:
    total = sum(parts.values()) or 1.0
    lines = [f"op time in one step: {total / 1e3:.1f} ms", "| part | ms | share |", "|---|---|---|"]
    lines += [f"| {p} | {us / 1e3:.2f} | {100 * us / total:.1f}% |" for p, us in parts.items()]
    lines += ["", f"top {top} ops:", "| op | part | ms | calls | JAX name stack |", "|---|---|---|---|---|"]
    for name, part, us, count, op_name in ops[:top]:
        lines.append(f"| {name} | {part} | {us / 1e3:.2f} | {count} | {op_name.removeprefix('jit(_train_step)/')} |")
    return "\n".join(lines)


def profile(a) -> str:
    import jax

    with named_parts():  # while the step is traced
        train_step, batches, _, _, _, _ = train_bench.jax_step(a.worker, a)
        compiled = train_step.func.lower(*train_step.args, batches[0]).compile()
        for b in batches[:2]:  # both compile (see train_bench.run_jax); the traced step below only runs
            jax.block_until_ready(train_step(b))
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # Python's own events would fill the trace's million-event cap
    with jax.profiler.trace(str(a.trace_dir), create_perfetto_trace=True, profiler_options=options):
        jax.block_until_ready(train_step(batches[2]))
    path = max(a.trace_dir.glob("plugins/profile/*/*trace.json.gz"), key=lambda p: p.stat().st_mtime)
    trace = json.loads(gzip.decompress(path.read_bytes()))
    op_names = instruction_op_names(compiled.as_text())
    parts, ops = breakdown(op_events(trace, set(op_names)), op_names)
    return f"{a.worker} seq {a.seq} batch {a.batch} {a.dtype} on {jax.devices()[0].device_kind}; trace: {path}\n" + \
        report(parts, ops, a.top)


def main(argv=None) -> str:
    ap = train_bench.parser()
    ap.description = __doc__
    ap.add_argument("--system", choices=("ours", "tunix-default"), default="ours")
    ap.add_argument("--trace-dir", type=Path, help="where the trace stays (default: a temporary folder)")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args(argv)
    a.seq, a.worker, a.warmup, a.steps = a.seq[0], a.system, 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a.trace_dir = a.trace_dir or tmp / "trace"
        a.base = train_bench.base_folder(a, tmp)
        a.data = train_bench.prepare_data(a.base, a.rows, tmp / "data")
        text = profile(a)
    print(text)
    return text


if __name__ == "__main__":
    main()
