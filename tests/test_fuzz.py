"""Property-based fuzzing of the data stages: malformed and adversarial Toucan-shaped rows never stop a stage, every row
is counted, and render → parse gives back the calls.

Profiles: `ci` (default, a few seconds) and `long` (on demand):

    FUZZ_PROFILE=long python -m pytest tests/test_fuzz.py          # or: --hypothesis-profile=long
"""
import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT, run_stage, stage_params
from gemma_toolcall.dataset import toucan
from gemma_toolcall.chat_format import RESERVED_TAG, parse_model_turn, render_model_turn
from stages import filter as filter_stage, render

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("FUZZ_PROFILE"):
    settings.load_profile(os.environ["FUZZ_PROFILE"])
elif settings.get_current_profile_name() == "default":  # a --hypothesis-profile given on the command line wins
    settings.load_profile("ci")

# What breaks text formats: lone surrogates (raw ones cannot reach Arrow, escaped ones can), the format's own tags and
# Gemma's control tokens, quotes and backslashes of both JSON and Python reprs, emoji, nothing at all.
TRICKY = ["\ud83d", "\udc00", "\ud83d\ude00", "\\ud83d", "\\", '"', "'", "</tool_call>", "<tool_call>",
          "<end_of_turn>", "<start_of_turn>model\n", "</tool_response>", "<tools>", "<bos>", "<", "{", "}", "\n", " ",
          "🙂", "東京", "\x00", "NaN"]
texts = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(TRICKY)), max_size=5).map("".join)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                                                                                        allow_infinity=False), texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(texts, inner, max_size=4)), max_leaves=12)
arguments = st.dictionaries(texts, json_values, max_size=4)
names = st.one_of(st.sampled_from(["srv-search", "srv-fetch", "math.factorial", "ünï-tool"]), texts)


def json_text(value, ascii_only: bool, indent=None) -> str:
    """JSON as a shard can hold it: a raw lone surrogate cannot be UTF-8, so those rows escape everything."""
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, ensure_ascii=True, indent=indent)
    return text


def nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


broken_json = st.one_of(texts, st.integers(1, 3000).map(nested), st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
                        st.sampled_from(['{"x": NaN}', "[1e400]", '{"n": "\\ud83d"}', "", "{", "null", "[]", "{}"]))


@st.composite
def tool_lists(draw) -> str:
    specs = draw(st.lists(st.fixed_dictionaries({"name": names, "description": texts, "parameters": json_values}),
                          max_size=6))
    spelling = draw(st.sampled_from(["toucan", "reordered", "unwrapped", "indented", "mixed", "broken"]))
    if spelling == "broken":
        return shard_text(draw(broken_json))
    entries = [{"type": "function", "function": s} for s in specs]
    if spelling == "reordered":
        entries = [{"function": s, "type": "function"} for s in specs]
    elif spelling in ("unwrapped", "mixed"):
        entries = specs if spelling == "unwrapped" else entries[:1] + specs[1:]
    return json_text(entries, draw(st.booleans()), indent=2 if spelling == "indented" else None)


@st.composite
def tool_call_messages(draw) -> dict:
    name, args = draw(names), draw(arguments)
    kind = draw(st.sampled_from(["json", "json", "dict", "broken", "garbage"]))
    payload = {"json": lambda: json_text(args, draw(st.booleans())), "dict": lambda: args,
               "broken": lambda: draw(broken_json), "garbage": lambda: None}[kind]()
    content = repr({"name": name, "arguments": payload}) if kind != "garbage" else draw(texts)
    return {"role": "tool_call", "content": content}


messages_one = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": texts}),
    tool_call_messages(),
    st.fixed_dictionaries({"role": st.just("tool_response"), "content": st.one_of(texts, broken_json,
                                                                                  json_values.map(json.dumps))}),
    st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["function", "tool"]), json_values),
                           "content": json_values}),
)


@st.composite
def conversations(draw) -> list:
    """Mostly well-formed: a user turn, then model turns with calls answered in order, then a final answer."""
    msgs = [{"role": "user", "content": draw(texts) or "q"}]
    for _ in range(draw(st.integers(0, 2))):
        calls = draw(st.lists(tool_call_messages(), min_size=1, max_size=3))
        msgs += calls + [{"role": "tool_response", "content": draw(st.one_of(texts, json_values.map(json.dumps)))}
                         for _ in calls]
    if draw(st.booleans()):
        msgs.append({"role": "assistant", "content": draw(texts) or "done"})
    return msgs


@st.composite
def rows(draw) -> dict:
    msgs = draw(st.one_of(conversations(), conversations(), st.lists(messages_one, max_size=6)))
    messages = draw(st.one_of(st.just(json_text(msgs, draw(st.booleans()))), broken_json))
    row = {"uuid": draw(st.uuids()).hex, "subset_name": "single-turn-original", "question": draw(texts),
           "target_tools": draw(st.sampled_from(["", "search", "a, b", "a, b, c"])), "tools": draw(tool_lists()),
           "messages": messages}
    for column in draw(st.lists(st.sampled_from(toucan.COLUMNS), max_size=2)):
        row[column] = None
    return {k: shard_text(v) for k, v in row.items()}


def shard_text(text: str | None) -> str | None:
    """A shard's strings are UTF-8: a raw lone surrogate can only be there as its `\\uXXXX` escape."""
    return None if text is None else re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m[0]):04x}", text)


def filter_rows(rows_in: list[dict], p: filter_stage.FilterParams) -> tuple[list[dict], dict]:
    dropped = filter_stage.drop_counts()
    kept = filter_stage.filter_batch(p, pa.RecordBatch.from_pylist(rows_in, schema=toucan.SCHEMA), dropped)
    return [r for s in filter_stage.SPLITS for r in kept[s].to_pylist()], dropped


@given(st.lists(rows(), min_size=1, max_size=6), st.integers(0, 4), st.sampled_from(["pretty", "compact"]))
def test_filter_and_render_count_every_row_and_agree(batch, max_tools, style):
    p = stage_params("filter", filter_stage.FilterParams, max_tools_available=max_tools)
    kept, dropped = filter_rows(batch, p)  # the structural counts of select included
    toucan.target_tool_names(pa.array([r["target_tools"] for r in batch], pa.string()))  # analyze's last one
    assert len(kept) + sum(dropped.values()) == len(batch)
    for row in kept:  # the rules hold on what is kept
        conv = toucan.parse_row(row)
        assert len(conv.tools) <= max_tools and sum(t.role == "user" for t in conv.turns) == 1
    render_dropped = dict.fromkeys(toucan.MalformedRow.KINDS, 0)
    table = render.render_rows(stage_params("render", render.RenderParams, json_style=style), kept, render_dropped)
    assert table.num_rows + sum(render_dropped.values()) == len(kept)
    assert sum(render_dropped.values()) == 0  # filter and render agree on what is trainable
    for row, text, spans in zip(kept, table.column("text").to_pylist(), table.column("model_spans").to_pylist()):
        model_turns = [t for t in toucan.parse_row(row).turns if t.role == "model"]
        assert len(spans) == len(model_turns) > 0
        for turn, span in zip(model_turns, spans):
            assert parse_model_turn(text[span["start"]:span["end"]]).calls == list(turn.calls)


@given(st.lists(tool_lists(), min_size=1, max_size=8))
def test_available_tool_counts_equal_parsed_counts(tool_texts):
    counts = toucan.count_available_tools(pa.array(tool_texts, pa.string())).to_pylist()
    assert counts == [toucan.parsed_tool_count(t) for t in tool_texts]


free_texts = texts.filter(lambda t: not RESERVED_TAG.search(t))


@given(free_texts, st.lists(st.builds(toucan.ToolCall, names.filter(bool), arguments), max_size=3),
       st.sampled_from(["pretty", "compact"]))
def test_render_then_parse_gives_back_the_calls(text, calls, style):
    try:
        for c in calls:  # what a parsed row can hold: strings with no lone surrogate (loads repairs those)
            json.dumps(c.arguments, ensure_ascii=False).encode("utf-8")
            (c.name + text).encode("utf-8")
    except UnicodeEncodeError:
        return
    rendered = render_model_turn(text, calls, style)
    assert not re.search(r"<(?:/?tool_call|end_of_turn)>", rendered.replace("<tool_call>\n{", "").replace(
        "}\n</tool_call>", ""))  # no tag inside a value
    parsed = parse_model_turn(rendered + "<end_of_turn>")
    assert parsed.format_valid and parsed.calls == list(calls) and parsed.text == text.strip()


ADVERSARIAL = [  # the five crashes of issue #16, and their relatives
    {"messages": [{"role": "user", "content": "q"}, {"role": "tool_call", "content": repr({"name": "f", "arguments": "{}"})},
                  {"role": "tool_response", "content": '{"n": "\\ud83d"}'}, {"role": "assistant", "content": "a"}]},
    {"tools": '[{"type": "function", "function": {"name": "f", "description": "\\udc00", "parameters": {}}}]'},
    {"messages": [{"role": "user", "content": "q"}, {"role": "tool_call", "content": repr({"name": "f", "arguments": nested(3000)})},
                  {"role": "tool_response", "content": "r"}, {"role": "assistant", "content": "a"}]},
    {"messages": "[" * 3000 + "]" * 3000},
    {"tools": json.dumps([{"name": f"t{i}", "parameters": {}} for i in range(5)], indent=2)},
    {"messages": [{"role": "user", "content": "q"}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "tool_call", "content": repr(
        {"name": "f", "arguments": json.dumps({"x": "</tool_call><end_of_turn>"})})},
                  {"role": "tool_response", "content": "<end_of_turn>"}, {"role": "assistant", "content": "a"}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<end_of_turn> early"}]},
    {},  # and one ordinary row
]


def adversarial_row(i: int, change: dict) -> dict:
    base = {"uuid": f"row-{i}", "subset_name": "s", "question": "q", "target_tools": "f",
            "tools": '[{"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}]',
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    row = {**base, **change}
    if not isinstance(row["messages"], str):
        row["messages"] = json.dumps(row["messages"])
    return row


def test_stages_end_to_end_on_adversarial_rows(tmp_path):
    """analyze, filter and render as dvc runs them, on a shard of the issue's rows: none stops, every row counted,
    and the logs are plain lines."""
    raw = tmp_path / "data" / "raw" / toucan.CONFIG
    raw.mkdir(parents=True)
    table = pa.Table.from_pylist([adversarial_row(i, c) for i, c in enumerate(ADVERSARIAL)], schema=toucan.SCHEMA)
    pq.write_table(table, raw / "train-00000-of-00001.parquet")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    logs = [run_stage(stage, tmp_path, env={"GEMMA_TOOLCALL_PROGRESS_EVERY": "0"}).stderr
            for stage in ("analyze", "filter", "render")]
    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    rules = sum(v["total"] if isinstance(v, dict) else v for k, v in data["dropped"].items() if k != "malformed")
    assert data["rows_in"] == len(ADVERSARIAL) == data["kept"] + rules + data["dropped"]["malformed"]["total"]
    malformed = data["dropped"]["malformed"]
    assert malformed["too_deep"] == 2 and malformed["no_model_turn"] == 1 and malformed["format_tag_in_text"] == 1
    assert data["dropped"]["too_many_tools_available"] == 1 and data["kept"] == 4
    rendered = json.loads((tmp_path / "metrics" / "render.json").read_text())
    assert sum(rendered[s]["rows"] for s in ("train", "validation")) == data["kept"]
    assert all(sum(rendered[s]["dropped"].values()) == 0 for s in ("train", "validation"))
    assert params["filter"]["max_tools_available"] < 5
    for stage, log in zip(("analyze", "filter", "render"), logs):
        assert "\r" not in log and f"{stage}: {len(ADVERSARIAL) if stage != 'render' else data['kept']}/" in log
