"""Benchmark: analyze + filter + render, vectorised stages vs the `dataset[idx]` + `json.loads` baseline.

    python bench/data_stages.py --rows 119287

Generates a synthetic stand-in of the given size (not timed), runs both, checks they agree, prints seconds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq  # noqa: E402

from bench import baseline_datasets  # noqa: E402
from stages import analyze, download, filter as filter_stage, render  # noqa: E402
from gemma_toolcall.params import load_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=119_287)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        download.run(load_section("download", download.DownloadParams, rows=args.rows, seed=args.seed), tmp / "raw")

        t0 = time.perf_counter()
        analyze.run(tmp / "raw", tmp / "analysis")
        t1 = time.perf_counter()
        # The baseline splits by uuid; so does this comparison.
        metrics = filter_stage.run(load_section("filter", filter_stage.FilterParams, validation_by="uuid"), tmp / "raw", tmp / "filtered",
                                   tmp / "data.json")
        t2 = time.perf_counter()
        render.run(load_section("render", render.RenderParams), tmp / "filtered", tmp / "formatted", tmp / "render.json")
        t3 = time.perf_counter()
        ours = {"analyze": t1 - t0, "filter": t2 - t1, "render": t3 - t2}

        b0 = time.perf_counter()
        base = baseline_datasets.run(tmp / "raw", tmp / "baseline", tmp / "hf-cache")
        b1 = time.perf_counter()

        kept_ours = {s: pq.read_metadata(tmp / "filtered" / f"{s}.parquet").num_rows for s in ("train", "validation")}
        assert kept_ours == base["kept"], (kept_ours, base["kept"])
        assert (tmp / "analysis" / "toucan_analysis_phase1.csv").read_text().splitlines()[1:] == \
            [line.replace('"', '') for line in (tmp / "baseline" / "phase1.csv").read_text().splitlines()[1:]]

    total = sum(ours.values())
    print(f"rows: {args.rows}, kept: {metrics['kept']}")
    print("stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in ours.items()) + f", total {total:.2f}s")
    print(f"baseline (datasets[idx] + json.loads, incl. load_dataset): {b1 - b0:.2f}s")
    print(f"speed-up: {(b1 - b0) / total:.1f}x")


if __name__ == "__main__":
    main()
