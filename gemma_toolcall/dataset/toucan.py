"""The Toucan-1.5M SFT config: its schema, streaming its shards, counting its structure, parsing one row.

Field facts are in `shared/reference/toucan_schema.md`. Two ways to look at a row live here:
- structural counts over whole Arrow arrays (user turns, target tools, available tools), vectorised, for analysis
  and selection. A JSON string cannot hold an unescaped quote, so `"role": "user"` outside a string value is a
  message's role: on well-formed JSON the count equals the parsed count, and a truncated row still gets one;
- `parse_row`, the full parse of one row into a `Conversation`, which raises `MalformedRow(kind)` on bad data.
"""
from __future__ import annotations

import ast
import gc
import json
import multiprocessing
import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ("uuid", "subset_name", "question", "target_tools", "tools", "messages")
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS])
CONFIG = "SFT"

USER_ROLE = r'"role":\s*"user"'
# How this project writes parquet: plain (no dictionary) zstd pages read ~3x faster than pyarrow's defaults for
# these long, unique strings, at a third of the size.
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": False}
# A tool entry opens with its "type" key (OpenAI style, as every Toucan row writes it); anchoring on the `{` makes
# the regex ~2x faster than matching every "type" key of the parameter schemas.
TOOL_ENTRY = r'\{"type":\s*"function"'
# How Toucan's tool lists are written (json.dumps of OpenAI-style entries): each entry's head, the separator between
# two entries, and what can follow a `}},` other than a key (an entry, or a value in a schema): see
# count_available_tools.
TOUCAN_HEAD = '{"type": "function"'
TOUCAN_SEPARATOR = '}}, {"type": "function"'
AFTER_CLOSE = r'\}\},(?:[^ ]| [^"]| "(?:[^"\\]|\\.)*"\s*[,\]])'
# Deepest JSON kept (tools, arguments, results). Real rows stay under ~10 levels; the bound keeps every rendered value
# inside orjson's 255-level writer and far from Python's recursion limit.
MAX_DEPTH = 200


def shard_paths(raw_dir: Path) -> list[Path]:
    """The config's parquet shards under `raw_dir/SFT`, in name order (train-00000-of-00003 first)."""
    paths = sorted((Path(raw_dir) / CONFIG).glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no parquet shards under {Path(raw_dir) / CONFIG}: run `dvc repro download` first")
    return paths


def check_schema(path: Path) -> None:
    """Fail with a clear message when a shard is not the Toucan SFT schema."""
    schema = pq.read_schema(path)
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: not a Toucan SFT shard, missing column(s) {missing}; has {schema.names}")
    wrong = [f"{c}: {schema.field(c).type}" for c in COLUMNS if not pa.types.is_string(schema.field(c).type)
             and not pa.types.is_large_string(schema.field(c).type)]
    if wrong:
        raise ValueError(f"{path}: Toucan SFT columns are strings, got {wrong}")


@dataclass(frozen=True)
class RowGroup:
    """One parquet row group: the unit of parallel work (a worker reads it itself; no rows are shipped to it)."""
    path: str
    index: int
    num_rows: int


def row_groups(paths: list[Path]) -> list[RowGroup]:
    out = []
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        out += [RowGroup(str(path), i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    return out


def read_row_group(group: RowGroup, columns=COLUMNS, batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
    """Stream one row group in record batches, every column as `string` (Hub shards may hold `large_string`)."""
    batches = pq.ParquetFile(group.path).iter_batches(batch_size=batch_size, row_groups=[group.index],
                                                      columns=list(columns), use_threads=False)
    for b in batches:
        yield pa.RecordBatch.from_arrays([b.column(c).cast(pa.string()) for c in columns], names=list(columns))


def _worker_init() -> None:
    # Rows parse into acyclic objects that reference counting frees; the cyclic collector only rescans them.
    gc.disable()
    pa.set_cpu_count(1)  # the pool is the parallelism: Arrow's own threads would only contend with it


def parallel_map(fn: Callable, tasks: Iterable, workers: int | None = None) -> Iterator:
    """`fn` over tasks on every core, results in task order (so outputs stay deterministic). One core: inline."""
    workers = workers or len(os.sched_getaffinity(0))
    # fork is the cheap start, but forking a process whose JAX threads are running can deadlock (a test session,
    # a notebook): then start workers from a clean server process instead. Those re-run the main script, so a
    # script piped to `python -` (no file to re-run) works inline.
    start = "forkserver" if "jax" in sys.modules else "fork"
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if start == "forkserver" and main_file and not os.path.exists(main_file):
        workers = 1
    if workers <= 1:
        yield from map(fn, tasks)
        return
    with multiprocessing.get_context(start).Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(fn, tasks)


def spill(table: pa.Table, directory: str) -> str:
    """A worker's result table → an Arrow file in `directory` (its path is what goes back through the pool's pipe).
    Pickling ~200 MB of rows through the pipe cost a fifth of the filter stage; a file is written once and
    memory-mapped by the parent."""
    path = os.path.join(directory, uuid.uuid4().hex + ".arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def unspill(path: str) -> pa.Table:
    """The table `spill` wrote, memory-mapped; the file is unlinked at once (the mapping keeps the data)."""
    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
    os.unlink(path)
    return table


def count_rows(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def count_user_turns(messages: pa.Array) -> pa.Array:
    return pc.count_substring_regex(messages, USER_ROLE)


def count_available_tools(tools: pa.Array) -> pa.Array:
    """Entries of each `tools` list, by separators where the row is spelled as Toucan writes it, parsed
    (`parsed_tool_count`) for every other row.

    Toucan's spelling: `[` + entries + `]`, each entry an object that opens with TOUCAN_HEAD and closes with its
    "function" object (so it ends `}}`), joined by `, `. In such a list every separator is a `}}, ` before a head
    (TOUCAN_SEPARATOR), so there are 1 + that many entries. The checks, whole-array: the text opens with `[` + a head
    and ends `}}]`, and nothing follows a `}},` but a head or a key (AFTER_CLOSE has as many matches as
    TOUCAN_SEPARATOR). An entry of another kind (no wrapper, keys in another order, not an object) after a Toucan
    entry adds an AFTER_CLOSE match; at the start it fails the first check; other whitespace or separators fail one
    or the other (a test checks each; so is a row whose schemas have `}}, {` of their own: exact, only slower). A
    regex cannot see depth, so two spellings made to mimic Toucan's still pass: a Toucan entry nested verbatim in a
    schema after a `}}, `, and an entry with keys after its "function" object followed by an entry of another kind.
    The filter parses every row it keeps and counts its tools again."""
    separators = pc.count_substring_regex(tools, re.escape(TOUCAN_SEPARATOR))
    toucan_spelled = pc.if_else(
        pc.equal(tools, "[]"), True,
        pc.and_(pc.and_(pc.starts_with(tools, "[" + TOUCAN_HEAD), pc.ends_with(tools, "}}]")),
                pc.equal(pc.count_substring_regex(tools, AFTER_CLOSE), separators)))
    counts = pc.if_else(pc.equal(tools, "[]"), 0, pc.add(separators, 1))
    other = pc.invert(pc.fill_null(toucan_spelled, True))
    if not pc.any(other).as_py():
        return counts
    parsed = pa.array([parsed_tool_count(t) for t in tools.filter(other).to_pylist()], counts.type)
    return pc.replace_with_mask(counts, other, parsed)


_TOOL_ENTRY_RE = re.compile(TOOL_ENTRY)


def parsed_tool_count(text: str) -> int:
    """Entries of a `tools` list by parsing it; a text that is not JSON is counted by TOOL_ENTRY (a truncated row still
    gets a count), a JSON value that is not a list has none."""
    try:
        tools = loads(text)
    except (ValueError, MalformedRow):
        return len(_TOOL_ENTRY_RE.findall(text))
    return len(tools) if isinstance(tools, list) else 0


def count_target_tools(target_tools: pa.Array) -> pa.Array:
    """Entries of the ", "-joined `target_tools` (0 for an empty string)."""
    commas = pc.count_substring(target_tools, ",")
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(target_tools)), 0)
    return pc.if_else(empty, 0, pc.add(commas, 1))


def target_tool_names(target_tools: pa.Array) -> pa.Array:
    """Every target tool name of every row, flattened."""
    names = pc.utf8_trim_whitespace(pc.list_flatten(pc.split_pattern(target_tools, ",")))
    return pc.filter(names, pc.greater(pc.utf8_length(names), 0))


# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict


@dataclass(frozen=True)
class ToolResult:
    name: str
    content: str


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation: a user's text, a model's text and calls, or the results of those calls."""
    role: str  # "user" | "model" | "tool"
    text: str = ""
    calls: tuple[ToolCall, ...] = ()
    results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True)
class Conversation:
    tools: list[dict]  # function specs: {"name", "description", "parameters"}
    turns: list[Turn]
    system: str = ""


class MalformedRow(ValueError):
    """A row that cannot become a training example; `kind` is the metrics key it is counted under."""

    KINDS = ("missing_value", "invalid_json", "too_deep", "bad_tools", "bad_messages", "unknown_role", "bad_tool_call",
             "arguments_not_json", "call_without_response", "response_without_call", "empty_content", "no_model_turn",
             "format_tag_in_text")

    def __init__(self, kind: str, detail: str = ""):
        assert kind in self.KINDS, kind
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def loads(text: str):
    """Strict JSON, with orjson's faster parser tried first. Only text orjson refuses reaches the slow path: there a
    lone surrogate (a string cut mid-emoji) becomes U+FFFD, as a UTF-8 decoder does with the same cut bytes, so no
    stage ever holds a string it cannot write; nesting past Python's recursion limit is MalformedRow("too_deep"); NaN,
    Infinity and numbers past a double stay invalid (JSON has none, and orjson refuses them too)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(repair_surrogates(text), parse_constant=_not_json, parse_float=_finite_float)
    except RecursionError:
        raise MalformedRow("too_deep", "nested past the recursion limit") from None


def _not_json(constant: str):
    raise json.JSONDecodeError(f"{constant} is not JSON", constant, 0)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise json.JSONDecodeError("number out of range", literal, 0)
    return value


# A backslash pair first (so `\\ud83d` stays text), then a valid surrogate pair (kept), then a lone surrogate escape.
_SURROGATE_ESCAPE = re.compile(r"(\\\\)|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})")


def repair_surrogates(text: str) -> str:
    """`text` with each lone UTF-16 surrogate, a raw one or a JSON/Python `\\uXXXX` escape, replaced by U+FFFD; valid
    pairs are joined (raw) or kept (escaped)."""
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "\\u" not in text:
        return text
    return _SURROGATE_ESCAPE.sub(lambda m: "\\ufffd" if m[2] else m[0], text)


def loads_value(text: str):
    """`loads` for a value that is kept and written again (tools, arguments, results): at most MAX_DEPTH deep."""
    value = loads(text)
    # Deeper than MAX_DEPTH takes more than MAX_DEPTH brackets, and twice the characters: most texts never get counted,
    # and only those with that many brackets get walked.
    if len(text) > 2 * MAX_DEPTH and text.count("{") + text.count("[") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise MalformedRow("too_deep", f"nested over {MAX_DEPTH} levels")
    return value


def depth(value) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node)
    return deepest


def parse_tools(text: str) -> list[dict]:
    try:
        entries = loads_value(text)
    except json.JSONDecodeError as e:
        raise MalformedRow("invalid_json", f"tools: {e}") from None
    if not isinstance(entries, list):
        raise MalformedRow("bad_tools", "tools is not a list")
    specs = []
    for entry in entries:
        spec = entry.get("function", entry) if isinstance(entry, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise MalformedRow("bad_tools", "a tool has no name")
        specs.append({"name": spec["name"], "description": spec.get("description", ""),
                      "parameters": spec.get("parameters", {"type": "object", "properties": {}})})
    return specs


_SIMPLE_CALL = re.compile(r"\{'name': '([^'\\\n]+)', 'arguments': '([^'\\\n]*)'\}")


def _literal_eval(content: str):
    try:
        call = ast.literal_eval(content)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise MalformedRow("bad_tool_call", str(e)) from None
    if isinstance(call, dict):  # a Python repr may hold lone surrogates too (`'\\ud83d'`): repaired as `loads` does
        call = {k: repair_surrogates(v) if isinstance(v, str) else v for k, v in call.items()}
    return call


def parse_tool_call(content: str) -> ToolCall:
    """A `tool_call` message: a Python repr of {'name', 'arguments'} whose arguments is a JSON string."""
    simple = _SIMPLE_CALL.fullmatch(content)
    if simple:  # what ast.literal_eval gives for a repr with no escapes or quotes inside, ~10x faster
        call = {"name": simple[1], "arguments": simple[2]}
    else:
        call = _literal_eval(content)
    if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
        raise MalformedRow("bad_tool_call", "no name")
    args = call.get("arguments", "{}")
    if not isinstance(args, str):  # a dict written as a Python literal: checked as its JSON would be
        try:
            args = json.dumps(args) if isinstance(args, dict) else args
        except (TypeError, ValueError) as e:  # a set, bytes, a tuple key: nothing JSON can hold
            raise MalformedRow("arguments_not_json", f"{call['name']}: {e}") from None
    if isinstance(args, str):
        try:
            args = loads_value(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise MalformedRow("arguments_not_json", f"{call['name']}: {e}") from None
    if not isinstance(args, dict):
        raise MalformedRow("arguments_not_json", f"{call['name']}: arguments are {type(args).__name__}")
    return ToolCall(call["name"], args)


def parse_messages(text: str) -> tuple[list[Turn], str]:
    """Messages JSON → turns. Parallel calls (K calls, then K responses) pair up by position."""
    try:
        messages = loads(text)
    except json.JSONDecodeError as e:
        raise MalformedRow("invalid_json", f"messages: {e}") from None
    if not isinstance(messages, list) or not messages:
        raise MalformedRow("bad_messages", "messages is not a non-empty list")
    turns: list[Turn] = []
    system = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise MalformedRow("bad_messages", "a message has no string content")
        role, content = m.get("role"), m["content"]
        last = turns[-1] if turns else None
        if role in ("user", "assistant", "system") and not content.strip():
            raise MalformedRow("empty_content", f"empty {role} message")
        if role == "system":
            system.append(content)
        elif role == "user":
            turns.append(Turn("user", content))
        elif role == "assistant":
            if last and last.role == "model" and not last.calls:
                turns[-1] = Turn("model", last.text + "\n\n" + content)
            else:
                turns.append(Turn("model", content))
        elif role == "tool_call":
            call = parse_tool_call(content)
            if last and last.role == "model":
                turns[-1] = Turn("model", last.text, last.calls + (call,))
            else:
                turns.append(Turn("model", "", (call,)))
        elif role == "tool_response":
            pending = turns[-2] if last and last.role == "tool" else last
            done = last.results if last and last.role == "tool" else ()
            if not pending or pending.role != "model" or len(done) >= len(pending.calls):
                raise MalformedRow("response_without_call")
            result = ToolResult(pending.calls[len(done)].name, content)
            if last.role == "tool":
                turns[-1] = Turn("tool", results=done + (result,))
            else:
                turns.append(Turn("tool", results=(result,)))
        else:
            raise MalformedRow("unknown_role", role if isinstance(role, str) else type(role).__name__)
    _close_calls(turns)
    if not turns or turns[0].role != "user":  # a system message alone makes no turn
        raise MalformedRow("bad_messages", "the conversation does not start with a user message")
    if not any(t.role == "model" for t in turns):  # nothing to train on, nothing to compare against in evaluation
        raise MalformedRow("no_model_turn")
    return turns, "\n\n".join(system)


def _close_calls(turns: list[Turn]) -> None:
    """Every model turn with calls must be followed by one result per call before anything else happens."""
    for i, turn in enumerate(turns):
        if turn.calls:
            nxt = turns[i + 1] if i + 1 < len(turns) else None
            if nxt is None or nxt.role != "tool" or len(nxt.results) != len(turn.calls):
                raise MalformedRow("call_without_response", turn.calls[-1].name)


def parse_row(row: dict) -> Conversation:
    missing = [c for c in COLUMNS if row.get(c) is None]
    if missing:
        raise MalformedRow("missing_value", ",".join(missing))
    turns, system = parse_messages(row["messages"])
    return Conversation(parse_tools(row["tools"]), turns, system)
