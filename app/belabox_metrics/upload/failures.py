"""What went wrong with an upload attempt, in words an operator can act on. Pure functions.

The HTTP client reports every network failure as "cannot connect (<strerror>)"; an operator
needs to know which one it was: nothing listens (refused), something answered and then
hung up (reset), nothing answers at all (timeout), the name does not resolve (DNS), or the
certificate does not verify (TLS). A reset called "cannot connect" sends people to the
firewall when the server is the one crashing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

REFUSED, RESET, TIMEOUT, TLS, DNS, UNREACHABLE, CONNECT, HTTP = (
    "refused", "reset", "timeout", "tls", "dns", "unreachable", "connect", "http")

# vmauth answers an unknown bearer token with this text (and 401); a proxy in front of it
# may turn the status into something else, so the body is evidence on its own.
_TOKEN_REFUSALS = ("cannot find the provided auth token", "missing `authorization` request header",
                   "invalid auth token", "unauthorized")

_DNS_WORDS = ("name or service not known", "temporary failure in name resolution", "no address associated",
              "nodename nor servname", "name resolution", "gaierror")
_RESET_WORDS = ("reset", "remotedisconnected", "cut short", "incompleteread", "broken pipe", "badstatusline",
                "connection aborted")


def host_of(url: str) -> str:
    """host[:port] of ``url``: never the user, password, path or query."""
    try:
        p = urlsplit(url)
        host = p.hostname or "?"
        return f"{host}:{p.port}" if p.port else host
    except ValueError:
        return "?"


def cause_of(kind: str, text: str) -> str:
    """The failure's cause from the client's error kind and text."""
    if kind == TLS:
        return TLS
    if kind == TIMEOUT:
        return TIMEOUT
    low = text.lower()
    if "refused" in low:
        return REFUSED
    if any(w in low for w in _DNS_WORDS):
        return DNS
    if any(w in low for w in _RESET_WORDS):
        return RESET
    if "unreachable" in low or "no route" in low:
        return UNREACHABLE
    return CONNECT


def describe(cause: str, host: str, timeout: float, text: str = "") -> str:
    """One line for health, diagnose and the log; ``text`` must already be scrubbed."""
    if cause == REFUSED:
        return f"cannot connect to {host}: connection refused"
    if cause == RESET:
        return f"connection reset by server {host}"
    if cause == TIMEOUT:
        return f"server not answering: timeout after {timeout:g}s ({host})"
    if cause == DNS:
        return f"cannot resolve {host} (DNS)"
    if cause == UNREACHABLE:
        return f"cannot reach {host}: network unreachable"
    if cause == TLS:
        return f"{text or 'TLS failed'} ({host})"
    return f"cannot connect to {host}: {text}" if text else f"cannot connect to {host}"


def token_refused(status: int, body_text: str) -> bool:
    """True when the answer says the bearer token is wrong or missing."""
    if status in (401, 403):
        return True
    if 400 <= status < 500:
        low = body_text.lower()
        return any(w in low for w in _TOKEN_REFUSALS)
    return False


def auth_backoff(interval: float, refusals: int, cap: float) -> float:
    """Seconds before the next try after ``refusals`` refused tokens in a row: one upload
    interval, doubling up to ``cap``. A refused token does not fix itself, and every device
    of a fleet retrying each interval is a storm on the fleet server."""
    delay = max(1.0, interval)
    for _ in range(max(0, refusals - 1)):
        delay *= 2
        if delay >= cap:
            return max(cap, interval)
    return min(delay, max(cap, interval))
