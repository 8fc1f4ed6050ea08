"""analyze, filter and render on a synthetic stand-in: right numbers, every drop counted, stable splits."""
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench import baseline_datasets
from gemma_toolcall.dataset import toucan
from gemma_toolcall.chat_format import parse_model_turn
from gemma_toolcall.params import ConfigError, from_dict
from stages import analyze, filter as filter_stage, render
from conftest import stage_params


def read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_analyze_matches_brute_force(raw_small, tmp_path):
    """The vectorised counts give the same tables as a dataset[idx] + json.loads loop over every row."""
    analyze.run(raw_small, tmp_path / "analysis")
    brute = baseline_datasets.analyze_rows(baseline_datasets.load(raw_small, tmp_path / "hf-cache"))
    for name, table in (("toucan_analysis_phase1.csv", analyze.phase1_table(brute)),
                        ("toucan_analysis.csv", analyze.overview_table(brute))):
        ours = read_csv(tmp_path / "analysis" / name)
        assert ours == [{k: str(v) for k, v in row.items()} for row in table]
    header = list(read_csv(tmp_path / "analysis" / "toucan_analysis.csv")[0])
    assert header == ["subset", "filter_type", "filter_value", "sample_count", "percentage", "notes"]


def test_filter_counts_every_row_and_keeps_only_eligible(raw_small, tmp_path):
    p = stage_params("filter", filter_stage.FilterParams, validation_by="uuid")  # the baseline below splits by uuid
    m = filter_stage.run(p, raw_small, tmp_path / "filtered", tmp_path / "data.json")
    assert json.loads((tmp_path / "data.json").read_text()) == m
    dropped = m["dropped"]
    assert m["rows_in"] == 1500
    assert m["kept"] + dropped["multi_turn"] + dropped["too_many_tools_used"] + dropped["too_many_tools_available"] \
        + dropped["malformed"]["total"] == m["rows_in"]
    assert dropped["malformed"]["total"] > 0
    kept = pa.concat_tables([pq.read_table(tmp_path / "filtered" / f"{s}.parquet") for s in ("train", "validation")])
    assert kept.schema.names == list(toucan.COLUMNS) and kept.num_rows == m["kept"]
    assert m["kept_validation"] > 0 and m["kept_train"] > 10 * m["kept_validation"]
    for row in kept.to_pylist():
        conv = toucan.parse_row(row)
        assert sum(t.role == "user" for t in conv.turns) == 1
        assert len([n for n in row["target_tools"].split(",") if n.strip()]) <= p.max_tools_used
        assert len(conv.tools) <= p.max_tools_available
    # Same rows as the straightforward implementation.
    base = baseline_datasets.filter_rows(baseline_datasets.load(raw_small, tmp_path / "hf"), 2, 3, 0.05, 0)
    assert sorted(r["uuid"] for r in base["train"]) == sorted(pq.read_table(tmp_path / "filtered" / "train.parquet")
                                                              .column("uuid").to_pylist())


def test_split_side_depends_only_on_uuid(raw_small, tmp_path):
    p = stage_params("filter", filter_stage.FilterParams)
    filter_stage.run(p, raw_small, tmp_path / "a", tmp_path / "a.json")
    val = set(pq.read_table(tmp_path / "a" / "validation.parquet").column("uuid").to_pylist())
    # Drop half the raw rows: every surviving row stays on its side.
    half = tmp_path / "half" / toucan.CONFIG
    half.mkdir(parents=True)
    for path in toucan.shard_paths(raw_small):
        t = pq.read_table(path)
        pq.write_table(t.slice(0, t.num_rows // 2), half / path.name)
    filter_stage.run(p, tmp_path / "half", tmp_path / "b", tmp_path / "b.json")
    val_b = set(pq.read_table(tmp_path / "b" / "validation.parquet").column("uuid").to_pylist())
    train_b = set(pq.read_table(tmp_path / "b" / "train.parquet").column("uuid").to_pylist())
    assert val_b <= val and not (train_b & val)


def test_filter_survives_a_shard_of_garbage(tmp_path):
    """Nulls everywhere, broken JSON, wrong shapes: counted, never raised."""
    raw = tmp_path / "raw" / toucan.CONFIG
    raw.mkdir(parents=True)
    rows = [dict.fromkeys(toucan.COLUMNS, None),
            {**dict.fromkeys(toucan.COLUMNS, "x"), "messages": '[{"role": "user", "content": "hi"}]', "tools": "{}"},
            {**dict.fromkeys(toucan.COLUMNS, ""), "messages": "[]", "tools": "[]"},
            {**dict.fromkeys(toucan.COLUMNS, "x"), "messages": '"just a string"', "tools": "[]"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=toucan.SCHEMA), raw / "train-00000-of-00001.parquet")
    m = filter_stage.run(stage_params("filter", filter_stage.FilterParams), tmp_path / "raw", tmp_path / "out", tmp_path / "m.json")
    assert m["kept"] == 0 and m["dropped"]["malformed"]["total"] == 4
    assert m["dropped"]["malformed"]["missing_value"] == 1


def test_render_shards_text_and_spans(raw_small, tmp_path):
    filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw_small, tmp_path / "filtered", tmp_path / "data.json")
    m = render.run(stage_params("render", render.RenderParams, rows_per_shard=100), tmp_path / "filtered", tmp_path / "fmt", tmp_path / "r.json")
    shards = sorted(p.name for p in (tmp_path / "fmt").glob("train-*.parquet"))
    n = m["train"]["shards"]
    assert n == -(-m["train"]["rows"] // 100) and shards == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    t = pa.concat_tables([pq.read_table(tmp_path / "fmt" / s) for s in shards])
    assert t.num_rows == m["train"]["rows"] == pq.read_metadata(tmp_path / "filtered" / "train.parquet").num_rows
    for row in t.to_pylist()[:200]:
        assert row["text"].startswith("<bos><start_of_turn>user\nHere are the available tools")
        spans = row["model_spans"]
        assert spans and all(row["text"][s["end"] - len("<end_of_turn>"):s["end"]] == "<end_of_turn>" for s in spans)
        assert all(row["text"][s["start"] - len("<start_of_turn>model\n"):s["start"]] == "<start_of_turn>model\n"
                   for s in spans)
        assert all(parse_model_turn(row["text"][s["start"]:s["end"]]).format_valid for s in spans)


def test_render_tool_order_and_call_text(raw_small, tmp_path):
    filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw_small, tmp_path / "filtered", tmp_path / "data.json")
    rows = {}
    for order, call_text in (("given", "keep"), ("shuffled", "drop")):
        out = tmp_path / order
        render.run(stage_params("render", render.RenderParams, tool_order=order, call_text=call_text), tmp_path / "filtered", out,
                   tmp_path / f"{order}.json")
        rows[order] = pq.read_table(sorted(out.glob("train-*.parquet"))[0]).to_pylist()
    filtered = [[t["name"] for t in toucan.parse_row(r).tools]
                for r in pq.read_table(tmp_path / "filtered" / "train.parquet").to_pylist()]

    def tool_names(text):
        return [t["name"] for t in json.loads(text.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0])]

    def first_model_turn(row):
        s = row["model_spans"][0]
        return row["text"][s["start"]:s["end"]]

    called_first = {}
    for order, rendered in rows.items():
        with_choice = firsts = 0
        for row, tools in zip(rendered, filtered):
            names = tool_names(row["text"])
            assert sorted(names) == sorted(tools)
            calls = parse_model_turn(first_model_turn(row)).calls
            if calls and len(names) > 1:
                with_choice += 1
                firsts += calls[0].name == names[0]
        called_first[order] = firsts / with_choice
    # The stand-in lists the called tool first (as Toucan tends to); shuffled, it is first about 1 time in 2.5.
    assert called_first["given"] > 0.7 and called_first["shuffled"] < 0.55, called_first
    assert [tool_names(r["text"]) for r in rows["given"]] == filtered

    openings = {order: [first_model_turn(r) for r in rendered] for order, rendered in rows.items()}
    kept_text = [t for t in openings["given"] if "<tool_call>" in t and not t.startswith("<tool_call>")]
    assert kept_text, "the stand-in has call turns with words before the call"
    for keep, drop in zip(openings["given"], openings["shuffled"]):
        if "<tool_call>" in keep:
            assert drop.startswith("<tool_call>")
            assert parse_model_turn(drop).calls == parse_model_turn(keep).calls
        else:  # an answer without a call keeps its words
            assert drop == keep


def test_outputs_are_deterministic(raw_small, tmp_path):
    digests = []
    for name in ("a", "b"):
        filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw_small, tmp_path / name / "f", tmp_path / name / "m.json")
        render.run(stage_params("render", render.RenderParams), tmp_path / name / "f", tmp_path / name / "r", tmp_path / name / "r.json")
        digests.append([p.read_bytes() for p in sorted((tmp_path / name).rglob("*.parquet"))])
    assert digests[0] == digests[1]


@pytest.mark.parametrize("values, message", [
    ({"max_tool_used": 2}, "unknown key(s) ['filter.max_tool_used']"),
    ({"max_tools_used": "2"}, "filter.max_tools_used must be int"),
    ({"validation_fraction": 1.5}, "validation_fraction must be in [0, 1)"),
])
def test_bad_params_say_what_to_fix(values, message):
    with pytest.raises(ConfigError) as e:
        stage_params("filter", filter_stage.FilterParams, **values)
    assert message in str(e.value)


def test_bad_literal_param():
    with pytest.raises(ConfigError, match="render.json_style must be one of"):
        stage_params("render", render.RenderParams, **{"json_style": "indent"})


def test_validation_by_server_holds_out_whole_servers(raw_small, tmp_path):
    """No server offers tools on both sides; rows spanning both sides are counted, not kept."""
    from gemma_toolcall.dataset import mcp_catalogue

    slugs_of = {}  # a full tool name -> the slugs it can belong to (in the catalogue)
    for tools in mcp_catalogue.load():
        for t in tools:
            slugs_of.setdefault(t.name, set()).add(t.slug)
    p = stage_params("filter", filter_stage.FilterParams, validation_fraction=0.2)
    m = filter_stage.run(p, raw_small, tmp_path / "f", tmp_path / "m.json")
    servers = {}
    for side in ("train", "validation"):
        rows = pq.read_table(tmp_path / "f" / f"{side}.parquet").to_pylist()
        servers[side] = {s for r in rows for t in json.loads(r["tools"]) for s in slugs_of[t["function"]["name"]]}
        assert all(filter_stage.split_side(p, r, toucan.parse_row(r)) == side for r in rows)
    assert servers["train"] and servers["validation"] and not servers["train"] & servers["validation"]
    assert m["validation_by"] == "server" and m["kept"] + m["dropped"]["straddles_split"] \
        + m["dropped"]["malformed"]["total"] == m["eligible"]


def test_row_servers_of_real_names():
    """Slugs and tool names may both hold '-': the catalogue's slugs and the row's "Server::tool" targets decide."""
    conv = toucan.Conversation([{"name": "time-mcp-server-current-time"}, {"name": "my-own-server-do_it"}], [])
    row = {"target_tools": "Time MCP Server::current-time, My Own Server::do_it"}
    assert filter_stage.row_servers(row, conv) == {"time-mcp-server", "my-own-server"}


def test_progress_in_a_log_is_plain_lines(monkeypatch):
    """Not a terminal: a line per interval and one at the end (no carriage returns), with rate, ETA and fields."""
    import io

    from gemma_toolcall.progress import Progress, progress

    monkeypatch.delenv("GEMMA_TOOLCALL_PROGRESS_EVERY", raising=False)
    log = io.StringIO()
    with Progress(total=10, desc="filter", unit="row", every=3600, stream=log) as bar:
        for _ in range(10):
            bar.update(1)
    assert "\r" not in log.getvalue() and log.getvalue().count("\n") == 1
    assert log.getvalue().startswith("filter: 10/10 row (100%), ") and "done in" in log.getvalue()

    log = io.StringIO()
    with Progress(total=4, desc="train", unit="step", every=0, stream=log) as bar:
        bar.update(1, loss=0.5, tok_s=190.0)
    first = log.getvalue().splitlines()[0]
    assert first.startswith("train: 1/4 step (25%), ") and "ETA" in first and first.endswith("loss 0.5, tok_s 190")

    log = io.StringIO()
    assert list(progress("abc", desc="copy", unit="shard", stream=log)) == ["a", "b", "c"]
    assert log.getvalue().startswith("copy: 3/3 shard (100%)")


def test_progress_on_a_terminal_is_a_tqdm_bar():
    import io

    from gemma_toolcall.progress import Progress

    screen = io.StringIO()
    with Progress(total=3, desc="render", unit="row", stream=screen, terminal=True) as bar:
        bar.update(3, loss=1.0)
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue() and "loss=1" in screen.getvalue()

