"""Field diagnostics: facts gathered from a running or stopped agent, the 80-column report,
and the support bundle.

Owns: gather (collect the report dict), facts (pure derivations), devices, render (text), bundle.
May import: spool, health, collectors, devices, config, platform, samples, redact.
"""
