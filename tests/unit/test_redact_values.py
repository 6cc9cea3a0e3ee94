"""belabox_metrics.redact: URLs, literals, labels, trees and log records, on values."""

from __future__ import annotations

import base64
import io
import json
import logging
from types import SimpleNamespace
from urllib.parse import quote

from belabox_metrics.redact import (
    MARK,
    LogFilter,
    Redactor,
    fingerprint,
    for_config,
    redact_url,
    secret_labels,
    url_secrets,
)

URL = "http://fleet:PASSw0rd9@vm.example:8428/api/v1/import?authKey=KEY123456&extra_label=site=x&bare#frag"
TOKEN = "tok_Zm9vYmFyLXNlY3JldC0xMjM0"


def _cfg(url=URL, labels=None, expose=False, clock=""):
    return SimpleNamespace(remote=SimpleNamespace(url=url, extra_labels=labels or {}),
                           monitoring=SimpleNamespace(clock_skew_url=clock),
                           modem=SimpleNamespace(expose_identifiers=expose))


def test_url_keeps_user_host_path_and_query_names():
    assert redact_url(URL) == ("http://fleet:<redacted>@vm.example:8428/api/v1/import"
                               "?authKey=<redacted>&extra_label=<redacted>&<redacted>#<redacted>")
    assert redact_url("https://vm.example/api/v1/import") == "https://vm.example/api/v1/import"
    assert redact_url("https://user@vm.example/x?empty=") == "https://user@vm.example/x?empty="
    assert redact_url("http://h:notaport/") == "<unparseable url>"


def test_url_secrets_are_the_password_and_every_query_value():
    assert url_secrets(URL) == ["PASSw0rd9", "KEY123456", "site=x", "bare"]


def test_urls_in_free_text_lose_their_secrets_and_the_sentence_its_punctuation_not():
    red = Redactor.of()
    out = red.text(f"cannot connect to {URL}. Retrying (see http://a:b@h/p).")
    assert "PASSw0rd9" not in out and "KEY123456" not in out and "frag" not in out
    assert out.endswith("(see http://a:<redacted>@h/p).")


def test_literals_go_in_raw_url_encoded_and_base64_forms():
    red = Redactor.of([TOKEN + "/+=x"])
    secret = TOKEN + "/+=x"
    for form in (secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode(),
                 base64.urlsafe_b64encode(secret.encode()).decode()):
        assert red.text(f"[{form}]") == f"[{MARK}]", form


def test_short_literals_are_not_struck_from_free_text():
    red = Redactor.of(["ab"])
    assert red.text("tab cab") == "tab cab"


def test_numbers_stay_numbers_and_json_stays_json():
    red = Redactor.of()
    tree = {"ratio": 9.0123456789012345, "bytes": 123456789012345, "text": "9.0123456789012345 and 356938035643809",
            "ok": True, "none": None}
    out = red.tree(tree)
    assert out["ratio"] == tree["ratio"] and out["bytes"] == tree["bytes"]
    assert out["text"] == "9.0123456789012345 and <redacted>"
    assert json.loads(json.dumps(out)) == out


def test_secret_keys_always_go_identifier_keys_per_expose_identifiers():
    tree = {"token": "t0k3n", "api_key": "k", "x_password": "p", "imei": "356938035643809",
            "mac": "a4:5e:60:d2:1b:7f", "note": "link a4:5e:60:d2:1b:7f"}
    hidden = Redactor.of().tree(tree)
    assert all(hidden[k] == MARK for k in ("token", "api_key", "x_password", "imei", "mac"))
    assert hidden["note"] == "link <redacted>"
    shown = Redactor.of(identifiers=False).tree(tree)
    assert all(shown[k] == MARK for k in ("token", "api_key", "x_password"))
    assert shown["imei"] == tree["imei"] and shown["mac"] == tree["mac"] and shown["note"] == tree["note"]


def test_secret_labels_by_name():
    labels = {"site": "lab", "api_key": "k1", "AuthToken": "t", "db_password": "p", "x_secret": "s",
              "session_id": "i", "region": "eu", "monkey": "banana"}
    out = secret_labels(labels)
    assert out["site"] == "lab" and out["region"] == "eu"
    assert all(out[k] == MARK for k in ("api_key", "AuthToken", "db_password", "x_secret", "session_id", "monkey"))


def test_for_config_collects_literals_and_follows_expose_identifiers():
    cfg = _cfg(labels={"site": "lab-one", "api_key": "LABELSECRET9"}, clock="http://c:CLOCKPW99@h/")
    red = for_config(cfg, [TOKEN])
    text = red.text(f"PASSw0rd9 KEY123456 LABELSECRET9 CLOCKPW99 {TOKEN} lab-one 356938035643809")
    assert text == f"{MARK} {MARK} {MARK} {MARK} {MARK} lab-one {MARK}"
    assert for_config(_cfg(expose=True)).identifiers is False
    plain = {"remote": {"url": URL, "extra_labels": {"site": "lab-one", "api_key": "x"}},
             "monitoring": {"clock_skew_url": "http://c:pw@h/?k=v"}}
    shown = red.config(plain)
    assert shown["remote"]["url"].startswith("http://fleet:<redacted>@vm.example:8428/")
    assert shown["remote"]["extra_labels"] == {"site": "lab-one", "api_key": MARK}
    assert shown["monitoring"]["clock_skew_url"] == "http://c:<redacted>@h/?k=<redacted>"


def test_fingerprint_is_short_and_not_the_token():
    fp = fingerprint(TOKEN)
    assert fp.startswith("sha256:") and len(fp) == 15 and TOKEN not in fp
    assert fp == fingerprint(TOKEN) != fingerprint(TOKEN + "x")


def test_log_filter_redacts_message_arguments_and_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(LogFilter(Redactor.of([TOKEN], identifiers=False)))
    log = logging.getLogger("test_redact_values")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("upload to %s failed", URL)
        try:
            raise RuntimeError(f"bad token {TOKEN} for {URL}")
        except RuntimeError:
            log.exception("boom %d", 1)
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    for secret in ("PASSw0rd9", "KEY123456", TOKEN):
        assert secret not in out
    assert "WARNING upload to http://fleet:<redacted>@vm.example:8428" in out
    assert "boom 1" in out and "RuntimeError: bad token <redacted>" in out


def test_health_json_never_carries_url_credentials_from_an_exception_message():
    import urllib.request

    from belabox_metrics.health.registry import DEGRADED, Registry
    from belabox_metrics.health.server import HealthServer
    reg = Registry()
    reg.update("collector.x", DEGRADED, f"fetch failed: {URL} said no (Authorization: Bearer {TOKEN})",
               {"url": URL, "mac": "a4:5e:60:d2:1b:7f"})
    server = HealthServer("127.0.0.1:0", reg, lambda: "")
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5) as r:
            body = r.read().decode()
    finally:
        server.stop()
    for secret in ("PASSw0rd9", "KEY123456", TOKEN):
        assert secret not in body
    comp = json.loads(body)["components"]["collector.x"]
    assert comp["message"].startswith("fetch failed: http://fleet:<redacted>@vm.example:8428/api/v1/import?authKey=")
    assert comp["details"]["mac"] == "a4:5e:60:d2:1b:7f"  # identifiers are not the server's to hide
