"""Stage `download`: the Toucan-1.5M SFT parquet shards into data/raw/SFT/.

source: huggingface (the real data, pinned revision), local (shards in a folder of yours) or synthetic (an offline
stand-in generated from a seed; the default, so `dvc repro` runs anywhere).
"""
from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gemma_toolcall import synthetic_toucan, toucan
from gemma_toolcall.artifacts import building
from gemma_toolcall.hub import hf_token
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress, progress, quiet_hub_bars

REAL_SHARDS = [f"{toucan.CONFIG}/train-{i:05d}-of-00003.parquet" for i in range(3)]
OFFLINE_HINT = ("Offline? Set `download.source: synthetic` (an embedded Toucan-schema stand-in) or "
                "`download.source: local` with `download.local_dir` pointing at a folder of the SFT parquet shards.")


@dataclass(frozen=True)
class DownloadParams:
    source: Literal["synthetic", "huggingface", "local"] = "synthetic"
    rows: int = 2000
    seed: int = 0
    repo_id: str = "Agent-Ark/Toucan-1.5M"
    revision: str = "0df3cf37f2abefb380370cfb02eabea2a35ae782"
    local_dir: str = ""

    def validate(self):
        if self.source == "synthetic" and self.rows < 1:
            return f"rows must be >= 1, got {self.rows}"
        if self.source == "local" and not self.local_dir:
            return "local_dir must name a folder of parquet shards when source is local"


def fetch_huggingface(p: DownloadParams, out: Path) -> None:
    from huggingface_hub import hf_hub_download, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    token = hf_token()
    quiet_hub_bars()
    for name in progress(REAL_SHARDS, desc="download", unit="shard"):
        try:
            cached = hf_hub_download(p.repo_id, name, repo_type="dataset", revision=p.revision, token=token)
        except (GatedRepoError, RepositoryNotFoundError) as e:
            raise SystemExit(f"download: {p.repo_id}@{p.revision} refused {name} ({type(e).__name__}); set HF_TOKEN "
                             f"(environment or .env) to a token with access. {OFFLINE_HINT}") from None
        except Exception as e:  # no network, DNS, proxy, timeouts: all end the same way for the user
            raise SystemExit(f"download: could not fetch {name} of {p.repo_id}@{p.revision} from "
                             f"{constants.ENDPOINT}: {type(e).__name__}: {e}\n{OFFLINE_HINT}") from None
        dest = out / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, dest)


def copy_local(p: DownloadParams, out: Path) -> None:
    src = Path(p.local_dir).expanduser()
    shards = sorted(src.glob(f"{toucan.CONFIG}/*.parquet")) or sorted(src.glob("*.parquet"))
    if not shards:
        raise SystemExit(f"download: no *.parquet (or {toucan.CONFIG}/*.parquet) in download.local_dir={src}")
    (out / toucan.CONFIG).mkdir(parents=True)
    for shard in progress(shards, desc="copy", unit="shard"):
        shutil.copyfile(shard, out / toucan.CONFIG / shard.name)


def synthetic_table(spill_dir: str, chunk: synthetic_toucan.Chunk) -> str:
    """One chunk of stand-in rows (in a worker), spilled to an Arrow file."""
    return toucan.spill(pa.Table.from_pylist(synthetic_toucan.chunk_rows(chunk), schema=toucan.SCHEMA), spill_dir)


def write_synthetic(p: DownloadParams, out: Path, shards: int = synthetic_toucan.SHARDS) -> None:
    """Chunks are generated in parallel, each from its own seed, and written in order: the shards are byte-identical
    whatever the number of workers."""
    (out / toucan.CONFIG).mkdir(parents=True)
    bounds = [p.rows * i // shards for i in range(shards + 1)]
    chunks = synthetic_toucan.plan_chunks(p.rows, p.seed)
    writers = [pq.ParquetWriter(out / toucan.CONFIG / f"train-{i:05d}-of-{shards:05d}.parquet", toucan.SCHEMA,
                                **toucan.PARQUET_OPTIONS) for i in range(shards)]
    try:
        with tempfile.TemporaryDirectory(prefix="synthetic-spill-") as spill_dir, \
                Progress(total=p.rows, desc="synthetic", unit="row") as bar:
            for chunk, path in zip(chunks, toucan.parallel_map(functools.partial(synthetic_table, spill_dir), chunks)):
                table = toucan.unspill(path)
                for i, writer in enumerate(writers):  # the part of the chunk that falls in shard i
                    lo, hi = max(bounds[i], chunk.start), min(bounds[i + 1], chunk.start + table.num_rows)
                    if lo < hi:
                        writer.write_table(table.slice(lo - chunk.start, hi - lo))
                bar.update(table.num_rows)
    finally:
        for writer in writers:
            writer.close()


def run(p: DownloadParams, out: Path) -> None:
    with building(out) as tmp:
        {"huggingface": fetch_huggingface, "local": copy_local, "synthetic": write_synthetic}[p.source](p, tmp)
        for shard in toucan.shard_paths(tmp):
            toucan.check_schema(shard)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("data/raw"))
    args = ap.parse_args(argv)
    run(load_section("download", DownloadParams), args.out)


if __name__ == "__main__":
    main()
