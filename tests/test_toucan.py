"""Parsing real-schema rows: structure, parallel calls, and every malformation counted under its kind."""
import ast
import json

import pyarrow as pa
import pytest

from gemma_toolcall import toucan

TOOLS = json.dumps([{"type": "function", "function": {"name": "srv-search", "description": "d", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
    {"type": "function", "function": {"name": "srv-fetch", "description": "d", "parameters": {}}}])


def call(name, args='{"query": "aspirin"}'):
    return {"role": "tool_call", "content": repr({"name": name, "arguments": args})}


def row(msgs, **kw):
    base = {"uuid": "u" * 36, "subset_name": "single-turn-original", "question": "q", "target_tools": "search",
            "tools": TOOLS, "messages": json.dumps(msgs, ensure_ascii=False)}
    return {**base, **kw}


USER = {"role": "user", "content": "Find aspirin's properties and bioassays."}
FINAL = {"role": "assistant", "content": "Done."}


def test_parallel_calls_pair_with_responses_by_position():
    conv = toucan.parse_row(row([USER, {"role": "assistant", "content": "Searching."}, call("srv-search"),
                                 call("srv-fetch", "{}"), {"role": "tool_response", "content": "A"},
                                 {"role": "tool_response", "content": "B"}, FINAL]))
    assert [t.role for t in conv.turns] == ["user", "model", "tool", "model"]
    model, tool = conv.turns[1], conv.turns[2]
    assert model.text == "Searching." and [c.name for c in model.calls] == ["srv-search", "srv-fetch"]
    assert model.calls[0].arguments == {"query": "aspirin"}
    assert [(r.name, r.content) for r in tool.results] == [("srv-search", "A"), ("srv-fetch", "B")]
    assert [t["name"] for t in conv.tools] == ["srv-search", "srv-fetch"]


def test_apostrophes_in_python_repr_calls():
    conv = toucan.parse_row(row([USER, call("srv-search", json.dumps({"query": "Alzheimer's \"disease\""})),
                                 {"role": "tool_response", "content": "x"}, FINAL]))
    assert conv.turns[1].calls[0].arguments == {"query": 'Alzheimer\'s "disease"'}


@pytest.mark.parametrize("args", [
    {"query": "aspirin"}, {}, {"q": "l'eau"}, {"q": 'say "hi"'}, {"q": "a\\b"}, {"q": "line\nbreak"},
    {"q": "日本語", "n": [1, 2.5, None, True]}, {"q": "tab\t", "emoji": "🙂"},
])
def test_tool_call_fast_path_equals_literal_eval(args):
    """The regex shortcut must give exactly what ast.literal_eval gives, whatever the repr had to escape."""
    content = repr({"name": "srv-search", "arguments": json.dumps(args, ensure_ascii=False)})
    expected = ast.literal_eval(content)
    assert toucan.parse_tool_call(content) == toucan.ToolCall(expected["name"], json.loads(expected["arguments"]))


@pytest.mark.parametrize("kind, bad", [
    ("missing_value", row([USER, FINAL], question=None)),
    ("invalid_json", row([USER, FINAL], messages='[{"role": "user", "content": "trunc')),
    ("invalid_json", row([USER, FINAL], tools='[{"type": "function"')),
    ("arguments_not_json", row([USER, call("srv-search", "{query: aspirin}"), {"role": "tool_response", "content": "x"}, FINAL])),
    ("bad_tool_call", row([USER, {"role": "tool_call", "content": "{'name': 'srv-search', 'arguments': "}, FINAL])),
    ("call_without_response", row([USER, call("srv-search"), FINAL])),
    ("response_without_call", row([USER, {"role": "tool_response", "content": "x"}, FINAL])),
    ("empty_content", row([USER, {"role": "assistant", "content": "  "}])),
    ("unknown_role", row([USER, {"role": "function", "content": "x"}])),
    ("bad_messages", row([FINAL, USER])),
])
def test_malformed_rows_raise_their_kind(kind, bad):
    with pytest.raises(toucan.MalformedRow) as e:
        toucan.parse_row(bad)
    assert e.value.kind == kind


def test_structural_counts_equal_parsed_counts():
    msgs = [USER, call("srv-search", json.dumps({"query": '"role": "user" inside a string'})),
            {"role": "tool_response", "content": '{"role": "user", "type": "function"}'}, FINAL, USER, FINAL]
    messages = pa.array([json.dumps(msgs), None, "[]"])
    assert toucan.count_user_turns(messages).to_pylist() == [2, None, 0]
    assert toucan.count_available_tools(pa.array([TOOLS, "[]"])).to_pylist() == [2, 0]
    assert toucan.count_target_tools(pa.array(["a, b", "a", "", "S::a, S::b, T::c"])).to_pylist() == [2, 1, 0, 3]
