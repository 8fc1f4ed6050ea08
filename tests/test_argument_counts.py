"""bench/argument_counts.py counts the stand-in's calls by how many arguments they state."""
import sys

from conftest import ROOT
from gemma_toolcall import synthetic_phrasing, synthetic_toucan, toucan

sys.path.insert(0, str(ROOT / "bench"))
import argument_counts  # noqa: E402


def mean_arguments(counts):
    return sum(min(int(b[0]), 4) * n for b, n in counts.items()) / sum(counts.values())


def test_calls_are_counted_by_arguments_and_the_optional_share_moves_them(monkeypatch):
    rows = list(synthetic_toucan.generate(300, 0))
    counts = argument_counts.calls_by_argument_count(rows)  # the generated rows include malformed ones: skipped
    calls = []
    for row in rows:
        try:
            calls += [c for t in toucan.parse_row(row).turns for c in t.calls]
        except toucan.MalformedRow:
            pass
    assert sum(counts.values()) == len(calls) > 100 and set(counts) <= set(argument_counts.BUCKETS)
    assert counts["1"] == sum(len(c.arguments) == 1 for c in calls)
    monkeypatch.setattr(synthetic_phrasing, "OPTIONAL_SHARE", 0.0)
    required_only = argument_counts.calls_by_argument_count(synthetic_toucan.generate(300, 0))
    monkeypatch.setattr(synthetic_phrasing, "OPTIONAL_SHARE", 1.0)
    every_one = argument_counts.calls_by_argument_count(synthetic_toucan.generate(300, 0))
    assert mean_arguments(required_only) < mean_arguments(counts) < mean_arguments(every_one)
