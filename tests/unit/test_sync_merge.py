"""Merge rules (per client: newest version; per address: the later-expiring binding) and
the pool split. The property that matters: two devices that served apart converge on
the same table once each has applied the other's changes, in whatever order."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sync_support import mk

from appliance.leases.model import LeaseState, client_key
from appliance.leases.table import LeaseTable
from appliance.sync.merge import (
    Conflict,
    Merge,
    Merger,
    coalesce,
    merge,
    node_index,
    owns_address,
    plan,
    resolve_address,
    tombstone,
    version_key,
)


def test_per_client_newest_wins() -> None:
    old = mk(1, start=100.0, seq=5, origin="a")
    new = mk(2, start=200.0, seq=3, origin="b")  # same client (same MAC? no: set it)
    new = replace(new, mac=old.mac)
    assert merge(None, old) is Merge.ACCEPTED
    assert merge(old, new) is Merge.ACCEPTED
    assert merge(new, old) is Merge.STALE
    assert merge(new, new) is Merge.DUPLICATE


def test_release_after_bind_wins_at_equal_start() -> None:
    bound = mk(1, start=100.0, seq=5, origin="a")
    released = replace(bound, state=LeaseState.RELEASED, expires=150.0, seq=6)
    expired = replace(bound, state=LeaseState.EXPIRED, seq=9, origin="b")
    assert merge(bound, released) is Merge.ACCEPTED
    assert merge(released, bound) is Merge.STALE
    assert merge(bound, expired) is Merge.ACCEPTED
    assert merge(bound, tombstone(bound)) is Merge.ACCEPTED
    assert version_key(bound) < version_key(tombstone(bound)) < version_key(released)


def test_address_conflict_later_expiry_wins_symmetrically() -> None:
    x = mk(10, mac=b"\x02xxxxx", start=100.0, lease_time=3600.0, origin="a", seq=4)
    y = mk(10, mac=b"\x02yyyyy", start=200.0, lease_time=600.0, origin="b", seq=2)
    assert resolve_address(x, y) == (x, y) == resolve_address(y, x)
    p = plan(y, None, x)  # y arrives where x holds the address: y loses
    assert p.conflict is Conflict.REMOTE_LOST and p.store == () and p.loser == y
    p = plan(x, None, y)  # x arrives where y holds it: ours (y) loses
    assert p.conflict is Conflict.LOCAL_LOST and p.store == (tombstone(y), x)
    assert p.counters == ("merge_accepted", "conflict_local_lost")


def test_remote_loser_also_drops_its_older_record() -> None:
    x_old = mk(11, mac=b"\x02xxxxx", start=50.0, seq=1, origin="a")
    x_new = mk(10, mac=b"\x02xxxxx", start=100.0, lease_time=60.0, seq=7, origin="b")
    y = mk(10, mac=b"\x02yyyyy", start=90.0, seq=3, origin="a")
    p = plan(x_new, x_old, y)
    assert p.conflict is Conflict.REMOTE_LOST and p.store == (tombstone(x_old),)


def test_no_conflict_with_a_free_address_or_same_client() -> None:
    x = mk(10, mac=b"\x02xxxxx", start=100.0)
    freed = replace(mk(10, mac=b"\x02yyyyy", start=300.0), state=LeaseState.RELEASED)
    assert plan(x, None, freed).conflict is None
    renewed = replace(x, start=200.0, expires=3800.0)
    assert plan(renewed, x, x) == plan(renewed, x, x)
    assert plan(renewed, x, x).store == (renewed,)


def test_stale_and_duplicate_store_nothing() -> None:
    x = mk(1, start=100.0)
    assert plan(x, x, x).store == () and plan(x, x, x).merge is Merge.DUPLICATE
    assert plan(x, replace(x, start=200.0), None).merge is Merge.STALE


def test_pool_split() -> None:
    a = (IPv4Address("198.51.100.1"), 6470)
    b = (IPv4Address("198.51.100.2"), 6470)
    assert node_index(a, b) == 0 and node_index(b, a) == 1
    assert node_index((IPv4Address("127.0.0.1"), 1), (IPv4Address("127.0.0.1"), 2)) == 0
    with pytest.raises(ValueError):
        node_index(a, a)
    ips = range(0xC0000264, 0xC00002C8)
    mine = {ip for ip in ips if owns_address(ip, 0)}
    theirs = {ip for ip in ips if owns_address(ip, 1)}
    assert mine.isdisjoint(theirs) and mine | theirs == set(ips)
    assert abs(len(mine) - len(theirs)) <= 1


# -- convergence ----------------------------------------------------------------------------

CLIENTS = [b"\x02\x00\x00\x00\x00" + bytes([i]) for i in range(4)]

ops = st.lists(
    st.tuples(
        st.sampled_from(["bind", "release"]),
        st.integers(0, 3),  # client
        st.integers(0, 3),  # address
        st.integers(0, 20),  # seconds since the previous operation on this device
        st.sampled_from([60.0, 600.0, 3600.0]),
    ),
    max_size=8,
)


def _serve(table: LeaseTable, history: list, log: list, clock: float,
           merger: Merger | None = None) -> float:
    """Run `history` on one device whose clock starts at `clock` and only goes forward
    (the merge rules assume NTP-synchronised devices: docs/sync-protocol.md). A commit
    that pushes another client's record out of its address tells the merger."""
    for op, c, a, dt, lt in history:
        clock += dt
        mac = CLIENTS[c]
        cur = table.of_client(client_key(mac, None))
        held = table.get(mk(a).ip)
        if op == "bind":
            if held is not None and held.key != client_key(mac, None) and \
                    held.state in (LeaseState.BOUND, LeaseState.DECLINED):
                continue  # the server never gives away an address its table shows held
            lease = mk(a, mac=mac, start=clock, lease_time=lt)
        elif cur is not None and cur.state == LeaseState.BOUND:
            lease = replace(cur, state=LeaseState.RELEASED, expires=clock)
        else:
            continue
        cur = table.get(lease.ip)
        if merger is not None and cur is not None and cur.key != lease.key and \
                table.of_client(cur.key) is cur:
            merger.remember(cur)
        log.append(table.commit(lease))
    return clock


def _apply(table: LeaseTable, leases: list, batch: int = 1000,
           m: Merger | None = None) -> None:
    """Apply a catch-up delta in frames of `batch` leases, settling at its end."""
    m = m or Merger()
    for i in range(0, len(leases), batch):
        m.apply(leases[i : i + batch], table, settle=False)
    m.apply([], table, settle=True)


def _bindings(table: LeaseTable) -> dict[bytes, tuple]:
    """Per client: its holding binding (address, start, expires) if any."""
    out = {}
    for key, lease in table.by_key.items():
        if lease.state == LeaseState.BOUND and table.get(lease.ip) is lease:
            out[key] = (lease.ip, lease.start, lease.expires)
    return out


@settings(max_examples=400, deadline=None)
@given(common=ops, ha=ops, hb=ops, batch=st.integers(1, 4))
def test_split_brain_converges(common, ha, hb, batch) -> None:
    a, b = LeaseTable("deviceA"), LeaseTable("deviceB")
    shared: list = []
    t = _serve(a, common, shared, 1000.0)
    _apply(b, shared)
    la: list = []
    lb: list = []
    ma, mb = Merger(), Merger()
    _serve(a, ha, la, t, ma)  # the link is down: each serves on its own
    _serve(b, hb, lb, t, mb)
    _apply(a, coalesce(lb), batch, ma)  # reconnect: each applies the other's catch-up delta
    _apply(b, coalesce(la), batch, mb)
    ba, bb = _bindings(a), _bindings(b)
    assert ba == bb
    # No address is bound to two clients.
    ips = [v[0] for v in ba.values()]
    assert len(ips) == len(set(ips))
