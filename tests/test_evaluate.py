"""The evaluate stage end to end on tiny-random, and the sampler it uses against plain greedy decoding."""
import json

import jax.numpy as jnp
import pyarrow.parquet as pq
import pytest

from conftest import stage_params
from gemma_toolcall import bfcl, model as gemma
from gemma_toolcall.dataset.toucan import ToolCall
from gemma_toolcall.decoding import sampling
from stages import evaluate, filter as filter_stage, train


def plain_greedy(model, tok, prompt: str, steps: int) -> str:
    """Greedy decoding by full forward passes, no KV cache, no batching: what the sampler must reproduce."""
    ids = [gemma.BOS] + tok.encode(prompt)
    start = len(ids)
    for _ in range(steps):
        n = len(ids)
        logits, _ = model(jnp.array([ids]), jnp.arange(n)[None], None, jnp.tril(jnp.ones((1, n, n), bool)))
        ids.append(int(logits[0, -1].argmax()))
        if ids[-1] in (gemma.EOS, tok.end_of_turn):
            return tok.decode(ids[start:-1])
    return tok.decode(ids[start:])


def test_sampler_decodes_what_the_model_predicts(tiny_base):
    """tunix's KV-cache sampler, batched and left-padded, gives the no-cache argmax tokens (once it did not: the
    tokenizer's BOS id read -1)."""
    tok = gemma.Tokenizer(tiny_base / "tokenizer.model")
    assert (tok.sp.bos_id(), tok.sp.eos_id(), tok.sp.pad_id()) == (gemma.BOS, gemma.EOS, gemma.PAD)
    model, config = gemma.load(tiny_base, dtype=jnp.float32)
    prompts = ["abcdefg", "a longer prompt, padded less", "x"]
    outputs = sampling.generate(model, config, tok, prompts, 8, batch_size=2)
    assert [out.text for out in outputs] == [plain_greedy(model, tok, p, 8) for p in prompts]


def test_evaluate_end_to_end(tiny_base, formatted, raw_small, tmp_path):
    train.run(stage_params("lora", train.LoraParams, rank=4, alpha=8), stage_params("train", train.TrainParams, max_steps=2, eval_batches=0, eval_every_n_steps=100),
              tiny_base, formatted, tmp_path / "ck", tmp_path / "lora", tmp_path / "m")
    filter_stage.run(stage_params("filter", filter_stage.FilterParams), raw_small, tmp_path / "filtered", tmp_path / "data.json")
    bfcl.fetch(tmp_path / "bfcl")
    p = stage_params("evaluate", evaluate.EvaluateParams, limit=2, heldout_limit=3, max_new_tokens=8,
                     base_max_new_tokens=4, batch_size=4)
    validation, base_json, base_samples = tmp_path / "filtered" / "validation.parquet", tmp_path / "b.json", \
        tmp_path / "b.jsonl"
    base_m = evaluate.run_base(p, "pretty", tiny_base, tmp_path / "bfcl", validation, base_json, base_samples)
    # The tuned model decodes under the call grammar (the base model's rows were free: the ids still match).
    constrained = stage_params("evaluate", evaluate.EvaluateParams, limit=2, heldout_limit=3, max_new_tokens=8, batch_size=4, constrained=True)
    m = evaluate.run(constrained, "pretty", tiny_base, tmp_path / "lora", tmp_path / "bfcl", validation, base_json,
                     base_samples, tmp_path / "eval.json", tmp_path / "samples.jsonl", tmp_path / "failures.md")
    # Every failed output of both models, sorted by kind: one table row per model and category.
    table = (tmp_path / "failures.md").read_text()
    assert all(f"| {name} | {c} |" in table for name in ("base", "tuned") for c in p.categories)
    assert "grammar_changed_rows" in m["tuned"] and "grammar_changed_rows" not in m["base"]
    assert (m["base"]["max_new_tokens"], m["tuned"]["max_new_tokens"]) == (4, 8)  # each model its own budget
    assert json.loads((tmp_path / "eval.json").read_text()) == m and m["base"] == base_m
    # The base model's stage made its outputs for these prompts; for others, the tuned stage stops and says so.
    other = stage_params("evaluate", evaluate.EvaluateParams, limit=1, heldout_limit=3, max_new_tokens=8, batch_size=4)
    with pytest.raises(SystemExit, match="dvc repro evaluate_base"):
        evaluate.run(other, "pretty", tiny_base, tmp_path / "lora", tmp_path / "bfcl", validation, base_json,
                     base_samples, tmp_path / "eval2.json", tmp_path / "samples2.jsonl")
    for name in ("base", "tuned"):
        assert set(m[name]["bfcl"]) == set(p.categories)
        assert all(0.0 <= v["accuracy"] <= 1.0 and v["n"] == 2 for v in m[name]["bfcl"].values())
        held = m[name]["heldout"]
        assert held["call_rows"]["n"] + held["no_call_rows"]["n"] == 3 and 0.0 <= m[name]["format_valid"] <= 1.0
        assert held["no_call_rows"]["n"] == 0 or held["no_call_rows"]["no_call_accuracy"] == 1.0  # it calls nothing
    samples = [json.loads(line) for line in open(tmp_path / "samples.jsonl", encoding="utf-8")]
    assert len(samples) == 2 * (2 * len(p.categories) + 3)
    assert all({"model", "id", "output", "calls", "passed", "reason", "ended_turn", "stop"} <= set(s) for s in samples)
    tuned_rows = [s for s in samples if s["model"] == "tuned"]
    assert m["tuned"]["grammar_changed_rows"] == sum(s["grammar_changed_tokens"] > 0 for s in tuned_rows)
    for name in ("base", "tuned"):
        ended = [s["ended_turn"] for s in samples if s["model"] == name]
        assert m[name]["ended_turn"] == m["summary"][name]["ended_turn"] == round(sum(ended) / len(ended), 4)
        stops = [s["stop"] for s in samples if s["model"] == name]
        assert m[name]["stops"] == {stop: stops.count(stop) for stop in sampling.STOPS}
        assert m[name]["stops"]["end_of_turn"] == sum(ended) and sum(m[name]["stops"].values()) == len(stops)
    # A random model calls nothing: irrelevance passes, the others fail with BFCL's reason.
    assert all(s["passed"] for s in samples if s["category"] == "irrelevance")
    assert all(s["reason"] for s in samples if not s["passed"])
    assert pq.read_metadata(tmp_path / "filtered" / "validation.parquet").num_rows >= 3


def test_heldout_metrics_split_call_rows_from_no_call_rows():
    call = {"source": "heldout", "category": "s", "expected": [{"name": "w-get", "arguments": {"city": "Oslo", "days": 2}}],
            "kinds": ["optional_stated"]}
    none = {"source": "heldout", "category": "s", "expected": [], "kinds": ["near_miss"]}
    outputs = [(call, '<tool_call>\n{"name": "w-get", "args": {"city": "Oslo", "days": 3}}\n</tool_call>'),
               (call, '<tool_call>\n{"name": "w-get", "args": {"city": "Oslo", "days": 2}}\n</tool_call>'),
               (none, "I cannot help with that."),
               (none, '<tool_call>\n{"name": "w-get", "args": {}}\n</tool_call>')]
    results = [{"source": c["source"], "category": c["category"], "ended_turn": True, "stop": "end_of_turn",
                **evaluate.judge(c, o, None)} for c, o in outputs]
    held = evaluate.summarize(results)["heldout"]
    assert held["call_rows"] == {"n": 2, "name_match": 1.0, "exact_match": 0.5, "false_refusals": 0.0,
                                 "argument_accuracy": 0.75}
    assert held["no_call_rows"] == {"n": 2, "no_call_accuracy": 0.5}
    assert held["by_kind"] == {"optional_stated": {"n": 2, "exact_match": 0.5},
                               "near_miss": {"n": 2, "no_call_accuracy": 0.5}}


def test_limit_per_category_and_its_config_errors(tmp_path):
    """`evaluate.limit` is one n for every category or one per category (the quality recipe asks 100 simple and
    50 parallel); a map that misses a category, or a negative n, stops with a message naming the fix."""
    from gemma_toolcall.params import ConfigError, from_dict

    bfcl.fetch(tmp_path / "bfcl")
    limits = {"simple_python": 3, "multiple": 2, "parallel": 1, "parallel_multiple": 1, "irrelevance": 0}
    p = stage_params("evaluate", evaluate.EvaluateParams, **{"limit": limits})
    counts = {}
    for case in evaluate.bfcl_cases(tmp_path / "bfcl", p, "compact"):
        counts[case["category"]] = counts.get(case["category"], 0) + 1
    everything = len(bfcl.load(tmp_path / "bfcl", "irrelevance"))
    assert counts == {**limits, "irrelevance": everything} and everything > 3  # 0: all of them
    with pytest.raises(ConfigError, match="name exactly the categories"):
        stage_params("evaluate", evaluate.EvaluateParams, **{"limit": {"simple_python": 3}})
    with pytest.raises(ConfigError, match="int >= 0"):
        stage_params("evaluate", evaluate.EvaluateParams, **{"limit": {**limits, "parallel": -1}})


def test_long_prompts_get_smaller_batches_and_short_ones_keep_theirs():
    """16 prompts of 2,225 tokens (padded to 4,096) in one batch need more memory than a 24 GB machine holds.
    Past 2,048 tokens a batch holds rows x length^2 <= 16 x 2,048^2; below, batches are what they always were."""
    lengths = [100] * 20 + [1500] * 5 + [2225] * 6 + [5000]
    plan = sampling.plan_batches(lengths, 16)
    assert sorted(i for rows, _, _ in plan for i in rows) == list(range(len(lengths)))
    for rows, length, batch_rows in plan:
        assert len(rows) <= batch_rows and all(lengths[i] <= length for i in rows)
        assert batch_rows * length ** 2 <= 16 * 2048 ** 2 or batch_rows == 1
        assert length > sampling.FULL_BATCH_LENGTH or batch_rows == 16
    assert [(len(rows), length, n) for rows, length, n in plan] == [
        (16, 128, 16), (9, 2048, 16), (4, 4096, 4), (2, 4096, 4), (1, 8192, 1)]
    short = [50 + 7 * i for i in range(40)]
    assert [rows for rows, _, _ in sampling.plan_batches(short, 16)] == [
        list(range(0, 16)), list(range(16, 32)), list(range(32, 40))]


def test_a_number_that_never_ended_is_counted_as_a_runaway_value():
    def call(args):
        return [{"name": "f", "arguments": args}]
    assert evaluate.runaway_value("", call({"days": 3000000000000}))
    assert evaluate.runaway_value("", call({"trip": {"legs": [1, 50000000000000.0]}}))
    assert not evaluate.runaway_value("", call({"days": 3, "phone": "+4412345678901234", "big": 999999999999}))
    # cut off inside the call: no call parses, the digits are in the call block
    assert evaluate.runaway_value('<tool_call>\n{"name": "f", "args": {"days": 30000000000000000', [])
    assert not evaluate.runaway_value("Call 1234567890123456 for help.", [])


def test_heldout_rows_are_split_by_what_they_ask():
    from gemma_toolcall.dataset.toucan import Conversation, Turn

    tools = [{"name": "weather", "parameters": {"type": "object", "required": ["city"],
                                                "properties": {"city": {"type": "string"}, "days": {}}}},
             {"name": "time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}]

    def kinds(question, *calls):
        conv = Conversation(tools, [Turn("user", question)])
        return evaluate.row_kinds(conv, [{"name": n, "arguments": a} for n, a in calls])

    assert kinds("Weather in Paris and Nice?", ("weather", {"city": "Paris"}), ("weather", {"city": "Nice"})) \
        == ["parallel_same_tool"]
    assert kinds("Weather and time in Paris?", ("weather", {"city": "Paris"}), ("time", {"zone": "Paris"})) \
        == ["parallel_different_tools", "optional_stated"]
    assert kinds("Weather in Berkeley, CA for 3 days", ("weather", {"city": "Berkeley, CA", "days": 3})) \
        == ["multi_part_value", "optional_stated"]
    assert kinds("Weather in Berkeley, California", ("weather", {"city": "Berkeley, CA"})) \
        == ["multi_part_value", "reformatted_value"]
    assert kinds("Weather for my trip", ("weather", {"city": "Oslo", "days": [1, 2]})) \
        == ["nested_value", "reformatted_value", "optional_stated"]
    assert kinds("Hello") == [] and kinds("Weather in Oslo", ("weather", {"city": "Oslo"})) == []


def test_parallel_limits_tells_a_copied_value_from_a_shared_one():
    from bench.parallel_limits import copies, shortest_answer

    play = [{"play": {"artist": ["Taylor Swift"], "minutes": [20]}},
            {"play": {"artist": ["Maroon 5"], "minutes": [15]}}]
    wrote = [{"name": "play", "arguments": {"artist": "Taylor Swift", "minutes": 20}},
             {"name": "play", "arguments": {"artist": "maroon 5", "minutes": 20}}]
    assert copies(wrote, play)  # 20 belongs to one asked call only
    assert not copies([wrote[0], {"name": "play", "arguments": {"artist": "Maroon 5", "minutes": 15}}], play)
    teams = [{"win": {"team": [t], "season": [y]}} for t in ("Lakers", "Bulls") for y in (2018, 2020)]
    shared = [{"name": "win", "arguments": {"team": "Lakers", "season": y}} for y in (2018, 2020)]
    assert not copies(shared, teams)  # both asked Lakers calls take "Lakers"
    assert shortest_answer([{"f": {"city": ["New York, NY", "NYC"], "unit": ["", "celsius"]}}]) == \
        [ToolCall("f", {"city": "NYC"})]


def test_end_margins_auc_counts_pairs_and_ties():
    from bench.end_margins import separation

    assert separation([-3.0, -1.0], [1.0, 2.0]) == 1.0  # every go-on decision below every end
    assert separation([2.0], [1.0, 2.0, 3.0]) == 0.5  # one above, one tied (half), one below
    assert separation([1.0], []) is None


def test_paired_samples_counts_flips_per_group_and_tests_them():
    from bench.paired_samples import pair, sign_test

    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0
    assert sign_test(0, 5) == 0.0625  # 2 * (1/2)^5
    a = {("bfcl", "q1"): {"passed": True}, ("bfcl", "q2"): {"passed": False},
         ("heldout", "r1"): {"passed": True, "ended_turn": True}}
    b = {("bfcl", "q1"): {"source": "bfcl", "category": "simple_python", "passed": False},
         ("bfcl", "q2"): {"source": "bfcl", "category": "simple_python", "passed": True},
         ("heldout", "r1"): {"source": "heldout", "needs_call": True, "kinds": ["optional_stated"], "passed": True},
         ("heldout", "r2"): {"source": "heldout", "needs_call": False, "passed": True}}  # only B has it: not judged
    groups = pair(a, b)
    assert groups["simple_python"] == {"n": 2, "both": 0, "only_a": 1, "only_b": 1, "neither": 0,
                                      "rate_a": 0.5, "rate_b": 0.5, "sign_test_p": 1.0,
                                      "ended_a": 0, "ended_b": 0}
    assert groups["heldout_call"]["both"] == groups["heldout_call:optional_stated"]["both"] == 1
    assert groups["heldout_call"]["ended_a"] == 1 and "heldout_no_call" not in groups
