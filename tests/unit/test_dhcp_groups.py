"""The server on many interfaces and VRRP groups (pure: no sockets, time passed in).

Each (interface, group) has its own server identifier, its virtual IP there; on an
interface two groups share, a client's group is its RFC 3074 bucket's; the halves of a
pool keep two devices (each master of one group, or both serving while cut off from
each other) from ever handing out the same free address."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from appliance.config.model import PoolConfig
from appliance.dhcp.enums import MessageType, Opt, Reason
from appliance.dhcp.loadbalance import group_of
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.server import DhcpServer, Ingress
from appliance.leases.allocator import Allocator
from appliance.leases.model import Lease, LeaseState
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

T0 = 1_700_000_000.0
ZERO = bytes(4)


def ip(s: str) -> bytes:
    return IPv4Address(s).packed


def n(s: str) -> int:
    return int(IPv4Address(s))


# Three VLANs: eth1.100 bound to ga, eth1.200 to gb, eth1.300 shared by ga and gb.
VIP_A100, VIP_B200 = ip("192.0.2.1"), ip("192.0.2.129")
VIP_A300, VIP_B300 = ip("198.51.100.1"), ip("198.51.100.254")
ETH100 = Ingress(local_ips=(n("192.0.2.2"), n("192.0.2.1")), server_ids=(VIP_A100,),
                 groups=("ga",), name="eth1.100")
ETH200 = Ingress(local_ips=(n("192.0.2.130"), n("192.0.2.129")), server_ids=(VIP_B200,),
                 groups=("gb",), name="eth1.200")
ETH300 = Ingress(local_ips=(n("198.51.100.2"), n("198.51.100.1"), n("198.51.100.254")),
                 server_ids=(VIP_A300, VIP_B300), groups=("ga", "gb"), name="eth1.300")


def pools() -> Pools:
    def pool(name: str, net: str, first: str, last: str) -> PoolConfig:
        return PoolConfig(name=name, subnet=IPv4Network(net),
                          ranges=((IPv4Address(first), IPv4Address(last)),), lease_time=600)

    return Pools.from_config((
        pool("v100", "192.0.2.0/25", "192.0.2.100", "192.0.2.120"),
        pool("v200", "192.0.2.128/25", "192.0.2.200", "192.0.2.220"),
        pool("v300", "198.51.100.0/24", "198.51.100.100", "198.51.100.199"),
    ))


def server(owner: int | None = None) -> DhcpServer:
    p = pools()
    table = LeaseTable(origin="A")
    alloc = Allocator(p, table)
    alloc.owner = owner
    return DhcpServer(p, table, alloc)


def mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, i >> 8, i & 0xFF])


def macs_of_group(g: int, count: int) -> list[bytes]:
    """MACs whose RFC 3074 bucket sends them to group index `g` on a shared interface."""
    out = [m for m in (mac(i) for i in range(4 * count + 64)) if group_of(m, 6) == g]
    assert len(out) >= count
    return out[:count]


def msg(mtype: int, chaddr: bytes, **opts: bytes) -> DhcpMessage:
    o: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    ciaddr = opts.pop("ciaddr", ZERO)
    for k, v in opts.items():
        o[Opt[k.upper()]] = v
    return DhcpMessage(op=1, htype=1, hlen=6, hops=0, xid=7, secs=0, flags=0, ciaddr=ciaddr,
                       yiaddr=ZERO, siaddr=ZERO, giaddr=ZERO, chaddr=chaddr + bytes(10),
                       sname=bytes(64), file=bytes(128), options=o)


def dora(s: DhcpServer, ing: Ingress, chaddr: bytes, now: float = T0) -> tuple[bytes, bytes]:
    """(address, server identifier) of a completed DORA on `ing`."""
    off = s.handle(msg(MessageType.DISCOVER, chaddr), ing, now)
    assert off.sent == "offer", off
    sid = off.reply.options[Opt.SERVER_ID]
    ack = s.handle(msg(MessageType.REQUEST, chaddr, requested_ip=off.reply.yiaddr,
                       server_id=sid), ing, now)
    assert ack.sent == "ack", ack
    assert ack.reply.options[Opt.SERVER_ID] == sid
    return ack.reply.yiaddr, sid


class TestServerIdentifierPerInterfaceAndGroup:
    def test_each_vlan_gets_its_pool_and_its_groups_virtual_ip(self):
        s = server()
        a, sid_a = dora(s, ETH100, mac(1))
        b, sid_b = dora(s, ETH200, mac(2))
        assert (sid_a, sid_b) == (VIP_A100, VIP_B200)
        assert IPv4Address(a) in IPv4Network("192.0.2.0/25")
        assert IPv4Address(b) in IPv4Network("192.0.2.128/25")

    def test_on_a_shared_interface_the_bucket_picks_the_group_and_its_virtual_ip(self):
        s = server()
        for g, vip in ((0, VIP_A300), (1, VIP_B300)):
            for m in macs_of_group(g, 5):
                assert ETH300.group_of(msg(MessageType.DISCOVER, m)) == g
                yi, sid = dora(s, ETH300, m)
                assert sid == vip
                assert yi[3] & 1 == g  # the group's half

    def test_selecting_the_other_groups_virtual_ip_is_another_server(self):
        s = server()
        m = macs_of_group(0, 1)[0]
        off = s.handle(msg(MessageType.DISCOVER, m), ETH300, T0)
        assert off.reply.options[Opt.SERVER_ID] == VIP_A300
        d = s.handle(msg(MessageType.REQUEST, m, requested_ip=off.reply.yiaddr,
                         server_id=VIP_B300), ETH300, T0)
        assert d.reply is None and d.commits == () and d.reason is Reason.OTHER_SERVER
        held = s.table.get(int.from_bytes(off.reply.yiaddr, "big"))
        assert held is not None and held.expires == T0  # our offer is let go at once

    def test_selecting_another_vlans_virtual_ip_is_another_server(self):
        s = server()
        off = s.handle(msg(MessageType.DISCOVER, mac(9)), ETH100, T0)
        d = s.handle(msg(MessageType.REQUEST, mac(9), requested_ip=off.reply.yiaddr,
                         server_id=VIP_B200), ETH100, T0)
        assert d.reason is Reason.OTHER_SERVER

    def test_release_and_decline_are_checked_against_the_clients_group(self):
        s = server()
        m = macs_of_group(1, 1)[0]
        a, _sid = dora(s, ETH300, m)
        for mt, opts in ((MessageType.RELEASE, {"ciaddr": a}),
                         (MessageType.DECLINE, {"requested_ip": a})):
            d = s.handle(msg(mt, m, server_id=VIP_A300, **opts), ETH300, T0 + 1)
            assert d.reason is Reason.OTHER_SERVER and d.commits == ()
        d = s.handle(msg(MessageType.RELEASE, m, server_id=VIP_B300, ciaddr=a), ETH300, T0 + 1)
        assert d.commits and d.commits[-1].state == LeaseState.RELEASED

    def test_a_nak_carries_the_clients_group_server_identifier(self):
        s = server()
        m = macs_of_group(1, 1)[0]
        d = s.handle(msg(MessageType.REQUEST, m, requested_ip=ip("192.0.2.100")), ETH300, T0)
        assert d.sent == "nak" and d.reply.options[Opt.SERVER_ID] == VIP_B300

    def test_the_caller_may_give_the_group_it_computed(self):
        s = server()
        m = macs_of_group(0, 1)[0]
        d = s.handle(msg(MessageType.DISCOVER, m), ETH300, T0, group=1)
        assert d.reply.options[Opt.SERVER_ID] == VIP_B300

    @pytest.mark.parametrize("groups,sids", [((), ()), (("ga",), ()), (("ga", "gb"), (b"1234",)),
                                             (("a", "b", "c"), (b"1234",) * 3),
                                             (("ga",), (b"12",))])
    def test_an_ingress_needs_one_or_two_groups_with_a_server_identifier_each(self, groups,
                                                                               sids):
        with pytest.raises(ValueError):
            Ingress(local_ips=(), server_ids=sids, groups=groups, name="eth1")


class TestTheHalves:
    def test_the_two_groups_of_a_shared_interface_never_allocate_the_same_address(self):
        """Device A is master of ga, device B of gb; each holds only its own bindings (no
        sync at all): every client gets an address, and no address twice."""
        a, b = server(), server()
        got: dict[bytes, bytes] = {}
        for g, dev in ((0, a), (1, b)):
            for m in macs_of_group(g, 50):
                yi, _ = dora(dev, ETH300, m)
                assert yi not in got.values(), f"{IPv4Address(yi)} handed out twice"
                got[m] = yi
        assert len(got) == 100  # the whole pool, each group its half of it
        a_half = {IPv4Address(y) for m, y in got.items() if group_of(m, 6) == 0}
        assert all(int(x) & 1 == 0 for x in a_half)
        # The 51st client of ga finds ga's half full, though the rest is free in A's table.
        assert a.handle(msg(MessageType.DISCOVER, macs_of_group(0, 51)[-1]), ETH300,
                        T0).reason is Reason.POOL_EXHAUSTED

    def test_split_while_not_in_sync_cuts_a_shared_pool_in_quarters(self):
        """Cut off from each other, both devices serve both groups (owner 0 and 1): four
        quarters, no address twice, each group's clients in their group's half."""
        devs = {0: server(owner=0), 1: server(owner=1)}
        seen: set[bytes] = set()
        for owner, dev in devs.items():
            for g in (0, 1):
                for m in macs_of_group(g, 25)[owner * 12:owner * 12 + 12]:
                    yi, _ = dora(dev, ETH300, m)
                    assert yi not in seen
                    seen.add(yi)
                    assert yi[3] & 3 == g | owner << 1, (IPv4Address(yi), g, owner)

    def test_split_on_an_unshared_interface_is_by_parity_as_before(self):
        a, b = server(owner=0), server(owner=1)
        ips_a = {dora(a, ETH100, mac(i))[0][3] for i in range(10)}
        ips_b = {dora(b, ETH100, mac(100 + i))[0][3] for i in range(10)}
        assert all(x & 1 == 0 for x in ips_a) and all(x & 1 == 1 for x in ips_b)
        assert not ips_a & ips_b

    def test_back_in_sync_the_device_takes_its_groups_whole_half(self):
        s = server(owner=1)
        m = macs_of_group(0, 1)[0]
        assert dora(s, ETH300, m)[0][3] & 3 == 2  # group 0, device half 1
        s.alloc.owner = None
        later = [dora(s, ETH300, x)[0][3] for x in macs_of_group(0, 30)[1:]]
        assert {x & 3 for x in later} == {0, 2} and all(x & 1 == 0 for x in later)

    def test_a_free_address_in_the_other_groups_half_is_refused(self):
        """INIT-REBOOT / SELECTING for a free address in the other group's half: the
        other group's device may hand it out meanwhile, so NAK (not ours to give)."""
        s = server()
        m = macs_of_group(0, 1)[0]
        odd = ip("198.51.100.101")
        d = s.handle(msg(MessageType.REQUEST, m, requested_ip=odd, server_id=VIP_A300),
                     ETH300, T0)
        assert d.sent == "nak" and d.reason is Reason.NAK_OTHER_HALF
        # Requested in a DISCOVER: not offered; an address of its own half is instead.
        off = s.handle(msg(MessageType.DISCOVER, m, requested_ip=odd), ETH300, T0)
        assert off.reply.yiaddr != odd and off.reply.yiaddr[3] & 1 == 0

    def test_a_binding_the_client_holds_is_renewed_whatever_its_half(self):
        """A binding made before the interface was shared stays the client's: halves
        only decide free addresses."""
        s = server()
        m = macs_of_group(0, 1)[0]
        odd = ip("198.51.100.151")
        s.table.commit(Lease(ip=n("198.51.100.151"), mac=m, client_id=None,
                             state=LeaseState.BOUND, start=T0, expires=T0 + 600, pool="v300"))
        d = s.handle(msg(MessageType.REQUEST, m, ciaddr=odd), ETH300, T0 + 100)
        assert d.sent == "ack" and d.reply.yiaddr == odd
        off = s.handle(msg(MessageType.DISCOVER, m), ETH300, T0 + 200)
        assert off.reply.yiaddr == odd  # its own address back, not a new one


class TestAllocatorAndPools:
    def test_freed_addresses_are_reused_oldest_first_whatever_their_class(self):
        p = pools()
        table = LeaseTable()
        alloc = Allocator(p, table)
        v100 = p.by_name["v100"]
        taken = []
        while (a := alloc.allocate(v100, T0)) is not None:
            table.commit(Lease(ip=a, mac=mac(len(taken)), client_id=None,
                               state=LeaseState.BOUND, start=T0, expires=T0 + 600,
                               pool="v100"))
            taken.append(a)
        assert sorted(taken) == list(range(n("192.0.2.100"), n("192.0.2.120") + 1))
        order = [n("192.0.2.103"), n("192.0.2.100"), n("192.0.2.117"), n("192.0.2.106")]
        for a in order:  # four classes (a & 3): 3, 0, 1, 2
            table.commit(Lease(ip=a, mac=b"", client_id=None, state=LeaseState.RELEASED,
                               start=T0, expires=T0, pool="v100"))
        assert [alloc.allocate(v100, T0 + 1) for _ in order] == order  # popped once each
        alloc.owner = 1  # split: only odd ones, still the oldest first
        for a in order:
            alloc.release(a)  # queued again (each was popped above)
        assert alloc.allocate(v100, T0 + 1) == n("192.0.2.103")
        assert alloc.allocate(v100, T0 + 1) == n("192.0.2.117")

    def test_allocation_cost_under_a_quarter_share_does_not_grow_with_the_pool(self):
        """Amortised O(1) also for a quarter of the pool (shared interface, split): the
        cursors step over the other classes' addresses without looking at them."""
        import time

        p = Pools.from_config((PoolConfig(
            name="big", subnet=IPv4Network("198.18.0.0/16"),
            ranges=((IPv4Address("198.18.1.0"), IPv4Address("198.18.240.255")),)),))
        table = LeaseTable()
        alloc = Allocator(p, table)
        alloc.owner = 1
        share = alloc.share(True, 1)
        pool = p.pools[0]
        clients = iter(range(1 << 40))

        def timed(k: int) -> float:
            t0 = time.perf_counter()
            for _ in range(k):
                a = alloc.allocate(pool, T0, share)
                assert a is not None and a & 3 == 3
                table.offer(Lease(ip=a, mac=next(clients).to_bytes(6, "big"), client_id=None,
                                  state=LeaseState.OFFERED, start=T0, expires=T0 + 10,
                                  pool="big"))
            return (time.perf_counter() - t0) / k

        quarter = pool.size // 4
        early = timed(2000)
        timed(quarter - 3000)
        late = timed(1000)
        assert late < early * 5 + 20e-6
        assert alloc.allocate(pool, T0, share) is None  # the quarter is full
        assert alloc.allocate(pool, T0, alloc.share(True, 0)) is not None  # not the rest

    def test_pools_are_found_by_prefix_among_hundreds(self):
        cfgs = [PoolConfig(name=f"vlan{i}", subnet=IPv4Network(f"10.{i // 256}.{i % 256}.0/24"),
                           ranges=((IPv4Address(f"10.{i // 256}.{i % 256}.10"),
                                    IPv4Address(f"10.{i // 256}.{i % 256}.200")),))
                for i in range(300)]
        cfgs.append(PoolConfig(name="relayed", subnet=IPv4Network("203.0.113.128/25"),
                               ranges=((IPv4Address("203.0.113.150"),
                                        IPv4Address("203.0.113.199")),),
                               reservations=((mac(1), IPv4Address("203.0.113.130")),)))
        p = Pools.from_config(tuple(cfgs))
        assert p.for_address(n("10.1.3.77")).name == "vlan259"
        assert p.for_address(n("203.0.113.129")).name == "relayed"
        assert p.for_address(n("203.0.113.1")) is None
        assert p.leasable(n("10.1.3.77")).name == "vlan259"
        assert p.leasable(n("10.1.3.5")) is None  # in the subnet, outside the range
        assert p.leasable(n("203.0.113.130")).name == "relayed"  # a reservation
