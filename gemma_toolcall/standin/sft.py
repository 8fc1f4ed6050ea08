"""An offline stand-in for the Toucan-1.5M SFT config, deterministic from a seed.

Faithful to `shared/reference/toucan_schema.md`: six string columns in the real order, the real shard names,
`messages` as JSON with roles user/assistant/tool_call/tool_response, `tool_call` content as a Python repr whose
`arguments` is a JSON string, parallel calls as K calls then K responses, OpenAI-style `tools` with slug-prefixed
names, `target_tools` as short names joined by ", " ("Server Name::tool" when a row spans several servers).

Proportions come from the statistics measured on the real SFT config (`toucan_sft_analysis*.real.csv`): every row
is assigned a cell (subset, target-tool count, user turns, available-tool bin) by quota, scaled from the real
counts by largest remainder. At 119,287 rows the phase-1 table is the real one, cell for cell.

Content comes from the real MCP tool catalogue Toucan was synthesized from (`mcp_catalogue`): every row offers real
tools and asks for them in natural requests that state every argument (`standin.phrasing`). Rows are generated in
chunks seeded from (seed, first row), so the output does not depend on how many processes generate it.

Each row is also given a *kind* (ROW_KINDS), by quota inside its cell, that decides what its first request teaches:
one call; calls to several tools at once or one after another; one tool called for several values at once
(`parallel_same_tool`) against an array parameter called once with the list (`parallel_array`); a request unrelated
to every offered tool (`irrelevant`) or about their own subject, asking for a tool of their server that is not offered
(`near_miss`); a request that leaves out a required value, answered by asking for it (`missing_value`); values of
realistic shape (`multi_part_value`, `reformatted_value`, `optional_stated`, `nested_value`); a request worded away
from the tool's description (`paraphrased`). The kind is written into the row's uuid (`row_kind` reads it back), so
it survives every stage that keeps the uuid; the cells, and so the real statistics, are unchanged by kinds.

About 0.5% of rows are malformed in the ways real data is (see MALFORMED_KINDS); the malformations are placed so
that they leave the structural counts of a row unchanged.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import random
import re
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, replace

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


# What a row's first request teaches (module docstring). A row's kind is stored as its index: append only.
ROW_KINDS = ("single_call", "sequential", "parallel_different_tools", "irrelevant", "parallel_same_tool",
             "parallel_array", "near_miss", "missing_value", "multi_part_value", "reformatted_value", "optional_stated",
             "nested_value", "paraphrased")
NEAR_MISS_SHARE = 0.4  # of `irrelevant` rows: the request is about the offered tools' own subject
# Of the rows that ask for one tool: the kinds their request is built for (the rest: single_call, or paraphrased).
ONE_TOOL_KINDS = {"parallel_same_tool": 0.12, "parallel_array": 0.05, "missing_value": 0.06, "multi_part_value": 0.08,
                  "reformatted_value": 0.09, "optional_stated": 0.06, "nested_value": 0.04}
PARAPHRASE_SHARE = 0.25  # of requests for a tool: worded away from its description (phrasing.paraphrase)
KIND_MARK = "5714d1"  # a stand-in uuid ends with this and its kind's index, two hex digits


@dataclass(frozen=True)
class RowPlan:
    subset: str
    n_targets: int
    n_available: int
    user_turns: int
    kind: str = "single_call"


@dataclass(frozen=True)
class Plans:
    """Rows' structural cells as small integer arrays (a few bytes a row): subset index, target tools, available
    tools, user turns."""
    subset: np.ndarray
    targets: np.ndarray
    available: np.ndarray
    user_turns: np.ndarray
    kind: np.ndarray  # index into ROW_KINDS

    def __len__(self) -> int:
        return len(self.subset)

    def __getitem__(self, s: slice) -> "Plans":
        return Plans(self.subset[s], self.targets[s], self.available[s], self.user_turns[s], self.kind[s])

    def rows(self) -> tuple[RowPlan, ...]:
        return tuple(RowPlan(SUBSETS[s], int(t), int(a), int(u), ROW_KINDS[k])
                     for s, t, a, u, k in zip(self.subset, self.targets, self.available, self.user_turns, self.kind))


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
    subset, targets, available, user_turns = subset[order], targets[order], available[order], user_turns[order]
    return Plans(subset, targets, available, user_turns, plan_kinds(subset, targets, available, user_turns, rng))


def plan_kinds(subset, targets, available, user_turns, rng: np.random.Generator) -> np.ndarray:
    """Each row's kind, by quota inside its group: irrelevant rows (near misses or not), rows that ask for one tool
    (ONE_TOOL_KINDS), rows whose first request asks for several tools (at once: PARALLEL_SHARE, or in order)."""
    kind = np.zeros(len(subset), np.int8)  # single_call
    irrelevant = subset == SUBSETS.index("irrelevant")
    first_calls = -(-targets // user_turns)  # the first request asks for targets[0::user_turns]
    groups = (
        (irrelevant, {"irrelevant": 1 - NEAR_MISS_SHARE, "near_miss": NEAR_MISS_SHARE}),
        (~irrelevant & (targets == 1), {"single_call": 1 - sum(ONE_TOOL_KINDS.values()), **ONE_TOOL_KINDS}),
        (~irrelevant & (first_calls >= 2) & ((user_turns > 1) | (available >= 2)),
         {"parallel_different_tools": phrasing.PARALLEL_SHARE, "sequential": 1 - phrasing.PARALLEL_SHARE}),
    )
    for members, shares in groups:
        members = np.flatnonzero(members)
        codes = np.array([ROW_KINDS.index(k) for k in shares], np.int8)
        kind[members] = codes[quota_shuffle({k: round(v * 1_000_000) for k, v in shares.items()}, len(members), rng)]
    return kind


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


@dataclass(frozen=True)
class Pool:
    """Tools a kind of request can ask for, with the size of the server each comes from, smallest first."""
    entries: tuple  # (server size, server index, tool, extra), sorted

    def __bool__(self) -> bool:
        return bool(self.entries)

    def pick(self, rng: random.Random, n_tools: int) -> tuple:
        """(server index, tool, extra) of an entry whose server has, when one does, at least `n_tools` tools (as
        `Catalogue.server_with`: a real row offers every tool of its servers)."""
        first = bisect.bisect_left(self.entries, (n_tools, -1))
        if first == len(self.entries) or rng.random() < 0.2:
            first = 0
        return rng.choice(self.entries[first:])[1:]


def make_pool(entries) -> Pool:
    return Pool(tuple(sorted(entries, key=lambda e: (e[0], e[1]))))


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

    def pool(self, test) -> Pool:
        """The askable tools whose parameters pass `test` (extra: what `test` returned)."""
        out = []
        for i, t in self.askable:
            extra = test(self.params[t])
            if extra:
                out.append((len(self.servers[i]), i, t, extra))
        return make_pool(out)

    @functools.cached_property
    def pools(self) -> dict[str, Pool]:
        one_of = lambda ps, ok: tuple(p for p in ps if ok(p))  # noqa: E731
        return {
            "parallel_same_tool": self.pool(lambda ps: one_of(ps, lambda p: phrasing.fans_out(p)
                                                              and not p.type.startswith("array"))),
            "parallel_array": self.pool(lambda ps: one_of(ps, lambda p: p.type.startswith("array:") and not p.enum
                                                          and p.kind != "flag")),
            "missing_value": self.pool(lambda ps: one_of(ps, lambda p: p.required and p.kind in MUST_ASK)),
            "multi_part_value": self.pool(lambda ps: one_of(ps, phrasing.multi_part_forms)),
            "reformatted_value": self.pool(lambda ps: one_of(ps, phrasing.reformat_forms)),
            "optional_stated": self.pool(lambda ps: one_of(ps, lambda p: not p.required)),
            "nested_value": self.nested_pool,
            "near_miss": self.near_miss_pool,
            "several": make_pool((len(self.servers[i]), i, t, ()) for i, t in self.askable
                                 if sum(self.params[u] is not None and asked_for(u) for u in self.servers[i]) >= 2),
        }

    @functools.cached_property
    def nested_pool(self) -> Pool:
        """Tools with an object parameter (or an array of objects) whose fields can be stated: extra is their
        parameters read with `nested`."""
        out = []
        for i, tools in enumerate(self.servers):
            for t in tools:
                params = phrasing.params_of(t, nested=True)
                if params and any(p.fields for p in params):
                    out.append((len(tools), i, t, params))
        return make_pool(out)

    @functools.cached_property
    def near_miss_pool(self) -> Pool:
        """Askable tools whose server has other tools that do something else (`too_similar`): extra is those."""
        out = []
        for i, t in self.askable:
            siblings = tuple(u for u in self.servers[i] if u is not t and not too_similar(t, u))
            if siblings:
                out.append((len(siblings), i, t, siblings))
        return make_pool(out)


# Required values a request can leave out and an assistant must ask for (a count, a flag or a choice has a default).
MUST_ASK = {"city", "origin", "destination", "country", "symbol", "crypto", "id", "email", "path", "url", "username",
            "repo", "query", "title", "text", "wallet", "company", "domain", "smiles", "selector", "date", "start_date",
            "end_date", "expression", "sql", "code", "command", "currency", "network", "version"}
STOP_WORDS = {"the", "for", "and", "with", "from", "that", "this", "get", "list", "specific", "specified", "given",
              "information", "info", "data", "details", "using", "about", "into", "all", "its", "their", "your"}


@functools.lru_cache(maxsize=None)
def action_words(tool: Tool) -> frozenset:
    text = f"{phrasing.described_action(tool)[0]} {phrasing.words(tool.short)}".lower()
    return frozenset(w for w in re.findall(r"[a-z]{3,}", text) if w not in STOP_WORDS)


def too_similar(a: Tool, b: Tool) -> bool:
    """Whether `b` may well do what `a` does (so a request for `a` is not a near miss when `b` is offered): one name
    holds the other ("search" / "search_advanced"), or their descriptions' first clauses share most words."""
    na, nb = (re.sub(r"[^a-z0-9]", "", t.short.lower()) for t in (a, b))
    if na in nb or nb in na:
        return True
    wa, wb = action_words(a), action_words(b)
    return len(wa & wb) * 3 > len(wa | wb)


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


def fill(rng: random.Random, cat: Catalogue, available: list[Tool], server: int, n_available: int,
         avoid: frozenset = frozenset(), avoid_label: str | None = None) -> list[Tool]:
    """`available`, then the rest of `server`'s tools, then other servers' (none in `avoid`, no server labelled
    `avoid_label`), to exactly `n_available` tools."""
    available, own = list(available), server
    while len(available) < n_available:
        if server == own or cat.servers[server][0].label != avoid_label:
            tools = [t for t in cat.servers[server] if t not in available and t not in avoid]
            available += rng.sample(tools, k=min(len(tools), n_available - len(available)))
        server = rng.randrange(len(cat.servers))
    return available


def pick_tools(rng: random.Random, cat: Catalogue, plan: RowPlan) -> tuple[list[Tool], list[Tool]]:
    """The tools offered (exactly plan.n_available: one askable tool, the rest of its server, then other servers)
    and the targets among them that a question can ask for."""
    server = cat.server_with(rng, plan.n_available)
    available = [rng.choice([t for t in cat.servers[server] if cat.params[t] is not None and asked_for(t)])]
    available = fill(rng, cat, available, server, plan.n_available)
    askable = [t for t in available if cat.params[t] is not None and asked_for(t)]
    return available, rng.sample(askable, k=min(plan.n_targets, len(askable)))


def pick_several(rng: random.Random, cat: Catalogue, plan: RowPlan) -> tuple[list[Tool], list[Tool]]:
    """As pick_tools, for a first request that asks for several tools: a server with two askable tools or more,
    offered first, so that the request can ask for at least two of them."""
    server, first, _ = cat.pools["several"].pick(rng, plan.n_available)
    askable = [t for t in cat.servers[server] if t is not first and cat.params[t] is not None and asked_for(t)]
    available = [first] + rng.sample(askable, k=min(len(askable), plan.n_targets - 1, plan.n_available - 1))
    available = fill(rng, cat, available, server, plan.n_available)
    askable = [t for t in available if cat.params[t] is not None and asked_for(t)][:plan.n_targets]
    return available, rng.sample(askable, k=len(askable))


def target_names(rng: random.Random, cat: Catalogue, plan: RowPlan, available: list[Tool], targets: list[Tool]) -> str:
    # When the offered tools hold fewer askable tools than the plan's count, the rest are named but not offered.
    unoffered = [rng.choice(cat.askable)[1] for _ in range(plan.n_targets - len(targets))]
    multi_server = len({t.server for t in available + unoffered}) > 1
    return ", ".join(f"{t.server}::{t.short}" if multi_server else t.short for t in targets + unoffered)


def wording(rng: random.Random, tool: Tool) -> str | None:
    """A request's wording of what `tool` does: its description's (None), or, for a share, other words."""
    return phrasing.paraphrase(rng, tool) if rng.random() < PARAPHRASE_SHARE else None


def ask_for(rng: random.Random, label: str, clauses: list[str], parallel: bool | None, context: str = "") -> str:
    ask = phrasing.question(rng, clauses, label, parallel)
    if context:
        ask = f"{context} {ask}"
    if rng.random() < 0.05:
        ask = rng.choice(NON_ENGLISH).format(q=ask)
    return ask


def call_turn(rng: random.Random, ask: str, calls: list[tuple[Tool, dict]], parallel: bool) -> list[dict]:
    """A user request served by `calls`: at once (K calls, then K responses in order) or one after another, then the
    answer."""
    msgs = [{"role": "user", "content": ask}]
    if rng.random() < 0.6:
        msgs.append({"role": "assistant", "content": phrasing.preamble(rng, phrasing.intent(rng, calls[0][0]))})
    responses = [phrasing.respond(rng, t, a) for t, a in calls]
    if parallel:  # as the request's wording says (phrasing.question), or one tool for several values
        msgs += [call_message(t, a) for t, a in calls]
        msgs += [{"role": "tool_response", "content": r.content} for r in responses]
    else:
        for i, ((t, a), r) in enumerate(zip(calls, responses)):
            if i and rng.random() < 0.7:
                msgs.append({"role": "assistant", "content": phrasing.next_step(rng, phrasing.intent(rng, t))})
            msgs += [call_message(t, a), {"role": "tool_response", "content": r.content}]
    msgs.append({"role": "assistant", "content": phrasing.answer(rng, responses)})
    return msgs


def task_messages(rng: random.Random, cat: Catalogue, calls: list[Tool],
                  parallel: bool | None = None) -> tuple[list[dict], bool]:
    """One user request served by `calls`: parallel (K calls then K responses) or one after another, as its wording
    says (`parallel` None: drawn, PARALLEL_SHARE); and whether it words the first tool away from its description."""
    if not calls:
        follow_up, reply = rng.choice(FOLLOW_UPS)
        return [{"role": "user", "content": follow_up}, {"role": "assistant", "content": reply}], False
    drawn = [phrasing.draw_arguments(rng, cat.params[t]) for t in calls]
    leads = [wording(rng, t) for t in calls]
    clauses, args = zip(*(phrasing.clause(rng, t, cat.params[t], a, intent_text=lead)
                          for t, a, lead in zip(calls, drawn, leads)))
    if parallel is None:
        parallel = rng.random() < phrasing.PARALLEL_SHARE
    parallel = parallel and len(calls) > 1
    ask = ask_for(rng, calls[0].label, list(clauses), parallel)
    return call_turn(rng, ask, list(zip(calls, args)), parallel), leads[0] is not None


def follow_ups(rng: random.Random, n: int) -> list[dict]:
    return [m for _ in range(n) for m in task_messages(rng, catalogue(), [])[0]]


# ---------------------------------------------------------------------------------------------------------------
# First requests built for a kind (ONE_TOOL_KINDS): their messages, or None when the tool drawn cannot serve the kind
# (then the row is a plain single call).
@functools.lru_cache(maxsize=4096)
def annotated(tool: Tool, param: str, note: str) -> Tool:
    """`tool` with `note` appended to one parameter's description (the rest of the tool as the catalogue has it)."""
    schema = json.loads(json.dumps(tool.schema))
    spec = schema["properties"][param]
    spec["description"] = f"{spec['description']} {note}" if spec.get("description") else note
    return replace(tool, schema=schema)


def one_call(rng: random.Random, tool: Tool, params: tuple, args: dict, said: dict | None = None,
             context: str = "") -> list[dict]:
    text, ordered = phrasing.clause(rng, tool, params, args, said, wording(rng, tool))
    return call_turn(rng, ask_for(rng, tool.label, [text], None, context), [(tool, ordered)], False)


def same_tool_request(rng: random.Random, tool: Tool, params: tuple, candidates: tuple):
    """One tool for K = 2-4 values of one parameter (or two, "respectively"), in one request: K calls at once."""
    varied = [rng.choice([p for p in candidates if p.required] or list(candidates))]
    others = [p for p in candidates if p is not varied[0]]
    if others and rng.random() < 0.3:
        varied.append(rng.choice(others))
    k = rng.choice((2, 2, 3, 3, 4))
    values = {p.name: phrasing.draw_distinct(rng, p, k) for p in varied}
    k = min(len(v) for v in values.values())
    if k < 2:
        return None
    values = {name: v[:k] for name, v in values.items()}
    args = phrasing.draw_arguments(rng, params) | {name: v[0] for name, v in values.items()}
    if len(varied) == 1:
        said = {varied[0].name: phrasing.state_many(rng, varied[0], values[varied[0].name])}
    else:  # one phrase for both: "... for Paris and Lyon, with days 3 and 5 respectively"
        first, second = varied
        said = {first.name: f"{phrasing.state_many(rng, first, values[first.name], named=True)}, "
                            f"{phrasing.state_many(rng, second, values[second.name], named=True)} respectively"}
        del args[second.name]
    text, ordered = phrasing.clause(rng, tool, params, args, said, wording(rng, tool))
    names = list(ordered)
    if len(varied) == 2:  # the second varied value is written right after the first
        names.insert(names.index(varied[0].name) + 1, varied[1].name)
    calls = [(tool, {n: values[n][i] if n in values else ordered[n] for n in names}) for i in range(k)]
    return call_turn(rng, ask_for(rng, tool.label, [text], None), calls, True)


def array_request(rng: random.Random, tool: Tool, params: tuple, candidates: tuple):
    """The contrast to same_tool_request: the values fill an array parameter, so one call holds them all."""
    p = rng.choice([c for c in candidates if c.kind in phrasing.FAN_OUT_KINDS] or list(candidates))
    values = phrasing.draw_distinct(rng, p, rng.choice((2, 2, 3, 3, 4)))
    if len(values) < 2:
        return None
    args = phrasing.draw_arguments(rng, params) | {p.name: values}
    return one_call(rng, tool, params, args, {p.name: phrasing.state_many(rng, p, values)})


def missing_request(rng: random.Random, tool: Tool, params: tuple, candidates: tuple, user_turns: int):
    """A request that leaves out a required value: the answer asks for it, by name. In a multi-turn row the next
    user turn gives it, and the call follows."""
    missing = rng.choice(candidates)
    args = phrasing.draw_arguments(rng, params)
    text, ordered = phrasing.clause(rng, tool, params, {k: v for k, v in args.items() if k != missing.name},
                                    intent_text=wording(rng, tool))
    msgs = [{"role": "user", "content": ask_for(rng, tool.label, [text], None)},
            {"role": "assistant", "content": phrasing.missing_reply(rng, missing, phrasing.intent(rng, tool))}]
    if user_turns > 1:
        given = phrasing.supply(rng, phrasing.state(rng, missing, args[missing.name], named=True))
        msgs += call_turn(rng, given, [(tool, ordered | {missing.name: args[missing.name]})], False)
    return msgs


def shaped_request(rng: random.Random, tool: Tool, params: tuple, candidates: tuple, kind: str):
    """A request that states one value of realistic shape (phrasing.Shaped): multi-part, or in another form than the
    schema's; a stand-in format note goes into the offered tool's description."""
    p = rng.choice(candidates)
    if kind == "multi_part_value":
        shaped = phrasing.multi_part(rng, p, rng.choice(phrasing.multi_part_forms(p)))
    else:
        forms = phrasing.reformat_forms(p)
        shaped = phrasing.reformat(rng, p, rng.choices([f for f, _ in forms], [w for _, w in forms])[0])
    offered = annotated(tool, p.name, shaped.note) if shaped.note else tool
    args = phrasing.draw_arguments(rng, params) | {p.name: shaped.value}
    return one_call(rng, offered, params, args, {p.name: shaped.phrase}, shaped.context), offered


def optional_request(rng: random.Random, tool: Tool, params: tuple, candidates: tuple):
    """A request that states one to three optional values besides the required ones."""
    chosen = rng.sample(candidates, k=min(len(candidates), rng.choice((1, 1, 2, 3))))
    args = {p.name: phrasing.draw_value(rng, p) for p in params if p.required or p in chosen}
    return one_call(rng, tool, params, args)


def nested_request(rng: random.Random, tool: Tool, params: tuple):
    """A request that states an object parameter (or an array of objects) field by field."""
    nested = [p for p in params if p.fields]
    p = rng.choice([n for n in nested if n.required] or nested)
    args = phrasing.draw_arguments(rng, params)
    args.setdefault(p.name, phrasing.draw_value(rng, p))
    return one_call(rng, tool, params, args)


def one_tool_row(rng: random.Random, cat: Catalogue, plan: RowPlan):
    """(available, targets, messages, kind) of a row built for one of ONE_TOOL_KINDS, or None."""
    pool = cat.pools[plan.kind]
    if not pool:
        return None
    server, tool, extra = pool.pick(rng, plan.n_available)
    params = extra if plan.kind == "nested_value" else cat.params[tool]
    offered = tool
    if plan.kind == "parallel_same_tool":
        msgs = same_tool_request(rng, tool, params, extra)
    elif plan.kind == "parallel_array":
        msgs = array_request(rng, tool, params, extra)
    elif plan.kind == "missing_value":
        msgs = missing_request(rng, tool, params, extra, plan.user_turns)
    elif plan.kind in ("multi_part_value", "reformatted_value"):
        msgs, offered = shaped_request(rng, tool, params, extra, plan.kind)
    elif plan.kind == "optional_stated":
        msgs = optional_request(rng, tool, params, extra)
    else:
        msgs = nested_request(rng, tool, params)
    if msgs is None:
        return None
    available = [offered if t is tool else t for t in fill(rng, cat, [tool], server, plan.n_available)]
    turns = sum(m["role"] == "user" for m in msgs)
    return available, [tool], msgs + follow_ups(rng, plan.user_turns - turns), plan.kind


def near_miss_row(rng: random.Random, cat: Catalogue, plan: RowPlan):
    """A request for a tool of the offered tools' own server that is not offered (the siblings offered do something
    else): answered in words, no call. The asked tool is the first of `target_tools`."""
    server, asked, siblings = cat.pools["near_miss"].pick(rng, plan.n_available)
    offered = rng.sample(siblings, k=min(len(siblings), plan.n_available))
    avoid = frozenset(t for t in cat.servers[server] if t not in offered)
    available = fill(rng, cat, offered, server, plan.n_available, avoid, asked.label)
    text, _ = phrasing.clause(rng, asked, cat.params[asked], phrasing.draw_arguments(rng, cat.params[asked]))
    reply = phrasing.near_miss_reply(rng, phrasing.intent(rng, asked), phrasing.intent(rng, offered[0]))
    pad = [t for t in available if cat.params[t] is not None and asked_for(t)]
    named = [asked] + rng.sample(pad, k=min(len(pad), plan.n_targets - 1))
    named += [rng.choice(cat.askable)[1] for _ in range(plan.n_targets - len(named))]
    multi_server = len({t.server for t in available + named}) > 1
    names = ", ".join(f"{t.server}::{t.short}" if multi_server else t.short for t in named)
    return available, names, [{"role": "user", "content": ask_for(rng, asked.label, [text], None)},
                              {"role": "assistant", "content": reply}]


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


def tagged_uuid(rng: random.Random, kind: str) -> str:
    """A version-4 uuid whose last eight hex digits are KIND_MARK and the kind's index."""
    text = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
    return f"{text[:-8]}{KIND_MARK}{ROW_KINDS.index(kind):02x}"


def row_kind(uuid: str | None) -> str | None:
    """The kind of a stand-in row from its uuid (None for a row the stand-in did not write, e.g. real data)."""
    if not isinstance(uuid, str) or len(uuid) != 36 or uuid[-8:-2] != KIND_MARK:
        return None
    index = int(uuid[-2:], 16)
    return ROW_KINDS[index] if index < len(ROW_KINDS) else None


def make_row(rng: random.Random, plan: RowPlan, cat: Catalogue) -> tuple[dict, str]:
    """One row of `plan`'s cell, and the kind it was built as (the plan's, or single_call where the tools drawn
    could not serve it)."""
    kind = plan.kind
    built = None
    if kind == "near_miss":
        built = near_miss_row(rng, cat, plan)
    elif kind in ONE_TOOL_KINDS:
        built = one_tool_row(rng, cat, plan)
    if plan.subset == "irrelevant":
        if built is None:
            available, targets = pick_tools(rng, cat, plan)
            messages = irrelevant_messages(rng, cat, available, max(1, min(plan.n_targets, 2)))
            names, kind = target_names(rng, cat, plan, available, targets), "irrelevant"
        else:
            available, names, messages = built
    elif built is not None:
        available, targets, messages, kind = built
        names = target_names(rng, cat, plan, available, targets)
    else:
        several = kind in ("parallel_different_tools", "sequential")
        available, targets = (pick_several if several else pick_tools)(rng, cat, plan)
        groups = [targets[i::plan.user_turns] for i in range(plan.user_turns)]
        if not several or len(groups[0]) < 2:
            kind = "single_call"
        messages = []
        for i, calls in enumerate(groups):
            msgs, reworded = task_messages(rng, cat, calls, kind == "parallel_different_tools" if i == 0 else None)
            messages += msgs
            if i == 0 and reworded and kind == "single_call":
                kind = "paraphrased"
        names = target_names(rng, cat, plan, available, targets)
    row = {
        "uuid": tagged_uuid(rng, kind),
        "subset_name": plan.subset,
        "question": messages[0]["content"],
        "target_tools": names,
        "tools": "[" + ", ".join(spec_json(t) for t in available) + "]",  # == json.dumps of the list
        "messages": messages,
    }
    return row, kind


def malform(row: dict, kind: str, rng: random.Random) -> None:
    """Break `row` in place the way real rows break, keeping its structural counts (user turns, tools, targets)."""
    msgs = row["messages"]
    calls = [i for i, m in enumerate(msgs) if m["role"] == "tool_call"]
    if kind == "invalid_json":  # truncated inside the last message's content
        text = json.dumps(msgs, ensure_ascii=False)
        row["messages"] = text[: len(text) - 2 - len(msgs[-1]["content"]) // 2]
        return
    if kind == "arguments_not_json" and calls:
        empty = "'arguments': '{}'"  # nothing to unquote: cut the object short instead
        i = next((i for i in calls if empty not in msgs[i]["content"]), calls[0])
        text = msgs[i]["content"]
        msgs[i]["content"] = (text.replace(empty, "'arguments': '{'") if empty in text
                              else text.replace('"', "").replace("\\'", ""))
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


def chunk_rows(chunk: Chunk, tally: Counter | None = None) -> list[dict]:
    """The chunk's rows; `tally` (when given) counts what they hold (`count_row`, for `standin_metrics`)."""
    rng = random.Random(f"{chunk.seed}:{chunk.start}")
    cat = catalogue()
    out = []
    for i, plan in enumerate(chunk.plans.rows()):
        row, kind = make_row(rng, plan, cat)
        if tally is not None:
            count_row(tally, plan, kind, row["messages"], i in chunk.malformed)
        if i in chunk.malformed:
            malform(row, chunk.malformed[i], rng)
        else:
            row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------------------
# What the rows hold: counted as they are generated, reported by the download stage (metrics/download.json).
SCOPES = ("all", "single_turn_le2_targets_le3_tools")  # every row; the rows the default filter keeps


def count_row(tally: Counter, plan: RowPlan, kind: str, messages: list[dict], malformed: bool) -> None:
    tally["rows"] += 1
    if malformed:  # left out of the shares: the filter drops it
        tally["malformed"] += 1
        return
    tally[f"kind:{kind}"] += 1
    roles = [m["role"] for m in messages]
    first = roles.index("user") + 1
    end = next((j for j in range(first, len(roles)) if roles[j] in ("user", "tool_response")), len(roles))
    names = [messages[j]["content"] for j in range(first, end) if roles[j] == "tool_call"]
    scopes = SCOPES if plan.user_turns == 1 and plan.n_targets <= 2 and plan.n_available <= 3 else SCOPES[:1]
    for scope in scopes:
        tally[f"{scope}:rows"] += 1
        tally[f"{scope}:kind:{kind}"] += 1
        if names:
            tally[f"{scope}:calling_first_turns"] += 1
            if len(names) >= 2:
                same = len({n.split(", 'arguments': ")[0] for n in names}) == 1  # the reprs' names
                tally[f"{scope}:first_turns_2plus_calls"] += 1
                tally[f"{scope}:first_turns_2plus_calls_{'same_tool' if same else 'different_tools'}"] += 1
        else:
            tally[f"{scope}:no_call_first_turns"] += 1


def standin_metrics(tally: Counter) -> dict:
    """The shares the stand-in was built for, from the counts of the rows written (malformed rows left out)."""
    def share(a: int, b: int) -> float:
        return round(a / b, 4) if b else 0.0

    out = {"rows": tally["rows"], "malformed": tally["malformed"],
           "kinds": {k: tally[f"kind:{k}"] for k in ROW_KINDS}}
    for scope in SCOPES:
        rows, calling = tally[f"{scope}:rows"], tally[f"{scope}:calling_first_turns"]
        no_call = tally[f"{scope}:no_call_first_turns"]
        several = tally[f"{scope}:first_turns_2plus_calls"]
        kinds = {k: tally[f"{scope}:kind:{k}"] for k in ROW_KINDS}
        out[scope] = {
            "rows": rows,
            "calling_first_turns": calling,
            "first_turns_2plus_calls": several,
            "share_of_calling_first_turns_2plus_calls": share(several, calling),
            "parallel_same_tool": tally[f"{scope}:first_turns_2plus_calls_same_tool"],
            "parallel_different_tools": tally[f"{scope}:first_turns_2plus_calls_different_tools"],
            "share_of_parallel_same_tool": share(tally[f"{scope}:first_turns_2plus_calls_same_tool"], several),
            "parallel_array": kinds["parallel_array"],
            "no_call_first_turns": no_call,
            "near_miss": kinds["near_miss"],
            "share_of_no_call_near_miss": share(kinds["near_miss"], no_call),
            "missing_value": kinds["missing_value"],
            "share_of_rows_missing_value": share(kinds["missing_value"], rows),
            "kinds": kinds,
        }
    return out


def generate(rows: int, seed: int, progress=None):
    """Yield `rows` Toucan SFT rows (dicts of the six columns), deterministic from `seed`."""
    for chunk in plan_chunks(rows, seed):
        yield from chunk_rows(chunk)
        if progress is not None:
            progress.update(len(chunk.plans))
