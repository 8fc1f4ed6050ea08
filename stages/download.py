"""Stage `download`: Toucan-1.5M parquet shards of the chosen configs into data/raw/<config>/.

source: huggingface (the real data, pinned revision), local (shards in a folder of yours) or synthetic (an offline
stand-in generated from a seed; the default, so `dvc repro` runs anywhere). config: SFT (default), Kimi-K2, OSS,
Qwen3, or a list. SFT shards are copied as they are; a raw config's rows are converted to the SFT shape as they
stream (`toucan_raw.convert_batch`, the authors' rules), so later stages read one shape. Rows that cannot be
converted are counted by kind in metrics/download.json; for the synthetic SFT stand-in, its `standin` block counts
what the rows written hold (`standin.sft.standin_metrics`: row kinds, first requests with two calls or more, same-tool
and different-tool ones, near misses, requests that lack a value).
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gemma_toolcall.dataset import toucan, toucan_raw
from gemma_toolcall.standin import raw as standin_raw, sft as standin_sft
from gemma_toolcall.artifacts import building
from gemma_toolcall.hub import hf_token
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress, progress, quiet_hub_bars

CONVERT_BATCH = 1024  # raw rows converted at a time (a row group is read in batches of this many)

REAL_SHARDS = toucan_raw.shard_names(toucan.CONFIG)
OFFLINE_HINT = ("Offline? Set `download.source: synthetic` (an embedded Toucan-schema stand-in) or "
                "`download.source: local` with `download.local_dir` pointing at a folder of the configs' parquet "
                "shards.")


@dataclass(frozen=True)
class DownloadParams:
    source: Literal["synthetic", "huggingface", "local"]
    config: str | list  # one of toucan_raw.CONFIGS, or a list of them
    rows: int
    seed: int
    repo_id: str
    revision: str
    local_dir: str

    @property
    def configs(self) -> tuple[str, ...]:
        """The configs asked for, in the canonical order (SFT, Kimi-K2, OSS, Qwen3)."""
        asked = [self.config] if isinstance(self.config, str) else list(self.config)
        return tuple(c for c in toucan_raw.CONFIGS if c in asked)

    def validate(self):
        asked = [self.config] if isinstance(self.config, str) else self.config
        if not isinstance(asked, (list, tuple)) or not asked or any(c not in toucan_raw.CONFIGS for c in asked) \
                or len(set(asked)) != len(asked):
            return (f"config must be one of {list(toucan_raw.CONFIGS)} or a list of them (each once), "
                    f"got {self.config!r}")
        if self.source == "synthetic" and self.rows < 1:
            return f"rows must be >= 1, got {self.rows}"
        if self.source == "local" and not self.local_dir:
            return "local_dir must name a folder of parquet shards when source is local"


def fetch_huggingface(p: DownloadParams, config: str) -> list[Path]:
    """The config's shards at the pinned revision, in the Hugging Face cache (`HF_HOME`)."""
    from huggingface_hub import hf_hub_download, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    token = hf_token()
    quiet_hub_bars()
    cached = []
    for name in progress(toucan_raw.shard_names(config), desc=f"download {config}", unit="shard"):
        try:
            cached.append(Path(hf_hub_download(p.repo_id, name, repo_type="dataset", revision=p.revision, token=token)))
        except (GatedRepoError, RepositoryNotFoundError) as e:
            raise SystemExit(f"download: {p.repo_id}@{p.revision} refused {name} ({type(e).__name__}); set HF_TOKEN "
                             f"(environment or .env) to a token with access. {OFFLINE_HINT}") from None
        except Exception as e:  # no network, DNS, proxy, timeouts: all end the same way for the user
            raise SystemExit(f"download: could not fetch {name} of {p.repo_id}@{p.revision} from "
                             f"{constants.ENDPOINT}: {type(e).__name__}: {e}\n{OFFLINE_HINT}") from None
    return cached


def find_local(p: DownloadParams, config: str) -> list[Path]:
    """`local_dir/<config>/*.parquet`, or (one config asked for) `local_dir/*.parquet`."""
    src = Path(p.local_dir).expanduser()
    shards = sorted(src.glob(f"{config}/*.parquet"))
    if not shards and len(p.configs) == 1:
        shards = sorted(src.glob("*.parquet"))
    if not shards:
        alone = " (or *.parquet)" if len(p.configs) == 1 else ""
        raise SystemExit(f"download: no {config}/*.parquet{alone} in download.local_dir={src}")
    return shards


def copy_shards(shards: list[Path], out: Path) -> dict:
    out.mkdir(parents=True)
    for shard in progress(shards, desc="copy", unit="shard"):
        shutil.copyfile(shard, out / shard.name)
    rows = toucan.count_rows(shards)
    return {"rows_in": rows, "rows_out": rows, "dropped": {}}


def convert_row_group(config: str, spill_dir: str, group: toucan.RowGroup) -> tuple[str, dict]:
    """One raw row group (in a worker) → normalized rows (spilled to an Arrow file), and what failed, by kind."""
    dropped = toucan_raw.drop_counts()
    tables = [toucan_raw.convert_batch(b, config, dropped)
              for b in toucan.read_row_group(group, toucan_raw.RAW_COLUMNS, batch_size=CONVERT_BATCH)]
    return toucan.spill(pa.concat_tables(tables) if tables else toucan_raw.SCHEMA.empty_table(), spill_dir), dropped


def synthetic_raw_table(spill_dir: str, chunk: standin_raw.Chunk) -> tuple[str, dict]:
    """One chunk of stand-in raw rows (in a worker), converted like downloaded ones, spilled."""
    dropped = toucan_raw.drop_counts()
    raw = pa.Table.from_pylist(standin_raw.chunk_rows(chunk), schema=toucan_raw.RAW_SCHEMA)
    tables = [toucan_raw.convert_batch(b, chunk.config, dropped) for b in raw.to_batches(max_chunksize=CONVERT_BATCH)]
    return toucan.spill(pa.concat_tables(tables) if tables else toucan_raw.SCHEMA.empty_table(), spill_dir), dropped


def write_converted(names: list[str], tasks: list[list], work, out: Path, desc: str, total: int) -> dict:
    """Shard i of `names` gets the converted tables of tasks[i] (worked on every core, written in order); every
    shard is written, an empty one too."""
    out.mkdir(parents=True)
    dropped = toucan_raw.drop_counts()
    rows_out = 0
    with tempfile.TemporaryDirectory(prefix="convert-spill-") as spill_dir, \
            Progress(total=total, desc=desc, unit="row") as bar:
        results = toucan.parallel_map(functools.partial(work, spill_dir), [t for ts in tasks for t in ts])
        for name, shard_tasks in zip(names, tasks):
            with pq.ParquetWriter(out / name, toucan_raw.SCHEMA, **toucan.PARQUET_OPTIONS) as writer:
                for task in shard_tasks:
                    path, counts = next(results)
                    table = toucan.unspill(path)
                    if table.num_rows:  # an empty row group trips some readers (`datasets`)
                        writer.write_table(table)
                    rows_out += table.num_rows
                    for k, v in counts.items():
                        dropped[k] += v
                    bar.update(task.num_rows)
    return {"rows_in": rows_out + sum(dropped.values()), "rows_out": rows_out, "dropped": dropped}


def convert_shards(shards: list[Path], config: str, out: Path) -> dict:
    for shard in shards:
        toucan_raw.check_raw_schema(shard)
    tasks = [toucan.row_groups([shard]) for shard in shards]
    return write_converted([s.name for s in shards], tasks, functools.partial(convert_row_group, config), out,
                           f"convert {config}", sum(g.num_rows for ts in tasks for g in ts))


def synthetic_table(spill_dir: str, chunk: standin_sft.Chunk) -> tuple[str, Counter]:
    """One chunk of stand-in rows (in a worker), spilled to an Arrow file, and the counts of what they hold."""
    tally = Counter()
    rows = standin_sft.chunk_rows(chunk, tally)
    return toucan.spill(pa.Table.from_pylist(rows, schema=toucan.SCHEMA), spill_dir), tally


def write_synthetic(p: DownloadParams, out: Path, shards: int = standin_sft.SHARDS) -> dict:
    """Chunks are generated in parallel, each from its own seed, and written in order: the shards are byte-identical
    whatever the number of workers."""
    out.mkdir(parents=True)
    bounds = [p.rows * i // shards for i in range(shards + 1)]
    chunks = standin_sft.plan_chunks(p.rows, p.seed)
    writers = [pq.ParquetWriter(out / f"train-{i:05d}-of-{shards:05d}.parquet", toucan.SCHEMA,
                                **toucan.PARQUET_OPTIONS) for i in range(shards)]
    tally = Counter()
    try:
        with tempfile.TemporaryDirectory(prefix="synthetic-spill-") as spill_dir, \
                Progress(total=p.rows, desc="synthetic", unit="row") as bar:
            for chunk, (path, counts) in zip(chunks, toucan.parallel_map(functools.partial(synthetic_table, spill_dir),
                                                                         chunks)):
                tally.update(counts)
                table = toucan.unspill(path)
                for i, writer in enumerate(writers):  # the part of the chunk that falls in shard i
                    lo, hi = max(bounds[i], chunk.start), min(bounds[i + 1], chunk.start + table.num_rows)
                    if lo < hi:
                        writer.write_table(table.slice(lo - chunk.start, hi - lo))
                bar.update(table.num_rows)
    finally:
        for writer in writers:
            writer.close()
    return {"rows_in": p.rows, "rows_out": p.rows, "dropped": {}, "standin": standin_sft.standin_metrics(tally)}


def write_synthetic_raw(p: DownloadParams, config: str, out: Path) -> dict:
    """A raw config's stand-in, in its real shard names: `rows` questions, of which the config answers its share."""
    names = [Path(n).name for n in toucan_raw.shard_names(config)]
    chunks = standin_raw.plan_chunks(config, p.rows, p.seed, len(names))
    return write_converted(names, chunks, synthetic_raw_table, out, f"synthetic {config}", p.rows)


def fetch(p: DownloadParams, config: str, out: Path) -> dict:
    """One config into `out` (data/raw/<config>/) in the normalized shape; its counts."""
    if p.source == "synthetic":
        return write_synthetic(p, out) if config == toucan.CONFIG else write_synthetic_raw(p, config, out)
    shards = fetch_huggingface(p, config) if p.source == "huggingface" else find_local(p, config)
    if config == toucan.CONFIG:
        return copy_shards(shards, out)
    return convert_shards(shards, config, out)


def run(p: DownloadParams, out: Path, metrics_path: Path | None = None) -> dict:
    metrics = {}
    with building(out) as tmp:
        for config in p.configs:
            metrics[config] = fetch(p, config, tmp / config)
        for shard in toucan_raw.shard_paths(tmp):
            toucan.check_schema(shard)
    if metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("data/raw"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/download.json"))
    args = ap.parse_args(argv)
    run(load_section("download", DownloadParams), args.out, args.metrics)


if __name__ == "__main__":
    main()
