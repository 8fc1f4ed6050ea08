"""The real MCP tool catalogue Toucan-1.5M was synthesized from (package data, MIT: see data/MCP_TOOLS_LICENSE.txt).

572 servers, 3,150 tools with their real names, descriptions and JSON-Schema parameters. A tool is offered to the
model the way the SFT config names it: `<server slug>-<tool>`, slug = `server_name.lower().replace(' ', '-')`.
"""
from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources

CATALOGUE_FILE = "mcp_tools.jsonl.gz"


def slug(server_name: str) -> str:
    return server_name.lower().replace(" ", "-")


@dataclass(frozen=True, eq=False)  # one object per catalogue tool: hashed by identity
class Tool:
    server: str
    label: str  # the server's primary category, e.g. "Weather"
    short: str
    description: str
    schema: dict

    @property
    def slug(self) -> str:
        return slug(self.server)

    @property
    def name(self) -> str:
        return f"{self.slug}-{self.short}"

    def spec(self) -> dict:
        """The `tools` entry, as the authors' SFT converter writes it."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.schema}}


@functools.lru_cache(maxsize=1)
def load() -> tuple[tuple[Tool, ...], ...]:
    """Every server's tools, in catalogue order, read from the installed package."""
    with resources.files("gemma_toolcall").joinpath("data", CATALOGUE_FILE).open("rb") as f:
        servers = [json.loads(line) for line in gzip.open(f)]
    return tuple(tuple(Tool(s["server_name"], s["primary_label"], t["name"], t.get("description") or "",
                            t["input_schema"]) for t in s["tools"])
                 for s in servers if s["tools"])


@functools.lru_cache(maxsize=1)
def known_slugs() -> frozenset[str]:
    return frozenset(tools[0].slug for tools in load())


def tool_server(name: str, extra_slugs: frozenset[str] = frozenset()) -> str:
    """The server slug of an offered tool name `<slug>-<tool>`. Both parts may hold '-', so the longest prefix that
    is a known server (the catalogue's, or `extra_slugs` from a row's "Server Name::tool" targets) wins; a server
    outside the catalogue falls back to everything before the last '-'."""
    known = known_slugs()
    cut = name.rfind("-")
    while cut > 0:
        if name[:cut] in known or name[:cut] in extra_slugs:
            return name[:cut]
        cut = name.rfind("-", 0, cut)
    return name.rsplit("-", 1)[0]
