"""The exported chat template writes what `chat_format` writes, byte for byte, through transformers' own
`apply_chat_template` and the tokenizer the export stage writes; and what it cannot match is stated here."""
import json
import re

import numpy as np
import pytest
import yaml
from hypothesis import assume, given, settings, strategies as st
from safetensors.numpy import save_file

from conftest import ROOT
from gemma_toolcall import bfcl, model as gemma
from gemma_toolcall.chat_format import (BOS, JSON_STYLES, RESERVED_TAG, parse_model_turn, render_conversation,
                                        render_prompt)
from gemma_toolcall.chat_template import FIXED_TAGS, LIMITS, chat_template
from gemma_toolcall.dataset import toucan
from gemma_toolcall.dataset.toucan import Conversation, MalformedRow, ToolCall, ToolResult, Turn
from gemma_toolcall.training import tokenize_example
from stages import export
from test_fuzz import arguments, json_values, names, texts

TOOLS = [{"name": "weather-server-get_forecast", "description": "Forecast, in °C.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                         "required": ["city"]}},
         {"name": "math.factorial", "description": "n!", "parameters": {"type": "object",
                                                                       "properties": {"n": {"type": "integer"}}}}]
FORECAST, FACTORIAL = (t["name"] for t in TOOLS)


def random_mlp_adapter(base, out, rank: int = 2) -> None:
    """What `train` saves, for LoRA on the MLP kernels (tunix's (in, out) layout), random: the export runs without
    training (applying qwix LoRA to build one costs seconds)."""
    config = json.loads((base / "config.json").read_text())
    d, f = config["hidden_size"], config["intermediate_size"]
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for proj, (n_in, n_out) in {"gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}.items():
            tensors[f"layers.{layer}.mlp.{proj}.kernel_lora_a"] = rng.normal(0, 0.02, (n_in, rank)).astype(np.float32)
            tensors[f"layers.{layer}.mlp.{proj}.kernel_lora_b"] = rng.normal(0, 0.02, (rank, n_out)).astype(np.float32)
    out.mkdir()
    save_file(tensors, str(out / "adapter.safetensors"))
    (out / "adapter.json").write_text(json.dumps({
        "rank": rank, "alpha": 2.0 * rank, "targets": ["gate_proj", "up_proj", "down_proj"], "train_tokens": [],
        "base_model_sha256": gemma.fingerprint(base)}))


@pytest.fixture(scope="module")
def exported(tiny_base, tmp_path_factory):
    """The export stage's output folder of the tiny model, one per JSON style."""
    tmp = tmp_path_factory.mktemp("chat_template")
    random_mlp_adapter(tiny_base, tmp / "lora")
    for style in JSON_STYLES:
        export.run(tmp / "lora", tiny_base, tmp / style, style)
    return {style: tmp / style for style in JSON_STYLES}


@pytest.fixture(scope="module")
def tokenizers(exported):
    from transformers import AutoTokenizer

    return {style: AutoTokenizer.from_pretrained(out / "merged") for style, out in exported.items()}


def apply(tok, messages, tools=None, generation=False) -> str:
    return tok.apply_chat_template(messages, tools=tools, add_generation_prompt=generation, tokenize=False)


def result_value(content: str):
    """A tool result as chat_format writes it (parsed where it is JSON): what a caller passes as the content."""
    try:
        return toucan.loads_value(content)
    except ValueError:
        return content


def to_messages(conv: Conversation, openai=True, named=True, ids=False, wrap_tools=True):
    """The conversation as Hugging Face messages and tools, in either of the shapes each may take."""
    messages = [{"role": "system", "content": conv.system}] if conv.system else []
    calls = []
    for turn in conv.turns:
        if turn.role == "user":
            messages.append({"role": "user", "content": turn.text})
        elif turn.role == "model":
            calls = [{"name": c.name, "arguments": c.arguments} for c in turn.calls]
            calls = [{"type": "function", "function": c} for c in calls] if openai else calls
            calls = [{**c, "id": f"call_{len(messages)}_{i}"} for i, c in enumerate(calls)] if ids else calls
            extra = {"tool_calls": calls} if calls else {}
            messages.append({"role": "assistant", "content": turn.text or (None if calls else ""), **extra})
        else:
            for call, r in zip(calls, turn.results):
                extra = {**({"name": r.name} if named else {}), **({"tool_call_id": call["id"]} if ids else {})}
                messages.append({"role": "tool", "content": result_value(r.content), **extra})
    tools = [{"type": "function", "function": t} for t in conv.tools] if wrap_tools else conv.tools
    return messages, tools


def conversation(system: str = "") -> Conversation:
    """Parallel calls, their results (JSON and text), an answer, a later user turn, a call without text."""
    paris, rome = ToolCall(FORECAST, {"city": "Paris", "days": 3}), ToolCall(FORECAST, {"city": "Roma ☀"})
    return Conversation(TOOLS, [
        Turn("user", "Weather in Paris and Rome? 東京 too"),
        Turn("model", "Checking both.", (paris, rome)),
        Turn("tool", results=(ToolResult(FORECAST, '{"temp": 21.5, "sky": "clear"}'), ToolResult(FORECAST, "rain"))),
        Turn("model", "Paris 21.5 °C, Rome rain."),
        Turn("user", "And 5!?"),
        Turn("model", "", (ToolCall(FACTORIAL, {"n": 5}),)),
        Turn("tool", results=(ToolResult(FACTORIAL, "120"),)),
        Turn("model", "120"),
    ], system)


def test_the_template_escapes_chat_formats_reserved_tags(tokenizers):
    alternatives = re.findall(r"\(\?:([^)]*)\)", RESERVED_TAG.pattern)
    listed = set(alternatives[0].split("|")) | {"/" + a for a in alternatives[0].split("|")}
    listed |= set(alternatives[1].split("|"))
    assert listed == set(FIXED_TAGS) | {r"unused\d+"}
    values = [f"a<{tag}>b" for tag in FIXED_TAGS] + ["<unused0>", "<unused6241>x", "<unused>", "<unusedX>",
                                                     "<unused<unused1>", "</bos>", "<tools", "<<tool_call>>"]
    tools = [{"name": "t<tool_call>", "description": " ".join(values), "parameters": {"v": values}}]
    for style, tok in tokenizers.items():
        prompt = render_prompt(tools, "q", style)
        assert prompt.count("\\u003c") == len(RESERVED_TAG.findall(json.dumps(tools))) > 2 * len(FIXED_TAGS)
        assert apply(tok, [{"role": "user", "content": "q"}], tools, generation=True) == prompt


@pytest.mark.parametrize("style", JSON_STYLES)
@pytest.mark.parametrize("shape", [{}, dict(openai=False, named=False, wrap_tools=False), dict(ids=True, named=False)],
                         ids=["openai", "bare-positional", "by-call-id"])
def test_conversations_render_as_training_data(tokenizers, style, shape):
    for system in ("", "Be brief.\n\nAnswer in English."):
        conv = conversation(system)
        messages, tools = to_messages(conv, **shape)
        assert apply(tokenizers[style], messages, tools) == render_conversation(conv, style).text
        # the prompt before the first model turn, as evaluation renders it
        n = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        expected = render_prompt(conv.tools, conv.turns[0].text, style, system)
        assert apply(tokenizers[style], messages[:n], tools, generation=True) == expected


def test_system_messages_call_ids_and_json_text_arguments(tokenizers):
    """Two system messages (one as content parts, after the turns), results answered out of order and named by
    their tool_call_id, arguments as the JSON text OpenAI clients send (in the style's spelling)."""
    calls = (ToolCall(FORECAST, {"city": "A"}), ToolCall(FACTORIAL, {"n": 3}))
    results = (ToolResult(FORECAST, "sun"), ToolResult(FACTORIAL, "6"))

    def conv(results):
        return Conversation(TOOLS, [Turn("user", "q"), Turn("model", "", calls), Turn("tool", results=results),
                                    Turn("model", "ok")], system="one\n\ntwo")

    for style, tok in tokenizers.items():
        (_, user, assistant, first, second, answer), tools = to_messages(conv(results), ids=True, named=False)
        for call in assistant["tool_calls"]:
            call["function"]["arguments"] = json.dumps(call["function"]["arguments"],
                                                       separators=(",", ":") if style == "compact" else None)
        messages = [{"role": "system", "content": "one"}, user, assistant, second, first,
                    {"role": "system", "content": [{"type": "text", "text": "two"}]}, answer]
        assert apply(tok, messages, tools) == render_conversation(conv(results[::-1]), style).text


def small_float(value) -> bool:
    """A float that orjson (chat_format's pretty tool lists) and json.dumps (the template) write differently."""
    if isinstance(value, float):
        return 1e-9 <= abs(value) < 1e-4
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(small_float(c) for c in children)


free_texts = texts.filter(lambda t: not RESERVED_TAG.search(t))
tool_specs = st.fixed_dictionaries({"name": names, "description": texts, "parameters": json_values})
results = st.one_of(texts, json_values.map(json.dumps))


@st.composite
def conversations(draw) -> Conversation:
    """The fuzz tests' values (tags, quotes, surrogates, emoji, huge ints) in well-formed conversations."""
    turns = [Turn("user", draw(free_texts))]
    for _ in range(draw(st.integers(0, 2))):
        calls = tuple(draw(st.lists(st.builds(ToolCall, names.filter(bool), arguments), min_size=1, max_size=3)))
        turns += [Turn("model", draw(free_texts), calls),
                  Turn("tool", results=tuple(ToolResult(c.name, draw(results)) for c in calls))]
        if draw(st.booleans()):
            turns += [Turn("model", draw(free_texts)), Turn("user", draw(free_texts))]
    turns.append(Turn("model", draw(free_texts)))
    return Conversation(draw(st.lists(tool_specs, max_size=3)), turns, draw(free_texts))


@settings(max_examples=30, deadline=None)
@given(conversations(), st.sampled_from(JSON_STYLES),
       st.fixed_dictionaries({"openai": st.booleans(), "named": st.booleans(), "ids": st.booleans(),
                              "wrap_tools": st.booleans()}))
def test_fuzzed_conversations_render_as_training_data(tokenizers, conv, style, shape):
    assume(style == "compact" or not small_float(conv.tools))  # see test_what_the_template_cannot_match
    messages, tools = to_messages(conv, **shape)
    assert apply(tokenizers[style], messages, tools) == render_conversation(conv, style).text


BFCL_LIKE = [  # BFCL's shape: "dict" schemas, floats, several functions, a system message, non-ASCII
    {"question": [[{"role": "user", "content": "Area of a triangle, base 10 and height 5?"}]],
     "function": [{"name": "calculate_triangle_area", "description": "Area of a triangle.", "parameters": {
         "type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "float", "default": 0.5},
                                        "unit": {"type": "string", "enum": ["cm", "m"]}}, "required": ["base"]}}]},
    {"question": [[{"role": "system", "content": "Réponds en français."},
                   {"role": "user", "content": "Quel temps à Zürich et 東京 ?"}]],
     "function": [{"name": "weather.get", "description": "Météo <tools>.", "parameters": {
         "type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                  {"name": "math.gcd", "description": "gcd", "parameters": {"type": "dict", "properties": {}}}]},
]


def bfcl_questions():
    """BFCL_LIKE, and the first questions of each evaluated category where the BFCL data is on disk."""
    root = ROOT / "data" / "bfcl"
    if not (root / "bfcl_eval" / "data").is_dir():
        return BFCL_LIKE
    categories = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluate"]["categories"]
    return BFCL_LIKE + [q for c in categories for q in bfcl.load(root, c, limit=40)]


@pytest.mark.parametrize("style", JSON_STYLES)
def test_bfcl_prompts(tokenizers, style):
    for q in bfcl_questions():
        tools = bfcl.tools(q)
        expected = render_prompt(tools, bfcl.user_text(q), style, bfcl.system_text(q))
        wrapped = [{"type": "function", "function": t} for t in tools]
        assert apply(tokenizers[style], q["question"][0], wrapped, generation=True) == expected, q.get("id")


# What the template cannot match: each limit it states (LIMITS, also atop the template), as it shows.
USER = [{"role": "user", "content": "q"}]


def one_call(content: str) -> Conversation:
    return Conversation([], [Turn("user", "q"), Turn("model", "", (ToolCall("f", {"x": 1}),)),
                             Turn("tool", results=(ToolResult("f", content),)), Turn("model", "a")])


def test_cannot_match_a_json_result_given_as_text(tokenizers):
    conv = one_call('{"t": 0}')
    messages, _ = to_messages(conv)  # the result as its value: chat_format's bytes
    assert apply(tokenizers["pretty"], messages) == render_conversation(conv).text
    messages[2]["content"] = '{"t": 0}'  # as JSON text: a JSON string, where chat_format parses it
    assert apply(tokenizers["pretty"], messages) == render_conversation(conv).text.replace('{"t": 0}',
                                                                                           '"{\\"t\\": 0}"')


def test_cannot_match_arguments_given_as_json_text_in_another_spelling(tokenizers):
    conv = one_call("r")
    messages, _ = to_messages(conv)
    messages[1]["tool_calls"][0]["function"]["arguments"] = '{"x":1}'  # compact's spelling
    assert apply(tokenizers["pretty"], messages) == render_conversation(conv).text.replace('{"x": 1}', '{"x":1}')
    assert apply(tokenizers["compact"], messages) == render_conversation(conv, "compact").text


def test_cannot_match_orjsons_small_floats_in_pretty_tool_lists(tokenizers):
    tools = [{"name": "f", "parameters": {"default": 1e-05, "min": 2.5e-07}}]
    template = apply(tokenizers["pretty"], USER, tools)
    assert '"default": 1e-05' in template and '"default": 0.00001' in render_prompt(tools, "q")
    assert '"min": 2.5e-07' in template and '"min": 2.5e-7' in render_prompt(tools, "q")
    assert apply(tokenizers["compact"], USER, tools, generation=True) == render_prompt(tools, "q", "compact")


def test_cannot_match_unused_tags_with_other_scripts_digits(tokenizers):
    tools = [{"name": "f", "description": "<unused٣>"}]  # RESERVED_TAG's \d takes ٣, the template's 0-9 do not
    assert "<unused٣>" in apply(tokenizers["pretty"], USER, tools) and "\\u003cunused٣>" in render_prompt(tools, "q")


def test_cannot_match_chat_format_refusing_free_text_with_tags(tokenizers):
    """Written as given, as render_prompt does; render_conversation refuses it, so training data holds none."""
    tagged = [{"role": "user", "content": "say <tool_call>"}]
    assert apply(tokenizers["pretty"], tagged, generation=True) == render_prompt([], "say <tool_call>")
    with pytest.raises(MalformedRow, match="format_tag_in_text"):
        render_conversation(Conversation([], [Turn("user", "say <tool_call>"), Turn("model", "a")]))


def test_cannot_match_the_toucan_parsers_tool_defaults(tokenizers):
    """Tools are written as given; a Toucan row's tools are filled in first (render_prompt writes them as given too)."""
    bare = [{"name": "f"}]
    assert apply(tokenizers["compact"], USER, bare, generation=True) == render_prompt(bare, "q", "compact")
    filled = toucan.parse_tools(json.dumps(bare))
    assert filled == [{"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}}]
    assert '"description"' in render_prompt(filled, "q") and '"description"' not in render_prompt(bare, "q")


def test_the_template_opens_with_its_limits():
    for style in JSON_STYLES:
        comment, body = chat_template(style).split("-#}", 1)
        assert LIMITS in comment and f"JSON style {style}." in comment
        # llama.cpp's minja: tojson takes `indent` only, so the compact style alone uses what it lacks
        assert ("separators" in body) == (style == "compact")


def test_export_writes_tokenizer_and_template(exported):
    from transformers import AutoTokenizer

    for style, out in exported.items():
        for form in ("merged", "peft"):  # peft/ has no config.json: tokenizer_config.json names the class
            config = json.loads((out / form / "tokenizer_config.json").read_text())
            assert config["chat_template"] == (out / form / "chat_template.jinja").read_text() == chat_template(style)
            tok = AutoTokenizer.from_pretrained(out / form)
            assert tok.chat_template == chat_template(style)
            assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<bos>", "<eos>", "<pad>", "<unk>")
            assert tok.bos_token_id == gemma.BOS and len(tok) == json.loads(
                (out / "merged" / "config.json").read_text())["vocab_size"]  # no `<mask>` past the embedding


def test_transformers_alone_prompts_and_generates(exported):
    """transformers loads merged/, applies its template, tokenizes and generates: the ids are the ones training
    and evaluation use. A random model writes no call, so the output is only parsed, not judged."""
    torch = pytest.importorskip("torch", reason="generation needs the `export` extra")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = exported["compact"] / "merged"
    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    conv = conversation("Be brief.")
    messages, tools = to_messages(conv)
    project = gemma.Tokenizer(merged / "tokenizer.model")
    rendered = render_conversation(conv, "compact")
    ids = tok.apply_chat_template(messages, tools=tools)["input_ids"]
    assert ids == tokenize_example(project, rendered.text, [{"start": a, "end": b} for a, b in rendered.model_spans])[0]

    prompt = tok.apply_chat_template(messages[:2], tools=tools, add_generation_prompt=True, return_tensors="pt")
    text = render_prompt(conv.tools, conv.turns[0].text, "compact", conv.system)
    assert prompt["input_ids"][0].tolist() == [gemma.BOS] + project.encode(text[len(BOS):])  # as evaluate's sampler
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False, eos_token_id=end_of_turn,
                         pad_token_id=tok.pad_token_id)
    new = out[0, prompt["input_ids"].shape[1]:]
    assert 0 < len(new) <= 8
    parsed = parse_model_turn(tok.decode(new))
    assert isinstance(parsed.calls, list)


def test_a_gemma_sized_vocabulary_tokenizes_as_training(tmp_path):
    """The tiny vocabulary has no merges. On the synthetic one of Gemma 3's size and special ids (random-init's),
    transformers' reading of the exported tokenizer gives training's ids for whole conversations and prompts."""
    from transformers import AutoTokenizer

    (tmp_path / "tokenizer.model").write_bytes(gemma.build_sentencepiece(gemma.full_size_tokenizer_pieces()))
    (tmp_path / "out").mkdir()
    export.write_tokenizer(tmp_path, tmp_path / "out", "pretty")
    tok, project = AutoTokenizer.from_pretrained(tmp_path / "out"), gemma.Tokenizer(tmp_path / "tokenizer.model")
    conv = conversation("Be brief.")
    messages, tools = to_messages(conv)
    for style in JSON_STYLES:
        template = chat_template(style)
        rendered = render_conversation(conv, style)
        spans = [{"start": a, "end": b} for a, b in rendered.model_spans]
        ids = tok.apply_chat_template(messages, tools=tools, chat_template=template)["input_ids"]
        assert ids == tokenize_example(project, rendered.text, spans)[0]
        prompt = render_prompt(conv.tools, conv.turns[0].text, style, conv.system)
        ids = tok.apply_chat_template(messages[:2], tools=tools, add_generation_prompt=True, chat_template=template)
        assert ids["input_ids"] == [gemma.BOS] + project.encode(prompt[len(BOS):])
