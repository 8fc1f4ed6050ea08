import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "reference"


def run_stage(module: str, cwd: Path, *args: str, env: dict | None = None, check: bool = True):
    """Run `python -m stages.<module>` as dvc would, from `cwd` (which holds params.yaml)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"stages.{module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def raw_small(tmp_path_factory) -> Path:
    """A 1,500-row synthetic stand-in, shared by the stage tests."""
    from stages import download

    out = tmp_path_factory.mktemp("raw") / "raw"
    download.run(download.DownloadParams(rows=1500, seed=7), out)
    return out
