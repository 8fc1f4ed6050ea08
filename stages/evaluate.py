"""Stage `evaluate`: tool calling of the base model and of base + trained LoRA, for `dvc metrics diff`.

- BFCL (data/bfcl): per category, the share of questions whose model turn parses into calls that BFCL's own AST
  checker accepts (irrelevance: no call).
- Held-out Toucan (data/filtered/validation.parquet): the first model turn's calls. Rows that need a call (name and
  exact match, argument accuracy) are reported apart from rows that need none (answered without a call), each with
  its n.
- For every output, whether it ended its turn (`ended_turn`) and what stopped it (`stop`: its end, a decoding
  rule or the budget); per model, their counts (`stops`), the time and prompts/s; and a `summary` block, base
  beside tuned.

Prompts are rendered by the same module as the training data (the `render.json_style` of training), decoded
greedily with tunix's KV-cache sampler (with `constrained: true`, calls under the offered tools' schemas:
`call_grammar`), and parsed by the module that renders calls. metrics/eval.json holds the
numbers; metrics/eval_samples.jsonl every output with its parsed calls, verdict and reason.

The base model runs as its own stage (`--model base`, stage `evaluate_base`: metrics/eval_base.json and
metrics/eval_base_samples.jsonl), since its outputs depend on the prompts and the decoding, never on training: a
`dvc exp run -S lora.rank=8` reruns only the tuned model (the base model's half of the evaluation is reused).
The tuned stage also writes metrics/failures.md: every failed output of both models sorted by what went wrong
(`gemma_toolcall.failures`), the first thing to read after a run.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Union

import pyarrow.parquet as pq

from gemma_toolcall import bfcl, failures, model as gemma
from gemma_toolcall.dataset import toucan
from gemma_toolcall.decoding import call_grammar, sampling
from gemma_toolcall.standin.sft import row_kind
from gemma_toolcall.chat_format import BOS, parse_model_turn, render_prompt
from gemma_toolcall.params import load_section, value
from gemma_toolcall.progress import Progress



@dataclass(frozen=True)
class EvaluateParams:
    categories: tuple
    # Questions per BFCL category (0: all), or {category: n} for each of `categories`; small so a CPU run stays short.
    limit: Union[int, dict]
    heldout_limit: int  # validation rows (0: all)
    max_new_tokens: int  # the tuned model's decoding budget
    # The base model's. The pretrained model neither opens a call nor ends its turn on these prompts (it echoes the
    # tool list), so each output runs to the budget: a short one saves most of its evaluation. A base that calls
    # needs as many tokens as the tuned model.
    base_max_new_tokens: int
    batch_size: int
    # Decode calls under the offered tools' schemas (`call_grammar`): names, argument names and JSON types.
    constrained: bool

    def validate(self):
        limits = self.limit.values() if isinstance(self.limit, dict) else [self.limit]
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in limits):
            return f"limit must be an int >= 0 or a map of category to int >= 0, got {self.limit!r}"
        if isinstance(self.limit, dict) and set(self.limit) != set(self.categories):
            return f"limit must name exactly the categories {list(self.categories)}, got {sorted(self.limit)}"
        if self.heldout_limit < 0 or min(self.max_new_tokens, self.base_max_new_tokens, self.batch_size) < 1:
            return "heldout_limit must be >= 0, max_new_tokens, base_max_new_tokens and batch_size >= 1"

    def category_limit(self, category: str) -> int:
        return self.limit[category] if isinstance(self.limit, dict) else self.limit


def bfcl_cases(root: Path, p: EvaluateParams, style: str) -> list[dict]:
    cases = []
    for category in p.categories:
        for q in bfcl.load(root, category, p.category_limit(category) or None):
            tools = bfcl.tools(q)
            prompt = render_prompt(tools, bfcl.user_text(q), style, bfcl.system_text(q))
            cases.append({"source": "bfcl", "category": category, "id": q["id"], "prompt": prompt, "question": q,
                          "tools": tools})
    return cases


def heldout_cases(validation: Path, p: EvaluateParams, style: str) -> tuple[list[dict], int]:
    """The validation rows up to the first model turn; rows that do not parse are skipped and counted."""
    cases, skipped = [], 0
    for row in pq.read_table(validation).to_pylist():
        if p.heldout_limit and len(cases) == p.heldout_limit:
            break
        try:
            conv = toucan.parse_row(row)
        except toucan.MalformedRow:
            skipped += 1
            continue
        first_model = next(t for t in conv.turns if t.role == "model")  # parse_row refuses rows without one
        prompt = render_prompt(conv.tools, conv.turns[0].text, style, conv.system)
        expected = [asdict(c) for c in first_model.calls]
        tag = row_kind(row["uuid"])  # what the stand-in wrote the row to teach; None for real rows
        kinds = row_kinds(conv, expected) + ([tag] if tag in TAGGED_KINDS else [])
        cases.append({"source": "heldout", "category": row["subset_name"], "id": row["uuid"], "prompt": prompt,
                      "tools": conv.tools, "expected": expected, "kinds": kinds})
    return cases, skipped


RUNAWAY_DIGITS = call_grammar.MAX_NUMBER_DIGITS  # more digits: a number that never ended (unconstrained decoding)
_LONG_DIGITS = re.compile(r"\d{%d,}" % (RUNAWAY_DIGITS + 1))


def runaway_value(output: str, calls: list[dict]) -> bool:
    """Whether a call holds a number past RUNAWAY_DIGITS digits (`"days": 3000000…` for "3 days"); in an output
    whose calls do not parse, any such run of digits inside a call block."""
    def runs_away(v) -> bool:
        if isinstance(v, dict):
            return any(runs_away(x) for x in v.values())
        if isinstance(v, list):
            return any(runs_away(x) for x in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= 10 ** RUNAWAY_DIGITS
    if any(runs_away(c["arguments"]) for c in calls):
        return True
    return "<tool_call>" in output and bool(_LONG_DIGITS.search(output.split("<tool_call>", 1)[1])) and not calls


# Kinds of stand-in rows that their first turn alone does not show: a question on the offered tools' own subject
# that none of them answers, one that lacks a required value (both answered without a call), a list given to an
# array parameter in one call, a request worded away from the tool's description.
TAGGED_KINDS = ("near_miss", "missing_value", "parallel_array", "paraphrased")


def row_kinds(conv: toucan.Conversation, expected: list[dict]) -> list[str]:
    """What a held-out row asks of the model, read from its own first turn (so real rows get kinds too): calls to
    one tool several times or to several tools, and values that are more than a word copied from the question."""
    names = [c["name"] for c in expected]
    kinds = []
    if len(names) > 1:
        kinds.append("parallel_same_tool" if len(set(names)) == 1 else "parallel_different_tools")
    question = conv.turns[0].text
    required = {t.get("name"): set((t.get("parameters") or {}).get("required") or ()) for t in conv.tools
                if isinstance(t, dict)}
    values = [(c["name"], k, v) for c in expected for k, v in c["arguments"].items()]
    if any(isinstance(v, (dict, list)) for _, _, v in values):
        kinds.append("nested_value")
    strings = [v for _, _, v in values if isinstance(v, str)]
    if any("," in v or len(v.split()) >= 3 for v in strings):
        kinds.append("multi_part_value")
    if any(v not in question for v in strings):
        kinds.append("reformatted_value")
    if any(k not in required.get(name, set()) for name, k, _ in values):
        kinds.append("optional_stated")
    return kinds


def judge(case: dict, output: str, scorer: bfcl.Scorer) -> dict:
    parsed = parse_model_turn(output)
    calls = [asdict(c) for c in parsed.calls]
    verdict = {"format_valid": parsed.format_valid, "calls": calls, "runaway_value": runaway_value(output, calls)}
    if case["source"] == "bfcl":
        if parsed.format_valid:
            passed, reason = scorer(case["category"], case["question"], parsed.calls)
        else:
            passed, reason = False, "unparseable: " + "; ".join(parsed.errors)
        return {**verdict, "passed": passed, "reason": reason}
    expected = case["expected"]
    in_order = lambda cs: sorted(cs, key=lambda c: json.dumps(c, sort_keys=True))  # noqa: E731  parallel calls: any order
    exact = parsed.format_valid and in_order(calls) == in_order(expected)
    names = parsed.format_valid and sorted(c["name"] for c in calls) == sorted(c["name"] for c in expected)
    reason = "exact" if exact else "names only" if names else \
        ("unparseable: " + "; ".join(parsed.errors)) if not parsed.format_valid else \
        f"expected {[c['name'] for c in expected]}, got {[c['name'] for c in calls]}"
    return {**verdict, "passed": exact, "name_match": names, "reason": reason, "needs_call": bool(expected),
            "kinds": case["kinds"], **argument_counts(expected, calls if parsed.format_valid else [])}


def argument_counts(expected: list[dict], calls: list[dict]) -> dict:
    """Expected arguments, and how many the model gave with the exact value, each expected call paired with the
    first unused call of the same name."""
    unused, right = list(calls), 0
    for want in expected:
        got = next((c for c in unused if c["name"] == want["name"]), None)
        if got is not None:
            unused.remove(got)
            right += sum(got["arguments"].get(k, object()) == v for k, v in want["arguments"].items())
    return {"arguments_expected": sum(len(w["arguments"]) for w in expected), "arguments_right": right}


def rate(xs) -> float | None:
    xs = list(xs)
    return round(sum(xs) / len(xs), 4) if xs else None


def summarize(results: list[dict]) -> dict:
    """Per BFCL category and per kind of held-out row, each with its n: rows that need a call (name and exact
    match, argument accuracy) apart from rows that need none, where answering without a call is right."""
    by_category = {}
    for r in results:
        if r["source"] == "bfcl":
            by_category.setdefault(r["category"], []).append(r["passed"])
    held = [r for r in results if r["source"] == "heldout"]
    call = [r for r in held if r["needs_call"]]
    no_call = [r for r in held if not r["needs_call"]]
    expected_args = sum(r["arguments_expected"] for r in call)
    by_kind = {}
    for kind in sorted({k for r in held for k in r["kinds"]}):
        rows = [r for r in held if kind in r["kinds"]]
        by_kind[kind] = {"n": len(rows), "exact_match" if rows[0]["needs_call"] else "no_call_accuracy":
                         rate(r["passed"] if r["needs_call"] else r["format_valid"] and not r["calls"] for r in rows)}
    return {
        "bfcl": {c: {"accuracy": rate(v), "n": len(v)} for c, v in by_category.items()},
        "format_valid": rate(r["format_valid"] for r in results),
        # Outputs that stopped on <end_of_turn> or <eos> before max_new_tokens.
        "ended_turn": rate(r["ended_turn"] for r in results),
        # What stopped each output: the model's end (the `ended_turn` share), a decoding rule (a call written again,
        # a call the budget could not close: a decoded turn that stops, though the model did not end it) or the budget.
        "stops": {stop: sum(r["stop"] == stop for r in results) for stop in sampling.STOPS},
        # Outputs with a number that never ended (RUNAWAY_DIGITS): a decoding failure, whatever the question.
        "runaway_values": sum(r["runaway_value"] for r in results),
        "n": len(results),
        "heldout": {
            "call_rows": {"n": len(call), "name_match": rate(r["name_match"] for r in call),
                          "exact_match": rate(r["passed"] for r in call),
                          # A text answer where a call is needed: the model turned down a tool that fits.
                          "false_refusals": rate(r["format_valid"] and not r["calls"] for r in call),
                          "argument_accuracy": round(sum(r["arguments_right"] for r in call) / expected_args, 4)
                          if expected_args else None},
            # A broken attempt at a call (unparseable) is no correct "no call".
            "no_call_rows": {"n": len(no_call),
                             "no_call_accuracy": rate(r["format_valid"] and not r["calls"] for r in no_call)},
            "parse_rate": rate(r["format_valid"] for r in held),
            "by_kind": by_kind},  # row_kinds: a row may count under several
    }


def summary(metrics: dict) -> dict:
    """The numbers to read first, base beside tuned."""
    def short(m: dict) -> dict:
        return {**{c: v["accuracy"] for c, v in m["bfcl"].items()},
                "heldout_call_exact": m["heldout"]["call_rows"]["exact_match"],
                "heldout_call_name": m["heldout"]["call_rows"]["name_match"],
                "heldout_no_call": m["heldout"]["no_call_rows"]["no_call_accuracy"],
                "ended_turn": m["ended_turn"], "runaway_values": m["runaway_values"]}
    return {name: short(metrics[name]) for name in ("base", "tuned")}


def cases_for(p: EvaluateParams, style: str, bfcl_dir: Path, validation: Path) -> tuple[list[dict], int]:
    held, skipped = heldout_cases(validation, p, style)
    return bfcl_cases(bfcl_dir, p, style) + held, skipped


def evaluate_model(name: str, model, config: dict, tok, cases: list[dict], p: EvaluateParams, budget: int,
                   scorer) -> tuple[dict, list[dict]]:
    """One model's metrics (with its decoding budget, seconds and prompts/s) and its samples, one per case, in case
    order."""
    prompts = [c["prompt"][len(BOS):] for c in cases]  # the sampler adds <bos> itself
    start = time.perf_counter()
    with Progress(total=len(prompts), desc=f"evaluate {name}", unit="prompt") as bar:
        completions = sampling.generate(model, config, tok, prompts, budget, p.batch_size, progress=bar,
                                        tools=[c["tools"] for c in cases] if p.constrained else None)
    seconds = time.perf_counter() - start
    results, samples = [], []
    for case, out in zip(cases, completions):
        verdict = {**judge(case, out.text, scorer), "ended_turn": out.ended, "stop": out.stop}
        if p.constrained:
            verdict["grammar_changed_tokens"] = out.changed
            verdict["end_margins"] = list(out.margins)  # logit(<end_of_turn>) - logit(newline) after each call
        results.append({"source": case["source"], "category": case["category"], **verdict})
        samples.append({"model": name, "source": case["source"], "category": case["category"], "id": case["id"],
                        "output": out.text, **verdict})
    # How often the grammar overrode the model: outputs with a token it changed.
    touched = {"grammar_changed_rows": sum(out.changed > 0 for out in completions)} if p.constrained else {}
    return {**summarize(results), **touched, "max_new_tokens": budget, "seconds": round(seconds, 1),
            "prompts_per_s": round(len(prompts) / seconds, 3)}, samples


def run_base(p: EvaluateParams, style: str, base_dir: Path, bfcl_dir: Path, validation: Path, metrics_path: Path,
             samples_path: Path) -> dict:
    """The base model alone: its own stage, so a change to the LoRA or to training reruns only the tuned model."""
    cases, skipped = cases_for(p, style, bfcl_dir, validation)
    model, config = gemma.load(base_dir)
    metrics, samples = evaluate_model("base", model, config, gemma.Tokenizer(base_dir / "tokenizer.model"), cases, p,
                                      p.base_max_new_tokens, bfcl.Scorer(bfcl_dir))
    write(metrics_path, {"cases": len(cases), "heldout_skipped_malformed": skipped, "base": metrics},
          samples_path, samples)
    return metrics


def run(p: EvaluateParams, style: str, base_dir: Path, lora_dir: Path, bfcl_dir: Path, validation: Path,
        base_metrics: Path, base_samples: Path, metrics_path: Path, samples_path: Path,
        failures_path: Path | None = None) -> dict:
    """Base + LoRA, beside the base model's results of `run_base` (which must be for these very cases); with
    `failures_path`, every failed output of both sorted by what went wrong (`gemma_toolcall.failures`)."""
    cases, skipped = cases_for(p, style, bfcl_dir, validation)
    base_rows = [json.loads(line) for line in open(base_samples, encoding="utf-8")]
    if [(r["source"], r["category"], r["id"]) for r in base_rows] != [(c["source"], c["category"], c["id"])
                                                                       for c in cases]:
        raise SystemExit(f"evaluate: {base_samples} holds the base model's outputs for other prompts than these "
                         f"(another evaluate.limit, heldout_limit, validation split or BFCL data): rerun the base "
                         f"model first, `dvc repro evaluate_base`")
    _, tuned, config = gemma.load_tuned(base_dir, lora_dir)
    tuned_metrics, tuned_rows = evaluate_model("tuned", tuned, config, gemma.Tokenizer(base_dir / "tokenizer.model"),
                                               cases, p, p.max_new_tokens, bfcl.Scorer(bfcl_dir))
    metrics = {"cases": len(cases), "heldout_skipped_malformed": skipped,
               "base": json.loads(base_metrics.read_text())["base"], "tuned": tuned_metrics}
    metrics = {"summary": summary(metrics), **metrics}
    write(metrics_path, metrics, samples_path, base_rows + tuned_rows)
    if failures_path:
        failures_path.write_text(failures.report(base_rows + tuned_rows, validation, bfcl_dir))
    return metrics


def write(metrics_path: Path, metrics: dict, samples_path: Path, samples: list[dict]) -> None:
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    with open(samples_path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("base", "tuned"), default="tuned",
                    help="base: the base model alone (stage evaluate_base); tuned: base + LoRA, beside base's results")
    ap.add_argument("--base", type=Path, default=Path("models/base"))
    ap.add_argument("--lora", type=Path, default=Path("models/lora"))
    ap.add_argument("--bfcl", type=Path, default=Path("data/bfcl"))
    ap.add_argument("--validation", type=Path, default=Path("data/filtered/validation.parquet"))
    ap.add_argument("--base-metrics", type=Path, default=Path("metrics/eval_base.json"))
    ap.add_argument("--base-samples", type=Path, default=Path("metrics/eval_base_samples.jsonl"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    ap.add_argument("--samples", type=Path, default=Path("metrics/eval_samples.jsonl"))
    ap.add_argument("--failures", type=Path, default=Path("metrics/failures.md"))
    args = ap.parse_args(argv)
    p, style = load_section("evaluate", EvaluateParams), value("render.json_style")
    if args.model == "base":
        run_base(p, style, args.base, args.bfcl, args.validation, args.base_metrics, args.base_samples)
    else:
        run(p, style, args.base, args.lora, args.bfcl, args.validation, args.base_metrics, args.base_samples,
            args.metrics, args.samples, args.failures)


if __name__ == "__main__":
    main()
