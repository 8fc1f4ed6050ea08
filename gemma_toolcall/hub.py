"""Hugging Face Hub access shared by the stages that download."""
from __future__ import annotations

import os
from pathlib import Path


def hf_token(env_file: Path = Path(".env")) -> str | None:
    """HF_TOKEN from the environment, else from a `.env` line `HF_TOKEN=...`. Never written anywhere."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "HF_TOKEN" and value.strip():
                return value.strip().strip("'\"")
    return None
