"""The durable spool: collection batches in SQLite, where the file lives, and reading it back.

Owns: store (Spool), schema, codec, rows, reader, totals, salvage (with pagescan, its raw-page
reader), location (data path), view (read-only access for diagnose and queue), export (encoders
for queue export).
May import: health (selfmetrics), config, platform, samples, redact. Never upload or collectors.
"""
