"""Decoding: batched sampling, and the grammar that constrains tool calls to the offered schemas."""
