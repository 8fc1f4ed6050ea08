"""The download stage's real code paths against local stand-ins of their sources.

`huggingface` talks to a loopback server that answers like the Hub's `resolve` endpoint (HF_ENDPOINT), through the
real huggingface_hub client; `local` copies a folder; the offline failure names the offline alternatives.
"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import HubStandIn, run_stage, serve_hub, stage_params, write_params
from gemma_toolcall.dataset import toucan, toucan_raw
from gemma_toolcall.standin import raw as standin_raw
from gemma_toolcall.params import ConfigError, from_dict
from stages.download import DownloadParams, REAL_SHARDS

REPO, REVISION = "Agent-Ark/Toucan-1.5M", "0df3cf37f2abefb380370cfb02eabea2a35ae782"


@pytest.fixture
def hub(raw_small):
    files = {f"/datasets/{REPO}/resolve/{REVISION}/{name}": (raw_small / name).read_bytes() for name in REAL_SHARDS}
    with serve_hub(files, REVISION) as url:
        yield url


def project(tmp_path: Path, **download) -> Path:
    return write_params(tmp_path, download=download)


def test_huggingface_source_downloads_the_pinned_shards(hub, raw_small, tmp_path):
    cwd = project(tmp_path, source="huggingface")
    (cwd / ".env").write_text("# secrets\nHF_TOKEN=hf_secret_from_dotenv\n")
    run_stage("download", cwd, env={"HF_ENDPOINT": hub, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": ""})
    for name in REAL_SHARDS:
        assert (cwd / "data/raw" / name).read_bytes() == (raw_small / name).read_bytes()
    files = [r for r in HubStandIn.requests if "/resolve/" in r[1]]
    assert sorted(path for verb, path, _ in files if verb == "GET") == sorted(HubStandIn.files)  # pinned revision
    assert all(auth == "Bearer hf_secret_from_dotenv" for _, _, auth in files)
    for path in (cwd / "data").rglob("*"):  # the token never lands in an artifact
        assert not path.is_file() or b"hf_secret_from_dotenv" not in path.read_bytes()


def test_unreachable_hub_names_the_offline_alternatives(tmp_path):
    cwd = project(tmp_path, source="huggingface")
    proc = run_stage("download", cwd, env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "h")},
                     check=False)
    assert proc.returncode != 0
    assert "download.source: synthetic" in proc.stderr and "download.source: local" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (cwd / "data" / "raw").exists()


def test_local_source_copies_and_checks_schema(raw_small, tmp_path):
    cwd = project(tmp_path / "p", source="local", local_dir=str(raw_small))
    run_stage("download", cwd)
    assert sorted(p.name for p in (cwd / "data/raw/SFT").iterdir()) == sorted(Path(n).name for n in REAL_SHARDS)

    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"uuid": ["x"], "text": ["y"]}), bad / "train-00000-of-00001.parquet")
    cwd = project(tmp_path / "q", source="local", local_dir=str(bad))
    proc = run_stage("download", cwd, check=False)
    assert proc.returncode != 0 and "missing column(s)" in proc.stderr


def test_config_errors_are_messages_not_tracebacks(tmp_path):
    proc = run_stage("download", project(tmp_path, source="hub"), check=False)
    assert proc.returncode != 0 and "download.source must be one of" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_stage("download", project(tmp_path, source="local"), check=False)
    assert "local_dir must name a folder" in proc.stderr


def test_params_defaults_are_the_documented_ones():
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())["download"]
    assert params["source"] == "synthetic" and params["revision"] == stage_params("download", DownloadParams).revision == REVISION
    assert toucan.CONFIG == "SFT"


def raw_shards(config: str, folder, questions: int = 120) -> dict:
    """A raw config's real shard names in `folder`, holding stand-in raw rows (unconverted, RAW_SCHEMA)."""
    names = toucan_raw.shard_names(config)
    chunks = standin_raw.plan_chunks(config, questions, 3, len(names))
    for name, shard_chunks in zip(names, chunks):
        rows = [r for c in shard_chunks for r in standin_raw.chunk_rows(c)]
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=toucan_raw.RAW_SCHEMA), folder / name)
    return {name: folder / name for name in names}


def converted(path, config):
    dropped = toucan_raw.drop_counts()
    batches = pq.read_table(path).to_batches()
    out = [toucan_raw.convert_batch(b, config, dropped) for b in batches]
    return (pa.concat_tables(out) if out else toucan_raw.SCHEMA.empty_table()), dropped


def test_huggingface_source_fetches_and_converts_a_raw_config(hub, raw_small, tmp_path):
    """SFT and Kimi-K2 at the pinned revision, the real shard names, through huggingface_hub: SFT byte for byte,
    Kimi-K2 converted to the SFT shape."""
    shards = raw_shards("Kimi-K2", tmp_path / "remote")
    HubStandIn.files.update({f"/datasets/{REPO}/resolve/{REVISION}/{name}": path.read_bytes()
                             for name, path in shards.items()})
    cwd = project(tmp_path / "p", source="huggingface", config=["Kimi-K2", "SFT"])
    run_stage("download", cwd, env={"HF_ENDPOINT": hub, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": "t"})
    for name in REAL_SHARDS:
        assert (cwd / "data/raw" / name).read_bytes() == (raw_small / name).read_bytes()
    got = sorted(p.name for p in (cwd / "data/raw/Kimi-K2").iterdir())
    assert got == [f"train-{i:05d}-of-00040.parquet" for i in range(40)]
    asked = {path for verb, path, _ in HubStandIn.requests if verb == "GET" and "/resolve/" in path}
    assert asked == set(HubStandIn.files)  # every shard of both configs, at the pinned revision
    metrics = json.loads((cwd / "metrics/download.json").read_text())
    for name, path in shards.items():
        table, _ = converted(path, "Kimi-K2")
        assert pq.read_table(cwd / "data/raw" / name).equals(table)
    assert metrics["Kimi-K2"]["rows_in"] == toucan.count_rows(list(shards.values()))
    assert metrics["Kimi-K2"]["rows_out"] == toucan.count_rows(toucan_raw.shard_paths(cwd / "data/raw")) - 1500
    assert metrics["SFT"] == {"rows_in": 1500, "rows_out": 1500, "dropped": {}}


def test_local_source_converts_a_raw_config_and_counts_drops(tmp_path):
    """OSS shards in a folder of yours: converted as the Hub's are; a row that cannot be converted is counted; the
    result loads with `datasets` like any parquet dataset."""
    import datasets

    shards = raw_shards("OSS", tmp_path / "mine")
    first = next(iter(shards.values()))
    table = pq.read_table(first)
    broken = table.to_pylist()
    broken[0]["metadata"] = '{"mcp_servers": "none"}'
    pq.write_table(pa.Table.from_pylist(broken, schema=toucan_raw.RAW_SCHEMA), first)
    cwd = project(tmp_path / "p", source="local", config="OSS", local_dir=str(tmp_path / "mine"))
    run_stage("download", cwd)
    metrics = json.loads((cwd / "metrics/download.json").read_text())["OSS"]
    rows_in = toucan.count_rows(list(shards.values()))
    assert metrics["rows_in"] == rows_in and metrics["dropped"]["bad_metadata"] == 1
    assert metrics["rows_out"] == rows_in - sum(metrics["dropped"].values())
    out = toucan_raw.shard_paths(cwd / "data/raw")
    assert [p.name for p in out] == [f"train-{i:05d}-of-00047.parquet" for i in range(47)]
    assert all(pq.read_schema(p) == toucan_raw.SCHEMA for p in out)
    loaded = datasets.load_dataset("parquet", data_files=[str(p) for p in out], split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert len(loaded) == metrics["rows_out"] and loaded.column_names == toucan_raw.SCHEMA.names
    assert loaded[0]["servers"]

    cwd = project(tmp_path / "q", source="local", config=["OSS", "Qwen3"], local_dir=str(tmp_path / "mine"))
    proc = run_stage("download", cwd, check=False)
    assert proc.returncode != 0 and "no Qwen3/*.parquet in download.local_dir" in proc.stderr
    assert "Traceback" not in proc.stderr
    # SFT-shaped shards given as a raw config
    cwd = project(tmp_path / "r", source="local", config="Qwen3", local_dir=str(tmp_path / "p/data/raw/OSS"))
    proc = run_stage("download", cwd, check=False)
    assert proc.returncode != 0 and "not a raw Toucan shard" in proc.stderr


@pytest.mark.parametrize("config, message", [
    ("Kimi", "download.config must be one of ['SFT', 'Kimi-K2', 'OSS', 'Qwen3']"),
    (["OSS", "OSS"], "each once"),
    ([], "download.config must be one of"),
])
def test_bad_config_says_what_to_set(config, message):
    with pytest.raises(ConfigError) as e:
        stage_params("download", DownloadParams, **{"config": config})
    assert message in str(e.value)


def test_configs_are_read_in_one_order():
    assert stage_params("download", DownloadParams, config=["Qwen3", "SFT", "OSS"]).configs == ("SFT", "OSS", "Qwen3")
    assert stage_params("download", DownloadParams).configs == ("SFT",)
