"""Row format of the spool: one zlib blob per collection batch.

Decompressed, a row is ``<series JSON>\\n<values>[\\n<offsets>]``:

- series JSON: one ``[name, label1, value1, label2, value2, ...]`` entry per sample;
- values: ``repr`` of each float, comma-separated (exact, and 8 % smaller compressed than
  float64 bytes on realistic batches);
- offsets: only when some sample carries its own timestamp: ``ts_ms - wall_ms`` per sample.

The series part is the bulk of a batch (16 KB for 300 node_exporter-style series) and barely
changes between cycles, so rows are compressed against a preset dictionary (zlib ``zdict``)
holding the series JSON of an earlier batch: a 300-sample row shrinks from 3.3 KB to 1.5 KB,
which halves the flash writes per commit. Dictionaries live in their own table; a row names its
dictionary by id.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from collections.abc import Sequence

from belabox_metrics.samples import Labels, Sample

FORMAT = 1  # first byte of every row; a newer agent may add formats, an older one refuses them
# zlib looks back at most 32 KiB, so a longer dictionary is dead weight; the match window slides
# with the input, so the *start* of the series JSON is what stays useful.
MAX_DICT_BYTES = 32 * 1024 - 262
_LEVEL = 6  # level 9 saves < 1 % here at twice the CPU

Series = tuple[str, Labels]


class CodecError(ValueError):
    """A row that cannot be decoded (bit rot, a foreign format, a missing dictionary)."""


def series_json(samples: Sequence[Sample]) -> bytes:
    """The series part of a row: what the dictionary is built from."""
    return json.dumps([[s.name, *[x for kv in s.labels for x in kv]] for s in samples],
                      separators=(",", ":"), ensure_ascii=False).encode()


def encode(samples: Sequence[Sample], wall_ms: int, series: bytes, zdict: bytes | None) -> bytes:
    """Compress one batch; ``series`` is ``series_json(samples)`` (the caller needs it too)."""
    parts = [series, ",".join([repr(float(s.value)) for s in samples]).encode()]
    offsets = [s.ts_ms - wall_ms if s.ts_ms else 0 for s in samples]
    if any(offsets):
        parts.append(",".join(map(str, offsets)).encode())
    comp = zlib.compressobj(_LEVEL, zdict=zdict) if zdict else zlib.compressobj(_LEVEL)
    return bytes((FORMAT,)) + comp.compress(b"\n".join(parts)) + comp.flush()


class Decoder:
    """Turns rows back into resolved Samples. Keeps a few decoded series tables: consecutive
    batches share theirs, so names and label tuples are parsed once, not once per row."""

    def __init__(self, cache_size: int = 8):
        self._series: OrderedDict[bytes, tuple[Series, ...]] = OrderedDict()
        self._size = cache_size

    def decode(self, blob: bytes, wall_ms: int, zdict: bytes | None) -> tuple[Sample, ...]:
        try:
            if not blob or blob[0] != FORMAT:
                raise CodecError(f"unknown row format {blob[:1].hex() or 'empty'}")
            dec = zlib.decompressobj(zdict=zdict) if zdict else zlib.decompressobj()
            raw = dec.decompress(memoryview(blob)[1:])
            if not dec.eof:
                raise CodecError("truncated row")
            parts = raw.split(b"\n")
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
