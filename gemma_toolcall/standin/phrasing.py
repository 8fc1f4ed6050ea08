"""What the stand-in says: argument values for real MCP parameters, the questions that state them, tool responses
and answers. Used by `standin.sft` (and `standin.raw`).

A parameter's *kind* (a city, a date, a ticker, a count...) is read from its name, JSON type, enum, format and
description. Each kind has a pool of values and several phrasings; every phrasing holds the value verbatim (a date
may instead be written out, "March 4, 2025": `spoken_date`), so a call carries exactly the values its question states.
Questions never name the tool: the intent comes from the tool's description, rewritten as a request, or (a share of
requests, `paraphrase`) reworded so that it shares few words with the description.

Values of realistic shape (`Shaped`, for the rows `standin.sft` plans for them): multi-part values stated verbatim
("Austin, TX", a full address, "Dr. Amara Okafor", a comma-joined list where the schema takes one string), and values
the question states in another form than the schema asks for, where the parameter's description (or type, or enum)
says which form: "Berkeley, California" for a "City, ST" parameter, "March 4, 2025" or "tomorrow" (with today's date
in the question) for YYYY-MM-DD, "French" for a language code, "2 hours" for minutes, "thirty seconds" for
milliseconds. Nested object parameters and arrays of objects are stated field by field.
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
    type: str  # string | integer | number | boolean | array:<item type> | object | array:object
    words: str  # the name as words: maxResults -> "max results"
    required: bool
    enum: tuple = ()
    description: str = ""  # the schema's description of the parameter
    fields: tuple = ()  # an object's (or an array of objects' item's) parameters


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


def params_of(tool: Tool, nested: bool = False) -> tuple[Param, ...] | None:
    """The tool's parameters, or None when a required one cannot be stated in a question. `nested`: object parameters
    (and arrays of objects) whose fields can be stated count too, two levels deep."""
    return _params(tool.schema, nested, 0)


def _params(schema: dict, nested: bool, depth: int) -> tuple[Param, ...] | None:
    props = schema.get("properties") if isinstance(schema, dict) else None
    props = props if isinstance(props, dict) else {}
    required = schema.get("required") if isinstance(schema, dict) else None
    required = set(required) if isinstance(required, list) and all(isinstance(r, str) for r in required) else set()
    out = []
    for name, spec in props.items():
        p = _param(name, spec if isinstance(spec, dict) else {}, name in required, nested, depth)
        if p is None:
            if name in required:
                return None
            continue
        out.append(p)
    return tuple(out)


def _param(name: str, spec: dict, required: bool, nested: bool, depth: int) -> Param | None:
    jtype = json_type(spec)
    items = spec.get("items") if jtype == "array" and isinstance(spec.get("items"), dict) else {}
    item_type = json_type(items) if items else None
    description = spec.get("description") if isinstance(spec.get("description"), str) else ""
    if nested and depth < 2 and (jtype == "object" or item_type == "object"):
        fields = _params(spec if jtype == "object" else items, nested, depth + 1)
        if not fields:
            return None
        return Param(name, "object", "object" if jtype == "object" else "array:object", words(name), required, (),
                     description, fields)
    speakable = jtype in SPEAKABLE_TYPES and (jtype != "array" or item_type in ("string", "integer", "number"))
    enum = tuple(spec.get("enum") or items.get("enum") or ())
    if enum and not all(isinstance(e, str) and e for e in enum):
        speakable = False
    if not speakable:
        return None
    kind_spec = {**spec, **items}
    kind = classify(name.rstrip("s") if jtype == "array" else name, kind_spec, item_type or jtype)
    return Param(name, kind, jtype if jtype != "array" else f"array:{item_type}", words(name), required, enum,
                 description)


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
    if jtype == "object":
        return draw_object(rng, p.fields)
    if jtype == "array:object":
        return [draw_object(rng, p.fields) for _ in range(rng.randint(1, 3))]
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
    if kind == "country":  # a code where the description asks for one, else a name
        code = re.search(r"\bcode\b|\biso\b|alpha-?2|two-letter|2-letter", p.description.lower()) is not None
        return rng.choice([c for c in POOLS["country"] if (len(c) == 2) == code])
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
    if p.fields:
        return state_object(rng, p, value)
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


def draw_object(rng: random.Random, fields: tuple[Param, ...]) -> dict:
    """An object parameter's value: its required fields and up to two optional ones (at least one field)."""
    optional = [f for f in fields if not f.required]
    chosen = set(rng.sample(optional, k=min(len(optional), rng.randint(0, 2))))
    obj = {f.name: draw_value(rng, f) for f in fields if f.required or f in chosen}
    if not obj:
        f = rng.choice(fields)
        obj[f.name] = draw_value(rng, f)
    return obj


ORDINALS = ("first", "second", "third", "fourth")


def state_object(rng: random.Random, p: Param, value) -> str:
    """An object (or array of objects) stated field by field, each field by its name: "with the stroke color set to
    r 0.2, g 0.5 and b 1"; an array item by item: "with 2 entries for the observations: first, ...; second, ..."."""
    def fields_text(obj: dict) -> str:
        parts = []
        for f in p.fields:
            if f.name not in obj:
                continue
            v = obj[f.name]
            if f.fields:
                parts.append(state_object(rng, f, v))
            elif isinstance(v, bool):
                parts.append(f"{f.words} {'yes' if v else 'no'}")
            elif isinstance(v, list):
                parts.append(f"{f.words} {join_and([str(x) for x in v])}")
            else:
                parts.append(f"{f.words} {v}")
        return join_and(parts, ";" if any("," in x for x in parts) else ",")

    if p.type == "object":
        return rng.choice(["with the {w} set to {x}", "where the {w} has {x}", "({w}: {x})"]).format(
            w=p.words, x=fields_text(value))
    items = [fields_text(o) for o in value]
    if len(items) == 1:
        return f"with one entry for the {p.words}: {items[0]}"
    return f"with {len(items)} entries for the {p.words}: " + "; ".join(
        f"{ORDINALS[i]}, {x}" for i, x in enumerate(items))


def join_and(parts: list[str], sep: str = ",") -> str:
    """"a", "a and b", "a, b and c" (parts that hold commas are joined by semicolons: "Austin, TX; Reno, NV and
    ...")."""
    if len(parts) <= 1:
        return "".join(parts)
    if sep == "," and any("," in x for x in parts):
        sep = ";"
    return f"{sep} ".join(parts[:-1]) + " and " + parts[-1]


# ---------------------------------------------------------------------------------------------------------------
# Values of realistic shape (module docstring). `Shaped` is one value and how a request states it.
@dataclass(frozen=True)
class Shaped:
    value: object  # what the call writes
    phrase: str  # the request's phrase that states it
    context: str = ""  # a sentence the request needs to derive it (today's date, for a relative date)
    note: str = ""  # a format note appended to the parameter's description (the catalogue's does not state it)


US_STATES = {"California": "CA", "Texas": "TX", "Oregon": "OR", "Colorado": "CO", "Massachusetts": "MA",
             "Illinois": "IL", "Washington": "WA", "New York": "NY", "Florida": "FL", "Georgia": "GA", "Arizona": "AZ",
             "Pennsylvania": "PA", "Michigan": "MI", "Minnesota": "MN", "Tennessee": "TN", "North Carolina": "NC",
             "Ohio": "OH", "Utah": "UT", "Louisiana": "LA", "Nevada": "NV"}
US_CITIES = (("Berkeley", "California"), ("Austin", "Texas"), ("Portland", "Oregon"), ("Boulder", "Colorado"),
             ("Cambridge", "Massachusetts"), ("Evanston", "Illinois"), ("Seattle", "Washington"),
             ("Buffalo", "New York"), ("Miami", "Florida"), ("Savannah", "Georgia"), ("Tucson", "Arizona"),
             ("Pittsburgh", "Pennsylvania"), ("Ann Arbor", "Michigan"), ("Duluth", "Minnesota"),
             ("Nashville", "Tennessee"), ("Asheville", "North Carolina"), ("Columbus", "Ohio"), ("Moab", "Utah"),
             ("New Orleans", "Louisiana"), ("Reno", "Nevada"))
COUNTRIES = {"Japan": "JP", "Germany": "DE", "Brazil": "BR", "Kenya": "KE", "Canada": "CA", "India": "IN",
             "France": "FR", "Mexico": "MX", "Australia": "AU", "Norway": "NO", "Italy": "IT", "Spain": "ES",
             "the United States": "US", "the United Kingdom": "GB", "South Korea": "KR", "the Netherlands": "NL",
             "Sweden": "SE", "Portugal": "PT"}
LANGUAGES = {"English": "en", "French": "fr", "German": "de", "Spanish": "es", "Japanese": "ja", "Portuguese": "pt",
             "Italian": "it", "Chinese": "zh", "Korean": "ko", "Dutch": "nl", "Arabic": "ar"}
CURRENCIES = {"US dollars": "USD", "euros": "EUR", "Japanese yen": "JPY", "British pounds": "GBP",
              "Swiss francs": "CHF", "Canadian dollars": "CAD", "Australian dollars": "AUD", "Indian rupees": "INR"}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
                11: "eleven", 12: "twelve", 15: "fifteen", 20: "twenty", 25: "twenty-five", 30: "thirty", 40: "forty",
                50: "fifty"}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Enum values a request names in other words (beside snake_case/camelCase/UPPER values read as words: `words`).
ENUM_WORDS = {"asc": "ascending", "desc": "descending", "ml": "millilitres", "l": "litres", "tbsp": "tablespoons",
              "tsp": "teaspoons", "cup": "cups", "md": "Markdown", "celsius": "°C", "fahrenheit": "°F",
              "metric": "metric units", "imperial": "imperial units"}
# Where the catalogue's description of a parameter does not state the form it wants, the stand-in appends one of these.
FORMAT_NOTES = {"date": "Format: YYYY-MM-DD.", "city_state": 'Format: "City, ST" (a US city and its two-letter state '
                'code, e.g. "Austin, TX").'}
ADDRESSES = ("1600 Pennsylvania Avenue NW, Washington, DC 20500", "221B Baker Street, London NW1 6XE",
             "350 Fifth Avenue, New York, NY 10118", "Unter den Linden 77, 10117 Berlin",
             "2 Macquarie Street, Sydney NSW 2000", "85 Pike Street, Seattle, WA 98101",
             "5 Avenue Anatole France, 75007 Paris", "1-1 Marunouchi, Chiyoda City, Tokyo 100-0005",
             "Rua Augusta 24, 1100-053 Lisboa", "400 Broad St, Seattle, WA 98109",
             "12 Grafton Street, Dublin 2, D02 XY88")
CITY_REGIONS = ("Austin, TX", "Portland, OR", "Lyon, France", "Kyoto, Japan", "Cambridge, MA", "Vancouver, BC",
                "Cork, Ireland", "Boulder, CO", "Mendoza, Argentina", "Perth, Western Australia", "Porto, Portugal",
                "Hobart, Tasmania")
PEOPLE = ("Dr. Amara Okafor", "Prof. James O'Neill", "Ms. Sofia García-Ruiz", "Dr. Li Wei, PhD",
          "Mr. Hiroshi Tanaka Jr.", "Capt. Sarah Mitchell", "Rev. Dr. Jane Smith", "Maria Lopez, MD",
          "Prof. Dr. Klaus Becker", "Sir Edmund Hale", "Lt. Col. Ana Pereira", "Mrs. Grace O'Connor-Blake")
MULTI_PART_QUERIES = ("vegan restaurants in Austin, TX", "history of Kyoto, Japan",
                      "coworking spaces in Lisbon, Portugal", "hotels near Union Square, San Francisco",
                      "cheap, quiet laptops for students", "Smith, J. (2021), a survey of graph neural networks",
                      "museums in Paris, open late on Fridays",
                      "rainfall in Mumbai, June to September")
DATE_KINDS = ("date", "start_date", "end_date")
PERSON_WORDS = re.compile(r"\b(author|person|contact|customer|patient|employee|speaker|attendee|artist|actor|director|"
                          r"guest|full name|person name|contact name|assignee|reviewer)\b")
PERSON_DESC = re.compile(r"\b(person|people|author|contact|employee|customer|patient|member|artist|player|actor|"
                         r"individual|someone|full name)\b")
COMMA_LIST = re.compile(r"comma[- ]?separated|separated by commas?|comma[- ]delimited", re.I)


def _desc(p: Param) -> str:
    return " ".join(p.description.split()).lower()


def _scalar(p: Param, *types: str) -> bool:
    return p.type in (types or ("string",)) and not p.enum and not p.fields


def multi_part_forms(p: Param) -> list[str]:
    """The multi-part shapes `p` takes: a "City, Region", a full address, a name with a title, a comma-joined list
    (its description says so), a query with commas."""
    d, out = _desc(p), []
    if not _scalar(p):
        return out
    if COMMA_LIST.search(d):
        return ["comma_list"]
    if re.search(r"\bip\b|\bmac\b|wallet|e-?mail|0x|blockchain|\bhex", f"{p.words} {d}"):
        pass
    elif p.kind == "city" and re.search(r"\baddress\b", p.words) \
            or re.search(r"\b(street|postal|mailing) address\b", d):
        out.append("address")
    elif p.kind == "city" and not re.search(r"coordinat|\blat|\blng|\blon|zip|postal|code|\bid\b|region", d):
        out.append("city_region")
    if PERSON_WORDS.search(p.words) or (p.words in ("name", "names") and PERSON_DESC.search(d)):
        out.append("person")
    if p.kind == "query":
        out.append("query")
    return out


def multi_part(rng: random.Random, p: Param, form: str) -> Shaped:
    if form == "comma_list":
        item = Param(p.name, classify(p.name.rstrip("s"), {"description": p.description}, "string"), "string",
                     p.words, True)
        items: list[str] = []
        for _ in range(30):
            v = str(draw_value(rng, item))
            if v not in items and "," not in v:
                items.append(v)
            if len(items) == rng.choice((2, 3, 3, 4)):
                break
        items = items if len(items) > 1 else ["alpha", "beta"]
        sep = ", " if re.search(r"\w, \w", p.description) and not re.search(r"\w,\w", p.description) else ","
        listed = join_and(items)
        phrase = rng.choice(["for {v}", "with {w} {v}", "covering {v}", "({w}: {v})"]).format(v=listed, w=p.words)
        return Shaped(sep.join(items), phrase)
    value = rng.choice({"address": ADDRESSES, "city_region": CITY_REGIONS, "person": PEOPLE,
                        "query": MULTI_PART_QUERIES}[form])
    phrases = {"address": ["at {v}", "for {v}", "for the address {v}"],
               "city_region": PHRASES["city"], "person": ["for {v}", "by {v}", "with the {w} {v}", "({w}: {v})"],
               "query": ["about {v}", "for \"{v}\"", "on {v}"]}[form]
    return Shaped(value, rng.choice(phrases).format(v=value, w=p.words))


def reformat_forms(p: Param) -> list[tuple[str, int]]:
    """How a request can state `p`'s value in another form than the one the schema asks for, each with a weight:
    forms the catalogue's description states (weight 3), forms the JSON type or enum states (1), and forms the
    stand-in writes into the description itself (1, FORMAT_NOTES)."""
    d, w, out = _desc(p), p.words, []
    if p.kind == "choice" and p.type == "string" and any(ENUM_WORDS.get(e) or words(e) != e for e in p.enum):
        out.append(("enum_words", 1))
    if p.enum or p.fields or p.type.startswith("array"):
        return out
    if p.type == "string":
        if p.kind in DATE_KINDS and re.search(r"yyyymmdd", d):
            out.append(("compact_date", 3))
        elif p.kind in DATE_KINDS and re.search(r"yyyy-mm-dd|iso ?8601|iso date|iso format", d) \
                and not re.search(r"hh|time", d):
            out.append(("date", 3))
        elif p.kind in DATE_KINDS and not re.search(r"\d|yyyy|mm|dd|format|iso|timestamp|unix|epoch|relative|today|"
                                                    r"now|time", d):
            out.append(("date_note", 1))
        if p.kind == "time" and re.search(r"yyyy-mm-dd[ t]hh:mm", d):
            out.append(("datetime", 3))
        elif p.kind == "time" and re.search(r"hh:mm", d) and "yyyy" not in d:
            out.append(("clock", 3))
        if re.search(r"yyyy-mm(?!-)\b", d) and "dd" not in d:
            out.append(("month", 3))
        if re.search(r"\bcountry\b", f"{w} {d}") and re.search(r"\bcode\b|\biso\b|alpha-?2|two-letter|2-letter", d) \
                and "state" not in w:
            out.append(("country_code", 3))
        if p.kind == "lang_code":
            out.append(("language_code", 3))
        if p.kind == "currency" and re.search(r"\bcode\b|\biso\b|\busd\b", d):
            out.append(("currency_code", 3))
        if re.search(r"state code|two-letter state|2-letter state|state abbreviation", d):
            out.append(("state_code", 3))
        if p.kind == "city" and re.search(r"city,\s*state", d):
            out.append(("city_state", 3))
        elif p.kind == "city" and re.search(r"\b(city|location|place|town)\b", w) and not re.search(
                r"coordinat|\blat|\blng|\blon|zip|postal|code|country|region|address|state|\d|format|e\.g|example", d):
            out.append(("city_state_note", 1))
    if p.type in ("integer", "number"):
        if re.search(r"millisecond|\bms\b", d) and not re.search(r"epoch|timestamp|since|unix", f"{w} {d}"):
            out.append(("milliseconds", 3))
        elif p.kind in ("minutes", "days", "hours", "seconds"):
            out.append(("unit", 1))
        elif p.type == "integer" and p.kind in ("count", "page"):
            out.append(("number_words", 1))
    return out


def spoken_clock(hour: int, minute: int) -> str:
    return f"{(hour - 1) % 12 + 1}:{minute:02d} {'am' if hour < 12 else 'pm'}"


def relative_date(rng: random.Random) -> tuple[str, str, str]:
    """(ISO date, the words that name it relative to today, the sentence that says what today is)."""
    import datetime as dt

    today = dt.date(2025, rng.randint(1, 12), rng.randint(1, 28))
    context = f"Today is {WEEKDAYS[today.weekday()]}, {spoken_date(today.isoformat())}."
    choice = rng.randrange(5)
    if choice == 0:
        offset, said = 1, "tomorrow"
    elif choice == 1:
        offset, said = 2, "the day after tomorrow"
    elif choice == 2:
        offset = rng.randint(3, 10)
        said = f"in {offset} days"
    elif choice == 3:
        offset, said = 7, "a week from today"
    else:
        offset = rng.randint(1, 7)
        said = f"this coming {WEEKDAYS[(today.weekday() + offset) % 7]}"
    return (today + dt.timedelta(days=offset)).isoformat(), said, context


def reformat(rng: random.Random, p: Param, form: str) -> Shaped:
    """`p`'s value in the form the schema asks for, and a phrase that states it in another form."""
    w = p.words
    if form in ("date", "date_note", "compact_date"):
        context = ""
        if rng.random() < 0.4:
            iso, said, context = relative_date(rng)
            phrases = {"start_date": ["from {v}", "starting {v}"], "end_date": ["until {v}", "through {v}"]}.get(
                p.kind, ["for {v}", "due {v}"])
        else:
            iso = draw_value(rng, Param(p.name, "date", "string", w, True))
            y, m, d = iso.split("-")
            said = rng.choice([spoken_date(iso), f"{int(d)} {MONTHS[int(m) - 1]} {y}",
                               f"{MONTHS[int(m) - 1]} {int(d)}, {y}"])
            phrases = PHRASES[p.kind]
        value = iso.replace("-", "") if form == "compact_date" else iso
        return Shaped(value, rng.choice(phrases).format(v=said, w=w), context,
                      FORMAT_NOTES["date"] if form == "date_note" else "")
    if form == "datetime":
        iso = draw_value(rng, Param(p.name, "date", "string", w, True))
        hour, minute = rng.randint(7, 20), rng.choice((0, 15, 30, 45))
        sep = "T" if re.search(r"yyyy-mm-ddthh", _desc(p)) else " "
        seconds = ":00" if re.search(r"hh:mm:ss", _desc(p)) else ""
        value = f"{iso}{sep}{hour:02d}:{minute:02d}{seconds}"
        return Shaped(value, rng.choice(["at {v}", "for {v}", "starting at {v}"]).format(
            v=f"{spoken_date(iso)} at {spoken_clock(hour, minute)}"))
    if form == "clock":
        hour, minute = rng.randint(6, 22), rng.choice((0, 10, 15, 30, 45))
        return Shaped(f"{hour:02d}:{minute:02d}", rng.choice(["at {v}", "for {v}", "({w}: {v})"]).format(
            v=spoken_clock(hour, minute), w=w))
    if form == "month":
        year, month = rng.randint(2022, 2025), rng.randint(1, 12)
        return Shaped(f"{year}-{month:02d}", rng.choice(["for {v}", "in {v}", "covering {v}"]).format(
            v=f"{MONTHS[month - 1]} {year}"))
    if form == "country_code":
        name, code = rng.choice(list(COUNTRIES.items()))
        lower = re.search(r"['\"(: ](us|gb|de|fr|jp|it|cn)\b['\")]?", p.description) is not None
        return Shaped(code.lower() if lower else code, rng.choice(PHRASES["country"]).format(v=name, w=w))
    if form == "language_code":
        name, code = rng.choice(list(LANGUAGES.items()))
        return Shaped(code, rng.choice(["in {v}", "with results in {v}", "using {v} as the {w}"]).format(v=name, w=w))
    if form == "currency_code":
        name, code = rng.choice(list(CURRENCIES.items()))
        return Shaped(code, rng.choice(["with the {w} set to {v}", "where the {w} is {v}", "using {v} as the {w}"])
                      .format(v=name, w=w))
    if form == "state_code":
        name, code = rng.choice(list(US_STATES.items()))
        return Shaped(code, rng.choice(["in {v}", "for {v}", "covering {v}"]).format(v=name, w=w))
    if form in ("city_state", "city_state_note"):
        city, state = rng.choice(US_CITIES)
        return Shaped(f"{city}, {US_STATES[state]}", rng.choice(PHRASES["city"]).format(v=f"{city}, {state}", w=w),
                      note=FORMAT_NOTES["city_state"] if form == "city_state_note" else "")
    if form == "milliseconds":
        secs = rng.choice((2, 3, 5, 10, 15, 20, 30, 45, 60, 90))
        said = f"{NUMBER_WORDS[secs] if secs in NUMBER_WORDS and rng.random() < 0.4 else secs} seconds"
        return Shaped(secs * 1000, rng.choice(["with the {w} set to {v}", "({w}: {v})", "using {v} for the {w}"])
                      .format(v=said, w=w))
    if form == "unit":
        value, said, phrases = {
            "minutes": (rng.choice(((60, "1 hour"), (90, "1.5 hours"), (120, "2 hours"), (150, "2.5 hours"),
                                    (180, "3 hours"))) + (["for {v}", "lasting {v}", "({w}: {v})"],)),
            "days": (rng.choice(((7, "1 week"), (14, "2 weeks"), (21, "3 weeks"))) + (
                ["over {v}", "for the next {v}", "covering {v}"],)),
            "hours": (rng.choice(((24, "1 day"), (48, "2 days"), (72, "3 days"))) + (["over {v}", "within {v}"],)),
            "seconds": (rng.choice(((60, "1 minute"), (120, "2 minutes"), (300, "5 minutes"))) + (
                ["({w}: {v})", "with the {w} set to {v}"],)),
        }[p.kind]
        return Shaped(value, rng.choice(phrases).format(v=said, w=w))
    if form == "number_words":
        low, high = NUMBER_RANGES[p.kind]
        value = rng.choice([n for n in NUMBER_WORDS if low <= n <= high] or [low])
        return Shaped(value, rng.choice(PHRASES[p.kind]).format(v=NUMBER_WORDS.get(value, value), w=w))
    if form == "enum_words":
        value = rng.choice([e for e in p.enum if ENUM_WORDS.get(e) or words(e) != e])
        said = ENUM_WORDS.get(value) or words(value)
        return Shaped(value, rng.choice(["with {w} set to {v}", "in {v} mode", "({w}: {v})", "using {v} for the {w}"])
                      .format(v=said, w=w))
    raise ValueError(form)


# ---------------------------------------------------------------------------------------------------------------
# One tool called for several values of one or two parameters ("... for Paris, Lyon and Nice"; "... 20 and 15
# minutes respectively"), and the contrast: an array parameter, one call with the list. Both read the same.
FAN_OUT_KINDS = ("city", "country", "symbol", "crypto", "currency", "date", "query", "username", "repo", "company",
                 "title", "url", "id", "lang_code", "language", "domain", "network", "origin", "destination", "email",
                 "path", "minutes", "days", "hours", "amount", "year", "wallet", "smiles", "version")
LIST_PHRASES = ["for {v}", "for each of {v}", "({w}: {v})", "with the {w} {v}"]


def fans_out(p: Param) -> bool:
    return p.kind in FAN_OUT_KINDS and not p.enum and not p.fields


def draw_distinct(rng: random.Random, p: Param, k: int) -> list:
    """k distinct values for `p` (scalars; fewer when its pool is smaller)."""
    item = Param(p.name, p.kind, p.type[6:] if p.type.startswith("array:") else p.type, p.words, True)
    values: list = []
    for _ in range(12 * k):
        v = draw_value(rng, item)
        if v not in values:
            values.append(v)
        if len(values) == k:
            break
    return values


def state_many(rng: random.Random, p: Param, values: list, named: bool = False) -> str:
    """One phrase stating several values of `p`: "in Lyon, Oslo and Kyoto", "for \"A\" and \"B\""."""
    said = [f'"{v}"' if p.kind in ("title", "query", "text") else spoken(rng, p.kind, v) for v in values]
    listed = join_and(said)
    plain = [f for f in PHRASES.get(p.kind, []) if '"' not in f and "#" not in f and (not named or "{w}" in f)]
    return rng.choice(plain + (NAMED if named else LIST_PHRASES)).format(v=listed, w=p.words)


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


# Requests that do not copy the tool's description: its first clause with the verb and the common nouns swapped for
# other words and the filler dropped, so that sharing words with a description stops being what picks a tool.
VERB_SWAPS = {
    "get": ["pull up", "look up", "bring up", "dig up"], "retrieve": ["pull up", "dig up", "bring up"],
    "fetch": ["pull up", "grab", "bring up"], "return": ["give me", "show me"], "provide": ["give me", "share"],
    "search": ["look for", "hunt for", "dig around for"], "find": ["track down", "locate", "dig up"],
    "query": ["look up", "ask about"], "list": ["show me all", "run through", "go over"],
    "create": ["set up", "make", "put together"], "generate": ["produce", "come up with", "put together"],
    "convert": ["change", "switch"], "calculate": ["work out", "figure out"],
    "compute": ["work out", "figure out"], "check": ["see", "confirm"], "set": ["change", "adjust"],
    "run": ["kick off", "launch"], "execute": ["kick off", "launch"], "perform": ["do", "carry out"],
    "navigate": ["head"], "go": ["head", "jump"], "delete": ["get rid of", "wipe"], "remove": ["get rid of", "drop"],
    "read": ["go through", "look at"], "take": ["grab", "snap"], "capture": ["grab", "snap"], "select": ["pick"],
    "close": ["shut"], "open": ["bring up"], "analyze": ["break down", "dig into"], "send": ["fire off"],
    "click": ["press", "hit"], "fill": ["complete"], "show": ["display", "let me see"], "compare": ["weigh up"],
    "download": ["save a copy of"], "update": ["revise", "change"], "save": ["store", "keep"],
    "extract": ["pull out"], "scrape": ["pull", "harvest"], "start": ["begin", "kick off"], "make": ["build"],
    "summarize": ["sum up"], "translate": ["render"], "subtract": ["take away"], "track": ["follow"],
    "lookup": ["look up"], "look": ["have a look"], "explore": ["poke around"], "verify": ["confirm"],
    "validate": ["double-check"], "upload": ["put up"], "move": ["shift"], "resolve": ["work out"],
    "count": ["tally"], "monitor": ["keep an eye on"], "identify": ["pin down"], "recommend": ["suggest"],
    "evaluate": ["assess"], "detect": ["spot"], "parse": ["break down"], "book": ["reserve"],
}
NOUN_SWAPS = {
    "information": ["details", "info"], "info": ["details"], "data": ["figures", "numbers"],
    "current": ["present", "live"], "latest": ["newest", "most recent"], "recent": ["newest", "latest"],
    "details": ["specifics", "particulars"], "detailed": ["in-depth", "thorough"], "weather": ["conditions outside"],
    "forecast": ["outlook"], "file": ["document"], "files": ["documents"], "document": ["doc"], "documents": ["docs"],
    "webpage": ["site"], "website": ["site"], "text": ["wording"], "content": ["material"], "contents": ["insides"],
    "url": ["link"], "urls": ["links"], "user": ["account"], "users": ["accounts"], "price": ["going rate", "cost"],
    "prices": ["going rates", "costs"], "stock": ["share"], "stocks": ["shares"], "news": ["headlines"],
    "articles": ["stories"], "article": ["story"], "image": ["picture"], "images": ["pictures"],
    "screenshot": ["screen grab"], "directory": ["folder"], "repository": ["repo"], "package": ["library"],
    "documentation": ["docs"], "database": ["DB"], "location": ["place"], "city": ["town"], "paper": ["publication"],
    "papers": ["publications"], "balance": ["holdings"], "transaction": ["transfer"], "transactions": ["transfers"],
    "multiple": ["several"], "new": ["fresh"], "available": ["on offer"], "results": ["hits"],
    "status": ["state"], "statistics": ["stats"], "summary": ["overview"], "comments": ["replies"],
    "message": ["note"], "messages": ["notes"], "keyword": ["term"], "keywords": ["terms"], "element": ["item"],
    "elements": ["items"], "list": ["rundown"], "temperature": ["how warm it is"],
    "trending": ["popular right now"], "search": ["lookup"], "analysis": ["breakdown"], "report": ["write-up"],
    "comprehensive": ["full"], "existing": ["current"],
}
FILLER = {"specific", "specified", "particular"}


@functools.lru_cache(maxsize=None)
def _paraphrase_words(tool: Tool) -> tuple[tuple[str, ...], bool]:
    phrase, is_verb = described_action(tool)
    return tuple(phrase.split()), is_verb


def paraphrase(rng: random.Random, tool: Tool) -> str:
    """What the user wants from `tool`, in other words than its description's: the verb and common nouns swapped,
    the filler dropped (words the tables do not know stay as they are)."""
    tokens, is_verb = _paraphrase_words(tool)
    out = []
    for i, token in enumerate(tokens):
        low = token.lower()
        if out and low == out[-1].split()[-1].lower():  # "look for" + "for news", "show me all" + "all pages"
            continue
        if i == 0 and is_verb:
            out.append(rng.choice(VERB_SWAPS.get(low, [low])))
        elif low in FILLER and i + 1 < len(tokens):
            continue
        elif low in NOUN_SWAPS:
            out.append(rng.choice(NOUN_SWAPS[low]))
        else:
            out.append(token)
    text = " ".join(out)
    return text if is_verb else f"{rng.choice(NON_VERB_LEADS)} {text}"


def clause(rng: random.Random, tool: Tool, params: tuple[Param, ...], args: dict, said: dict | None = None,
           intent_text: str | None = None) -> tuple[str, dict]:
    """The request for `tool` with `args`, and `args` in the order the request states them: the order its call
    writes them, so that a model reads the values off the request left to right instead of looking each one up.
    `said`: phrases that state some arguments (in another form, or several values at once); `intent_text`: the
    request's wording of what the tool does (its description's, by default)."""
    said = said or {}
    stated = [p for p in params if p.name in args]
    kinds = Counter(p.kind for p in stated)
    phrases = [(p.name, said[p.name] if p.name in said else
                state(rng, p, args[p.name], named=kinds[p.kind] > 1 or rng.random() < NAMED_SHARE)) for p in stated]
    rng.shuffle(phrases)
    in_order = {name: args[name] for name, _ in phrases} | args  # (args the params cannot state stay, at the end)
    lead = intent_text or intent(rng, tool)
    if not phrases:
        return lead, in_order
    return f"{lead} {join_and([phrase for _, phrase in phrases], ',')}", in_order


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


# A request that is close to what the offered tools do, but that none of them does (`standin.sft` asks for a tool of
# the same server that is not offered): answered in words, saying what the tools can do instead.
NEAR_MISS_REPLIES = [
    "The tools I have here can {i}, but none of them can {a}, so I can't do that directly.",
    "I can't {a} with what's available: the closest tool can only {i}, which isn't the same thing.",
    "That's close to what these tools do, but not quite: they can {i}, not {a}. Want me to {i} instead?",
    "Sorry, there's no tool here to {a}. I could {i} if that's useful.",
    "None of the available tools can {a}; the one that comes closest is meant to {i}.",
]
# A request for an offered tool that leaves out a value the tool requires: answered by asking for it, by name.
MISSING_REPLIES = [
    "I can {i}, but I need the {w} first. Which {w} should I use?",
    "Happy to help. Which {w} do you want me to use?",
    "Sure. What {w} should I use? ({d})",
    "Before I {i}, I need one more detail: the {w}. What should it be?",
    "I'll need the {w} to do that. Could you tell me which one?",
]
SUPPLIES = ["{v}, please.", "Oh, right: {v}.", "Sorry, {v}.", "{v}, thanks."]


def near_miss_reply(rng: random.Random, asked: str, offered_intent: str) -> str:
    return rng.choice(NEAR_MISS_REPLIES).format(a=asked, i=offered_intent)


def missing_reply(rng: random.Random, p: Param, offered_intent: str) -> str:
    templates = MISSING_REPLIES if p.description.strip() and len(p.description) < 120 else \
        [t for t in MISSING_REPLIES if "{d}" not in t]
    return rng.choice(templates).format(w=p.words, i=offered_intent, d=" ".join(p.description.split()))


def supply(rng: random.Random, phrase: str) -> str:
    return rng.choice(SUPPLIES).format(v=phrase[0].upper() + phrase[1:])
