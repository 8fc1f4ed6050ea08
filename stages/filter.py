"""Stage `filter`: keep single-turn rows with few target and few available tools (and, on raw configs, good enough
quality scores), drop malformed rows, split, and optionally keep one row per question.

Selection is vectorised over Arrow batches (score columns, structural counts); only the rows that pass it are parsed
in full, and a row that does not parse is counted under its kind and dropped, never raised. Kept rows keep the six SFT
columns and go to data/filtered/{train,validation}.parquet. A row's side is a hash of its servers (validation_by:
server, the default: validation measures tools never seen in training) or of its uuid; either way it never moves when
other rows change. With `duplicates: best`, of the rows that would be kept only the highest-rated of each question
stays (`gemma_toolcall.dedup`, on disk). Drop counts go to metrics/data.json. Memory holds a row group at a time.
"""
from __future__ import annotations

import argparse
import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gemma_toolcall.dataset import dedup, mcp_catalogue, toucan, toucan_raw
from gemma_toolcall.artifacts import building
from gemma_toolcall.chat_format import check_free_text
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress

SPLITS = ("train", "validation")
DROP_RULES = ("multi_turn", "too_many_tools_used", "too_many_tools_available")
STRADDLES = "straddles_split"  # validation_by: server, a row whose servers fall on both sides
DUPLICATE = "duplicate_question"  # duplicates: best, a row of a question that has a better-rated kept row
LOW = "low_quality."  # + a score of filter.min_scores: rows below its minimum
RANK = ("response_overall_score", "desired_tools_used_percentage")  # "highest-rated", in this order


@dataclass(frozen=True)
class FilterParams:
    max_tools_used: int
    max_tools_available: int
    validation_fraction: float
    validation_by: Literal["server", "uuid"]
    seed: int
    min_scores: dict  # score column (toucan_raw.SCORES) -> minimum; null scores pass
    duplicates: Literal["keep", "best"]

    def validate(self):
        if self.max_tools_used < 0 or self.max_tools_available < 0:
            return "max_tools_used and max_tools_available must be >= 0"
        unknown = sorted(set(self.min_scores) - set(toucan_raw.SCORES))
        if unknown:
            return f"min_scores has unknown score(s) {unknown}; known: {list(toucan_raw.SCORES)}"
        wrong = {k: v for k, v in self.min_scores.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
        if wrong:
            return f"min_scores values must be numbers, got {wrong}"
        if not 0.0 <= self.validation_fraction < 1.0:
            return f"validation_fraction must be in [0, 1), got {self.validation_fraction}"


def row_servers(row: dict, conv: toucan.Conversation) -> set[str]:
    """The server slugs of every tool the row offers: a converted raw row lists them (`servers`; OSS tool names carry
    none); an SFT row's tools are named `<slug>-<tool>`, and its "Server Name::tool" targets name servers the
    catalogue may not know."""
    if row.get("servers") is not None:
        return set(row["servers"])
    named = frozenset(mcp_catalogue.slug(t.split("::")[0].strip()) for t in row["target_tools"].split(",") if "::" in t)
    return {mcp_catalogue.tool_server(spec["name"], named) for spec in conv.tools}


def split_side(p: FilterParams, row: dict, conv: toucan.Conversation) -> str:
    """train or validation; by server, a server's rows all go to one side (its hash decides), and a row spanning
    servers of both sides is dropped: sent either way it would show a server on both sides."""
    if p.validation_by == "uuid":
        return "validation" if dedup.in_seeded_share(row["uuid"], p.validation_fraction, p.seed) else "train"
    sides = {dedup.in_seeded_share(s, p.validation_fraction, p.seed) for s in row_servers(row, conv)} or {False}
    return STRADDLES if len(sides) > 1 else "validation" if sides == {True} else "train"


def column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """A column of the normalized shape; null when the batch lacks it (SFT rows have no scores)."""
    i = batch.schema.get_field_index(name)
    return batch.column(i) if i >= 0 else pa.nulls(batch.num_rows, toucan_raw.SCHEMA.field(name).type)


def select(batch: pa.RecordBatch, p: FilterParams, dropped: dict) -> pa.RecordBatch:
    """The rows that pass the quality minimums and the three rules, vectorised. A dropped row is counted under the
    first rule it breaks (scores in toucan_raw.SCORES order, then DROP_RULES), so each count is only taken over the
    rows still in. A null score passes (not assessed: SFT rows, the response of an `irrelevant` row). A null counts as
    zero in the rules; rows with nulls are dropped later as malformed (missing_value)."""
    for score in (s for s in toucan_raw.SCORES if s in p.min_scores):
        low = pc.fill_null(pc.less(column(batch, score), float(p.min_scores[score])), False)
        dropped[LOW + score] += pc.sum(low).as_py() or 0
        batch = batch.filter(pc.invert(low))
    rules = (("multi_turn", "messages", toucan.count_user_turns, 1),
             ("too_many_tools_used", "target_tools", toucan.count_target_tools, p.max_tools_used),
             ("too_many_tools_available", "tools", toucan.count_available_tools, p.max_tools_available))
    for reason, name, count, limit in rules:
        too_many = pc.greater(pc.fill_null(count(batch.column(name)), 0), limit)
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


def drop_counts(p: FilterParams | None = None) -> dict[str, int]:
    scores = [LOW + s for s in toucan_raw.SCORES if p is not None and s in p.min_scores]
    return dict.fromkeys(scores + list(DROP_RULES + (STRADDLES, DUPLICATE) + toucan.MalformedRow.KINDS), 0)


def kept_schema(p: FilterParams) -> pa.Schema:
    """What filter_batch keeps: the six SFT columns, and with `duplicates: best` the question's key and the rating."""
    if p.duplicates == "keep":
        return toucan.SCHEMA
    return toucan.SCHEMA.append(pa.field("_key", pa.uint64())).append(pa.field("_score", pa.float64())) \
        .append(pa.field("_coverage", pa.float64()))


def filter_batch(p: FilterParams, batch: pa.RecordBatch, dropped: dict) -> dict[str, pa.RecordBatch]:
    """Select, then parse in full only the rows that pass: the kept rows per split (kept_schema); every other row is
    counted in `dropped` under its reason."""
    candidates = select(batch, p, dropped)
    rows = candidates.to_pylist()
    verdicts = [verdict(p, row) for row in rows]
    for kind in verdicts:
        if kind in dropped:
            dropped[kind] += 1
    out = {}
    for s in SPLITS:
        mask = [v == s for v in verdicts]
        kept = candidates.filter(pa.array(mask, pa.bool_()))
        arrays = [kept.column(c) for c in toucan.COLUMNS]
        if p.duplicates == "best":
            arrays.append(pa.array([dedup.key_of(r["question"]) for r, m in zip(rows, mask) if m], pa.uint64()))
            arrays += [column(kept, c).cast(pa.float64()) for c in RANK]
        out[s] = pa.RecordBatch.from_arrays(arrays, schema=kept_schema(p))
    return out


def filter_row_group(p: FilterParams, spill_dir: str, group: toucan.RowGroup) -> tuple[dict[str, str], dict]:
    """One row group (in a worker): the kept rows per split (spilled to Arrow files) and the drop counts."""
    dropped = drop_counts(p)
    kept: dict[str, list] = {s: [] for s in SPLITS}
    for batch in toucan_raw.read_normalized(group):
        for s, rows in filter_batch(p, batch, dropped).items():
            kept[s].append(rows)
    return {s: toucan.spill(pa.Table.from_batches(b, schema=kept_schema(p)), spill_dir) for s, b in kept.items()}, \
        dropped


class Writers:
    """data/filtered/{train,validation}.parquet, written in row-group order; counts what each holds."""

    def __init__(self, out: Path):
        self.writers = {s: pq.ParquetWriter(out / f"{s}.parquet", toucan.SCHEMA, **toucan.PARQUET_OPTIONS)
                        for s in SPLITS}
        self.kept = dict.fromkeys(SPLITS, 0)

    def write(self, split: str, table: pa.Table) -> None:
        if table.num_rows:
            self.writers[split].write_table(table.select(list(toucan.COLUMNS)))
            self.kept[split] += table.num_rows

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def keep_best(candidates: Path, best: dedup.BestPerKey, writers: Writers) -> None:
    """Second pass of `duplicates: best`: the candidates (in the first pass's order) less the rows that lost."""
    best.finish()
    start = 0
    source = pq.ParquetFile(candidates)
    with Progress(total=source.metadata.num_rows, desc="filter (duplicates)", unit="row") as bar:
        for i in range(source.metadata.num_row_groups):
            table = source.read_row_group(i)
            lost = best.losers(start, start + table.num_rows) - start
            keep = np.ones(table.num_rows, bool)
            keep[lost] = False
            table = table.filter(pa.array(keep))
            for s in SPLITS:
                writers.write(s, table.filter(pc.equal(table.column("_split"), s)))
            start += source.metadata.row_group(i).num_rows
            bar.update(source.metadata.row_group(i).num_rows)


def run(p: FilterParams, raw: Path, out: Path, metrics_path: Path) -> dict:
    groups = toucan.row_groups(toucan_raw.shard_paths(raw))
    rows_in = sum(g.num_rows for g in groups)
    dropped = drop_counts(p)
    with building(out) as tmp, tempfile.TemporaryDirectory(prefix="filter-spill-") as spill_dir:
        writers = Writers(tmp)
        best = candidates = None
        if p.duplicates == "best":  # the kept rows wait in a file until every question's best row is known
            best = dedup.BestPerKey(Path(spill_dir) / "dedup", rows_in)
            schema = toucan.SCHEMA.append(pa.field("_split", pa.string()))
            candidates = pq.ParquetWriter(Path(spill_dir) / "candidates.parquet", schema, **toucan.PARQUET_OPTIONS)
        try:
            with Progress(total=rows_in, desc="filter", unit="row") as bar:
                results = toucan.parallel_map(functools.partial(filter_row_group, p, spill_dir), groups)
                for group, (spilled, counts) in zip(groups, results):  # in row-group order: deterministic output
                    for k, v in counts.items():
                        dropped[k] += v
                    for s, path in spilled.items():
                        table = toucan.unspill(path)
                        if best is None:
                            writers.write(s, table)
                        elif table.num_rows:
                            best.add(table.column("_key").combine_chunks(), table.column("_score").combine_chunks(),
                                     table.column("_coverage").combine_chunks())
                            candidates.write_table(table.select(list(toucan.COLUMNS)).append_column(
                                "_split", pa.array([s] * table.num_rows, pa.string())))
                    bar.update(group.num_rows)
            if best is not None:
                candidates.close()
                keep_best(Path(spill_dir) / "candidates.parquet", best, writers)
                dropped[DUPLICATE] = best.total_losers
        finally:
            writers.close()
    kept = writers.kept
    malformed = {k: dropped.pop(k) for k in toucan.MalformedRow.KINDS}
    low_quality = {k[len(LOW):]: dropped.pop(k) for k in list(dropped) if k.startswith(LOW)}
    metrics = {
        "rows_in": rows_in,
        "rows_in_by_config": rows_by_config(groups),
        # passed the quality minimums and the three rules (kept, straddling, malformed or duplicate)
        "eligible": sum(kept.values()) + sum(malformed.values()) + dropped[STRADDLES] + dropped[DUPLICATE],
        "validation_by": p.validation_by,
        "duplicates": p.duplicates,
        "kept": sum(kept.values()),
        **{f"kept_{s}": n for s, n in kept.items()},
        "dropped": {"low_quality": {**low_quality, "total": sum(low_quality.values())}, **dropped,
                    "malformed": {**malformed, "total": sum(malformed.values())}},
    }
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def rows_by_config(groups: list[toucan.RowGroup]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in groups:
        config = toucan_raw.config_of(g.path)
        out[config] = out.get(config, 0) + g.num_rows
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--raw", type=Path, default=Path("data/raw"))
    ap.add_argument("--out", type=Path, default=Path("data/filtered"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/data.json"))
    args = ap.parse_args(argv)
    run(load_section("filter", FilterParams), args.raw, args.out, args.metrics)


if __name__ == "__main__":
    main()
