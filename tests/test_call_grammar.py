"""The call grammar of constrained decoding: every call the format renders passes, what a tool cannot take does
not; and decoding under it on tiny-random (where it binds nowhere: tunix's greedy tokens; where it binds: a call)."""
import jax.numpy as jnp
import pytest

from gemma_toolcall import model as gemma
from gemma_toolcall.dataset import toucan
from gemma_toolcall.decoding import sampling
from gemma_toolcall.standin import sft as standin_sft
from gemma_toolcall.decoding.call_grammar import FREE, MAX_NUMBER_DIGITS, CallGrammar, token_allowed
from gemma_toolcall.chat_format import CALL_CLOSE, CALL_OPEN, parse_model_turn, render_model_turn, render_prompt
from gemma_toolcall.dataset.toucan import ToolCall

TOOLS = [
    {"name": "pubmed-search", "parameters": {"type": "object", "required": ["term"], "properties": {
        "term": {"type": "string"}, "start_date": {"type": "string"}, "num_results": {"type": "integer"},
        "sort": {"type": "string", "enum": ["asc", "desc"]}, "full": {"type": "boolean"},
        "authors": {"type": "array", "items": {"type": "string"}}, "ratio": {"type": "number"},
        "filter": {"type": "object", "properties": {"year": {"type": "integer"}}, "required": ["year"]},
        "extra": {}}}},
    {"name": "math.hypot", "parameters": {"type": "dict", "properties": {"x": {"type": "integer"},
                                                                        "y": {"type": "float"}}}},
    {"name": "no-args", "parameters": {"type": "object", "properties": {}}},
]


def accepts(text: str, tools=TOOLS) -> bool:
    """Whether `text` is a whole model turn the grammar lets through (it may not end inside a call)."""
    grammar = CallGrammar(tools)
    state = grammar.feed(FREE, text)
    return state is not None and not grammar.in_call(state)


def call(args: dict, name: str = "pubmed-search", style: str = "compact") -> str:
    return render_model_turn("", [ToolCall(name, args)], style)


def test_every_rendered_call_of_the_stand_in_passes():
    n = 0
    for row in standin_sft.generate(300, 5):
        try:
            conv = toucan.parse_row(row)
        except toucan.MalformedRow:  # the stand-in's deliberately bad rows
            continue
        for turn in conv.turns:
            if turn.role == "model" and turn.calls:
                for style in ("compact", "pretty"):
                    assert accepts(render_model_turn(turn.text, turn.calls, style), conv.tools)
                    n += 1
    assert n > 300


@pytest.mark.parametrize("style", ["compact", "pretty"])
def test_typed_arguments_pass(style):
    args = {"term": "sleep", "start_date": "2025-01-02", "num_results": -3, "sort": "desc", "full": False,
            "authors": ["a", "b\"c"], "ratio": 1.5e-3, "filter": {"year": 2020}, "extra": [None, {"k": 1}]}
    assert accepts(call(args, style=style))
    assert accepts("Let me look.\n" + call({"term": "x"}, style=style) + "\n" + call({"x": 3, "y": 2}, "math.hypot",
                                                                                   style))
    assert accepts(call({}, "no-args", style)) and accepts("No tool fits; the answer is 4.")


@pytest.mark.parametrize("text", [
    call({"term": "x"}, name="pubmed-fetch"),  # a tool not offered
    call({"term": "x", "pmid": "1"}),  # a parameter the tool does not have
    call({"start_date": "2025-01-02"}),  # the required `term` missing
    call({"term": "x", "num_results": "3"}),  # a string for an integer
    call({"term": "x", "num_results": 2.5}),  # a fraction for an integer
    call({"term": "x", "sort": "up"}),  # outside the enum
    call({"term": "x", "full": "yes"}),
    call({"term": "x", "filter": {}}),  # nested required
    call({"x": "3"}, "math.hypot"),
    call({"a": 1}, "no-args"),
    '<tool_call>\n{"name":"pubmed-search","args":{"term":"x","start_date":2025-01-02}}\n</tool_call>',  # unquoted
    '<tool_call>\n{"name":"pubmed-search","args":{"term":"x","term":"y"}}\n</tool_call>',  # twice
    '<tool_call>\n{"args":{"term":"x"},"name":"pubmed-search"}\n</tool_call>',  # not the format's order
    '<tool_call>\n{"name":"pubmed-search","args":{"term":"x"}}',  # the turn cannot end inside a call
    '<tool_call>\n{"name":"pubmed-search","args":{"term":"a\nb"}}\n</tool_call>',  # raw newline in a string
])
def test_what_the_tools_cannot_take_is_refused(text):
    assert not accepts(text)


OPTIONAL = [{"name": "search", "parameters": {"type": "object", "required": ["since"], "properties": {
    "since": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},  # pydantic's Optional[str]
    "ids": {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]},
    "ratio": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    "mode": {"anyOf": [{"type": "string", "enum": ["fast", "full"]}, {"type": "boolean"}]},
    "free": {"anyOf": [{"type": "string"}, {}]}}}}]  # an alternative that says nothing: any value


@pytest.mark.parametrize("args, ok", [
    ({"since": "2025-01-02"}, True), ({"since": None}, True), ({"since": 20250102}, False),
    ({"since": "x", "ids": [1, 2]}, True), ({"since": "x", "ids": None}, True), ({"since": "x", "ids": ["1"]}, False),
    ({"since": "x", "ratio": 1.5}, True), ({"since": "x", "ratio": 2}, True), ({"since": "x", "ratio": "2"}, False),
    ({"since": "x", "mode": "full"}, True), ({"since": "x", "mode": False}, True), ({"since": "x", "mode": "up"}, False),
    ({"since": "x", "free": 3}, True), ({"since": "x", "free": ["a"]}, True),
])
def test_any_of_alternatives_type_a_value(args, ok):
    assert accepts(call(args, "search"), OPTIONAL) is ok


def test_closing_completes_every_prefix_of_a_call():
    """From anywhere inside a call, `closing` is a shortest way out: the turn then holds a call that parses, to the
    same tool, with every required parameter."""
    grammar = CallGrammar(TOOLS)
    args = {"term": "sl\u00e9ep", "filter": {"year": 2020}, "authors": ["a", "b"], "ratio": -1.5e-3, "full": True,
            "sort": "asc", "extra": {"k": [None]}}
    cases = [(TOOLS, call(args)), (TOOLS, call(args, style="pretty")), (TOOLS, call({"x": 3, "y": 2.5}, "math.hypot")),
             (TOOLS, call({}, "no-args")), (OPTIONAL, call({"ids": [1], "mode": "full", "since": "x"}, "search"))]
    for tools, text in cases:
        grammar = CallGrammar(tools)
        for cut in range(text.index("<tool_call>") + len("<tool_call>"), text.index("</tool_call>")):
            state = grammar.feed(FREE, text[:cut])
            closed = text[:cut] + grammar.closing(state)
            assert not grammar.in_call(grammar.feed(FREE, closed)), closed
            turn = parse_model_turn(closed)
            assert turn.format_valid and len(turn.calls) == 1, closed
            name = turn.calls[0].name
            required = {"pubmed-search": "term", "search": "since"}.get(name)
            assert required is None or required in turn.calls[0].arguments, closed
    assert grammar.closing(FREE) == ""


def test_tokens_inside_and_outside_a_call():
    grammar = CallGrammar(TOOLS)
    inside = grammar.feed(FREE, CALL_OPEN + '{"name":"pubmed-search","args":{"term":"')
    assert grammar.in_call(inside) and not grammar.in_call(FREE)
    assert token_allowed(grammar, inside, None) == inside  # a byte of a longer character, inside a string
    assert token_allowed(grammar, inside, "<end_of_turn>") is None  # no control text inside a call
    assert token_allowed(grammar, FREE, "<end_of_turn>") is not None
    after_key = grammar.feed(FREE, CALL_OPEN + '{"name":"pubmed-search","args":{"num')
    assert token_allowed(grammar, after_key, "_results") is not None and token_allowed(grammar, after_key, "s") is None


@pytest.mark.parametrize("pieces, ok", [
    (["4}}", "#", "<", "/", "tool", "_", "call", ">"], False),  # the model closing the call inside the value
    (["<", "end_of", "_turn", ">"], False), (["a <b>", "<", "tools", ">"], False), (["<", "unused", "12", ">"], False),
    (["a <b> c", "<", "/i>"], True), (["x < y", " > z"], True), (["<\\/", "tool_call>"], True),  # JSON's `\/`
])
def test_a_string_holds_no_reserved_tag(pieces, ok):
    """A value may hold `<` and `>`, but no tag of the format or control token written as text, whatever the tokens
    that spell it: a `</tool_call>` inside a value ends the block for the parser, and no call parses."""
    grammar = CallGrammar(TOOLS)
    state = grammar.feed(FREE, CALL_OPEN + '{"name":"pubmed-search","args":{"term":"')
    for piece in pieces:
        state = state and token_allowed(grammar, state, piece)
    assert (state is not None) == ok
    if ok:
        closed = grammar.feed(state, '"}}' + CALL_CLOSE)
        assert closed is not None and not grammar.in_call(closed)
        text = CALL_OPEN + '{"name":"pubmed-search","args":{"term":"' + "".join(pieces) + '"}}' + CALL_CLOSE
        assert parse_model_turn(text).format_valid


def test_constrained_decoding_is_greedy_where_no_call_opens(tiny_base):
    """The host loop of constrained decoding gives tunix's greedy tokens wherever the grammar does not bind."""
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    model, config = gemma.load(tiny_base, dtype=jnp.float32)
    prompts = ["abcdefg", "a longer prompt, padded less", "x", "0123"]
    free = sampling.generate(model, config, tok, prompts, 12, batch_size=2)
    bound = sampling.generate(model, config, tok, prompts, 12, batch_size=2, tools=[TOOLS] * len(prompts))
    unbound = [i for i, out in enumerate(free) if "<tool_call>" not in out.text]
    assert unbound and all(bound[i] == free[i] for i in unbound)  # text, stop, no token changed, no margins


def test_constrained_decoding_writes_a_call_from_an_opened_turn(tiny_base):
    """A prompt that opens the call itself: whatever tiny-random prefers, it writes a whole call to an offered tool
    with typed arguments within the budget (the grammar closes the call when the tokens left need it), and the
    grammar had to step in."""
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    model, config = gemma.load(tiny_base, dtype=jnp.float32)
    prompts = [render_prompt(TOOLS, q, "compact")[len("<bos>"):] + CALL_OPEN for q in ("Find sleep papers.", "Go")]
    grammar = CallGrammar(TOOLS)
    for out in sampling.generate(model, config, tok, prompts, 40, batch_size=2, tools=[TOOLS] * len(prompts)):
        assert out.stop in sampling.STOPS and len(out.margins) <= out.text.count(CALL_CLOSE)
        state = grammar.feed(FREE, CALL_OPEN + out.text)
        assert state is not None and not grammar.in_call(state) and out.changed > 0
        assert out.text.startswith('{"name":') and parse_model_turn(CALL_OPEN + out.text).format_valid


class ScriptedVocabulary:
    """A vocabulary of whole pieces, for driving the host side of constrained decoding with chosen logits."""

    def __init__(self, pieces):
        pieces = [*pieces, *([] if "\n" in pieces else ["\n"])]
        self.texts = [None, None, *pieces] + [f"zz{i}" for i in range(100)]  # 0: <eos>, 1: <end_of_turn>
        self.stops, self.end, self.newline = frozenset({0, 1}), 1, self.texts.index("\n")

    def id(self, piece):
        return self.texts.index(piece)

    def encode(self, text):
        return [2] * len(text)  # only its length is read: the budget below is never short

    def decode(self, ids):
        return "".join(self.texts[t] or "" for t in ids)


UNITS = [{"name": "plan", "parameters": {"type": "object", "properties": {
    "max_cost": {"type": "number"}, "days": {"type": "integer"}}, "required": ["max_cost"]}}]


def decode_preferring(vocabulary, wants):
    """Greedy decoding of one row under UNITS' grammar where, at each step, the model most wants `wants[text so
    far's ending]` (the longest matching ending), then a digit `0`, then every other piece in vocabulary order."""
    import numpy as np

    rows = sampling._Rows([CallGrammar(UNITS)], ["<start_of_turn>model\n"], vocabulary, 64)
    text = ""
    while not rows.all_done() and len(rows.out[0]) < 40:
        logits = np.zeros(len(vocabulary.texts), np.float32)
        logits[vocabulary.id("0")] = 1.0
        logits[vocabulary.id(wants[max((k for k in wants if text.endswith(k)), key=len)])] = 2.0
        rows.pick(np.array([int(logits.argmax())]), logits[None])
        text = "".join(vocabulary.texts[t] or "" for t in rows.out[0])
    return text


OPEN = '<tool_call>\n{"name": "plan", "args": {"max_cost": '


@pytest.mark.parametrize("unit", [" dollars", "$", " days"])
def test_a_number_ends_where_the_model_wants_a_unit(unit):
    """"$50" and "3 days": the model wants the unit after the number, which the grammar refuses. The number then
    ends (the call goes on with `,` or `}`) instead of taking the next most likely digit, again and again."""
    v = ScriptedVocabulary([OPEN, "5", "0", "3", "$", " dollars", " days", ', "days": ', "}}", "\n</tool_call>"])
    wants = {"": OPEN, OPEN: "5", OPEN + "5": "0", OPEN + "50": unit, "50,": ', "days": ', '"days": ': "3",
             '"days": 3': unit, "}": "}}", "}}": "\n</tool_call>", "</tool_call>": "}}"}
    out = decode_preferring(v, wants)
    (call,) = parse_model_turn(out).calls
    assert call.arguments["max_cost"] == 50 and call.arguments.get("days", 3) == 3, out


def test_a_number_the_model_never_ends_stops_at_the_digit_cap():
    """A model that wants one more `0` after every digit (`"time": 4000000...`): the number ends at
    MAX_NUMBER_DIGITS digits, the call closes, and evaluate does not count a runaway value."""
    from stages.evaluate import runaway_value

    v = ScriptedVocabulary([OPEN, "4", "0", "}}", "\n</tool_call>"])
    wants = {"": OPEN, OPEN: "4", "4": "0", "0": "0", "}}": "\n</tool_call>", "</tool_call>": "}}"}
    out = decode_preferring(v, wants)
    (call,) = parse_model_turn(out).calls
    assert call.arguments["max_cost"] == 4 * 10 ** (MAX_NUMBER_DIGITS - 1), out
    assert not runaway_value(out, [{"name": call.name, "arguments": call.arguments}])
    grammar = CallGrammar(UNITS)
    assert grammar.feed(FREE, OPEN + "1" * MAX_NUMBER_DIGITS) is not None
    assert grammar.feed(FREE, OPEN + "1" * (MAX_NUMBER_DIGITS + 1)) is None
    assert grammar.feed(FREE, OPEN + "1." + "1" * (MAX_NUMBER_DIGITS - 1) + "e123") is not None


@pytest.mark.parametrize("second, calls", [(6, [5, 6]), (5, [5])])
@pytest.mark.parametrize("tag", [["<tool_call>"], ["<", "tool", "_", "call", ">"]])  # Gemma's tokenizer: 5 tokens
def test_a_turn_never_repeats_a_call(second, calls, tag):
    """A model that writes `plan(max_cost=5)`, then a second call, then ends its turn: a second call with another
    value stays; the same call again is dropped, and the row stops there (a turn the model did not end)."""
    import numpy as np

    first = '\n{"name": "plan", "args": {"max_cost": 5}}'
    again = f'\n{{"name": "plan", "args": {{"max_cost": {second}}}}}'
    v = ScriptedVocabulary([*tag, first, again, "\n</tool_call>", "\n"])
    script = [*tag, first, "\n</tool_call>", "\n", *tag, again, "\n</tool_call>", "\n"]
    rows = sampling._Rows([CallGrammar(UNITS)], ["<start_of_turn>model\n"], v, 256)
    for piece in script + [None]:
        if rows.all_done():
            break
        logits = np.zeros(len(v.texts), np.float32)
        logits[1 if piece is None else v.id(piece)] = 1.0  # None: the model ends its turn
        rows.pick(np.array([int(logits.argmax())]), logits[None])
    out = v.decode(rows.out[0])
    assert [c.arguments["max_cost"] for c in parse_model_turn(out).calls] == calls, out
    assert rows.all_done() and rows.rule_stop[0] == (sampling.REPEATED_CALL if second == 5 else None)


def test_each_closed_call_notes_the_end_margin():
    """A model that prefers the newline by one nat after `plan(max_cost=5)`, writes a second call, then prefers
    ending its turn by two: the margins noted are logit(<end_of_turn>) - logit(newline) at those two places."""
    import numpy as np

    first = '<tool_call>\n{"name": "plan", "args": {"max_cost": 5}}'
    second = '<tool_call>\n{"name": "plan", "args": {"max_cost": 6}}'
    v = ScriptedVocabulary([first, second, "\n</tool_call>"])
    rows = sampling._Rows([CallGrammar(UNITS)], ["<start_of_turn>model\n"], v, 64)
    script = [{first: 1}, {"\n</tool_call>": 1}, {None: 1, "\n": 2},  # None: <end_of_turn>
              {second: 1}, {"\n</tool_call>": 1}, {None: 3, "\n": 1}]
    for scores in script:
        if rows.all_done():
            break
        logits = np.zeros(len(v.texts), np.float32)
        for piece, score in scores.items():
            logits[v.end if piece is None else v.id(piece)] = score
        rows.pick(np.array([int(logits.argmax())]), logits[None])
    out = v.decode(rows.out[0])
    assert [c.arguments["max_cost"] for c in parse_model_turn(out).calls] == [5, 6], out
    assert rows.margins[0] == [-1.0, 2.0]
    assert rows.all_done() and rows.rule_stop[0] is None


@pytest.mark.parametrize("budget, opened", [(10, False), (64, True)])
def test_a_call_is_opened_only_where_it_fits_the_budget(budget, opened):
    """With fewer tokens left than the shortest whole call needs, the turn ends instead of opening a call that
    would be cut off (an output that does not parse)."""
    import numpy as np

    v = ScriptedVocabulary([OPEN])
    rows = sampling._Rows([CallGrammar(UNITS)], ["<start_of_turn>model\n"], v, budget)
    logits = np.zeros(len(v.texts), np.float32)
    logits[v.id(OPEN)] = 1.0
    rows.pick(np.array([v.id(OPEN)]), logits[None])
    assert (rows.out[0] == [v.id(OPEN)]) == opened and rows.all_done() != opened
    assert rows.rule_stop[0] == (None if opened else sampling.NO_ROOM_FOR_CALL)
    assert rows.changed[0] == 0  # a rule's end is counted once, where the row's completion is made
