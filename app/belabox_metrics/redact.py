"""Redaction of secrets and identifiers from every output; pure functions, no I/O.

One module for every output path (check-config, diagnose, the bundle, queue, devices, the
agent's log lines), so there is one answer to "what may leave the box":

Secrets (always go):
- a URL's password (``user:<redacted>@host``; the user name stays) and every query value
  (``?authKey=<redacted>``), in ``remote.url``, ``monitoring.clock_skew_url`` and in any
  URL-shaped text (log lines, error messages);
- the upload token: never printed; ``fingerprint()`` gives ``sha256:ab12cd34`` to compare;
- ``Authorization: Bearer ...`` values;
- ``remote.extra_labels`` values whose label name matches SECRET_NAME (token, key, secret,
  passw..., pwd, auth, credential, cookie, session); the others are data and are shown;
- every literal the caller names (the token files' words, the URL password, query values,
  secret label values), also URL-encoded and base64-encoded.
Identifiers (go unless ``modem.expose_identifiers: true``): IMEI, IMSI and ICCID (digit
runs of their lengths), phone numbers, MAC addresses (and ``enx<mac>`` names), USB serials.

Redaction works on values: ``Redactor.tree`` walks dicts and lists and leaves numbers
alone, so serialised JSON stays JSON (text patterns run over a float's digits would not).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MARK = "<redacted>"
# Literals shorter than this are not struck from free text (a 2-character query value would
# eat every "ab" in a log); structural redaction (URLs, keys, labels) still removes them.
MIN_LITERAL = 4

# Label names of remote.extra_labels whose values are secrets (case-insensitive, anywhere in
# the name: api_key, authKey, X-Auth, db_password, session_id).
SECRET_NAME = re.compile(r"(?i)token|key|secret|passw|pwd|auth|credential|cookie|session")

# IMEI and IMSI are 15 digits (IMEISV 16, some IMSIs 14); ICCID is 18-20 digits starting
# with 89 (ITU-T E.118). Millisecond timestamps are 13 digits and stay readable; a decimal
# fraction (9.0123456789012345) is a number, not an identity.
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z.])(?:\d{14,16}|89\d{16,18})(?![0-9A-Za-z]|\.\d)")
# E.164: a plus and up to 15 digits, optionally grouped by spaces or dashes.
_PHONE = re.compile(r"(?<![\w+])\+\d(?:[ -]?\d){6,14}(?!\d)")
_MAC = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
# Interface names built from a MAC by systemd's predictable naming (enx001122334455).
_ENX = re.compile(r"\benx[0-9a-fA-F]{12}\b")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# A URL in free text: scheme, then everything up to whitespace or a quote/bracket; a trailing
# full stop, comma or closing bracket belongs to the sentence.
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>`]*[^\s\"'<>`.,;:)\]]")
# udev database and uevent keys whose value is a serial number or a MAC.
_KEYED = re.compile(
    r"(?m)^((?:E: )?(?:ID_SERIAL|ID_SERIAL_SHORT|ID_USB_SERIAL|ID_USB_SERIAL_SHORT|ID_NET_NAME_MAC|"
    r"ID_MM_.*IMEI.*|ID_.*_SERIAL|SERIAL|ID_SCSI_SERIAL)=)(.+)$")
# Keys whose value is a secret wherever they appear in a tree.
SECRET_KEYS = frozenset({
    "token", "password", "passwd", "secret", "auth_token", "api_token", "api_key", "apikey", "authkey",
    "auth_key", "access_token", "authorization", "bearer",
})
# ModemManager JSON keys (mmcli -J) and sysfs names holding identities.
IDENTIFIER_KEYS = frozenset({
    "equipment-identifier", "imei", "imsi", "iccid", "eid", "own-numbers", "esn", "meid",
    "serial", "serial-number", "mac", "mac-address", "address", "permanent-address",
})


def fingerprint(secret: str) -> str:
    """``sha256:`` and 8 hex digits: enough to tell two tokens apart, nothing to reuse."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


def redact_url(url: str) -> str:
    """The URL with its password and every query value (and any fragment) replaced.

    ``http://fleet:pw@vm/api/v1/import?authKey=k&x`` -> ``http://fleet:<redacted>@vm/api/v1/import?authKey=<redacted>&<redacted>``.
    """
    try:
        p = urlsplit(url)
        p.port  # noqa: B018 - raises on a malformed port, as any client would
    except ValueError:
        return "<unparseable url>"
    netloc = p.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_pw, _ = userinfo.partition(":")
        netloc = f"{user}:{MARK}@{host}" if has_pw else f"{user}@{host}"
    query = "&".join(_redact_pair(item) for item in p.query.split("&")) if p.query else ""
    return urlunsplit((p.scheme, netloc, p.path, query, MARK if p.fragment else ""))


def _redact_pair(item: str) -> str:
    name, eq, value = item.partition("=")
    if not eq:
        return MARK if name else ""  # a bare ?SECRET is a value with no name
    return f"{name}={MARK}" if value else f"{name}="


def url_secrets(url: str) -> list[str]:
    """The password and query values of a URL, to strike wherever they show up as plain text."""
    try:
        p = urlsplit(url)
    except ValueError:
        return []
    out = [p.password] if p.password else []
    for item in p.query.split("&") if p.query else ():
        name, eq, value = item.partition("=")
        out.append(value if eq else name)
    return [s for s in out if s]


def secret_labels(labels: Mapping[str, Any]) -> dict[str, Any]:
    """``remote.extra_labels`` with every secret-named label's value replaced."""
    return {k: (MARK if SECRET_NAME.search(str(k)) and v not in (None, "") else v) for k, v in labels.items()}


@dataclass(frozen=True)
class Redactor:
    """Knows the literal secrets of one configuration and whether identifiers go."""

    secrets: tuple[str, ...] = ()
    identifiers: bool = True  # False when modem.expose_identifiers is true

    @classmethod
    def of(cls, secrets: Iterable[str] = (), identifiers: bool = True) -> Redactor:
        """Literals with their URL-encoded and base64 forms, longest first (a secret that
        contains another is struck whole)."""
        forms: set[str] = set()
        for s in secrets:
            if not s or len(s) < MIN_LITERAL:
                continue
            raw = s.encode("utf-8")
            forms.update({s, quote(s, safe=""), quote_plus(s, safe=""),
                          base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
                          base64.b64encode(raw).decode().rstrip("=")})
        return cls(tuple(sorted(forms, key=len, reverse=True)), identifiers)

    def text(self, text: str) -> str:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MARK)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MARK}", text)
        if self.identifiers:
            text = _KEYED.sub(lambda m: m.group(1) + MARK, text)
            text = _MAC.sub(MARK, text)
            text = _ENX.sub("enx" + MARK, text)
            text = _PHONE.sub(MARK, text)
            text = _LONG_DIGITS.sub(MARK, text)
        return text

    def tree(self, value: Any) -> Any:
        """A JSON-like tree with secret (and identifier) keys blanked and every string passed
        through ``text``; numbers, booleans and None are left as they are."""
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if self._blank(str(k)) and v not in (None, "", "--", [], {}):
                    out[k] = [MARK] if isinstance(v, (list, tuple)) else MARK
                else:
                    out[k] = self.tree(v)
            return out
        if isinstance(value, (list, tuple)):
            return [self.tree(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def config(self, plain: Mapping[str, Any]) -> dict[str, Any]:
        """The effective config (``config.to_plain``) as it may be shown: URLs redacted,
        secret-named extra labels blanked, then the general tree walk."""
        out = dict(plain)
        remote = dict(out.get("remote") or {})
        if remote.get("url"):
            remote["url"] = redact_url(remote["url"])
        if isinstance(remote.get("extra_labels"), Mapping):
            remote["extra_labels"] = secret_labels(remote["extra_labels"])
        if remote:
            out["remote"] = remote
        mon = dict(out.get("monitoring") or {})
        if mon.get("clock_skew_url"):
            mon["clock_skew_url"] = redact_url(mon["clock_skew_url"])
            out["monitoring"] = mon
        return self.tree(out)

    def _blank(self, key: str) -> bool:
        k = key.lower().replace(" ", "-")
        if k in SECRET_KEYS or k.endswith(("-token", "_token", "password", "-secret", "_secret")):
            return True
        return self.identifiers and k in IDENTIFIER_KEYS


def for_config(cfg: Any, token_words: Iterable[str] = ()) -> Redactor:
    """The redactor of one configuration (duck-typed ``config.Config``: this module imports
    nothing of the project): URL passwords and query values, secret extra-label values and
    the token files' words are literals; identifiers follow ``modem.expose_identifiers``."""
    literals = list(token_words)
    remote = getattr(cfg, "remote", None)
    if remote is not None:
        literals += url_secrets(getattr(remote, "url", "") or "")
        for k, v in (getattr(remote, "extra_labels", None) or {}).items():
            if SECRET_NAME.search(str(k)) and v:
                literals.append(str(v))
    mon = getattr(cfg, "monitoring", None)
    if mon is not None:
        literals += url_secrets(getattr(mon, "clock_skew_url", "") or "")
    modem = getattr(cfg, "modem", None)
    expose = bool(getattr(modem, "expose_identifiers", False))
    return Redactor.of(literals, identifiers=not expose)


class LogFilter(logging.Filter):
    """Redacts every record a handler emits (message, arguments and traceback), so a URL or
    token that reaches a log line by any path (an exception's text, a library's message)
    never reaches the journal. Attach to handlers: a logger's filters miss propagated records."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: show the template, not the arguments
            message = str(record.msg)
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            message += "\n" + record.exc_text
        if record.stack_info:
            message += "\n" + record.stack_info
            record.stack_info = None
        record.msg, record.args, record.exc_text = self.redactor.text(message), None, None
        return True


# Compatibility with the first version's functions (callers may still use them).
def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    return Redactor.of(secrets).text(text)


def redact_tree(value: Any, secrets: Iterable[str] = ()) -> Any:
    return Redactor.of(secrets).tree(value)
