"""One row per key, the best-ranked, over more rows than memory needs to hold: a group-by done by pyarrow's dataset
engine on hash partitions spilled to disk.

    best = BestPerKey(workdir, expected_rows)
    best.add(keys, score, coverage)          # in row order, any number of times; row i is the i-th row added
    best.finish()
    best.losers(lo, hi)                      # rows in [lo, hi) that a better row of their key beats, ascending

A key is a 64-bit hash (`key_of`). Rows go to `ceil(expected_rows / PARTITION_ROWS)` partitions by key, so all rows
of a key meet in one partition and a partition is the most ever held in memory (32 bytes a row). In each, rows are
sorted by key, then score and coverage (highest first; null lowest), then row (first first), and every row after the
first of its key loses. The losers are written again partitioned by row block, so the pass that writes the kept rows
reads them one block at a time, in order.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

PARTITION_ROWS = 1 << 20  # rows a hash partition holds (on average) at most
BLOCK_ROWS = 1 << 16  # rows per block of the losers
KEYS = pa.schema([("key", pa.uint64()), ("score", pa.float64()), ("coverage", pa.float64()), ("row", pa.int64()),
                  ("part", pa.int32())])
MAX_PARTITIONS = 1 << 20


def key_of(text: str | None) -> int:
    """A 64-bit key of a text (two different texts share one with probability ~2^-64 per pair)."""
    return int.from_bytes(hashlib.blake2b((text or "").encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def in_seeded_share(key: str, share: float, seed: int) -> bool:
    """Whether `key` falls in a `share` of all keys that `seed` picks: the same answer on every run."""
    return key_of(f"{seed}:{key}") < share * 2**64


class BestPerKey:
    def __init__(self, workdir: Path, expected_rows: int):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.partitions = max(1, -(-expected_rows // PARTITION_ROWS))
        self.rows = 0
        self.sink = pa.OSFile(str(self.dir / "keys.arrow"), "wb")
        self.writer = pa.ipc.new_file(self.sink, KEYS)
        self.block, self.block_losers = -1, np.zeros(0, np.int64)

    def add(self, keys: pa.Array, score: pa.Array, coverage: pa.Array) -> None:
        n = len(keys)
        part = pa.array((keys.to_numpy(zero_copy_only=False) % np.uint64(self.partitions)).astype(np.int32))
        rows = pa.array(np.arange(self.rows, self.rows + n, dtype=np.int64))
        self.writer.write_batch(pa.RecordBatch.from_arrays(
            [keys, pc.cast(score, pa.float64()), pc.cast(coverage, pa.float64()), rows, part], schema=KEYS))
        self.rows += n

    def finish(self) -> None:
        self.writer.close()
        self.sink.close()
        by_key = self.dir / "by_key"
        ds.write_dataset(ds.dataset(self.dir / "keys.arrow", format="arrow"), by_key, format="arrow",
                         partitioning=ds.partitioning(pa.schema([("part", pa.int32())]), flavor="hive"),
                         max_partitions=MAX_PARTITIONS, existing_data_behavior="overwrite_or_ignore")
        (self.dir / "keys.arrow").unlink()
        losers_path = self.dir / "losers.arrow"
        schema = pa.schema([("row", pa.int64()), ("block", pa.int64())])
        with pa.OSFile(str(losers_path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for part in range(self.partitions):
                folder = by_key / f"part={part}"
                if not folder.exists():
                    continue
                table = ds.dataset(folder, format="arrow").to_table(columns=["key", "score", "coverage", "row"])
                table = table.sort_by([("key", "ascending"), ("score", "descending"), ("coverage", "descending"),
                                       ("row", "ascending")])
                key = table.column("key").to_numpy()
                lost = np.sort(table.column("row").to_numpy()[1:][key[1:] == key[:-1]])
                writer.write_batch(pa.RecordBatch.from_arrays([pa.array(lost), pa.array(lost // BLOCK_ROWS)],
                                                              schema=schema))
        ds.write_dataset(ds.dataset(losers_path, format="arrow"), self.dir / "losers", format="arrow",
                         partitioning=ds.partitioning(pa.schema([("block", pa.int64())]), flavor="hive"),
                         max_partitions=MAX_PARTITIONS, existing_data_behavior="overwrite_or_ignore")
        losers_path.unlink()

    def _losers_of_block(self, block: int) -> np.ndarray:
        if block != self.block:
            folder = self.dir / "losers" / f"block={block}"
            rows = (ds.dataset(folder, format="arrow").to_table(columns=["row"]).column("row").to_numpy()
                    if folder.exists() else np.zeros(0, np.int64))
            self.block, self.block_losers = block, np.sort(rows)
        return self.block_losers

    def losers(self, lo: int, hi: int) -> np.ndarray:
        """The losing rows in [lo, hi), ascending (call with ranges in ascending order: one block is kept loaded)."""
        out = []
        for block in range(lo // BLOCK_ROWS, (hi - 1) // BLOCK_ROWS + 1 if hi > lo else lo // BLOCK_ROWS):
            rows = self._losers_of_block(block)
            out.append(rows[(rows >= lo) & (rows < hi)])
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    @property
    def total_losers(self) -> int:
        folder = self.dir / "losers"
        return ds.dataset(folder, format="arrow").count_rows() if folder.exists() else 0
