"""Lease table, allocator and codec (pure)."""

from __future__ import annotations

import struct
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config.model import PoolConfig
from appliance.leases.allocator import Allocator
from appliance.leases.codec import LeaseDecodeError, decode_lease, encode_lease
from appliance.leases.model import MAX_FIELD, Lease, LeaseState, address_key, circuit_id
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

T0 = 1_700_000_000.0


def pools(first="192.0.2.10", last="192.0.2.19", reserved=()):
    return Pools.from_config((PoolConfig(
        name="lan", subnet=IPv4Network("192.0.2.0/24"),
        ranges=((IPv4Address(first), IPv4Address(last)),), reservations=reserved),))


def lease(ip: int, mac: bytes, state=LeaseState.BOUND, expires=T0 + 100) -> Lease:
    return Lease(ip=ip, mac=mac, client_id=None, state=state, start=T0, expires=expires,
                 pool="lan")


def mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, i])


def test_allocator_hands_out_every_address_once_then_none():
    p = pools()
    t = LeaseTable()
    a = Allocator(p, t)
    pool = p.pools[0]
    got = []
    while (ip := a.allocate(pool, T0)) is not None:
        t.commit(lease(ip, mac(len(got))))
        got.append(ip)
    assert sorted(got) == list(range(int(IPv4Address("192.0.2.10")),
                                     int(IPv4Address("192.0.2.19")) + 1))


def test_allocator_skips_reservations_and_reuses_freed_oldest_first():
    p = pools(reserved=((mac(99), IPv4Address("192.0.2.12")),))
    t = LeaseTable()
    a = Allocator(p, t)
    pool = p.pools[0]
    ips = []
    while (ip := a.allocate(pool, T0)) is not None:
        t.commit(lease(ip, mac(len(ips))))
        ips.append(ip)
    assert int(IPv4Address("192.0.2.12")) not in ips and len(ips) == 9
    first, second = ips[3], ips[5]
    t.commit(replace(t.get(first), state=LeaseState.RELEASED, expires=T0))
    t.commit(replace(t.get(second), state=LeaseState.RELEASED, expires=T0))
    assert a.allocate(pool, T0 + 1) == first
    t.commit(lease(first, mac(50)))
    assert a.allocate(pool, T0 + 1) == second


def test_expired_leases_are_reclaimed_and_reused():
    p = pools("192.0.2.10", "192.0.2.10")
    t = LeaseTable(origin="A")
    a = Allocator(p, t)
    t.commit(lease(a.allocate(p.pools[0], T0), mac(1), expires=T0 + 10))
    assert a.allocate(p.pools[0], T0 + 5) is None
    out = t.reclaim(T0 + 11)
    assert [x.state for x in out] == [LeaseState.EXPIRED] and out[0].seq == 2
    assert a.allocate(p.pools[0], T0 + 12) == int(IPv4Address("192.0.2.10"))


def test_allocation_cost_does_not_grow_with_the_pool():
    """O(1) amortised: allocating from a 60k pool that is nearly full costs no more per
    address than from an empty one (no scan of the pool per allocation)."""
    p = Pools.from_config((PoolConfig(
        name="lan", subnet=IPv4Network("198.18.0.0/16"),
        ranges=((IPv4Address("198.18.1.0"), IPv4Address("198.18.240.255")),)),))
    t = LeaseTable()
    a = Allocator(p, t)
    pool = p.pools[0]
    n = pool.size

    def timed(k: int) -> float:
        t0 = time.perf_counter()
        for i in range(k):
            ip = a.allocate(pool, T0)
            t.offer(lease(ip, i.to_bytes(6, "big"), LeaseState.OFFERED, T0 + 10))
        return (time.perf_counter() - t0) / k

    early = timed(2000)
    timed(n - 4000)
    late = timed(1000)
    assert late < early * 5 + 20e-6


def test_client_moving_to_a_new_address_frees_the_old_one():
    p = pools()
    t = LeaseTable()
    Allocator(p, t)
    a, b = int(IPv4Address("192.0.2.10")), int(IPv4Address("192.0.2.11"))
    t.commit(lease(a, mac(1)))
    t.commit(lease(b, mac(1)))
    assert t.holder(a, T0) is None and t.of_client(mac(1)).ip == b


leases_st = st.builds(
    Lease,
    ip=st.integers(0, 2**32 - 1), mac=st.binary(max_size=16),
    client_id=st.none() | st.binary(max_size=255),
    state=st.sampled_from(list(LeaseState)),
    start=st.floats(allow_nan=False, allow_infinity=False),
    expires=st.floats(allow_nan=False, allow_infinity=False),
    pool=st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255),
    hostname=st.none() | st.text(max_size=60),
    relay_info=st.none() | st.binary(max_size=255),
    seq=st.integers(0, 2**64 - 1), origin=st.text(max_size=30),
    relay=st.integers(0, 2**32 - 1),
)


@given(leases_st)
def test_lease_codec_round_trip(x: Lease):
    assert decode_lease(encode_lease(x)) == x


@given(st.binary(max_size=300))
def test_lease_decoder_only_raises_its_error(data: bytes):
    try:
        decode_lease(data)
    except LeaseDecodeError:
        pass


def test_record_written_before_the_relay_field_reads_as_relay_0():
    """A journal or peer record from before flag 8 (giaddr) existed decodes unchanged."""
    old = bytes.fromhex(
        "c0000264" "01" "02" "41d954fc40000000" "41d954fc4e100000" "0000000000000007"
        "06" "020000000001" "03" "6c616e" "01" "41" "06" "6c6170746f70")
    x = decode_lease(old)
    assert (x.ip, x.state, x.hostname, x.seq, x.relay) == \
        (int(IPv4Address("192.0.2.100")), LeaseState.BOUND, "laptop", 7, 0)
    assert encode_lease(x) == old  # and a lease not relayed is written the old way


def test_lease_fields_are_bounded_by_the_codec():
    x = lease(1, mac(1))
    assert decode_lease(encode_lease(replace(x, client_id=b"c" * MAX_FIELD))).client_id == \
        b"c" * MAX_FIELD
    for field, value in (("client_id", b"c" * 256), ("relay_info", b"r" * 256),
                         ("hostname", "h" * 256)):
        try:
            encode_lease(replace(x, **{field: value}))
        except ValueError:
            continue
        raise AssertionError(f"{field} of 256 bytes encoded")


# -- identity of leases without a client -------------------------------------------------


def test_a_lease_without_client_is_keyed_by_its_address():
    a, b = (lease(ip, b"", LeaseState.DECLINED) for ip in (10, 11))
    assert a.key == address_key(10) != b.key == address_key(11)
    assert len(a.key) > MAX_FIELD  # no client id or MAC a lease can hold is this long
    t = LeaseTable(origin="A")
    for x in (a, b):
        t.commit(x)
    assert t.of_client(a.key).ip == 10 and t.of_client(b.key).ip == 11
    assert t.declined_in("lan") == 2 and t.oldest_declined("lan").ip == 10


def test_circuit_id_reader_matches_rfc3046_layout():
    assert circuit_id(bytes([2, 1, 0x41, 1, 4]) + b"eth7") == b"eth7"
    assert circuit_id(bytes([1, 9]) + b"eth7") is None  # overruns: malformed, no circuit
    assert circuit_id(b"") is None and circuit_id(None) is None


# -- the counts the abuse limits read -----------------------------------------------------


GI = int(IPv4Address("203.0.113.1"))
RAI = bytes([1, 4]) + b"cust"


def test_bound_leases_are_counted_per_relay_and_circuit_whatever_their_source():
    t = LeaseTable(origin="A")
    relayed = [replace(lease(100 + i, mac(i)), relay=GI, relay_info=RAI) for i in range(3)]
    for x in relayed[:2]:
        t.commit(x)
    t.load(replace(relayed[2], seq=50, origin="B"))  # from the peer, or the journal
    t.commit(lease(120, mac(9)))  # on our link: counted nowhere
    assert t.relay_count(GI) == 3 and t.circuit_count(GI, b"cust") == 3
    t.commit(replace(relayed[0], expires=T0 + 500))  # a renewal: still one
    assert t.relay_count(GI) == 3
    t.commit(replace(t.get(101), state=LeaseState.RELEASED))
    t.commit(replace(t.get(102), state=LeaseState.DELETED))
    assert t.relay_count(GI) == 1 and t.circuit_count(GI, b"cust") == 1
    t.reclaim(T0 + 1000)  # the renewed one expires
    assert t.relay_count(GI) == 0 and t.per_circuit == {} and t.per_relay == {}
    assert t.bound == 0


def test_a_client_moving_away_uncounts_its_old_binding():
    t = LeaseTable(origin="A")
    t.commit(replace(lease(100, mac(1)), relay=GI, relay_info=RAI))
    t.commit(lease(120, mac(1)))  # the same client, now on our link
    assert t.relay_count(GI) == 0 and t.bound == 1


# -- the wall clock steps ---------------------------------------------------------------


DAY = 86400.0


def _pool_of_one():
    p = pools("192.0.2.10", "192.0.2.10")
    t = LeaseTable(origin="A")
    a = Allocator(p, t)
    return p.pools[0], t, a


def _offer(t: LeaseTable, a: Allocator, pool, now: float, who: int) -> int | None:
    ip = a.allocate(pool, now)
    if ip is not None:
        t.offer(Lease(ip=ip, mac=mac(who), client_id=None, state=LeaseState.OFFERED,
                      start=now, expires=now + 10, pool="lan"))
    return ip


def test_clock_stepped_back_offers_still_lapse_by_the_new_clock():
    """Before: reclaim's cursor only moved forward, so after a step back of a day nothing
    lapsed for a day and a busy pool froze."""
    pool, t, a = _pool_of_one()
    now = T0
    t.reclaim(now)
    assert _offer(t, a, pool, now, 1) is not None  # made by the clock that was right
    t.reclaim(now + 1)
    now = T0 - DAY + 2  # the clock steps back a day
    # The offer made before the step was made "tomorrow" by this clock: lapsed at once.
    t.reclaim(now)
    assert _offer(t, a, pool, now, 2) is not None
    assert _offer(t, a, pool, now + 1, 3) is None  # held for client 2
    t.reclaim(now + 9)
    assert _offer(t, a, pool, now + 9, 3) is None  # 10 s not over
    t.reclaim(now + 11)
    assert _offer(t, a, pool, now + 11, 3) is not None  # 10 s after it was made


def test_offer_made_between_the_step_and_the_next_reclaim_lapses_in_time():
    pool, t, a = _pool_of_one()
    t.reclaim(T0)
    now = T0 - DAY
    assert _offer(t, a, pool, now, 1) is not None  # before reclaim has seen the step
    t.reclaim(now + 0.5)
    assert _offer(t, a, pool, now + 5, 2) is None
    t.reclaim(now + 11)
    assert _offer(t, a, pool, now + 11, 2) is not None


def test_bindings_expire_at_their_expires_whatever_the_clock_does():
    p = pools("192.0.2.10", "192.0.2.12")
    t = LeaseTable(origin="A")
    Allocator(p, t)
    t.reclaim(T0)
    t.commit(Lease(ip=10, mac=mac(1), client_id=None, state=LeaseState.BOUND, start=T0,
                   expires=T0 + 600, pool="lan"))
    back = T0 - DAY
    assert t.reclaim(back) == []
    t.commit(Lease(ip=11, mac=mac(2), client_id=None, state=LeaseState.BOUND, start=back,
                   expires=back + 600, pool="lan"))
    assert t.reclaim(back + 599) == []
    assert [x.ip for x in t.reclaim(back + 601)] == [11]  # by the new clock
    assert t.reclaim(T0 + 599) == []  # ip 10 lasts to its own expires
    # Forward again, a day and more at once: everything due expires in one call.
    t.commit(Lease(ip=12, mac=mac(3), client_id=None, state=LeaseState.BOUND, start=T0,
                   expires=T0 + 3600, pool="lan"))
    assert sorted(x.ip for x in t.reclaim(T0 + DAY)) == [10, 12]
    assert t.bound == 0


@given(st.lists(st.tuples(st.sampled_from(["offer", "bind", "tick"]),
                          st.floats(-2 * DAY, 2 * DAY)), max_size=40))
def test_nothing_ended_outlives_a_reclaim_whatever_the_steps(ops):
    """The daemon reclaims every second with the clock of the moment. Whatever that clock
    does between readings (steps back or forward by up to two days), after a reclaim at
    `now` no lease that ended a second ago still holds its address, and no offer made by
    a clock ahead of this one does: the pool never freezes."""
    p = pools("192.0.2.10", "192.0.2.17")
    t = LeaseTable(origin="A")
    a = Allocator(p, t)
    pool = p.pools[0]
    for i, (op, offset) in enumerate(ops):
        now = T0 + offset
        if op == "offer":
            _offer(t, a, pool, now, i)
        elif op == "bind":
            ip = a.allocate(pool, now)
            if ip is not None:
                t.commit(Lease(ip=ip, mac=mac(i), client_id=None, state=LeaseState.BOUND,
                               start=now, expires=now + 30, pool="lan"))
        t.reclaim(now)
        left = [x for x in t.leases() if x.state in (LeaseState.OFFERED, LeaseState.BOUND)
                and (x.expires <= now - 1 or (x.state == LeaseState.OFFERED
                     and x.start > now + 2))]
        assert not left, (now, left)


@pytest.mark.parametrize("field", ["start", "expires"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_lease_time_that_is_not_finite_is_refused_both_ways(field: str, value: float):
    """The expiry index cannot file an infinite time (OverflowError): a record or a sync
    frame carrying one is refused as malformed, never applied."""
    good = Lease(ip=1, mac=b"\x02" * 6, client_id=None, state=LeaseState.BOUND,
                 start=1.0, expires=2.0, pool="p", seq=1, origin="a")
    with pytest.raises(ValueError):
        encode_lease(replace(good, **{field: value}))
    raw = bytearray(encode_lease(good))
    struct.pack_into("!d", raw, 6 if field == "start" else 14, value)
    with pytest.raises(LeaseDecodeError):
        decode_lease(bytes(raw))
