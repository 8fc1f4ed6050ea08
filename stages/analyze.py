"""Stage `analyze`: the phase-1 statistics of the raw data, in the layout of the reference CSVs.

Writes data/analysis/toucan_analysis_phase1.csv (single-turn rows: target-tool and available-tool counts, combined
filters) and data/analysis/toucan_analysis.csv (all rows, per subset). Counts are structural (see toucan.py), over
streamed Arrow batches; no row is parsed in Python.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from gemma_toolcall import toucan
from gemma_toolcall.progress import Progress

PHASE1_TARGET_CUTOFFS = (1, 2, 3)
PHASE1_AVAILABLE_CUTOFFS = (1, 3, 5, 10)
ALL_AVAILABLE_CUTOFFS = (30, 20, 15, 10, 5, 4, 3, 2, 1)
STEP3_AVAILABLE_CUTOFFS = (20, 15, 10, 5, 3)


COUNTED = ("subset", "user_turns", "targets", "available")


def count_row_group(group: toucan.RowGroup) -> tuple[dict[str, np.ndarray], set[str]]:
    cols: dict[str, list] = {k: [] for k in COUNTED}
    tools: set[str] = set()
    for b in toucan.read_row_group(group, ("subset_name", "target_tools", "tools", "messages")):
        cols["subset"].append(pc.fill_null(b.column("subset_name"), "").to_numpy(zero_copy_only=False))
        cols["user_turns"].append(pc.fill_null(toucan.count_user_turns(b.column("messages")), 0).to_numpy())
        cols["targets"].append(pc.fill_null(toucan.count_target_tools(b.column("target_tools")), 0).to_numpy())
        cols["available"].append(pc.fill_null(toucan.count_available_tools(b.column("tools")), 0).to_numpy())
        tools.update(pc.unique(toucan.target_tool_names(b.column("target_tools"))).to_pylist())
    return {k: np.concatenate(v) for k, v in cols.items() if v}, tools


def row_counts(paths) -> dict[str, np.ndarray]:
    """Per-row structure of the whole dataset as small integer arrays (strings are never kept), one row group per
    worker."""
    groups = toucan.row_groups(paths)
    cols: dict[str, list] = {k: [] for k in COUNTED}
    tools: set[str] = set()
    with Progress(total=sum(g.num_rows for g in groups), desc="analyze", unit="row") as bar:
        for group, (counts, names) in zip(groups, toucan.parallel_map(count_row_group, groups)):
            for k, v in counts.items():
                cols[k].append(v)
            tools |= names
            bar.update(group.num_rows)
    out = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in cols.items()}
    out["unique_tools"] = len(tools)
    return out


def _row(kind, value, count, total, notes):
    return {"filter_type": kind, "filter_value": value, "sample_count": int(count),
            "percentage": f"{100 * count / total:.2f}%" if total else "0.00%", "notes": notes}


def phase1_table(c: dict) -> list[dict]:
    single = c["user_turns"] <= 1
    t, a = c["targets"][single], c["available"][single]
    n = len(t)
    rows = [_row("total", "all_single_turn", n, n, "All single-turn samples")]
    present = sorted(int(k) for k in np.unique(t))
    rows += [_row("target_tools_exact", f"{k}_tools", (t == k).sum(), n, f"Tasks requiring exactly {k} tool(s)")
             for k in present]
    rows += [_row("target_tools_cumulative", f"{k}_or_fewer_tools", (t <= k).sum(), n, f"Tasks requiring ≤{k} tool(s)")
             for k in present if k > 0]
    rows += [_row("available_tools_cumulative", f"{k}_or_fewer_available", (a <= k).sum(), n,
                  f"Prompts with ≤{k} available tools") for k in PHASE1_AVAILABLE_CUTOFFS]
    rows += [_row("combined", f"{k}tools_AND_{m}available", ((t <= k) & (a <= m)).sum(), n,
                  f"≤{k} target tools + ≤{m} available tools")
             for k in PHASE1_TARGET_CUTOFFS for m in PHASE1_AVAILABLE_CUTOFFS]
    return rows


def overview_table(c: dict, subset: str = toucan.CONFIG) -> list[dict]:
    t, a, u, s = c["targets"], c["available"], c["user_turns"], c["subset"]
    n = len(t)
    single = u <= 1
    step3 = single & (t >= 1) & (t <= 3)
    rows = [_row("available_tools_cumulative", f"{k}_or_fewer_available", (a <= k).sum(), n,
                 f"Prompts with ≤{k} available tools") for k in ALL_AVAILABLE_CUTOFFS]
    rows.append(_row("combined_simplest", "single_turn_AND_1tool", (single & (t == 1)).sum(), n,
                     "Absolute simplest: single turn, single tool"))
    rows.append(_row("combined_step3", "single_turn_AND_1to3tools", step3.sum(), n,
                     "Perfect for Step 3: simple single-turn tasks"))
    rows += [_row("combined_step3_detailed", f"single_turn_AND_1to3tools_AND_<={k}available", (step3 & (a <= k)).sum(),
                  n, f"Step 3 with ≤{k} available tools") for k in STEP3_AVAILABLE_CUTOFFS]
    rows.append(_row("conversation_type", "single_turn", single.sum(), n, "≤1 user turn"))
    rows.append(_row("conversation_type", "multi_turn", (~single).sum(), n, ">1 user turns"))
    names = sorted(set(s.tolist()))
    rows += [_row("subset_category", name, (s == name).sum(), n, "Data generation pipeline type") for name in names]
    rows += [_row("subset_x_toolcount", f"{name}_{k}tools", ((s == name) & (t == k)).sum(), n,
                  "Subset category × tool count")
             for name in names for k in sorted(int(v) for v in np.unique(t[s == name]))]
    rows += [_row("target_tools_count", f"{k}_tools", (t == k).sum(), n, f"Tasks requiring exactly {k} tool(s)")
             for k in sorted(int(v) for v in np.unique(t))]
    rows.append(_row("target_tools_cumulative", "1_to_3_tools", ((t >= 1) & (t <= 3)).sum(), n,
                     "Ideal for Step 3 training"))
    rows.append(_row("target_tools_cumulative", "1_tool_only", (t == 1).sum(), n, "Simplest: single tool tasks"))
    rows.append(_row("total", "all_samples", n, n, f"Unique tools: {c['unique_tools']}"))
    rows += [_row("turn_count_detailed", f"{k}_turns", (u == k).sum(), n, f"Exactly {k} user turn(s)")
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
    counts = row_counts(toucan.shard_paths(raw))
    write_csv(phase1_table(counts), Path(out) / "toucan_analysis_phase1.csv")
    write_csv(overview_table(counts), Path(out) / "toucan_analysis.csv")
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--raw", type=Path, default=Path("data/raw"))
    ap.add_argument("--out", type=Path, default=Path("data/analysis"))
    args = ap.parse_args(argv)
    run(args.raw, args.out)


if __name__ == "__main__":
    main()
