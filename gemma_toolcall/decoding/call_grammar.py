"""Schema-constrained tool calls: which next tokens keep a model turn a well-formed call to an offered tool.

Decoding with a constraint (`sampling.generate(..., tools=...)`) asks this module, token by token, whether the
greedy token keeps the turn inside the grammar below, and takes the most likely token that does when it does not.
Outside a call block nothing is constrained: the model decides whether to call and writes any text. From the
`<tool_call>` it writes itself to the `</tool_call>` that closes the block, the text must be what
`chat_format.render_model_turn` writes, in either JSON style:

    <tool_call>
    {"name": <one of the offered tools' names>, "args": {<arguments>}}
    </tool_call>

- an argument's name is one of the tool's parameters, each at most once, and the object closes only once every
  required parameter is there;
- a value has its parameter's JSON type (`string`, `integer`, `number`/`float`, `boolean`, `array`/`tuple`,
  `object`/`dict`, `null`, or a list of them), one of its `enum` values when it has them, one of its `anyOf`/`oneOf`
  alternatives when it has those (how pydantic writes `Optional[str]`: `{"anyOf": [{"type": "string"},
  {"type": "null"}]}`, common among MCP servers), and is any JSON value where the schema says nothing checkable
  (`any`, no `type`);
- nested objects with `properties` follow the same rules; arrays follow their `items`;
- a string holds none of the format's tags or Gemma's control tokens as text (`chat_format.RESERVED_TAG`): a
  `</tool_call>` written inside a value would end the block for the parser, and no call would parse.

It cannot make a value right, only well-typed: which parameter a stated value belongs to is still the model's
choice. JSON whitespace is one optional space where `json.dumps` writes one (after `:` and `,`), none elsewhere.
`closing` gives the shortest text that closes a call from any state, which decoding writes when the token budget
has room for nothing more.

The automaton is character-level over the decoded text, so it does not depend on how the tokenizer splits the tags
or the JSON. A state is an immutable stack of frames (tuples), so trying a candidate token costs no copy.
"""
from __future__ import annotations

import json
import string

from gemma_toolcall.chat_format import CALL_CLOSE, CALL_OPEN, RESERVED_TAG

_TYPES = {"string": "string", "integer": "integer", "number": "number", "float": "number", "boolean": "boolean",
          "bool": "boolean", "array": "array", "tuple": "array", "list": "array", "object": "object",
          "dict": "object", "null": "null"}
_OPEN_TAG = CALL_OPEN.rstrip("\n")  # "<tool_call>": what starts a call in free text
_AFTER_OPEN = CALL_OPEN[len(_OPEN_TAG):] + '{"name":'
_DIGITS = frozenset(string.digits)
_HEX = frozenset(string.hexdigits)
FREE = (("free", ""),)  # the state at the start of a model turn
_CLOSING_LIMIT = 4096  # characters: a closing longer than this is a schema that nests required objects without end
# Digits a number may hold (before its exponent). A question states no longer number; a small model that keeps
# choosing the next digit (`"time": 4000000...` for "4 seconds") writes one that never ends, so the grammar ends it.
MAX_NUMBER_DIGITS = 12
NUMBER_MAY_END = frozenset({"zero", "int", "frac", "exp"})  # number phases at which the number is whole
_STR = ("str", "")  # inside a string, no `<` that may open a reserved tag
_LONGEST_TAG = len("<image_soft_token>")  # the longest text `RESERVED_TAG` reads


def _alternatives(schema) -> list | None:
    """The alternatives of an `anyOf`/`oneOf` schema that has no `type` or `enum` of its own; None for any other."""
    if not isinstance(schema, dict) or "type" in schema or "enum" in schema:
        return None
    alternatives = schema.get("anyOf", schema.get("oneOf"))
    ok = isinstance(alternatives, list) and alternatives and all(isinstance(a, dict) for a in alternatives)
    return alternatives if ok else None


def value_types(schema) -> frozenset | None:
    """The JSON types a schema allows, None for any value."""
    if not isinstance(schema, dict):
        return None
    alternatives = _alternatives(schema)
    if alternatives is not None:
        types = [value_types(a) for a in alternatives]
        return None if None in types else frozenset().union(*types)
    declared = schema.get("type")
    if declared is None and isinstance(schema.get("properties"), dict):
        return frozenset({"object"})
    out = set()
    for name in declared if isinstance(declared, list) else [declared]:
        if _TYPES.get(name) is None:
            return None  # "any", missing or unknown: nothing checkable
        out.add(_TYPES[name])
    return frozenset(out)


def _json(v) -> str:
    return json.dumps(v, ensure_ascii=False)


class CallGrammar:
    """The calls allowed for one prompt: its offered tools."""

    def __init__(self, tools: list[dict]):
        self.tools = {t["name"]: t.get("parameters") for t in tools if isinstance(t, dict) and
                      isinstance(t.get("name"), str) and t["name"]}
        self._names = tuple(sorted(_json(n) for n in self.tools))

    # -- the automaton: feed(state, text) -> state, or None where the text leaves the grammar

    @staticmethod
    def in_call(state: tuple) -> bool:
        """Whether the turn is inside a call block (where the turn may not end)."""
        return state[-1][0] != "free"

    def feed(self, state: tuple, text: str) -> tuple | None:
        for ch in text:
            state = self._char(state, ch)
            if state is None:
                return None
        return state

    def _char(self, stack: tuple, ch: str) -> tuple | None:
        while True:  # a frame that ends on a character it does not take hands that character to the one below
            frame, rest = stack[-1], stack[:-1]
            kind = frame[0]
            if kind == "free":
                tail = (frame[1] + ch)[-len(_OPEN_TAG):]
                if tail == _OPEN_TAG:
                    return rest + (("free", ""), ("name", self._names, ""), ("ws",), ("lit", _AFTER_OPEN))
                return rest + (("free", tail),)
            if kind == "lit":
                if ch != frame[1][0]:
                    return None
                return rest + ((("lit", frame[1][1:]),) if len(frame[1]) > 1 else ())
            if kind == "ws":  # one optional space
                if ch == " ":
                    return rest
                stack = rest
                continue
            if kind in ("name", "enum", "key"):
                candidates, prefix = frame[1], frame[2] + ch
                longer = tuple(c for c in candidates if c.startswith(prefix))
                if longer:
                    return rest + ((kind, longer, prefix) + frame[3:],)
                if frame[2] not in candidates:
                    return None
                stack = self._completed(rest, frame, json.loads(frame[2]))
                continue
            if kind == "str":  # ("str", the text since a `<` that may open a reserved tag)
                if ch == '"':
                    return rest
                if ch == "\\":
                    return rest + (("esc",),)
                if ord(ch) < 0x20:
                    return None
                tag = "<" if ch == "<" else frame[1] + ch if frame[1] else ""
                if ch == ">" and RESERVED_TAG.match(tag):
                    return None  # `</tool_call>` in a value ends the block for the parser: no call parses
                tag = tag if len(tag) <= _LONGEST_TAG and ch != ">" else ""
                return stack if tag == frame[1] else rest + (("str", tag),)
            if kind == "esc":
                if ch == "u":
                    return rest + (("hex", 4),)
                return rest + (_STR,) if ch in '"\\/bfnrt' else None
            if kind == "hex":
                if ch not in _HEX:
                    return None
                return rest + ((("hex", frame[1] - 1),) if frame[1] > 1 else (_STR,))
            if kind == "num":
                phase = _number_phase(frame[1], ch, integer=frame[2])
                digits = frame[3] + (ch in _DIGITS and phase in ("zero", "int", "frac"))
                if phase is not None and digits <= MAX_NUMBER_DIGITS:
                    return rest + (("num", phase, frame[2], digits),)
                if frame[1] not in NUMBER_MAY_END:
                    return None
                stack = rest
                continue
            if kind == "value":
                return self._value(rest, frame[1], ch)
            if kind == "arr":
                items, phase = frame[1], frame[2]
                if ch == "]":
                    return rest
                if phase == "first":
                    stack = rest + (("arr", items, "next"), ("value", items))
                    continue
                return rest + (("arr", items, "next"), ("value", items), ("ws",)) if ch == "," else None
            if kind == "obj":
                return self._object(rest, frame, ch)
            raise AssertionError(kind)

    def closing(self, state: tuple) -> str | None:
        """The shortest text that closes the call open at `state` (through its `</tool_call>`), filling what must
        still be written with the shortest values the schema allows; "" outside a call, None where none is found.
        Decoding writes it when the token budget has room for nothing else, so a call is not cut off."""
        text = []
        while self.in_call(state) and len(text) < _CLOSING_LIMIT:
            ch = self._closing_char(state)
            state = None if ch is None else self._char(state, ch)
            if state is None:
                return None
            text.append(ch)
        return None if self.in_call(state) else "".join(text)

    def _closing_char(self, stack: tuple) -> str | None:
        """The next character of the shortest way out of the call from `stack`."""
        frame, rest = stack[-1], stack[:-1]
        kind = frame[0]
        if kind == "lit":
            return frame[1][0]
        if kind == "ws":
            return self._closing_char(rest)
        if kind in ("name", "enum", "key"):
            candidates, prefix = frame[1], frame[2]
            if kind == "key":  # a missing required parameter first
                missing = tuple(c for c in candidates if json.loads(c) in frame[4] - frame[5])
                candidates = missing or candidates
            target = min(candidates, key=len)
            if len(target) > len(prefix) and target.startswith(prefix):
                return target[len(prefix)]
            return self._closing_char(self._completed(rest, frame, json.loads(prefix))) if prefix in frame[1] else None
        if kind == "str":
            return '"'
        if kind == "esc":
            return "n"
        if kind == "hex":
            return "0"
        if kind == "num":
            return self._closing_char(rest) if frame[1] in NUMBER_MAY_END else "0"
        if kind == "value":
            schema = frame[1]
            alternatives = _alternatives(schema)
            if alternatives is not None and value_types(schema) is not None:
                firsts = [self._closing_char(rest + (("value", a),)) for a in alternatives]
                shortest_first = '0"[{tn'  # the order of the shortest values below: 0, "", [], {}, true, null
                return min((c for c in firsts if c), key=lambda c: (c not in shortest_first, shortest_first.find(c)),
                           default=None)
            if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
                return min((_json(v) for v in schema["enum"]), key=len)[0]
            types = value_types(schema)
            for first, kinds in (("0", ("integer", "number")), ('"', ("string",)), ("[", ("array",)),
                                 ("{", ("object",)), ("t", ("boolean",)), ("n", ("null",))):
                if types is None or types & set(kinds):
                    return first
            return None
        if kind == "arr":
            return "]"
        if kind == "obj":
            _, _, required, used, phase = frame
            if phase in ("first", "next") and required <= used:
                return "}"
            return "," if phase == "next" else '"'
        return None

    def _completed(self, rest: tuple, frame: tuple, value) -> tuple:
        """The frames after a name, an enum value or an argument's name is complete."""
        kind = frame[0]
        if kind == "name":
            return rest + (("lit", CALL_CLOSE), ("lit", "}"), ("value", _object_schema(self.tools[value])),
                           ("ws",), ("lit", '"args":'), ("ws",), ("lit", ","))
        if kind == "enum":
            return rest
        props, required, used = frame[3], frame[4], frame[5]
        return rest + (("obj", props, required, used | {value}, "next"), ("value", props[value]), ("ws",),
                       ("lit", ":"))

    def _object(self, rest: tuple, frame: tuple, ch: str) -> tuple | None:
        _, props, required, used, phase = frame
        keys = None if props is None else tuple(_json(k) for k in props if k not in used)
        if ch == "}" and phase in ("first", "next"):
            return rest if required <= used else None
        if ch == "," and phase == "next":
            return rest + (("obj", props, required, used, "key"), ("ws",)) if keys is None or keys else None
        if ch == '"' and phase in ("first", "key"):
            if props is None:  # any names, any values
                return rest + (("obj", None, required, used, "next"), ("value", None), ("ws",), ("lit", ":"),
                               _STR)
            return rest + (("key", keys, '"', props, required, used),) if keys else None
        return None

    def _value(self, rest: tuple, schema, ch: str) -> tuple | None:
        alternatives = _alternatives(schema)
        if alternatives is not None and value_types(schema) is not None:
            # the first alternative that takes `ch`, those that allow a fraction first, so that `[integer, number]`
            # takes 1.5 (the types value_types cannot check made the whole schema any value)
            for alternative in sorted(alternatives, key=lambda a: "number" not in value_types(a)):
                after = self._value(rest, alternative, ch)
                if after is not None:
                    return after
            return None
        if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
            texts = tuple(_json(v) for v in schema["enum"])
            return self._char(rest + (("enum", texts, ""),), ch)
        types = value_types(schema)
        allows = (lambda t: True) if types is None else types.__contains__  # noqa: E731
        if ch == '"' and allows("string"):
            return rest + (_STR,)
        if (ch == "-" or ch in _DIGITS) and (allows("integer") or allows("number")):
            integer = not allows("number")
            return rest + (("num", _number_phase("start", ch, integer), integer, int(ch in _DIGITS)),)
        if ch in "tf" and allows("boolean"):
            return self._char(rest + (("enum", ("true", "false"), ""),), ch)
        if ch == "n" and allows("null"):
            return self._char(rest + (("enum", ("null",), ""),), ch)
        if ch == "[" and allows("array"):
            items = schema.get("items") if isinstance(schema, dict) else None
            return rest + (("arr", items if isinstance(items, dict) else None, "first"),)
        if ch == "{" and allows("object"):
            return rest + (("obj", *_members(schema), frozenset(), "first"),)
        return None


def _object_schema(parameters) -> dict:
    """A tool's `parameters` as an object schema (a tool without them takes any object)."""
    if isinstance(parameters, dict) and value_types(parameters) in (None, frozenset({"object"})):
        return {**parameters, "type": "object"}
    return {"type": "object"}


def _members(schema) -> tuple:
    """(properties or None for any names, required names) of an object schema."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return None, frozenset()
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    return props, frozenset(r for r in required if r in props)


def _number_phase(phase: str, ch: str, integer: bool) -> str | None:
    """The JSON number automaton (integers only: no fraction or exponent); None where `ch` does not continue it."""
    digit = ch in _DIGITS
    if phase in ("start", "sign"):
        if ch == "-" and phase == "start":
            return "sign"
        return "zero" if ch == "0" else "int" if digit else None
    if phase in ("zero", "int"):
        if digit and phase == "int":
            return "int"
        if not integer and ch == ".":
            return "dot"
        if not integer and ch in "eE":
            return "exp0"
        return None
    if phase in ("dot", "frac"):
        if digit:
            return "frac"
        return "exp0" if phase == "frac" and ch in "eE" else None
    if phase == "exp0" and ch in "+-":
        return "expsign"
    return "exp" if digit and phase in ("exp0", "expsign", "exp") else None


def token_allowed(grammar: CallGrammar, state: tuple, text: str | None) -> tuple | None:
    """The state after a token whose decoded text is `text` (None: a control token or a byte of a longer UTF-8
    character), or None where the token leaves the grammar. Control tokens and reserved tags stand only outside a
    call, except the tag that closes it (one token in a tokenizer that holds the format's tags); a lone byte only
    inside a string."""
    if text is None:
        if not grammar.in_call(state):
            return state
        return state if state[-1][0] == "str" else None
    after = grammar.feed(state, text)
    if after is not None and grammar.in_call(state) and "<" in text and RESERVED_TAG.search(text):
        return after if not grammar.in_call(after) and text.endswith(CALL_CLOSE.strip()) else None
    return after
