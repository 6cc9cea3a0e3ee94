"""Upload to VictoriaMetrics: when and what to send (uploader), delivery lanes, one request on
the wire (transport), the import wire format, and the retry policy.

Owns: uploader, delivery, transport, wire, retry.
May import: health, config, platform, samples, redact. Never collectors or spool internals.
"""
