"""The tool-calling format of `chat_format` as a Jinja chat template, for runtimes that render prompts themselves
(transformers' `apply_chat_template`, llama.cpp, vLLM) from the exported model's tokenizer_config.json.

The template takes Hugging Face's conventions: `messages` (system, user, assistant with `content` and/or
`tool_calls`, tool), `tools` (OpenAI `{"type": "function", "function": {...}}` entries or bare function specs),
`add_generation_prompt` and `bos_token`; and writes what `render_conversation` / `render_prompt` write, byte for
byte, within the limits listed in LIMITS (which also open the template, as a comment).

Every tag strips the whitespace around it (`{%- -%}`) and all output text comes from expressions, so what the
template writes does not depend on the engine's whitespace settings (transformers and minja set `trim_blocks` and
`lstrip_blocks`; others may not). Only what llama.cpp's engine (minja) also has is used (`tojson` with `indent`
only, string methods `.replace`, `.split`, `.lstrip`, `.startswith`, `trim`, `namespace`, `for ... if`), except
the compact style's `tojson(separators=...)` (see LIMITS).
"""
from __future__ import annotations

import json

from gemma_toolcall.chat_format import CALL_CLOSE, CALL_OPEN, END, JSON_STYLES, START, TOOLS_PREAMBLE

# RESERVED_TAG's fixed tags (its `unused\d+` is handled apart): in dumped JSON their `<` becomes `\u003c`.
FIXED_TAGS = ("tool_call", "/tool_call", "tool_response", "/tool_response", "tools", "/tools", "bos", "eos", "pad",
              "unk", "mask", "start_of_turn", "end_of_turn", "start_of_image", "end_of_image", "image_soft_token")

LIMITS = """\
Where this template and gemma_toolcall.chat_format differ (Jinja cannot parse JSON, has no regex, and
tojson is Python's json.dumps, not orjson):
- a tool message's string content is written as a JSON string; chat_format parses a content that is JSON
  ('{"t": 0}', '42', 'null') and writes the value ({"t": 0}). Pass the parsed value (dict, list, number)
  as the content to get chat_format's bytes; a list is such a value too, not content parts. (chat_format also
  turns lone-surrogate escapes in a JSON content into U+FFFD.)
- a call's `arguments` given as a JSON string is written as it is (trimmed; empty means {}); chat_format
  parses and re-serializes it, so the bytes agree only when the string is already written in this style
  (Python's json.dumps with ensure_ascii=False: ", " and ": " for pretty, "," and ":" for compact).
- pretty tool lists: a float in [1e-9, 1e-4) is written 1e-05 / 1e-06 here (json.dumps), 0.00001 / 1e-6 by
  chat_format (orjson). Other values, and the compact style, agree.
- a reserved tag inside a JSON string is escaped (\\u003c) as chat_format does, but `<unusedN>` only with
  ASCII digits N (chat_format's \\d also takes other scripts' digits).
- free text (system, user, assistant content) holding a reserved tag is written as it is, as render_prompt
  does; render_conversation refuses such a conversation (MalformedRow format_tag_in_text).
- tools are written as given; chat_format's Toucan parser first fills a missing description ("") and
  parameters ({"type": "object", "properties": {}}).
- llama.cpp: the xllamacpp build of the `llama` extra renders both styles byte for byte (a test checks
  its /apply-template). Older llama.cpp builds used minja, whose tojson takes no `separators`: there the
  compact style fails to render, and the pretty one writes an empty [] or {} across lines."""

_TEMPLATE = r"""{#-
gemma-toolcall's tool-calling format (gemma_toolcall/chat_format.py), JSON style @STYLE@.
@LIMITS@
-#}
{%- macro escape(text) -%}
{#- chat_format.dumps: a reserved tag's `<` inside JSON strings becomes \u003c (JSON has no `<` outside strings) -#}
{%- if "<" in text -%}
{%- set s = namespace(text=text) -%}
{%- for tag in @FIXED_TAGS@ -%}
{%- set s.text = s.text.replace("<" ~ tag ~ ">", "\\u003c" ~ tag ~ ">") -%}
{%- endfor -%}
{%- set parts = s.text.split("<unused") -%}
{%- set s.text = parts[0] -%}
{%- for part in parts[1:] -%}
{%- set rest = part.lstrip("0123456789") -%}
{%- set escaped = rest.startswith(">") and rest | length < part | length -%}
{%- set s.text = s.text ~ ("\\u003cunused" if escaped else "<unused") ~ part -%}
{%- endfor -%}
{{- s.text -}}
{%- else -%}
{{- text -}}
{%- endif -%}
{%- endmacro -%}
{%- macro dump(value, block=false) -%}
{{- escape(@DUMP@) -}}
{%- endmacro -%}
{%- macro text_of(content) -%}
{%- if content is string -%}
{{- content -}}
{%- elif content is iterable -%}
{%- for part in content if part.type == "text" -%}
{{- part.text -}}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- macro call_json(call) -%}
{%- set fn = call.function if call.function is defined else call -%}
{%- set args = fn.arguments if fn.arguments is defined and fn.arguments is not none else {} -%}
{%- if args is string -%}
{{- escape(@CALL_HEAD@ ~ (fn.name | tojson) ~ @CALL_ARGS@ ~ ((args | trim) or "{}") ~ "}") -}}
{%- else -%}
{{- dump({"name": fn.name, "args": args}) -}}
{%- endif -%}
{%- endmacro -%}
{%- macro tool_name(message, calls, k) -%}
{#- the message's own name, else the call its tool_call_id names, else the k-th call of the turn before -#}
{%- set found = namespace(name=message.name if message.name is defined and message.name else "") -%}
{%- for call in calls if not found.name and message.tool_call_id is defined and call.id is defined -%}
{%- if call.id == message.tool_call_id -%}
{%- set found.name = (call.function if call.function is defined else call).name -%}
{%- endif -%}
{%- endfor -%}
{%- if not found.name and calls | length > k -%}
{%- set found.name = (calls[k].function if calls[k].function is defined else calls[k]).name -%}
{%- endif -%}
{%- if not found.name -%}
{{- raise_exception("a tool message needs a name, a tool_call_id or a call of the assistant turn before it") -}}
{%- endif -%}
{{- found.name -}}
{%- endmacro -%}
{%- set ns = namespace(system="", first_user=true, in_tool=false, calls=[], k=0, specs=[]) -%}
{#- Gemma 3 has no system role: system messages, joined, open the first user turn, then the tools -#}
{%- for message in messages if message.role == "system" -%}
{%- set ns.system = ns.system ~ ("" if loop.first else "\n\n") ~ text_of(message.content) -%}
{%- endfor -%}
{%- for tool in tools or [] -%}
{%- set ns.specs = ns.specs + [tool.function if tool.function is defined else tool] -%}
{%- endfor -%}
{{- bos_token -}}
{%- for message in messages if message.role != "system" -%}
{%- if ns.in_tool and message.role != "tool" -%}
{{- @END@ ~ "\n" -}}
{%- set ns.in_tool = false -%}
{%- endif -%}
{%- if message.role == "user" -%}
{{- @START@ ~ "user\n" -}}
{%- if ns.first_user -%}
{%- set ns.first_user = false -%}
{%- if ns.system -%}
{{- ns.system ~ "\n\n" -}}
{%- endif -%}
{%- if ns.specs -%}
{{- @TOOLS_PREAMBLE@ ~ "\n<tools>\n" ~ dump(ns.specs, true) ~ "\n</tools>\n\n" -}}
{%- endif -%}
{%- endif -%}
{{- text_of(message.content) ~ @END@ ~ "\n" -}}
{%- elif message.role == "assistant" -%}
{%- set ns.calls = message.tool_calls if message.tool_calls else [] -%}
{%- set ns.k = 0 -%}
{%- set body = text_of(message.content) -%}
{{- @START@ ~ "model\n" ~ body -}}
{%- for call in ns.calls -%}
{{- ("\n" if body or not loop.first else "") ~ @CALL_OPEN@ ~ call_json(call) ~ @CALL_CLOSE@ -}}
{%- endfor -%}
{{- @END@ ~ "\n" -}}
{%- elif message.role == "tool" -%}
{#- consecutive tool messages are one user turn, as chat_format.render_tool_results writes a turn's results -#}
{{- "\n" if ns.in_tool else @START@ ~ "user\n" -}}
{%- set ns.in_tool = true -%}
{%- set result = {"name": tool_name(message, ns.calls, ns.k), "result": message.content} -%}
{{- "<tool_response>\n" ~ dump(result) ~ "\n</tool_response>" -}}
{%- set ns.k = ns.k + 1 -%}
{%- else -%}
{{- raise_exception("unknown role: " ~ message.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if ns.in_tool -%}
{{- @END@ ~ "\n" -}}
{%- endif -%}
{%- if add_generation_prompt -%}
{{- @START@ ~ "model\n" -}}
{%- endif -%}
"""

# How each style dumps `value` (a block: the tool list). tojson is json.dumps(ensure_ascii=False), as dumps is.
_DUMPS = {"pretty": '(value | tojson(indent=2)) if block else (value | tojson)',
          "compact": 'value | tojson(separators=(",", ":"))'}
_CALL_HEADS = {"pretty": ('{"name": ', ', "args": '), "compact": ('{"name":', ',"args":')}


def _literal(text: str) -> str:
    """A Jinja string literal of `text` (JSON's escapes are Jinja's for these strings)."""
    return json.dumps(text)


def _literal_list(items) -> str:
    return "[" + ", ".join(map(_literal, items)) + "]"


def chat_template(json_style: str) -> str:
    """The Jinja chat template of the format in `json_style` (render.json_style of the training data)."""
    if json_style not in JSON_STYLES:
        raise ValueError(f"json style must be one of {JSON_STYLES}, got {json_style!r}")
    head, args = _CALL_HEADS[json_style]
    fills = {"@STYLE@": json_style, "@LIMITS@": LIMITS.replace("#}", "# }"),
             "@FIXED_TAGS@": _literal_list(FIXED_TAGS), "@DUMP@": _DUMPS[json_style],
             "@CALL_HEAD@": _literal(head), "@CALL_ARGS@": _literal(args),
             "@START@": _literal(START), "@END@": _literal(END), "@TOOLS_PREAMBLE@": _literal(TOOLS_PREAMBLE),
             "@CALL_OPEN@": _literal(CALL_OPEN), "@CALL_CLOSE@": _literal(CALL_CLOSE)}
    text = _TEMPLATE
    for marker, value in fills.items():
        text = text.replace(marker, value)
    return text
