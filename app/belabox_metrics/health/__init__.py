"""Health: the component registry and its rules, the HTTP server (/health, /metrics), the
Prometheus text exposition (and its parser) and the agent's own counters.

Owns: registry, server, exposition, scrape, selfmetrics.
May import: config, platform, samples, redact.
"""
