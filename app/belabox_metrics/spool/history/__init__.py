"""Field history kept in the spool: key-signal points of acknowledged batches, stored compactly
and rarely (persist), the history JSON assembled from them and from pending rows (query), what
the points mean as events, pure (events), and the one way commands and diagnose get it: from
the running agent, else the spool read-only (fetch).

May import: spool, timeline (the key signals), health, config, platform, samples, redact.
"""
