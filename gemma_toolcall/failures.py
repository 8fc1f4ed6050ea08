"""What limits a model: every failed output of an evaluation (`eval_samples.jsonl`) sorted into one kind, counted per
model and category, with one example output per kind.

    python -m gemma_toolcall.failures metrics/eval_samples.jsonl

Kinds, first match wins: `format` (the turn does not parse: unquoted strings, broken JSON), `over_call` (a call
where none is wanted), `no_call` (no call where one is), `count` (wrong number of calls: one call where a parallel
question wants two), `name` (a wrong function; `name_dotted` when the right one has a dot in its name), `wrong_key`
(an expected argument is missing and one the expected call or the function lacks is there, e.g. `page` for
`pageSize`: a value stated under a name the model guessed; on BFCL only with --bfcl), `missing_arg` (an expected
argument is missing, nothing added), `extra_arg`, `type` (e.g. "5" for 5), `value` (a wrong value), `other`
(anything else, e.g. a checker error).
BFCL's reasons come from its AST checker; held-out rows are compared here with the expected calls.

With --expected, a second table splits the held-out call rows by what their question says: whether it names every
parameter of the expected calls (each word of `tokenAddress` or `min_word_length` appears in it) and holds every
scalar value as written. A row whose question says "for Lyon, in Edinburgh" for `address` and `tokenAddress`
cannot be matched exactly by any model. A third splits them by how many arguments their expected calls hold
(0-1, 2, 3+), and a fourth by the server of their expected call: held-out rows come from a few servers never seen
in training, so one hard server moves the exact match by several points, and the line under that table says how
concentrated the rows are. The three tables count each part's misses by kind. A fifth takes the expected
arguments one by one, by the kind of parameter the stand-in sees (`phrasing.params_of`: date, flag,
count, word, ...), and counts each as right, wrong, absent from the call, or in an output that does not parse; with
--train, beside how many arguments of each kind the train split's first model turns hold.

    python -m gemma_toolcall.failures metrics/eval_samples.jsonl --expected data/filtered/validation.parquet \
        --bfcl data/bfcl --train data/filtered/train.parquet
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict

KINDS = ("format", "over_call", "no_call", "count", "name", "name_dotted", "wrong_key", "missing_arg", "extra_arg",
         "type", "value", "other")


MARKERS = (("Function name", "name"), ("Missing required parameter", "missing_arg"),
           ("Optional parameter", "missing_arg"), ("Missing dict key", "missing_arg"),
           ("Unexpected parameter", "extra_arg"), ("Unexpected dict key", "extra_arg"), ("Incorrect type", "type"),
           ("Nested type", "type"), ("Invalid value", "value"))


def bfcl_kind(s: dict, parameters: dict | None = None) -> str:
    """`parameters` (function name -> its parameter names, from the question) tells a call that stopped short from
    one that put a value under a name the function does not have: BFCL reports both as a missing parameter."""
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
    if kind == "missing_arg" and parameters and any(set(c["arguments"]) - parameters.get(c["name"], set())
                                                    for c in s["calls"]):
        return "wrong_key"
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
        missing, extra = set(want["arguments"]) - set(args), set(args) - set(want["arguments"])
        if missing:
            return "wrong_key" if extra else "missing_arg"
        if extra:
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


BY_SERVER = "from the server ..."


def server_of(calls: list[dict]) -> str:
    """The server slug of a held-out row's first expected call (`<slug>-<tool>`, as filter splits rows by)."""
    from gemma_toolcall.dataset import mcp_catalogue

    return mcp_catalogue.tool_server(calls[0]["name"]) if calls else "(no call)"


def concentration(split: dict) -> str:
    """How many servers the held-out call rows come from, and the share the five largest hold (one model's rows)."""
    model = min(m for m, _ in split)
    sizes = sorted((c["n"] for (m, _), c in split.items() if m == model), reverse=True)
    return (f"{model}: {sum(sizes)} held-out call rows from {len(sizes)} servers; the 5 largest hold "
            f"{sum(sizes[:5])} ({sum(sizes[:5]) / max(sum(sizes), 1):.0%})")


def parameter_kinds(tools: list[dict]) -> dict[str, dict[str, str]]:
    """Function name -> {parameter: its kind as the stand-in sees it (`phrasing.params_of`: date, flag,
    count, word, ...)}; a parameter the stand-in cannot phrase is left out (the tables count it as `other`)."""
    from gemma_toolcall.dataset import mcp_catalogue
    from gemma_toolcall.standin import phrasing

    kinds = {}
    for t in tools:
        tool = mcp_catalogue.Tool("", "", t["name"], t.get("description", ""), t.get("parameters") or {})
        kinds[t["name"]] = {p.name: p.kind for p in phrasing.params_of(tool) or ()}
    return kinds


def argument_outcome(s: dict, name: str, key: str, value) -> str:
    """What an output did with one expected argument: right, wrong, absent, or unparsed (the turn does not parse)."""
    if not s["format_valid"]:
        return "unparsed"
    args = next((c["arguments"] for c in s["calls"] if c["name"] == name), {})
    return "absent" if key not in args else "right" if args[key] == value else "wrong"


def first_model_turns(parquet: str):
    """(uuid, conversation, its first model turn) of every row of a split that parses."""
    import pyarrow.parquet as pq

    from gemma_toolcall.dataset import toucan
    for row in pq.read_table(parquet).to_pylist():
        try:
            conv = toucan.parse_row(row)
        except toucan.MalformedRow:
            continue
        yield row["uuid"], conv, next(t for t in conv.turns if t.role == "model")


def report(samples: list[dict], expected_parquet=None, bfcl_dir=None, train_parquet=None) -> str:
    """The tables and examples above as Markdown, for the samples of one evaluation (both models)."""
    lines = []
    out = lines.append
    parameters = {}  # BFCL question id -> {function name: its parameter names}
    if bfcl_dir:
        from pathlib import Path

        from gemma_toolcall import bfcl
        for category in sorted({s["category"] for s in samples if s["source"] == "bfcl"}):
            for q in bfcl.load(Path(bfcl_dir), category):
                parameters[q["id"]] = {t["name"]: set(t["parameters"].get("properties", {})) for t in bfcl.tools(q)}
    expected, questions, kinds = {}, {}, {}
    if expected_parquet:
        for uuid, conv, first in first_model_turns(expected_parquet):
            expected[uuid] = [{"name": c.name, "arguments": c.arguments} for c in first.calls]
            questions[uuid] = conv.turns[0].text
            kinds[uuid] = parameter_kinds(conv.tools)
    in_train = Counter()  # kind of parameter -> arguments of that kind in the train split's first model turns
    if train_parquet:
        for _, conv, first in first_model_turns(train_parquet):
            train_kinds = parameter_kinds(conv.tools) if first.calls else {}
            in_train.update(train_kinds.get(c.name, {}).get(k, "other") for c in first.calls for k in c.arguments)
    # Held-out call rows split three ways: {table heading: {(model, part): Counter(n, exact)}}.
    splits = {"whose question ...": defaultdict(Counter), "expecting ... arguments": defaultdict(Counter),
              BY_SERVER: defaultdict(Counter)}
    by_argument = defaultdict(Counter)  # (model, kind of parameter) -> Counter(n, right, wrong, absent, unparsed)
    counts, totals, not_ended, examples = defaultdict(Counter), Counter(), Counter(), {}
    for s in samples:
        group = (s["model"], "heldout" if s["source"] == "heldout" else s["category"])
        totals[group] += 1
        if s["passed"]:
            kind = None
        elif s["source"] == "bfcl":
            kind = bfcl_kind(s, parameters.get(s["id"]))
        else:
            kind = heldout_kind(s, expected.get(s["id"]) if expected else None)
        if s["source"] == "heldout" and s["needs_call"] and s["id"] in questions:
            parts = (said_in_question(questions[s["id"]], expected[s["id"]]), argument_count(expected[s["id"]]),
                     server_of(expected[s["id"]]))
            for split, part in zip(splits.values(), parts):
                split[(s["model"], part)]["n"] += 1
                split[(s["model"], part)]["exact" if s["passed"] else kind] += 1
            for call in expected[s["id"]]:
                for key, value in call["arguments"].items():
                    c = by_argument[(s["model"], kinds[s["id"]].get(call["name"], {}).get(key, "other"))]
                    c["n"] += 1
                    c[argument_outcome(s, call["name"], key, value)] += 1
        not_ended[group] += not s["ended_turn"]
        if s["passed"]:
            counts[group]["passed"] += 1
            continue
        counts[group][kind] += 1
        examples.setdefault((group[0], kind), (group[1], s["output"][:200], s["reason"][:160]))
    header = ["model", "category", "n", "passed", *KINDS, "not_ended"]
    out("| " + " | ".join(header) + " |")
    out("|" + "---|" * len(header))
    for group in sorted(totals, key=lambda g: (g[0] != "base", g[1])):
        c = counts[group]
        out("| " + " | ".join([*group, str(totals[group]), str(c["passed"]), *(str(c[k]) for k in KINDS),
                                  str(not_ended[group])]) + " |")
    for heading, split in splits.items():
        if split:
            missed = [k for k in KINDS if any(c[k] for c in split.values())]  # the kinds of miss that occur
            out(f"\n| model | held-out call rows {heading} | n | exact match | " + " | ".join(missed) + " |")
            out("|" + "---|" * (4 + len(missed)))
            by_size = heading == BY_SERVER  # largest first; the other tables' parts have their own order
            for (model, part), c in sorted(split.items(), key=lambda kv: (kv[0][0] != "base", -kv[1]["n"] * by_size,
                                                                          kv[0][1])):
                cells = [model, part, c["n"], c["exact"], *(c[k] for k in missed)]
                out("| " + " | ".join(map(str, cells)) + " |")
            if by_size:
                out("\n" + concentration(split))
    if by_argument:
        outcomes = ("right", "wrong", "absent", "unparsed")
        train = [f"in train split (of {sum(in_train.values())})"] if train_parquet else []
        out("\n| model | expected held-out arguments of the kind ... | n | " + " | ".join([*outcomes, *train]) + " |")
        out("|" + "---|" * (3 + len(outcomes) + len(train)))
        for (model, kind), c in sorted(by_argument.items(), key=lambda kv: (kv[0][0] != "base", -kv[1]["n"], kv[0])):
            cells = [model, kind, c["n"], *(c[o] for o in outcomes), *([in_train[kind]] if train_parquet else [])]
            out("| " + " | ".join(map(str, cells)) + " |")
    out("")
    for (model, kind), (category, output, reason) in sorted(examples.items()):
        out(f"{model} {kind} ({category}): {output!r}\n    reason: {reason}")

    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("samples")
    ap.add_argument("--expected", help="the validation parquet the held-out rows came from, to sort their argument "
                    "errors (without it: name or value)")
    ap.add_argument("--bfcl", help="the BFCL data folder (data/bfcl), to tell a wrong parameter name from a missing "
                    "parameter")
    ap.add_argument("--train", help="the train split (data/filtered/train.parquet): the fourth table then counts each "
                    "kind's arguments in its first model turns too, what training could learn from")
    args = ap.parse_args()
    samples = [json.loads(line) for line in open(args.samples, encoding="utf-8")]
    print(report(samples, args.expected, args.bfcl, args.train), end="")


if __name__ == "__main__":
    main()
