"""The raw Toucan-1.5M configs (Kimi-K2, OSS, Qwen3) and their conversion to the SFT shape: the one place it happens.

Facts are in `shared/reference/toucan_schema.md` ("The other configs"). A raw row has nine string columns; its
`messages` hold `system`, `user`, `assistant` (a call is an assistant message with `function_call`, text may be in
`reasoning_content` when `content` is "") and `function` messages; its tools are in `metadata.mcp_servers`; it carries
the authors' question and response quality assessments.

`convert_batch` turns raw rows into the *normalized shape* every later stage reads: the six SFT columns, converted by
the authors' own rules (`convert_row`), then `servers` (the slugs of the row's MCP servers, which OSS tool names do not
carry) and one float column per assessment score (SCORES; null where a row has no such score: SFT rows, and the
response scores of `irrelevant` rows). A row that cannot be converted is counted under its kind (ConversionError.KINDS)
and dropped; anything the SFT shape can hold passes through, and the filter judges it like any SFT row.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from gemma_toolcall.dataset import toucan
from gemma_toolcall.dataset.mcp_catalogue import slug

CONFIGS = (toucan.CONFIG, "Kimi-K2", "OSS", "Qwen3")  # data/raw/<config>/ folders, read in this order
RAW_CONFIGS = CONFIGS[1:]
REAL_ROWS = {"SFT": 119_287, "Kimi-K2": 518_516, "OSS": 457_130, "Qwen3": 551_613}
REAL_SHARDS = {"SFT": 3, "Kimi-K2": 40, "OSS": 47, "Qwen3": 44}
UNPREFIXED = frozenset({"OSS"})  # the authors' converter does not prefix these configs' tool names with the server slug

RAW_COLUMNS = ("uuid", "subset_name", "messages", "question", "available_tools", "target_tools",
               "question_quality_assessment", "response_quality_assessment", "metadata")
RAW_SCHEMA = pa.schema([(c, pa.string()) for c in RAW_COLUMNS])

QUESTION_DIMENSIONS = ("tool_selection_difficulty", "tool_selection_uniqueness", "question_quality",
                       "scenario_realism", "verifiable", "stability")
RESPONSE_DIMENSIONS = ("completeness", "conciseness")
# Column (and `filter.min_scores` key) -> (assessment column, key in its JSON). Dimensions are {reasoning, score 1-5};
# overall scores are their means; desired_tools_used_percentage is 0-1; order_correctness is 1.0 when true.
SCORES = {
    **{d: ("question_quality_assessment", d) for d in QUESTION_DIMENSIONS},
    "question_overall_score": ("question_quality_assessment", "overall_score"),
    **{d: ("response_quality_assessment", d) for d in RESPONSE_DIMENSIONS},
    "response_overall_score": ("response_quality_assessment", "overall_score"),
    "desired_tools_used_percentage": ("response_quality_assessment", "desired_tools_used_percentage"),
    "order_correctness": ("response_quality_assessment", "order_correctness"),
}
EXTRA_FIELDS = (pa.field("servers", pa.list_(pa.string())),) + tuple(pa.field(s, pa.float64()) for s in SCORES)
SCHEMA = pa.schema(list(toucan.SCHEMA) + list(EXTRA_FIELDS))  # the normalized shape of a converted raw config
NO_PARAMETERS = {"type": "object", "properties": {}}


def shard_names(config: str) -> list[str]:
    """The config's parquet shards in the Hub repo, e.g. `OSS/train-00000-of-00047.parquet`."""
    n = REAL_SHARDS[config]
    return [f"{config}/train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


def shard_paths(raw_dir: Path) -> list[Path]:
    """The parquet shards under `raw_dir/<config>/` of every config there, configs in CONFIGS order, shards in name
    order (train-00000-of-00003 first)."""
    paths = [p for config in CONFIGS for p in sorted((Path(raw_dir) / config).glob("*.parquet"))]
    if not paths:
        raise FileNotFoundError(f"no parquet shards under {Path(raw_dir)}/{{{','.join(CONFIGS)}}}: "
                                "run `dvc repro download` first")
    return paths


def config_of(path) -> str:
    """The config a shard of `shard_paths` belongs to (its folder)."""
    return Path(path).parent.name


def read_normalized(group: toucan.RowGroup, batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
    """One row group in the normalized shape (SCHEMA), streamed: the six SFT columns as `toucan.read_row_group` gives
    them, then EXTRA_FIELDS where the shard has them and null where it does not (an SFT shard has no scores)."""
    present = set(pq.read_schema(group.path).names)
    extra = [f.name for f in EXTRA_FIELDS if f.name in present]
    batches = pq.ParquetFile(group.path).iter_batches(batch_size=batch_size, row_groups=[group.index],
                                                      columns=list(toucan.COLUMNS) + extra, use_threads=False)
    for b in batches:
        arrays = [b.column(c).cast(pa.string()) for c in toucan.COLUMNS]
        arrays += [b.column(f.name).cast(f.type) if f.name in present else pa.nulls(b.num_rows, f.type)
                   for f in EXTRA_FIELDS]
        yield pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def check_raw_schema(path) -> None:
    schema = pq.read_schema(path)
    missing = [c for c in RAW_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: not a raw Toucan shard (Kimi-K2, OSS, Qwen3), missing column(s) {missing}; "
                         f"has {schema.names}")


class ConversionError(ValueError):
    """A raw row the authors' rules cannot turn into the SFT shape; `kind` is the metrics key it is counted under."""

    KINDS = ("missing_value", "invalid_json", "bad_messages", "unknown_role", "bad_tool_call", "bad_metadata",
             "duplicate_tool_name", "bad_assessment")

    def __init__(self, kind: str, detail: str = ""):
        assert kind in self.KINDS, kind
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def _loads(text: str, kind: str, what: str):
    try:
        return toucan.loads(text)
    except (ValueError, toucan.MalformedRow) as e:  # JSONDecodeError is a ValueError; too deep is a MalformedRow
        raise ConversionError(kind, f"{what}: {e}") from None


def tool_name(config: str, server_name: str, tool: str) -> str:
    return tool if config in UNPREFIXED else f"{slug(server_name)}-{tool}"


def convert_tools(metadata: str, config: str) -> tuple[str, list[str]]:
    """`tools` (every tool of every server in `metadata.mcp_servers`, OpenAI style, written like the SFT config) and
    the servers' slugs. The same tool listed twice is listed once; two different tools of one name (servers of one
    name in the catalogue, or OSS's unprefixed names) are a ConversionError."""
    meta = _loads(metadata, "bad_metadata", "metadata")
    servers = meta.get("mcp_servers") if isinstance(meta, dict) else None
    if not isinstance(servers, list):
        raise ConversionError("bad_metadata", "no mcp_servers list")
    tools, slugs, specs = [], [], {}
    for server in servers:
        response = server.get("remote_server_response") if isinstance(server, dict) else None
        listed = response.get("tools") if isinstance(response, dict) else None
        if listed is None or not isinstance(server.get("server_name"), str) or not isinstance(listed, list):
            raise ConversionError("bad_metadata", "a server without server_name or remote_server_response.tools")
        slugs.append(slug(server["server_name"]))
        for t in listed:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
                raise ConversionError("bad_metadata", "a tool without a name")
            name = tool_name(config, server["server_name"], t["name"])
            spec = {"name": name, "description": t.get("description") or "",
                    "parameters": t.get("input_schema") if isinstance(t.get("input_schema"), dict) else NO_PARAMETERS}
            if name in specs:  # the same tool twice is listed once; two tools of one name, a call could not tell apart
                if specs[name] != spec:
                    raise ConversionError("duplicate_tool_name", name)
                continue
            specs[name] = spec
            tools.append({"type": "function", "function": spec})
    return json.dumps(tools, ensure_ascii=False), slugs


def convert_messages(messages: str) -> str:
    """The authors' rules: `system` dropped; an assistant message with `function_call` becomes a `tool_call` whose
    content is `str(function_call)` (a Python repr); another assistant message keeps its `content`, or its
    `reasoning_content` when `content` is ""; `function` becomes `tool_response`; `user` stays."""
    raw = _loads(messages, "invalid_json", "messages")
    if not isinstance(raw, list):
        raise ConversionError("bad_messages", "messages is not a list")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise ConversionError("bad_messages", "a message is not an object")
        role, content = m.get("role"), m.get("content")
        if role == "system":
            continue
        if role == "assistant" and m.get("function_call") is not None:
            call = m["function_call"]
            if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
                raise ConversionError("bad_tool_call", "function_call without a name")
            out.append({"role": "tool_call", "content": str(call)})
            continue
        if role == "assistant" and not content:
            content = m.get("reasoning_content") or ""
        if not isinstance(content, str):
            raise ConversionError("bad_messages", f"a {role} message without string content")
        if role in ("user", "assistant"):
            out.append({"role": role, "content": content})
        elif role == "function":
            out.append({"role": "tool_response", "content": content})
        else:
            raise ConversionError("unknown_role", str(role))
    return json.dumps(out, ensure_ascii=False)


def _number(value) -> float | None:
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def scores(row: dict) -> dict:
    """Every score of SCORES; an empty assessment (irrelevant rows have no response assessment) gives nulls."""
    parsed = {}
    for column in ("question_quality_assessment", "response_quality_assessment"):
        text = row.get(column)
        if text is None or not text.strip():
            parsed[column] = {}
            continue
        value = _loads(text, "bad_assessment", column)
        if not isinstance(value, dict):
            raise ConversionError("bad_assessment", f"{column} is not an object")
        parsed[column] = value
    return {name: _number(parsed[column].get(key)) for name, (column, key) in SCORES.items()}


def convert_row(row: dict, config: str) -> dict:
    """One raw row in the normalized shape (SCHEMA), or ConversionError."""
    missing = [c for c in ("messages", "metadata") if row.get(c) is None]
    if missing:
        raise ConversionError("missing_value", ",".join(missing))
    tools, servers = convert_tools(row["metadata"], config)
    return {"uuid": row.get("uuid"), "subset_name": row.get("subset_name"), "question": row.get("question"),
            "target_tools": row.get("target_tools"), "tools": tools, "messages": convert_messages(row["messages"]),
            "servers": servers, **scores(row)}


def convert_batch(batch: pa.RecordBatch, config: str, dropped: dict[str, int]) -> pa.Table:
    """Raw rows → normalized rows; a row that fails is counted in `dropped` under its kind."""
    out = []
    for row in batch.to_pylist():
        try:
            out.append(convert_row(row, config))
        except ConversionError as e:
            dropped[e.kind] += 1
    return pa.Table.from_pylist(out, schema=SCHEMA)


def drop_counts() -> dict[str, int]:
    return dict.fromkeys(ConversionError.KINDS, 0)

