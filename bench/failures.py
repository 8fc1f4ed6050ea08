"""What limits a model: every failed output of an evaluation (`eval_samples.jsonl`) sorted into one kind, counted per
model and category, with one example output per kind.

    python bench/failures.py reports/quality/eval_samples.jsonl

Kinds, first match wins: `format` (the turn does not parse: unquoted strings, broken JSON), `over_call` (a call
where none is wanted), `no_call` (no call where one is), `count` (wrong number of calls: one call where a parallel
question wants two), `name` (a wrong function; `name_dotted` when the right one has a dot in its name), `missing_arg`,
`extra_arg`, `type` (e.g. "5" for 5), `value` (a wrong value), `other` (anything else, e.g. a checker error).
BFCL's reasons come from its AST checker; held-out rows are compared here with the expected calls.

With --expected, a second table splits the held-out call rows by what their question says: whether it names every
parameter of the expected calls (each word of `tokenAddress` or `min_word_length` appears in it) and holds every
scalar value as written. A row whose question says "for Lyon, in Edinburgh" for `address` and `tokenAddress`
cannot be matched exactly by any model. A third splits them by how many arguments their expected calls hold
(0-1, 2, 3+).
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict

KINDS = ("format", "over_call", "no_call", "count", "name", "name_dotted", "missing_arg", "extra_arg", "type",
         "value", "other")


MARKERS = (("Function name", "name"), ("Missing required parameter", "missing_arg"),
           ("Optional parameter", "missing_arg"), ("Missing dict key", "missing_arg"),
           ("Unexpected parameter", "extra_arg"), ("Unexpected dict key", "extra_arg"), ("Incorrect type", "type"),
           ("Nested type", "type"), ("Invalid value", "value"))


def bfcl_kind(s: dict) -> str:
    reason = s["reason"]
    if reason.startswith("unparseable"):
        return "format"
    if s["category"] == "irrelevance":
        return "over_call"
    if not s["calls"]:
        return "no_call"
    if "Wrong number of functions" in reason:
        return "count"
    # A parallel question's reason lists one sub-error per unmatched call: the first one stands for the output.
    found = [(reason.find(marker), kind) for marker, kind in MARKERS if marker in reason]
    if not found:
        return "other"
    at, kind = min(found)
    if kind == "name" and "." in reason[at:].split("not found", 1)[0]:
        return "name_dotted"  # BFCL quotes the expected name
    return kind


def heldout_kind(s: dict, expected: list[dict] | None) -> str:
    if not s["format_valid"]:
        return "format"
    if not s["needs_call"]:
        return "over_call"
    if not s["calls"]:
        return "no_call"
    if expected is None:  # samples do not carry the expected calls: the reason says names or not
        return "value" if s["name_match"] else "name"
    if len(s["calls"]) != len(expected):
        return "count"
    if not s["name_match"]:
        return "name"
    got = {c["name"]: c["arguments"] for c in s["calls"]}
    for want in expected:
        args = got.get(want["name"], {})
        if set(want["arguments"]) - set(args):
            return "missing_arg"
        if set(args) - set(want["arguments"]):
            return "extra_arg"
        for k, v in want["arguments"].items():
            if args[k] != v:
                return "type" if str(args[k]) == str(v) else "value"
    return "other"


def said_in_question(question: str, calls: list[dict]) -> str:
    """Which held-out call rows a reader of the question alone could match exactly."""
    q = question.lower()
    words = lambda name: re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())  # noqa: E731
    named = all(w in q for c in calls for k in c["arguments"] for w in words(k) if w)
    verbatim = all(str(v).lower() in q for c in calls for v in c["arguments"].values()
                   if not isinstance(v, (dict, list)))
    return ("names every parameter" if named else "leaves a parameter unnamed") + \
        (", every value as written" if verbatim else ", a value rewritten (e.g. a date)")


def argument_count(calls: list[dict]) -> str:
    """How many arguments the expected calls of a held-out row hold together: 0-1, 2 or 3+."""
    n = sum(len(c["arguments"]) for c in calls)
    return "0-1" if n <= 1 else "2" if n == 2 else "3+"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("samples")
    ap.add_argument("--expected", help="the validation parquet the held-out rows came from, to sort their argument "
                    "errors (without it: name or value)")
    args = ap.parse_args()
    expected, questions = {}, {}
    if args.expected:
        import pyarrow.parquet as pq

        from gemma_toolcall import toucan
        for row in pq.read_table(args.expected).to_pylist():
            try:
                conv = toucan.parse_row(row)
            except toucan.MalformedRow:
                continue
            first = next(t for t in conv.turns if t.role == "model")
            expected[row["uuid"]] = [{"name": c.name, "arguments": c.arguments} for c in first.calls]
            questions[row["uuid"]] = conv.turns[0].text
    # Held-out call rows split two ways: {table heading: {(model, part): Counter(n, exact)}}.
    splits = {"whose question ...": defaultdict(Counter), "expecting ... arguments": defaultdict(Counter)}
    counts, totals, not_ended, examples = defaultdict(Counter), Counter(), Counter(), {}
    for line in open(args.samples, encoding="utf-8"):
        s = json.loads(line)
        group = (s["model"], "heldout" if s["source"] == "heldout" else s["category"])
        totals[group] += 1
        if s["source"] == "heldout" and s["needs_call"] and s["id"] in questions:
            parts = (said_in_question(questions[s["id"]], expected[s["id"]]), argument_count(expected[s["id"]]))
            for split, part in zip(splits.values(), parts):
                split[(s["model"], part)]["n"] += 1
                split[(s["model"], part)]["exact"] += s["passed"]
        not_ended[group] += not s["ended_turn"]
        if s["passed"]:
            counts[group]["passed"] += 1
            continue
        kind = bfcl_kind(s) if s["source"] == "bfcl" else heldout_kind(s, expected.get(s["id"]) if expected else None)
        counts[group][kind] += 1
        examples.setdefault((group[0], kind), (group[1], s["output"][:200], s["reason"][:160]))
    header = ["model", "category", "n", "passed", *KINDS, "not_ended"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group in sorted(totals, key=lambda g: (g[0] != "base", g[1])):
        c = counts[group]
        print("| " + " | ".join([*group, str(totals[group]), str(c["passed"]), *(str(c[k]) for k in KINDS),
                                  str(not_ended[group])]) + " |")
    for heading, split in splits.items():
        if split:
            print(f"\n| model | held-out call rows {heading} | n | exact match |\n|---|---|---|---|")
            for (model, part), c in sorted(split.items(), key=lambda kv: (kv[0][0] != "base", kv[0][1])):
                print(f"| {model} | {part} | {c['n']} | {c['exact']} |")
    print()
    for (model, kind), (category, output, reason) in sorted(examples.items()):
        print(f"{model} {kind} ({category}): {output!r}\n    reason: {reason}")


if __name__ == "__main__":
    main()
