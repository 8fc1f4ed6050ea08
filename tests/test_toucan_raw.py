"""The raw configs (Kimi-K2, OSS, Qwen3): the authors' conversion rules, conversion failures counted by kind, and the
stand-in's raw rows."""
import ast
import json
from collections import Counter

import pyarrow as pa
import pytest

from gemma_toolcall.dataset import toucan, toucan_raw
from gemma_toolcall.standin import raw as standin_raw

TIME = {"name": "current_time", "description": "Current time in a zone.",
        "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
WEATHER = {"name": "get_weather", "description": "Weather now.", "input_schema": {"type": "object", "properties": {}}}
METADATA = {"mcp_servers": [{"server_name": "Time MCP Server", "remote_server_response": {"tools": [TIME]}},
                            {"server_name": "Weather Server", "remote_server_response": {"tools": [WEATHER]}}]}
QUESTION_ASSESSMENT = {d: {"reasoning": "ok", "score": s} for d, s in zip(toucan_raw.QUESTION_DIMENSIONS, (2, 3, 5, 4, 4, 5))}
QUESTION_ASSESSMENT["overall_score"] = 3.83
RESPONSE_ASSESSMENT = {"completeness": {"reasoning": "r", "score": 4}, "conciseness": {"reasoning": "r", "score": 3},
                       "overall_score": 3.5, "desired_tools_used_percentage": 0.5, "order_correctness": True}


def raw_row(config="Kimi-K2", **change):
    name = toucan_raw.tool_name(config, "Time MCP Server", "current_time")
    messages = [
        {"role": "system", "content": "You are a helpful assistant. <tools>...</tools>"},
        {"role": "user", "content": "What time is it in Lima?"},
        {"role": "assistant", "content": "", "reasoning_content": "The user wants the time."},
        {"role": "assistant", "content": "", "reasoning_content": "Calling it.",
         "function_call": {"name": name, "arguments": '{"tz": "America/Lima"}'}},
        {"role": "function", "name": name, "content": '{"time": "12:00"}'},
        {"role": "assistant", "content": "It's noon in Lima.", "reasoning_content": "ignored: content is not empty"},
    ]
    row = {"uuid": "u" * 36, "subset_name": "single-turn-original", "messages": json.dumps(messages),
           "question": "What time is it in Lima?", "available_tools": "[]", "target_tools": "current_time",
           "question_quality_assessment": json.dumps(QUESTION_ASSESSMENT),
           "response_quality_assessment": json.dumps(RESPONSE_ASSESSMENT), "metadata": json.dumps(METADATA)}
    return {**row, **change}


@pytest.mark.parametrize("config, prefixed", [("Kimi-K2", True), ("Qwen3", True), ("OSS", False)])
def test_conversion_follows_the_authors_rules(config, prefixed):
    out = toucan_raw.convert_row(raw_row(config), config)
    assert list(out) == toucan_raw.SCHEMA.names
    call_name = "time-mcp-server-current_time" if prefixed else "current_time"
    assert json.loads(out["messages"]) == [  # system dropped; reasoning kept only where content is ""
        {"role": "user", "content": "What time is it in Lima?"},
        {"role": "assistant", "content": "The user wants the time."},
        {"role": "tool_call", "content": str({"name": call_name, "arguments": '{"tz": "America/Lima"}'})},
        {"role": "tool_response", "content": '{"time": "12:00"}'},
        {"role": "assistant", "content": "It's noon in Lima."}]
    tools = json.loads(out["tools"])
    assert out["tools"] == json.dumps(tools, ensure_ascii=False)  # spelled like the SFT config
    assert tools == [
        {"type": "function", "function": {"name": call_name, "description": TIME["description"],
                                          "parameters": TIME["input_schema"]}},
        {"type": "function", "function": {"name": "weather-server-get_weather" if prefixed else "get_weather",
                                          "description": WEATHER["description"], "parameters": WEATHER["input_schema"]}}]
    assert out["servers"] == ["time-mcp-server", "weather-server"]
    assert (out["question_quality"], out["tool_selection_difficulty"], out["question_overall_score"]) == (5.0, 2.0, 3.83)
    assert (out["completeness"], out["response_overall_score"], out["desired_tools_used_percentage"],
            out["order_correctness"]) == (4.0, 3.5, 0.5, 1.0)
    conv = toucan.parse_row(out)  # what every later stage does with it
    assert conv.turns[1].calls[0] == toucan.ToolCall(call_name, {"tz": "America/Lima"})
    assert {t["name"] for t in conv.tools} >= {c.name for t in conv.turns for c in t.calls}


def test_irrelevant_rows_have_no_response_scores():
    out = toucan_raw.convert_row(raw_row(subset_name="irrelevant", response_quality_assessment=""), "Qwen3")
    assert all(out[s] is None for s in ("completeness", "conciseness", "response_overall_score",
                                        "desired_tools_used_percentage", "order_correctness"))
    assert out["question_quality"] == 5.0


def test_the_same_tool_twice_is_listed_once():
    twice = {"mcp_servers": METADATA["mcp_servers"] + METADATA["mcp_servers"][:1]}
    out = toucan_raw.convert_row(raw_row(metadata=json.dumps(twice)), "Kimi-K2")
    assert [t["function"]["name"] for t in json.loads(out["tools"])] == ["time-mcp-server-current_time",
                                                                          "weather-server-get_weather"]


def messages_with(change: dict) -> str:
    msgs = json.loads(raw_row()["messages"])
    msgs[3] = {**msgs[3], **change}
    return json.dumps(msgs)


CLASH = {"mcp_servers": [{"server_name": "A", "remote_server_response": {"tools": [TIME]}},
                         {"server_name": "B", "remote_server_response": {"tools": [{**TIME, "description": "other"}]}}]}
BAD = [
    ("missing_value", dict(metadata=None)),
    ("missing_value", dict(messages=None)),
    ("invalid_json", dict(messages=raw_row()["messages"][:-30])),
    ("bad_messages", dict(messages='{"role": "user"}')),
    ("bad_messages", dict(messages=messages_with({"function_call": None, "content": ["part"]}))),
    ("unknown_role", dict(messages=messages_with({"role": "tool"}))),
    ("bad_tool_call", dict(messages=messages_with({"function_call": {"arguments": "{}"}}))),
    ("bad_tool_call", dict(messages=messages_with({"function_call": "current_time()"}))),
    ("bad_metadata", dict(metadata='{"servers": []}')),
    ("bad_metadata", dict(metadata='{"mcp_servers": [{"server_name": "A"}]}')),
    ("bad_metadata", dict(metadata="not json")),
    ("bad_assessment", dict(question_quality_assessment="[5]")),
    ("bad_assessment", dict(response_quality_assessment='{"completeness": ')),
]


@pytest.mark.parametrize("kind, change", BAD)
def test_a_row_that_cannot_be_converted_raises_its_kind(kind, change):
    with pytest.raises(toucan_raw.ConversionError) as e:
        toucan_raw.convert_row(raw_row(**change), "Kimi-K2")
    assert e.value.kind == kind


def test_conversion_drops_are_counted_by_kind_and_never_raise():
    rows = [raw_row(**change) for _, change in BAD] + [raw_row(metadata=json.dumps(CLASH))] + [raw_row()] * 3
    dropped = toucan_raw.drop_counts()
    out = toucan_raw.convert_batch(pa.RecordBatch.from_pylist(rows, schema=toucan_raw.RAW_SCHEMA), "OSS", dropped)
    assert out.num_rows == 3 and out.schema == toucan_raw.SCHEMA
    expected = Counter(kind for kind, _ in BAD)
    expected["duplicate_tool_name"] += 1  # OSS names carry no server: A's and B's current_time clash
    assert dropped == {k: expected[k] for k in toucan_raw.ConversionError.KINDS}
    assert toucan_raw.convert_row(raw_row(metadata=json.dumps(CLASH)), "Kimi-K2")["servers"] == ["a", "b"]


@pytest.fixture(scope="module")
def stand_in():
    """Raw rows of every raw config for the same 1,500 questions."""
    return {c: standin_raw.chunk_rows(standin_raw.Chunk(c, 5, 0, 1500)) for c in toucan_raw.RAW_CONFIGS}


def test_stand_in_rows_have_the_raw_fields(stand_in):
    for config, rows in stand_in.items():
        assert abs(len(rows) / 1500 - standin_raw.SHARE[config]) < 0.03
        roles, calls, reasoning_only, reasoning = Counter(), 0, 0, 0
        for row in rows:
            assert set(row) == set(toucan_raw.RAW_COLUMNS) and isinstance(row["metadata"], str)
            servers = json.loads(row["metadata"])["mcp_servers"]
            assert servers and all(s["server_name"] and s["remote_server_response"]["tools"] for s in servers)
            assert all(set(t) == {"name", "description", "input_schema"}
                       for s in servers for t in s["remote_server_response"]["tools"])
            try:
                messages = json.loads(row["messages"])
            except ValueError:  # a truncated (malformed) row
                continue
            assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
            roles.update(m["role"] for m in messages)
            for m in messages:
                if m.get("function_call"):
                    calls += 1
                    assert m["content"] == "" and isinstance(m["function_call"]["arguments"], str)
                reasoning += "reasoning_content" in m
                reasoning_only += m["role"] == "assistant" and m["content"] == "" and "reasoning_content" in m \
                    and not m.get("function_call")
        assert set(roles) == {"system", "user", "assistant", "function"} and calls > 500
        assert reasoning > 50 and reasoning_only > (5 if config == "Kimi-K2" else 50)


def test_oss_calls_use_plain_names_and_other_configs_slugged(stand_in):
    for config, rows in stand_in.items():
        for row in rows[:300]:
            try:
                out = toucan_raw.convert_row(row, config)
                conv = toucan.parse_row(out)
            except (toucan_raw.ConversionError, toucan.MalformedRow):
                continue
            offered = [(srv["server_name"], t["name"]) for srv in json.loads(row["metadata"])["mcp_servers"]
                       for t in srv["remote_server_response"]["tools"]]
            expected = {short if config == "OSS" else f"{server.lower().replace(' ', '-')}-{short}"
                        for server, short in offered}
            names = {t["name"] for t in conv.tools}
            assert names == expected
            assert {c.name for t in conv.turns for c in t.calls} <= names


def test_a_question_is_shared_by_configs_and_answered_differently(stand_in):
    by_question = {}
    for config, rows in stand_in.items():
        for row in rows:
            if row["question"] is not None:
                by_question.setdefault(row["question"], {})[config] = row
    shared = [v for v in by_question.values() if len(v) == 3]
    assert len(shared) > 1000
    for answers in shared[:200]:
        a, b = answers["Kimi-K2"], answers["Qwen3"]
        assert a["target_tools"] == b["target_tools"] and a["question_quality_assessment"] == b["question_quality_assessment"]
        assert a["uuid"] != b["uuid"]
    assert sum(a["Kimi-K2"]["messages"] != a["OSS"]["messages"] for a in shared) > 0.9 * len(shared)


def scores(rows, config):
    out = []
    for row in rows:
        try:
            out.append(toucan_raw.scores(row))
        except toucan_raw.ConversionError:
            pass
    return out


def test_score_distributions_look_like_the_papers(stand_in):
    """Question quality and realism mostly at the top, difficulty spread out, responses mostly 3 or above (Figure 6
    of the Toucan paper); fewer target tools used means less complete."""
    rows = [r for rows in stand_in.values() for r in rows]
    s = scores(rows, None)
    share = lambda key, pred: sum(pred(x[key]) for x in s if x[key] is not None) / sum(x[key] is not None for x in s)  # noqa: E731
    assert share("question_quality", lambda v: v >= 4) > 0.75 and share("scenario_realism", lambda v: v == 5) > 0.4
    assert 0.25 < share("tool_selection_difficulty", lambda v: v <= 2) < 0.45
    assert share("completeness", lambda v: v >= 3) > 0.7 and share("conciseness", lambda v: v >= 3) > 0.75
    assert 0.55 < share("desired_tools_used_percentage", lambda v: v == 1) < 0.9
    full = [x["completeness"] for x in s if x["desired_tools_used_percentage"] == 1]
    partial = [x["completeness"] for x in s if x["desired_tools_used_percentage"] is not None
               and x["desired_tools_used_percentage"] < 1]
    assert sum(full) / len(full) > sum(partial) / len(partial) + 0.8
    irrelevant = [r for r in rows if r["subset_name"] == "irrelevant"]
    assert irrelevant and all(r["response_quality_assessment"] == "" for r in irrelevant)
    assessed = [json.loads(r["response_quality_assessment"]) for r in rows[:200] if r["response_quality_assessment"]]
    assert all(a["overall_score"] == (a["completeness"]["score"] + a["conciseness"]["score"]) / 2 for a in assessed)


def test_malformed_stand_in_rows_are_the_sft_kinds(stand_in):
    kinds = Counter()
    total = 0
    for config, rows in stand_in.items():
        total += len(rows)
        for row in rows:
            try:
                toucan.parse_row(toucan_raw.convert_row(row, config))
            except toucan_raw.ConversionError as e:
                kinds["conversion:" + e.kind] += 1
            except toucan.MalformedRow as e:
                kinds[e.kind] += 1
    malformed = sum(v for k, v in kinds.items() if k != "conversion:duplicate_tool_name")
    assert 0.002 < malformed / total < 0.012, kinds
    assert set(kinds) <= {"conversion:invalid_json", "conversion:duplicate_tool_name", "arguments_not_json",
                          "call_without_response", "empty_content", "missing_value"}, kinds


def test_tool_call_content_is_a_python_repr():
    out = toucan_raw.convert_row(raw_row(), "Qwen3")
    call = [m for m in json.loads(out["messages"]) if m["role"] == "tool_call"][0]["content"]
    assert ast.literal_eval(call) == {"name": "time-mcp-server-current_time", "arguments": '{"tz": "America/Lima"}'}
