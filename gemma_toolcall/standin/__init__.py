"""The offline stand-in: Toucan-schema rows generated from a seed and the real MCP tool catalogue."""
