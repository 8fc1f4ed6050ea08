import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gemma_toolcall.chat_format import render_conversation  # noqa: E402
from gemma_toolcall.dataset.toucan import Conversation, ToolCall, ToolResult, Turn  # noqa: E402
from gemma_toolcall.params import load_section  # noqa: E402

REFERENCE = ROOT / "tests" / "reference"


def stage_params(section: str, cls, **overrides):
    """A stage's params as the project's params.yaml sets them (the one place defaults live), with `overrides`."""
    return load_section(section, cls, ROOT / "params.yaml", **overrides)


def write_params(folder: Path, **sections: dict) -> Path:
    """`folder`/params.yaml: the project's params.yaml with the given sections' keys replaced."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section] = {**params[section], **values}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def run_stage(module: str, cwd: Path, *args: str, env: dict | None = None, check: bool = True):
    """Run `python -m stages.<module>` as dvc would, from `cwd` (which holds params.yaml)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"stages.{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


TOOLS = [{"name": "w-get", "description": "Weather.", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def conversations():
    cities = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Doha", "Bern", "Riga"]
    for i, city in enumerate(cities):
        call = ToolCall("w-get", {"city": city})
        yield Conversation(TOOLS, [Turn("user", f"Weather in {city}?"), Turn("model", "", (call,)),
                                   Turn("tool", results=(ToolResult("w-get", f'{{"t": {i}}}'),)),
                                   Turn("model", f"{i} degrees.")])


@pytest.fixture(scope="session")
def formatted(tmp_path_factory) -> Path:
    """Render shards of short conversations, as the render stage writes them."""
    out = tmp_path_factory.mktemp("formatted")
    rows = []
    for i, conv in enumerate(conversations()):
        r = render_conversation(conv, "compact")
        rows.append({"uuid": str(i), "subset_name": "s", "text": r.text,
                     "model_spans": [{"start": a, "end": b} for a, b in r.model_spans]})
    from stages import render

    pq.write_table(pa.Table.from_pylist(rows[:6], schema=render.SCHEMA), out / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[6:], schema=render.SCHEMA), out / "validation-00000-of-00001.parquet")
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from stages import base_model

    out = tmp_path_factory.mktemp("tiny") / "base"
    base_model.run(stage_params("model", base_model.ModelParams, source="tiny-random"), out)
    return out


@pytest.fixture(scope="session")
def raw_small(tmp_path_factory) -> Path:
    """A 1,500-row synthetic stand-in, shared by the stage tests."""
    from stages import download

    out = tmp_path_factory.mktemp("raw") / "raw"
    download.run(stage_params("download", download.DownloadParams, rows=1500, seed=1), out)  # holds eligible malformed rows
    return out


class HubStandIn(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[tuple[str, str, str]] = []
    revision = ""

    def _answer(self, body: bool):
        self.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.revision)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_hub(files: dict[str, bytes], revision: str):
    """A loopback stand-in of the Hugging Face Hub's `resolve` endpoint serving `files` (URL path -> bytes)."""
    HubStandIn.files, HubStandIn.requests, HubStandIn.revision = files, [], revision
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
