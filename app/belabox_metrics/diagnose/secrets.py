"""The redactor for one configuration, with the token files read: the I/O half of redact.py.

Every command that prints something derived from the config or the box (check-config,
diagnose, queue, devices, the agent's log handler) builds its Redactor here, so all of them
strike the same literals: the words of every token file we can read (also one that is too
open for the agent to use: it is still the secret), URL passwords, query values and
secret-named extra labels.
"""

from __future__ import annotations

from belabox_metrics import redact
from belabox_metrics.platform.token_file import candidate_paths

# A token file is one word; anything much larger is not a token file and is not read whole.
MAX_TOKEN_FILE = 64 * 1024


def token_words(cfg, environ: dict[str, str] | None = None) -> list[str]:
    """Words of every token file that can be read (the credential directory's and
    ``remote.auth_token_file``); unreadable ones are skipped, they cannot leak through us."""
    out = []
    for path in candidate_paths(cfg, environ):
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                out.extend(w for w in fh.read(MAX_TOKEN_FILE).split() if w)
        except OSError:
            continue
    return out


def redactor(cfg, environ: dict[str, str] | None = None) -> redact.Redactor:
    return redact.for_config(cfg, token_words(cfg, environ))
