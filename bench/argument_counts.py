"""How many arguments the stand-in's tool calls state, and how `synthetic_phrasing.OPTIONAL_SHARE` (the chance a call
states each optional parameter) moves that: the data side of the quality runs' missing arguments.

    python bench/argument_counts.py --rows 8000 --optional-share 0.35 0.7 1.0

Generates the rows in this process (no download stage, one core) and counts every call of every well-formed row.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_toolcall import synthetic_phrasing, synthetic_toucan, toucan  # noqa: E402

BUCKETS = ("0", "1", "2", "3", "4+")


def calls_by_argument_count(rows) -> Counter:
    """Calls per number of arguments (BUCKETS) over Toucan rows; rows that do not parse are skipped."""
    counts = Counter()
    for row in rows:
        try:
            conv = toucan.parse_row(row)
        except toucan.MalformedRow:
            continue
        for turn in conv.turns:
            for call in turn.calls:
                counts[BUCKETS[min(len(call.arguments), 4)]] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optional-share", type=float, nargs="+", default=[synthetic_phrasing.OPTIONAL_SHARE])
    args = ap.parse_args()
    for share in args.optional_share:
        synthetic_phrasing.OPTIONAL_SHARE = share
        counts = calls_by_argument_count(synthetic_toucan.generate(args.rows, args.seed))
        total = sum(counts.values())
        print(json.dumps({"optional_share": share, "calls": total,
                          "share_by_arguments": {b: round(counts[b] / total, 3) for b in BUCKETS}}))


if __name__ == "__main__":
    main()
