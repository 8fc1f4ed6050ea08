"""The train stage's data path alone: tokenize the train split, pack it and spill the packed rows to a file (what
grain reads through a memory map), exactly as `stages/train.py` does before training, without the model.

    python bench/train_data.py --data data/formatted --tokenizer models/base/tokenizer.model

Reads `train.*` from ./params.yaml, writes the rows file under $TMPDIR (removed at the end) and prints one JSON line:
the stage's counts, the rows, and the size of the rows file. bench/scale.py runs it as one more stage.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gemma_toolcall import model as gemma  # noqa: E402
from gemma_toolcall.params import load_section  # noqa: E402
from stages import train  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/formatted"))
    ap.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "base" / "tokenizer.model")
    a = ap.parse_args(argv)
    p = load_section("train", train.TrainParams)
    with tempfile.TemporaryDirectory(prefix="train-rows-") as tmp:
        rows, stats = train.packed_rows(sorted(a.data.glob("train-*.parquet")), gemma.Tokenizer(a.tokenizer), p,
                                        Path(tmp) / "train.bin", "tokenize train")
        result = {**stats, "packed_rows": len(rows), "rows_file_bytes": (Path(tmp) / "train.bin").stat().st_size}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
