"""Padding share with and without packing, on a synthetic Toucan stand-in of the real SFT config's size.

    python bench/packing.py --rows 119287 --seq 512 1024 [--base models/base]

Runs the project's download (synthetic), filter and render stages, tokenizes the train split with the base's
tokenizer the way `train` does, drops examples longer than the sequence length (as `overlong: drop` does), and
packs them with `gemma_toolcall.training.pack`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gemma_toolcall import model as gemma, training  # noqa: E402
from gemma_toolcall.params import load_section  # noqa: E402


def main(argv=None) -> list[dict]:
    import pyarrow.parquet as pq

    from stages import download, filter as filter_stage, render

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=119_287)
    ap.add_argument("--seq", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--base", type=Path, default=ROOT / "models" / "base", help="folder with tokenizer.model")
    a = ap.parse_args(argv)
    tok = gemma.Tokenizer(a.base / "tokenizer.model")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        download.run(load_section("download", download.DownloadParams, rows=a.rows, seed=0), tmp / "raw")
        filter_stage.run(load_section("filter", filter_stage.FilterParams), tmp / "raw", tmp / "filtered", tmp / "data.json")
        render.run(load_section("render", render.RenderParams), tmp / "filtered", tmp / "formatted", tmp / "render.json")
        examples = [training.tokenize_example(tok, r["text"], r["model_spans"])
                    for path in sorted((tmp / "formatted").glob("train-*.parquet"))
                    for r in pq.read_table(path, columns=["text", "model_spans"]).to_pylist()]
    results = []
    print(f"{len(examples)} train examples")
    print("| seq | examples kept | rows unpacked | padding unpacked | rows packed | padding packed | examples/row |")
    print("|---|---|---|---|---|---|---|")
    for seq in a.seq:
        kept = [e for e in examples if len(e[0]) <= seq]
        unpacked, packed = list(training.pack(kept, seq, packing=False)), list(training.pack(kept, seq))
        r = {"seq": seq, "examples": len(kept), "rows_unpacked": len(unpacked), "rows_packed": len(packed),
             "padding_unpacked": training.padding_share(unpacked), "padding_packed": training.padding_share(packed)}
        results.append(r)
        print(f"| {seq} | {len(kept)} | {len(unpacked)} | {100 * r['padding_unpacked']:.1f}% | {len(packed)} | "
              f"{100 * r['padding_packed']:.1f}% | {len(kept) / len(packed):.2f} |")
    return results


if __name__ == "__main__":
    main()
