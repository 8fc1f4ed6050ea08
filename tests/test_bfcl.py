"""BFCL's data and its own AST checker, from the pinned bfcl-eval wheel fetched without its dependencies."""
import pytest

from gemma_toolcall import bfcl
from gemma_toolcall.chat_format import parse_model_turn, render_model_turn, render_prompt
from gemma_toolcall.dataset.toucan import ToolCall


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("bfcl")
    bfcl.fetch(out)  # `pip download bfcl-eval==2026.3.23 --no-deps` from the package index
    return out


@pytest.fixture(scope="module")
def score(root):
    return bfcl.Scorer(root)


def first(root, category):
    return bfcl.load(root, category, limit=1)[0]


def calls_of(answer):
    """The first acceptable value of every parameter that must be given: a correct output."""
    calls = []
    for entry in answer:
        (name, params), = entry.items()
        args = {k: v[0] for k, v in params.items() if v and v[0] != ""}
        calls.append(ToolCall(name, args))
    return calls


def test_category_sizes(root):
    sizes = {c: len(bfcl.load(root, c)) for c in ("simple_python", "multiple", "parallel", "parallel_multiple",
                                                  "irrelevance")}
    assert sizes == {"simple_python": 400, "multiple": 200, "parallel": 200, "parallel_multiple": 200,
                     "irrelevance": 240}
    assert first(root, "irrelevance")["possible_answer"] is None


def test_simple_rules(root, score):
    q = first(root, "simple_python")  # calculate_triangle_area(base=10, height=5, unit="units" or omitted)
    good = calls_of(q["possible_answer"])
    assert score("simple_python", q, good) == (True, "ok")
    name, args = good[0].name, good[0].arguments
    cases = {
        "wrong name": [ToolCall("triangle_area", args)],
        "missing required": [ToolCall(name, {k: v for k, v in args.items() if k != "height"})],
        "extra param": [ToolCall(name, {**args, "colour": "red"})],
        "wrong type": [ToolCall(name, {**args, "base": "10"})],
        "wrong value": [ToolCall(name, {**args, "base": 11})],
        "two calls": good + good,
        "no call": [],
    }
    for case, calls in cases.items():
        passed, reason = score("simple_python", q, calls)
        assert not passed and reason, case
    assert score("simple_python", q, [ToolCall(name, {**args, "unit": "units"})])[0]  # an optional, allowed value


def test_int_is_accepted_where_float_is_expected(root, score):
    for q in bfcl.load(root, "simple_python"):
        floats = [p for p, s in q["function"][0]["parameters"]["properties"].items() if s.get("type") == "float"]
        answer = q["possible_answer"][0]
        (_, params), = answer.items()
        values = [v for v in params.get(floats[0], []) if v != ""] if floats else []
        if values and all(isinstance(v, float) and v.is_integer() for v in values):
            call = calls_of(q["possible_answer"])[0]
            as_int = ToolCall(call.name, {**call.arguments, floats[0]: int(values[0])})
            assert score("simple_python", q, [as_int])[0]
            return
    pytest.fail("no simple_python question with an integral float answer")


def test_parallel_and_multiple(root, score):
    q = first(root, "parallel")
    good = calls_of(q["possible_answer"])
    assert len(good) > 1 and score("parallel", q, good)[0]
    assert score("parallel", q, list(reversed(good)))[0]  # any order
    assert not score("parallel", q, good[:1])[0]
    q = first(root, "multiple")
    good = calls_of(q["possible_answer"])
    assert score("multiple", q, good)[0]
    other = next(f["name"] for f in q["function"] if f["name"] != good[0].name)
    assert not score("multiple", q, [ToolCall(other, good[0].arguments)])[0]
    q = first(root, "parallel_multiple")
    good = calls_of(q["possible_answer"])
    assert score("parallel_multiple", q, list(reversed(good)))[0]


def test_irrelevance(root, score):
    q = first(root, "irrelevance")
    assert score("irrelevance", q, []) == (True, "no call")
    assert not score("irrelevance", q, [ToolCall(q["function"][0]["name"], {})])[0]


def test_bfcl_prompt_and_round_trip_through_our_format(root, score):
    """Dotted names and `"type": "dict"` schemas survive rendering, and a rendered correct answer scores."""
    q = next(q for q in bfcl.load(root, "simple_python") if "." in q["function"][0]["name"])
    prompt = render_prompt(bfcl.tools(q), bfcl.user_text(q))
    assert '"type": "dict"' in prompt and q["function"][0]["name"] in prompt and bfcl.LANGUAGE_HINT.strip() in prompt
    good = calls_of(q["possible_answer"])
    parsed = parse_model_turn(render_model_turn("", good, "pretty") + "<end_of_turn>")
    assert parsed.format_valid and score("simple_python", q, parsed.calls)[0]
