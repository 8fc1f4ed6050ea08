"""The offline stand-in's content at a given size: generation time, row bytes, tool and phrasing variety.

    python bench/synthetic_content.py --rows 119287

Runs the download stage (source: synthetic) into a temporary folder and reads the shards back.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq  # noqa: E402

from gemma_toolcall import toucan  # noqa: E402
from stages import download  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=119_287)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        download.run(download.DownloadParams(rows=args.rows, seed=args.seed), Path(tmp) / "raw")
        seconds = time.perf_counter() - t0
        rows = pq.read_table(toucan.shard_paths(Path(tmp) / "raw")).to_pylist()
    sizes = [sum(len(v.encode()) for v in r.values() if v) for r in rows]
    targets = {n.strip() for r in rows if r["target_tools"] for n in r["target_tools"].split(",") if n.strip()}
    offered = {t["function"]["name"] for r in rows for t in json.loads(r["tools"])}
    openings = {" ".join(r["question"].split()[:4]) for r in rows if r["question"]}
    refusals = set()
    for r in rows:
        if r["subset_name"] == "irrelevant" and r["messages"] and r["messages"].endswith("]"):
            refusals.add(json.loads(r["messages"])[-1]["content"])
    print(json.dumps({"rows": len(rows), "generate_and_write_s": round(seconds, 1),
                      "unique_target_tools": len(targets), "unique_offered_tools": len(offered),
                      "row_bytes_mean": round(statistics.mean(sizes)), "row_bytes_median": statistics.median(sizes),
                      "distinct_question_openings": len(openings), "distinct_irrelevant_answers": len(refusals)},
                     indent=2))


if __name__ == "__main__":
    main()
