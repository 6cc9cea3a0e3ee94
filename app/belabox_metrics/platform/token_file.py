"""The upload bearer token: systemd credential first, then ``remote.auth_token_file``.

The deployment guide wants the token file 0600 root:metrics, which the unprivileged
service cannot read; systemd hands it over as ``$CREDENTIALS_DIRECTORY/api-token``
(``LoadCredential=``). A missing token is not a config error: first boot creates it
later, so the agent keeps collecting and re-reads the file when it appears.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

# `cfg` below is the agent's config.Config; only cfg.remote.auth_token_file is read, and this
# module imports nothing of the project (platform/ is the bottom layer).
Config = Any

CREDENTIAL_NAME = "api-token"
# The unit loads /etc/belabox-metrics/api-token as "api-token" and, for images whose /etc
# is read-only, the state directory's token as "api-token-state" (first boot writes it
# there). Each has a one-newline SetCredential= fallback, which reads as an empty file.
CREDENTIAL_NAMES = (CREDENTIAL_NAME, "api-token-state")


class TokenError(Exception):
    """The token cannot be used; the message is one line, never the token itself."""


@dataclass(frozen=True)
class TokenState:
    token: str | None
    source: str  # path the token came from, or "" when no token is configured
    problem: str | None = None


def candidate_paths(cfg: Config, environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    paths = []
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        paths.extend(os.path.join(cred_dir, name) for name in CREDENTIAL_NAMES)
    if cfg.remote.auth_token_file:
        paths.append(cfg.remote.auth_token_file)
    return paths


def read_token_file(path: str) -> str:
    """Read and check one token file. Like ssh with private keys, refuse a file that
    anyone may read: the token would already be leaked to every local user."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TokenError(f"token file {path} does not exist (yet)") from None
    except PermissionError:
        raise TokenError(f"token file {path} is not accessible to uid {os.getuid()}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TokenError(f"token file {path} is not a regular file")
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise TokenError(f"token file {path} is readable or writable by others "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except PermissionError:
        raise TokenError(f"token file {path} is not readable by uid {os.getuid()}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TokenError(f"token file {path} cannot be read ({e.__class__.__name__})") from None
    if not token:
        raise TokenError(f"token file {path} is empty")
    if any(c.isspace() for c in token):
        raise TokenError(f"token file {path} holds more than one word")
    return token


def load_token(cfg: Config, environ: dict[str, str] | None = None) -> TokenState:
    paths = candidate_paths(cfg, environ)
    if not paths:
        return TokenState(None, "")
    problems = []
    for path in paths:
        try:
            return TokenState(read_token_file(path), path)
        except TokenError as e:
            problems.append(str(e))
    return TokenState(None, paths[-1], "; ".join(problems))


class TokenSource:
    """Re-reads the token when its file changes, so a token provisioned after start
    (first boot) or rotated by an operator is used without a restart."""

    def __init__(self, cfg: Config, environ: dict[str, str] | None = None):
        self._cfg = cfg
        self._environ = environ
        self._stamp: tuple | None = None
        self._state = TokenState(None, "")

    def _fingerprint(self) -> tuple:
        out = []
        for p in candidate_paths(self._cfg, self._environ):
            try:
                st = os.stat(p)
                out.append((p, st.st_mtime_ns, st.st_size, st.st_mode))
            except OSError:
                out.append((p, None))
        return tuple(out)

    def get(self) -> TokenState:
        stamp = self._fingerprint()
        if stamp != self._stamp:
            self._state = load_token(self._cfg, self._environ)
            self._stamp = stamp
        return self._state

    def reconfigure(self, cfg: Config) -> None:
        """SIGHUP: a changed ``remote.auth_token_file`` is read on the next ``get()``."""
        self._cfg = cfg
        self._stamp = None

    def configured(self) -> bool:
        return bool(candidate_paths(self._cfg, self._environ))


def describe_token(cfg: Config) -> str | None:
    """A one-line warning for `check-config`, or None when the token is usable or not needed."""
    state = load_token(cfg)
    return state.problem
