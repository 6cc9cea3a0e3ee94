"""Field history in the spool: chunks, retention, space pressure (history before pending), the ring,
and the document's events."""

from __future__ import annotations

import json
import random
import zlib

from belabox_metrics.config import StorageConfig
from belabox_metrics.samples import Batch, sample
from belabox_metrics.spool.history import events as history_events
from belabox_metrics.spool.history import persist as h
from belabox_metrics.spool.history import query as hq
from belabox_metrics.spool.store import Spool
from belabox_metrics.timeline.screen import render_screen

T0 = 1_750_000_000_000


def key_batch(i: int, *, wall_ms: int | None = None, boottime_ns: int | None = None, synced: bool = True,
              boot: str = "boot-a", extra: tuple = (), failures: float = 0, usb: float = 0) -> Batch:
    samples = (
        sample("belabox_modem_rsrp_dbm", -90 - i % 7, {"modem": "m0", "interface": "wwan0"}),
        sample("node_memory_MemAvailable_bytes", 5e9 - i * 1000),
        sample("node_network_transmit_bytes_total", i * 125_000, {"device": "wwan0"}),
        sample("node_network_transmit_bytes_total", i, {"device": "lo"}),  # not a key series
        sample("node_load1", 0.5),  # not a key series
        sample(h.UPLOAD_FAILURES, failures, {"reason": "timeout"}),
        sample(h.KERNEL_EVENTS, usb, {"kind": "usb_disconnect", "device": "3-1"}),
        *extra,
    )
    wall = T0 + i * 10_000 if wall_ms is None else wall_ms
    return Batch(samples, wall, boot, i * 10**10 if boottime_ns is None else boottime_ns, synced)


def open_spool(tmp_path, mb: int = 64) -> Spool:
    return Spool.open(str(tmp_path / "spool" / "metrics.db"), StorageConfig(max_size_mb=mb, commit_interval=0.0))


def test_chunk_keeps_key_series_and_event_counters_only():
    b = h.ChunkBuilder()
    for i in range(30):
        b.add(key_batch(i))
    start, end, blob = b.encode()
    assert (start, end) == (T0, T0 + 29 * 10_000)
    c = h.decode_chunk(blob)
    names = {(n, dict(lb).get("device")) for n, lb in c.series}
    assert ("node_network_transmit_bytes_total", "wwan0") in names
    assert ("node_network_transmit_bytes_total", "lo") not in names
    assert all(n != "node_load1" for n, _ in c.series)
    assert h.UPLOAD_FAILURES in {n for n, _ in c.series} and h.KERNEL_EVENTS in {n for n, _ in c.series}
    assert len(c.stamps) == 30 and all(len(col) == 30 for col in c.values)
    # Compact: 30 batches of 6 kept series in well under 100 bytes per batch.
    assert len(blob) < 30 * 100, len(blob)


def test_a_series_that_appears_later_is_aligned_with_nulls():
    b = h.ChunkBuilder()
    b.add(key_batch(0))
    b.add(key_batch(1, extra=(sample("belabox_soc_temp_celsius", 55.0),)))
    c = h.decode_chunk(b.encode()[2])
    col = c.values[[n for n, _ in c.series].index("belabox_soc_temp_celsius")]
    assert col == [None, 55.0]


def test_damaged_chunk_is_a_codec_error():
    import pytest

    from belabox_metrics.spool.codec import CodecError
    with pytest.raises(CodecError):
        h.decode_chunk(b"garbage")
    with pytest.raises(CodecError):
        h.decode_chunk(zlib.compress(b'{"v": 99}'))


def test_chunk_values_round_trip_exactly_and_format_1_still_reads():
    rng = random.Random(5)
    b = h.ChunkBuilder()
    extra_values = [1.5, 1e-05, 24780029952.0, 1.8446744073709552e19, 0.1 + 0.2, float("nan"), 1e300, -3.25]
    batches = []
    for i in range(60):
        v = extra_values[i % len(extra_values)] if i % 3 else round(rng.uniform(-100, 100), rng.randrange(8))
        batches.append(key_batch(i, boottime_ns=i * 10**10 + rng.randrange(10**6),
                                 extra=(sample("belabox_soc_temp_celsius", v),) if i % 5 else ()))
        b.add(batches[-1])
    want = [list(col) for col in b.values]
    c = h.decode_chunk(b.encode()[2])
    got = dict(zip(c.series, c.values, strict=True))
    for s_, col in zip(b.index, want, strict=True):
        assert [repr(x) for x in got[s_]] == [repr(x) for x in col], s_  # repr: nan and -0.0 too
    assert [st.wall_ms for st in c.stamps] == [x.wall_ms for x in batches]
    assert [st.boottime_ns for st in c.stamps] == [x.boottime_ns // 10**6 * 10**6 for x in batches]  # ms
    # A row written by an earlier version (absolute values, nanoseconds) reads as it did.
    old = {"v": 1, "boots": ["boot-a"], "b": [[T0, 123_456_789, 1, 0]], "s": [["node_load1"]], "p": [[0.5]]}
    c1 = h.decode_chunk(zlib.compress(json.dumps(old).encode()))
    assert (c1.stamps[0].boottime_ns, c1.values) == (123_456_789, [[0.5]])


def test_an_hour_at_ten_seconds_is_stored_in_far_fewer_bytes_than_absolute_values():
    # The hourly history write is most of what the card sees with the uplink up (README
    # "Footprint"): differences from the previous value compress far better than the values.
    rng = random.Random(9)
    b = h.ChunkBuilder()
    temp, rx = 45.0, 0
    for i in range(360):
        temp = round(temp + rng.uniform(-0.3, 0.3), 2)
        rx += rng.randrange(200_000, 300_000)
        b.add(key_batch(i, boottime_ns=i * 10**10 + rng.randrange(10**7), extra=(
            sample("belabox_soc_temp_celsius", temp), sample("node_network_receive_bytes_total", float(rx),
                                                              {"device": "wwan0"}))))
    blob = b.encode()[2]
    doc = json.loads(zlib.decompress(blob))
    absolute = {"v": 1, "boots": doc["boots"], "b": b.stamps, "s": doc["s"], "p": b.values}
    as_before = zlib.compress(json.dumps(absolute, separators=(",", ":")).encode(), 9)
    assert len(blob) < 0.7 * len(as_before), (len(blob), len(as_before))


def test_a_damaged_scale_is_a_codec_error_not_a_huge_number():
    import pytest

    from belabox_metrics.spool.codec import CodecError
    doc = {"v": 2, "boots": ["b"], "w": [T0], "t": [0], "c": [1], "i": [0], "s": [["x"]], "k": [10**9], "p": [[1]]}
    with pytest.raises(CodecError, match="scale"):
        h.decode_chunk(zlib.compress(json.dumps(doc).encode()))


def _write(sp: Spool, first: int, n: int, keep_from: int = 0) -> None:
    b = h.ChunkBuilder()
    for i in range(first, first + n):
        b.add(key_batch(i))
    start, end, blob = b.encode()
    with sp.history_db() as conn:
        assert h.write_chunk(conn, start, end, blob, keep_from)


def _history_rows(sp: Spool) -> list[tuple[int, int]]:
    with sp.history_db() as conn:
        return conn.execute("SELECT start_ms, end_ms FROM history ORDER BY id").fetchall()


def test_retention_forgets_old_chunks_and_marks(tmp_path):
    sp = open_spool(tmp_path)
    with sp.history_db() as conn:
        h.add_mark(conn, T0, "agent", "agent started")
    _write(sp, 0, 10)
    _write(sp, 100, 10, keep_from=T0 + 50 * 10_000)
    assert _history_rows(sp) == [(T0 + 100 * 10_000, T0 + 109 * 10_000)]
    with sp.history_db() as conn:
        assert h.read_marks(conn, 0, 2**62) == []
    sp.close()


def test_history_survives_reopen_and_reads_read_only(tmp_path):
    sp = open_spool(tmp_path)
    _write(sp, 0, 20)
    with sp.history_db() as conn:
        h.add_mark(conn, T0 + 5, "agent", "agent started")
    sp.close()
    ro = Spool.open_readonly(sp.path, StorageConfig())
    doc = json.loads(hq.to_bytes(hq.from_spool(ro, T0 - 1000, T0 + 3600_000)))
    ro.close()
    rsrp = [s for s in doc["series"] if s["name"] == "belabox_modem_rsrp_dbm"]
    assert len(rsrp) == 1 and len(rsrp[0]["points"]) == 20
    assert [e["text"] for e in doc["events"] if e["kind"] == "agent"] == ["agent started"]


def _noisy(i: int, rnd: random.Random, n: int = 40, name: str = "belabox_modem_snr_db") -> Batch:
    """A key batch with n series of random values: compresses poorly, fills the file fast."""
    return key_batch(i, extra=tuple(sample(name, rnd.random(), {"modem": f"m{j}"}) for j in range(n)))


def _history_bytes(sp: Spool) -> int:
    with sp.history_db() as conn:
        return conn.execute("SELECT coalesce(sum(length(data)), 0) FROM history").fetchone()[0]


def _fill_pending(sp: Spool, rnd: random.Random, first: int, until) -> int:
    n = first
    while not until():
        for _ in range(20):
            sp.append(_noisy(n, rnd, 100, "x_pad"))
            n += 1
        sp.maybe_commit(float(n))
        assert n < first + 20_000
    return n - first


def test_space_pressure_drops_history_before_any_pending_batch(tmp_path):
    rnd = random.Random(1)
    sp = open_spool(tmp_path, mb=1)
    batches = [_noisy(i, rnd) for i in range(200)]
    while _history_bytes(sp) < 450_000:  # about half the file
        b = h.ChunkBuilder()
        for x in batches:
            b.add(x)
        start, end, blob = b.encode()
        with sp.history_db() as conn:
            assert h.write_chunk(conn, start + len(_history_rows(sp)), end, blob, 0)
    before = _history_rows(sp)
    assert len(before) >= 3
    # Pending batches until history has had to give way (and some more).
    n = _fill_pending(sp, rnd, 0, lambda: len(_history_rows(sp)) < len(before) - 1)
    st = sp.stats()
    assert st.dropped.get("size_cap", 0) == 0, st.dropped  # not one pending sample went
    assert st.pending_batches == n
    # The oldest history went first: what is left is the newest.
    assert _history_rows(sp) == before[len(before) - len(_history_rows(sp)):]
    sp.close()


def test_a_full_spool_refuses_history_rather_than_dropping_pending(tmp_path):
    rnd = random.Random(2)
    sp = open_spool(tmp_path, mb=1)
    _fill_pending(sp, rnd, 0, lambda: sp.stats().dropped.get("size_cap", 0) > 0)
    pending = sp.stats().pending_samples
    b = h.ChunkBuilder()
    for i in range(300):
        b.add(_noisy(i, rnd))
    start, end, blob = b.encode()
    with sp.history_db() as conn:
        stored = h.write_chunk(conn, start, end, blob, 0)
    assert not stored and _history_rows(sp) == []
    assert sp.stats().pending_samples == pending
    sp.close()


def test_ring_is_bounded_by_span_and_bytes():
    r = h.Ring(span_s=60, max_bytes=10**9)
    for i in range(30):
        r.add(key_batch(i))  # 10 s apart: only the last minute stays
    walls = [e.stamp.wall_ms for e in r.snapshot()]
    assert walls[0] >= walls[-1] - 60_000 and len(walls) == 7
    small = h.Ring(span_s=3600, max_bytes=2000)
    for i in range(100):
        small.add(key_batch(i))
    assert small.bytes <= 2000 and 0 < len(small) < 100
    got = list(h.decode_ring(small.snapshot()))
    assert got[-1][0].wall_ms == T0 + 99 * 10_000
    assert any(s.name == "node_load1" for s in got[-1][1])  # every series, not only key ones


def test_document_events_clock_and_unverified_periods():
    a = hq.Assembler(T0 - 1000, T0 + 3600_000)
    r = h.Ring()
    modem = sample("belabox_modem_info", 1, {"modem": "m0", "interface": "wwan0", "model": "EG25-G"})
    for i in range(40):
        failures = 0 if i < 10 else (3 if i < 13 else 3)  # 3 failures in a run
        usb = 1 if i >= 20 else 0
        step = 30_000 if i >= 30 else 0  # the wall clock jumps 30 s ahead at batch 30
        extra = (modem,) if not 15 <= i < 18 else ()
        r.add(key_batch(i, wall_ms=T0 + i * 10_000 + step, boottime_ns=i * 10**10, synced=not 5 <= i < 8,
                        failures=min(failures, i - 9) if i >= 10 else 0, usb=usb, extra=extra))
    a.add_ring(r.snapshot())
    doc = json.loads(hq.to_bytes(a.document([(T0 + 1, "agent", "agent started")], device_id="bx")))
    kinds = [(e["kind"], e["text"]) for e in doc["events"]]
    assert ("agent", "agent started") in kinds
    assert ("upload", "upload failed: timed out (x3)") in kinds
    assert ("usb", "usb disconnect 3-1") in kinds
    assert ("clock", "wall clock stepped +30 s") in kinds
    assert ("modem", "modem removed: wwan0 (EG25-G)") in kinds and ("modem", "modem added: wwan0 (EG25-G)") in kinds
    assert doc["clock_unverified"] == [[(T0 + 50_000) / 1000, (T0 + 80_000) / 1000]]
    assert doc["device_id"] == "bx"
    # Event counters are events, not plotted rows, unless asked for.
    assert h.UPLOAD_FAILURES not in {s["name"] for s in doc["series"]}
    assert "node_load1" not in {s["name"] for s in doc["series"]}
    text = render_screen(doc, 80, 24)
    assert len(text.splitlines()) <= 24 and "wwan0" in text


def test_series_pattern_adds_other_series():
    a = hq.Assembler(T0 - 1000, T0 + 3600_000, ["node_load*"])
    r = h.Ring()
    for i in range(5):
        r.add(key_batch(i))
    a.add_ring(r.snapshot())
    names = {s["name"] for s in a.document()["series"]}
    assert "node_load1" in names and "belabox_modem_rsrp_dbm" in names


def test_thinning_keeps_the_envelope_and_counter_ends():
    from array import array
    ts = array("q", [i * 1000 for i in range(10_000)])
    tt, tv = history_events.thin(ts, array("d", [float(i % 10) for i in range(10_000)]), 200, counter=False)
    assert len(tt) == len(tv) <= 200 and min(tv) == 0 and max(tv) == 9 and tt == sorted(tt)
    ct, cv = history_events.thin(ts, array("d", [float(i) for i in range(10_000)]), 200, counter=True)
    assert len(ct) <= 200 and (ct[-1], cv[-1]) == (9_999_000, 9999.0)


def test_pending_batches_fill_what_history_does_not_cover(tmp_path):
    sp = open_spool(tmp_path)
    _write(sp, 0, 10)  # batches 0..9 as history
    for i in range(5, 20):  # 5..9 overlap, 10..19 only pending
        sp.append(key_batch(i))
    sp.flush()
    doc = json.loads(hq.to_bytes(hq.from_spool(sp, T0 - 1000, T0 + 3600_000)))
    rsrp = next(s for s in doc["series"] if s["name"] == "belabox_modem_rsrp_dbm")
    assert [p[0] for p in rsrp["points"]] == [(T0 + i * 10_000) / 1000 for i in range(20)]
    sp.close()


def test_failures_before_a_fresh_series_first_point_and_an_unclean_stop(tmp_path):
    a = hq.Assembler(T0 - 600_000, T0 + 3600_000)
    r = h.Ring()
    for i in range(6):  # the agent started well inside the window, 2 failures already counted
        r.add(key_batch(i, failures=2))
    a.add_ring(r.snapshot())
    doc = json.loads(hq.to_bytes(a.document()))
    assert [e["text"] for e in doc["events"] if e["kind"] == "upload"] == ["upload failed: timed out (x2)"]

    from belabox_metrics.agent.history import AgentHistory
    sp = open_spool(tmp_path)
    first = AgentHistory(sp, 86400.0, wall=lambda: T0 / 1000)
    first.record_start(T0, "boot-a", "1.0")  # ... and then a power cut: no stop mark
    again = AgentHistory(sp, 86400.0, wall=lambda: T0 / 1000)
    again.record_start(T0 + 1000, "boot-b", "1.0")
    again.feed(key_batch(0))
    again.persist()
    again.record_stop(T0 + 2000)
    code, body = again.answer(f"since={T0 - 1000}&until={T0 + 60_000}")
    texts = [e["text"] for e in json.loads(body)["events"] if e["kind"] == "agent"]
    assert code == 200 and texts[1].startswith("agent started after an unclean stop") and texts[2] == "agent stopped"
    assert again.answer("since=x")[0] == 400
    sp.close()


def test_history_is_written_hourly_alone_and_rides_on_commits_every_ten_minutes(tmp_path):
    # A history write alone costs the card a journal commit, about a whole commit: every 10 min that
    # was 144 a day with the uplink up, the one case the card should barely be touched.
    from belabox_metrics.agent.history import AgentHistory
    sp = open_spool(tmp_path)
    now = [0.0]
    ah = AgentHistory(sp, 86400.0, monotonic=lambda: now[0], wall=lambda: T0 / 1000, interval=lambda: 3600.0)
    i = 0

    def minutes(m: float, committed: bool = False) -> int:
        nonlocal i
        end = now[0] + m * 60
        while now[0] < end:
            now[0] += 30
            ah.feed(key_batch(i))
            i += 1
            ah.maybe_persist(now[0], committed=committed)
        return len(_history_rows(sp))

    assert minutes(59) == 0  # uplink up: no commits, nothing written within the hour
    assert minutes(1.5) == 1  # the hour is up: one row alone
    assert minutes(9) == 1  # commits (uplink down) within 10 min of the last write: not yet
    assert minutes(1.5, committed=True) == 2  # then the next commit carries it
    assert minutes(5, committed=True) == 2
    ah.interval = lambda: 120.0  # a reload's storage.history_interval applies at once
    assert minutes(0.5) == 3  # over 2 min since the last write: at once
    assert minutes(1.5) == 3 and minutes(0.5) == 4
    sp.close()


def test_points_not_yet_written_are_in_the_agents_answer_beyond_the_rings_hour(tmp_path):
    # Writes are hours apart (storage.history_interval 3h): points older than the ring's hour but
    # newer than the last write exist only in the chunk being gathered, and /history must show them.
    from belabox_metrics.agent.history import AgentHistory
    sp = open_spool(tmp_path)
    wall = [T0 / 1000]
    ah = AgentHistory(sp, 86400.0, monotonic=lambda: 0.0, wall=lambda: wall[0])
    for i in range(3 * 360):  # 3 hours at 10 s, nothing written yet
        ah.feed(key_batch(i))
    wall[0] = (T0 + 3 * 3600_000) / 1000
    assert _history_rows(sp) == []
    code, body = ah.answer(f"since={T0}&until={T0 + 3 * 3600_000}&series=node_memory_MemAvailable_bytes")
    doc = json.loads(body)
    assert code == 200, doc
    pts = [p for s_ in doc["series"] if s_["name"] == "node_memory_MemAvailable_bytes" for p in s_["points"]]
    assert pts and min(p[0] for p in pts) < (T0 + 3600_000) / 1000, "the hours before the ring's are missing"
    sp.close()

