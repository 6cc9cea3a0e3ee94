"""Row format of the spool: one zlib blob per collection batch.

Decompressed, a row is ``<series JSON>\n<values>[\n<offsets>]``:

- series JSON: one ``[name, label1, value1, label2, value2, ...]`` entry per sample;
- values: ``repr`` of each float, ``.0`` dropped, comma-separated (exact, and smaller
  compressed than float64 bytes on realistic batches);
- offsets: only when some sample carries its own timestamp: ``ts_ms - wall_ms`` per sample.

The series part is the bulk of a batch (16 KB for 300 node_exporter-style series) and rarely
changes between cycles, so rows lean on a dictionary: the series JSON and values of an earlier
batch, stored once in their own table. A row whose series are exactly the dictionary's leaves
them out (format 2) and compresses its values against the dictionary's; any other row carries
its series, compressed against the dictionary's (format 1). A 300-sample row shrinks from
3.3 KB to 1.1 KB, which saves a 512-byte page in every commit.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from belabox_metrics.samples import Labels, Sample

INLINE, SHARED = 1, 2  # first byte: series in the row, or the dictionary's
# zlib looks back at most 32 KiB, so a longer preset dictionary is dead weight; the match window
# slides with the input, so the *start* of the series JSON is what stays useful.
_ZDICT_BYTES = 32 * 1024 - 262
_LEVEL = 9  # a few hundred samples per commit: the CPU is nothing, every byte is flash wear

Series = tuple[str, Labels]


class CodecError(ValueError):
    """A row that cannot be decoded (bit rot, a foreign format, a missing dictionary)."""


# Stored dictionaries: this byte, a CRC-32 of the payload (every row of a dictionary depends on
# it and SQLite checks no content), then the payload zlib'd: 16 KB shrink to 3 KB, a smaller
# target for a garbled block and fewer bytes per new dictionary.
_DICT_FORMAT = 2


@dataclass(frozen=True)
class Dictionary:
    series: bytes  # series JSON of the batch it was made from
    values: bytes  # that batch's values text

    def to_bytes(self) -> bytes:
        payload = self.series + b"\n" + self.values
        return (bytes((_DICT_FORMAT,)) + zlib.crc32(payload).to_bytes(4, "big")
                + zlib.compress(payload, _LEVEL))

    @classmethod
    def from_bytes(cls, data: bytes) -> Dictionary:
        data = bytes(data)
        if data[:1] == b"[":  # schema version 1: plain, no CRC
            payload = data
        else:
            try:
                payload = zlib.decompress(data[5:]) if data[:1] == bytes((_DICT_FORMAT,)) else b""
            except zlib.error:
                payload = b""
            if not payload or zlib.crc32(payload) != int.from_bytes(data[1:5], "big"):
                raise CodecError("damaged dictionary")
        series, _, values = payload.partition(b"\n")
        return cls(series, values)


def series_json(samples: Sequence[Sample]) -> bytes:
    """The series part of a row: what decides whether a row can share its dictionary's."""
    # ensure_ascii: \u escapes carry any str through, lone surrogates from undecodable sysfs
    # names included; real label values are ASCII, so it costs nothing.
    names = [[s.name, *[x for kv in s.labels for x in kv]] for s in samples]
    for e in names:
        if not all(isinstance(x, str) for x in e):
            raise TypeError(f"names and labels must be strings: {e[:5]!r}")
    return json.dumps(names, separators=(",", ":")).encode()


def values_text(samples: Sequence[Sample]) -> bytes:
    text = ",".join([repr(float(s.value)) for s in samples]) + ","
    # repr never writes other trailing zeros, so ".0," only ever ends an integral value
    return text.replace(".0,", ",")[:-1].encode()


def make_dictionary(samples: Sequence[Sample], series: bytes) -> Dictionary:
    return Dictionary(series, values_text(samples))


def encode(samples: Sequence[Sample], wall_ms: int, series: bytes, zdict: Dictionary | None) -> bytes:
    """Compress one batch; ``series`` is ``series_json(samples)`` (the caller needs it too)."""
    parts = [values_text(samples)]
    offsets = [s.ts_ms - wall_ms if s.ts_ms else 0 for s in samples]
    if any(offsets):
        parts.append(",".join(map(str, offsets)).encode())
    if zdict is not None and series == zdict.series:
        fmt, preset = SHARED, zdict.values
    else:
        fmt, preset = INLINE, zdict.series[:_ZDICT_BYTES] if zdict is not None else b""
        parts.insert(0, series)
    comp = zlib.compressobj(_LEVEL, zlib.DEFLATED, 15, 9, zdict=preset) if preset else \
        zlib.compressobj(_LEVEL, zlib.DEFLATED, 15, 9)
    return bytes((fmt,)) + comp.compress(b"\n".join(parts)) + comp.flush()


class Decoder:
    """Turns rows back into resolved Samples. Keeps a few decoded series tables: consecutive
    batches share theirs, so names and label tuples are parsed once, not once per row."""

    def __init__(self, cache_size: int = 8):
        self._series: OrderedDict[bytes, tuple[Series, ...]] = OrderedDict()
        self._size = cache_size

    def decode(self, blob: bytes, wall_ms: int, zdict: Dictionary | None) -> tuple[Sample, ...]:
        try:
            fmt = blob[0] if blob else None
            if fmt == SHARED and zdict is not None:
                preset = zdict.values
            elif fmt == INLINE:
                preset = zdict.series[:_ZDICT_BYTES] if zdict is not None else b""
            else:
                raise CodecError(f"unknown row format {blob[:1].hex() or 'empty'}"
                                 + (" or missing dictionary" if fmt == SHARED else ""))
            dec = zlib.decompressobj(zdict=preset) if preset else zlib.decompressobj()
            raw = dec.decompress(memoryview(blob)[1:])
            if not dec.eof:
                raise CodecError("truncated row")
            parts = raw.split(b"\n")
            if fmt == SHARED:
                parts.insert(0, zdict.series)
            series = self._series_table(parts[0])
            values = list(map(float, parts[1].split(b","))) if series else []
            if len(values) != len(series):
                raise CodecError(f"{len(series)} series but {len(values)} values")
            if len(parts) > 2:
                stamps = [wall_ms + int(o) for o in parts[2].split(b",")]
                if len(stamps) != len(series):
                    raise CodecError("offset count does not match")
                return tuple([Sample(nm, lb, v, ts) for (nm, lb), v, ts in zip(series, values, stamps, strict=True)])
            return tuple([Sample(nm, lb, v, wall_ms) for (nm, lb), v in zip(series, values, strict=True)])
        except CodecError:
            raise
        except (zlib.error, ValueError, TypeError, IndexError, UnicodeDecodeError) as e:
            raise CodecError(f"damaged row: {e}") from None

    def _series_table(self, raw: bytes) -> tuple[Series, ...]:
        hit = self._series.get(raw)
        if hit is not None:
            self._series.move_to_end(raw)
            return hit
        entries = json.loads(raw)
        known: dict[tuple, Series] = {}
        table = []
        for e in entries:
            key = tuple(e)
            s = known.get(key)
            if s is None:
                name = e[0]
                if not isinstance(name, str) or len(e) % 2 != 1:
                    raise CodecError("malformed series entry")
                s = known[key] = (name, tuple(zip(e[1::2], e[2::2], strict=True)))
            table.append(s)
        out = tuple(table)
        self._series[raw] = out
        if len(self._series) > self._size:
            self._series.popitem(last=False)
        return out
