"""The offline stand-in is faithful to the real Toucan SFT schema and statistics."""
import ast
import csv
import functools
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


@functools.lru_cache(maxsize=1)
def kind_rows() -> list[dict]:
    """3,000 rows shared by the tests of row kinds (generated once)."""
    return rows(3000, seed=13)


def of_kind(kind: str) -> list[tuple[dict, toucan.Conversation]]:
    out = []
    for row in kind_rows():
        if standin_sft.row_kind(row["uuid"]) == kind:
            try:
                out.append((row, toucan.parse_row(row)))
            except toucan.MalformedRow:
                pass
    return out


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


def test_every_row_planned_malformed_fails_to_parse():
    """Also a call without arguments, where unquoting leaves valid JSON (seed 0 plans one on such a row)."""
    data = rows(4000, seed=0)
    planned = [chunk.start + i for chunk in standin_sft.plan_chunks(4000, 0) for i in chunk.malformed]
    for row in planned:
        with pytest.raises(toucan.MalformedRow):
            toucan.parse_row(data[row])


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
    if isinstance(value, dict):
        return all(stated(v, text) for v in value.values())
    if isinstance(value, (int, float)):
        return number_in(value, text)
    if len(value) == 10 and value[4] == value[7] == "-" and value.replace("-", "").isdigit():
        return value in text or spoken_date(value) in text
    return value in text


def number_in(value, text: str, unit: str = "") -> bool:
    """`value` written in `text` as a whole number (5 is not in "2025"; a unit may follow: "1492px"), then `unit`."""
    forms = {str(value)} | ({str(int(value))} if isinstance(value, float) and value.is_integer() else set())
    return any(re.search(rf"(?<![\d.]){re.escape(f)}(?!\d|\.\d){unit}", text) for f in forms)


def spoken_dates(iso: str) -> list[str]:
    y, m, d = iso.split("-")
    month = phrasing.MONTHS[int(m) - 1]
    return [spoken_date(iso), f"{int(d)} {month} {y}"]


def relative_dates(text: str) -> set[str]:
    """The dates a request names relative to the today it states ("Today is Monday, March 3, 2025. ... tomorrow")."""
    import datetime as dt

    today = re.search(r"Today is (\w+), (\w+) (\d+), (\d{4})\.", text)
    if not today:
        return set()
    base = dt.date(int(today[4]), phrasing.MONTHS.index(today[2]) + 1, int(today[3]))
    assert phrasing.WEEKDAYS[base.weekday()] == today[1]
    offsets = [2] if "the day after tomorrow" in text else [1] if "tomorrow" in text else []
    offsets += [int(n) for n in re.findall(r"\bin (\d+) days\b", text)] + [7] * ("a week from today" in text)
    offsets += [(phrasing.WEEKDAYS.index(w) - base.weekday() - 1) % 7 + 1
                for w in re.findall(r"this coming (\w+day)\b", text)]
    return {(base + dt.timedelta(days=k)).isoformat() for k in offsets}


def derivable(value, text: str, name: str, spec: dict) -> bool:
    """A call's value follows from its request and the parameter's schema: written as it is (`stated`), or stated
    in another form that the schema's description, type or enum says how to turn into it: a date spelled out or
    relative to the today the request states, a clock time, a country, language, currency or US state named for its
    code, "Berkeley, California" for "City, ST", a comma-joined list whose parts the request lists, a number spelled
    out or in another unit, an enum value in words."""
    spec = spec if isinstance(spec, dict) else {}
    desc, words = str(spec.get("description") or "").lower(), phrasing.words(name)
    if isinstance(value, bool) or value is None or stated(value, text):
        return True
    if isinstance(value, dict):
        props = spec.get("properties") or {}
        return all(derivable(v, text, k, props.get(k) or {}) for k, v in value.items())
    if isinstance(value, list):
        items = spec.get("items") if isinstance(spec.get("items"), dict) else {}
        return all(derivable(v, text, name, items) for v in value)
    if isinstance(value, (int, float)):
        if phrasing.NUMBER_WORDS.get(value) and re.search(rf"\b{phrasing.NUMBER_WORDS[value]}\b", text):
            return True
        units = [(1000, "second")] if "millisecond" in desc else []
        units += [(60, "hour")] * ("minute" in words) + [(7, "week")] * ("day" in words) + \
            [(24, "day")] * ("hour" in words) + [(60, "minute")] * bool(re.search(r"second|timeout|delay|wait", words))
        return any(number_in(value / d, text, rf" {u}") or
                   (value // d in phrasing.NUMBER_WORDS and f"{phrasing.NUMBER_WORDS[value // d]} {u}" in text)
                   for d, u in units if (2 * value) % d == 0)
    enum = spec.get("enum") or (spec.get("items") or {}).get("enum") or ()
    if value in enum:
        return phrasing.words(value) in text.lower() or str(phrasing.ENUM_WORDS.get(value)) in text
    if re.fullmatch(r"\d{8}", value) and "yyyymmdd" in desc:
        value = f"{value[:4]}-{value[4:6]}-{value[6:]}"
    if re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        return any(d in text for d in spoken_dates(value)) or value in relative_dates(text)
    clock = re.fullmatch(r"(\d{4}-\d\d-\d\d)?[ T]?(\d\d):(\d\d)(:00)?", value)
    if clock:
        said = phrasing.spoken_clock(int(clock[2]), int(clock[3]))
        return said in text and (not clock[1] or derivable(clock[1], text, name, {}))
    if re.fullmatch(r"\d{4}-\d\d", value):
        return f"{phrasing.MONTHS[int(value[5:]) - 1]} {value[:4]}" in text
    names = {**phrasing.COUNTRIES, **phrasing.LANGUAGES, **phrasing.CURRENCIES, **phrasing.US_STATES}
    if any(code.lower() == value.lower() and n in text for n, code in names.items()):
        return "code" in desc or "iso" in desc or "state" in desc or phrasing.words(name) in ("currency",)
    city_state = re.fullmatch(r"(.+), ([A-Z]{2})", value)
    if city_state and ('"city, st"' in desc or "city, state" in desc):
        states = {code: state for state, code in phrasing.US_STATES.items()}
        return f"{city_state[1]}, {states.get(city_state[2])}" in text
    if "comma" in desc and "," in value:
        return all(stated(part.strip(), text) for part in value.split(","))
    return False


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
    multi_server = noted = 0
    for row in rows(600, seed=3) + kind_rows()[:1000]:
        for entry in json.loads(row["tools"]):
            noted += entry not in specs[entry["function"]["name"]]
            assert without_format_notes(entry) in specs[entry["function"]["name"]]
        multi_server += "::" in row["target_tools"]
    assert multi_server > 20 and noted > 5


def without_format_notes(entry: dict) -> dict:
    """A tool entry less the format notes the stand-in appends to a parameter's description (phrasing.FORMAT_NOTES,
    where the catalogue's description does not state the form a reformatted value takes)."""
    entry = json.loads(json.dumps(entry))
    for spec in (entry["function"]["parameters"].get("properties") or {}).values():
        for note in phrasing.FORMAT_NOTES.values():
            if isinstance(spec, dict) and spec.get("description", "").endswith(note):
                spec["description"] = spec["description"][:-len(note)].rstrip()
                if not spec["description"]:
                    del spec["description"]
    return entry


def test_questions_state_every_argument_and_never_name_the_tool():
    """Every value a call writes follows from the user's requests so far and the parameter's schema (`derivable`):
    as written, mostly; in another form where the schema says which (checked per form in `derivable`)."""
    checked, reformatted = 0, Counter()
    for row in rows(600, seed=5) + kind_rows()[:1500]:
        if row["subset_name"] == "irrelevant" or row["uuid"] is None or row["messages"] is None:
            continue
        try:
            messages = json.loads(row["messages"])
            calls_of(row)  # a malformed row raises: skipped
        except (ValueError, SyntaxError):
            continue
        schemas = {t["function"]["name"]: t["function"]["parameters"].get("properties") or {}
                   for t in json.loads(row["tools"])}
        # Each call's arguments follow from the user messages before it and its schema.
        user = ""
        for m in messages:
            if m["role"] == "user":
                user += m["content"] + "\n"
            elif m["role"] == "tool_call":
                call = ast.literal_eval(m["content"])
                try:
                    args = json.loads(call["arguments"])
                except ValueError:
                    continue  # a malformed row's arguments
                for k, v in args.items():
                    assert derivable(v, user, k, schemas[call["name"]].get(k)), (user, k, v)
                    reformatted[standin_sft.row_kind(row["uuid"])] += not stated(v, user)
                assert call["name"] not in user
                short = call["name"].rsplit("-", 1)[-1]
                if not (short.isalpha() and short.islower()):
                    assert short not in user, (user, short)
                checked += 1
    assert checked > 1000
    # Values not written as they are come from the rows built for them (and from multi-part lists, of arrays).
    assert reformatted["reformatted_value"] > 20 and reformatted["single_call"] < reformatted["reformatted_value"]


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
            names = {ast.literal_eval(m["content"])["name"] for m in messages[start + 1:end]
                     if m["role"] == "tool_call"}
            if roles.count("tool_call") < 2 or len(names) < 2:  # one tool for several values: its own test
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



# ---------------------------------------------------------------------------------------------------------------
# Row kinds: what each row's first request teaches (standin_sft.ROW_KINDS), read back from its uuid.
def first_model_turn(conv: toucan.Conversation) -> toucan.Turn:
    return next(t for t in conv.turns if t.role == "model")


def test_kind_shares_and_the_kind_survives_the_filter(tmp_path):
    """On 1,000 rows: 15-20% of the calling first requests make two calls or more, about half of them one tool for
    several values; near misses are a good share of the requests no tool serves. The shares in the download metrics
    are those of the rows written, and every kept row's kind reads back from data/filtered/*.parquet."""
    from stages import filter as filter_stage

    metrics = download.run(stage_params("download", download.DownloadParams, rows=1000, seed=3), tmp_path / "raw")
    standin = metrics["SFT"]["standin"]
    every = standin["all"]
    assert 0.12 <= every["share_of_calling_first_turns_2plus_calls"] <= 0.22, every
    assert every["parallel_same_tool"] >= 25 and every["parallel_different_tools"] >= 25, every
    assert 0.3 <= every["share_of_no_call_near_miss"] <= 0.5 and every["missing_value"] >= 10, every
    assert 0.08 <= standin["single_turn_le2_targets_le3_tools"]["share_of_calling_first_turns_2plus_calls"] <= 0.3
    assert all(standin["kinds"][k] > 0 for k in standin_sft.ROW_KINDS), standin["kinds"]
    written = pq.read_table(toucan.shard_paths(tmp_path / "raw"), columns=["uuid"]).column("uuid").to_pylist()
    read = Counter(standin_sft.row_kind(u) for u in written if u is not None)
    assert sum(read.values()) >= 990 and None not in read
    assert all(abs(read[k] - n) <= 5 for k, n in standin["kinds"].items())  # malformed rows: left out of the metrics

    filter_stage.run(stage_params("filter", filter_stage.FilterParams), tmp_path / "raw", tmp_path / "filtered",
                     tmp_path / "data.json")
    kept = [standin_sft.row_kind(u) for split in ("train", "validation")
            for u in pq.read_table(tmp_path / "filtered" / f"{split}.parquet", columns=["uuid"])["uuid"].to_pylist()]
    assert len(kept) > 100 and None not in kept and len(set(kept)) >= 10
    assert standin_sft.row_kind("0b8e8f46-5a93-4d5e-9b3c-2f6f0c1d2e3f") is None  # a uuid the stand-in did not write


def test_same_tool_fan_out_calls_one_tool_once_per_value():
    """`parallel_same_tool`: K = 2-4 calls to the one target tool in one turn, then K results, with distinct values
    of one or two parameters, each stated in the request; the rest of the arguments shared."""
    seen = Counter()
    for row, conv in of_kind("parallel_same_tool"):
        turn = first_model_turn(conv)
        names = {c.name for c in turn.calls}
        assert len(names) == 1 and 2 <= len(turn.calls) <= 4 and "," not in row["target_tools"]
        results = conv.turns[conv.turns.index(turn) + 1]
        assert results.role == "tool" and len(results.results) == len(turn.calls)
        args = [c.arguments for c in turn.calls]
        varied = {k for k in args[0] if len({json.dumps(a[k]) for a in args}) > 1}
        assert 1 <= len(varied) <= 2 and all(set(a) == set(args[0]) for a in args)
        assert len({json.dumps(a, sort_keys=True) for a in args}) == len(args)
        for k in varied:
            assert all(stated(a[k], conv.turns[0].text) for a in args), (conv.turns[0].text, k)
        seen[len(turn.calls)] += 1
        seen[f"{len(varied)} varied"] += 1
    assert sum(seen[k] for k in (2, 3, 4)) > 60 and seen[4] > 3 and seen["2 varied"] > 3, seen


def test_array_contrast_makes_one_call_with_the_list():
    """`parallel_array`: the values fill a parameter of type array, so one call holds them all, each stated in the
    request the way a fan-out request states its values."""
    checked = 0
    for row, conv in of_kind("parallel_array"):
        turn = first_model_turn(conv)
        assert len(turn.calls) == 1
        schema = next(t for t in conv.tools if t["name"] == turn.calls[0].name)["parameters"]["properties"]
        lists = [k for k, v in turn.calls[0].arguments.items() if isinstance(v, list) and len(v) >= 2
                 and schema[k].get("type") == "array"]
        assert lists, turn.calls[0].arguments
        assert any(all(stated(v, conv.turns[0].text) for v in turn.calls[0].arguments[k]) for k in lists)
        checked += 1
    assert checked > 20


def test_near_miss_asks_for_a_sibling_of_the_offered_tools_and_calls_nothing():
    """`near_miss`: the request asks for a tool (the first target tool) of the offered tools' own server that is not
    offered; the answer says so in words, with no call."""
    checked = 0
    for row, conv in of_kind("near_miss"):
        assert row["subset_name"] == "irrelevant" and not any(t.calls for t in conv.turns)
        assert [t.role for t in conv.turns] == ["user", "model"]
        asked = row["target_tools"].split(", ")[0]
        offered = [t["name"] for t in conv.tools]
        if "::" in asked:
            server, short = asked.split("::")
            slug = mcp_catalogue.slug(server)
        else:
            short, slug = asked, mcp_catalogue.tool_server(offered[0])
        assert f"{slug}-{short}" not in offered
        assert any(name.startswith(f"{slug}-") and name[len(slug) + 1:] in siblings(slug) for name in offered)
        assert short in siblings(slug)
        checked += 1
    assert checked > 200


@functools.lru_cache(maxsize=None)
def siblings(slug: str) -> frozenset:
    return frozenset(t.short for tools in mcp_catalogue.load() for t in tools if t.slug == slug)


def test_missing_value_asks_for_the_parameter_by_name():
    """`missing_value`: the request leaves out a value the tool requires; the answer makes no call and asks for it
    by the parameter's name or description; in a multi-turn row the next request gives it and the call follows."""
    checked = followed = 0
    for row, conv in of_kind("missing_value"):
        turn = first_model_turn(conv)
        assert not turn.calls and "?" in turn.text
        tool = next(t for t in conv.tools if t["name"].endswith("-" + row["target_tools"].split("::")[-1]))
        params = tool["parameters"]
        asked = [k for k in params.get("required") or () if phrasing.words(k) in turn.text.lower()
                 or " ".join(str(params["properties"][k].get("description", "")).split()) in turn.text]
        assert asked, (turn.text, params.get("required"))
        later = [t for t in conv.turns[2:] if t.calls]
        if len(conv.turns) > 2 and conv.turns[2].role == "user" and later:
            assert asked[0] in later[0].calls[0].arguments
            followed += 1
        checked += 1
    assert checked > 40 and followed > 5


def test_requests_worded_away_from_the_description_share_fewer_of_its_words():
    """`paraphrased` requests share a smaller part of the tool description's words than plain ones."""
    def overlap(kind):
        shares = []
        for row, conv in of_kind(kind):
            call = first_model_turn(conv).calls[0]
            desc = next(t for t in conv.tools if t["name"] == call.name)["description"].lower()
            ask = set(re.findall(r"[a-z]{4,}", conv.turns[0].text.lower()))
            said = set(re.findall(r"[a-z]{4,}", desc.split(".")[0])) - {"with", "from", "that", "this", "about"}
            if said:
                shares.append(len(said & ask) / len(said))
        return sum(shares) / len(shares)
    plain, reworded = overlap("single_call"), overlap("paraphrased")
    assert reworded < plain - 0.15, (plain, reworded)


def test_value_shapes_are_multi_part_reformatted_optional_or_nested():
    """Rows built for a value shape hold one: a multi-part value (with commas, or a name with a title), a value not
    written as the request says it, an optional argument, an object (or array of objects)."""
    def first_call(conv):
        return first_model_turn(conv).calls[0]

    multi = [first_call(c).arguments for _, c in of_kind("multi_part_value")]
    assert multi and all(any(isinstance(v, str) and ("," in v or len(v.split()) >= 3) for v in a.values())
                         for a in multi)
    reformatted = of_kind("reformatted_value")
    assert sum(not all(stated(v, c.turns[0].text) for v in first_call(c).arguments.values())
               for _, c in reformatted) > 0.6 * len(reformatted)
    for _, conv in of_kind("optional_stated"):
        call = first_call(conv)
        schema = next(t for t in conv.tools if t["name"] == call.name)["parameters"]
        assert set(call.arguments) - set(schema.get("required") or ()), call
    nested = [first_call(c).arguments for _, c in of_kind("nested_value")]
    assert nested and all(any(isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
                              for v in a.values()) for a in nested)
