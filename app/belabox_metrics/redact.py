"""Redaction of identifiers and secrets from diagnostic output; pure functions, no I/O.

What goes: IMEI, IMSI and ICCID (digit runs of their lengths), phone numbers (E.164 with
a plus, and whatever ModemManager lists as own numbers), MAC addresses (also the
``enx<mac>`` interface names udev derives from them), USB serial numbers, bearer tokens,
URL passwords, and any literal secret the caller names (the token files' contents).
A bundle leaves the box for a support channel; a leaked IMEI or token cannot be recalled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MARK = "<redacted>"

# IMEI and IMSI are 15 digits (IMEISV 16, some IMSIs 14); ICCID is 18-20 digits starting
# with 89 (ITU-T E.118). Millisecond timestamps are 13 digits and stay readable.
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z])(?:\d{14,16}|89\d{16,18})(?![0-9A-Za-z])")
# E.164: a plus and up to 15 digits, optionally grouped by spaces or dashes.
_PHONE = re.compile(r"(?<![\w+])\+\d(?:[ -]?\d){6,14}(?!\d)")
_MAC = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
# Interface names built from a MAC by systemd's predictable naming (enx001122334455).
_ENX = re.compile(r"\benx[0-9a-fA-F]{12}\b")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
# udev database and uevent keys whose value is a serial number or a MAC.
_KEYED = re.compile(
    r"(?m)^((?:E: )?(?:ID_SERIAL|ID_SERIAL_SHORT|ID_USB_SERIAL|ID_USB_SERIAL_SHORT|ID_NET_NAME_MAC|"
    r"ID_MM_.*IMEI.*|ID_.*_SERIAL|SERIAL|ID_SCSI_SERIAL)=)(.+)$")
# ModemManager JSON keys (mmcli -J) holding identities; every JSON value there is a string.
SECRET_KEYS = frozenset({
    "equipment-identifier", "imei", "imsi", "iccid", "eid", "own-numbers", "esn", "meid",
    "serial", "serial-number", "mac", "mac-address", "address", "permanent-address",
    "token", "password", "auth_token", "api_token", "secret",
})


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Every identifier pattern and every literal in ``secrets`` replaced by ``<redacted>``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MARK)
    text = _KEYED.sub(lambda m: m.group(1) + MARK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MARK}", text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + MARK + "@", text)
    text = _MAC.sub(MARK, text)
    text = _ENX.sub("enx" + MARK, text)
    text = _PHONE.sub(MARK, text)
    text = _LONG_DIGITS.sub(MARK, text)
    return text


def redact_tree(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-like tree with secret keys blanked and every string passed through redact_text."""
    secrets = tuple(secrets)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if _is_secret_key(str(k)) and v not in (None, "", "--", [], {}):
                out[k] = [MARK] if isinstance(v, list) else MARK
            else:
                out[k] = redact_tree(v, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_tree(v, secrets) for v in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def _is_secret_key(key: str) -> bool:
    k = key.lower().replace(" ", "-")
    return k in SECRET_KEYS or k.endswith(("-token", "_token", "password", "-secret", "_secret"))


def redact_url(url: str) -> str:
    """A URL without its password (user names stay: they help support and identify nothing)."""
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MARK + "@", url)
