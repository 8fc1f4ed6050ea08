"""Stage `filter`: keep single-turn rows with few target and few available tools, drop malformed rows, split.

Selection is vectorised over Arrow batches (structural counts); only the rows that pass it are parsed in full, and
a row that does not parse is counted under its kind and dropped, never raised. Kept rows keep their original
columns and go to data/filtered/{train,validation}.parquet. A row's side is a hash of its servers (validation_by:
server, the default: validation measures tools never seen in training) or of its uuid; either way it never moves when
other rows change. Drop counts go to metrics/data.json.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gemma_toolcall import mcp_catalogue, toucan
from gemma_toolcall.artifacts import building
from gemma_toolcall.chat_format import check_free_text
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress

SPLITS = ("train", "validation")
DROP_RULES = ("multi_turn", "too_many_tools_used", "too_many_tools_available")
STRADDLES = "straddles_split"  # validation_by: server, a row whose servers fall on both sides


@dataclass(frozen=True)
class FilterParams:
    max_tools_used: int = 2
    max_tools_available: int = 3
    validation_fraction: float = 0.05
    validation_by: Literal["server", "uuid"] = "server"
    seed: int = 0

    def validate(self):
        if self.max_tools_used < 0 or self.max_tools_available < 0:
            return "max_tools_used and max_tools_available must be >= 0"
        if not 0.0 <= self.validation_fraction < 1.0:
            return f"validation_fraction must be in [0, 1), got {self.validation_fraction}"


def is_validation(uuid: str, fraction: float, seed: int) -> bool:
    digest = hashlib.blake2b(f"{seed}:{uuid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def row_servers(row: dict, conv: toucan.Conversation) -> set[str]:
    """The server slugs of every tool the row offers (`<slug>-<tool>`); "Server Name::tool" targets name servers
    the catalogue may not know."""
    named = frozenset(mcp_catalogue.slug(t.split("::")[0].strip()) for t in row["target_tools"].split(",") if "::" in t)
    return {mcp_catalogue.tool_server(spec["name"], named) for spec in conv.tools}


def split_side(p: FilterParams, row: dict, conv: toucan.Conversation) -> str:
    """train or validation; by server, a server's rows all go to one side (its hash decides), and a row spanning
    servers of both sides is dropped: sent either way it would show a server on both sides."""
    if p.validation_by == "uuid":
        return "validation" if is_validation(row["uuid"], p.validation_fraction, p.seed) else "train"
    sides = {is_validation(s, p.validation_fraction, p.seed) for s in row_servers(row, conv)} or {False}
    return STRADDLES if len(sides) > 1 else "validation" if sides == {True} else "train"


def select(batch: pa.RecordBatch, p: FilterParams, dropped: dict[str, int]) -> pa.RecordBatch:
    """The rows that pass the three rules, vectorised. A dropped row is counted under the first rule it breaks (in
    DROP_RULES order), so each count is only taken over the rows still in. A null counts as zero here; rows with
    nulls are dropped later as malformed (missing_value)."""
    rules = (("multi_turn", "messages", toucan.count_user_turns, 1),
             ("too_many_tools_used", "target_tools", toucan.count_target_tools, p.max_tools_used),
             ("too_many_tools_available", "tools", toucan.count_available_tools, p.max_tools_available))
    for reason, column, count, limit in rules:
        too_many = pc.greater(pc.fill_null(count(batch.column(column)), 0), limit)
        dropped[reason] += pc.sum(too_many).as_py() or 0
        batch = batch.filter(pc.invert(too_many))
    return batch


def verdict(p: FilterParams, row: dict) -> str:
    """A row's split, or the rule or malformation kind it is dropped for. The user-turn and offered-tool rules are
    checked again on the parsed row: the structural counts of `select` are exact only for Toucan's spelling, and a
    kept row must obey them."""
    try:
        conv = toucan.parse_row(row)
        check_free_text(conv)
    except toucan.MalformedRow as e:
        return e.kind
    if sum(t.role == "user" for t in conv.turns) > 1:
        return "multi_turn"
    if len(conv.tools) > p.max_tools_available:
        return "too_many_tools_available"
    return split_side(p, row, conv)


def drop_counts() -> dict[str, int]:
    return dict.fromkeys(DROP_RULES + (STRADDLES,) + toucan.MalformedRow.KINDS, 0)


def filter_batch(p: FilterParams, batch: pa.RecordBatch, dropped: dict[str, int]) -> dict[str, pa.RecordBatch]:
    """Select, then parse in full only the rows that pass: the kept rows per split; every other row is counted in
    `dropped` under its reason."""
    candidates = select(batch, p, dropped)
    verdicts = [verdict(p, row) for row in candidates.to_pylist()]
    for kind in verdicts:
        if kind in dropped:
            dropped[kind] += 1
    return {s: candidates.filter(pa.array([v == s for v in verdicts], pa.bool_())) for s in SPLITS}


def filter_row_group(p: FilterParams, spill_dir: str, group: toucan.RowGroup) -> tuple[dict[str, str], dict[str, int]]:
    """One row group (in a worker): the kept rows per split (spilled to Arrow files) and the drop counts."""
    dropped = drop_counts()
    kept: dict[str, list] = {s: [] for s in SPLITS}
    for batch in toucan.read_row_group(group):
        for s, rows in filter_batch(p, batch, dropped).items():
            kept[s].append(rows)
    return {s: toucan.spill(pa.Table.from_batches(b, schema=toucan.SCHEMA), spill_dir) for s, b in kept.items()}, dropped


def run(p: FilterParams, raw: Path, out: Path, metrics_path: Path) -> dict:
    groups = toucan.row_groups(toucan.shard_paths(raw))
    dropped = drop_counts()
    kept = dict.fromkeys(SPLITS, 0)
    with building(out) as tmp, tempfile.TemporaryDirectory(prefix="filter-spill-") as spill_dir:
        writers = {s: pq.ParquetWriter(tmp / f"{s}.parquet", toucan.SCHEMA, **toucan.PARQUET_OPTIONS) for s in SPLITS}
        try:
            with Progress(total=sum(g.num_rows for g in groups), desc="filter", unit="row") as bar:
                results = toucan.parallel_map(functools.partial(filter_row_group, p, spill_dir), groups)
                for group, (spilled, counts) in zip(groups, results):  # in row-group order: deterministic output
                    for k, v in counts.items():
                        dropped[k] += v
                    for s, path in spilled.items():
                        table = toucan.unspill(path)
                        if table.num_rows:
                            writers[s].write_table(table)
                            kept[s] += table.num_rows
                    bar.update(group.num_rows)
        finally:
            for w in writers.values():
                w.close()
    malformed = {k: dropped.pop(k) for k in toucan.MalformedRow.KINDS}
    metrics = {
        "rows_in": sum(g.num_rows for g in groups),
        "eligible": sum(kept.values()) + sum(malformed.values()) + dropped[STRADDLES],  # passed the three rules
        "validation_by": p.validation_by,
        "kept": sum(kept.values()),
        **{f"kept_{s}": n for s, n in kept.items()},
        "dropped": {**dropped, "malformed": {**malformed, "total": sum(malformed.values())}},
    }
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--raw", type=Path, default=Path("data/raw"))
    ap.add_argument("--out", type=Path, default=Path("data/filtered"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/data.json"))
    args = ap.parse_args(argv)
    run(load_section("filter", FilterParams), args.raw, args.out, args.metrics)


if __name__ == "__main__":
    main()
