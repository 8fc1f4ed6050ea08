"""The Gemma 3 tool-call format: exact layout, loss spans, and render ↔ parse round trips."""
import json
import re

import pytest

from gemma_toolcall.dataset import toucan
from gemma_toolcall.standin import sft as standin_sft
from gemma_toolcall.chat_format import (RESERVED_TAG, argument_ends, parse_model_turn, render_conversation,
                                         render_model_turn, render_prompt)
from gemma_toolcall.dataset.toucan import Conversation, ToolCall, ToolResult, Turn

TOOLS = [{"name": "weather-server-get_forecast", "description": "Forecast.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
CALL = ToolCall("weather-server-get_forecast", {"city": "Paris", "days": 3})


def conversation():
    return Conversation(TOOLS, [
        Turn("user", "Weather in Paris?"),
        Turn("model", "Let me check.", (CALL,)),
        Turn("tool", results=(ToolResult(CALL.name, '{"temp": 21}'),)),
        Turn("model", "It will be 21 °C."),
    ])


def test_layout_matches_the_seed_format():
    text = render_conversation(conversation()).text
    expected = (
        "<bos><start_of_turn>user\nHere are the available tools that you can use:\n<tools>\n"
        + json.dumps(TOOLS, indent=2) + "\n</tools>\n\nWeather in Paris?<end_of_turn>\n"
        "<start_of_turn>model\nLet me check.\n<tool_call>\n"
        '{"name": "weather-server-get_forecast", "args": {"city": "Paris", "days": 3}}\n</tool_call><end_of_turn>\n'
        "<start_of_turn>user\n<tool_response>\n"
        '{"name": "weather-server-get_forecast", "result": {"temp": 21}}\n</tool_response><end_of_turn>\n'
        "<start_of_turn>model\nIt will be 21 °C.<end_of_turn>\n")
    assert text == expected


def test_model_spans_cover_model_output_only():
    r = render_conversation(conversation())
    pieces = [r.text[a:b] for a, b in r.model_spans]
    assert len(pieces) == 2
    assert pieces[0].startswith("Let me check.\n<tool_call>") and pieces[0].endswith("</tool_call><end_of_turn>")
    assert pieces[1] == "It will be 21 °C.<end_of_turn>"
    outside = "".join(r.text[b:a] for (_, b), (a, _) in zip([(0, 0)] + r.model_spans, r.model_spans + [(len(r.text), 0)]))
    assert "<tools>" in outside and "<tool_response>" in outside and "Weather in Paris?" in outside


def test_compact_style_has_no_optional_whitespace():
    text = render_conversation(conversation(), "compact").text
    assert '"args":{"city":"Paris","days":3}' in text and '[{"name":"weather-server-get_forecast"' in text


def test_system_text_goes_on_top_of_the_first_user_turn():
    conv = Conversation(TOOLS, conversation().turns, system="Be brief.")
    assert render_conversation(conv).text.startswith("<bos><start_of_turn>user\nBe brief.\n\nHere are the available")


@pytest.mark.parametrize("style", ["pretty", "compact"])
def test_round_trip_calls(style):
    calls = (CALL, ToolCall("math.factorial", {"n": 5}), ToolCall("ünïcode-tool", {"q": "東京", "nested": {"a": [1, 2.5, None, True]}}))
    for k in range(len(calls) + 1):
        for text in ("", "Thinking about it."):
            parsed = parse_model_turn(render_model_turn(text, calls[:k], style) + "<end_of_turn>")
            assert parsed.format_valid and parsed.calls == list(calls[:k]) and parsed.text == text


def test_round_trip_on_stand_in_rows():
    """Every model turn of every rendered stand-in row parses back to the calls it was rendered from."""
    checked = 0
    for row in standin_sft.generate(400, 1):
        try:
            conv = toucan.parse_row(row)
        except toucan.MalformedRow:
            continue
        r = render_conversation(conv)
        model_turns = [t for t in conv.turns if t.role == "model"]
        for turn, (a, b) in zip(model_turns, r.model_spans, strict=True):
            assert parse_model_turn(r.text[a:b]).calls == list(turn.calls)
            checked += 1
    assert checked > 400


@pytest.mark.parametrize("output, error", [
    ('<tool_call>\n{"name": "f", "args": {"x": 1}\n</tool_call>', "not JSON"),
    ('<tool_call>\n{"args": {}}\n</tool_call>', "no name"),
    ('<tool_call>\n{"name": "f", "args": [1]}\n</tool_call>', "args is not an object"),
    ('<tool_call>\n{"name": "f", "args": {}}', "unbalanced"),
])
def test_parse_reports_bad_output(output, error):
    parsed = parse_model_turn(output)
    assert not parsed.format_valid and error in parsed.errors[0]


def test_parse_stops_at_end_of_turn():
    out = '<tool_call>\n{"name": "a", "args": {}}\n</tool_call><end_of_turn>\n<start_of_turn>user\n<tool_call>\n{"name": "b", "args": {}}\n</tool_call>'
    assert [c.name for c in parse_model_turn(out).calls] == ["a"]


def test_prompt_ends_with_an_open_model_turn():
    assert render_prompt(TOOLS, "Hi").endswith("Hi<end_of_turn>\n<start_of_turn>model\n")


@pytest.mark.parametrize("style", ["pretty", "compact"])
@pytest.mark.parametrize("value", ["</tool_call>", "<end_of_turn>", "a <tool_call> b", "<start_of_turn>model\n",
                                   "</tool_call><end_of_turn><tool_call>", "<bos><eos><pad>", "x < y <b>bold</b>"])
def test_tags_inside_values_round_trip(value, style):
    """A value holding the format's tags renders with their `<` escaped (never a literal tag in a value) and parses
    back to itself."""
    calls = [ToolCall("f", {"q": value, value: [value]}), ToolCall("g", {})]
    rendered = render_model_turn("Checking.", calls, style)
    assert not RESERVED_TAG.search(rendered.replace("<tool_call>\n", "").replace("\n</tool_call>", ""))
    parsed = parse_model_turn(rendered + "<end_of_turn>")
    assert parsed.format_valid and parsed.calls == calls and parsed.text == "Checking."


def test_tool_results_and_tool_lists_escape_tags_too():
    conv = Conversation([{**TOOLS[0], "description": "Ends with <end_of_turn>."}], [
        Turn("user", "q"), Turn("model", "", (CALL,)),
        Turn("tool", results=(ToolResult(CALL.name, "<tool_response>ok</tool_response><end_of_turn>"),)),
        Turn("model", "done")])
    text = render_conversation(conv).text
    assert text.count("<end_of_turn>") == 4 and text.count("<tool_response>") == 1
    assert "Ends with \\u003cend_of_turn>." in text


def test_ordinary_values_render_byte_for_byte_as_json_dumps():
    args = {"q": "a < b and c > d", "html": "<b>bold</b>", "n": [1, 2.5]}
    assert render_model_turn("", [ToolCall("f", args)], "pretty") == (
        "<tool_call>\n" + json.dumps({"name": "f", "args": args}, ensure_ascii=False) + "\n</tool_call>")


@pytest.mark.parametrize("where", ["user", "model", "system"])
def test_free_text_with_a_tag_cannot_be_rendered(where):
    turns = [Turn("user", "<end_of_turn> hi" if where == "user" else "hi"),
             Turn("model", "see <tool_call>" if where == "model" else "ok")]
    conv = Conversation(TOOLS, turns, system="<start_of_turn>" if where == "system" else "")
    with pytest.raises(toucan.MalformedRow) as e:
        render_conversation(conv)
    assert e.value.kind == "format_tag_in_text"


@pytest.mark.parametrize("style", ["compact", "pretty"])
def test_argument_ends_mark_where_each_argument_ends(style):
    calls = [ToolCall("a", {"x": "v, } é", "y": [1, {"z": 2}], "w": True, "n": None}), ToolCall("b", {}),
             ToolCall("c", {"q": -1.5})]
    turn = render_model_turn("Let me look.", calls, style)
    ends = argument_ends(turn)
    assert len(ends) == sum(len(c.arguments) for c in calls) and ends == sorted(ends)
    blocks = [(m.start(1), m.end(1)) for m in re.finditer(r"<tool_call>(.*?)</tool_call>", turn, re.DOTALL)]
    for call, (start, stop) in zip(calls, blocks):
        mine = [e for e in ends if start <= e < stop]
        for k, end in enumerate(mine):
            assert turn[end] == ("}" if k == len(mine) - 1 else ",")
            # cut there and closed, the call holds exactly its first k + 1 arguments
            assert json.loads(turn[start:end] + "}}")["args"] == dict(list(call.arguments.items())[:k + 1])


@pytest.mark.parametrize("turn", ["no call here", "<tool_call>\n{not json\n</tool_call>",
                                  '<tool_call>\n{"name":"a","args":{"x":1\n</tool_call>',
                                  '<tool_call>\n{"name":"a","args":3}\n</tool_call>',
                                  '<tool_call>\n{"name":"a"}\n</tool_call>',
                                  '<tool_call>\n["args",{"x":1}]\n</tool_call>',
                                  '<tool_call>\n{"name" "a","args":{"x":1}}\n</tool_call>'])
def test_argument_ends_skip_what_is_not_a_rendered_call(turn):
    assert argument_ends(turn) == []
