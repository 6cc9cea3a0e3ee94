"""The VictoriaMetrics ``/api/v1/import`` wire format: validation, grouping, JSON lines, gzip.

Pure: nothing here does I/O. The unit of work is a ``Part``, a range of one spool slice,
because the spool acknowledges ranges and a rejected request is bisected down to single
samples.

Format (anchors.md §3): one JSON object per line,
``{"metric":{"__name__":..,labels},"values":[..],"timestamps":[..]}``, timestamps in
Unix milliseconds. One series may span many lines and a line may carry many samples; VM
recommends 1K-10K samples per line, and the header of a line costs about as much as
twenty samples, so samples are grouped per series across every slice of a request, up
to ``chunk_size`` per line.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from belabox_metrics.samples import FUTURE_SLACK_MS, MIN_TS_MS, Sample, invalid_reason

# Labels the uploader owns; a sample's own labels of these names are replaced, never kept
# (tidewatch let a tag named device_id or __name__ override the real one: upstream W14).
RESERVED_LABELS = ("__name__", "device_id")

# gzip level 5: on these JSON lines it sends 11-16 % fewer bytes than level 1 for about 0.15 µs
# more CPU per sample (x86), and levels 6-9 gain 1-5 % more at 1.5-3x the CPU
# (tests/bench/bench_drain.py --levels). Cellular bytes are the scarcer resource.
DEFAULT_GZIP_LEVEL = 5


@dataclass(frozen=True, slots=True)
class Part:
    """Samples ``lo..hi`` of one spool slice, with the timekeeper's correction in ms."""

    slice: Any
    lo: int
    hi: int
    shift_ms: int = 0

    def __len__(self) -> int:
        return self.hi - self.lo

    def samples(self) -> Sequence[Sample]:
        s = self.slice.samples
        return s if self.lo == 0 and self.hi == len(s) else s[self.lo:self.hi]

    def as_slice(self) -> Any:
        """The spool slice to ack or drop for exactly this range."""
        return sub_slice(self.slice, self.lo, self.hi)


def whole(sl: Any, shift_ms: int = 0) -> Part:
    return Part(sl, 0, len(sl.samples), shift_ms)


def sub_slice(sl: Any, lo: int, hi: int) -> Any:
    """A Slice covering samples ``lo..hi`` of ``sl`` (indices relative to ``sl.samples``)."""
    n = len(sl.samples)
    if lo == 0 and hi == n:
        return sl
    nbytes = getattr(sl, "nbytes", 0)
    return dataclasses.replace(sl, start=sl.start + lo, end=sl.start + hi, samples=sl.samples[lo:hi],
                               nbytes=(nbytes * (hi - lo)) // n if n else 0)


def count(parts: Iterable[Part]) -> int:
    return sum(p.hi - p.lo for p in parts)


# --- validation ------------------------------------------------------------------------

_UNKNOWN_NOW_MS = 2**62  # far enough ahead that nothing is "in the future"

class Validator:
    """``samples.invalid_reason`` for every sample, with the name and label checks cached
    per series: they are the expensive part and a series is the same every cycle."""

    def __init__(self) -> None:
        self._good_series: set[tuple] = set()

    def split(self, parts: Iterable[Part], now_ms: int | None) -> tuple[list[Part], list[tuple[Part, str]]]:
        """(valid parts, [(single-sample part, reason)]): invalid samples are cut out of their part.
        ``now_ms`` None: the true time is unknown, so no sample counts as in the future."""
        if now_ms is None:
            now_ms = _UNKNOWN_NOW_MS
        good = self._good_series
        ts_lo, ts_hi = MIN_TS_MS, now_ms + FUTURE_SLACK_MS
        valid: list[Part] = []
        invalid: list[tuple[Part, str]] = []
        for part in parts:
            shift = part.shift_ms
            run_start = part.lo
            i = part.lo
            for s in part.samples():
                v = s.value
                ts = s.ts_ms + shift
                # (v - v) == 0.0 is False exactly for NaN and ±inf.
                if not (type(v) is float and (v - v) == 0.0 and ts_lo <= ts <= ts_hi
                        and (s.name, s.labels) in good):
                    reason = self._reason(s, ts, now_ms)
                    if reason is not None:
                        if i > run_start:
                            valid.append(Part(part.slice, run_start, i, shift))
                        invalid.append((Part(part.slice, i, i + 1, shift), reason))
                        run_start = i + 1
                i += 1
            if part.hi > run_start:
                valid.append(Part(part.slice, run_start, part.hi, shift) if run_start != part.lo else part)
        return valid, invalid

    def _reason(self, s: Sample, ts: int, now_ms: int) -> str | None:
        reason = invalid_reason(Sample(s.name, s.labels, s.value, ts), now_ms)
        # Remember a series whose name and labels are fine, even if this value or time is not.
        if reason not in ("bad_name", "bad_label") and \
                invalid_reason(Sample(s.name, s.labels, 0.0, MIN_TS_MS), now_ms) is None:
            if len(self._good_series) > 100_000:  # a cardinality explosion must not grow memory forever
                self._good_series.clear()
            self._good_series.add((s.name, s.labels))
        return reason


# --- encoding --------------------------------------------------------------------------

@dataclass(frozen=True)
class Body:
    data: bytes  # gzip
    raw_len: int
    samples: int
    lines: int


class Encoder:
    """JSON lines for a set of parts, grouped per series, at most ``chunk_size`` samples a line.

    The ``{"metric":{...},`` head of every series is built once and cached: it carries
    ``device_id`` and the extra labels, which beat the sample's own labels of those names.
    """

    def __init__(self, device_id: str, extra_labels: Mapping[str, str] | None = None,
                 chunk_size: int = 50, gzip_level: int = DEFAULT_GZIP_LEVEL):
        self.device_id = device_id
        # Names starting with "__" are reserved by Prometheus and VictoriaMetrics (samples.py).
        self.extra = {k: str(v) for k, v in (extra_labels or {}).items()
                      if k not in RESERVED_LABELS and not k.startswith("__")}
        self.chunk_size = max(1, int(chunk_size))
        self.gzip_level = gzip_level
        self._heads: dict[tuple, str] = {}

    def head(self, name: str, labels: tuple) -> str:
        key = (name, labels)
        h = self._heads.get(key)
        if h is None:
            metric: dict[str, str] = {"__name__": name}
            for k, v in labels:
                if k not in RESERVED_LABELS:
                    metric[k] = v
            metric.update(self.extra)
            if self.device_id:
                metric["device_id"] = self.device_id
            h = '{"metric":' + json.dumps(metric, ensure_ascii=False, separators=(",", ":")) + ',"values":'
            if len(self._heads) > 100_000:
                self._heads.clear()
            self._heads[key] = h
        return h

    def group(self, parts: Iterable[Part]) -> dict[tuple, tuple[list, list]]:
        """Series -> (values, timestamps), in slice time order so each line's timestamps ascend."""
        groups: dict[tuple, tuple[list, list]] = {}
        get = groups.get
        for part in sorted(parts, key=_part_order):
            shift = part.shift_ms
            for s in part.samples():
                key = (s.name, s.labels)
                g = get(key)
                if g is None:
                    g = groups[key] = ([], [])
                g[0].append(s.value)
                g[1].append(s.ts_ms + shift)
        return groups

    def lines(self, parts: Iterable[Part]) -> list[str]:
        # repr(float) is JSON for every finite float, and the Validator let only finite floats
        # through; join is twice as fast as json's encoder on the short lists of a line.
        out = []
        chunk = self.chunk_size
        join = ",".join
        for (name, labels), (values, stamps) in self.group(parts).items():
            head = self.head(name, labels)
            n = len(values)
            if n <= chunk:
                out.append(f'{head}[{join(map(repr, values))}],"timestamps":[{join(map(str, stamps))}]}}')
                continue
            for i in range(0, n, chunk):
                out.append(f'{head}[{join(map(repr, values[i:i + chunk]))}],'
                           f'"timestamps":[{join(map(str, stamps[i:i + chunk]))}]}}')
        return out

    def encode(self, parts: Sequence[Part]) -> Body:
        lines = self.lines(parts)
        raw = ("\n".join(lines) + "\n").encode() if lines else b""
        return Body(gzip_bytes(raw, self.gzip_level), len(raw), count(parts), len(lines))


def gzip_bytes(raw: bytes, level: int = DEFAULT_GZIP_LEVEL) -> bytes:
    # wbits 31 = gzip container; zlib directly skips gzip.compress's Python-level header code.
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(raw) + c.flush()


def _part_order(p: Part) -> tuple:
    sl = p.slice
    return (getattr(sl, "wall_ms", 0) + p.shift_ms, getattr(sl, "batch_id", 0), sl.start + p.lo)


# --- request sizing --------------------------------------------------------------------

def split_requests(parts: Sequence[Part], max_samples: int) -> list[list[Part]]:
    """Cut ``parts`` into requests of at most ``max_samples`` samples (parts cut where needed)."""
    max_samples = max(1, max_samples)
    out: list[list[Part]] = []
    cur: list[Part] = []
    room = max_samples
    for p in parts:
        lo = p.lo
        while lo < p.hi:
            take = min(room, p.hi - lo)
            cur.append(Part(p.slice, lo, lo + take, p.shift_ms) if (lo, lo + take) != (p.lo, p.hi) else p)
            lo += take
            room -= take
            if room == 0:
                out.append(cur)
                cur, room = [], max_samples
    if cur:
        out.append(cur)
    return out


def halve(parts: Sequence[Part]) -> tuple[list[Part], list[Part]]:
    """Two halves by sample count, for bisecting a rejected request."""
    total = count(parts)
    if total < 2:
        raise ValueError("cannot halve fewer than two samples")
    first = split_requests(parts, (total + 1) // 2)
    left = first[0]
    right = [p for chunk in first[1:] for p in chunk]
    return left, right
