"""The store's replay under hostile bytes (hypothesis): random files, flipped bytes,
truncation, duplicated regions. Replay never raises, and every record whose bytes are
intact, before and after a damaged region, comes back in file order."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.leases.journal import Journal, frame, read_store, scan_records
from appliance.leases.model import Lease, LeaseState
from appliance.leases.table import LeaseTable

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def leases(draw, min_size: int = 1, max_size: int = 25) -> list[Lease]:
    """Distinct addresses, so that every record's bytes are unique in the file (times are
    finite: the codec refuses any other)."""
    n = draw(st.integers(min_size, max_size))
    times = st.floats(allow_nan=False, allow_infinity=False)
    ips = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n, unique=True))
    out = []
    for ip in ips:
        out.append(Lease(
            ip=ip, mac=draw(st.binary(max_size=16)),
            client_id=draw(st.none() | st.binary(max_size=40)),
            state=draw(st.sampled_from(list(LeaseState))),
            start=draw(times), expires=draw(times),
            pool=draw(_names), hostname=draw(st.none() | _names),
            relay_info=draw(st.none() | st.binary(max_size=40)),
            seq=draw(st.integers(0, 2**64 - 1)), origin=draw(_names)))
    return out


def _layout(records: list[Lease]) -> tuple[bytes, list[tuple[int, int]]]:
    frames = [frame(x) for x in records]
    spans, pos = [], 0
    for f in frames:
        spans.append((pos, pos + len(f)))
        pos += len(f)
    return b"".join(frames), spans


def _scan(data: bytes, chunk: int = 1 << 20):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "leases.journal"
        p.write_bytes(data)
        got: list[Lease] = []
        scan = scan_records(p, got.append, chunk=chunk)
    return got, scan


def _is_subsequence(needles: list[Lease], haystack: list[Lease]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needles)


@FUZZ
@given(st.binary(max_size=2000), st.integers(8, 64))
def test_random_bytes_never_raise(data, chunk) -> None:
    got, scan = _scan(data, chunk)
    assert scan.total == len(data)
    assert 0 <= scan.good_end <= len(data)
    assert scan.records == len(got)


@FUZZ
@given(leases(), st.data())
def test_flipped_bytes_lose_only_the_records_they_hit(records, data) -> None:
    raw, spans = _layout(records)
    buf = bytearray(raw)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                               min_size=1, max_size=6))
    for pos, mask in flips:
        buf[pos] ^= mask
    intact = [raw[a:b] == bytes(buf[a:b]) for a, b in spans]
    # The same result whether the file is read in one piece or in small chunks.
    chunk = data.draw(st.sampled_from([1 << 20, 64, 13]))
    got, scan = _scan(bytes(buf), chunk)
    assert got == [x for x, ok in zip(records, intact, strict=True) if ok]
    broken = [i for i, ok in enumerate(intact) if not ok]
    # Damage = a valid record after a bad one; bad bytes at the end are the tail.
    assert bool(scan.damaged) == (bool(broken) and any(intact[broken[0]:]))
    assert (scan.tail > 0) == (not intact[-1])
    assert scan.bad_bytes == sum(b - a for (a, b), ok in zip(spans, intact, strict=True)
                                 if not ok)


@FUZZ
@given(leases(), st.data())
def test_truncation_is_a_torn_tail(records, data) -> None:
    raw, spans = _layout(records)
    cut = data.draw(st.integers(0, len(raw)))
    got, scan = _scan(raw[:cut])
    whole = [x for x, (_a, b) in zip(records, spans, strict=True) if b <= cut]
    assert got == whole
    assert not scan.damaged
    assert scan.good_end == max([b for _a, b in spans if b <= cut], default=0)


@FUZZ
@given(leases(min_size=2), st.data())
def test_duplicated_region_keeps_every_intact_record(records, data) -> None:
    raw, spans = _layout(records)
    a = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(a + 1, len(raw)))
    c = data.draw(st.integers(0, len(raw)))
    mutated = raw[:c] + raw[a:b] + raw[c:]
    got, _ = _scan(mutated)
    # Records wholly before or after the insertion point are intact (shifted or not).
    intact = [x for x, (s, e) in zip(records, spans, strict=True) if e <= c or s >= c]
    assert _is_subsequence(intact, got)
    assert all(x in records for x in got)  # nothing invented


@FUZZ
@given(leases(min_size=2, max_size=12), st.data())
def test_replay_after_damage_recovers_the_rest_and_rebuilds(records, data) -> None:
    """The daemon's path: replay through the damage, rebuild, replay again clean."""
    with tempfile.TemporaryDirectory() as d:
        j = Journal(d)
        j.replay(lambda x: None)
        for i in range(0, len(records), 3):
            j.append(records[i:i + 3])
        j.sync()
        j.close()
        raw, spans = _layout(records)
        p = Path(d) / "leases.journal"
        assert p.read_bytes() == raw
        buf = bytearray(raw)
        pos = data.draw(st.integers(0, len(raw) - 1))
        buf[pos] ^= data.draw(st.integers(1, 255))
        p.write_bytes(bytes(buf))
        hit = next(i for i, (s, e) in enumerate(spans) if s <= pos < e)
        j = Journal(d)
        got: list[Lease] = []
        j.replay(got.append)
        assert got == records[:hit] + records[hit + 1:]
        if hit == len(records) - 1:
            assert not j.damage and j.torn_bytes == spans[hit][1] - spans[hit][0]
        else:
            assert [s.path.name for s in j.damage] == ["leases.journal"]
            kept = j.rebuild(got, 1_700_000_000.0)
            assert kept[0].read_bytes() == bytes(buf)  # the damaged file, kept as it was
        j.close()
        expected = LeaseTable()
        for x in got:
            expected.load(x)
        assert read_store(d) == expected.by_ip  # what `dhcp-hotbackup leases` shows
        j = Journal(d)
        again: list[Lease] = []
        j.replay(again.append)
        assert not j.damage and again == got
        j.close()
