"""An offline stand-in for the Toucan-1.5M SFT config, deterministic from a seed.

Faithful to `shared/reference/toucan_schema.md`: six string columns in the real order, the real shard names,
`messages` as JSON with roles user/assistant/tool_call/tool_response, `tool_call` content as a Python repr whose
`arguments` is a JSON string, parallel calls as K calls then K responses, OpenAI-style `tools` with slug-prefixed
names, `target_tools` as short names joined by ", " ("Server Name::tool" when a row spans several servers).

Proportions come from the statistics measured on the real SFT config (`toucan_sft_analysis*.real.csv`): every row
is assigned a cell (subset, target-tool count, user turns, available-tool bin) by quota, scaled from the real
counts by largest remainder. At 119,287 rows the phase-1 table is the real one, cell for cell.

Content comes from the real MCP tool catalogue Toucan was synthesized from (`mcp_catalogue`): every row offers real
tools and asks for them in natural requests that state every argument (`synthetic_phrasing`). Rows are generated in
chunks seeded from (seed, first row), so the output does not depend on how many processes generate it.

About 0.5% of rows are malformed in the ways real data is (see MALFORMED_KINDS); the malformations are placed so
that they leave the structural counts of a row unchanged.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import random
import uuid as uuidlib
from dataclasses import dataclass

import numpy as np

from gemma_toolcall.dataset import mcp_catalogue
from gemma_toolcall.standin import phrasing
from gemma_toolcall.dataset.mcp_catalogue import Tool

REAL_ROWS = 119_287
SHARDS = 3
MALFORMED_SHARE = 0.005
MALFORMED_KINDS = ("invalid_json", "arguments_not_json", "call_without_response", "empty_content", "missing_value")

# Real SFT: rows per (subset, number of target tools).
SUBSET_X_TARGETS = {
    "irrelevant": {1: 22963, 2: 8847, 3: 8190},
    "single-turn-original": {1: 16480, 2: 8881, 3: 2885, 4: 7, 5: 1},
    "single-turn-diversify": {1: 9658, 2: 4796, 3: 1332, 4: 4},
    "multi-turn": {1: 16981, 2: 14549, 3: 3697, 4: 14, 5: 1, 6: 1},
}
# Real SFT multi-turn rows by number of user turns.
MULTI_TURN_USER_TURNS = {2: 15023, 3: 2732, 4: 4420, 5: 13068}
# Available-tool bins (inclusive ranges) and the real counts per bin. Single-turn rows by target count, derived from
# the phase-1 cumulative tables; multi-turn rows as all rows minus single-turn.
AVAILABLE_BINS = ((1, 1), (2, 3), (4, 5), (6, 10), (11, 60))
SINGLE_TURN_AVAILABLE = {
    1: (15443, 11746, 8182, 8716, 5014),
    2: (1656, 7733, 4518, 5311, 3306),
    3: (1534, 2760, 2809, 3122, 2182),
    4: (0, 1, 4, 4, 2),  # the 12 rows with 4-5 targets share these
}
MULTI_TURN_AVAILABLE = (7575, 9698, 5348, 7698, 4924)
# Inside a bin, how all SFT rows spread over exact values (real cumulative counts at 2, 4, 15, 20 and 30).
WITHIN_BIN = {
    (2, 3): {2: 17485, 3: 14453},
    (4, 5): {4: 13703, 5: 7159},
    (11, 60): {range(11, 16): 7064, range(16, 21): 3962, range(21, 31): 3726, range(31, 61): 676},
}


def scale_counts(counts: dict, total: int) -> dict:
    """Largest-remainder scaling of integer counts so they sum to `total` (deterministic tie order)."""
    keys = list(counts)
    raw = np.array([counts[k] for k in keys], dtype=np.float64)
    if raw.sum() == 0 or total == 0:
        return {k: 0 for k in keys}
    exact = raw * total / raw.sum()
    base = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - base), kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return {k: int(v) for k, v in zip(keys, base)}


def quota_shuffle(counts: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` labels in the proportions of `counts`, exactly (largest remainder), in seeded random order, as indices
    into `list(counts)`."""
    labels = np.repeat(np.arange(len(counts), dtype=np.int16), list(scale_counts(counts, n).values()))
    rng.shuffle(labels)
    return labels


SUBSETS = tuple(SUBSET_X_TARGETS)


@dataclass(frozen=True)
class RowPlan:
    subset: str
    n_targets: int
    n_available: int
    user_turns: int


@dataclass(frozen=True)
class Plans:
    """Rows' structural cells as small integer arrays (a few bytes a row): subset index, target tools, available
    tools, user turns."""
    subset: np.ndarray
    targets: np.ndarray
    available: np.ndarray
    user_turns: np.ndarray

    def __len__(self) -> int:
        return len(self.subset)

    def __getitem__(self, s: slice) -> "Plans":
        return Plans(self.subset[s], self.targets[s], self.available[s], self.user_turns[s])

    def rows(self) -> tuple[RowPlan, ...]:
        return tuple(RowPlan(SUBSETS[s], int(t), int(a), int(u))
                     for s, t, a, u in zip(self.subset, self.targets, self.available, self.user_turns))


def plan_rows(rows: int, rng: np.random.Generator) -> Plans:
    """Assign each row its structural cell, with the real SFT proportions."""
    cells = {(s, t): c for s, by_t in SUBSET_X_TARGETS.items() for t, c in by_t.items()}
    scaled = scale_counts(cells, rows)
    subset = np.repeat(np.array([SUBSETS.index(s) for s, _ in scaled], np.int8), list(scaled.values()))
    targets = np.repeat(np.array([t for _, t in scaled], np.int8), list(scaled.values()))
    multi = subset == SUBSETS.index("multi-turn")
    # Available-tool bins: per target count for single-turn rows, one table for multi-turn rows.
    group = np.where(multi, 0, np.minimum(targets, 4))  # 0: multi-turn
    bins = np.zeros(rows, np.int8)
    user_turns = np.ones(rows, np.int8)
    for key in sorted(np.unique(group).tolist(), key=lambda k: "multi" if k == 0 else str(k)):
        members = np.flatnonzero(group == key)
        table = MULTI_TURN_AVAILABLE if key == 0 else SINGLE_TURN_AVAILABLE[key]
        bins[members] = quota_shuffle(dict(zip(AVAILABLE_BINS, table)), len(members), rng)
        if key == 0:
            turns = np.array(list(MULTI_TURN_USER_TURNS), np.int8)
            user_turns[members] = turns[quota_shuffle(MULTI_TURN_USER_TURNS, len(members), rng)]
    # Exact values inside each bin, spread over all rows of the bin at once.
    available = np.zeros(rows, np.int16)
    for b, (low, high) in enumerate(AVAILABLE_BINS):
        members = np.flatnonzero(bins == b)
        spread = WITHIN_BIN.get((low, high), {range(low, high + 1): 1})
        values = list(spread)
        for i, label in zip(members, quota_shuffle(spread, len(members), rng)):
            value = values[label]
            available[i] = int(rng.choice(list(value))) if isinstance(value, range) else value
    order = rng.permutation(rows)
    return Plans(subset[order], targets[order], available[order], user_turns[order])


# ---------------------------------------------------------------------------------------------------------------
# Rows: real tools from the MCP catalogue, natural requests for them (synthetic_phrasing), shaped responses.
NON_ENGLISH = [
    "¿Puedes ayudarme con esto? {q}", "Kannst du mir bitte helfen: {q}", "Peux-tu m'aider avec ceci : {q}",
    "请帮我处理一下：{q}", "これを手伝ってもらえますか：{q}",
]
FOLLOW_UPS = [  # a later turn of a multi-turn row that needs no tool
    ("Thanks! Can you explain that in simpler terms?", "Sure: in short, the results above answer your question; "
     "the first entry is the most relevant one."),
    ("Great, that's all I needed.", "Glad I could help! Let me know if anything else comes up."),
    ("Could you summarise that in one sentence?", "In one sentence: the request went through and the key values "
     "are listed above."),
    ("Is that the most recent data?", "It's what the service returned just now, so it should be current."),
]
# Real SFT asks for 2,200 distinct target tools out of the catalogue's 3,150: questions exist for a fixed part of
# the catalogue (chosen by a hash of the tool's name, not the seed); the rest is only ever offered.
ASKED_SHARE = 0.4
ROW_CHUNK = 4096  # rows per independently seeded chunk: the output does not depend on how chunks are scheduled


@dataclass(frozen=True, eq=False)
class Catalogue:
    servers: tuple  # tuple of tuples of Tool
    params: dict  # Tool -> its phrasable parameters, or None when it cannot be asked for
    askable: tuple  # (server index, tool) of every tool a question can ask for

    @functools.cached_property
    def servers_by_size(self) -> list[tuple[int, int]]:
        """(tool count, index) of every server with an askable tool, smallest first."""
        return sorted({(len(self.servers[i]), i) for i, _ in self.askable})

    def server_with(self, rng: random.Random, n_tools: int) -> int:
        """A server that has an askable tool and, when one does, at least `n_tools` tools: a real row offers every
        tool of its servers, so most rows come from one server big enough."""
        first = bisect.bisect_left(self.servers_by_size, (n_tools, -1))
        if first == len(self.servers_by_size) or rng.random() < 0.2:
            return rng.choice(self.askable)[0]
        return rng.choice(self.servers_by_size[first:])[1]


@functools.lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    servers = mcp_catalogue.load()
    params = {t: phrasing.params_of(t) for tools in servers for t in tools}
    return Catalogue(servers, params, tuple((i, t) for i, tools in enumerate(servers) for t in tools
                                            if params[t] is not None and asked_for(t)))


@functools.lru_cache(maxsize=None)
def asked_for(tool: Tool) -> bool:
    digest = hashlib.blake2b(f"{tool.server}::{tool.short}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < ASKED_SHARE * 2**64


def pick_tools(rng: random.Random, cat: Catalogue, plan: RowPlan) -> tuple[list[Tool], list[Tool]]:
    """The tools offered (exactly plan.n_available: one askable tool, the rest of its server, then other servers)
    and the targets among them that a question can ask for."""
    server = cat.server_with(rng, plan.n_available)
    available = [rng.choice([t for t in cat.servers[server] if cat.params[t] is not None and asked_for(t)])]
    while len(available) < plan.n_available:
        tools = [t for t in cat.servers[server] if t not in available]
        available += rng.sample(tools, k=min(len(tools), plan.n_available - len(available)))
        server = rng.randrange(len(cat.servers))
    askable = [t for t in available if cat.params[t] is not None and asked_for(t)]
    return available, rng.sample(askable, k=min(plan.n_targets, len(askable)))


def target_names(rng: random.Random, cat: Catalogue, plan: RowPlan, available: list[Tool], targets: list[Tool]) -> str:
    # When the offered tools hold fewer askable tools than the plan's count, the rest are named but not offered.
    unoffered = [rng.choice(cat.askable)[1] for _ in range(plan.n_targets - len(targets))]
    multi_server = len({t.server for t in available + unoffered}) > 1
    return ", ".join(f"{t.server}::{t.short}" if multi_server else t.short for t in targets + unoffered)


def task_messages(rng: random.Random, cat: Catalogue, calls: list[Tool]) -> list[dict]:
    """One user request served by `calls`: parallel (K calls then K responses) or one after another, as its wording
    says."""
    if not calls:
        follow_up, reply = rng.choice(FOLLOW_UPS)
        return [{"role": "user", "content": follow_up}, {"role": "assistant", "content": reply}]
    drawn = [phrasing.draw_arguments(rng, cat.params[t]) for t in calls]
    clauses, args = zip(*(phrasing.clause(rng, t, cat.params[t], a) for t, a in zip(calls, drawn)))
    parallel = len(calls) > 1 and rng.random() < phrasing.PARALLEL_SHARE
    ask = phrasing.question(rng, clauses, calls[0].label, parallel)
    if rng.random() < 0.05:
        ask = rng.choice(NON_ENGLISH).format(q=ask)
    msgs = [{"role": "user", "content": ask}]
    if rng.random() < 0.6:
        msgs.append({"role": "assistant", "content": phrasing.preamble(rng, phrasing.intent(rng, calls[0]))})
    responses = [phrasing.respond(rng, t, a) for t, a in zip(calls, drawn)]  # read in schema order
    if parallel:  # as the request's wording says (phrasing.question)
        msgs += [call_message(t, a) for t, a in zip(calls, args)]
        msgs += [{"role": "tool_response", "content": r.content} for r in responses]
    else:
        for i, (t, a, r) in enumerate(zip(calls, args, responses)):
            if i and rng.random() < 0.7:
                msgs.append({"role": "assistant", "content": phrasing.next_step(rng, phrasing.intent(rng, t))})
            msgs += [call_message(t, a), {"role": "tool_response", "content": r.content}]
    msgs.append({"role": "assistant", "content": phrasing.answer(rng, responses)})
    return msgs


def irrelevant_messages(rng: random.Random, cat: Catalogue, available: list[Tool], n_asks: int) -> list[dict]:
    """A request for tools of another domain than every offered one, answered in plain text with no call."""
    offered = {t.label for t in available}
    asked = []
    for _ in range(20 * n_asks):
        _, tool = rng.choice(cat.askable)
        if tool.label not in offered and tool not in asked:
            asked.append(tool)
        if len(asked) == n_asks:
            break
    asked = asked or [rng.choice(cat.askable)[1]]
    clauses = [phrasing.clause(rng, t, cat.params[t], phrasing.draw_arguments(rng, cat.params[t]))[0]
               for t in asked]
    helper = rng.choice(available)
    reply = phrasing.refusal(rng, phrasing.intent(rng, asked[0]), helper.label, phrasing.intent(rng, helper))
    return [{"role": "user", "content": phrasing.question(rng, clauses, asked[0].label)},
            {"role": "assistant", "content": reply}]


def call_message(tool: Tool, args: dict) -> dict:
    call = {"name": tool.name, "arguments": json.dumps(args, ensure_ascii=False)}
    return {"role": "tool_call", "content": repr(call)}


@functools.lru_cache(maxsize=None)
def spec_json(tool: Tool) -> str:
    return json.dumps(tool.spec(), ensure_ascii=False)


def make_row(rng: random.Random, plan: RowPlan, cat: Catalogue) -> dict:
    available, targets = pick_tools(rng, cat, plan)
    if plan.subset == "irrelevant":
        messages = irrelevant_messages(rng, cat, available, max(1, min(plan.n_targets, 2)))
    else:
        messages = []
        for calls in (targets[i::plan.user_turns] for i in range(plan.user_turns)):
            messages += task_messages(rng, cat, calls)
    return {
        "uuid": str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
        "subset_name": plan.subset,
        "question": messages[0]["content"],
        "target_tools": target_names(rng, cat, plan, available, targets),
        "tools": "[" + ", ".join(spec_json(t) for t in available) + "]",  # == json.dumps of the list
        "messages": messages,
    }


def malform(row: dict, kind: str, rng: random.Random) -> None:
    """Break `row` in place the way real rows break, keeping its structural counts (user turns, tools, targets)."""
    msgs = row["messages"]
    calls = [i for i, m in enumerate(msgs) if m["role"] == "tool_call"]
    if kind == "invalid_json":  # truncated inside the last message's content
        text = json.dumps(msgs, ensure_ascii=False)
        row["messages"] = text[: len(text) - 2 - len(msgs[-1]["content"]) // 2]
        return
    if kind == "arguments_not_json" and calls:
        msgs[calls[0]]["content"] = msgs[calls[0]]["content"].replace('"', "").replace("\\'", "")
    elif kind == "call_without_response" and calls:
        last_response = max(i for i, m in enumerate(msgs) if m["role"] == "tool_response")
        del msgs[last_response]
    elif kind == "empty_content":
        msgs[-1]["content"] = ""
    else:  # missing_value, or a call-less row asked for a call malformation
        row[rng.choice(["uuid", "question"])] = None
    row["messages"] = json.dumps(msgs, ensure_ascii=False)


@dataclass(frozen=True)
class Chunk:
    """Rows [start, start + len(plans)) of a run: generated on their own from (seed, start)."""
    seed: int
    start: int
    plans: Plans
    malformed: dict  # row index within the chunk -> malformation kind


def plan_chunks(rows: int, seed: int) -> list[Chunk]:
    if rows < 1:
        raise ValueError(f"download.rows must be >= 1, got {rows}")
    np_rng = np.random.default_rng(seed)
    plans = plan_rows(rows, np_rng)
    n_bad = round(rows * MALFORMED_SHARE)
    bad = np_rng.choice(rows, size=n_bad, replace=False)
    kinds = np.arange(n_bad) % len(MALFORMED_KINDS)
    order = np.argsort(bad, kind="stable")
    bad, kinds = bad[order], kinds[order]
    chunks = []
    for s in range(0, rows, ROW_CHUNK):
        lo, hi = np.searchsorted(bad, [s, s + ROW_CHUNK])
        chunks.append(Chunk(seed, s, plans[s:s + ROW_CHUNK],
                            {int(i) - s: MALFORMED_KINDS[k] for i, k in zip(bad[lo:hi], kinds[lo:hi])}))
    return chunks


def chunk_rows(chunk: Chunk) -> list[dict]:
    rng = random.Random(f"{chunk.seed}:{chunk.start}")
    cat = catalogue()
    out = []
    for i, plan in enumerate(chunk.plans.rows()):
        row = make_row(rng, plan, cat)
        if i in chunk.malformed:
            malform(row, chunk.malformed[i], rng)
        else:
            row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
        out.append(row)
    return out


def generate(rows: int, seed: int, progress=None):
    """Yield `rows` Toucan SFT rows (dicts of the six columns), deterministic from `seed`."""
    for chunk in plan_chunks(rows, seed):
        yield from chunk_rows(chunk)
        if progress is not None:
            progress.update(len(chunk.plans))
