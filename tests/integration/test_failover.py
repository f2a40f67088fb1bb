"""Issue 6 end to end: a failover that users do not notice (real daemons, real clients).

    lan bridge ─┬─ deviceA  eth1 192.0.2.2, prio 120 ══ sync veth ══ deviceB  eth1 192.0.2.3, 100
                ├─ load     dhcpload-style renewing load through a relay address (198.18/16)
                ├─ relay    dhcrelay -a ── rlan ── "rel" (udhcpc, Option 82 added by the relay)
                ├─ "dh"     ISC dhclient          ├─ "ud" busybox udhcpc
                └─ "probe"  a client renewing every 20 ms (lab.hapair.Renewer)

VIP 192.0.2.1 is the server identifier. Leases last 10 minutes; dhclient is told to
renew every 3 s (`supersede dhcp-renewal-time`), udhcpc renews on SIGUSR1 (busybox does
not renew a very short lease at T1: given 10 s it renewed after ~15 s, once the server had
let the lease expire).
tcpdump in each client namespace says which device (Ethernet source) answered. A kill -9
is followed by `dhcp-hotbackup cleanup`, as the unit's ExecStopPost does. `HaPair`
(lab/hapair.py) owns the topology.

The scenario tests share one pair and run in order, each from the steady state "A is
master and active, B is backup and in sync": A serves; A's client link goes down and
comes back; A is killed (kill -9) under load and restarted. Then a hundred switchovers
under load, and a cold start, each on a pair of its own (datapath off: no bcc compile
per restart). Every wait is on observable state; nothing sleeps for a timer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import session
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import require_bcc, require_tools
from lab.clients import Capture, Dhclient, Udhcpc, link_macs
from lab.hapair import (
    A_MAC,
    B_MAC,
    LAN_RANGE,
    VIP,
    ArpWatch,
    HaDevice,
    HaPair,
    Renewer,
    RoutedUdhcpc,
    check_churn,
    wall_of,
)

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ADVERT_MS = 100
LEASE_S = 600
DHCLIENT_T1_S = 3  # dhclient's own renewal time (overrides the server's T1)
START_TIMEOUT = 90  # bcc compiles the XDP program at start, on a shared 2-core box
# Evidence-driven takeovers (notice, reset) and the return of A must cost a client no
# more than this: far less than the master-down interval (360.9 ms at 100 ms adverts).
NOTICE_BOUND_S = 0.3


def _xdp() -> str:
    """The pair under test steers with XDP, as a real one does: without bcc this test
    skips (fails under CI=true); it never quietly runs with `datapath off`."""
    require_bcc()
    return "xdp"


@pytest.fixture(scope="module", autouse=True)
def _requirements() -> None:
    # root: the netns marker (tests/conftest.py)
    require_tools("dhclient", "udhcpc", "dhcrelay", "tcpdump")


# -- the clients and what they saw ---------------------------------------------------------
_MSG = {2: "offer", 5: "ack", 6: "nak"}


def replies(cap: Capture, after_wall: float = 0.0, chaddr: str | None = None) -> list[dict]:
    """DHCP replies captured in a client's namespace after `after_wall` (epoch) for the
    client `chaddr` (a bridge that lost its FDB in a link flap floods other clients'
    unicast replies to every port): time, Ethernet source, type, server identifier,
    yiaddr."""
    want = bytes.fromhex(chaddr.replace(":", "")) if chaddr else None
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    out = []
    for p in cap.packets():
        if not (UDP in p and p[UDP].sport == 67 and BOOTP in p and p[BOOTP].op == 2):
            continue
        if float(p.time) <= after_wall:
            continue
        if want is not None and bytes(p[BOOTP].chaddr)[:6] != want:
            continue
        opts = {o[0]: o[1] for o in p[DHCP].options if isinstance(o, tuple)} \
            if DHCP in p else {}
        out.append({"time": float(p.time), "src": p[Ether].src.lower(),
                    "type": _MSG.get(opts.get("message-type"), "?"),
                    "server_id": str(opts.get("server_id")), "yiaddr": p[BOOTP].yiaddr})
    return out


class Client:
    """A real client in its own namespace, with tcpdump on its interface."""

    def __init__(self, name: str, ns: Netns, mac: str, proc, cap: Capture,
                 relay_mac: str | None = None) -> None:
        self.name, self.ns, self.mac, self.proc, self.cap = name, ns, mac, proc, cap
        self.relay_mac = relay_mac  # a relayed client's replies come from its router
        self.address = ""

    def replies(self, after_wall: float = 0.0) -> list[dict]:
        return replies(self.cap, after_wall, self.mac)

    def source(self, device_mac: str) -> str:
        """The Ethernet source this client sees on a reply from that device."""
        return self.relay_mac or device_mac

    def bound_event(self) -> str:
        return "BOUND" if isinstance(self.proc, Dhclient) else "bound"

    def renew_event(self) -> str:
        return "RENEW" if isinstance(self.proc, Dhclient) else "renew"

    def events(self) -> list[list[str]]:
        return self.proc.events()

    def count(self, name: str) -> int:
        return sum(1 for e in self.events() if e and e[0] == name)

    def renew_now(self) -> None:
        """udhcpc: SIGUSR1 (renew at once); dhclient renews by itself every 3 s."""
        if isinstance(self.proc, Udhcpc):
            self.proc.renew()

    def next_renewal(self, after_wall: float, timeout: float = 30) -> dict:
        """Force (udhcpc) or await (dhclient, T1) the next renewal; once the client's
        script saw it, returns the reply that made it (the last one captured; every
        reply since `after_wall` must be an ACK)."""
        n = self.count(self.renew_event())
        self.renew_now()
        self.proc.wait_event(self.renew_event(), n + 1, timeout=timeout)
        # tcpdump hands packets over in blocks (up to a second late).
        got = wait_for(lambda: [r for r in self.replies(after_wall) if r["type"] == "ack"]
                       and self.replies(after_wall), 10,
                       what=f"{self.name}: an ACK captured")
        assert all(r["type"] == "ack" for r in got), f"{self.name}: {got}"
        return got[-1]

    def problems(self) -> list[str]:
        """NAKs, lost leases or a changed address in the client's own event log."""
        bad = {"nak", "NAK", "EXPIRE", "FAIL", "leasefail", "RELEASE", "STOP"}
        out = [f"{self.name}: event {e}" for e in self.events() if e and e[0] in bad]
        if self.count("deconfig") > 1:  # udhcpc deconfigures once, at its start
            out.append(f"{self.name}: address removed: {self.events()}")
        addrs = {e[1] for e in self.events()
                 if e and e[0] in ("bound", "renew", "BOUND", "RENEW", "REBOOT", "REBIND")}
        if len(addrs) > 1:
            out.append(f"{self.name}: addresses changed: {sorted(addrs)}")
        naks = [r for r in self.replies() if r["type"] == "nak"]
        if naks:
            out.append(f"{self.name}: NAKs captured: {naks}")
        return out


class World:
    def __init__(self, t: Topology, ha: HaPair, root: Path) -> None:
        self.t, self.ha, self.root = t, ha, root
        self.clients: list[Client] = []
        self.probe: Renewer | None = None

    def add(self, name: str, kind: str, relayed: bool = False) -> Client:
        ns, mac = (self.ha.relayed_client if relayed else self.ha.client)(name)
        cap = Capture(self.t, ns, "eth0", self.root / f"{name}-pcap").start()
        workdir = self.root / name
        if kind == "dhclient":
            proc = Dhclient(self.t, ns, "eth0", workdir, hostname=f"itest-{name}")
            proc.conf.write_text(proc.conf.read_text()
                                 + f"supersede dhcp-renewal-time {DHCLIENT_T1_S};\n")
            proc.start()
        elif relayed:
            proc = RoutedUdhcpc(self.t, ns, "eth0", workdir).start()
        else:
            proc = Udhcpc(self.t, ns, "eth0", workdir).start()
        relay_mac = link_macs(self.t, self.ha.relay_ns)["down0"] if relayed else None
        c = Client(name, ns, mac, proc, cap, relay_mac)
        e = proc.wait_event(c.bound_event(), timeout=60)
        c.address = e[1]
        self.clients.append(c)
        return c

    def others(self, c: Client) -> set[str]:
        return {x.address for x in self.clients if x is not c}


def in_range(addr: str, rng: tuple[str, str]) -> bool:
    return IPv4Address(rng[0]) <= IPv4Address(addr) <= IPv4Address(rng[1])


def takeover(new: HaDevice, reason: str, before: float, failed_wall: float,
             timeout: float = 30) -> float:
    """Wait until `new` is master and active through a transition of `reason` later
    than `before` (the stamp of its previous one); returns the time from `failed_wall`
    (when the failure was made) to that transition, by its own wall-clock stamp."""
    new.wait(lambda: new.is_("active", "master") and new.transition().get("reason") == reason
             and new.transition().get("time", 0) > before,
             f"active and master ({reason})", timeout)
    return new.transition()["time"] - failed_wall


def settle(w: World, master: HaDevice, timeout: float = 60) -> None:
    """The steady state with `master`, and the probe renewing through it."""
    w.ha.steady(master, timeout)
    assert w.probe is not None
    w.probe.wait_acks_from(master.mac, time.monotonic(), 3, timeout)


# -- the shared pair --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("failover")
    with Topology("hf") as t:
        # The product's defaults (sync mode, ack timeout 50 ms), but no rate limit: the
        # probe renews 50 times a second.
        ha = HaPair(t, root, advert_ms=ADVERT_MS, datapath=_xdp(), lease_time=LEASE_S,
                    relay=True, values={"datapath/rate_limit_pps": "0"})
        w = World(t, ha, root)
        try:
            ha.start(START_TIMEOUT)
            w.add("dh", "dhclient")
            w.add("ud", "udhcpc")
            w.add("rel", "udhcpc", relayed=True)
            ns, mac = ha.client("probe")
            w.probe = Renewer(t, ns, mac, root / "probe", interval=0.02)
            w.probe.lease()
            w.probe.start()
            yield w
            w.probe.stop()
            for d in ha.devices:
                if d.running():
                    d.stop()
        finally:
            for d in ha.devices:
                print(f"==== {d.name} daemon log\n{d.log_tail(80)}")


class TestScenario:
    def test_a_serves_and_b_holds_the_same_sessions(self, world: World):
        ha, w = world.ha, world
        settle(w, ha.a)
        for c in w.clients:
            rs = wait_for(lambda c=c: [r for r in c.replies() if r["type"] == "ack"]
                          and c.replies(), 10, what=f"{c.name}: its ACK captured")
            assert rs and all(r["src"] == c.source(A_MAC) and r["server_id"] == VIP
                              for r in rs), f"{c.name}: replies not all from A, VIP: {rs}"
        dh, ud, rel = w.clients
        assert in_range(dh.address, LAN_RANGE) and in_range(ud.address, LAN_RANGE)
        assert rel.address.startswith("203.0.113.")

        # B holds every session A holds, field for field (sync mode: before the ACK left);
        # the probe's session changes every 20 ms, so it is left out.
        def sessions(d: HaDevice) -> set[tuple]:
            return {session(x) for x in d.leases() if x["mac"] != w.probe.mac}

        def same() -> bool:
            return sessions(ha.a) == sessions(ha.b)

        wait_for(same, 20, what="A's and B's lease tables equal")
        on_b = ha.b.bindings()
        for c in w.clients:
            assert on_b.get(c.mac) == c.address, (c.name, on_b.get(c.mac), c.address)
        # The relayed session carries the relay's Option 82 (circuit-id "down0") on B too.
        rel_b = next(x for x in ha.b.leases() if x["mac"] == rel.mac)
        assert rel_b["option82"]["circuit_id"] == b"down0".hex(), rel_b
        dh_b = next(x for x in ha.b.leases() if x["mac"] == dh.mac)
        assert dh_b["hostname"] == "itest-dh"
        assert ha.b.stat("ack") == 0 and ha.b.is_("standby", "backup")

    def test_client_link_down_b_takes_over(self, world: World):
        ha, w = world.ha, world
        settle(w, ha.a)
        wall, before = time.time(), ha.b.transition().get("time", 0)
        t_cut = ha.a.client_link(False)
        took = takeover(ha.b, "peer_down", before, wall_of(t_cut))
        assert took < ha.master_down_ms() / 1000, \
            f"B took over {took * 1000:.0f} ms after the cut: not by A's notice"
        assert ha.a.role() == "standby"

        # Each client's next renewal (unicast to the VIP) is ACKed by B, same address.
        for c in w.clients:
            r = c.next_renewal(wall)
            assert (r["src"], r["type"], r["server_id"], r["yiaddr"]) == \
                (c.source(B_MAC), "ack", VIP, c.address), f"{c.name}: {r}"
        on_b = {x["mac"]: x for x in ha.b.leases()}
        for c in w.clients:  # renewed by B (a relayed reply's source is the relay's)
            assert on_b[c.mac]["origin"] == "deviceB" and on_b[c.mac]["start"] >= wall - 1, \
                on_b[c.mac]

        # A brand-new client gets a fresh address that no other client has.
        new = w.add("new1", "udhcpc")
        assert new.address not in w.others(new) and in_range(new.address, LAN_RANGE)
        got = wait_for(lambda: [r for r in replies(new.cap) if r["type"] == "ack"], 10,
                       what="new1: its ACK captured (tcpdump hands packets over late)")
        assert got[-1]["src"] == B_MAC, got
        assert ha.b.bindings()[new.mac] == new.address

        # The 20 ms renewer: from its last ACK by A to its first by B.
        outage = w.probe.outage(A_MAC, B_MAC, t_cut)
        print(f"client link down: B master {took * 1000:.1f} ms after the cut; the renewer's "
              f"outage {outage * 1000:.1f} ms")
        assert outage < NOTICE_BOUND_S

    def test_client_link_returns_a_takes_back_over(self, world: World):
        """A's link comes back (it is in sync: the sync link never went down): A is
        master and active again, B backup, and clients hardly notice. B yields on A's
        next advert and removes the VIP, while every host on the LAN still maps the VIP
        to B's MAC (B's gratuitous ARPs): A must claim the VIP again at once."""
        ha, w = world.ha, world
        assert ha.b.is_("active", "master"), "the previous test left B serving"
        watch = ArpWatch(w.probe.ns)  # what a client on the LAN hears about the VIP
        try:
            wall = time.time()
            t_up = ha.a.client_link(True)
            ha.steady(ha.a, 30)
            ha.b.wait(lambda: ha.b.transition().get("reason") == "higher_priority",
                      "backup for A's higher priority")
            try:
                claimed = wait_for(lambda: watch.claims(A_MAC, t_up), 2, 0.01,
                                   what="an ARP from A for the VIP")
            except TimeoutError:
                claimed = []
            # Renewals reach A again (at the latest when the client's ARP entry for the
            # VIP times out and is resolved afresh).
            try:
                w.probe.wait_acks_from(A_MAC, t_up, 3, timeout=90)
            finally:
                gap = w.probe.max_gap(t_up, time.monotonic())
                print(f"client link up: the renewer's longest gap {gap * 1000:.0f} ms; A's "
                      f"first ARP for the VIP after "
                      f"{(claimed[0][0] - t_up) * 1000 if claimed else float('nan'):.1f} ms")
        finally:
            watch.close()
        assert claimed, \
            f"A did not announce the VIP when its link came back (no gratuitous ARP within " \
            f"2 s; B had yielded and removed it): renewals to the VIP went unanswered for " \
            f"{gap * 1000:.0f} ms"
        assert gap < NOTICE_BOUND_S, \
            f"renewals to the VIP went unanswered for {gap * 1000:.0f} ms after A's link came back"
        for c in w.clients:
            r = c.next_renewal(wall)
            assert (r["src"], r["type"], r["yiaddr"]) == (c.source(A_MAC), "ack", c.address), \
                f"{c.name}: {r}"

    def test_kill9_under_load_loses_no_acked_lease(self, world: World):
        ha, w = world.ha, world
        settle(w, ha.a)
        churn = ha.churn(clients=48, new_per_round=1, pause=0.05)
        try:
            churn.wait_rounds(3)
            wall, before = time.time(), ha.b.transition().get("time", 0)
            t_kill = time.monotonic()
            ha.a.kill9()
            took = takeover(ha.b, "peer_down", before, wall_of(t_kill))
            assert took < ha.master_down_ms() / 1000, \
                f"B took over {took * 1000:.0f} ms after kill -9: not by the reset"
            churn.wait_rounds(3)
            # A session created on B while A is down: a fresh address.
            new = w.add("new2", "udhcpc")
            assert new.address not in w.others(new) and in_range(new.address, LAN_RANGE)
        finally:
            rec = churn.stop()
        # A new client whose DORA spans the kill may be NAKed in SELECTING (B, cut off,
        # allocates from its half only; A offered from the whole pool): it starts over.
        assert check_churn(rec, selecting_naks=True) == [], check_churn(rec, True)
        assert len(rec["clients"]) >= 48 + 3
        # Every ACK any client got is on B (the address each was ACKed, and no other).
        on_b = ha.b.bindings()
        lost = {m: ips for m, ips in rec["history"].items() if on_b.get(m) not in ips}
        assert not lost, f"ACKed leases missing on B: {lost} (A served without B's ack " \
            f"{ha.a.stat('sync_ack_timeouts')} times: sync/ack_timeout_ms)"
        for c in w.clients:
            assert on_b.get(c.mac) == c.address, (c.name, on_b.get(c.mac), c.address)
        for c in w.clients[:3]:
            r = c.next_renewal(wall)
            assert (r["src"], r["type"], r["yiaddr"]) == (c.source(B_MAC), "ack", c.address), \
                f"{c.name}: {r}"
        outage = w.probe.outage(A_MAC, B_MAC, t_kill)
        print(f"kill -9: B master {took * 1000:.1f} ms after the kill; the renewer's outage "
              f"{outage * 1000:.1f} ms; churn {churn.summary()}")
        assert outage < NOTICE_BOUND_S

    def test_a_restarts_syncs_from_b_then_preempts(self, world: World):
        ha, w = world.ha, world
        assert not ha.a.running() and ha.b.is_("active", "master")
        # Sessions that exist only on B (made while A was down).
        before = ha.b.bindings()
        only_b = {m: ip for m, ip in before.items()
                  if m not in {x["mac"] for x in ha.a.leases()}}
        assert only_b, "no session was created on B while A was down"
        churn = ha.churn(clients=32, new_per_round=1, seed=9)
        try:
            churn.wait_rounds(2)
            t_start = time.monotonic()
            ha.a.start(START_TIMEOUT)
            ha.steady(ha.a, START_TIMEOUT)
            assert ha.a.transition().get("reason") == "preempt", ha.a.transition()
            # A took the role only once in sync: its log says so, in that order.
            run = ha.a.log_text().rsplit("==== start at", 1)[-1]
            synced = run.find("D040 sync connected")
            preempt = run.find("-> master (preempt)")
            assert 0 <= synced < preempt, "A preempted before it was in sync"
            on_a = ha.a.bindings()
            missing = {m: ip for m, ip in only_b.items() if on_a.get(m) != ip}
            assert not missing, f"sessions made on B while A was down, missing on A: {missing}"
            w.probe.wait_acks_from(A_MAC, t_start)
            churn.wait_rounds(3)
        finally:
            rec = churn.stop()
        assert check_churn(rec) == [], check_churn(rec)
        on_a = ha.a.bindings()
        lost = {m: ips for m, ips in rec["history"].items() if on_a.get(m) not in ips}
        assert not lost, f"ACKed leases missing on A: {lost}"
        for c in w.clients[:3]:
            r = c.next_renewal(time.time())
            assert (r["src"], r["type"], r["yiaddr"]) == (c.source(A_MAC), "ack", c.address), \
                f"{c.name}: {r}"
        _, first_a = w.probe.switch(B_MAC, A_MAC, t_start)
        gap = w.probe.max_gap(t_start, time.monotonic())
        print(f"A back: preempted {first_a - t_start:.2f} s after its start; the renewer's "
              f"longest gap {gap * 1000:.1f} ms")
        assert gap < NOTICE_BOUND_S

    def test_no_client_was_naked_or_moved(self, world: World):
        """Over the whole scenario: no NAK, every client kept its one address, and no
        address is bound to two clients on either device."""
        w = world
        problems = [p for c in w.clients for p in c.problems()]
        assert not problems, problems
        assert not w.probe.naks(), w.probe.naks()[:5]
        assert w.probe.addresses() == {w.probe.ip}
        for d in w.ha.devices:
            d.bindings()  # asserts: no address bound twice, no MAC bound twice


# -- a hundred switchovers -----------------------------------------------------------------------
def test_hundred_failovers_under_load(tmp_path: Path):
    """50 rounds of: the master A fails (kill -9, SIGTERM or client link down, in turn),
    B takes over; A comes back (restart or link up), syncs and takes the role back.
    Renewing load and a real client throughout; 100 switchovers in all."""
    switchovers, deadline_s = 100, 300
    with Topology("hh") as t:
        ha = HaPair(t, tmp_path, advert_ms=50, datapath="off", lease_time=LEASE_S)
        try:
            ha.start(START_TIMEOUT)
            ns, mac = ha.client("ud")
            cap = Capture(t, ns, "eth0", tmp_path / "ud-pcap").start()
            ud = Udhcpc(t, ns, "eth0", tmp_path / "ud").start()
            address = ud.wait_event("bound", timeout=60)[1]
            client = Client("ud", ns, mac, ud, cap)
            pns, pmac = ha.client("probe")
            probe = Renewer(t, pns, pmac, tmp_path / "probe", interval=0.02)
            probe.lease()
            probe.start()
            churn = ha.churn(clients=64, new_per_round=1, pause=0.02)
            churn.wait_rounds(2)
            t0 = time.monotonic()
            done, modes, worst = 0, ("kill9", "term", "link"), (0.0, "")
            gaps: dict[str, float] = dict.fromkeys(modes, 0.0)
            renewals = 0
            try:
                while done < switchovers:
                    mode = modes[(done // 2) % 3]
                    if client.count("renew") >= renewals:
                        # The real client renews all along (SIGUSR1; a second one while a
                        # renewal is pending would make udhcpc start over).
                        renewals += 1
                        ud.renew()
                    before = ha.b.transition().get("time", 0)
                    t_fail = time.monotonic()
                    if mode == "kill9":
                        ha.a.kill9()
                    elif mode == "term":
                        ha.a.stop()
                    else:
                        t_fail = ha.a.client_link(False)
                    reason = "master_stopped" if mode == "term" else "peer_down"
                    took = takeover(ha.b, reason, before, wall_of(t_fail))
                    worst = max(worst, (took, mode))
                    done += 1
                    if mode == "link":
                        ha.a.client_link(True)
                    else:
                        ha.a.start(START_TIMEOUT)
                    ha.steady(ha.a, START_TIMEOUT)
                    done += 1
                    gaps[mode] = max(gaps[mode], probe.max_gap(t_fail, time.monotonic()))
                    assert time.monotonic() - t0 < deadline_s, \
                        f"only {done} switchovers in {deadline_s} s"
                elapsed = time.monotonic() - t0
                churn.wait_rounds(2)
                ud.wait_event("renew", renewals)
                ud.renew()
                ud.wait_event("renew", renewals + 1)
            finally:
                rec = churn.stop()
                probe.stop()
            assert check_churn(rec, selecting_naks=True) == [], check_churn(rec, True)
            for d in ha.devices:
                table = d.bindings()  # asserts: no address bound to two clients
                lost = {m: ips for m, ips in rec["history"].items() if table.get(m) not in ips}
                assert not lost, f"{d.name}: ACKed leases missing: {list(lost.items())[:5]}"
                assert table.get(mac) == address
            assert client.problems() == []
            assert not probe.naks() and probe.addresses() == {probe.ip}
            print(f"{done} switchovers in {elapsed:.1f} s; slowest takeover "
                  f"{worst[0] * 1000:.0f} ms ({worst[1]}); churn: {rec['rounds']} rounds, "
                  f"{rec['acks']} ACKs, {len(rec['clients'])} clients, {rec['timeouts']} "
                  f"requests unanswered after retries, {rec['naks']} NAKs of new clients in "
                  f"SELECTING {[n['why'] for n in rec['nak_list']]}; the 20 ms renewer's "
                  f"longest gap per failure mode, ms: "
                  f"{ {k: round(v * 1000) for k, v in gaps.items()} }")
            assert elapsed < deadline_s
            ha.stop()
        finally:
            for d in ha.devices:
                print(f"==== {d.name} daemon log\n{d.log_tail(40)}")


# -- cold start -----------------------------------------------------------------------------
def test_cold_start_of_both_serves_within_3s(tmp_path: Path):
    """Both devices start at the same instant, on empty stores, with a client already
    asking (udhcpc, one DISCOVER a second): it has its lease within 3 s."""
    with Topology("hc") as t:
        ha = HaPair(t, tmp_path, advert_ms=ADVERT_MS, datapath="off")
        ns, _ = ha.client("c1")
        try:
            ud = Udhcpc(t, ns, "eth0", tmp_path / "c1")
            t0 = time.monotonic()
            ha.a.launch()
            ha.b.launch()
            ud.start("-T", "1", "-t", "20")
            ud.wait_event("bound", timeout=60)
            took = time.monotonic() - t0
            serving = ha.serving()
            print(f"cold start: client bound {took:.2f} s after both daemons were started "
                  f"(served by {[d.name for d in serving]})")
            assert took < 3.0
            ha.steady(ha.a, 30)
            ha.stop()
        finally:
            for d in ha.devices:
                print(f"==== {d.name} daemon log\n{d.log_tail(20)}")
