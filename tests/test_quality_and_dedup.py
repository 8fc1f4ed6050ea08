"""filter on the raw configs: quality minimums, one row per question (the highest-rated), every drop counted."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gemma_toolcall.dataset import dedup, toucan, toucan_raw
from gemma_toolcall.params import ConfigError, from_dict
from stages import filter as filter_stage
from conftest import stage_params

TOOLS = json.dumps([{"type": "function", "function": {"name": "w-get", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}])


def row(uuid, question, subset="single-turn-original", **scores):
    messages = [{"role": "user", "content": question},
                {"role": "tool_call", "content": repr({"name": "w-get", "arguments": '{"city": "Oslo"}'})},
                {"role": "tool_response", "content": '{"t": 3}'}, {"role": "assistant", "content": "3 degrees."}]
    if subset == "irrelevant":
        messages = [messages[0], {"role": "assistant", "content": "I can't help with that here."}]
    return {"uuid": uuid, "subset_name": subset, "question": question, "target_tools": "get", "tools": TOOLS,
            "messages": json.dumps(messages), "servers": ["w"], **dict.fromkeys(toucan_raw.SCORES), **scores}


def write(raw, config, rows, schema=toucan_raw.SCHEMA):
    (raw / config).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), raw / config / "train-00000-of-00001.parquet")


@pytest.fixture
def raw(tmp_path):
    """The same questions in several configs, answered and rated differently."""
    raw = tmp_path / "raw"
    good = dict(question_quality=5.0, scenario_realism=5.0)
    write(raw, "Kimi-K2", [
        row("k-weather", "Weather in Oslo?", **good, response_overall_score=3.5, desired_tools_used_percentage=1.0),
        row("k-tie", "Weather in Rome?", **good, response_overall_score=4.0, desired_tools_used_percentage=1.0),
        row("k-only", "Weather in Lima?", **good, response_overall_score=2.0, desired_tools_used_percentage=0.5),
        row("k-irrelevant", "Book me a flight.", "irrelevant", **good),
        row("k-vague", "Weather?", question_quality=2.0, scenario_realism=5.0, response_overall_score=5.0,
            desired_tools_used_percentage=1.0),
    ])
    write(raw, "OSS", [
        row("o-weather", "Weather in Oslo?", **good, response_overall_score=4.5, desired_tools_used_percentage=0.5),
        row("o-tie", "Weather in Rome?", **good, response_overall_score=4.0, desired_tools_used_percentage=1.0),
        row("o-irrelevant", "Book me a flight.", "irrelevant", **good),
    ])
    write(raw, "Qwen3", [
        row("q-weather", "Weather in Oslo?", **good, response_overall_score=4.5, desired_tools_used_percentage=1.0),
        row("q-tie", "Weather in Rome?", **good, response_overall_score=4.0, desired_tools_used_percentage=0.5),
    ])
    sft = [{c: r[c] for c in toucan.COLUMNS} for r in [row("s-weather", "Weather in Oslo?"), row("s-new", "Hi?")]]
    write(raw, "SFT", sft, toucan.SCHEMA)  # no score columns at all
    return raw


def kept(out):
    return sorted(u for s in filter_stage.SPLITS for u in pq.read_table(out / f"{s}.parquet").column("uuid").to_pylist())


def accounted(m):
    d = m["dropped"]
    return m["kept"] + d["low_quality"]["total"] + d["multi_turn"] + d["too_many_tools_used"] \
        + d["too_many_tools_available"] + d["straddles_split"] + d["duplicate_question"] + d["malformed"]["total"]


def test_keep_all_keeps_every_answer(raw, tmp_path):
    m = filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw, tmp_path / "f", tmp_path / "m.json")
    assert m["kept"] == 12 and m["dropped"]["duplicate_question"] == 0 and m["dropped"]["low_quality"] == {"total": 0}
    assert m["rows_in_by_config"] == {"SFT": 2, "Kimi-K2": 5, "OSS": 3, "Qwen3": 2}
    table = pq.read_table(tmp_path / "f" / "train.parquet")
    assert table.schema == toucan.SCHEMA  # the six SFT columns: render reads nothing else


def test_best_keeps_the_highest_rated_answer_of_each_question(raw, tmp_path):
    p = stage_params("filter", filter_stage.FilterParams, duplicates="best")
    m = filter_stage.run(p, raw, tmp_path / "f", tmp_path / "m.json")
    # Oslo: Qwen3 4.5 with every tool beats OSS 4.5 with half and Kimi 3.5 and the unscored SFT row; Rome: a tie on
    # both scores goes to the first config read (Kimi-K2); the irrelevant rows have no response score: the first.
    assert kept(tmp_path / "f") == ["k-irrelevant", "k-only", "k-tie", "k-vague", "q-weather", "s-new"]
    assert m["dropped"]["duplicate_question"] == 6 and accounted(m) == m["rows_in"] == 12
    assert json.loads((tmp_path / "m.json").read_text()) == m


def test_quality_minimums_drop_and_count_by_score(raw, tmp_path):
    p = stage_params("filter", filter_stage.FilterParams, min_scores={"question_quality": 4, "desired_tools_used_percentage": 1})
    m = filter_stage.run(p, raw, tmp_path / "f", tmp_path / "m.json")
    assert m["dropped"]["low_quality"] == {"question_quality": 1, "desired_tools_used_percentage": 3, "total": 4}
    # unscored rows pass: SFT rows, the response side of irrelevant rows
    assert {"s-weather", "s-new", "k-irrelevant", "o-irrelevant"} <= set(kept(tmp_path / "f"))
    assert accounted(m) == m["rows_in"]
    both = filter_stage.run(stage_params("filter", filter_stage.FilterParams, min_scores=p.min_scores, duplicates="best"), raw,
                            tmp_path / "g", tmp_path / "n.json")
    # the best of what passes: Rome's Kimi and OSS tie (OSS's own coverage is 1.0, Qwen3's 0.5 was dropped)
    assert kept(tmp_path / "g") == ["k-irrelevant", "k-tie", "q-weather", "s-new"]
    assert both["dropped"]["duplicate_question"] == 4 and accounted(both) == both["rows_in"]


def test_quality_minimums_leave_sft_alone(raw_small, tmp_path):
    base = filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw_small, tmp_path / "a", tmp_path / "a.json")
    strict = filter_stage.run(stage_params("filter", filter_stage.FilterParams, min_scores={"question_quality": 5, "completeness": 5}),
                              raw_small, tmp_path / "b", tmp_path / "b.json")
    assert strict["kept"] == base["kept"] and strict["dropped"]["low_quality"]["total"] == 0
    assert (tmp_path / "a" / "train.parquet").read_bytes() == (tmp_path / "b" / "train.parquet").read_bytes()


def test_dedup_gives_the_same_answer_on_tiny_partitions(raw_small, tmp_path, monkeypatch):
    """Every copy of every row, three times over: the rows kept are the first copy of each question, whether the
    keys fit one partition or are spread over many partitions and loser blocks."""
    copies = tmp_path / "copies" / "Qwen3"
    copies.mkdir(parents=True)
    for path in toucan.shard_paths(raw_small):
        for k in range(3):
            pq.write_table(pq.read_table(path), copies / f"{k}-{path.name}")
    p = stage_params("filter", filter_stage.FilterParams, duplicates="best")
    once = filter_stage.run(p, tmp_path / "copies", tmp_path / "big", tmp_path / "big.json")
    monkeypatch.setattr(dedup, "PARTITION_ROWS", 50)
    monkeypatch.setattr(dedup, "BLOCK_ROWS", 7)
    tiny = filter_stage.run(p, tmp_path / "copies", tmp_path / "tiny", tmp_path / "tiny.json")
    assert once == tiny and once["dropped"]["duplicate_question"] >= 2 * once["kept"]
    for s in filter_stage.SPLITS:
        assert (tmp_path / "big" / f"{s}.parquet").read_bytes() == (tmp_path / "tiny" / f"{s}.parquet").read_bytes()
    single = filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw_small, tmp_path / "one", tmp_path / "one.json")
    questions = {q for s in filter_stage.SPLITS for q in pq.read_table(tmp_path / "one" / f"{s}.parquet")
                 .column("question").to_pylist()}
    assert once["kept"] == len(questions) <= single["kept"]


@pytest.mark.parametrize("values, message", [
    ({"min_scores": {"quality": 4}}, "min_scores has unknown score(s) ['quality']"),
    ({"min_scores": {"question_quality": "high"}}, "min_scores values must be numbers"),
    ({"min_scores": [4]}, "filter.min_scores must be dict"),
    ({"duplicates": "first"}, "filter.duplicates must be one of ['keep', 'best']"),
])
def test_bad_quality_params_say_what_to_fix(values, message):
    with pytest.raises(ConfigError) as e:
        stage_params("filter", filter_stage.FilterParams, **values)
    assert message in str(e.value)
