"""What the stand-in says: argument values for real MCP parameters, the questions that state them, tool responses
and answers. Used by `synthetic_toucan`.

A parameter's *kind* (a city, a date, a ticker, a count...) is read from its name, JSON type, enum, format and
description. Each kind has a pool of values and several phrasings; every phrasing holds the value verbatim (a date
may instead be written out, "March 4, 2025": `spoken_date`), so a call carries exactly the values its question states.
Questions never name the tool: the intent comes from the tool's description, rewritten as a request.
"""
from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from dataclasses import dataclass

import orjson

from gemma_toolcall.dataset.mcp_catalogue import Tool

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
# Parameters that are themselves structure (objects, arrays of objects) have no natural phrasing: a tool that
# requires one is offered but never asked for.
SPEAKABLE_TYPES = ("string", "integer", "number", "boolean", "array")
OPTIONAL_SHARE = 0.35


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    type: str  # string | integer | number | boolean | array
    words: str  # the name as words: maxResults -> "max results"
    required: bool
    enum: tuple = ()


def words(name: str) -> str:
    return " ".join(re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").lower().split())


def json_type(spec: dict) -> str | None:
    t = spec.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None:
        t = next((a.get("type") for a in spec.get("anyOf", ())
                  if isinstance(a, dict) and a.get("type") != "null"), None)
    if t is None and spec.get("enum"):
        t = "string"
    return t


# (kind, name pattern on the words, description pattern or None). First match wins; the type decides which table.
STRING_KINDS = (
    ("url", r"\b(url|uri|link|href|website|endpoint)\b", r"\burl\b"),
    ("email", r"\b(email|e mail|recipient)\b", None),
    ("wallet", r"\b(wallet|contract|(token|pool|pair|contract|wallet) address)\b", None),
    ("wallet", r"\baddress\b", r"0x|wallet|contract|blockchain|token|pool"),
    ("path", r"\b(path|file|filename|filepath|dir|directory|folder)\b", None),
    ("start_date", r"\b(start|from|since|begin)\b.*\bdate\b|\bdate from\b|\bstart\b", r"yyyy|date"),
    ("end_date", r"\b(end|to|until)\b.*\bdate\b|\bdate to\b|\bend\b", r"yyyy|date"),
    ("date", r"\b(date|day|birthday)\b", None),
    ("time", r"\b(time|datetime|timestamp)\b", None),
    ("origin", r"\b(origin|from|departure|source city)\b", r"city|airport|location|place"),
    ("destination", r"\b(destination|to|arrival)\b", r"city|airport|location|place"),
    ("country", r"\b(country|nation)\b", None),
    ("city", r"\b(city|location|place|region|address|town|area|state|destination|origin)\b", None),
    ("currency", r"\bcurrency\b|\b(base|quote)\b", r"currency"),
    ("crypto", r"\b(coin|token|crypto)\b", None),
    ("symbol", r"\b(symbol|ticker|stock)\b", None),
    ("lang_code", r"\b(lang|language|locale)\b", r"code|iso|e\.g\. ?'?en|\ben\b"),
    ("language", r"\b(lang|language)\b", None),
    ("sql", r"\bsql\b", r"\bsql\b"),
    ("command", r"\b(command|cmd|shell)\b", None),
    ("code", r"\b(code|script|snippet|source)\b", r"code|script"),
    ("expression", r"\b(expression|formula|equation)\b", None),
    ("selector", r"\b(selector|element|xpath)\b", None),
    ("domain", r"\b(domain|host|hostname|server)\b", None),
    ("network", r"\b(network|chain|blockchain)\b", None),
    ("smiles", r"\bsmiles\b", None),
    ("secret", r"\b(password|passphrase|secret|api key|key|token)\b", None),
    ("version", r"\bversion\b", None),
    ("id", r"\b(id|uuid|identifier|ref|number|cid|pmid|doi)\b", None),
    ("username", r"\b(user|username|owner|author|handle|account|login)\b", None),
    ("repo", r"\b(repo|repository|project|package|library|collection|database|table|index)\b", None),
    ("company", r"\b(company|organization|organisation|brand)\b", None),
    ("title", r"\b(title|name|subject|label|heading)\b", None),
    ("query", r"\b(query|q|search|keyword|keywords|term|terms|topic|question|prompt|word)\b", None),
    ("text", r"\b(text|content|message|body|comment|note|description|input|thought|summary|data)\b", None),
)
NUMBER_KINDS = (
    ("latitude", r"\b(lat|latitude)\b"),
    ("longitude", r"\b(lon|lng|long|longitude)\b"),
    ("percent", r"\b(percent|percentage|pct)\b"),
    ("page", r"\bpage\b(?! size)"),
    ("count", r"\b(limit|max|count|num|top|size|results|per page|k|n|amount of)\b"),
    ("year", r"\byear\b"),
    ("days", r"\bdays?\b"),
    ("hours", r"\bhours?\b"),
    ("minutes", r"\bminutes?\b"),  # not "min": min_word_length, minVisiblePercentage
    ("seconds", r"\b(seconds?|timeout|secs?|delay|wait)\b"),
    ("port", r"\bport\b"),
    ("pixels", r"\b(width|height|x|y)\b"),
    ("amount", r"\b(amount|price|value|quantity|qty|total|balance)\b"),
)


def classify(name: str, spec: dict, jtype: str) -> str:
    w, desc = words(name), str(spec.get("description", "")).lower()
    if spec.get("enum"):
        return "choice"
    if jtype == "boolean":
        return "flag"
    if jtype in ("integer", "number"):
        return next((k for k, pattern in NUMBER_KINDS if re.search(pattern, w)), "number")
    if re.search(r"\byear\b", w):  # a year as a string ("2024"), not a word
        return "year"
    if spec.get("format") in ("uri", "url"):
        return "url"
    if spec.get("format") == "date":
        return "date"
    for kind, pattern, desc_pattern in STRING_KINDS:  # a description pattern must match the description or name
        if re.search(pattern, w) and (desc_pattern is None or re.search(desc_pattern, f"{desc} {w}")):
            return kind
    if re.search(r"yyyy-mm-dd|\bdate\b", desc):
        return "date"
    return "word"


def params_of(tool: Tool) -> tuple[Param, ...] | None:
    """The tool's parameters, or None when a required one cannot be stated in a question."""
    props = tool.schema.get("properties") or {}
    required = set(tool.schema.get("required") or ())
    out = []
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        jtype = json_type(spec)
        item_type = json_type(spec["items"]) if jtype == "array" and isinstance(spec.get("items"), dict) else None
        speakable = jtype in SPEAKABLE_TYPES and (jtype != "array" or item_type in ("string", "integer", "number"))
        items = spec.get("items") if jtype == "array" and isinstance(spec.get("items"), dict) else {}
        enum = tuple(spec.get("enum") or items.get("enum") or ())
        if enum and not all(isinstance(e, str) and e for e in enum):
            speakable = False
        if not speakable:
            if name in required:
                return None
            continue
        kind_spec = {**spec, **items}
        kind = classify(name.rstrip("s") if jtype == "array" else name, kind_spec, item_type or jtype)
        out.append(Param(name, kind, jtype if jtype != "array" else f"array:{item_type}", words(name),
                         name in required, enum))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------------
# Values. A pool per kind; numbers are drawn in a range per kind.
POOLS = {
    "url": ["https://www.bbc.com/news/technology", "https://en.wikipedia.org/wiki/Photosynthesis",
            "https://github.com/pallets/flask", "https://news.ycombinator.com", "https://www.nature.com/articles/s41586-023-06291-2",
            "https://docs.python.org/3/library/asyncio.html", "https://example.com/pricing", "https://arxiv.org/abs/1706.03762",
            "https://www.theverge.com/tech", "https://store.steampowered.com/app/1145360", "https://openweathermap.org",
            "https://www.allrecipes.com/recipe/21014/good-old-fashioned-pancakes/", "https://blog.rust-lang.org"],
    "email": ["maria.lopez@example.com", "j.chen@acme.io", "team@startup.dev", "sam.okafor@example.org",
              "support@bookshop.co.uk", "lea.martin@example.fr"],
    "path": ["/home/alex/notes/todo.md", "src/main.py", "./data/sales_2024.csv", "docs/README.md", "/var/log/nginx/error.log",
             "reports/q3-summary.pdf", "config/settings.yaml", "~/Downloads/invoice_0423.pdf", "app/components/Header.tsx",
             "tests/test_api.py", "/tmp/export.json", "images/logo.png"],
    "city": ["Lyon", "Tokyo", "Nairobi", "São Paulo", "Berlin", "Sydney", "Toronto", "Mumbai", "Reykjavik", "Austin",
             "Cape Town", "Seoul", "Lisbon", "Denver", "Edinburgh", "Buenos Aires", "Vancouver", "Istanbul", "Kyoto",
             "Melbourne", "Chicago", "Marrakech", "Oslo", "Hanoi", "Dublin"],
    "origin": ["SFO", "JFK", "LHR", "CDG", "Boston", "Madrid", "Singapore", "FRA"],
    "destination": ["NRT", "LAX", "Barcelona", "Rome", "DXB", "Amsterdam", "Bangkok", "YVR"],
    "country": ["Japan", "Germany", "Brazil", "Kenya", "Canada", "India", "France", "Mexico", "Australia", "Norway",
                "US", "GB", "DE", "JP", "FR", "IN"],
    "currency": ["USD", "EUR", "JPY", "GBP", "CHF", "CAD", "AUD", "INR"],
    "crypto": ["bitcoin", "ethereum", "solana", "BTC", "ETH", "cardano", "dogecoin", "USDC"],
    "symbol": ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "META", "JPM", "KO", "SAP", "ASML", "BABA"],
    "lang_code": ["en", "fr", "de", "es", "ja", "pt", "it", "zh"],
    "language": ["English", "French", "Spanish", "German", "Japanese", "python", "typescript", "rust"],
    "sql": ["SELECT name, total FROM orders WHERE total > 100 ORDER BY total DESC LIMIT 10",
            "SELECT COUNT(*) FROM users WHERE created_at >= '2025-01-01'", "SHOW TABLES",
            "SELECT product_id, SUM(quantity) FROM sales GROUP BY product_id"],
    "command": ["ls -la /var/log", "git status", "df -h", "python --version", "npm run build", "uptime"],
    "code": ["print(sum(range(1, 101)))", "import math\nprint(math.sqrt(2))", "console.log([1, 2, 3].map(x => x * 2))",
             "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nprint(fib(10))"],
    "expression": ["(17 * 23) + 4", "2^10 - 1", "sqrt(144) * 3", "15% of 240", "sin(pi/6)", "(3.5 + 4.25) / 2"],
    "selector": ["#login-button", ".search-input", "button[type='submit']", "#main-nav a", "input[name='email']", ".cookie-accept"],
    "domain": ["example.org", "api.github.com", "openai.com", "wikipedia.org", "localhost", "shop.example.com"],
    "network": ["ethereum", "polygon", "arbitrum", "base", "solana", "bsc"],
    "smiles": ["CC(=O)OC1=CC=CC=C1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "C1=CC=CC=C1", "CCO"],
    "version": ["1.4.2", "2.0.0", "3.11", "18.2.0", "0.9.1"],
    "username": ["octocat", "jdoe42", "maria_dev", "torvalds", "sindresorhus", "alex.kim", "nasa"],
    "repo": ["weather-app", "transformers", "react", "inventory", "customers", "analytics", "flask", "my-blog"],
    "company": ["Nvidia", "Airbus", "Spotify", "Patagonia", "Siemens", "Shopify", "Toyota", "Novartis"],
    "title": ["Quarterly planning", "Team offsite agenda", "Bug: login fails on Safari", "Photosynthesis",
              "The Great Gatsby", "Weekly grocery list", "Inception", "Project Aurora", "Dentist appointment",
              "Release notes v2.3", "Marie Curie", "Bohemian Rhapsody"],
    "query": ["climate change adaptation", "best hiking trails near Denver", "graph neural networks", "ibuprofen side effects",
              "rust async runtime", "electric vehicle battery recycling", "remote work productivity", "sourdough starter",
              "quantum error correction", "Mediterranean diet", "open source LLM benchmarks", "solar panel efficiency",
              "CRISPR gene therapy", "Champions League final", "inflation outlook 2025", "retro game speedruns",
              "coral reef bleaching", "Kubernetes autoscaling", "Japanese woodworking joints", "sleep and memory"],
    "text": ["Hi team, the launch moves to Thursday at 10am.", "Remember to water the plants on Friday.",
             "The quick brown fox jumps over the lazy dog.", "Our Q3 revenue grew 12% year over year.",
             "Can we reschedule our call to next week?", "Thanks for your order! It ships tomorrow.",
             "Meeting notes: budget approved, hiring two engineers.", "Where is the nearest train station?"],
    "word": ["summary", "daily", "blue", "premium", "draft", "archive", "beginner", "overview", "north", "latest"],
    "conditions": ["clear sky", "light rain", "overcast", "scattered clouds", "thunderstorm", "snow showers"],
    "status": ["ok", "active", "completed", "pending", "open", "closed"],
}
NUMBER_RANGES = {
    "count": (3, 25), "page": (1, 6), "year": (2012, 2025), "days": (2, 14), "hours": (1, 48), "minutes": (5, 90),
    "seconds": (5, 120), "port": (3000, 9000), "pixels": (320, 1920), "amount": (5, 2500), "number": (1, 500),
    "percent": (5, 95),
}
LAT_LON = {"Lyon": (45.76, 4.84), "Tokyo": (35.68, 139.69), "Nairobi": (-1.29, 36.82), "Toronto": (43.65, -79.38),
           "Sydney": (-33.87, 151.21), "Reykjavik": (64.15, -21.94), "Denver": (39.74, -104.99)}


def spoken_date(iso: str) -> str:
    y, m, d = iso.split("-")
    return f"{MONTHS[int(m) - 1]} {int(d)}, {y}"


def draw_value(rng: random.Random, p: Param):
    kind, jtype = p.kind, p.type
    if jtype.startswith("array:"):
        item = Param(p.name, kind, jtype[6:], p.words, True, p.enum)
        values = []
        for _ in range(rng.randint(2, 3)):
            v = draw_value(rng, item)
            if v not in values:
                values.append(v)
        return values
    if kind == "choice":
        return rng.choice(p.enum)
    if kind == "flag":
        return rng.random() < 0.6
    if kind in ("latitude", "longitude"):
        lat, lon = rng.choice(list(LAT_LON.values()))
        return lat if kind == "latitude" else lon
    if jtype in ("integer", "number"):
        low, high = NUMBER_RANGES.get(kind, NUMBER_RANGES["number"])
        if jtype == "number" and kind in ("amount", "number") and rng.random() < 0.4:
            return round(rng.uniform(low, high), 2)
        return rng.randint(low, high)
    if kind in ("date", "start_date", "end_date"):
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == "time":
        minute = rng.choice(["00", "15", "30", "45"])
        return f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 20):02d}:{minute}:00"
    if kind == "id":
        return rng.choice([str(rng.randint(1000, 999999)), f"{rng.choice('abcdefghkmnpqrstuvwxyz')}"
                           f"{rng.randint(100, 99999)}", f"{rng.getrandbits(32):08x}"])
    if kind == "year":
        return str(rng.randint(*NUMBER_RANGES["year"]))
    if kind == "wallet":
        return f"0x{rng.getrandbits(160):040x}"
    if kind == "secret":
        return f"sk-{rng.getrandbits(64):016x}"
    return rng.choice(POOLS.get(kind, POOLS["word"]))


# Phrasings per kind: {v} is the value as stated, {w} the parameter's name as words.
PHRASES = {
    "url": ["from {v}", "using the page at {v}", "for {v}", "on this page: {v}"],
    "email": ["to {v}", "for {v}", "with the address {v}"],
    "wallet": ["for the address {v}", "for wallet {v}", "using {v}"],
    "path": ["in {v}", "for the file {v}", "at {v}", "using {v}"],
    "date": ["on {v}", "for {v}", "dated {v}"],
    "start_date": ["from {v}", "starting {v}", "since {v}"],
    "end_date": ["to {v}", "until {v}", "through {v}"],
    "time": ["at {v}", "for {v}", "starting at {v}"],
    "city": ["in {v}", "for {v}", "around {v}", "near {v}"],
    "origin": ["from {v}", "leaving {v}", "departing from {v}"],
    "destination": ["to {v}", "arriving in {v}", "heading to {v}"],
    "country": ["in {v}", "for {v}", "covering {v}"],
    "currency": ["in {v}", "using {v}", "with {v} as the {w}"],
    "crypto": ["for {v}", "on {v}", "about {v}"],
    "symbol": ["for {v}", "on {v}", "for the {v} ticker", "about {v}"],
    "lang_code": ["in language {v}", "with the language set to {v}", "using locale {v}"],
    "language": ["in {v}", "for {v}", "with {v} as the {w}"],
    "sql": ["by running {v}", "with this query: {v}", "using {v}"],
    "command": ["by running `{v}`", "with the command {v}", "using `{v}`"],
    "code": ["for this code:\n{v}\n", "with this snippet:\n{v}\n", "running\n{v}\n"],
    "expression": ["for {v}", "of {v}", "to work out {v}"],
    "selector": ["on the element {v}", "using the selector {v}", "targeting {v}"],
    "domain": ["for {v}", "on {v}", "against {v}"],
    "network": ["on {v}", "on the {v} network", "using {v}"],
    "smiles": ["for the molecule {v}", "with SMILES {v}", "for {v}"],
    "secret": ["with my {w} {v}", "using {w} {v}", "(my {w} is {v})"],
    "version": ["for version {v}", "at {v}", "on release {v}"],
    "id": ["for {w} {v}", "with {w} {v}", "using {v} as the {w}", "for #{v}"],
    "username": ["for {v}", "for the user {v}", "by {v}", "owned by {v}"],
    "repo": ["in {v}", "for {v}", "from {v}"],
    "company": ["for {v}", "about {v}", "on {v}"],
    "title": ["titled \"{v}\"", "called \"{v}\"", "named {v}", "for \"{v}\""],
    "query": ["about {v}", "on {v}", "for \"{v}\"", "related to {v}", "covering {v}"],
    "text": ["with the text \"{v}\"", "saying \"{v}\"", "with this content: \"{v}\"", "for: \"{v}\""],
    "word": ["with {w} {v}", "using {v} for the {w}", "({w}: {v})", "where the {w} is {v}"],
    "choice": ["with {w} set to {v}", "using {v} for the {w}", "in {v} mode", "({w}: {v})", "with {v} as the {w}"],
    "latitude": ["at latitude {v}", "with latitude {v}"],
    "longitude": ["and longitude {v}", "longitude {v}"],
    "page": ["page {v}", "on page {v}", "showing page {v} of the results"],
    "count": ["top {v}", "just {v} of them", "at most {v}", "limited to {v}", "{v} results"],
    "year": ["in {v}", "for {v}", "from the year {v}"],
    "days": ["over {v} days", "for the next {v} days", "covering {v} days"],
    "hours": ["over {v} hours", "for {v} hours", "within {v} hours"],
    "minutes": ["for {v} minutes", "lasting {v} minutes", "{v} minutes long"],
    "seconds": ["with a {v}-second limit", "waiting {v} seconds", "{v} seconds"],
    "port": ["on port {v}", "at port {v}"],
    "pixels": ["with a {w} of {v}", "{w} {v}px", "{v} pixels for the {w}"],
    "amount": ["for {v}", "of {v}", "with an amount of {v}", "worth {v}"],
    "number": ["with {w} {v}", "using {v} as the {w}", "where the {w} is {v}", "({w}: {v})"],
}
FLAG_ON = ["with {w} on", "and yes to {w}", "with {w} enabled", "and please include {w}"]
FLAG_OFF = ["without {w}", "with {w} turned off", "and skip {w}", "no {w}, please"]


# Phrasings that say which parameter a value fills: used when a phrasing of its kind would not (two values of one
# kind in a request, "for Lyon, in Edinburgh", leave the reader to guess), and for a share of the rest.
NAMED = ["with {w} {v}", "where the {w} is {v}", "({w}: {v})", "using {v} as the {w}", "with the {w} set to {v}"]
NAMED_SHARE = 0.3


def state(rng: random.Random, p: Param, value, named: bool = False) -> str:
    """One phrase of the question that states `value` for `p` (`named`: one that also says `p`'s name)."""
    if p.kind == "flag":
        return rng.choice(FLAG_ON if value else FLAG_OFF).format(w=p.words)
    if isinstance(value, list):
        said = [spoken(rng, p.kind, v) for v in value]
        return f"for {', '.join(said[:-1])} and {said[-1]}" if rng.random() < 0.5 and not named else \
            f"({p.words}: {', '.join(said)})"
    phrases = PHRASES.get(p.kind, PHRASES["word"])
    if named:
        phrases = [f for f in phrases if "{w}" in f] or NAMED
    return rng.choice(phrases).format(v=spoken(rng, p.kind, value), w=p.words)


def spoken(rng: random.Random, kind: str, value) -> str:
    if kind in ("date", "start_date", "end_date") and rng.random() < 0.4:
        return spoken_date(value)
    return str(value)


def draw_arguments(rng: random.Random, params: tuple[Param, ...]) -> dict:
    return {p.name: draw_value(rng, p) for p in params if p.required or rng.random() < OPTIONAL_SHARE}


# ---------------------------------------------------------------------------------------------------------------
# Intents: a tool's description rewritten as a request.
IMPERATIVES = set("""get search list create fetch find retrieve return check calculate read perform send delete convert
navigate select take provide query click update close go save apply run wait capture open use analyze download start
add set generate execute remove move extract resize clear make show look compare translate summarize schedule write
upload lookup record track book verify validate explore scrape crawl compute estimate detect parse render build plan
fill press hover type scroll post publish fix format count evaluate monitor identify lookup explain recommend suggest
discover browse load store insert edit modify draw play stop cancel rate enable disable subtract multiply divide
protect guide reset restart install register sign log join merge sort filter rename copy replace split combine tag
assign approve invite share sync test train predict classify transcribe speak listen watch mark pin archive restore
connect disconnect import export list""".split())
NOT_VERBS = {"this", "is", "has", "was", "its", "as", "us", "news", "status", "analysis", "series", "always"}
SCENARIOS = {
    "Weather": ["I'm planning a hike this weekend.", "We're flying out soon and I want to pack right.",
                "I run an outdoor café and need to plan staffing."],
    "Financial Services": ["I'm rebalancing my portfolio.", "I'm writing a short market note for my team."],
    "Cryptocurrency & Blockchain": ["I've been watching the crypto markets.", "I'm auditing some on-chain activity."],
    "Development Tools": ["I'm debugging a release that went wrong.", "I'm setting up a new project."],
    "Web Search & Research": ["I'm researching a report for school.", "I'm preparing a talk next week."],
    "Travel & Maps": ["I'm organising a trip with friends.", "I'm trying to plan my commute."],
    "Browser Automation": ["I'm testing our signup flow.", "I need to automate a boring web task."],
    "Database Operations": ["I'm putting together numbers for a review.", "Our dashboard looks off."],
    "Gaming": ["My friends and I are picking a game for tonight.", "I'm trying to get better at this game."],
    "Education": ["I'm studying for an exam.", "I'm helping my kid with homework."],
    "Health & Fitness": ["I'm trying to eat healthier.", "I'm tracking my training."],
    "": ["Quick question.", "I'm in a bit of a rush.", "Hope you can help.", "Here's what I'm after.",
         "Something came up at work.", "I've been meaning to ask."],
}
FRAMES = ["Could you {c}?", "Can you {c}?", "I need to {c}.", "Please {c}.", "I'd like you to {c}.",
          "Would you {c} for me?", "Hey, could you {c}? Thanks!", "Is it possible to {c}?", "Help me {c}, please.",
          "I was wondering if you could {c}.", "Let's {c}.", "Quick one: can you {c}?", "I want to {c}.",
          "Any chance you could {c}?"]
# How a request joins its parts says how they are called: parts asked for together ("also", "as well") are
# independent and called at once, in one turn (parallel calls); parts asked for in order ("then", "once that's
# done") are called one after the other, each after the last one's response. A model can read which from the words.
THEN_PARALLEL = [" Also, please {c}.", " And {c} as well."]
THEN_SEQUENTIAL = [" Then {c}.", " After that, {c}.", " Once that's done, {c}."]
PARALLEL_SHARE = 0.4  # of requests for several tools
NON_VERB_LEADS = ["get me", "pull up", "look into", "find"]


def _third_to_base(word: str) -> str:
    w = word.lower()
    if w in NOT_VERBS or not w.endswith("s") or w.endswith("ss"):
        return w
    if w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "sses", "xes", "zes")):
        return w[:-2]
    return w[:-1]


def intent(rng: random.Random, tool: Tool) -> str:
    """What the user wants from `tool`, without naming it: the first clause of its description as a request (or,
    for a tool with no usable English description, its name read as words)."""
    phrase, is_verb = described_action(tool)
    return phrase if is_verb else f"{rng.choice(NON_VERB_LEADS)} {phrase}"


@functools.lru_cache(maxsize=None)
def described_action(tool: Tool) -> tuple[str, bool]:
    """The description's first clause, starting with a verb in its base form when it has one (and whether it does)."""
    text = re.split(r"(?<=[.!?])\s|\n", tool.description.strip(), maxsplit=1)[0]
    text = re.sub(r"^(this|a|the)?\s*(mcp )?(tool|function|endpoint)\s+(to|that|which|for)?\s*"
                  r"|^use (this )?(tool )?to\s+", "", text, flags=re.I)
    text = re.split(r"\s[-–—(]\s?|[:;]|,\s(?:and |which |including )", text)[0].strip().rstrip(".!")
    if len(text.split()) < 2 or sum(c.isascii() for c in text) < 0.9 * len(text):
        text = words(tool.short)
    text = " ".join(text.split()[:16])
    first, _, rest = text.partition(" ")
    base = _third_to_base(first)
    is_verb = base in IMPERATIVES or base != first.lower()  # "Subtracts the ..." reads as a verb too
    phrase = f"{base if is_verb else first if first[1:2].isupper() else first.lower()} {rest}".strip()
    plain_word = tool.short.isalpha() and tool.short.islower()  # "click" may appear; "get_weather" never
    for identifier in (tool.name,) if plain_word else (tool.name, tool.short):
        phrase = phrase.replace(identifier, "it")
    return phrase, is_verb


def clause(rng: random.Random, tool: Tool, params: tuple[Param, ...], args: dict) -> tuple[str, dict]:
    """The request for `tool` with `args`, and `args` in the order the request states them: the order its call
    writes them, so that a model reads the values off the request left to right instead of looking each one up."""
    stated = [p for p in params if p.name in args]
    kinds = Counter(p.kind for p in stated)
    said = [(p.name, state(rng, p, args[p.name], named=kinds[p.kind] > 1 or rng.random() < NAMED_SHARE))
            for p in stated]
    rng.shuffle(said)
    in_order = {name: args[name] for name, _ in said} | args  # (args the params cannot state stay, at the end)
    if not said:
        return intent(rng, tool), in_order
    phrases = [phrase for _, phrase in said]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{intent(rng, tool)} {listed}", in_order


def question(rng: random.Random, tool_clauses: list[str], label: str, parallel: bool | None = None) -> str:
    """A request for the clauses, joined as parallel or sequential parts (None: either, for a request no tool
    serves)."""
    joins = THEN_PARALLEL if parallel else THEN_SEQUENTIAL if parallel is False else THEN_PARALLEL + THEN_SEQUENTIAL
    text = rng.choice(FRAMES).format(c=tool_clauses[0])
    for c in tool_clauses[1:]:
        text += rng.choice(joins).format(c=c)
    if rng.random() < 0.35:
        text = f"{rng.choice(SCENARIOS.get(label, SCENARIOS['']) + SCENARIOS[''])} {text}"
    return text


# ---------------------------------------------------------------------------------------------------------------
# Tool responses and what the assistant says around them.
LABEL_FIELDS = {
    "Weather": [("temperature_c", "number"), ("humidity", "count"), ("conditions", "conditions"),
                ("wind_kph", "number"), ("date", "date"), ("location", "city")],
    "Financial Services": [("symbol", "symbol"), ("price", "amount"), ("change_percent", "number"), ("volume", "count"),
                           ("currency", "currency"), ("as_of", "date")],
    "Cryptocurrency & Blockchain": [("asset", "crypto"), ("price_usd", "amount"), ("market_cap", "amount"),
                                    ("network", "network"), ("address", "wallet"), ("updated", "date")],
    "Web Search & Research": [("title", "title"), ("url", "url"), ("snippet", "text"), ("published", "date"),
                              ("source", "domain")],
    "Development Tools": [("name", "repo"), ("path", "path"), ("status", "status"), ("updated_at", "date"),
                          ("message", "text"), ("author", "username")],
    "Travel & Maps": [("name", "title"), ("city", "city"), ("distance_km", "number"), ("duration_min", "minutes"),
                      ("rating", "number")],
}
GENERIC_FIELDS = [("id", "id"), ("name", "title"), ("description", "text"), ("url", "url"), ("created_at", "date"),
                  ("score", "number"), ("status", "status"), ("category", "word")]
ERRORS = ["Error: rate limit exceeded, retry after {n} seconds", "HTTP error: {code}", "Request timed out after {n}s",
          "Not found: no results for the given parameters", "Invalid parameter: {p}",
          "Service temporarily unavailable ({code})"]


def _field_value(rng: random.Random, kind: str):
    if kind == "text":  # real results carry paragraphs, not one-liners
        return " ".join(rng.sample(POOLS["text"], k=rng.randint(2, 6)))
    if kind in POOLS and kind not in ("query",):
        return rng.choice(POOLS[kind])
    return draw_value(rng, Param(kind, kind, "number" if kind in NUMBER_RANGES else "string", kind, True))


def _record(rng: random.Random, fields: list) -> dict:
    chosen = [fields[0]] + rng.sample(fields[1:], k=rng.randint(2, len(fields) - 1))
    return {name: _field_value(rng, kind) for name, kind in chosen}


@functools.lru_cache(maxsize=None)
def record_pool(label: str) -> tuple[dict, ...]:
    """Result records of a domain, drawn once from a fixed seed: a response samples them, which keeps generating
    long responses cheap."""
    rng = random.Random(f"records:{label}")
    return tuple(_record(rng, LABEL_FIELDS.get(label, GENERIC_FIELDS)) for _ in range(1024))


@dataclass(frozen=True)
class Response:
    content: str
    facts: list  # (field, value) pairs the answer can quote; empty for an error
    error: str = ""


def respond(rng: random.Random, tool: Tool, args: dict) -> Response:
    """A result shaped by the tool's domain: a JSON object or list, plain text lines, or (sometimes) an error."""
    roll = rng.random()
    if roll < 0.07:
        error = rng.choice(ERRORS).format(n=rng.randint(2, 60), code=rng.choice([400, 403, 404, 429, 500, 503]),
                                          p=next(iter(args), "input"))
        content = json.dumps({"error": error}, indent=2) if rng.random() < 0.5 else error
        return Response(content, [], error)
    records = rng.choices(record_pool(tool.label if tool.label in LABEL_FIELDS else ""),
                          k=rng.choice([1, 2, 4, 8, 15, 25, 40, 60, 90]))
    facts = [(k, v) for r in records[:3] for k, v in list(r.items())[:2]]
    if roll < 0.25:
        lines = [f"{i + 1}. " + " | ".join(f"{k}: {v}" for k, v in r.items()) for i, r in enumerate(records)]
        return Response(f"Found {len(records)} result(s).\n" + "\n".join(lines), facts)
    option = orjson.OPT_INDENT_2 if rng.random() < 0.7 else 0  # orjson: json.dumps(indent=2)'s text, ~10x faster
    if len(records) == 1:
        body = {**{k: v for k, v in args.items() if rng.random() < 0.5}, **records[0]}
    elif rng.random() < 0.3:
        body = records
    else:
        body = {"count": len(records), "results": records}
    return Response(orjson.dumps(body, option=option).decode(), facts)


PREAMBLES = ["I'll look that up for you.", "Let me check.", "Sure — one moment while I pull that up.",
             "I'll {i} first.", "Let me {i}.", "Good question; let me find out.", "On it.",
             "I'll start by gathering the data.", "Let me get the details."]
NEXT_STEPS = ["Now I'll {i}.", "Next, let me {i}.", "Got it. Now to {i}.", "That worked; now I'll {i}."]
ANSWERS = ["Here's what I found: {f}.", "Done. The results show {f}.", "According to the data, {f}.",
           "The top result: {f}. Let me know if you want more detail.", "Here you go — {f}.",
           "I checked, and {f}.", "Results are in: {f}. Anything else?"]
ERROR_ANSWERS = ["The request failed ({e}). You could try again in a moment or adjust the request.",
                 "Unfortunately I couldn't get a result: {e}.", "I ran into a problem — {e}. Want me to retry?"]


def preamble(rng: random.Random, text: str) -> str:
    return rng.choice(PREAMBLES).format(i=text)


def next_step(rng: random.Random, text: str) -> str:
    return rng.choice(NEXT_STEPS).format(i=text)


def answer(rng: random.Random, responses: list[Response]) -> str:
    parts = []
    for r in responses:
        if r.error:
            parts.append(rng.choice(ERROR_ANSWERS).format(e=r.error))
        else:
            facts = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in r.facts[: rng.randint(2, 6)])
            parts.append(rng.choice(ANSWERS).format(f=facts))
    return " ".join(parts)


REFUSALS = ["I'm sorry, but I can't {a} with the tools I have here — they only cover {o}.",
            "Unfortunately none of my available tools can {a}. What I can do is {i}, if that helps.",
            "That's outside what these tools support: they're built for {o}. For this you'd want a dedicated service.",
            "I don't have a tool for that. The ones available here can {i}, but not {a}.",
            "I wish I could help directly, but I can't {a} right now. I could {i} instead, if you like.",
            "None of the tools I can use here handle that — they're for {o}. You may want to try another app."]


def refusal(rng: random.Random, asked: str, offered_label: str, offered_intent: str) -> str:
    return rng.choice(REFUSALS).format(a=asked, o=offered_label.lower(), i=offered_intent)
