"""`gemma-toolcall call`: the tuned model on your own tools, from the pipeline's outputs, printing OpenAI-style JSON.

    gemma-toolcall call --tools tools.json "What's the weather in Paris?"
    gemma-toolcall call --tools tools.json --gguf models/export/gguf/model-Q8_0.gguf "..."

Tools come as a JSON list (or `{"tools": [...]}`, what an MCP server's tools/list returns) in any of three shapes:
OpenAI's `{"type": "function", "function": {name, description, parameters}}`, MCP's `{name, description,
inputSchema}`, or bare `{name, description, parameters}`. The answer is one assistant message: `tool_calls` with
each call's arguments as a JSON string (as OpenAI's API returns them), or `content` when the model answers in words.
"""
from __future__ import annotations

import json
from pathlib import Path

from gemma_toolcall.chat_format import JSON_STYLES, parse_model_turn, render_prompt


class UsageError(SystemExit):
    """Bad input to the command: one line naming what to fix, no traceback."""

    def __init__(self, message: str):
        super().__init__(f"gemma-toolcall call: {message}")


def normalize_tool(tool, where: str) -> dict:
    """One tool in any of the accepted shapes → `{name, description, parameters}`, the shape training saw."""
    if not isinstance(tool, dict):
        raise UsageError(f"{where} is not a JSON object")
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        tool = tool["function"]
    name = tool.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where} has no name; every tool needs a \"name\" string")
    parameters = tool.get("parameters", tool.get("inputSchema", {"type": "object", "properties": {}}))
    if not isinstance(parameters, dict):
        raise UsageError(f"tool {name!r}: its parameters (or inputSchema) must be a JSON Schema object")
    out = {"name": name, "description": tool.get("description") or ""}
    return {**out, "parameters": parameters}


def read_tools(path: Path) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; --tools names a JSON file of tools") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not readable JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path}: expected a list of tools (or {{\"tools\": [...]}}), got {type(data).__name__}")
    tools = [normalize_tool(t, f"{path}: tool {i}") for i, t in enumerate(data)]
    names = [t["name"] for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"{path}: tool names must be unique, {duplicates} appear more than once")
    return tools


def assistant_message(output: str) -> dict:
    """The model's turn as an OpenAI chat completion message."""
    parsed = parse_model_turn(output)
    message = {"role": "assistant", "content": parsed.text or None}
    if parsed.calls:
        message["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                                 for i, c in enumerate(parsed.calls)]
    if parsed.errors:
        message["content"] = output.split("<end_of_turn>", 1)[0].strip()  # show what it wrote: nothing parsed
    return message


def check_model_dir(path: Path, must_hold: str, made_by: str) -> None:
    if not (Path(path) / must_hold).is_file():
        raise UsageError(f"{path}/{must_hold} not found: run `{made_by}` first, or point the option at that folder")


def json_style(requested: str | None) -> str:
    """The tool-list style training rendered with: params.yaml's `render.json_style` in a pipeline folder."""
    if requested:
        if requested not in JSON_STYLES:
            raise UsageError(f"--json-style must be one of {list(JSON_STYLES)}")
        return requested
    try:
        import yaml

        return yaml.safe_load(Path("params.yaml").read_text())["render"]["json_style"]
    except (OSError, KeyError, TypeError):
        return "pretty"


def generate_jax(base: Path, lora: Path | None, prompt: str, tools: list[dict], max_new_tokens: int,
                 constrained: bool) -> str:
    from gemma_toolcall import model as gemma
    from gemma_toolcall.chat_format import BOS
    from gemma_toolcall.decoding import sampling

    check_model_dir(base, "config.json", "dvc repro base_model")
    if lora is not None:
        check_model_dir(lora, "adapter.json", "dvc repro train")
        _, model, config = gemma.load_tuned(base, lora)
    else:
        model, config = gemma.load(base)
    tok = gemma.Tokenizer(base / "tokenizer.model")
    [completion] = sampling.generate(model, config, tok, [prompt[len(BOS):]], max_new_tokens, 1,
                                     tools=[tools] if constrained else None)
    return completion.text


def generate_gguf(path: Path, tools: list[dict], question: str, max_new_tokens: int) -> dict:
    """Greedy decoding in llama.cpp (the `llama` extra's xllamacpp: its OpenAI-compatible server, in this process,
    on 127.0.0.1), prompted by the chat template inside the file. llama.cpp decodes freely; where it returns the
    call as `tool_calls` they are printed as they come, otherwise its text is parsed as the JAX path's is."""
    try:
        import xllamacpp
    except ImportError:
        raise UsageError("--gguf runs llama.cpp through xllamacpp: pip install -e '.[llama]'") from None
    import urllib.request

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 4096
    params.warmup = False
    server = xllamacpp.Server(params)
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_new_tokens, "temperature": 0,
            "tools": [{"type": "function", "function": t} for t in tools]}
    request = urllib.request.Request(server.listening_address + "/v1/chat/completions",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        message = json.loads(response.read())["choices"][0]["message"]
    del server
    if message.get("tool_calls"):
        return {"role": "assistant", "content": message.get("content") or None, "tool_calls": message["tool_calls"]}
    return assistant_message(message.get("content") or "")


def run(args) -> int:
    tools = read_tools(args.tools)
    if not args.question.strip():
        raise UsageError("the question is empty")
    if args.gguf:
        if not Path(args.gguf).is_file():
            raise UsageError(f"{args.gguf} not found: run `dvc repro export` first, or name a .gguf file")
        message = generate_gguf(Path(args.gguf), tools, args.question, args.max_new_tokens)
        print(json.dumps(message, ensure_ascii=False, indent=2))
        return 0
    else:
        prompt = render_prompt(tools, args.question, json_style(args.json_style))
        lora = None if args.lora in (None, "none") else Path(args.lora)
        output = generate_jax(Path(args.base), lora, prompt, tools, args.max_new_tokens, not args.free)
    print(json.dumps(assistant_message(output), ensure_ascii=False, indent=2))
    return 0


def add_parser(sub) -> None:
    c = sub.add_parser("call", help="the tuned model on your tools: prints OpenAI-style tool_calls JSON",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    c.add_argument("question", help="what the user asks")
    c.add_argument("--tools", type=Path, required=True,
                   help="a JSON file of tools (OpenAI, MCP inputSchema or bare {name, description, parameters})")
    c.add_argument("--base", default="models/base", help="the base model folder (default: models/base)")
    c.add_argument("--lora", default="models/lora", help="the LoRA folder, or none for the base model alone")
    c.add_argument("--gguf", help="a GGUF file (models/export/gguf/model-Q8_0.gguf) to run in llama.cpp instead of "
                   "JAX (free decoding: the schema constraint is the JAX path's)")
    c.add_argument("--free", action="store_true", help="decode without the tools' schemas (default: constrained)")
    c.add_argument("--json-style", help="tool-list style of the prompt (default: params.yaml's render.json_style)")
    c.add_argument("--max-new-tokens", type=int, default=256)
    c.set_defaults(run=run)
