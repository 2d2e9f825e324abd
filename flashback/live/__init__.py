"""Live feeds: ``flashback watch``.

Data still flows one way, but continuously: feed readers (one thread each) -> bounded sample
queues -> one batched encoder call for all feeds -> per-feed segment assembly -> one batched
retrieval -> causal scoring and events -> sinks (JSON lines, DuckDB, webhook).
"""
