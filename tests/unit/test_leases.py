"""Lease table, allocator and codec (pure)."""

from __future__ import annotations

import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from appliance.config.model import PoolConfig
from appliance.leases.allocator import Allocator
from appliance.leases.codec import LeaseDecodeError, decode_lease, encode_lease
from appliance.leases.model import Lease, LeaseState
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
    start=st.floats(allow_nan=False), expires=st.floats(allow_nan=False),
    pool=st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255),
    hostname=st.none() | st.text(max_size=60),
    relay_info=st.none() | st.binary(max_size=255),
    seq=st.integers(0, 2**64 - 1), origin=st.text(max_size=30),
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
