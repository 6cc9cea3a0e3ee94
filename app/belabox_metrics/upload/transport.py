"""One upload request on the wire: POST it, retry what is worth retrying, say what happened.

What each answer means (design §5, anchors.md §3), in the spirit of urllib3's
``_is_connection_error`` / ``_is_read_error`` docstrings:

- connection refused, reset, DNS failure: the server most likely never saw the
  request; retrying is safe.
- timeout, 5xx, 408, 429: the server may have stored the data already; retrying can
  duplicate samples, which VictoriaMetrics folds with ``-dedup.minScrapeInterval=1ms``.
  Losing them would be worse. 429 and 503 may carry ``Retry-After``, honoured up to
  ``remote.retry.max_retry_after``.
- 400, 413: this body is refused and resending it cannot help; the caller bisects it
  so that one bad sample cannot block the queue.
- 401, 403: the token is wrong or missing; nothing is retried until the next cycle.
- 3xx, 404 and other 4xx: the URL or a proxy is misconfigured; final. Redirects are
  not followed: clients turn a redirected POST into a body-less GET.
- TLS errors: a certificate does not verify (or a captive portal answers); final for
  this cycle, never "fixed" by turning verification off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from belabox_metrics import __version__
from belabox_metrics.platform import boundedhttp
from belabox_metrics.redact import redact_url  # the one URL redaction: password and query values go
from belabox_metrics.upload import failures, retry

# What one request came to; the decision is retry.decide's (the one place retry decisions live).
from belabox_metrics.upload.retry import (  # noqa: F401 (the kinds are this module's vocabulary too)
    AUTH,
    FATAL,
    GAVE_UP,
    OK,
    REJECTED,
    STOPPED,
    RetryPolicy,
    parse_retry_after,
)
from belabox_metrics.upload.wire import Body

log = logging.getLogger(__name__)

FAILURES = "metrics_collector_upload_failures_total"
USER_AGENT = f"belabox-metrics/{__version__}"
_MAX_ERROR_TEXT = 200
# Bytes of an answer read: enough for the error text; a longer answer costs its connection,
# never memory (a misconfigured URL may answer with a whole web page).
MAX_ANSWER_BYTES = 16384


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int | None = None  # HTTP status of the last answer, None when there was none
    reason: str | None = None  # failure reason of the last attempt (the counter's label)
    message: str = ""
    attempts: int = 0
    cause: str | None = None  # failures.REFUSED, RESET, TIMEOUT, TLS, DNS, ... or HTTP

    @property
    def ok(self) -> bool:
        return self.kind == OK


class Transport:
    """Sends gzip JSON-lines bodies to one URL over a kept-alive connection."""

    def __init__(self, url: str, timeout: float, policy: RetryPolicy, *, client: boundedhttp.Client | None = None,
                 selfmetrics=None, timekeeper=None, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], bool] | None = None,
                 rng: Callable[[], float] | None = None):
        self.url = url
        self.timeout = timeout
        self.policy = policy
        self.client = client or boundedhttp.Client()  # real time: the exchange is real I/O
        self.selfmetrics = selfmetrics
        self.timekeeper = timekeeper
        self.wall = wall
        self.clock = clock
        # sleep(seconds) -> True when interrupted (stop requested)
        self.sleep = sleep or (lambda s: (time.sleep(s), False)[1])
        self.rng = rng
        self._secrets: tuple[str, ...] = ()
        # Not before this (monotonic) may the next request go: a server's Retry-After holds
        # across cycles, not only between the retries of one request.
        self.not_before: float | None = None
        self.inflight_since: float | None = None  # monotonic start of the request on the wire
        # Called after every attempt with its Outcome (ok or not), so health follows the
        # uploader while a cycle is still retrying, not only when it ends.
        self.on_attempt: Callable[[Outcome], None] = lambda out: None

    def scrub(self, text: str) -> str:
        """Remove the token and URL credentials from a message before it is logged or stored."""
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def post(self, body: Body, token: str | None, *, deadline: float | None = None,
             retries: bool = True) -> Outcome:
        """POST ``body``; retries per policy unless ``retries`` is False. Never raises for network
        or HTTP problems. ``deadline`` (monotonic) bounds every wait and every request timeout."""
        p = urlsplit(self.url)
        # The query may carry a key too (some proxies want ?token=); messages never show it.
        self._secrets = tuple(s for s in (token, p.password, p.query) if s)
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson",
                   "User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        attempts = self.policy.max_attempts if retries else 1
        attempt = 0
        while True:
            attempt += 1
            timeout = self.timeout
            if deadline is not None:
                left = deadline - self.clock()
                if left <= 0:
                    return Outcome(STOPPED, message="out of time", attempts=attempt - 1)
                timeout = min(timeout, left)
            self.inflight_since = self.clock()
            try:
                kind, retryable, reason, status, message, retry_after, cause = self._attempt(body, headers, timeout)
            finally:
                self.inflight_since = None
            if kind == OK:
                out = Outcome(OK, status, attempts=attempt)
                self._notify(out)
                return out
            self._count(reason)
            if retry_after is not None and retry_after > 0:
                self.not_before = self.clock() + min(retry_after, self.policy.max_retry_after)
            wait = None
            if retryable and retries and self.policy.should_retry(attempt):
                wait = self.policy.wait_after(attempt, retry_after, self.rng() if self.rng else None)
                if deadline is not None and self.clock() + wait >= deadline:
                    wait = None  # the wait would outlast the cycle: give up now, data stays spooled
            final = Outcome(kind, status, reason, message,
                            attempt, cause)
            self._notify(final)
            if wait is None:
                tail = "not retried" if not retryable else f"gave up after {attempt} attempt(s)"
                # The one ERROR line of a failed batch: the deployment guide's troubleshooting
                # greps the journal for "upload" and "error". Retries before it stay warnings.
                log.error("upload error: %s; %d samples stay in the spool (%s, %s)", message, body.samples,
                          tail, redact_url(self.url))
                return final
            log.warning("upload to %s: attempt %d/%d failed: %s, %d samples; retrying in %.1fs",
                        redact_url(self.url), attempt, attempts, message, body.samples, wait)
            if self.sleep(wait):
                return Outcome(STOPPED, status, reason, f"{message}; stopped", attempt, cause)

    def _notify(self, out: Outcome) -> None:
        try:
            self.on_attempt(out)
        except Exception:  # reporting must never cost an upload
            log.exception("upload: reporting an attempt failed")

    def _attempt(self, body: Body, headers: dict, timeout: float):
        """One POST: (kind, retryable, reason, status, message, retry_after_seconds, cause)."""
        t_sent = self.wall()
        host = failures.host_of(self.url)
        try:
            resp = self.client.request("POST", self.url, body=body.data, headers=headers, budget=timeout,
                                       max_body=MAX_ANSWER_BYTES)
        except boundedhttp.FetchError as e:
            text = self.scrub(str(e))
            cause = failures.cause_of(e.kind, text)
            message = failures.describe(cause, host, timeout, text)
            if e.kind == boundedhttp.TLS:
                return FATAL, False, "tls", None, message, None, cause
            if e.kind == boundedhttp.TIMEOUT:
                return GAVE_UP, True, "timeout", None, message, None, cause
            reason = "connect" if e.kind == boundedhttp.CONNECT else "other"
            return GAVE_UP, True, reason, None, message, None, cause
        t_recv = self.wall()
        if self.timekeeper is not None:
            try:
                self.timekeeper.observe_response(resp.headers.get("Date"), t_sent, t_recv)
            except Exception:  # the clock check must never cost an upload
                log.exception("timekeeper.observe_response failed")
        status = resp.status
        if 200 <= status < 300:
            return OK, False, "", status, "", None, None
        text = " ".join(resp.body.decode("utf-8", "replace").split())[:_MAX_ERROR_TEXT]
        kind, retryable, reason = retry.decide(status, text)
        if kind == AUTH and status not in (401, 403):  # vmauth's 400 for an unknown token
            text = f"server refused the token ({status})" + (f": {text}" if text else "")
            return kind, False, reason, status, self.scrub(text), None, failures.HTTP
        if 300 <= status < 400:
            text = f"redirect to {redact_url(resp.headers.get('Location', ''))}; fix remote.url"
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), t_recv) if retryable else None
        what = f"HTTP {status}" + (f" ({text})" if text else "")
        if retry_after is not None:
            what += f", Retry-After {retry_after:g}s"
        return kind, retryable, reason, status, self.scrub(what), retry_after, failures.HTTP

    def _count(self, reason: str) -> None:
        if self.selfmetrics is not None:
            self.selfmetrics.inc(FAILURES, 1, {"reason": reason})

    def close(self) -> None:
        self.client.close()
