"""bench/failures.py sorts failed outputs by what went wrong, from BFCL's reasons and the expected held-out calls."""
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import failures  # noqa: E402


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


def test_heldout_rows_compare_with_the_expected_calls():
    want = [{"name": "w-get", "arguments": {"city": "Oslo", "days": 2}}]
    row = lambda calls, **kw: {"format_valid": True, "needs_call": True, "calls": calls,  # noqa: E731
                               "name_match": [c["name"] for c in calls] == ["w-get"], **kw}
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Oslo", "days": "2"}}]), want) == "type"
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Rome", "days": 2}}]), want) == "value"
    assert failures.heldout_kind(row([{"name": "w-get", "arguments": {"city": "Oslo"}}]), want) == "missing_arg"
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
