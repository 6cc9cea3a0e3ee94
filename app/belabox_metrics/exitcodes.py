"""Exit codes of every command, in one place: they are part of the contract.

0 ok, 1 runtime failure, 2 usage, 75 already running (EX_TEMPFAIL), 78 configuration error
(EX_CONFIG; the unit's RestartPreventExitStatus=78, since restarting cannot fix a typo).
`diagnose` maps its verdict onto 0/1/2 (ok, degraded, error) so scripts can branch on it.
"""

OK = 0
FAILURE = 1
USAGE = 2
RUNNING = 75
CONFIG = 78
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

DIAGNOSE = {"ok": 0, "degraded": 1, "error": 2}
