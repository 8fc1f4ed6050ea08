"""Stage `analyze`: the phase-1 statistics of the raw data, in the layout of the reference CSVs.

Writes data/analysis/toucan_analysis_phase1.csv (single-turn rows: target-tool and available-tool counts, combined
filters) and data/analysis/toucan_analysis.csv (all rows, per subset), over every config in data/raw. Counts are
structural (see toucan.py), over streamed Arrow batches; no row is parsed in Python, and what is kept is a histogram
of (subset, user turns, target tools, available tools), whatever the number of rows.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gemma_toolcall.dataset import toucan, toucan_raw
from gemma_toolcall.progress import Progress

PHASE1_TARGET_CUTOFFS = (1, 2, 3)
PHASE1_AVAILABLE_CUTOFFS = (1, 3, 5, 10)
ALL_AVAILABLE_CUTOFFS = (30, 20, 15, 10, 5, 4, 3, 2, 1)
STEP3_AVAILABLE_CUTOFFS = (20, 15, 10, 5, 3)


COUNTED = ("subset", "user_turns", "targets", "available")


def count_row_group(group: toucan.RowGroup) -> tuple[pa.Table, set[str]]:
    """How many rows of the group have each (subset, user turns, target tools, available tools), and the target
    tool names it holds."""
    parts, tools = [], set()
    for b in toucan.read_row_group(group, ("subset_name", "target_tools", "tools", "messages")):
        parts.append(pa.table({
            "subset": pc.fill_null(b.column("subset_name"), ""),
            "user_turns": pc.fill_null(toucan.count_user_turns(b.column("messages")), 0),
            "targets": pc.fill_null(toucan.count_target_tools(b.column("target_tools")), 0),
            "available": pc.fill_null(toucan.count_available_tools(b.column("tools")), 0)}))
        tools.update(pc.unique(toucan.target_tool_names(b.column("target_tools"))).to_pylist())
    return histogram(parts), tools


def histogram(tables: list[pa.Table]) -> pa.Table:
    """Rows (or summed counts `n`) per distinct (subset, user_turns, targets, available)."""
    tables = [t if "n" in t.column_names else t.append_column("n", pa.array(np.ones(t.num_rows, np.int64)))
              for t in tables if t.num_rows]
    if not tables:
        return pa.table({"subset": pa.array([], pa.string()), **{k: pa.array([], pa.int64()) for k in COUNTED[1:]},
                         "n": pa.array([], pa.int64())})
    table = pa.concat_tables([t.select(list(COUNTED) + ["n"]).cast(pa.schema(
        [("subset", pa.string())] + [(k, pa.int64()) for k in COUNTED[1:]] + [("n", pa.int64())])) for t in tables])
    return table.group_by(list(COUNTED)).aggregate([("n", "sum")]).rename_columns(list(COUNTED) + ["n"])


def row_counts(paths) -> dict[str, np.ndarray]:
    """The dataset's structure as a histogram: one entry per distinct (subset, user turns, target tools, available
    tools) with its row count `n`, merged row group by row group (one per worker), so memory does not grow with rows."""
    groups = toucan.row_groups(paths)
    hist = histogram([])
    tools: set[str] = set()
    with Progress(total=sum(g.num_rows for g in groups), desc="analyze", unit="row") as bar:
        for group, (counts, names) in zip(groups, toucan.parallel_map(count_row_group, groups)):
            hist = histogram([hist, counts])
            tools |= names
            bar.update(group.num_rows)
    hist = hist.sort_by([(k, "ascending") for k in COUNTED])
    out = {k: hist.column(k).to_numpy(zero_copy_only=False) for k in COUNTED + ("n",)}
    out["unique_tools"] = len(tools)
    return out


def weights(c: dict) -> np.ndarray:
    """Rows per entry: `n` of a histogram, or 1 each for per-row counts."""
    return c["n"] if "n" in c else np.ones(len(c["targets"]), np.int64)


def _row(kind, value, count, total, notes):
    return {"filter_type": kind, "filter_value": value, "sample_count": int(count),
            "percentage": f"{100 * count / total:.2f}%" if total else "0.00%", "notes": notes}


def phase1_table(c: dict) -> list[dict]:
    single = c["user_turns"] <= 1
    t, a, w = c["targets"][single], c["available"][single], weights(c)[single]
    n = w.sum()
    rows = [_row("total", "all_single_turn", n, n, "All single-turn samples")]
    present = sorted(int(k) for k in np.unique(t))
    rows += [_row("target_tools_exact", f"{k}_tools", w[t == k].sum(), n, f"Tasks requiring exactly {k} tool(s)")
             for k in present]
    rows += [_row("target_tools_cumulative", f"{k}_or_fewer_tools", w[t <= k].sum(), n,
                  f"Tasks requiring ≤{k} tool(s)") for k in present if k > 0]
    rows += [_row("available_tools_cumulative", f"{k}_or_fewer_available", w[a <= k].sum(), n,
                  f"Prompts with ≤{k} available tools") for k in PHASE1_AVAILABLE_CUTOFFS]
    rows += [_row("combined", f"{k}tools_AND_{m}available", w[(t <= k) & (a <= m)].sum(), n,
                  f"≤{k} target tools + ≤{m} available tools")
             for k in PHASE1_TARGET_CUTOFFS for m in PHASE1_AVAILABLE_CUTOFFS]
    return rows


def overview_table(c: dict, subset: str = toucan.CONFIG) -> list[dict]:
    t, a, u, s, w = c["targets"], c["available"], c["user_turns"], c["subset"], weights(c)
    n = w.sum()
    single = u <= 1
    step3 = single & (t >= 1) & (t <= 3)
    rows = [_row("available_tools_cumulative", f"{k}_or_fewer_available", w[a <= k].sum(), n,
                 f"Prompts with ≤{k} available tools") for k in ALL_AVAILABLE_CUTOFFS]
    rows.append(_row("combined_simplest", "single_turn_AND_1tool", w[single & (t == 1)].sum(), n,
                     "Absolute simplest: single turn, single tool"))
    rows.append(_row("combined_step3", "single_turn_AND_1to3tools", w[step3].sum(), n,
                     "Perfect for Step 3: simple single-turn tasks"))
    rows += [_row("combined_step3_detailed", f"single_turn_AND_1to3tools_AND_<={k}available", w[step3 & (a <= k)].sum(),
                  n, f"Step 3 with ≤{k} available tools") for k in STEP3_AVAILABLE_CUTOFFS]
    rows.append(_row("conversation_type", "single_turn", w[single].sum(), n, "≤1 user turn"))
    rows.append(_row("conversation_type", "multi_turn", w[~single].sum(), n, ">1 user turns"))
    names = sorted(set(s.tolist()))
    rows += [_row("subset_category", name, w[s == name].sum(), n, "Data generation pipeline type") for name in names]
    rows += [_row("subset_x_toolcount", f"{name}_{k}tools", w[(s == name) & (t == k)].sum(), n,
                  "Subset category × tool count")
             for name in names for k in sorted(int(v) for v in np.unique(t[s == name]))]
    rows += [_row("target_tools_count", f"{k}_tools", w[t == k].sum(), n, f"Tasks requiring exactly {k} tool(s)")
             for k in sorted(int(v) for v in np.unique(t))]
    rows.append(_row("target_tools_cumulative", "1_to_3_tools", w[(t >= 1) & (t <= 3)].sum(), n,
                     "Ideal for Step 3 training"))
    rows.append(_row("target_tools_cumulative", "1_tool_only", w[t == 1].sum(), n, "Simplest: single tool tasks"))
    rows.append(_row("total", "all_samples", n, n, f"Unique tools: {c['unique_tools']}"))
    rows += [_row("turn_count_detailed", f"{k}_turns", w[u == k].sum(), n, f"Exactly {k} user turn(s)")
             for k in sorted(int(v) for v in np.unique(u))]
    # The reference orders by filter type, then by count (largest first); ties keep the order above.
    rows.sort(key=lambda r: (r["filter_type"], -r["sample_count"]))
    return [{"subset": subset, **r} for r in rows]


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def run(raw: Path, out: Path) -> dict:
    paths = toucan_raw.shard_paths(raw)
    counts = row_counts(paths)
    configs = "+".join(dict.fromkeys(toucan_raw.config_of(p) for p in paths))  # "SFT", or e.g. "Kimi-K2+OSS+Qwen3"
    write_csv(phase1_table(counts), Path(out) / "toucan_analysis_phase1.csv")
    write_csv(overview_table(counts, configs), Path(out) / "toucan_analysis.csv")
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--raw", type=Path, default=Path("data/raw"))
    ap.add_argument("--out", type=Path, default=Path("data/analysis"))
    args = ap.parse_args(argv)
    run(args.raw, args.out)


if __name__ == "__main__":
    main()
