#!/usr/bin/env bash
# The pipeline's own stages on a GPU, then the training-speed benchmark: what ran on the lent H200.
#   bash reports/gpu-2026-12-04/run.sh OUT [tiny]
# Needs tunix, qwix, grain and their missing dependencies as wheels in .whl/ (the machine has no network), and
# data/bfcl (the bfcl_data stage's output: its wheel comes from PyPI). Weights: random-init, Gemma 3 270M's exact
# shape (the real weights do not fit the upload), so losses and accuracies here mean nothing; times and memory do.
set -uo pipefail
OUT=${1:?OUT folder}; SIZE=${2:-full}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1 && [ "$SIZE" = full ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
clock() { date +%s%N; }
step() {  # name, timeout seconds, command...: runs it, logs its wall time, never stops the script
  local name=$1 limit=$2; shift 2; local t0; t0=$(clock)
  echo "=== $name: $*"; timeout "$limit" "$@"; local rc=$?
  local ms=$(( ($(clock) - t0) / 1000000 ))
  printf '%s\t%s\t%d.%03d\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) | tee -a "$OUT/times.tsv"
}
nvidia-smi -L 2>/dev/null; nproc
$PY -c "import jax, flax, optax, tunix, qwix, grain; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__)"

# 1. The stages, as dvc.yaml runs them, under the gpu-full recipe on the stand-in, random-init weights.
if [ "$SIZE" = full ]; then
  ROWS=6000 STEPS=100 EVERY=50 BATCH=16 SEQ=1024 LIMIT=4 HELDOUT=16 EBATCH=64
else
  ROWS=300 STEPS=4 EVERY=2 BATCH=2 SEQ=512 LIMIT=1 HELDOUT=2 EBATCH=2
fi
$PY - "$ROWS" "$STEPS" "$EVERY" "$BATCH" "$SEQ" "$LIMIT" "$HELDOUT" "$EBATCH" "$SIZE" <<'PYEOF'
import sys, yaml
from gemma_toolcall import recipes
rows, steps, every, batch, seq, limit, heldout, ebatch = map(int, sys.argv[1:9])
p = recipes.compose(recipes.load("gpu-full"), yaml.safe_load(open("params.yaml")))
p["download"].update(source="synthetic", rows=rows)
p["model"]["source"] = "random-init" if sys.argv[9] == "full" else "tiny-random"
p["train"].update(max_steps=steps, eval_every_n_steps=every, checkpoint_every_n_steps=every * 2, batch_size=batch,
                  max_seq_len=seq, warmup_steps=5)
p["evaluate"].update(limit=limit, heldout_limit=heldout, batch_size=ebatch)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
print(p["train"], p["evaluate"], sep="\n")
PYEOF
step download 90 $PY -m stages.download --out data/raw --metrics metrics/download.json
step filter 60 $PY -m stages.filter --raw data/raw --out data/filtered --metrics metrics/data.json
step render 60 $PY -m stages.render --filtered data/filtered --out data/formatted --metrics metrics/render.json
step base_model 60 $PY -m stages.base_model --out models/base
step train 180 $PY -m stages.train --base models/base --data data/formatted --checkpoints models/checkpoints \
  --out models/lora --metrics metrics
step evaluate_base 90 $PY -m stages.evaluate --model base --base models/base --bfcl data/bfcl \
  --validation data/filtered/validation.parquet --base-metrics metrics/eval_base.json \
  --base-samples metrics/eval_base_samples.jsonl
step evaluate 90 $PY -m stages.evaluate --model tuned --base models/base --lora models/lora --bfcl data/bfcl \
  --validation data/filtered/validation.parquet --base-metrics metrics/eval_base.json \
  --base-samples metrics/eval_base_samples.jsonl --metrics metrics/eval.json --samples metrics/eval_samples.jsonl
cp metrics/train.json metrics/train_log.tsv metrics/eval.json "$OUT"/ 2>/dev/null

# 2. Training throughput: the train stage's step against tunix's defaults and transformers + peft.
if [ "$SIZE" = full ]; then
  step bench_b16 200 $PY bench/train_bench.py --random-init --seq 1024 --batch 16 --systems ours hf-peft tunix-default \
    --out "$OUT/train_bench_b16.json"
  step bench_b64 90 $PY bench/train_bench.py --random-init --seq 1024 --batch 64 --systems ours \
    --out "$OUT/train_bench_b64.json"
else
  step bench 300 $PY bench/train_bench.py --tiny --systems ours --out "$OUT/train_bench.json"
fi
cat "$OUT/times.tsv"
