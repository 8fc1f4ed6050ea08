"""The straightforward way to analyze, filter and render Toucan: a Hugging Face `Dataset`, `dataset[idx]` and
`json.loads` per row, once per stage. The benchmark's baseline, and the brute-force check of the vectorised stages.

Counting rule shared with the stages (gemma_toolcall/toucan.py): a row whose JSON does not parse is counted by
the structural pattern in its text.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gemma_toolcall.dataset import toucan
from gemma_toolcall.chat_format import render_conversation

_USER = re.compile(toucan.USER_ROLE)
_TOOL = re.compile(toucan.TOOL_ENTRY)


def load(raw: Path, cache_dir: Path):
    import datasets

    files = [str(p) for p in toucan.shard_paths(raw)]
    return datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache_dir))


def user_turns(messages: str | None) -> int:
    if messages is None:
        return 0
    try:
        return sum(1 for m in json.loads(messages) if m.get("role") == "user")
    except ValueError:
        return len(_USER.findall(messages))


def available_tools(tools: str | None) -> int:
    if tools is None:
        return 0
    try:
        entries = json.loads(tools)
    except ValueError:
        return len(_TOOL.findall(tools))
    return len(entries) if isinstance(entries, list) else 0


def target_tools(names: str | None) -> list[str]:
    return [n.strip() for n in (names or "").split(",") if n.strip()]


def analyze_rows(ds) -> dict:
    counts = {"subset": [], "user_turns": [], "targets": [], "available": []}
    unique = set()
    for idx in range(len(ds)):
        row = ds[idx]
        names = target_tools(row["target_tools"])
        unique.update(names)
        counts["subset"].append(row["subset_name"] or "")
        counts["user_turns"].append(user_turns(row["messages"]))
        counts["targets"].append(len(names))
        counts["available"].append(available_tools(row["tools"]))
    out = {k: np.array(v) for k, v in counts.items()}
    out["unique_tools"] = len(unique)
    return out


def filter_rows(ds, max_used: int, max_available: int, validation_fraction: float, seed: int) -> dict[str, list]:
    from gemma_toolcall.dataset.dedup import in_seeded_share

    kept = {"train": [], "validation": []}
    for idx in range(len(ds)):
        row = ds[idx]
        if user_turns(row["messages"]) > 1 or len(target_tools(row["target_tools"])) > max_used \
                or available_tools(row["tools"]) > max_available:
            continue
        try:
            toucan.parse_row(row)
        except toucan.MalformedRow:
            continue
        side = "validation" if in_seeded_share(row["uuid"], validation_fraction, seed) else "train"
        kept[side].append(row)
    return kept


def render_rows(rows: list[dict], style: str) -> pd.DataFrame:
    out = []
    for row in rows:
        r = render_conversation(toucan.parse_row(row), style)
        out.append({"uuid": row["uuid"], "text": r.text, "model_spans": r.model_spans})
    return pd.DataFrame(out)


def run(raw: Path, out: Path, cache_dir: Path) -> dict:
    """All three stages the straightforward way; returns what the check compares."""
    from stages.analyze import overview_table, phase1_table

    ds = load(raw, cache_dir)
    counts = analyze_rows(ds)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(phase1_table(counts)).to_csv(out / "phase1.csv", index=False)
    pd.DataFrame(overview_table(counts)).to_csv(out / "overview.csv", index=False)
    kept = filter_rows(ds, 2, 3, 0.05, 0)
    rendered = {}
    for split, rows in kept.items():
        pd.DataFrame(rows).to_parquet(out / f"{split}.parquet")
        rendered[split] = render_rows(rows, "pretty")
        rendered[split].to_parquet(out / f"{split}-formatted.parquet")
    return {"counts": counts, "kept": {s: len(r) for s, r in kept.items()}, "rendered": rendered}
