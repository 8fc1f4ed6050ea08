"""gemma_toolcall/failures.py sorts failed outputs by what went wrong, from BFCL's reasons and the expected held-out calls."""
import sys

from gemma_toolcall import failures


def bfcl(category, reason, calls=({"name": "f", "arguments": {}},)):
    return {"source": "bfcl", "category": category, "reason": reason, "calls": list(calls)}


def test_bfcl_reasons_sort_into_kinds():
    assert failures.bfcl_kind(bfcl("simple_python", "unparseable: call is not JSON")) == "format"
    assert failures.bfcl_kind(bfcl("irrelevance", "called f on an irrelevant question")) == "over_call"
    assert failures.bfcl_kind(bfcl("simple_python", "Wrong number of functions.", calls=())) == "no_call"
    assert failures.bfcl_kind(bfcl("parallel", "Wrong number of functions.")) == "count"
    assert failures.bfcl_kind(bfcl("simple_python", "Function name 'math.factorial' not found in model output.")) \
        == "name_dotted"
    assert failures.bfcl_kind(bfcl("multiple", "Function name 'area' not found in model output.")) == "name"
    # Parallel: the first sub-error stands for the output.
    reason = ("Could not find a matching function among index [0] of model output for index 1 of possible answers.; "
              "{'Model Result Index 0': {'error': [\"Incorrect type for parameter 'x'.\"]}}; "
              "Invalid value for parameter 'y'")
    assert failures.bfcl_kind(bfcl("parallel", reason)) == "type"
    assert failures.bfcl_kind(bfcl("simple_python", "Missing required parameter: 'n'.")) == "missing_arg"
    # with the function's parameters: a value under a name the function lacks is a wrong name, not a short call
    guessed = bfcl("simple_python", "Missing required parameter: 'n'.", calls=[{"name": "f", "arguments": {"num": 5}}])
    assert failures.bfcl_kind(guessed, {"f": {"n", "base"}}) == "wrong_key"
    short = bfcl("simple_python", "Missing required parameter: 'n'.", calls=[{"name": "f", "arguments": {"base": 2}}])
    assert failures.bfcl_kind(short, {"f": {"n", "base"}}) == "missing_arg"


def test_heldout_rows_compare_with_the_expected_calls():
    want = [{"name": "w-get", "arguments": {"city": "Oslo", "days": 2}}]
    row = lambda calls, **kw: {"format_valid": True, "needs_call": True, "calls": calls,  # noqa: E731
                               "name_match": [c["name"] for c in calls] == ["w-get"], **kw}
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Oslo", "days": "2"}}]), want) == "type"
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Rome", "days": 2}}]), want) == "value"
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Oslo"}}]), want) == "missing_arg"
    # the value is there under a guessed key: not a call that stopped short
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Oslo", "day": 2}}]), want) == "wrong_key"
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Oslo", "days": 2, "u": 1}}]), want) \
        == "extra_arg"
    assert failures.heldout_kind(row([{"name": "w-put", "arguments": {}}]), want) == "name"
    assert failures.heldout_kind(row([]), want) == "no_call"
    assert failures.heldout_kind(row([], format_valid=False), want) == "format"
    assert failures.heldout_kind({**row([{"name": "w-get", "arguments": {}}]), "needs_call": False}, []) == "over_call"


def test_heldout_questions_split_by_whether_they_name_each_parameter_and_hold_each_value():
    calls = [{"name": "dex-getTokenPools", "arguments": {"tokenAddress": "Lyon", "limit": 16}}]
    said = failures.said_in_question
    assert said("Top pools for token address Lyon, limit 16 of them.", calls) == \
        "names every parameter, every value as written"
    # "for Lyon": which parameter Lyon fills is not said.
    assert said("Top pools for Lyon, limit 16 of them.", calls) == "leaves a parameter unnamed, every value as written"
    dated = [{"name": "w-cloud", "arguments": {"start_date": "2025-01-26"}}]
    assert said("Word cloud with a start date of January 26, 2025.", dated) == \
        "names every parameter, a value rewritten (e.g. a date)"


def test_heldout_rows_split_by_how_many_arguments_they_expect():
    call = lambda **args: {"name": "f", "arguments": args}  # noqa: E731
    assert failures.argument_count([call()]) == failures.argument_count([call(a=1)]) == "0-1"
    assert failures.argument_count([call(a=1), call(b=2)]) == "2"  # counted over the row's calls together
    assert failures.argument_count([call(a=1, b=2, c=3)]) == "3+"


def test_heldout_rows_split_by_the_server_of_their_expected_call():
    # slugs hold '-' as tool names do: the longest known prefix is the server
    assert failures.server_of([{"name": "dexpaprika-getTokenPools", "arguments": {}}]) == "dexpaprika"
    assert failures.server_of([{"name": "old-school-runescape-wiki-and-data-server-search_objtypes",
                                "arguments": {}}]) == "old-school-runescape-wiki-and-data-server"
    assert failures.server_of([]) == "(no call)"
    split = {("base", f"s{i}"): {"n": n} for i, n in enumerate([30, 20, 10, 10, 10, 10, 10])}
    split.update({("tuned", k): v for (_, k), v in split.items()})
    assert failures.concentration(split) == "base: 100 held-out call rows from 7 servers; the 5 largest hold 80 (80%)"


def test_tables_count_each_parts_misses_by_kind(tmp_path, monkeypatch, capsys):
    """End to end on stand-in rows: the argument-count table holds each row once, as exact or as its kind of miss,
    and the per-argument table each expected argument once, as right, wrong, absent or unparsed."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gemma_toolcall.dataset import toucan
    from gemma_toolcall.standin import sft as standin_sft

    rows, calls = [], {}
    for row in standin_sft.generate(200, seed=3):
        try:
            first = next(t for t in toucan.parse_row(row).turns if t.role == "model")
        except toucan.MalformedRow:
            continue
        if len(first.calls) == 1 and len(first.calls[0].arguments) >= 3:
            rows.append(row)
            calls[row["uuid"]] = first.calls[0]
    assert len(rows) >= 2
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "validation.parquet")
    samples = []
    for i, row in enumerate(rows[:2]):
        call = calls[row["uuid"]]
        args = dict(call.arguments)
        if i:  # the second states a value under a guessed key
            key = next(iter(args))
            args[key + "_x"] = args.pop(key)
        samples.append({"model": "tuned", "source": "heldout", "category": "single", "id": row["uuid"],
                        "output": "", "format_valid": True, "needs_call": True, "ended_turn": True,
                        "calls": [{"name": call.name, "arguments": args}], "name_match": True, "passed": not i,
                        "reason": "names only"})
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    split = str(tmp_path / "validation.parquet")
    monkeypatch.setattr(sys, "argv", ["failures.py", str(tmp_path / "samples.jsonl"), "--expected", split,
                                      "--train", split])
    failures.main()
    out = capsys.readouterr().out
    assert "| model | held-out call rows expecting ... arguments | n | exact match | wrong_key |" in out
    assert "| tuned | 3+ | 2 | 1 | 1 |" in out
    # argument by argument: every expected argument right but the renamed one, which is absent from its call
    per_kind = [line.split(" | ")[2:] for line in out.splitlines() if line.startswith("| tuned | ")
                and line.count("|") == 9]
    n, right, wrong, absent, unparsed = (sum(int(cells[i]) for cells in per_kind) for i in range(5))
    expected_args = sum(len(calls[row["uuid"]].arguments) for row in rows[:2])
    assert (n, right, wrong, absent, unparsed) == (expected_args, expected_args - 1, 0, 1, 0)
    servers = {failures.server_of([{"name": calls[row["uuid"]].name}]) for row in rows[:2]}
    assert "| model | held-out call rows from the server ... | n | exact match | wrong_key |" in out
    assert f"tuned: 2 held-out call rows from {len(servers)} servers" in out
    in_train = sum(len(c.arguments) for c in calls.values())  # the --train split here is the same rows
    assert f"in train split (of {in_train})" in out
