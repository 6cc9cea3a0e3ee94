"""Redaction: identifiers and secrets go, the facts support needs stay."""

from __future__ import annotations

from belabox_metrics.redact import MARK, redact_text, redact_tree, redact_url

IMEI = "356938035643809"
IMSI = "262011234567890"
ICCID = "8949226000001234567"
PHONE = "+4915112345678"
MAC = "a4:5e:60:d2:1b:7f"
TOKEN = "Zm9vYmFyLXNlY3JldC10b2tlbi0xMjM0"


def test_identifier_patterns_are_removed():
    text = (f"imei {IMEI} imsi={IMSI} iccid:{ICCID} call {PHONE} or +49 151 1234 5678\n"
            f"link/ether {MAC} brd ff:ff:ff:ff:ff:ff\nE: ID_NET_NAME_MAC=enxa45e60d21b7f\n"
            f"E: ID_SERIAL_SHORT=ABC123XYZ\nAuthorization: Bearer {TOKEN}\n")
    out = redact_text(text)
    for secret in (IMEI, IMSI, ICCID, PHONE, "+49 151 1234 5678", MAC, MAC.upper(), "a45e60d21b7f",
                   "ABC123XYZ", TOKEN):
        assert secret not in out, secret
    assert "imei <redacted>" in out
    assert "Bearer <redacted>" in out


def test_facts_stay_readable():
    text = ("2024-01-15T10:30:00Z ts=1700000000000 pending=120 rx_bytes 123456789 "
            "version 1.20.4 ip 10.0.0.5 port 9100 -97.00 dBm")
    assert redact_text(text) == text


def test_literal_secrets_are_struck_everywhere():
    out = redact_text(f"token={TOKEN}; again {TOKEN}", secrets=[TOKEN])
    assert TOKEN not in out
    assert out.count(MARK) == 2


def test_tree_redacts_by_key_and_by_value():
    tree = {"modem": {"generic": {"equipment-identifier": IMEI, "own-numbers": ["015112345678"],
                                  "model": "EC25"},
                      "3gpp": {"imei": IMEI, "operator-name": "Vodafone"}},
            "sim": {"properties": {"iccid": ICCID, "imsi": IMSI}},
            "note": f"seen {MAC}", "count": 3, "unknown": "--"}
    out = redact_tree(tree)
    flat = repr(out)
    for secret in (IMEI, ICCID, IMSI, "015112345678", MAC):
        assert secret not in flat
    assert out["modem"]["generic"]["model"] == "EC25"
    assert out["modem"]["3gpp"]["operator-name"] == "Vodafone"
    assert out["count"] == 3 and out["unknown"] == "--"


def test_url_password():
    assert redact_url("https://fleet:hunter22@vm.example/api/v1/import") == \
        "https://fleet:<redacted>@vm.example/api/v1/import"
    assert redact_url("http://127.0.0.1:8428/api/v1/import") == "http://127.0.0.1:8428/api/v1/import"
