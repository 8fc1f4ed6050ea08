"""Run 29's tuned model on BFCL parallel and parallel_multiple only (the recipe's evaluate, on a subset of its
cases): python out/eval_parallel.py -> out/eval_samples.jsonl, out/eval.json"""
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")
from gemma_toolcall import bfcl, model as gemma  # noqa: E402
from gemma_toolcall.params import load_section, value  # noqa: E402
from stages import evaluate  # noqa: E402

p = load_section("evaluate", evaluate.EvaluateParams)
cases, _ = evaluate.cases_for(p, value("render.json_style"), Path("data/bfcl"),
                              Path("data/filtered/validation.parquet"))
cases = [c for c in cases if c["source"] == "bfcl" and c["category"] in ("parallel", "parallel_multiple")]
_, tuned, config = gemma.load_tuned(Path("models/base"), Path("models/lora"))
metrics, samples = evaluate.evaluate_model("tuned", tuned, config, gemma.Tokenizer(Path("models/base/tokenizer.model")),
                                           cases, p, p.max_new_tokens, bfcl.Scorer(Path("data/bfcl")))
Path("out/eval.json").write_text(json.dumps({"cases": len(cases), "tuned": metrics}, indent=2))
with open("out/eval_samples.jsonl", "w") as f:
    for s in samples:
        f.write(json.dumps(s) + "\n")
print(json.dumps(metrics["bfcl"]), metrics["ended_turn"], metrics.get("stops"))
