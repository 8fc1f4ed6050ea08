"""The download stage's real code paths against local stand-ins of their sources.

`huggingface` talks to a loopback server that answers like the Hub's `resolve` endpoint (HF_ENDPOINT), through the
real huggingface_hub client; `local` copies a folder; the offline failure names the offline alternatives.
"""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import HubStandIn, run_stage, serve_hub
from gemma_toolcall import toucan
from stages.download import DownloadParams, REAL_SHARDS

REPO, REVISION = "Agent-Ark/Toucan-1.5M", "0df3cf37f2abefb380370cfb02eabea2a35ae782"


@pytest.fixture
def hub(raw_small):
    files = {f"/datasets/{REPO}/resolve/{REVISION}/{name}": (raw_small / name).read_bytes() for name in REAL_SHARDS}
    with serve_hub(files, REVISION) as url:
        yield url


def project(tmp_path: Path, **download) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"download": download}))
    return tmp_path


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
    assert params["source"] == "synthetic" and params["revision"] == DownloadParams().revision == REVISION
    assert toucan.CONFIG == "SFT"
