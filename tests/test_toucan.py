"""Parsing real-schema rows: structure, parallel calls, and every malformation counted under its kind."""
import ast
import json

import pyarrow as pa
import pytest

from gemma_toolcall.dataset import toucan

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
    ("bad_messages", row([{"role": "system", "content": "s"}])),  # found by the fuzz test: no turn at all
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


RESPONSE = {"role": "tool_response", "content": "x"}


@pytest.mark.parametrize("where", ["response", "description", "arguments", "repr"])
def test_lone_surrogates_become_replacement_characters(where):
    """A string cut mid-emoji (`\\ud83d` alone) is what json.loads accepts and no UTF-8 writer can write: U+FFFD."""
    msgs, tools = [USER, call("srv-search"), RESPONSE, FINAL], TOOLS
    if where == "response":
        msgs[2] = {"role": "tool_response", "content": '{"n": "\\ud83d", "ok": "\\ud83d\\ude00", "bs": "\\\\ud83d"}'}
    elif where == "description":
        tools = TOOLS.replace('"description": "d"', '"description": "\\udc00"', 1)
    elif where == "arguments":
        msgs[1] = call("srv-search", '{"query": "\\ud83d"}')
    else:
        msgs[1] = {"role": "tool_call", "content": "{'name': 'srv-search', 'arguments': '{\"query\": \"\\ud83d\"}'}"}
    conv = toucan.parse_row(row(msgs, tools=tools))
    if where == "response":
        assert toucan.loads(conv.turns[2].results[0].content) == {"n": "\ufffd", "ok": "😀", "bs": "\\ud83d"}
    elif where == "description":
        assert conv.tools[0]["description"] == "\ufffd"
    else:
        assert conv.turns[1].calls[0].arguments == {"query": "\ufffd"}


def nested(levels, leaf="1"):
    return '{"a": ' * levels + leaf + "}" * levels


@pytest.mark.parametrize("levels", [toucan.MAX_DEPTH + 1, 1100, 3000])  # orjson refuses past 1024, json.loads ~1000
@pytest.mark.parametrize("where", ["arguments", "tools", "messages"])
def test_deep_nesting_is_a_drop(levels, where):
    msgs, tools = [USER, call("srv-search", nested(levels)), RESPONSE, FINAL], TOOLS
    if where == "tools":
        msgs[1], tools = call("srv-search"), f'[{{"name": "x", "parameters": {nested(levels)}}}]'
    elif where == "messages":
        msgs = "[" * levels + "]" * levels
    bad = row(msgs, tools=tools) if where != "messages" else {**row([USER]), "messages": msgs}
    with pytest.raises(toucan.MalformedRow) as e:
        toucan.parse_row(bad)
    assert e.value.kind == ("too_deep" if where != "messages" or levels > 1000 else "bad_messages")


def test_nesting_up_to_the_bound_is_kept():
    conv = toucan.parse_row(row([USER, call("srv-search", nested(toucan.MAX_DEPTH - 1)), RESPONSE, FINAL]))
    assert toucan.depth(conv.turns[1].calls[0].arguments) == toucan.MAX_DEPTH - 1


@pytest.mark.parametrize("args", ['{"x": NaN}', '{"x": Infinity}', '{"x": 1e400}'])
def test_numbers_json_has_not_are_not_json(args):
    with pytest.raises(toucan.MalformedRow) as e:
        toucan.parse_row(row([USER, call("srv-search", args), RESPONSE, FINAL]))
    assert e.value.kind == "arguments_not_json"


def test_a_row_without_a_model_turn_is_dropped():
    with pytest.raises(toucan.MalformedRow) as e:
        toucan.parse_row(row([USER]))
    assert e.value.kind == "no_model_turn"


FIVE = [{"name": f"srv-t{i}", "description": "d", "parameters": {"type": "object", "properties": {
    "name": {"type": "string"}, "kind": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}} for i in range(5)]
SPELLINGS = {
    "toucan": json.dumps([{"type": "function", "function": f} for f in FIVE]),
    "keys_reordered": json.dumps([{"function": f, "type": "function"} for f in FIVE]),
    "indented": json.dumps([{"type": "function", "function": f} for f in FIVE], indent=2),
    "compact": json.dumps([{"type": "function", "function": f} for f in FIVE], separators=(",", ":")),
    "no_wrapper": json.dumps(FIVE),
    "mixed": json.dumps([{"type": "function", "function": FIVE[0]}] + FIVE[1:]),
    "unwrapped_first": json.dumps(FIVE[:1] + [{"type": "function", "function": f} for f in FIVE[1:]]),
    "type_only": json.dumps([{"type": "function", "function": FIVE[0]}, {"type": "function"}]),
    "trailing_other": json.dumps([{"type": "function", "function": FIVE[0]}, {"d": {"e": {}}}]),
    "scalars": json.dumps([{"type": "function", "function": FIVE[0]}, 1, "x"]),
    "string_between": json.dumps([{"type": "function", "function": FIVE[0]}, "x", {"type": "function", "function": FIVE[1]}]),
    "list_between": json.dumps([{"type": "function", "function": FIVE[0]}, [], {"type": "function", "function": FIVE[1]}]),
    "nested_lookalike": json.dumps([{"type": "function", "function": {**FIVE[0], "parameters": {
        "default": [{"type": "function", "function": FIVE[1]}]}}}]),
    "empty": "[]", "spaced_empty": " [ ] ", "object": '{"a": 1, "b": 2}', "string": '"abc"',
}


def test_available_tools_equal_the_parsed_count_in_every_spelling():
    counts = toucan.count_available_tools(pa.array(list(SPELLINGS.values()))).to_pylist()
    parsed = [len(v) if isinstance(v, list) else 0 for v in map(json.loads, SPELLINGS.values())]
    assert dict(zip(SPELLINGS, counts)) == dict(zip(SPELLINGS, parsed))
    assert counts[list(SPELLINGS).index("no_wrapper")] == 5


def test_available_tools_of_text_that_is_not_json_are_counted_by_pattern():
    truncated = SPELLINGS["toucan"][:-40]
    assert toucan.count_available_tools(pa.array([truncated, None])).to_pylist() == [5, None]
