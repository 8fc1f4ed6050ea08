"""Stage `render`: filtered rows → Gemma 3 tool-calling text shards.

data/formatted/{split}-NNNNN-of-MMMMM.parquet with columns uuid, subset_name, text and model_spans (character
[start, end) spans of model output, where training puts its loss). Counts go to metrics/render.json.
"""
from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from gemma_toolcall import toucan
from gemma_toolcall.artifacts import building
from gemma_toolcall.chat_format import render_conversation
from gemma_toolcall.params import load_section

SPLITS = ("train", "validation")
SCHEMA = pa.schema([
    ("uuid", pa.string()), ("subset_name", pa.string()), ("text", pa.string()),
    ("model_spans", pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32())]))),
])


@dataclass(frozen=True)
class RenderParams:
    json_style: Literal["pretty", "compact"] = "pretty"
    rows_per_shard: int = 20000

    def validate(self):
        if self.rows_per_shard < 1:
            return f"rows_per_shard must be >= 1, got {self.rows_per_shard}"


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def render_batch(p: RenderParams, batch: pa.RecordBatch) -> tuple[pa.Table, dict]:
    rows, dropped = [], dict.fromkeys(toucan.MalformedRow.KINDS, 0)
    for row in batch.to_pylist():
        try:
            rendered = render_conversation(toucan.parse_row(row), p.json_style)
        except toucan.MalformedRow as e:  # filter drops these; count, never crash, if one slips through
            dropped[e.kind] += 1
            continue
        rows.append({"uuid": row["uuid"], "subset_name": row["subset_name"], "text": rendered.text,
                     "model_spans": [{"start": a, "end": b} for a, b in rendered.model_spans]})
    return pa.Table.from_pylist(rows, schema=SCHEMA), dropped


def render_split(p: RenderParams, src: Path, out: Path, split: str) -> dict:
    pf = pq.ParquetFile(src)
    stats = {"rows": 0, "chars": 0, "model_chars": 0, "dropped": dict.fromkeys(toucan.MalformedRow.KINDS, 0)}
    shards: list[Path] = []
    writer = None
    with tqdm(total=pf.metadata.num_rows, desc=f"render {split}", unit="row") as bar:
        for table, dropped in toucan.map_batches(functools.partial(render_batch, p), pf.iter_batches(batch_size=1024)):
            bar.update(table.num_rows + sum(dropped.values()))
            for k, v in dropped.items():
                stats["dropped"][k] += v
            stats["chars"] += pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0
            spans = pc.list_flatten(table.column("model_spans"))
            stats["model_chars"] += pc.sum(pc.subtract(pc.struct_field(spans, "end"), pc.struct_field(spans, "start"))).as_py() or 0
            while table.num_rows:  # cut into shards of rows_per_shard rows
                if writer is None:
                    shards.append(out / f".{split}-{len(shards):05d}")
                    writer = pq.ParquetWriter(shards[-1], SCHEMA, **toucan.PARQUET_OPTIONS)
                room = p.rows_per_shard - stats["rows"] % p.rows_per_shard
                writer.write_table(table.slice(0, room))
                stats["rows"] += min(room, table.num_rows)
                table = table.slice(room)
                if stats["rows"] % p.rows_per_shard == 0:
                    writer.close()
                    writer = None
    if writer is not None:
        writer.close()
    if not shards:  # an empty split still gets its (empty) shard
        shards.append(out / f".{split}-00000")
        pq.write_table(SCHEMA.empty_table(), shards[-1], **toucan.PARQUET_OPTIONS)
    # Named only now that the shard count is known (rows dropped here would change it).
    for i, path in enumerate(shards):
        path.rename(out / shard_name(split, i, len(shards)))
    stats["shards"] = len(shards)
    return stats


def run(p: RenderParams, src: Path, out: Path, metrics_path: Path) -> dict:
    with building(out) as tmp:
        metrics = {s: render_split(p, Path(src) / f"{s}.parquet", tmp, s) for s in SPLITS}
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--filtered", type=Path, default=Path("data/filtered"))
    ap.add_argument("--out", type=Path, default=Path("data/formatted"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/render.json"))
    args = ap.parse_args(argv)
    run(load_section("render", RenderParams), args.filtered, args.out, args.metrics)


if __name__ == "__main__":
    main()
