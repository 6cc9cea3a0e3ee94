"""belabox-fleet: the server side of a BELABOX fleet (vmauth in front of VictoriaMetrics).

One fleet directory holds the device registry, the device tokens and the vmauth config
generated from them; ``belabox-fleet list`` reads the agents' own metrics back.

Modules: registry (the fleet directory and its files), vmauth (config generation, hot
reload, usage counters), lifecycle (enroll, register, revoke, rotate, settle rotations),
overview (the ``list`` queries and rows), cli (argument parsing, exit codes).

May import: the standard library, yaml, requests and
belabox_metrics.redact / belabox_metrics.samples: it runs on a server, not on a box, and
must not drag the agent's runtime (spool, collectors, systemd) along.
"""
