"""Stage `bfcl_data`: the Berkeley Function-Calling Leaderboard's data and scorer into data/bfcl/ (from the pinned
bfcl-eval wheel, fetched without its dependencies; see gemma_toolcall/bfcl.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from gemma_toolcall import bfcl
from gemma_toolcall.artifacts import building


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("data/bfcl"))
    args = ap.parse_args(argv)
    with building(args.out) as tmp:
        bfcl.fetch(tmp)


if __name__ == "__main__":
    main()
