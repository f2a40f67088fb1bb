"""VrrpService glue with the kernel faked out: action order around on_transition, counters,
re-entrant callbacks, stop (no root, no sockets; a real asyncio loop)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from appliance.config.model import VrrpConfig
from appliance.vrrp import netlink as nl
from appliance.vrrp import service as svc_mod
from appliance.vrrp.packet import Advert, Received, Reject
from appliance.vrrp.service import VrrpService, VrrpStartError

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


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()

    class FakeNetlink:
        def link_index(self, ifname: str) -> int | None:
            return 2 if ifname == "eth1" else None

        def link_mac(self, index: int) -> bytes:
            return bytes.fromhex("02000000000a")

        def link_up(self, ifname: str) -> bool:
            return w.links_up.get(ifname, True)

        def remove_stale(self, index: int, vips: Any) -> list[IPv4Interface]:
            w.log.append(("remove_stale",))
            return []

        def primary_address(self, index: int, exclude: Any) -> IPv4Address | None:
            return ME if w.has_address else None

        def add_addresses(self, index: int, vips: Any) -> None:
            w.log.append(("add_vips", tuple(vips)))

        def del_addresses(self, index: int, vips: Any) -> None:
            w.log.append(("del_vips", tuple(vips)))

        def close(self) -> None:
            w.log.append(("netlink_closed",))

    class FakeMonitor:
        def __init__(self, names: Any, on_change: Any, loop: Any) -> None:
            self.names = list(names)
            w.on_link = on_change

        def start(self, initial: Any) -> dict[str, bool]:
            return {n: initial(n) for n in self.names}

        def close(self) -> None:
            pass

    class FakeGarp:
        def __init__(self, ifname: str, mac: bytes) -> None:
            pass

        def send(self, addresses: Any) -> int:
            w.log.append(("garp",))
            return len(tuple(addresses))

        def close(self) -> None:
            pass

    class FakeTransport:
        def __init__(self, loop: Any, ifname: str, on_datagram: Any,
                     send_ifname: str | None = None) -> None:
            w.on_datagram = on_datagram

        def open(self) -> None:
            pass

        def send(self, advert: Advert, src: IPv4Address) -> None:
            w.log.append(("advert", advert.priority))

        def close(self) -> None:
            w.log.append(("transport_closed",))

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
