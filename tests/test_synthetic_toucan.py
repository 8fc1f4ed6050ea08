"""The offline stand-in is faithful to the real Toucan SFT schema and statistics."""
import ast
import csv
import hashlib
import json
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from conftest import REFERENCE, stage_params
from gemma_toolcall.dataset import toucan
from gemma_toolcall.standin import phrasing, sft as standin_sft
from stages import analyze, download


def rows(n=1500, seed=7):
    return list(standin_sft.generate(n, seed))


def test_shards_schema_and_names(raw_small):
    shards = toucan.shard_paths(raw_small)
    assert [p.name for p in shards] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    for p in shards:
        assert pq.read_schema(p).names == list(toucan.COLUMNS)
        assert all(str(t) == "string" for t in pq.read_schema(p).types)
    assert toucan.count_rows(shards) == 1500


def test_deterministic_from_seed(tmp_path):
    def digest(seed, name):
        download.run(stage_params("download", download.DownloadParams, rows=300, seed=seed), tmp_path / name)
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in toucan.shard_paths(tmp_path / name)]
    assert digest(3, "a") == digest(3, "b")
    assert digest(3, "a") != digest(4, "c")


def test_message_and_tool_format():
    calls = parallel = 0
    for row in rows():
        if row["messages"] is None or row["uuid"] is None:
            continue
        assert len(row["uuid"]) == 36
        try:
            messages = json.loads(row["messages"])
        except ValueError:
            continue
        roles = [m["role"] for m in messages]
        assert set(roles) <= {"user", "assistant", "tool_call", "tool_response"} and set(messages[0]) == {"role", "content"}
        for m in messages:
            if m["role"] == "tool_call":
                call = ast.literal_eval(m["content"])  # a Python repr, not JSON
                assert set(call) == {"name", "arguments"} and isinstance(call["arguments"], str)
                calls += 1
        parallel += any(a == b == "tool_call" for a, b in zip(roles, roles[1:]))
        tools = json.loads(row["tools"])
        assert all(t["type"] == "function" and "-" in t["function"]["name"] for t in tools)
        assert row["tools"] == json.dumps(tools, ensure_ascii=False)  # default separators, like the real data
    assert calls > 500 and parallel > 20


def test_malformed_share_and_kinds():
    kinds = Counter()
    data = rows(4000)
    for row in data:
        try:
            toucan.parse_row(row)
        except toucan.MalformedRow as e:
            kinds[e.kind] += 1
    assert 0.003 <= sum(kinds.values()) / len(data) <= 0.008
    assert {"invalid_json", "arguments_not_json", "call_without_response", "empty_content", "missing_value"} <= set(kinds)


def test_has_non_english_rows():
    assert sum(any(ord(ch) > 127 for ch in r["question"] or "") for r in rows()) > 10


def test_full_size_reproduces_the_real_phase1_table(tmp_path):
    """At the real SFT size (119,287 rows) the stand-in's phase-1 statistics are the real ones, cell for cell."""
    download.run(stage_params("download", download.DownloadParams, rows=standin_sft.REAL_ROWS, seed=0), tmp_path / "raw")
    analyze.run(tmp_path / "raw", tmp_path / "analysis")
    ours = list(csv.DictReader(open(tmp_path / "analysis" / "toucan_analysis_phase1.csv", encoding="utf-8")))
    real = list(csv.DictReader(open(REFERENCE / "toucan_sft_analysis_phase1.real.csv", encoding="utf-8")))
    assert ours == real
    overview = {(r["filter_type"], r["filter_value"]): r["sample_count"]
                for r in csv.DictReader(open(tmp_path / "analysis" / "toucan_analysis.csv", encoding="utf-8"))}
    real_overview = {(r["filter_type"], r["filter_value"]): r["sample_count"]
                     for r in csv.DictReader(open(REFERENCE / "toucan_sft_analysis.real.csv", encoding="utf-8"))}
    assert overview.keys() == real_overview.keys()
    # Only the single-turn split of the <=15 / <=20 available bins is unknown from the published tables.
    differ = {k for k in overview if overview[k] != real_overview[k]}
    assert differ <= {("combined_step3_detailed", "single_turn_AND_1to3tools_AND_<=15available"),
                      ("combined_step3_detailed", "single_turn_AND_1to3tools_AND_<=20available")}


@pytest.mark.parametrize("total", [1, 7, 2000])
def test_scale_counts_sums_exactly(total):
    scaled = standin_sft.scale_counts(standin_sft.MULTI_TURN_USER_TURNS, total)
    assert sum(scaled.values()) == total


# ---------------------------------------------------------------------------------------------------------------
# Content: real catalogue tools, natural questions that state every argument.
from gemma_toolcall.dataset import mcp_catalogue  # noqa: E402
from gemma_toolcall.standin.phrasing import spoken_date  # noqa: E402


def calls_of(row):
    return [ast.literal_eval(m["content"]) for m in json.loads(row["messages"]) if m["role"] == "tool_call"]


def stated(value, text: str) -> bool:
    """A string or number argument appears in the question as written, or (a date) spelled out."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, list):
        return all(stated(v, text) for v in value)
    if isinstance(value, (int, float)):  # as a whole number (5 is not in "2025"), a unit may follow: "1492px"
        return re.search(rf"(?<![\d.]){re.escape(str(value))}(?!\d|\.\d)", text) is not None
    if len(value) == 10 and value[4] == value[7] == "-" and value.replace("-", "").isdigit():
        return value in text or spoken_date(value) in text
    return value in text


def test_catalogue_loads_from_the_installed_package():
    from importlib import resources

    data = resources.files("gemma_toolcall").joinpath("data")
    assert data.joinpath(mcp_catalogue.CATALOGUE_FILE).is_file() and data.joinpath("MCP_TOOLS_LICENSE.txt").is_file()
    servers = mcp_catalogue.load()
    assert len(servers) == 572 and sum(map(len, servers)) == 3150


def test_tools_are_real_catalogue_tools_named_as_the_sft_config():
    specs = {}  # several servers share a name ("Weather"), so a full name may have several specs
    for tools in mcp_catalogue.load():
        for t in tools:
            specs.setdefault(t.name, []).append(t.spec())
    multi_server = 0
    for row in rows(600, seed=3):
        for entry in json.loads(row["tools"]):
            assert entry in specs[entry["function"]["name"]]
        multi_server += "::" in row["target_tools"]
    assert multi_server > 20


def test_questions_state_every_argument_and_never_name_the_tool():
    checked = 0
    for row in rows(600, seed=5):
        if row["subset_name"] == "irrelevant" or row["uuid"] is None or row["messages"] is None:
            continue
        try:
            messages = json.loads(row["messages"])
            calls_of(row)  # a malformed row raises: skipped
        except (ValueError, SyntaxError):
            continue
        # Each call's arguments are stated in the user message it answers.
        user = ""
        for m in messages:
            if m["role"] == "user":
                user = m["content"]
            elif m["role"] == "tool_call":
                call = ast.literal_eval(m["content"])
                try:
                    args = json.loads(call["arguments"])
                except ValueError:
                    continue  # a malformed row's arguments
                assert all(stated(v, user) for v in args.values()), (user, args)
                assert call["name"] not in user
                short = call["name"].rsplit("-", 1)[-1]
                if not (short.isalpha() and short.islower()):
                    assert short not in user, (user, short)
                checked += 1
    assert checked > 300


def test_irrelevant_rows_answer_in_varied_text_without_a_call():
    answers = set()
    for row in rows(600, seed=9):
        if row["subset_name"] == "irrelevant" and row["messages"] and row["messages"].endswith("]"):
            messages = json.loads(row["messages"])
            assert [m["role"] for m in messages] == ["user", "assistant"]
            answers.add(messages[-1]["content"])
    assert len(answers) > 150


def test_the_wording_of_a_request_says_whether_its_calls_run_at_once():
    """Parts asked for together ("Also, please ...", "... as well") are called in one turn; parts asked for in order
    ("Then ...", "Once that's done, ...") one after the other. So a model can learn which from the request."""
    def marks(joins):  # the words of each join that no clause says
        return [j.split("{c}")[0] if len(j.split("{c}")[0]) > 5 else j.split("{c}")[1] for j in joins]
    together, in_order = marks(phrasing.THEN_PARALLEL), marks(phrasing.THEN_SEQUENTIAL)
    seen = Counter()
    for row in rows(3000, seed=11):
        try:
            messages = json.loads(row["messages"])
        except (TypeError, ValueError):
            continue
        users = [i for i, m in enumerate(messages) if m["role"] == "user"] + [len(messages)]
        for start, end in zip(users, users[1:]):
            roles = [m["role"] for m in messages[start + 1:end]]
            if roles.count("tool_call") < 2:
                continue
            ask = messages[start]["content"]
            parallel = any(a == b == "tool_call" for a, b in zip(roles, roles[1:]))
            assert any(m in ask for m in (together if parallel else in_order)), (parallel, ask)
            assert not any(m in ask for m in (in_order if parallel else together)), (parallel, ask)
            seen[parallel] += 1
    assert seen[True] > 50 and seen[False] > 50, seen


def test_a_kind_stated_twice_in_a_request_names_its_parameters():
    """Two values of one kind ("for Lyon, in Edinburgh") would leave a reader guessing which fills which parameter:
    then each phrase names its parameter."""
    import random

    from gemma_toolcall.dataset.mcp_catalogue import Tool

    tool = Tool(server="s", short="pools", description="Get pools.", label="", schema={
        "type": "object", "required": ["address", "tokenAddress"],
        "properties": {"address": {"type": "string", "description": "Address"},
                       "tokenAddress": {"type": "string", "description": "Token address"},
                       "minWordLength": {"type": "integer"}}})
    params = phrasing.params_of(tool)
    kinds = {p.name: p.kind for p in params}
    assert kinds["tokenAddress"] == "wallet" and kinds["minWordLength"] != "minutes"
    for seed in range(30):
        rng = random.Random(seed)
        args = {"address": "Lyon", "tokenAddress": "Edinburgh"}
        twin = [phrasing.Param(p.name, "city", p.type, p.words, True) for p in params[:2]]
        text, _ = phrasing.clause(rng, tool, tuple(twin), args)
        assert "address Lyon" in text or "address is Lyon" in text or "address: Lyon" in text or \
            "Lyon as the address" in text or "address set to Lyon" in text, text
        assert "token address" in text, text


def test_a_call_writes_its_arguments_in_the_order_its_request_states_them():
    """The stand-in's calls list their arguments as the request says them, so a model copies values left to right:
    across rows, each call's values appear in its request in the call's order (checked where they are written
    verbatim and once), and the order is not the schema's."""
    checked, unlike_schema = 0, 0
    for row in standin_sft.generate(600, 3):
        try:
            conv = toucan.parse_row(row)
        except toucan.MalformedRow:
            continue
        ask = conv.turns[0].text
        model = next((t for t in conv.turns if t.role == "model" and t.calls), None)
        if model is None or len(model.calls) != 1 or len(model.calls[0].arguments) < 2:
            continue
        args = model.calls[0].arguments
        values = [v for v in args.values() if isinstance(v, str)]
        if len(values) < 2 or any(ask.count(v) != 1 or any(v in w for w in values if w != v) for v in values):
            continue
        positions = [ask.index(v) for v in values]
        assert positions == sorted(positions), (ask, args)
        checked += 1
        schema = next(t for t in conv.tools if t["name"] == model.calls[0].name)["parameters"]["properties"]
        unlike_schema += [k for k in schema if k in args] != list(args)
    assert checked > 20 and unlike_schema > checked // 3, (checked, unlike_schema)


def test_the_optional_share_moves_how_many_arguments_calls_state(monkeypatch):
    """`phrasing.OPTIONAL_SHARE` is the chance a call states each optional parameter: 0 states only the required
    ones, 1 every one."""
    def mean_arguments():
        calls = []
        for row in standin_sft.generate(300, 0):
            try:
                calls += [c for t in toucan.parse_row(row).turns for c in t.calls]
            except toucan.MalformedRow:
                pass
        assert len(calls) > 100
        return sum(len(c.arguments) for c in calls) / len(calls)

    default = mean_arguments()
    monkeypatch.setattr(phrasing, "OPTIONAL_SHARE", 0.0)
    required_only = mean_arguments()
    monkeypatch.setattr(phrasing, "OPTIONAL_SHARE", 1.0)
    assert required_only < default < mean_arguments()
