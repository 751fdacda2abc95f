"""HTTP handlers: parse, call one use case, serialise."""
