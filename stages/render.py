"""Stage `render`: filtered rows → Gemma 3 tool-calling text shards.

data/formatted/{split}-NNNNN-of-MMMMM.parquet with columns uuid, subset_name, text and model_spans (character
[start, end) spans of model output, where training puts its loss). Counts go to metrics/render.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gemma_toolcall.dataset import toucan
from gemma_toolcall.artifacts import building
from gemma_toolcall.chat_format import render_conversation
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress

SPLITS = ("train", "validation")
SCHEMA = pa.schema([
    ("uuid", pa.string()), ("subset_name", pa.string()), ("text", pa.string()),
    ("model_spans", pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32())]))),
])


@dataclass(frozen=True)
class RenderParams:
    json_style: Literal["pretty", "compact"]
    tool_order: Literal["given", "shuffled"]
    call_text: Literal["keep", "drop"]
    rows_per_shard: int

    def validate(self):
        if self.rows_per_shard < 1:
            return f"rows_per_shard must be >= 1, got {self.rows_per_shard}"


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def as_trained(p: RenderParams, conv: toucan.Conversation, uuid: str) -> toucan.Conversation:
    """The conversation as the model is to learn it.
    - `tool_order: shuffled`: the offered tools in an order drawn from the row's uuid (the same every run). Toucan
      tends to list the tool a row calls first (the stand-in does in 80% of rows with a choice), and a model trained
      on that order learns to call the first tool listed.
    - `call_text: drop`: a model turn that calls tools opens with its first `<tool_call>`, without the words Toucan's
      models wrote before it, so call or answer is decided at the turn's first token."""
    if p.tool_order == "shuffled" and len(conv.tools) > 1:
        tools = list(conv.tools)
        random.Random(str(uuid)).shuffle(tools)  # a str seed hashes the same in every process (sha512)
        conv = dataclasses.replace(conv, tools=tools)
    if p.call_text == "drop":
        conv = dataclasses.replace(conv, turns=[dataclasses.replace(t, text="") if t.calls else t for t in conv.turns])
    return conv


def render_rows(p: RenderParams, rows: Iterable[dict], dropped: dict[str, int]) -> pa.Table:
    """Filtered rows → rendered rows; a row that does not parse or render is counted in `dropped` under its kind."""
    cols: dict[str, list] = {"uuid": [], "subset_name": [], "text": []}
    offsets, starts, ends = [0], [], []
    for row in rows:
        try:
            rendered = render_conversation(as_trained(p, toucan.parse_row(row), row["uuid"]), p.json_style)
        except toucan.MalformedRow as e:  # filter drops these; count, never crash, if one slips through
            dropped[e.kind] += 1
            continue
        cols["uuid"].append(row["uuid"])
        cols["subset_name"].append(row["subset_name"])
        cols["text"].append(rendered.text)
        for a, b in rendered.model_spans:
            starts.append(a)
            ends.append(b)
        offsets.append(len(starts))
    spans = pa.StructArray.from_arrays([pa.array(starts, pa.int32()), pa.array(ends, pa.int32())], ["start", "end"])
    arrays = [pa.array(cols[c], pa.string()) for c in cols] + [pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), spans)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def render_row_group(p: RenderParams, spill_dir: str, group: toucan.RowGroup) -> tuple[str, dict]:
    """One row group of filtered rows (in a worker) → rendered rows (spilled to an Arrow file), and counts of rows
    that did not parse."""
    dropped = dict.fromkeys(toucan.MalformedRow.KINDS, 0)
    rows = (row for batch in toucan.read_row_group(group) for row in batch.to_pylist())
    return toucan.spill(render_rows(p, rows, dropped), spill_dir), dropped


class ShardWriter:
    """Writes one split as shards of `rows_per_shard` rows; they get their final names (`-of-MMMMM`) on close."""

    def __init__(self, out: Path, split: str, rows_per_shard: int):
        self.out, self.split, self.rows_per_shard = out, split, rows_per_shard
        self.shards: list[Path] = []
        self.writer = None
        self.stats = {"rows": 0, "chars": 0, "model_chars": 0, "dropped": dict.fromkeys(toucan.MalformedRow.KINDS, 0)}

    def write(self, table: pa.Table, dropped: dict) -> None:
        for k, v in dropped.items():
            self.stats["dropped"][k] += v
        self.stats["chars"] += pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0
        spans = pc.list_flatten(table.column("model_spans"))
        self.stats["model_chars"] += pc.sum(pc.subtract(pc.struct_field(spans, "end"),
                                                        pc.struct_field(spans, "start"))).as_py() or 0
        while table.num_rows:
            if self.writer is None:
                self.shards.append(self.out / f".{self.split}-{len(self.shards):05d}")
                self.writer = pq.ParquetWriter(self.shards[-1], SCHEMA, **toucan.PARQUET_OPTIONS)
            room = self.rows_per_shard - self.stats["rows"] % self.rows_per_shard
            self.writer.write_table(table.slice(0, room))
            self.stats["rows"] += min(room, table.num_rows)
            table = table.slice(room)
            if self.stats["rows"] % self.rows_per_shard == 0:
                self.writer.close()
                self.writer = None

    def close(self) -> dict:
        if self.writer is not None:
            self.writer.close()
        if not self.shards:  # an empty split still gets its (empty) shard
            self.shards.append(self.out / f".{self.split}-00000")
            pq.write_table(SCHEMA.empty_table(), self.shards[-1], **toucan.PARQUET_OPTIONS)
        # Named only now that the shard count is known (rows dropped here would change it).
        for i, path in enumerate(self.shards):
            path.rename(self.out / shard_name(self.split, i, len(self.shards)))
        return {**self.stats, "shards": len(self.shards)}


def run(p: RenderParams, src: Path, out: Path, metrics_path: Path) -> dict:
    groups = {s: toucan.row_groups([Path(src) / f"{s}.parquet"]) for s in SPLITS}
    tasks = [(s, g) for s in SPLITS for g in groups[s]]  # both splits in one pool
    with building(out) as tmp, tempfile.TemporaryDirectory(prefix="render-spill-") as spill_dir:
        writers = {s: ShardWriter(tmp, s, p.rows_per_shard) for s in SPLITS}
        with Progress(total=sum(g.num_rows for _, g in tasks), desc="render", unit="row") as bar:
            results = toucan.parallel_map(functools.partial(render_row_group, p, spill_dir), [g for _, g in tasks])
            for (split, group), (spilled, dropped) in zip(tasks, results):
                writers[split].write(toucan.unspill(spilled), dropped)
                bar.update(group.num_rows)
        metrics = {s: w.close() for s, w in writers.items()}
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
