"""Where a training step's time goes: an XLA profile (jax.profiler) of one step of `ours` (or `tunix-default`) and
its device time split into attention, MLP, LoRA, the vocabulary projection (with the loss), the optimizer and the
rest, plus the ten most expensive ops.

    python bench/profile_step.py --random-init --seq 1024 --batch 8          # Gemma 3 270M's shape (GPU)
    python bench/profile_step.py --tiny --seq 1024 --batch 1 --dtype float32  # CPU smoke run (tests)

How ops are attributed: the profile's events are named after the compiled module's HLO instructions (fusions,
dots, custom calls). Each instruction's metadata names the JAX source line it came from (for a fusion, its root's);
that line's file and enclosing function decide its part: tunix's `Attention` / `FeedForward`, qwix's LoRA, the
loss's `token_nll` (tunix's default loss and `Embedder.decode` for `tunix-default`), optax. Gradients keep their
forward op's source line, so each part counts its forward and backward pass. Per-event time is summed over the
device's op lines (on a GPU, its kernels' "XLA Ops" line; on CPU, the executor's threads).
The trace stays in `--trace-dir` (TensorBoard's profile plugin or Perfetto open it).
"""
from __future__ import annotations

import argparse
import ast
import collections
import functools
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
# (file path fragment, enclosing function or class name fragment or None for any) -> part; first match wins.
SOURCE_RULES = [
    ("qwix", None, "LoRA"),
    ("optax", None, "optimizer"),
    ("gemma_toolcall/training.py", "token_nll", "vocabulary projection + loss"),
    ("peft_trainer.py", "_default_loss_fn", "vocabulary projection + loss"),
    ("gemma3/model.py", "Embedder.decode", "vocabulary projection + loss"),
    ("gemma3/model.py", "Attention", "attention"),
    ("gemma3/model.py", "FeedForward", "MLP"),
]
INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{([^}]*)\}")
FIELD = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\d+))')


def instruction_sources(hlo_text: str) -> dict[str, tuple[str, str, int]]:
    """HLO instruction name -> (op_name, source_file, source_line) from the compiled module's metadata."""
    out = {}
    for line in hlo_text.splitlines():
        m = INSTRUCTION.match(line)
        if m:
            fields = {k: s or n for k, s, n in FIELD.findall(m.group(2))}
            out[m.group(1)] = (fields.get("op_name", ""), fields.get("source_file", ""),
                               int(fields.get("source_line", 0) or 0))
    return out


@functools.cache
def enclosing_names(path: str) -> list[tuple[int, int, str]]:
    """(first line, last line, Class.function) of every function and class in a Python file."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError):
        return []
    spans = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}" if prefix else child.name
                spans.append((child.lineno, child.end_lineno, name))
                walk(child, name)
    walk(tree, "")
    return spans


def qualname(path: str, line: int) -> str:
    """The innermost class.function around `line` of `path`."""
    inside = [(a, n) for a, b, n in enclosing_names(path) if a <= line <= b]
    return max(inside)[1] if inside else ""


def part_of(source: tuple[str, str, int] | None) -> str:
    if source is None:
        return "rest"
    op_name, path, line = source
    where = qualname(path, line) if path else ""
    for fragment, name, part in SOURCE_RULES:
        if fragment in path and (name is None or name in where):
            return part
    if "lora" in op_name.lower():
        return "LoRA"
    return "rest"


def op_events(trace: dict, names: set[str]) -> list[tuple[str, float]]:
    """(HLO instruction, microseconds) of every complete event named after an instruction; on a GPU only the
    "XLA Ops" lines (the kernels' own lines name the kernels, and would count twice)."""
    threads = {(e["pid"], e["tid"]): e["args"].get("name", "") for e in trace["traceEvents"]
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("name") in names]
    xla_ops = [e for e in events if threads.get((e["pid"], e["tid"])) == "XLA Ops"]
    return [(e["name"], float(e.get("dur", 0))) for e in (xla_ops or events)]


def breakdown(events: list[tuple[str, float]], sources: dict) -> tuple[dict[str, float], list[tuple]]:
    """Microseconds per part, and per instruction (name, part, µs, count, source) most expensive first."""
    per_op = collections.defaultdict(lambda: [0.0, 0])
    for name, us in events:
        per_op[name][0] += us
        per_op[name][1] += 1
    parts = dict.fromkeys(PARTS, 0.0)
    ops = []
    for name, (us, count) in per_op.items():
        part = part_of(sources.get(name))
        parts[part] += us
        ops.append((name, part, us, count, sources.get(name)))
    return parts, sorted(ops, key=lambda o: -o[2])


def report(parts: dict[str, float], ops: list[tuple], top: int) -> str:
    total = sum(parts.values()) or 1.0
    lines = [f"device op time in one step: {total / 1e3:.1f} ms", "| part | ms | share |", "|---|---|---|"]
    lines += [f"| {p} | {us / 1e3:.2f} | {100 * us / total:.1f}% |" for p, us in parts.items()]
    lines += ["", f"top {top} ops:", "| op | part | ms | calls | source |", "|---|---|---|---|---|"]
    for name, part, us, count, source in ops[:top]:
        where = f"{Path(source[1]).name}:{source[2]} {qualname(source[1], source[2])}" if source and source[1] else ""
        lines.append(f"| {name} | {part} | {us / 1e3:.2f} | {count} | {where} |")
    return "\n".join(lines)


def profile(a) -> str:
    import jax

    train_step, batches, _, _, _, _ = train_bench.jax_step(a.worker, a)
    compiled = train_step.func.lower(*train_step.args, batches[0]).compile()
    jax.block_until_ready(train_step(batches[0]))  # compiles; the traced step below only runs
    with jax.profiler.trace(str(a.trace_dir), create_perfetto_trace=True):
        jax.block_until_ready(train_step(batches[1 % len(batches)]))
    path = max(a.trace_dir.glob("plugins/profile/*/*trace.json.gz"), key=lambda p: p.stat().st_mtime)
    trace = json.loads(gzip.decompress(path.read_bytes()))
    sources = instruction_sources(compiled.as_text())
    parts, ops = breakdown(op_events(trace, set(sources)), sources)
    return f"{a.worker} seq {a.seq} batch {a.batch} {a.dtype} on {jax.devices()[0].device_kind}; trace: {path}\n" + \
        report(parts, ops, a.top)


def main(argv=None) -> str:
    ap = train_bench.parser()
    ap.description = __doc__
    ap.add_argument("--system", choices=("ours", "tunix-default"), default="ours")
    ap.add_argument("--trace-dir", type=Path, help="where the trace stays (default: a temporary folder)")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args(argv)
    a.seq, a.worker, a.warmup, a.steps = a.seq[0], a.system, 1, 1
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
