"""The real Toucan-1.5M data: its schema and parsing, the raw configs, the MCP catalogue, duplicates."""
