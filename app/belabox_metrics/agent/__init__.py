"""The agent: the loop that collects, spools, uploads and proves progress to systemd.

Owns: loop (the Agent class: the loop), chores (clock thread, parked expiry, history start),
reconfigure (the one path start-up and SIGHUP use to build and apply
settings), residency (process-wide memory settings of `run`).
May import: upload, spool, collectors, health, devices, config, platform, samples, redact.
Never imported by anything below it; only commands/ import the agent.
"""
