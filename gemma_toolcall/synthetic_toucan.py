"""An offline stand-in for the Toucan-1.5M SFT config, deterministic from a seed.

Faithful to `shared/reference/toucan_schema.md`: six string columns in the real order, the real shard names,
`messages` as JSON with roles user/assistant/tool_call/tool_response, `tool_call` content as a Python repr whose
`arguments` is a JSON string, parallel calls as K calls then K responses, OpenAI-style `tools` with slug-prefixed
names, `target_tools` as short names joined by ", " ("Server Name::tool" when a row spans several servers).

Proportions come from the statistics measured on the real SFT config (`toucan_sft_analysis*.real.csv`): every row
is assigned a cell (subset, target-tool count, user turns, available-tool bin) by quota, scaled from the real
counts by largest remainder. At 119,287 rows the phase-1 table is the real one, cell for cell.

About 0.5% of rows are malformed in the ways real data is (see MALFORMED_KINDS); the malformations are placed so
that they leave the structural counts of a row unchanged.
"""
from __future__ import annotations

import json
import random
import uuid as uuidlib
from dataclasses import dataclass

import numpy as np

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


def quota_shuffle(counts: dict, n: int, rng: np.random.Generator) -> list:
    """`n` labels in the proportions of `counts`, exactly (largest remainder), in seeded random order."""
    scaled = scale_counts(counts, n)
    labels = [k for k, c in scaled.items() for _ in range(c)]
    rng.shuffle(labels)
    return labels


@dataclass(frozen=True)
class RowPlan:
    subset: str
    n_targets: int
    n_available: int
    user_turns: int


def plan_rows(rows: int, rng: np.random.Generator) -> list[RowPlan]:
    """Assign each row its structural cell, with the real SFT proportions."""
    cells = {(s, t): c for s, by_t in SUBSET_X_TARGETS.items() for t, c in by_t.items()}
    scaled = scale_counts(cells, rows)
    plans: list[dict] = []
    for (subset, t), n in scaled.items():
        plans.extend({"subset": subset, "t": t} for _ in range(n))
    # Available-tool bins: per target count for single-turn rows, one table for multi-turn rows.
    groups: dict[object, list[dict]] = {}
    for p in plans:
        key = "multi" if p["subset"] == "multi-turn" else min(p["t"], 4)
        groups.setdefault(key, []).append(p)
    for key in sorted(groups, key=str):
        members = groups[key]
        table = MULTI_TURN_AVAILABLE if key == "multi" else SINGLE_TURN_AVAILABLE[key]
        for p, b in zip(members, quota_shuffle(dict(zip(AVAILABLE_BINS, table)), len(members), rng)):
            p["bin"] = b
        if key == "multi":
            for p, u in zip(members, quota_shuffle(MULTI_TURN_USER_TURNS, len(members), rng)):
                p["u"] = u
    # Exact values inside each bin, spread over all rows of the bin at once.
    for b in AVAILABLE_BINS:
        members = [p for p in plans if p["bin"] == b]
        spread = WITHIN_BIN.get(b, {range(b[0], b[1] + 1): 1})
        for p, value in zip(members, quota_shuffle(spread, len(members), rng)):
            p["a"] = int(rng.choice(list(value))) if isinstance(value, range) else value
    order = rng.permutation(len(plans))
    return [RowPlan(plans[i]["subset"], plans[i]["t"], plans[i]["a"], plans[i].get("u", 1)) for i in order]


# ---------------------------------------------------------------------------------------------------------------
# A catalogue of MCP-like servers: (domain, [(tool, description, {param: spec}, required)]), spec = type or enum list.
DOMAINS = [
    ("PubChem Data Access", [
        ("search_compound", "Search PubChem for chemical compounds by name, formula or identifier and return matching CIDs.",
         {"query": "string", "max_results": "integer"}, ["query"]),
        ("get_compound_properties", "Get molecular weight, formula, IUPAC name, XLogP and other computed properties of a compound.",
         {"cid": "integer"}, ["cid"]),
        ("search_bioassay", "Search bioassays associated with a compound or target.", {"query": "string", "max_results": "integer"}, ["query"]),
    ]),
    ("Open Meteo Weather", [
        ("get_current_weather", "Get the current weather conditions for a city or coordinates.", {"location": "string", "units": ["metric", "imperial"]}, ["location"]),
        ("get_forecast", "Get a daily weather forecast for the next days.", {"location": "string", "days": "integer"}, ["location"]),
        ("get_air_quality", "Get the air quality index and pollutant levels for a location.", {"location": "string"}, ["location"]),
    ]),
    ("Finance Market Data", [
        ("get_stock_quote", "Get the latest quote for a stock ticker, including price, change and volume.", {"symbol": "string"}, ["symbol"]),
        ("get_historical_prices", "Get historical daily prices of a ticker between two dates.", {"symbol": "string", "start_date": "string", "end_date": "string"}, ["symbol"]),
        ("convert_currency", "Convert an amount between two currencies at the latest exchange rate.", {"amount": "number", "from_currency": "string", "to_currency": "string"}, ["amount", "from_currency", "to_currency"]),
        ("get_company_profile", "Get a company's profile: sector, industry, market cap and description.", {"symbol": "string"}, ["symbol"]),
    ]),
    ("GitHub Repository Tools", [
        ("search_repositories", "Search GitHub repositories by keyword, language and stars.", {"query": "string", "language": "string", "sort": ["stars", "forks", "updated"]}, ["query"]),
        ("list_issues", "List issues of a repository filtered by state and labels.", {"owner": "string", "repo": "string", "state": ["open", "closed", "all"]}, ["owner", "repo"]),
        ("get_file_contents", "Get the contents of a file in a repository at a ref.", {"owner": "string", "repo": "string", "path": "string"}, ["owner", "repo", "path"]),
        ("create_issue", "Create an issue in a repository.", {"owner": "string", "repo": "string", "title": "string", "body": "string"}, ["owner", "repo", "title"]),
    ]),
    ("Calendar Scheduler", [
        ("list_events", "List calendar events between two dates.", {"start_date": "string", "end_date": "string"}, ["start_date"]),
        ("create_event", "Create a calendar event with a title, start time and duration in minutes.", {"title": "string", "start_time": "string", "duration_minutes": "integer"}, ["title", "start_time"]),
        ("find_free_slot", "Find the first free slot of a given length on a date.", {"date": "string", "duration_minutes": "integer"}, ["date", "duration_minutes"]),
    ]),
    ("Flight Search", [
        ("search_flights", "Search one-way flights between two airports on a date.", {"origin": "string", "destination": "string", "date": "string", "passengers": "integer"}, ["origin", "destination", "date"]),
        ("get_flight_status", "Get the live status of a flight by its number.", {"flight_number": "string"}, ["flight_number"]),
        ("get_airport_info", "Get details about an airport by IATA code.", {"iata_code": "string"}, ["iata_code"]),
    ]),
    ("Recipe Finder", [
        ("search_recipes", "Search recipes by ingredients and diet.", {"ingredients": "array", "diet": ["none", "vegetarian", "vegan", "gluten-free"]}, ["ingredients"]),
        ("get_nutrition", "Get nutrition facts for a food item per 100 g.", {"food": "string"}, ["food"]),
    ]),
    ("Wikipedia Knowledge", [
        ("search_articles", "Search Wikipedia articles and return titles with snippets.", {"query": "string", "limit": "integer", "language": "string"}, ["query"]),
        ("get_article_summary", "Get the summary section of a Wikipedia article.", {"title": "string"}, ["title"]),
    ]),
    ("Math Toolkit", [
        ("calculate", "Evaluate an arithmetic expression exactly.", {"expression": "string"}, ["expression"]),
        ("solve_equation", "Solve an equation for a variable.", {"equation": "string", "variable": "string"}, ["equation"]),
        ("unit_convert", "Convert a value between units of the same dimension.", {"value": "number", "from_unit": "string", "to_unit": "string"}, ["value", "from_unit", "to_unit"]),
    ]),
    ("News Aggregator", [
        ("get_headlines", "Get top headlines for a country and category.", {"country": "string", "category": ["business", "science", "sports", "technology"]}, ["country"]),
        ("search_news", "Search news articles by keyword and date range.", {"query": "string", "from_date": "string"}, ["query"]),
    ]),
    ("Maps and Places", [
        ("geocode", "Turn an address into latitude and longitude.", {"address": "string"}, ["address"]),
        ("search_nearby", "Search places of a type near coordinates within a radius in metres.", {"latitude": "number", "longitude": "number", "place_type": "string", "radius": "integer"}, ["latitude", "longitude", "place_type"]),
        ("get_directions", "Get directions between two places by a travel mode.", {"origin": "string", "destination": "string", "mode": ["driving", "walking", "transit"]}, ["origin", "destination"]),
    ]),
    ("Academic Papers", [
        ("search_papers", "Search arXiv papers by query, sorted by relevance or date.", {"query": "string", "max_results": "integer"}, ["query"]),
        ("get_paper_details", "Get the abstract, authors and categories of a paper by arXiv id.", {"paper_id": "string"}, ["paper_id"]),
    ]),
    ("Crypto Prices", [
        ("get_coin_price", "Get the current price of a cryptocurrency in a fiat currency.", {"coin": "string", "vs_currency": "string"}, ["coin"]),
        ("get_market_chart", "Get a coin's price history over a number of days.", {"coin": "string", "days": "integer"}, ["coin", "days"]),
    ]),
    ("Email Assistant", [
        ("send_email", "Send an email to a recipient with subject and body.", {"to": "string", "subject": "string", "body": "string"}, ["to", "subject", "body"]),
        ("search_inbox", "Search the inbox for messages matching a query.", {"query": "string", "unread_only": "boolean"}, ["query"]),
    ]),
    ("Translation Service", [
        ("translate_text", "Translate text into a target language.", {"text": "string", "target_language": "string", "source_language": "string"}, ["text", "target_language"]),
        ("detect_language", "Detect the language of a text.", {"text": "string"}, ["text"]),
    ]),
]
PROVIDERS = ["", "Pro", "Lite", "Hub", "Plus", "Cloud", "Open", "Express"]

VALUES = {
    "query": ["aspirin", "caffeine", "machine learning", "climate change", "graph neural networks", "ibuprofen", "rust async runtime", "solar panels"],
    "location": ["Paris", "Tokyo", "New York", "Nairobi", "São Paulo", "Berlin", "Sydney"],
    "symbol": ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL"],
    "owner": ["torvalds", "google", "huggingface", "pallets"], "repo": ["linux", "jax", "transformers", "flask"],
    "path": ["README.md", "setup.py", "src/main.rs"], "title": ["Team sync", "Bug: crash on start", "Photosynthesis", "Dentist"],
    "body": ["Steps to reproduce are in the log.", "Please see the attached notes."], "subject": ["Quarterly report", "Meeting tomorrow"],
    "to": ["alice@example.com", "bob@example.org"], "expression": ["(17 * 23) + 4", "2**10 - 1", "sqrt(144) * 3"],
    "equation": ["2*x + 3 = 11", "x**2 - 4 = 0"], "variable": ["x"], "food": ["banana", "oats", "salmon"],
    "coin": ["bitcoin", "ethereum", "solana"], "vs_currency": ["usd", "eur"], "country": ["us", "gb", "de", "jp"],
    "origin": ["SFO", "JFK", "Lyon", "CDG"], "destination": ["LHR", "NRT", "Marseille", "FRA"], "flight_number": ["BA287", "LH400", "NH7"],
    "iata_code": ["SFO", "HND", "CDG"], "address": ["1600 Amphitheatre Parkway, Mountain View", "10 Downing Street, London"],
    "place_type": ["restaurant", "pharmacy", "museum"], "paper_id": ["1706.03762", "2005.14165"], "text": ["Good morning, how are you?", "Where is the station?"],
    "target_language": ["fr", "de", "es", "ja"], "source_language": ["en"], "language": ["en", "python", "de"],
    "from_currency": ["USD", "EUR"], "to_currency": ["JPY", "GBP"], "from_unit": ["km", "lb"], "to_unit": ["mi", "kg"],
    "ingredients": ["tomato", "basil", "rice", "chickpeas"], "start_date": ["2025-03-01", "2025-06-10"], "end_date": ["2025-03-31", "2025-06-20"],
    "date": ["2025-07-14", "2025-09-02"], "from_date": ["2025-01-01"], "start_time": ["2025-05-02T10:00", "2025-05-03T15:30"],
}
NON_ENGLISH = [
    "¿Puedes ayudarme con esto? {q}", "Kannst du mir bitte helfen: {q}", "Peux-tu m'aider avec ceci : {q}",
    "请帮我处理一下：{q}", "これを手伝ってもらえますか：{q}",
]
GENERAL_QUESTIONS = [
    "What is the capital of Australia, and why was it chosen?", "Can you write a haiku about autumn leaves?",
    "Explain the difference between a virus and a bacterium.", "What are some tips for improving my sleep?",
    "Who wrote 'Pride and Prejudice' and when was it published?", "How do I politely decline a meeting invitation?",
]


@dataclass(frozen=True)
class Tool:
    server: str
    slug: str
    short: str
    description: str
    params: dict
    required: tuple

    @property
    def name(self) -> str:
        return f"{self.slug}-{self.short}"

    def spec(self) -> dict:
        props = {}
        for p, t in self.params.items():
            title = p.replace("_", " ").title()
            if isinstance(t, list):
                props[p] = {"enum": t, "title": title, "type": "string"}
            elif t == "array":
                props[p] = {"items": {"type": "string"}, "title": title, "type": "array"}
            else:
                props[p] = {"title": title, "type": t}
            if p not in self.required and not isinstance(t, list):
                props[p]["default"] = {"integer": 10, "number": 1.0, "boolean": False}.get(t)
        # Real MCP descriptions often carry a docstring-style argument list.
        doc = "\n".join(f"    {p}: the {p.replace('_', ' ')} to use" + ("" if p in self.required else " (optional)")
                        for p in self.params)
        return {"type": "function", "function": {
            "name": self.name, "description": f"{self.description}\n\n    Args:\n{doc}\n",
            "parameters": {"type": "object", "properties": props, "required": list(self.required),
                           "title": f"{self.short}Arguments"}}}


def build_catalogue() -> list[list[Tool]]:
    servers = []
    for domain, tools in DOMAINS:
        for provider in PROVIDERS:
            server = f"{domain} {provider}".strip() + " Server"
            slug = server.lower().replace(" ", "-")
            servers.append([Tool(server, slug, short, desc, params, tuple(req)) for short, desc, params, req in tools])
    return servers


def _value(rng: random.Random, param: str, spec):
    if isinstance(spec, list):
        return rng.choice(spec)
    if spec == "integer":
        return rng.choice([1, 3, 5, 10, 20, 2244, 60])
    if spec == "number":
        return round(rng.uniform(-50, 500), 2)
    if spec == "boolean":
        return rng.random() < 0.5
    pool = VALUES.get(param, ["example"])
    return rng.sample(pool, k=min(2, len(pool))) if spec == "array" else rng.choice(pool)


def _arguments(rng: random.Random, tool: Tool) -> dict:
    return {p: _value(rng, p, s) for p, s in tool.params.items() if p in tool.required or rng.random() < 0.4}


def _response(rng: random.Random, tool: Tool, args: dict) -> str:
    roll = rng.random()
    if roll < 0.08:
        return json.dumps({"error": f"HTTP error: {rng.choice([400, 404, 429, 500])}", "tool": tool.short}, indent=2)
    if roll < 0.2:
        return f"{tool.short} finished: {len(args)} argument(s) processed, see details above."
    items = [{"id": rng.randrange(10**6), "label": f"{tool.short.replace('_', ' ')} result {i + 1}",
              "score": round(rng.random(), 3), "summary": rng.choice(VALUES["text"] + VALUES["title"]),
              "source": f"https://{tool.slug}.example.com/item/{rng.randrange(10**8)}"}
             for i in range(rng.randint(2, 14))]
    return json.dumps({"request": args, "count": len(items), "results": items}, indent=2, ensure_ascii=False)


def _ask(rng: random.Random, tools: list[Tool], args: list[dict]) -> str:
    parts = [f"{t.description[0].lower()}{t.description[1:].split('.')[0]} (for {', '.join(str(v) for v in a.values()) or 'defaults'})"
             for t, a in zip(tools, args)]
    q = rng.choice(["Could you {x}?", "I need to {x}.", "Please {x}, thanks!", "Help me {x}."]).format(x=" and then ".join(parts))
    return rng.choice(NON_ENGLISH).format(q=q) if rng.random() < 0.05 else q


def _call(tool: Tool, args: dict) -> dict:
    return {"role": "tool_call", "content": repr({"name": tool.name, "arguments": json.dumps(args, ensure_ascii=False)})}


def _task_messages(rng: random.Random, calls: list[Tool]) -> list[dict]:
    """One user request served by `calls`: parallel (K calls then K responses) or one after another."""
    if not calls:  # a follow-up turn of a multi-turn row that needs no tool
        return [{"role": "user", "content": rng.choice(GENERAL_QUESTIONS)},
                {"role": "assistant", "content": "I can answer that directly, no tool needed."}]
    args = [_arguments(rng, t) for t in calls]
    msgs = [{"role": "user", "content": _ask(rng, calls, args)}]
    if rng.random() < 0.5:
        msgs.append({"role": "assistant", "content": f"I'll use {calls[0].short} to look into that."})
    if len(calls) > 1 and rng.random() < 0.4:
        msgs += [_call(t, a) for t, a in zip(calls, args)]
        msgs += [{"role": "tool_response", "content": _response(rng, t, a)} for t, a in zip(calls, args)]
    else:
        for i, (t, a) in enumerate(zip(calls, args)):
            if i:
                msgs.append({"role": "assistant", "content": f"Next, {t.short.replace('_', ' ')}."})
            msgs += [_call(t, a), {"role": "tool_response", "content": _response(rng, t, a)}]
    msgs.append({"role": "assistant", "content": f"Here is what I found using {', '.join(t.short for t in calls)}: "
                 + "the results are summarised above, with the top entries highlighted."})
    return msgs


def make_row(rng: random.Random, plan: RowPlan, catalogue: list[list[Tool]]) -> dict:
    primary = rng.randrange(len(catalogue))
    available: list[Tool] = []
    server = primary
    while len(available) < plan.n_available:
        tools = catalogue[server]
        available += rng.sample(tools, k=min(len(tools), plan.n_available - len(available)))
        server = (server + 1 + rng.randrange(len(catalogue) - 1)) % len(catalogue)
    targets = rng.sample(available, k=min(plan.n_targets, len(available)))
    spill = catalogue[(primary + 1) % len(catalogue)]
    unavailable = [spill[i % len(spill)] for i in range(plan.n_targets - len(targets))]
    multi_server = len({t.server for t in available + unavailable}) > 1
    target_names = [f"{t.server}::{t.short}" if multi_server else t.short for t in targets + unavailable]

    if plan.subset == "irrelevant":
        messages = [{"role": "user", "content": rng.choice(GENERAL_QUESTIONS)},
                    {"role": "assistant", "content": "None of the available tools fit this request, so I'll answer "
                     "from general knowledge: " + rng.choice(GENERAL_QUESTIONS).lower()}]
    else:
        messages = []
        per_turn = [targets[i::plan.user_turns] for i in range(plan.user_turns)]
        for calls in per_turn:
            messages += _task_messages(rng, calls)
    return {
        "uuid": str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
        "subset_name": plan.subset,
        "question": messages[0]["content"],
        "target_tools": ", ".join(target_names),
        "tools": json.dumps([t.spec() for t in available], ensure_ascii=False),
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


def generate(rows: int, seed: int, progress=None):
    """Yield `rows` Toucan SFT rows (dicts of the six columns), deterministic from `seed`."""
    if rows < 1:
        raise ValueError(f"download.rows must be >= 1, got {rows}")
    np_rng = np.random.default_rng(seed)
    rng = random.Random(seed)
    catalogue = build_catalogue()
    plans = plan_rows(rows, np_rng)
    n_bad = round(rows * MALFORMED_SHARE)
    bad_rows = {int(i): MALFORMED_KINDS[k % len(MALFORMED_KINDS)]
                for k, i in enumerate(np_rng.choice(rows, size=n_bad, replace=False))}
    for i, plan in enumerate(plans):
        row = make_row(rng, plan, catalogue)
        if i in bad_rows:
            malform(row, bad_rows[i], rng)
        else:
            row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
        if progress is not None:
            progress.update(1)
        yield row
