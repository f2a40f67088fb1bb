"""Session replication between two real daemons (issue 3), in namespaces.

Topology (lab.pair): device A and device B, standalone (no VRRP: both
always serve), each on a client LAN of its own with the same addresses and a load relay
(dhcpload), joined by a sync veth (198.51.100.1 <-> .2). What a device holds is read the
way an operator reads it: `dhcp-hotbackup leases --json` (the durable table) and the
runtime tree (sync/peer, sync/last_seq, stats/sync_*), plus the daemon's log.

Where a test needs the sync-mode promise itself (an ACK leaves only once the peer holds
the lease) it sets sync/ack_timeout_ms to 2 s: the product default of 50 ms serves a
client alone once the peer is that late, which a busy 2-core test box can be.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.leases.journal import Journal
from appliance.leases.model import Lease, LeaseState
from appliance.sync.frames import HEADER, Hello, HelloSeal, encode_frame, hello_key
from appliance.testing.daemonfiles import session
from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import require_tools
from lab.clients import Dhclient, Dhcrelay, link_macs
from lab.pair import (
    SERVER_IP,
    SYNC_A,
    SYNC_B,
    Device,
    Pair,
    SyncCapture,
    read_tables,
    read_until_closed,
    split_frames,
    sync_connect,
)

pytestmark = pytest.mark.netns  # needs root (tests/conftest.py)

GUARANTEED = {"sync/ack_timeout_ms": "2000"}


def parity(ip: str) -> int:
    return int(IPv4Address(ip)) & 1


def bound_once(d: Device, rows: list[dict]) -> None:
    """No address bound to two clients, no client bound to two addresses."""
    ips = [ip for ip, n in Counter(x["ip"] for x in rows).items() if n > 1]
    assert not ips, f"{d.name}: addresses bound to two clients: {ips[:5]}"
    macs = {m: [x["ip"] for x in rows if x["mac"] == m]
            for m, n in Counter(x["mac"] for x in rows).items() if n > 1}
    assert not macs, (f"{d.name}: {len(macs)} clients bound to two addresses in `leases "
                      f"--json` (leases/active says {d.value('leases/active')}, the table "
                      f"lists {len(rows)}), e.g. {list(macs.items())[:3]}")


def same_tables(ra: list[dict], rb: list[dict]) -> None:
    sa, sb = {session(x) for x in ra}, {session(x) for x in rb}
    assert sa == sb, (f"A and B differ: {len(sa - sb)} only on A (e.g. {sorted(sa - sb)[:2]}), "
                      f"{len(sb - sa)} only on B (e.g. {sorted(sb - sa)[:2]})")


@pytest.fixture
def topo():
    with Topology("sp") as t:
        yield t


# -- 1. a relayed session, Option 82 included, is on B when the client has its ACK --------
RELAY_UP, RELAY_DOWN_IF, RELAY_DOWN = "192.0.2.4", "cust7", "203.0.113.1"
RELAYED = {"pools/relayed/subnet": "203.0.113.0/24",
           "pools/relayed/range": "203.0.113.100-203.0.113.199",
           "pools/relayed/router": RELAY_DOWN}


def test_relayed_session_with_option82_is_on_b_when_the_client_is_bound(topo, tmp_path):
    require_tools("dhclient", "dhcrelay")
    t = topo
    pair = Pair(t, tmp_path, extra={**RELAYED, **GUARANTEED},
                routes=(("203.0.113.0/24", RELAY_UP),))
    relay, client = t.host("rly"), t.host("rcl")
    t.attach(relay, pair.lan, "up0", f"{RELAY_UP}/24")
    t.veth(relay, RELAY_DOWN_IF, client, "eth0")
    t.addr(relay, RELAY_DOWN_IF, f"{RELAY_DOWN}/24")
    mac = link_macs(t, client)["eth0"]
    pair.start()

    with Dhcrelay(t, relay, "up0", RELAY_DOWN_IF, SERVER_IP, tmp_path / "relay").start(), \
            Dhclient(t, client, "eth0", tmp_path / "dhclient", hostname="sub-7").start() as c:
        ip = c.wait_event("BOUND", timeout=60)[1]
        # No waiting: in sync mode the ACK left A only once B had made the lease durable.
        on_b = pair.b.leases_by_mac().get(mac)
    assert on_b is not None, (f"{mac} ({ip}) bound but not on B when the client had its ACK"
                              f"\nA: {pair.a.log_tail(10)}")
    assert "SYNC024" not in pair.a.log_text(), "A served an ACK without B's ack"
    on_a = pair.a.leases_by_mac()[mac]
    assert on_b["ip"] == ip and on_b["state"] == "bound" and on_b["pool"] == "relayed"
    raw = bytes((1, len(RELAY_DOWN_IF))) + RELAY_DOWN_IF.encode()  # dhcrelay -a: circuit-id
    assert on_b["option82"] == {"raw": raw.hex(), "circuit_id": RELAY_DOWN_IF.encode().hex(),
                                "remote_id": None}
    assert on_b["hostname"] == "sub-7"
    assert session(on_b) == session(on_a)  # the same session: times, seq, origin and all
    assert on_b["origin"] == "deviceA"
    pair.stop()


# -- 2. kill -9 of A under load: every ACKed lease is on B --------------------------------
def test_kill9_of_a_under_load_loses_no_acked_lease(topo, tmp_path):
    pair = Pair(topo, tmp_path, extra=GUARANTEED)
    pair.start()
    load, out = pair.a.load_async("--clients", 30000, "--window", 64, "--rate", 2500,
                                  "--duration", 6, "--timeout", 0.5, "--retries", 1)
    pair.a.wait_stat("ack", 1500)
    pair.a.kill9()
    assert load.wait(60) == 0
    acked = json.loads(out.read_text())["acks"]
    assert len(acked) >= 1500
    pair.b.wait_peer("disconnected")  # B saw A go (its connection was reset or ended)
    on_b = pair.b.bindings()
    missing = {m: ip for m, ip in acked.items() if on_b.get(m) != ip}
    assert not missing, (f"{len(missing)} of {len(acked)} ACKed leases not on B, e.g. "
                         f"{list(missing.items())[:3]}; A logged SYNC024 (ACK without B's "
                         f"ack) {pair.a.log_text().count('SYNC024')} times")
    pair.b.assert_running()
    pair.b.stop()


# -- 3. 100k leases: bulk snapshot to an empty B, live updates, a delta after a restart --
N_BULK = 100_000
BIG_POOL = {"pools/big/subnet": "100.64.0.0/10",
            "pools/big/range": "100.64.1.0-100.127.255.254", "pools/big/lease_time": "86400"}


def _prebuilt_store(state_dir: Path, n: int) -> list[Lease]:
    """A's store as a snapshot of n bound leases (as bench/lease_memory.py builds it)."""
    first, now = int(IPv4Address("100.64.1.0")), time.time()
    leases = [Lease(ip=first + i, mac=(0x020000000000 + i).to_bytes(6, "big"), client_id=None,
                    state=LeaseState.BOUND, start=now, expires=now + 86400, pool="big",
                    hostname=f"host-{i}", seq=i + 1, origin="deviceA") for i in range(n)]
    j = Journal(state_dir)
    j.replay(lambda x: None)
    j.compact(leases, background=False)
    j.close()
    return leases


def test_100k_snapshot_then_live_updates_then_exact_delta_after_restart(topo, tmp_path):
    pair = Pair(topo, tmp_path, extra={**BIG_POOL, **GUARANTEED})
    a, b = pair.a, pair.b
    built = _prebuilt_store(a.state_dir, N_BULK)
    a.start()
    b.start()  # empty
    pair.wait_in_sync(180)
    # Both start at once and both dial: a snapshot begun on the connection dropped as a
    # duplicate is sent again on the one kept (as for the delta below).
    dup = "two connections to" in b.log_text()
    assert b.wait_stat("sync_snapshots_received", 1) in ((1, 2) if dup else (1,))
    assert f"SYNC002 receiving a snapshot of {N_BULK} leases from deviceA" in b.log_text()
    rows = b.leases()
    assert len(rows) == N_BULK
    assert {(x["mac"], x["ip"]) for x in rows} == \
        {(x.mac.hex(":"), str(x.address)) for x in built}

    # Live: a new DORA on A is on B as soon as the client has its ACK.
    live, _ = a.load("--clients", 1, "--seed", 9)
    (mac, ip), = live.items()
    assert b.bindings().get(mac) == ip

    # B stops, A makes 10k changes, B comes back: it gets those and only those.
    b.stop()
    cursor = int(b.value("sync/last_seq") or 0)
    assert cursor >= N_BULK + 1
    _, summary = a.load("--clients", 10_000, "--window", 128)
    assert summary["acked"] == 10_000
    mark = len(b.log_text())
    b.start()
    pair.wait_in_sync(180)
    b.wait_stat("sync_merge_accepted", 10_000)
    ra, rb = read_tables(a, b)
    delta = [x for x in ra if x["seq"] > cursor]
    assert len(delta) == 10_000
    # Both devices dial when B comes back; if both connections authenticate, the delta
    # may start on the one dropped as a duplicate and be sent again on the one kept
    # (the cursor moves only at the end of a catch-up): then it is counted twice, and
    # each lease is still accepted once.
    dup = "two connections to" in b.log_text()[mark:]
    assert b.stat("sync_deltas_received") in ((1, 2) if dup else (1,))
    assert b.stat("sync_snapshots_received") == 0
    assert b.stat("sync_leases_received") == len(delta) or dup
    assert b.stat("sync_merge_accepted") == len(delta)
    assert f"SYNC003 delta from deviceA done: {len(delta)} leases" in b.log_text()[mark:]
    assert "SYNC002" not in b.log_text()[mark:]  # no snapshot this time
    same_tables(ra, rb)
    assert len(rb) == N_BULK + 1 + 10_000
    pair.stop()


# -- 3b. a snapshot taken while a client is between OFFER and REQUEST ---------------------
def test_snapshot_while_a_client_is_mid_dora_reaches_b(topo, tmp_path):
    pair = Pair(topo, tmp_path, extra=GUARANTEED)
    a, b = pair.a, pair.b
    a.start()
    acked, _ = a.load("--clients", 20)
    mac = "02:77:00:00:00:01"
    offered = a.discover(mac)  # an OFFER is out; the client has not REQUESTed yet
    b.start()  # empty: it needs a snapshot of A's table, which holds that offer in memory
    wait_for(lambda: b.peer_state() == "connected" or b.refused(), 60,
             what="B in sync, or refusing A's frames")
    assert not b.refused(), (f"B refused its genuine peer's snapshot: {b.refused()}\n"
                             + "\n".join(x for x in b.log_text().splitlines()
                                         if "SYNC007" in x)[:600])
    pair.wait_in_sync()
    assert b.bindings() == acked
    done, _ = a.renew({mac: offered})  # the client completes its DORA
    assert done == {mac: offered}
    assert b.bindings().get(mac) == offered
    pair.stop()


# -- 4. split brain: pool split while cut, merge on reconnect -----------------------------
def test_split_brain_allocates_from_halves_and_merges_without_double_binding(topo, tmp_path):
    pair = Pair(topo, tmp_path)
    a, b = pair.a, pair.b
    pair.start()
    before, _ = a.load("--clients", 20, "--seed", 1)
    mac_x = next(iter(before))
    addr = before[mac_x]  # client X holds `addr` (A allocates even addresses first)
    assert parity(addr) == 0

    pair.cut()
    a.wait_peer("disconnected")
    b.wait_peer("disconnected")
    # Both serve new clients at once, each from its own half of the pool.
    (pa, oa), (pb, ob) = a.load_async("--clients", 300, "--seed", 2), \
        b.load_async("--clients", 300, "--seed", 3)
    assert pa.wait(120) == 0 and pb.wait(120) == 0
    only_a, only_b = (json.loads(o.read_text())["acks"] for o in (oa, ob))
    assert len(only_a) == 300 and len(only_b) == 300
    assert {parity(ip) for ip in only_a.values()} == {0}, "A left its half while cut"
    assert {parity(ip) for ip in only_b.values()} == {1}, "B left its half while cut"
    # An address bound to two clients: X renews `addr` on B; on A, X releases it and
    # client Y (renewing, A's half) takes it.
    mac_y = "02:63:00:00:00:01"
    assert b.renew({mac_x: addr})[0] == {mac_x: addr}
    a.release(mac_x, addr)
    a.wait_stat("release", 1)
    assert a.renew({mac_y: addr})[0] == {mac_y: addr}
    pre = {d.name: d.sync_stats() for d in (a, b)}

    pair.restore()
    pair.wait_in_sync()
    # 301 changes each way: A's 300 new clients + Y; B's 300 + X's renewal (X's release
    # on A is older than that renewal: stale on B).
    a.wait_stat("sync_merge_accepted", pre["deviceA"].get("merge_accepted", 0) + 301)
    b.wait_stat("sync_merge_accepted", pre["deviceB"].get("merge_accepted", 0) + 301)
    b.wait_stat("sync_merge_stale", pre["deviceB"].get("merge_stale", 0) + 1)
    ra, rb = read_tables(a, b)
    for d, rows in ((a, ra), (b, rb)):
        bound_once(d, rows)
    same_tables(ra, rb)
    table = {x["mac"]: x["ip"] for x in ra}
    expected = {**before, **only_a, **only_b, mac_y: addr}
    del expected[mac_x]  # Y's binding expires later: X lost the address
    assert table == expected

    def grew(d: Device, name: str) -> int:
        return d.sync_stats().get(name, 0) - pre[d.name].get(name, 0)

    assert grew(a, "conflict_remote_lost") == 1 and grew(a, "conflict_local_lost") == 0
    assert grew(b, "conflict_local_lost") == 1 and grew(b, "conflict_remote_lost") == 0
    assert grew(a, "merge_accepted") == 301 and grew(b, "merge_accepted") == 301
    # When both devices dial at once, a delta may start on the connection that loses the
    # duplicate resolution and be sent again on the one kept (the cursor moves only at
    # the end of a catch-up): a version applied twice counts as stale the second time.
    dup = 1 if "two connections to" in a.log_text() + b.log_text() else 0
    assert grew(b, "merge_stale") >= 1 and grew(a, "merge_stale") <= dup
    assert f"{mac_x} lost address {addr}" in a.log_text() + b.log_text()
    # The loser's next request is NAKed, on either device; the winner keeps its address.
    for d in (a, b):
        acks, summary = d.renew({mac_x: addr})
        assert acks == {} and summary["naks"] == 1, f"{d.name} did not NAK X: {summary}"
        assert d.renew({mac_y: addr})[0] == {mac_y: addr}
    pair.stop()


# -- 4b. the same client served by both devices while they were cut ----------------------
def test_client_served_by_both_during_split_ends_bound_once_on_both(topo, tmp_path):
    pair = Pair(topo, tmp_path)
    a, b = pair.a, pair.b
    pair.start()
    pair.cut()
    a.wait_peer("disconnected")
    b.wait_peer("disconnected")
    on_a, _ = a.load("--clients", 20, "--seed", 4)
    on_b, _ = b.load("--clients", 20, "--seed", 4)  # the same 20 clients, later: B's win
    assert set(on_a) == set(on_b) and not set(on_a.values()) & set(on_b.values())
    pair.restore()
    pair.wait_in_sync()
    a.wait_stat("sync_merge_accepted", 20)
    b.wait_stat("sync_merge_stale", 20)
    ra, rb = read_tables(a, b)
    for d, rows in ((a, ra), (b, rb)):
        bound_once(d, rows)
        assert int(d.value("leases/active") or -1) == len(rows)
    assert {x["mac"]: x["ip"] for x in rb} == on_b
    same_tables(ra, rb)
    pair.stop()


# -- 5. wrong key, replayed frames, garbage: refused, counted, nothing changes ------------
def _hello(key: bytes) -> bytes:
    return encode_frame(Hello(node="deviceA", nonce=os.urandom(32), boot_id=1, epoch=1,
                              last_seq=0, lease_count=0),
                        HelloSeal(hello_key(key)), 0)


def test_wrong_key_replay_and_garbage_are_refused_and_serving_continues(topo, tmp_path):
    pair = Pair(topo, tmp_path, extra=GUARANTEED)
    a, b = pair.a, pair.b
    cap = SyncCapture(b.ns)  # the sync link as B's kernel sees it, from the first frame
    try:
        pair.start()
        acked, _ = a.load("--clients", 20)
        streams = cap.streams(SYNC_A, SYNC_B)
    finally:
        cap.close()
    frames = split_frames(max(streams, key=len))
    assert len(frames) > 4 and frames[0][1] == 1  # HELLO, AUTH, SYNC_REQ, ...
    updates = next(f for f in frames if f[1] == 4)  # a genuine UPDATES frame
    wait_for(lambda: b.stat("sync_merge_accepted") >= 20, 10, what="B's figures")
    table, cursor = b.leases(), b.value("sync/last_seq")
    assert {x["mac"]: x["ip"] for x in table} == acked
    pre = b.sync_stats()

    def attack(data: bytes, half_close: bool = False, source: str | None = None) -> None:
        s = sync_connect(a.ns, source=source)
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        read_until_closed(s)  # B must hang up on it

    attack(_hello(b"another key, not the pair's one!"))        # peer without the key
    attack(b"".join(frames))                                    # a whole old connection
    attack(updates, half_close=True)                            # one frame, out of context
    attack(b"\xff" + os.urandom(511))                           # random bytes
    attack(HEADER.pack(2, 4, 0, 1 << 31, 0))                    # a 2 GiB frame announced
    attack(frames[0][:20], half_close=True)                     # stream ends mid-frame
    topo.addr(a.ns, "eth2", "198.51.100.9/24")
    attack(_hello(b"0123456789abcdef0123456789abcdef"),         # right key, wrong address
           source="198.51.100.9")

    # Wire v2: the old connection's HELLO is genuine (in clear, HMAC), its AUTH was sealed
    # under that connection's key (bad_mac); an AEAD frame before any HELLO is cut short
    # of the HELLO trailer it is read with (truncated at the half-close).
    want = {"refused_bad_auth": 1, "refused_bad_mac": 1, "refused_bad_version": 1,
            "refused_oversized": 1, "refused_truncated": 2, "refused_unknown_peer": 1}

    def grown() -> dict[str, int]:
        now = b.sync_stats()
        return {k: now[k] - pre.get(k, 0) for k in now
                if k.startswith("refused_") and now[k] != pre.get(k, 0)}

    try:
        wait_for(lambda: grown() == want, 15, what="B's refusal counters")
    except TimeoutError:
        raise AssertionError(f"refusals counted {grown()}, expected {want}") from None
    assert "SYNC007" in b.log_text() and "SYNC023" in b.log_text()
    # Nothing changed, nothing dropped: same table and cursor, the real link never left.
    assert [session(x) for x in b.leases()] == [session(x) for x in table]
    assert b.value("sync/last_seq") == cursor
    assert b.stat("sync_handshakes") == pre.get("handshakes", 0)
    assert a.peer_state() == b.peer_state() == "connected"
    a.assert_running()
    b.assert_running()
    more, _ = a.load("--clients", 1, "--seed", 8)
    (mac, ip), = more.items()
    assert b.bindings().get(mac) == ip
    pair.stop()


# -- 6. twice the sustainable rate: the same leases on both, all of them ACKed ------------
def test_overload_leaves_both_tables_equal_to_the_acks(topo, tmp_path):
    pair = Pair(topo, tmp_path)  # the product's default ack timeout
    a, b = pair.a, pair.b
    pair.start()
    # What A sustains here, now (other tests share the box): a short saturated probe.
    acked, probe = a.load("--clients", 40000, "--seed", 1, "--window", 512, "--duration", 1.5,
                          "--timeout", 1.5, "--linger", 2)
    rate = 2 * probe["rate_per_s"]
    more, over = a.load("--clients", 60000, "--seed", 2, "--window", 4096, "--rate", rate,
                        "--duration", 4, "--timeout", 1.5, "--retries", 3, "--linger", 3)
    assert over["acked"] / over["elapsed_s"] < 0.9 * rate, f"not overloaded: {over}"
    acked.update(more)
    rows_a = a.leases()
    last = max(x["seq"] for x in rows_a)
    wait_for(lambda: int(b.value("sync/last_seq") or 0) >= last, 60,
             what="B holding A's log up to its last change")
    rows_b = b.leases()
    bound_a = {x["mac"]: x["ip"] for x in rows_a}
    assert bound_a == acked, (f"on A without ACK: {len(set(bound_a) - set(acked))}, "
                              f"ACKed but not on A: {len(set(acked) - set(bound_a))}")
    same_tables(rows_a, rows_b)
    pair.stop()
