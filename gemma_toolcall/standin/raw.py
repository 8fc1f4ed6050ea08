"""Raw-config rows (Kimi-K2, OSS, Qwen3) for the offline stand-in, deterministic from a seed.

The same world as `synthetic_toucan` (the real MCP tool catalogue, the same requests, responses and answers, the SFT
config's proportions of subsets, target-tool counts, user turns and offered tools), written the way the raw configs
are (`shared/reference/toucan_schema.md`, "The other configs"): nine string columns; a system message holding the tool
list; calls as assistant messages with `function_call` and empty `content`; results as `function` messages;
`reasoning_content` on assistant messages (some of which have only that); the servers in `metadata.mcp_servers`; and
the authors' two quality assessments.

Questions form one pool, `rows` long: question i is the same in every config (its tools, targets, request, argument
values and question assessment come from `seed:question:i`), and each config answers a share of them (Qwen3 all,
Kimi-K2 94%, OSS 83%: the real row counts' ratios), in its own way (`seed:<config>:i`: whether it reasons, how many of
the target tools it calls, its wording, tool results, response assessment, uuid). So a question appears in up to
three configs answered by different models, as in the real data. Rows are planned one by one from the SFT
proportions (no quota over the whole run), so memory does not grow with `rows`.

Score distributions follow what the authors report (Figure 6 of the Toucan paper: question quality and scenario
realism mostly at the top, difficulty spread out, responses mostly 3 or above): assumed shapes, not measured ones.
A response's completeness is drawn lower when the model did not call every target tool, and
`desired_tools_used_percentage` is what the trajectory actually did (calls made / target tools named).

About 0.5% of rows are malformed in the same ways as the SFT stand-in (standin_sft.MALFORMED_KINDS).
"""
from __future__ import annotations

import functools
import json
import random
import uuid as uuidlib
from dataclasses import dataclass

from gemma_toolcall.standin import phrasing, sft
from gemma_toolcall.dataset.mcp_catalogue import Tool
from gemma_toolcall.dataset.toucan_raw import RAW_CONFIGS, REAL_ROWS, tool_name

SHARE = {c: REAL_ROWS[c] / max(REAL_ROWS[c] for c in RAW_CONFIGS) for c in RAW_CONFIGS}  # questions each answers
REASONING = {"Kimi-K2": 0.1, "OSS": 0.9, "Qwen3": 0.75}  # share of trajectories whose messages carry reasoning
FULL_TOOL_USE = {"Kimi-K2": 0.88, "OSS": 0.78, "Qwen3": 0.83}  # share of tool trajectories that call every target
# Likert weights for scores 1..5.
QUESTION_WEIGHTS = {
    "tool_selection_difficulty": (10, 24, 33, 23, 10),
    "tool_selection_uniqueness": (4, 12, 30, 34, 20),
    "question_quality": (1, 3, 11, 40, 45),
    "scenario_realism": (1, 2, 9, 35, 53),
    "verifiable": (3, 9, 22, 36, 30),
    "stability": (4, 8, 17, 31, 40),
}
COMPLETENESS = {"Kimi-K2": (3, 5, 10, 27, 55), "OSS": (5, 7, 14, 29, 45), "Qwen3": (4, 6, 12, 28, 50)}
COMPLETENESS_MISSED = (18, 32, 32, 13, 5)  # when not every target tool was called
CONCISENESS = {"Kimi-K2": (2, 6, 18, 40, 34), "OSS": (3, 9, 24, 38, 26), "Qwen3": (3, 8, 22, 39, 28)}
ORDER_SWAPPED = 0.06  # of trajectories with two or more calls in one turn: calls made out of the targets' order

REASONS = ("The task is poorly specified and hard to act on.", "Several essentials are missing or unclear.",
           "Adequate, though some details are left to guesswork.", "Clear and specific, with minor gaps.",
           "Excellent: specific, realistic and fully actionable.")
THOUGHTS = ("The user wants to {i}. I should call the matching tool with the values they gave.",
            "Let me work out which tool fits: the request is to {i}.",
            "I need to {i}; the available tools cover that, so I'll make the call.",
            "First step: {i}. The arguments are all in the question.")
NO_CALL_ANSWERS = ("I can't {i} from here right now; could you check it directly?",
                   "I wasn't able to {i} with what I have. If you share more details I can try another way.",
                   "Based on what I know, I can't {i} precisely without looking it up.")
SYSTEM = ("You are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
          "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n"
          "</tools>")


@dataclass(frozen=True)
class Chunk:
    """Questions [start, stop) of a run, for one config: generated on their own."""
    config: str
    seed: int
    start: int
    stop: int

    @property
    def num_rows(self) -> int:  # questions, not rows: the config answers its share of them
        return self.stop - self.start


@dataclass(frozen=True)
class Turn:
    ask: str
    calls: tuple  # ((Tool, args), ...); empty for a follow-up that needs no tool
    follow_up: int = -1  # index into FOLLOW_UPS for a follow-up turn
    parallel: bool = False  # asked for as independent parts (phrasing.question): called in one turn


@dataclass(frozen=True)
class Question:
    """What every config shares for one question."""
    plan: sft.RowPlan
    available: tuple  # Tool, ...
    target_tools: str
    turns: tuple  # Turn, ...
    scores: dict
    irrelevant: tuple = ()  # (asked intent, helper Tool, helper intent) of an irrelevant row


_CELLS = [(s, t) for s, by_t in sft.SUBSET_X_TARGETS.items() for t in by_t]
_CELL_WEIGHTS = [c for by_t in sft.SUBSET_X_TARGETS.values() for c in by_t.values()]


def draw_plan(rng: random.Random) -> sft.RowPlan:
    """One row's structural cell, drawn with the real SFT proportions (`synthetic_toucan` assigns them by quota)."""
    subset, t = rng.choices(_CELLS, weights=_CELL_WEIGHTS)[0]
    user_turns = 1
    if subset == "multi-turn":
        table = sft.MULTI_TURN_AVAILABLE
        user_turns = rng.choices(list(sft.MULTI_TURN_USER_TURNS), weights=list(sft.MULTI_TURN_USER_TURNS.values()))[0]
    else:
        table = sft.SINGLE_TURN_AVAILABLE[min(t, 4)]
    low, high = rng.choices(sft.AVAILABLE_BINS, weights=table)[0]
    spread = sft.WITHIN_BIN.get((low, high), {range(low, high + 1): 1})
    value = rng.choices(list(spread), weights=list(spread.values()))[0]
    return sft.RowPlan(subset, t, rng.choice(value) if isinstance(value, range) else value, user_turns)


def likert(rng: random.Random, weights) -> int:
    return rng.choices((1, 2, 3, 4, 5), weights=weights)[0]


def draw_question(seed: int, i: int, cat: sft.Catalogue) -> Question:
    rng = random.Random(f"{seed}:question:{i}")
    plan = draw_plan(rng)
    available, targets = sft.pick_tools(rng, cat, plan)
    target_tools = sft.target_names(rng, cat, plan, available, targets)
    scores = {d: likert(rng, w) for d, w in QUESTION_WEIGHTS.items()}
    if plan.subset == "irrelevant":
        offered, asked = {t.label for t in available}, []
        for _ in range(20 * max(1, min(plan.n_targets, 2))):
            _, tool = rng.choice(cat.askable)
            if tool.label not in offered and tool not in asked:
                asked.append(tool)
            if len(asked) == max(1, min(plan.n_targets, 2)):
                break
        asked = asked or [rng.choice(cat.askable)[1]]
        clauses = [phrasing.clause(rng, t, cat.params[t], phrasing.draw_arguments(rng, cat.params[t]))[0]
                   for t in asked]
        helper = rng.choice(available)
        return Question(plan, tuple(available), target_tools,
                        (Turn(phrasing.question(rng, clauses, asked[0].label), ()),), scores,
                        (phrasing.intent(rng, asked[0]), helper, phrasing.intent(rng, helper)))
    turns = []
    for calls in (targets[k::plan.user_turns] for k in range(plan.user_turns)):
        if not calls:
            follow_up = rng.randrange(len(sft.FOLLOW_UPS))
            turns.append(Turn(sft.FOLLOW_UPS[follow_up][0], (), follow_up))
            continue
        drawn = [phrasing.draw_arguments(rng, cat.params[t]) for t in calls]
        parallel = len(calls) > 1 and rng.random() < phrasing.PARALLEL_SHARE
        clauses, args = zip(*(phrasing.clause(rng, t, cat.params[t], a) for t, a in zip(calls, drawn)))
        ask = phrasing.question(rng, list(clauses), calls[0].label, parallel)
        if rng.random() < 0.05:
            ask = rng.choice(sft.NON_ENGLISH).format(q=ask)
        turns.append(Turn(ask, tuple(zip(calls, args)), parallel=parallel))
    return Question(plan, tuple(available), target_tools, tuple(turns), scores)


@functools.lru_cache(maxsize=None)
def spec_json(tool: Tool, config: str) -> str:
    return json.dumps({"type": "function", "function": {"name": tool_name(config, tool.server, tool.short),
                                                       "description": tool.description, "parameters": tool.schema}},
                      ensure_ascii=False)


@functools.lru_cache(maxsize=None)
def catalogue_json(tool: Tool) -> str:
    return json.dumps({"name": tool.short, "description": tool.description, "input_schema": tool.schema},
                      ensure_ascii=False)


def metadata(available) -> str:
    """`metadata.mcp_servers`: the row's servers in order of first offer, each listing the tools the row offers of it
    (the catalogue's shape: name, description, input_schema)."""
    servers: dict[str, list[Tool]] = {}
    for t in available:
        servers.setdefault(t.server, []).append(t)
    parts = [f'{{"server_name": {json.dumps(name, ensure_ascii=False)}, '
             f'"primary_label": {json.dumps(tools[0].label, ensure_ascii=False)}, '
             f'"remote_server_response": {{"is_success": true, "tools": ['
             + ", ".join(catalogue_json(t) for t in tools) + "]}}" for name, tools in servers.items()]
    return '{"mcp_servers": [' + ", ".join(parts) + "]}"


def ordered(tools_in_offer: tuple) -> list[Tool]:
    """The offered tools grouped by server, as the converter lists them."""
    servers: dict[str, list[Tool]] = {}
    for t in tools_in_offer:
        servers.setdefault(t.server, []).append(t)
    return [t for tools in servers.values() for t in tools]


def assessment(scores: dict, extra: dict) -> str:
    body = {d: {"reasoning": REASONS[s - 1], "score": s} for d, s in scores.items()}
    body["overall_score"] = round(sum(scores.values()) / len(scores), 2)
    return json.dumps({**body, **extra}, ensure_ascii=False)


def answer_question(q: Question, config: str, seed: int, i: int, cat: sft.Catalogue) -> dict:
    """One config's trajectory for question `q` as a raw row (dict of RAW_COLUMNS)."""
    rng = random.Random(f"{seed}:{config}:{i}")
    reasons = rng.random() < REASONING[config]

    def name(t: Tool) -> str:
        return tool_name(config, t.server, t.short)

    def said(content: str, thought: str | None = None) -> dict:
        m = {"role": "assistant", "content": content}
        if reasons and thought:
            m["reasoning_content"] = thought
        return m

    def call(t: Tool, args: dict, thought: str | None) -> dict:
        arguments = json.dumps(args, ensure_ascii=False)
        return {**said("", thought), "function_call": {"name": name(t), "arguments": arguments}}

    offered = ordered(q.available)
    messages = [{"role": "system", "content": SYSTEM.format(tools="\n".join(spec_json(t, config) for t in offered))}]
    planned = sum(len(turn.calls) for turn in q.turns)
    budget = planned if not planned or rng.random() < FULL_TOOL_USE[config] else rng.randrange(planned)
    made, in_order = 0, True
    for turn in q.turns:
        messages.append({"role": "user", "content": turn.ask})
        if q.irrelevant:
            asked, helper, helper_intent = q.irrelevant
            messages.append(said(phrasing.refusal(rng, asked, helper.label, helper_intent),
                                 f"None of the offered tools can {asked}."))
            continue
        if turn.follow_up >= 0:
            messages.append(said(sft.FOLLOW_UPS[turn.follow_up][1]))
            continue
        calls = list(turn.calls[:max(0, budget - made)])
        made += len(calls)
        if not calls:  # the model answered without calling the tools it needed
            intent = phrasing.intent(rng, turn.calls[0][0])
            messages.append(said(rng.choice(NO_CALL_ANSWERS).format(i=intent), f"Maybe I can {intent} without a tool."))
            continue
        if len(calls) > 1 and rng.random() < ORDER_SWAPPED:
            calls.reverse()
            in_order = False
        thought = rng.choice(THOUGHTS).format(i=phrasing.intent(rng, calls[0][0]))
        roll = rng.random()
        if roll < 0.6:
            messages.append(said(phrasing.preamble(rng, phrasing.intent(rng, calls[0][0])), thought))
        elif reasons and roll < 0.8:  # reasoning only: the converter keeps it as the model's text
            messages.append({"role": "assistant", "content": "", "reasoning_content": thought})
        responses = [phrasing.respond(rng, t, a) for t, a in calls]
        if len(calls) > 1 and turn.parallel:  # the budget may leave one of them
            messages += [call(t, a, thought) for t, a in calls]
            messages += [{"role": "function", "name": name(t), "content": r.content}
                         for (t, _), r in zip(calls, responses)]
        else:
            for k, ((t, a), r) in enumerate(zip(calls, responses)):
                if k and rng.random() < 0.7:
                    messages.append(said(phrasing.next_step(rng, phrasing.intent(rng, t))))
                messages += [call(t, a, thought), {"role": "function", "name": name(t), "content": r.content}]
        messages.append(said(phrasing.answer(rng, responses), "I have what I need to answer."))
    response = ""
    if not q.irrelevant:
        completeness = likert(rng, COMPLETENESS[config] if made == q.plan.n_targets else COMPLETENESS_MISSED)
        conciseness = likert(rng, CONCISENESS[config])
        response = assessment({"completeness": completeness, "conciseness": conciseness}, {
            "desired_tools_used_percentage": round(made / q.plan.n_targets, 4) if q.plan.n_targets else 1.0,
            "order_correctness": in_order})
    return {
        "uuid": str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
        "subset_name": q.plan.subset,
        "messages": messages,
        "question": q.turns[0].ask,
        "available_tools": "[" + ", ".join(spec_json(t, config) for t in offered) + "]",
        "target_tools": q.target_tools,
        "question_quality_assessment": assessment(q.scores, {}),
        "response_quality_assessment": response,
        "metadata": metadata(q.available),
    }


def malform(row: dict, kind: str, rng: random.Random) -> None:
    """Break `row` in place the way real rows break (the SFT stand-in's kinds, in raw form)."""
    msgs = row["messages"]
    calls = [k for k, m in enumerate(msgs) if m.get("function_call")]
    if kind == "invalid_json":  # truncated inside the last message's content
        text = json.dumps(msgs, ensure_ascii=False)
        row["messages"] = text[: len(text) - 2 - len(msgs[-1]["content"]) // 2]
        return
    if kind == "arguments_not_json" and calls:
        call = msgs[calls[0]]["function_call"]
        call["arguments"] = call["arguments"].replace('"', "")
    elif kind == "call_without_response" and calls:
        del msgs[max(k for k, m in enumerate(msgs) if m["role"] == "function")]
    elif kind == "empty_content":
        msgs[-1]["content"] = ""
        msgs[-1].pop("reasoning_content", None)
    else:  # missing_value, or a call-less row asked for a call malformation
        row[rng.choice(["uuid", "question"])] = None
    row["messages"] = json.dumps(msgs, ensure_ascii=False)


def answers(config: str, seed: int, i: int) -> bool:
    """Whether `config` answers question i (a fixed share of the pool, by a per-question draw)."""
    return random.Random(f"{seed}:{config}:answers:{i}").random() < SHARE[config]


def chunk_rows(chunk: Chunk) -> list[dict]:
    """The raw rows of `chunk.config` for questions [start, stop) (those it answers), as RAW_SCHEMA dicts."""
    cat = sft.catalogue()
    out = []
    for i in range(chunk.start, chunk.stop):
        if not answers(chunk.config, chunk.seed, i):
            continue
        row = answer_question(draw_question(chunk.seed, i, cat), chunk.config, chunk.seed, i, cat)
        rng = random.Random(f"{chunk.seed}:{chunk.config}:malformed:{i}")
        if rng.random() < sft.MALFORMED_SHARE:
            malform(row, rng.choice(sft.MALFORMED_KINDS), rng)
        else:
            row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
        out.append(row)
    return out


def plan_chunks(config: str, rows: int, seed: int, shards: int,
                chunk_rows_max: int = sft.ROW_CHUNK) -> list[list[Chunk]]:
    """Per shard, the chunks of its question range (shard k holds questions [rows*k/shards, rows*(k+1)/shards))."""
    bounds = [rows * k // shards for k in range(shards + 1)]
    return [[Chunk(config, seed, s, min(s + chunk_rows_max, bounds[k + 1]))
             for s in range(bounds[k], bounds[k + 1], chunk_rows_max)] for k in range(shards)]

