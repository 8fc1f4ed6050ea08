"""The Gemma 3 tool-calling text format: rendering a conversation, and parsing a model turn back into calls.

Written once, used by training data rendering and by evaluation. Gemma 3 has no system role, so the tool list
(and anything system-like) goes at the top of the first user turn:

    <bos><start_of_turn>user
    Here are the available tools that you can use:
    <tools>
    [...]
    </tools>

    {query}<end_of_turn>
    <start_of_turn>model
    {optional text}
    <tool_call>
    {"name": "...", "args": {...}}
    </tool_call><end_of_turn>
    <start_of_turn>user
    <tool_response>
    {"name": "...", "result": ...}
    </tool_response><end_of_turn>
    <start_of_turn>model
    {final answer}<end_of_turn>

Each rendered example carries the character spans the model writes (a model turn's content plus its
`<end_of_turn>`), so training can put loss on those alone.

The format's tags and Gemma's control tokens (RESERVED_TAG) never occur inside a value: in JSON their `<` is written
`\\u003c` (json.loads reverses it, and the tokenizer never sees a control token where there is none), and a row whose
free text (a user's or model's words, the system text) holds one is dropped (`format_tag_in_text`). So every tag in a
rendered text is structure, and `parse_model_turn` inverts `render_model_turn` exactly.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import orjson

from gemma_toolcall.dataset.toucan import Conversation, MalformedRow, ToolCall, Turn, loads_value

BOS = "<bos>"
START = "<start_of_turn>"
END = "<end_of_turn>"
TOOLS_PREAMBLE = "Here are the available tools that you can use:"
JSON_STYLES = ("pretty", "compact")
CALL_OPEN, CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"  # around each call's JSON in a model turn
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
# The tags of this format and Gemma 3's control tokens: the `<` opening one of these is what makes text structure.
RESERVED_TAG = re.compile(r"<(?=/?(?:tool_call|tool_response|tools)>|(?:bos|eos|pad|unk|mask|start_of_turn|end_of_turn"
                          r"|start_of_image|end_of_image|image_soft_token|unused\d+)>)")


def dumps(obj, style: str, *, block: bool = False) -> str:
    """JSON as the format writes it: `pretty` indents blocks (the tool list) and keeps calls on one line with
    default separators; `compact` drops all optional whitespace. A reserved tag inside a string is escaped."""
    if style not in JSON_STYLES:
        raise ValueError(f"json style must be one of {JSON_STYLES}, got {style!r}")
    if style == "compact":
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    elif block:
        # Same bytes as json.dumps(indent=2, ensure_ascii=False), but in C: the stdlib's indenting encoder is pure
        # Python and was most of the render stage's time. orjson refuses a few values (ints past 64 bits).
        try:
            text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
        except (orjson.JSONEncodeError, TypeError):
            text = json.dumps(obj, ensure_ascii=False, indent=2)
    else:
        text = json.dumps(obj, ensure_ascii=False)
    # Outside strings JSON has no `<`, so this only touches values; the common case pays one `in`.
    return RESERVED_TAG.sub(r"\\u003c", text) if "<" in text else text


def check_free_text(conv: Conversation) -> None:
    """MalformedRow("format_tag_in_text") when words that are written as they are (not as JSON) hold a reserved tag:
    they would read as structure, to `parse_model_turn` and to the tokenizer."""
    for text in (conv.system, *(t.text for t in conv.turns)):
        if "<" in text and RESERVED_TAG.search(text):
            raise MalformedRow("format_tag_in_text", text[:80])


def render_user_prompt(tools: list[dict], text: str, style: str, system: str = "") -> str:
    parts = [system] if system else []
    if tools:
        parts.append(f"{TOOLS_PREAMBLE}\n<tools>\n{dumps(tools, style, block=True)}\n</tools>")
    parts.append(text)
    return "\n\n".join(parts)


def render_model_turn(text: str, calls: tuple[ToolCall, ...] | list[ToolCall], style: str) -> str:
    blocks = [f"{CALL_OPEN}{dumps({'name': c.name, 'args': c.arguments}, style)}{CALL_CLOSE}" for c in calls]
    return "\n".join(([text] if text else []) + blocks)


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


def _members(text: str, pos: int):
    """(key, value start, value end) of each member of the JSON object opening at text[pos]. ValueError or
    IndexError where the text is not such an object."""
    if text[pos] != "{":
        raise ValueError("not an object")
    pos = _SPACE.match(text, pos + 1).end()
    while text[pos] != "}":
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _SPACE.match(text, pos).end()
        if text[pos] != ":":
            raise ValueError("no ':' after a key")
        pos += 1
        start = _SPACE.match(text, pos).end()
        _, end = _DECODER.raw_decode(text, start)
        yield key, start, end
        pos = _SPACE.match(text, end).end()
        pos = _SPACE.match(text, pos + 1).end() if text[pos] == "," else pos


def argument_ends(turn: str) -> list[int]:
    """Where a rendered model turn decides how many arguments a call states: the offset of the character after
    each argument's value (the `,` before the next one, or the `}` that closes them). Training can weigh those
    tokens more: a missing argument is the commonest failure of a small tuned model."""
    ends = []
    for block in _CALL_BLOCK.finditer(turn):
        call, offset = block.group(1), block.start(1)
        try:
            args_at = next(start for key, start, _ in _members(call, _SPACE.match(call).end()) if key == "args")
            ends += [offset + _SPACE.match(call, end).end() for _, _, end in _members(call, args_at)]
        except (StopIteration, ValueError, IndexError):
            continue  # not a call render_model_turn writes: nothing to weigh
    return ends


def _result_value(content: str):
    """A tool's result as JSON when it is JSON (at most MAX_DEPTH deep), else as the string it is."""
    try:
        return loads_value(content)
    except ValueError:  # MalformedRow is one too
        return content


def render_tool_results(turn: Turn, style: str) -> str:
    return "\n".join(f"<tool_response>\n{dumps({'name': r.name, 'result': _result_value(r.content)}, style)}\n"
                     "</tool_response>" for r in turn.results)


@dataclass
class Rendered:
    text: str
    model_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) character offsets


def render_conversation(conv: Conversation, style: str = "pretty") -> Rendered:
    """Raises MalformedRow("format_tag_in_text") for a conversation the format cannot hold unambiguously."""
    check_free_text(conv)
    out = Rendered(BOS)
    first_user = True
    for turn in conv.turns:
        if turn.role == "model":
            out.text += f"{START}model\n"
            start = len(out.text)
            out.text += render_model_turn(turn.text, turn.calls, style) + END
            out.model_spans.append((start, len(out.text)))
            out.text += "\n"
            continue
        if turn.role == "user" and first_user:
            body = render_user_prompt(conv.tools, turn.text, style, conv.system)
            first_user = False
        else:
            body = turn.text if turn.role == "user" else render_tool_results(turn, style)
        out.text += f"{START}user\n{body}{END}\n"
    return out


def render_prompt(tools: list[dict], query: str, style: str = "pretty", system: str = "") -> str:
    """A generation prompt: the first user turn, then an open model turn."""
    return f"{BOS}{START}user\n{render_user_prompt(tools, query, style, system)}{END}\n{START}model\n"


@dataclass
class ParsedModelTurn:
    text: str
    calls: list[ToolCall]
    errors: list[str]

    @property
    def format_valid(self) -> bool:
        return not self.errors


def parse_model_turn(output: str) -> ParsedModelTurn:
    """Inverse of `render_model_turn`: model output (up to `<end_of_turn>`) → its text and calls.
    Never raises: whatever does not parse is listed in `errors`."""
    output = output.split(END, 1)[0]
    calls, errors = [], []
    for block in _CALL_BLOCK.findall(output):
        try:
            obj = json.loads(block)
        except ValueError as e:
            errors.append(f"call is not JSON: {e}")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
            errors.append("call has no name")
        elif not isinstance(obj.get("args", {}), dict):
            errors.append(f"{obj['name']}: args is not an object")
        else:
            calls.append(ToolCall(obj["name"], obj.get("args", {})))
    rest = _CALL_BLOCK.sub("", output)
    if "<tool_call>" in rest or "</tool_call>" in rest:
        errors.append("unbalanced <tool_call> tags")
    text = rest.split("<tool_call>", 1)[0].strip()
    return ParsedModelTurn(text, calls, errors)
