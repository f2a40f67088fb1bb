"""VrrpService glue with the kernel faked out: action order around on_transition, counters,
re-entrant callbacks, stop; groups: service VIPs, health, two groups sharing an
interface's receive socket (the real RxHub with its socket left out), the VRID and VMAC
refusals, cleanup (no root, no sockets; a real asyncio loop)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from appliance.config.model import VrrpConfig
from appliance.vrrp import netlink as nl
from appliance.vrrp import service as svc_mod
from appliance.vrrp import transport as tr_mod
from appliance.vrrp.packet import Advert, Received, Reject
from appliance.vrrp.service import GroupSpec, VrrpService, VrrpStartError, cleanup

ME = IPv4Address("192.0.2.10")
PEER = IPv4Address("192.0.2.11")
VIP = IPv4Interface("192.0.2.100/24")


class World:
    """What the fakes saw, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.on_datagram: Any = None
        self.on_link: Any = None
        self.links_up: dict[str, bool] = {}
        self.has_address = True
        # interfaces that exist: name -> index (eth1 is 2; service interfaces from 10)
        self.index: dict[str, int] = {"eth1": 2, "eth2": 3}
        self.addresses: dict[int, list[IPv4Interface]] = {}  # what `ip addr` would show
        self.vmacs: list[str] = []
        self.on_datagrams: list[Any] = []  # every service's callback, in start order


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()

    class FakeNetlink:
        def link_index(self, ifname: str) -> int | None:
            return w.index.get(ifname)

        def link_mac(self, index: int) -> bytes:
            return bytes((2, 0, 0, 0, index // 256, index % 256))

        def link_up(self, ifname: str) -> bool:
            return w.links_up.get(ifname, True)

        def remove_stale_on(self, wanted: Any) -> list[tuple[int, IPv4Interface]]:
            w.log.append(("remove_stale", {i: tuple(v) for i, v in wanted.items()}))
            stale = [(i, a) for i, vips in wanted.items() for a in w.addresses.get(i, [])
                     if a.ip in {v.ip for v in vips}]  # whatever the prefix, as the real
            for i, a in stale:
                w.addresses[i].remove(a)
            return stale

        def primary_address(self, index: int, exclude: Any) -> IPv4Address | None:
            return ME if w.has_address else None

        def add_addresses(self, index: int, vips: Any) -> None:
            if index not in w.index.values():
                raise nl.NetlinkFailure(f"cannot add on link {index}: No such device")
            vips = tuple(vips)
            w.log.append(("add_vips", vips) if index == 2 else ("add_svc", index, vips))
            have = w.addresses.setdefault(index, [])
            have += [v for v in vips if v not in have]

        def del_addresses(self, index: int, vips: Any) -> None:
            vips = tuple(vips)
            w.log.append(("del_vips", vips) if index == 2 else ("del_svc", index, vips))
            w.addresses[index] = [a for a in w.addresses.get(index, []) if a not in vips]

        def change_addresses(self, add: bool, pairs: Any) -> list[tuple[int, Any, Any]]:
            failed = []
            for index, vip in pairs:
                try:
                    (self.add_addresses if add else self.del_addresses)(index, [vip])
                except nl.NetlinkFailure:
                    failed.append((index, vip, OSError(19, "No such device")))
            return failed

        def create_vmac(self, parent: int, vrid: int) -> int:
            w.vmacs.append(nl.vmac_ifname(vrid))
            return 2  # the VIPs' link, as far as these tests look

        def delete_link(self, index: int) -> None:
            w.log.append(("delete_link", index))

        def close(self) -> None:
            w.log.append(("netlink_closed",))

    class FakeMonitor:
        def __init__(self, names: Any, on_change: Any, loop: Any) -> None:
            self.names = list(names)
            w.on_link = on_change

        def start(self, initial: Any) -> dict[str, bool]:
            return {n: initial(n) for n in self.names}

        def states(self) -> dict[str, bool]:
            return {n: w.links_up.get(n, True) for n in self.names}

        def close(self) -> None:
            pass

    class FakeGarp:
        def __init__(self, ifname: str, mac: bytes) -> None:
            pass

        def send(self, addresses: Any) -> int:
            w.log.append(("garp",))
            return len(tuple(addresses))

        def send_frames(self, frames: Any) -> tuple[int, list[tuple[str, OSError]]]:
            frames = list(frames)
            down = [(i, OSError(100, "Network is down")) for i, _ in frames
                    if not w.links_up.get(i, True)]
            w.log.append(("garp_svc", tuple(i for i, _ in frames)))
            return len(frames) - len(down), down

        def close(self) -> None:
            pass

    class FakeTransport(tr_mod.VrrpTransport):
        """The real transport on the loop's real RxHub, without sockets: datagrams are
        handed to the hub's receiver (`receive`), adverts are logged."""

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            w.on_datagram = self._on_datagram
            w.on_datagrams.append(self._on_datagram)

        def open(self) -> None:
            hub = tr_mod.RxHub.of(self._loop)
            hub.attach(self._ifname, self._vrid, self._group, self._on_datagram)
            self._attached = True

        def send(self, advert: Advert, src: IPv4Address) -> None:
            w.log.append(("advert", advert.priority) if not self._group else
                         ("advert", self._group, advert.priority))

        def close(self) -> None:
            if self._attached:
                w.log.append(("transport_closed",))
            super().close()

    monkeypatch.setattr(tr_mod._Receiver, "open", lambda self: None)
    monkeypatch.setattr(tr_mod._Receiver, "close", lambda self: None)
    monkeypatch.setattr(nl, "Netlink", FakeNetlink)
    monkeypatch.setattr(nl, "LinkMonitor", FakeMonitor)
    monkeypatch.setattr(nl, "GarpSender", FakeGarp)
    monkeypatch.setattr(svc_mod, "VrrpTransport", FakeTransport)
    return w


def cfg(**kw: Any) -> VrrpConfig:
    base: dict[str, Any] = dict(vrid=51, priority=100, advert_interval_ms=10, preempt=True,
                                virtual_ips=(VIP,), garp_count=2, garp_repeat_s=0)
    base.update(kw)
    return VrrpConfig(**base)


def advert(priority: int) -> Received:
    return Received(PEER, IPv4Address("224.0.0.18"), Advert(51, priority, 1, (VIP.ip,)))


async def _until(pred: Any, timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout)


def test_becoming_master_calls_back_before_advert_vips_and_garp(world: World) -> None:
    async def run() -> None:
        def on_transition(state: str, info: dict[str, Any]) -> None:
            world.log.append(("transition", state, info["reason"]))

        s = VrrpService(cfg(), "eth1", on_transition)
        await s.start()
        assert s.state == "backup" and s.master is None
        await _until(lambda: s.state == "master")  # Master_Down_Interval: 36 ms
        i = world.log.index(("transition", "master", "master_down"))
        assert world.log[i + 1:i + 5] == [("advert", 100), ("add_vips", (VIP,)), ("garp",),
                                          ("garp",)]
        assert s.master == str(ME) and s.counters()["tx_garps"] == 2

        # a higher priority: the callback comes before the VIPs go
        world.log.clear()
        world.on_datagram(advert(200), asyncio.get_running_loop().time())
        assert world.log[0] == ("transition", "backup", "higher_priority")
        assert ("del_vips", (VIP,)) in world.log
        assert s.state == "backup" and s.master == str(PEER)
        assert s.counters()["rx_adverts"] == 1 and s.counters()["became_backup"] == 2

        # stop as master: callback, priority 0, VIPs removed, sockets closed
        world.on_datagram(advert(0), asyncio.get_running_loop().time())
        await _until(lambda: s.state == "master")  # after Skew_Time
        world.log.clear()
        await s.stop()
        assert world.log[:3] == [("transition", "initialize", "shutdown"), ("advert", 0),
                                 ("del_vips", (VIP,))]
        assert ("transport_closed",) in world.log and ("netlink_closed",) in world.log
        await s.stop()  # twice is harmless

    asyncio.run(run())


def test_rejects_are_counted_by_name(world: World) -> None:
    async def run() -> None:
        s = VrrpService(cfg(), "eth1", lambda st, info: None)
        await s.start()
        now = asyncio.get_running_loop().time()
        world.on_datagram(Reject.BAD_TTL, now)
        world.on_datagram(Reject.BAD_TTL, now)
        other = Received(PEER, IPv4Address("224.0.0.18"), Advert(52, 200, 1, (VIP.ip,)))
        world.on_datagram(other, now)
        c = s.counters()
        assert c["rx_bad_ttl"] == 2 and c["rx_other_vrid"] == 1
        assert c["rx_packets"] == 3 and c["rx_adverts"] == 0
        assert s.state == "backup"
        await s.stop()

    asyncio.run(run())


def test_reentrant_set_gate_from_the_callback(world: World) -> None:
    """A daemon that closes the gate from on_transition must not see actions interleave."""
    async def run() -> None:
        seen: list[str] = []
        s: VrrpService

        def on_transition(state: str, info: dict[str, Any]) -> None:
            seen.append(state)
            s.set_gate(False)

        s = VrrpService(cfg(), "eth1", on_transition)
        await s.start()
        await _until(lambda: s.state == "master")
        i = world.log.index(("advert", 100))
        assert world.log[i + 1] == ("add_vips", (VIP,))
        assert seen == ["backup", "master"]
        await s.stop()

    asyncio.run(run())


def test_callback_errors_do_not_stop_vrrp(world: World) -> None:
    async def run() -> None:
        def boom(state: str, info: dict[str, Any]) -> None:
            raise RuntimeError("daemon bug")

        s = VrrpService(cfg(), "eth1", boom)
        await s.start()
        await _until(lambda: s.state == "master")
        assert ("add_vips", (VIP,)) in world.log
        await s.stop()

    asyncio.run(run())


def test_gate_before_start_and_tracked_link_down_at_start(world: World) -> None:
    world.links_up["eth2"] = False

    async def run() -> None:
        s = VrrpService(cfg(priority=255, track=(("eth2", 50),)), "eth1",
                        lambda st, info: None)
        s.set_gate(False)
        await s.start()
        assert s.priority == 205 and s.state == "backup"  # not owner, and gated
        world.on_link("eth2", True)
        assert s.priority == 255 and s.counters()["link_events"] == 1
        await s.stop()

    asyncio.run(run())


def test_start_errors(world: World) -> None:
    async def run() -> None:
        with pytest.raises(VrrpStartError, match="does not exist"):
            await VrrpService(cfg(), "eth9", lambda st, info: None).start()
        world.has_address = False
        s = VrrpService(cfg(), "eth1", lambda st, info: None)
        with pytest.raises(VrrpStartError, match="no IPv4 address"):
            await s.start()
        assert s.state == "initialize"

    asyncio.run(run())


# -- intruders: vrrp/peer, the interval bound ------------------------------------------

STRANGER = IPv4Address("192.0.2.250")


def forged(priority: int, interval_cs: int, src: IPv4Address = STRANGER) -> Received:
    return Received(src, IPv4Address("224.0.0.18"),
                    Advert(51, priority, interval_cs, (VIP.ip,)))


def test_peer_filter_drops_other_sources_before_the_state_machine(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """vrrp/peer set: an advert from any other address is counted as rx_not_peer and
    logged (rate-limited, with its source); the state machine never sees it, so even a
    priority-255 advert changes nothing. The peer's own adverts are followed."""
    async def run() -> None:
        seen: list[str] = []
        s = VrrpService(cfg(peer=PEER), "eth1", lambda st, info: seen.append(st))
        await s.start()
        await _until(lambda: s.state == "master")
        now = asyncio.get_running_loop().time()
        caplog.set_level("INFO", logger="appliance.vrrp")
        for _ in range(5):
            world.on_datagram(forged(255, 4095), now)
        c = s.counters()
        assert c["rx_not_peer"] == 5 and c["rx_adverts"] == 0 and c["rx_packets"] == 5
        assert s.state == "master" and seen == ["backup", "master"]
        lines = [r.getMessage() for r in caplog.records if "VRRP_RX_REJECT" in r.getMessage()]
        assert lines == [f"VRRP_RX_REJECT dropped an advert on eth1 from {STRANGER}: "
                         "rx_not_peer (0 more since last report)"]
        world.on_datagram(forged(255, 1, ME), now)  # our own advert looped back
        assert s.counters()["rx_own"] == 1 and s.counters()["rx_not_peer"] == 5
        world.on_datagram(forged(255, 1, PEER), now)  # the peer: a better master
        assert s.state == "backup" and s.master == str(PEER)
        assert s.counters()["rx_adverts"] == 1
        await s.stop()

    asyncio.run(run())


def test_without_peer_a_forged_max_interval_advert_costs_one_master_down_interval(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    """No vrrp/peer: the forged advert is followed (the master steps down, §6.4.3), but
    with our own interval: the service is master again after its own
    Master_Down_Interval (36 ms here), not 3 x 40.95 s. The mismatch is counted and
    logged."""
    async def run() -> None:
        caplog.set_level("INFO", logger="appliance.vrrp")
        s = VrrpService(cfg(), "eth1", lambda st, info: None)
        await s.start()
        await _until(lambda: s.state == "master")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        world.on_datagram(forged(255, 4095), t0)
        assert s.state == "backup" and s.master == str(STRANGER)
        await _until(lambda: s.state == "master", timeout=2.0)
        took = loop.time() - t0
        assert took < 0.5, took
        c = s.counters()
        assert c["rx_interval_mismatch"] == 1 and c["became_master"] == 2
        assert any("VRRP_INTERVAL_MISMATCH advert from 192.0.2.250 on eth1 says 4095 cs, "
                   "ours is 1 cs; Master_Down_Interval from 1 cs" in r.getMessage()
                   for r in caplog.records)
        await s.stop()

    asyncio.run(run())


def test_refusals_of_the_state_machine_are_counted_and_logged_with_their_source(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        caplog.set_level("INFO", logger="appliance.vrrp")
        s = VrrpService(cfg(advert_interval_ms=1000), "eth1", lambda st, info: None)
        await s.start()
        now = asyncio.get_running_loop().time()
        world.on_datagram(forged(200, 100, PEER), now)  # the master we follow
        world.on_datagram(forged(50, 100), now)
        world.on_datagram(forged(0, 100), now)
        c = s.counters()
        assert c["rx_lower_priority"] == 1 and c["rx_stop_not_master"] == 1
        assert s.state == "backup" and s.master == str(PEER)
        lines = [(r.levelname, r.getMessage()) for r in caplog.records
                 if "VRRP_RX_REJECT" in r.getMessage()]
        assert lines == [("WARNING", f"VRRP_RX_REJECT dropped an advert on eth1 from "
                          f"{STRANGER}: {reason} (0 more since last report)")
                         for reason in ("rx_lower_priority", "rx_stop_not_master")]
        await s.stop()

    asyncio.run(run())


def test_peer_naming_this_device_is_a_start_error(world: World) -> None:
    async def run() -> None:
        s = VrrpService(cfg(peer=ME), "eth1", lambda st, info: None)
        with pytest.raises(VrrpStartError, match="own address"):
            await s.start()

    asyncio.run(run())


def test_every_reject_and_counter_is_present_from_start(world: World) -> None:
    async def run() -> None:
        s = VrrpService(cfg(), "eth1", lambda st, info: None)
        await s.start()
        c = s.counters()
        assert {r.value for r in Reject} <= set(c)
        assert {"rx_not_peer", "rx_lower_priority", "rx_stop_not_master",
                "rx_interval_mismatch"} <= set(c)
        assert all(v == 0 for k, v in c.items() if k.startswith("rx_"))
        await s.stop()

    asyncio.run(run())


# -- groups: service VIPs, health, shared interfaces -----------------------------------

def svc_vips(n: int, first: int = 10) -> list[tuple[str, IPv4Interface]]:
    """n service interfaces eth1.<first..>, each with one VIP 10.<i/256>.<i%256>.1/24."""
    return [(f"eth1.{first + i}", IPv4Interface(f"10.{i // 256}.{i % 256}.1/24"))
            for i in range(n)]


def exist(world: World, pairs: list[tuple[str, IPv4Interface]]) -> None:
    for ifname, _ in pairs:
        world.index.setdefault(ifname, 10 + len(world.index))


def test_service_vips_follow_mastership_after_the_callback(world: World) -> None:
    """200 service interfaces: the transition callback still comes first; then the
    advert, the group's own VIPs, every service VIP on its own interface, and the
    gratuitous ARPs of both (garp_count rounds). Leaving master removes them all."""
    pairs = svc_vips(200)
    exist(world, pairs)

    async def run() -> None:
        infos: list[dict[str, Any]] = []

        def on_transition(state: str, info: dict[str, Any]) -> None:
            infos.append(info)
            world.log.append(("transition", state))

        s = VrrpService(cfg(), "eth1", on_transition, group="ga", service_vips=pairs)
        await s.start()
        await _until(lambda: s.state == "master")
        i = world.log.index(("transition", "master"))
        after = world.log[i + 1:]
        assert after[0] == ("advert", "ga", 100)
        assert after[1] == ("add_vips", (VIP,))
        added = [(e[1], e[2][0]) for e in after if e[0] == "add_svc"]
        assert added == [(world.index[n], v) for n, v in pairs]
        garps = [e for e in after if e[0] in ("garp", "garp_svc")]
        assert garps == [("garp",), ("garp_svc", tuple(n for n, _ in pairs))] * 2
        assert world.log.index(garps[0]) > world.log.index(("add_svc", world.index[
            pairs[-1][0]], (pairs[-1][1],)))
        assert s.counters()["tx_garps"] == 2 * 201
        assert infos[-1]["group"] == "ga" and infos[-1]["interface"] == "eth1"
        assert all(world.addresses[world.index[n]] == [v] for n, v in pairs)

        world.log.clear()
        world.on_datagram(advert(200), asyncio.get_running_loop().time())
        assert world.log[0] == ("transition", "backup")
        assert ("del_vips", (VIP,)) in world.log
        assert all(not world.addresses[world.index[n]] for n, _ in pairs)
        await s.stop()

    asyncio.run(run())


def test_stale_service_vips_are_removed_at_start(world: World,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    pairs = svc_vips(3)
    exist(world, pairs)
    world.addresses[2] = [VIP]  # a crashed run's, on the group's interface and two more
    world.addresses[world.index[pairs[0][0]]] = [pairs[0][1]]
    world.addresses[world.index[pairs[2][0]]] = [pairs[2][1]]

    async def run() -> None:
        caplog.set_level("INFO", logger="appliance.vrrp")
        s = VrrpService(cfg(advert_interval_ms=1000), "eth1", lambda st, info: None,
                        group="ga", service_vips=pairs)
        await s.start()
        assert s.state == "backup"
        assert all(not a for a in world.addresses.values())
        line = next(r.getMessage() for r in caplog.records if "VRRP_STALE_VIPS" in
                    r.getMessage())
        assert line == ("VRRP_STALE_VIPS group ga removed 192.0.2.100/24 on eth1, "
                        "10.0.0.1/24 on eth1.10, 10.0.2.1/24 on eth1.12 left by an "
                        "earlier run")
        await s.stop()

    asyncio.run(run())


def test_missing_service_interface_is_a_start_error_naming_it(world: World) -> None:
    pairs = svc_vips(3)
    exist(world, pairs[:1])

    async def run() -> None:
        s = VrrpService(cfg(), "eth1", lambda st, info: None, group="ga",
                        service_vips=pairs)
        with pytest.raises(VrrpStartError,
                           match=r"group ga service interfaces eth1\.11, eth1\.12 do not exist"):
            await s.start()
        assert s.state == "initialize"

    asyncio.run(run())


def test_set_service_vips_live_as_master_and_as_backup(world: World) -> None:
    """Reload: while master, a removed interface's VIP goes and a new one is added and
    announced (garp_count rounds for it alone); while backup, a new one found on its
    interface is removed. A missing interface is refused and changes nothing."""
    pairs = svc_vips(3)
    exist(world, pairs)
    extra = ("eth1.99", IPv4Interface("10.9.9.1/24"))

    async def run() -> None:
        s = VrrpService(cfg(), "eth1", lambda st, info: None, group="ga",
                        service_vips=pairs[:2])
        await s.start()
        await _until(lambda: s.state == "master")
        world.log.clear()
        s.set_service_vips([pairs[0], pairs[2]])
        i1, i2 = world.index[pairs[1][0]], world.index[pairs[2][0]]
        assert world.log == [("del_svc", i1, (pairs[1][1],)), ("add_svc", i2, (pairs[2][1],)),
                             ("garp_svc", (pairs[2][0],)), ("garp_svc", (pairs[2][0],))]
        assert s.service_vips == (pairs[0], pairs[2])

        with pytest.raises(VrrpStartError, match=r"eth1\.99 does not exist"):
            s.set_service_vips([*pairs, extra])
        assert s.service_vips == (pairs[0], pairs[2])

        # a later transition handles the new set
        world.log.clear()
        world.on_datagram(advert(200), asyncio.get_running_loop().time())
        assert [e for e in world.log if e[0] == "del_svc"] == [
            ("del_svc", world.index[pairs[0][0]], (pairs[0][1],)),
            ("del_svc", i2, (pairs[2][1],))]

        world.index[extra[0]] = 99
        world.addresses[99] = [extra[1]]  # left by a crashed run
        s.set_service_vips([pairs[0], extra])
        assert world.addresses[99] == []  # backup: not ours to hold
        await s.stop()

    asyncio.run(run())


def test_service_vip_failures_are_counted_and_logged_once(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    pairs = svc_vips(8)
    exist(world, pairs)
    for name, _ in pairs[:7]:
        world.links_up[name] = False  # GARPs refused: the interface is down

    async def run() -> None:
        caplog.set_level("INFO", logger="appliance.vrrp")
        s = VrrpService(cfg(garp_count=3), "eth1", lambda st, info: None, group="ga",
                        service_vips=pairs)
        await s.start()
        world.index.pop(pairs[0][0])  # the VLAN vanished after start
        await _until(lambda: s.state == "master")
        c = s.counters()
        assert c["netlink_errors"] == 1 and c["tx_garp_errors"] == 3 * 7
        assert c["tx_garps"] == 3 * (1 + 1)
        errors = [r.getMessage() for r in caplog.records if "VRRP_GARP_ERROR" in
                  r.getMessage()]
        assert len(errors) == 1 and errors[0].startswith(
            "VRRP_GARP_ERROR group ga 7 gratuitous ARPs for service VIPs not sent: eth1.10:")
        vip_errors = [r.getMessage() for r in caplog.records if "VRRP_VIP_ERROR" in
                      r.getMessage()]
        assert vip_errors == ["VRRP_VIP_ERROR group ga 1 service VIPs not added: "
                              "10.0.0.1/24 on eth1.10: No such device"]
        await s.stop()

    asyncio.run(run())


def test_set_health_advertises_priority_one_at_once_and_back(world: World) -> None:
    async def run() -> None:
        s = VrrpService(cfg(priority=200), "eth1", lambda st, info: None, group="ga")
        await s.start()
        await _until(lambda: s.state == "master")
        world.log.clear()
        s.set_health(False)
        assert world.log == [("advert", "ga", 1)]
        assert s.priority == 1 and s.state == "master" and not s.healthy
        s.set_health(False)  # no change
        world.log.clear()
        s.set_health(True)
        assert world.log == [("advert", "ga", 200)] and s.priority == 200
        assert s.counters()["health_changes"] == 2
        await s.stop()

    asyncio.run(run())


def test_health_before_start_makes_an_owner_start_as_backup(world: World) -> None:
    async def run() -> None:
        s = VrrpService(cfg(priority=255), "eth1", lambda st, info: None)
        s.set_health(False)
        await s.start()
        assert s.state == "backup" and s.priority == 1
        await s.stop()

    asyncio.run(run())


def _datagram(vrid: int, priority: int, src: IPv4Address = PEER,
              vips: tuple[IPv4Address, ...] = (VIP.ip,), ttl: int = 255) -> bytes:
    from appliance.vrrp.packet import encode_datagram
    return encode_datagram(Advert(vrid, priority, 1, vips), src, ttl=ttl)


def test_two_groups_on_one_interface_share_its_socket_and_count_honestly(
        world: World) -> None:
    """Load-sharing on one LAN: groups ga (VRID 51) and gb (VRID 52) on eth1. Each
    datagram is read once and goes to the group its VRID names: the peer's adverts
    for gb are not ga's rx_other_vrid. A VRID no group has, and a datagram too short
    to name one, reach both groups and are counted by both."""
    vip_b = IPv4Interface("192.0.2.200/24")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        a = VrrpService(cfg(advert_interval_ms=1000), "eth1", lambda st, info: None,
                        group="ga")
        b = VrrpService(cfg(vrid=52, virtual_ips=(vip_b,), advert_interval_ms=1000),
                        "eth1", lambda st, info: None, group="gb")
        await a.start()
        await b.start()
        hub = tr_mod.RxHub.of(loop)
        assert hub.groups_on("eth1") == {51: "ga", 52: "gb"}
        rx = hub._receivers["eth1"]
        now = loop.time()
        for _ in range(3):
            rx.dispatch(_datagram(52, 200, vips=(vip_b.ip,)), now)
        rx.dispatch(_datagram(51, 200), now)
        rx.dispatch(_datagram(51, 200, ttl=64), now)  # names ga: ga counts it
        rx.dispatch(_datagram(77, 200), now)  # nobody's VRID
        rx.dispatch(b"\x45\x00", now)  # too short to name a VRID
        ca, cb = a.counters(), b.counters()
        assert (ca["rx_adverts"], cb["rx_adverts"]) == (1, 3)
        assert (ca["rx_other_vrid"], cb["rx_other_vrid"]) == (1, 1)
        assert (ca["rx_bad_ttl"], cb["rx_bad_ttl"]) == (1, 0)
        assert (ca["rx_truncated"], cb["rx_truncated"]) == (1, 1)
        assert (ca["rx_packets"], cb["rx_packets"]) == (4, 5)
        assert a.master == str(PEER) and b.master == str(PEER)
        await a.stop()
        assert hub.groups_on("eth1") == {52: "gb"}
        await b.stop()
        assert hub.groups_on("eth1") == {}

    asyncio.run(run())


def test_a_vrid_used_twice_on_one_interface_is_refused_at_start(world: World) -> None:
    async def run() -> None:
        a = VrrpService(cfg(), "eth1", lambda st, info: None, group="ga")
        await a.start()
        await _until(lambda: a.state == "master")
        assert world.addresses[2] == [VIP]
        world.log.clear()
        b = VrrpService(cfg(), "eth1", lambda st, info: None, group="gb")
        with pytest.raises(VrrpStartError, match="VRID 51 on eth1 is already used by "
                                                 "group ga"):
            await b.start()
        assert b.state == "initialize"
        # refused before it touched anything: ga's VIP is still there
        assert world.addresses[2] == [VIP] and world.log == [("netlink_closed",)]
        # another interface may reuse the VRID
        c = VrrpService(cfg(), "eth2", lambda st, info: None, group="gc")
        await c.start()
        await a.stop()
        await c.stop()

    asyncio.run(run())


def test_two_groups_with_one_vrid_cannot_both_use_vmac(world: World) -> None:
    async def run() -> None:
        a = VrrpService(cfg(use_vmac=True), "eth1", lambda st, info: None, group="ga")
        await a.start()
        b = VrrpService(cfg(use_vmac=True), "eth2", lambda st, info: None, group="gb")
        with pytest.raises(VrrpStartError, match="groups ga and gb both need the "
                                                 r"interface vrrp\.51"):
            await b.start()
        await a.stop()
        await b.start()  # free again once ga stopped
        await b.stop()

    asyncio.run(run())


def test_log_lines_name_the_group(world: World, caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        caplog.set_level("INFO", logger="appliance.vrrp")
        s = VrrpService(cfg(), "eth1", lambda st, info: None, group="ga")
        await s.start()
        world.on_datagram(Reject.BAD_TTL, asyncio.get_running_loop().time())
        s.set_health(False)
        await s.stop()
        lines = [r.getMessage() for r in caplog.records]
        assert "VRRP_RX_REJECT group ga dropped an advert on eth1: rx_bad_ttl (0 more " \
               "since last report)" in lines
        assert any(m.startswith("VRRP_TRANSITION group ga vrid 51 -> backup") for m in lines)
        assert "VRRP_HEALTH group ga cannot serve here: advertising priority 1" in lines
        assert "VRRP_PRIORITY group ga effective priority 100 -> 1" in lines

    asyncio.run(run())


def test_cleanup_removes_every_groups_vips_service_vips_and_vmac(world: World) -> None:
    """`dhcp-hotbackup cleanup` after a crash: what each group left, with its name; an
    interface that is gone is skipped; nothing left, nothing done."""
    pairs = svc_vips(2)
    exist(world, pairs)
    vip_b = IPv4Interface("198.51.100.1/24")
    world.index["vrrp.52"] = 40
    world.addresses[2] = [VIP]
    world.addresses[3] = [IPv4Interface("198.51.100.1/25")]  # a VIP whatever its prefix
    world.addresses[world.index[pairs[1][0]]] = [pairs[1][1], IPv4Interface("10.0.1.2/24")]
    groups = [GroupSpec("ga", cfg(), "eth1", (*pairs, ("eth1.404", pairs[0][1]))),
              GroupSpec("gb", cfg(vrid=52, virtual_ips=(vip_b,), use_vmac=True), "eth2")]
    assert cleanup(groups) == [
        "stale virtual IP 192.0.2.100/24 removed from eth1 (group ga)",
        "stale virtual IP 10.0.1.1/24 removed from eth1.11 (group ga)",
        "stale virtual IP 198.51.100.1/25 removed from eth2 (group gb)",
        "virtual MAC interface vrrp.52 removed (group gb)"]
    assert world.addresses[world.index[pairs[1][0]]] == [IPv4Interface("10.0.1.2/24")]
    assert ("delete_link", 40) in world.log
    del world.index["vrrp.52"]
    assert cleanup(groups) == []


def test_a_recreated_service_interface_is_looked_up_again(world: World) -> None:
    """A VLAN deleted and added again has a new index: the VIP goes on the new one."""
    pairs = svc_vips(2)
    exist(world, pairs)

    async def run() -> None:
        s = VrrpService(cfg(), "eth1", lambda st, info: None, group="ga",
                        service_vips=pairs)
        await s.start()
        world.index[pairs[1][0]] = 77
        await _until(lambda: s.state == "master")
        assert world.addresses[77] == [pairs[1][1]]
        assert s.counters()["netlink_errors"] == 0
        await s.stop()
        assert world.addresses[77] == []

    asyncio.run(run())


def test_takeover_gate_and_priority_act_on_their_group_only(world: World) -> None:
    """The pair policy's TakeOver(group), a reload's priority and the gate reach one
    group's machine; the other group on the same interface does not move."""
    vip_b = IPv4Interface("192.0.2.200/24")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, str, str]] = []
        a = VrrpService(cfg(advert_interval_ms=1000), "eth1",
                        lambda st, info: seen.append((info["group"], st, info["reason"])),
                        group="ga")
        b = VrrpService(cfg(vrid=52, virtual_ips=(vip_b,), advert_interval_ms=1000), "eth1",
                        lambda st, info: seen.append((info["group"], st, info["reason"])),
                        group="gb")
        await a.start()
        await b.start()
        rx = tr_mod.RxHub.of(loop)._receivers["eth1"]
        rx.dispatch(_datagram(51, 200), loop.time())
        rx.dispatch(_datagram(52, 200, vips=(vip_b.ip,)), loop.time())
        seen.clear()
        a.takeover("the peer's daemon is gone")
        assert seen == [("ga", "master", "peer_down")] and b.state == "backup"
        world.log.clear()
        a.set_priority(150)
        assert world.log == [("advert", "ga", 150)] and b.priority == 100
        b.set_gate(False)
        rx.dispatch(_datagram(52, 50, vips=(vip_b.ip,)), loop.time())  # gated: no preempt
        assert b.state == "backup" and b.master == str(PEER)
        b.set_gate(True)
        rx.dispatch(_datagram(52, 50, vips=(vip_b.ip,)), loop.time())
        assert b.state == "master" and seen[-1] == ("gb", "master", "preempt")
        await a.stop()
        await b.stop()

    asyncio.run(run())
