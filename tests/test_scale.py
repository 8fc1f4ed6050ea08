"""Memory does not grow with rows: each data stage, run as dvc runs it (bench/scale.py's runner), on a small and a
16-times larger input, peaks at about the same RSS in its largest process (the main one or any worker). A stage that
held the rows (or their strings) in a list would need ~250 MB more at the larger size.

The whole tree's PSS is not asserted here: on inputs this small a stage lasts about a second, and whether the sampler
catches both workers busy at once moves it by ~150 MB (bench/scale.py reports it at real sizes)."""
import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from bench import scale
from conftest import ROOT
from gemma_toolcall.dataset import toucan, toucan_raw

COPIES = 16
GROWTH = 80 * 2**20  # what the larger input may add to a stage's peak (arrays of small ints per row, allocator noise)


def project(folder, copies, raw_small, **params):
    raw = folder / "data" / "raw" / "Qwen3"
    raw.mkdir(parents=True)
    for k in range(copies):  # the same rows again: as many questions answered `copies` times
        for path in toucan.shard_paths(raw_small):
            shutil.copyfile(path, raw / f"{k:02d}-{path.name}")
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in params.items():
        config[section].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.mark.parametrize("duplicates", ["keep", "best"])
def test_data_stages_memory_does_not_grow_with_rows(raw_small, tmp_path, duplicates):
    peaks = {}
    for copies in (1, COPIES):
        cwd = project(tmp_path / str(copies), copies, raw_small, filter={"duplicates": duplicates})
        for stage in ("analyze", "filter", "render"):
            peaks[stage, copies] = scale.run_stage(stage, cwd, cwd / f"{stage}.log")
        kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (cwd / "data" / "filtered").glob("*.parquet"))
        assert kept > 0
    for stage in ("analyze", "filter", "render"):
        small, large = peaks[stage, 1], peaks[stage, COPIES]
        assert large["max_process_rss_bytes"] < small["max_process_rss_bytes"] + GROWTH, (stage, small, large)


def test_download_memory_does_not_grow_with_rows(tmp_path):
    peaks = []
    for rows in (400, 400 * COPIES):
        cwd = tmp_path / str(rows)
        cwd.mkdir()
        config = yaml.safe_load((ROOT / "params.yaml").read_text())
        config["download"].update(config=["Kimi-K2", "OSS", "Qwen3"], rows=rows)
        (cwd / "params.yaml").write_text(yaml.safe_dump(config))
        peaks.append(scale.run_stage("download", cwd, cwd / "download.log"))
        assert toucan.count_rows(toucan_raw.shard_paths(cwd / "data" / "raw")) > 2.5 * rows
    assert peaks[1]["max_process_rss_bytes"] < peaks[0]["max_process_rss_bytes"] + GROWTH, peaks


def test_pool_gives_the_rows_asked_for():
    assert 1_520_000 < scale.pool_for(1_527_259, ["Kimi-K2", "OSS", "Qwen3"]) * 2.768 < 1_535_000
    assert scale.pool_for(551_613, ["Qwen3"]) == 551_613
