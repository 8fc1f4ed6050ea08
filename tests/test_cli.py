"""`gemma-toolcall call`: tools in OpenAI, MCP or bare shape, OpenAI-style output, one-line errors."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from gemma_toolcall import call
from gemma_toolcall.chat_format import render_model_turn
from gemma_toolcall.dataset.toucan import ToolCall

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "City, ST"}},
          "required": ["city"]}
BARE = {"name": "get_weather", "description": "Current weather.", "parameters": SCHEMA}


def gemma_toolcall(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "gemma_toolcall.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("tool", [
    BARE,
    {"type": "function", "function": BARE},
    {"name": "get_weather", "description": "Current weather.", "inputSchema": SCHEMA},
])
def test_tools_in_every_shape_become_what_training_saw(tool, tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([tool]))
    assert call.read_tools(path) == [BARE]
    path.write_text(json.dumps({"tools": [tool]}))  # an MCP server's tools/list result
    assert call.read_tools(path) == [BARE]


def test_calls_print_as_openai_tool_calls():
    output = render_model_turn("", [ToolCall("get_weather", {"city": "Berkeley, CA"}),
                                    ToolCall("get_weather", {"city": "Nice"})], "pretty") + "<end_of_turn>"
    message = call.assistant_message(output)
    assert message["content"] is None and [c["id"] for c in message["tool_calls"]] == ["call_0", "call_1"]
    assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [{"city": "Berkeley, CA"},
                                                                                        {"city": "Nice"}]
    assert call.assistant_message("I can't check that.<end_of_turn>") == {"role": "assistant",
                                                                           "content": "I can't check that."}


@pytest.mark.parametrize("content, message", [
    ("[{", "is not readable JSON"),
    ('[{"description": "no name"}]', "tool 0 has no name"),
    ('[{"name": "f", "parameters": "x"}]', "must be a JSON Schema object"),
    ('[{"name": "f"}, {"name": "f"}]', "must be unique"),
    ("[]", "expected a list of tools"),
])
def test_bad_tools_get_one_line_naming_what_to_fix(content, message, tmp_path):
    (tmp_path / "tools.json").write_text(content)
    proc = gemma_toolcall("call", "--tools", str(tmp_path / "tools.json"), "Weather?", cwd=tmp_path)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_missing_model_folder_says_which_stage_makes_it(tmp_path):
    (tmp_path / "tools.json").write_text(json.dumps([BARE]))
    proc = gemma_toolcall("call", "--tools", "tools.json", "Weather?", cwd=tmp_path)
    assert proc.returncode != 0 and "dvc repro base_model" in proc.stderr and "Traceback" not in proc.stderr


def test_the_command_runs_a_model_end_to_end(tiny_base, tmp_path):
    (tmp_path / "tools.json").write_text(json.dumps([{"type": "function", "function": BARE}]))
    proc = gemma_toolcall("call", "--tools", "tools.json", "--base", str(tiny_base), "--lora", "none",
                          "--max-new-tokens", "8", "Weather in Berkeley, CA?", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    message = json.loads(proc.stdout)
    assert message["role"] == "assistant" and ("tool_calls" in message or isinstance(message["content"], str))
