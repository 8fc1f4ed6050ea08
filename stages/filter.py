"""Stage `filter`: keep single-turn rows with few target and few available tools, drop malformed rows, split.

Selection is vectorised over Arrow batches (structural counts); only the rows that pass it are parsed in full, and
a row that does not parse is counted under its kind and dropped, never raised. Kept rows keep their original
columns and go to data/filtered/{train,validation}.parquet; a row's side is a hash of its uuid, so it never moves
when other rows change. Drop counts go to metrics/data.json.
"""
from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from gemma_toolcall import toucan
from gemma_toolcall.artifacts import building
from gemma_toolcall.params import load_section

SPLITS = ("train", "validation")
DROP_RULES = ("multi_turn", "too_many_tools_used", "too_many_tools_available")


@dataclass(frozen=True)
class FilterParams:
    max_tools_used: int = 2
    max_tools_available: int = 3
    validation_fraction: float = 0.05
    seed: int = 0

    def validate(self):
        if self.max_tools_used < 0 or self.max_tools_available < 0:
            return "max_tools_used and max_tools_available must be >= 0"
        if not 0.0 <= self.validation_fraction < 1.0:
            return f"validation_fraction must be in [0, 1), got {self.validation_fraction}"


def is_validation(uuid: str, fraction: float, seed: int) -> bool:
    digest = hashlib.blake2b(f"{seed}:{uuid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def select(batch: pa.RecordBatch, p: FilterParams) -> dict[str, pa.Array]:
    """Boolean masks, one per drop reason in order of precedence, plus `candidate` for rows that pass all three.
    A null counts as zero here; candidates with nulls are dropped later as malformed (missing_value)."""
    ok = pa.array([True] * batch.num_rows)
    masks = {}
    for reason, too_many in (
        ("multi_turn", pc.greater(pc.fill_null(toucan.count_user_turns(batch.column("messages")), 0), 1)),
        ("too_many_tools_used", pc.greater(pc.fill_null(toucan.count_target_tools(batch.column("target_tools")), 0),
                                           p.max_tools_used)),
        ("too_many_tools_available", pc.greater(pc.fill_null(toucan.count_available_tools(batch.column("tools")), 0),
                                                p.max_tools_available)),
    ):
        masks[reason] = pc.and_(ok, too_many)
        ok = pc.and_(ok, pc.invert(too_many))
    masks["candidate"] = ok
    return masks


def validate(p: FilterParams, candidates: pa.RecordBatch) -> list[str]:
    """Per candidate row: its split, or the malformation kind it is dropped for."""
    verdicts = []
    for row in candidates.to_pylist():
        try:
            toucan.parse_row(row)
        except toucan.MalformedRow as e:
            verdicts.append(e.kind)
            continue
        verdicts.append("validation" if is_validation(row["uuid"], p.validation_fraction, p.seed) else "train")
    return verdicts


def candidates_of(paths, p: FilterParams, dropped: dict, bar) -> Iterator[pa.RecordBatch]:
    """Vectorised selection in this process; counts the rule drops, yields the rows that pass."""
    for batch in toucan.iter_batches(paths):
        batch = pa.RecordBatch.from_arrays([batch.column(c).cast(pa.string()) for c in toucan.COLUMNS],
                                           schema=toucan.SCHEMA)
        masks = select(batch, p)
        for reason in DROP_RULES:
            dropped[reason] += pc.sum(masks[reason]).as_py() or 0
        bar.update(batch.num_rows)
        yield batch.filter(masks["candidate"])


def run(p: FilterParams, raw: Path, out: Path, metrics_path: Path) -> dict:
    paths = toucan.shard_paths(raw)
    dropped = dict.fromkeys(DROP_RULES, 0)
    malformed = dict.fromkeys(toucan.MalformedRow.KINDS, 0)
    kept = dict.fromkeys(SPLITS, 0)
    with building(out) as tmp:
        writers = {s: pq.ParquetWriter(tmp / f"{s}.parquet", toucan.SCHEMA, **toucan.PARQUET_OPTIONS) for s in SPLITS}
        try:
            with tqdm(total=toucan.count_rows(paths), desc="filter", unit="row") as bar:
                sent = collections.deque()  # candidate batches in flight; results come back in the same order

                def send():
                    for batch in candidates_of(paths, p, dropped, bar):
                        sent.append(batch)
                        yield batch

                for verdicts in toucan.map_batches(functools.partial(validate, p), send()):
                    batch = sent.popleft()
                    for kind in verdicts:
                        if kind in malformed:
                            malformed[kind] += 1
                    for s in SPLITS:
                        rows = batch.filter(pa.array([v == s for v in verdicts], pa.bool_()))
                        if rows.num_rows:
                            writers[s].write_batch(rows)
                            kept[s] += rows.num_rows
        finally:
            for w in writers.values():
                w.close()
    metrics = {
        "rows_in": toucan.count_rows(paths),
        "eligible": sum(kept.values()) + sum(malformed.values()),  # passed the three selection rules
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
