"""Interfaces, groups and buckets in the kernel: BPF_PROG_TEST_RUN with tagged frames
arriving on chosen ports.

The program keys a frame by (ingress ifindex, VLAN ids). Each test run here passes an
xdp_md context whose ingress_ifindex names a real device (BPF_PROG_TEST_RUN's ctx_in,
kernel >= 5.15, appliance/testing/xdp_run.py): the kernel refuses an ifindex that is
not a device of the caller's namespace, so the tests make a namespace with two veth
ports, "p1" and "p2", and run the program from inside it. This kernel has no 802.1Q
devices, so the tags are in the frames (scapy) and the keys are written directly;
placing real VLAN devices on their port is plan.place's part (tests/datapath/
test_plan.py), and the facade's on real ports is tests/datapath/test_xdp_multi.py's.

The bucket: the program's choice of group (bucket % 2) is compared with
appliance/dhcp/loadbalance.py for random chaddrs and hlens; and a probe program built
from the same bpf/loadbalance.h returns the whole bucket (0..255) of each chaddr, with
the mixing table taken from the C header, against the Python bucket.
"""

from __future__ import annotations

import ctypes
import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import dhcp_frames as f
import pytest
from conftest import Harness
from scapy.layers.dhcp import BOOTP

from appliance.datapath import layout, plan
from appliance.dhcp import loadbalance
from appliance.testing.netns import Topology, inside
from appliance.testing.xdp_run import Verdict

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
PASS, DROP = Verdict.PASS, Verdict.DROP
S = layout.Stat


class Box:
    """A namespace with two ports; the harness runs frames "arriving" on them."""

    def __init__(self, h: Harness, ns: str) -> None:
        self.h, self.ns = h, ns
        with inside(ns):
            self.p1 = socket.if_nametoindex("p1")
            self.p2 = socket.if_nametoindex("p2")

    def run(self, frame: bytes, port: int) -> Verdict:
        with inside(self.ns):
            return self.h.run(frame, port).verdict

    def counted(self, frame: bytes, port: int) -> tuple[Verdict, dict[str, int]]:
        with inside(self.ns):
            result, delta = self.h.run_counted(frame, port)
        return result.verdict, delta


@pytest.fixture(scope="module")
def ports() -> Iterator[str]:
    with Topology("dg") as t:
        ns = t.host("box")
        t.veth(ns, "p1", ns, "p2")
        yield ns.name


@pytest.fixture
def box(fresh: Harness, ports: str) -> Box:
    fresh.unbind_all()
    return Box(fresh, ports)


def disc(mac: str = f.CLIENT, *vids: int, tpid: int = 0x8100) -> bytes:
    frame = f.discover(mac)
    return bytes(f.tagged(frame, *vids, outer_tpid=tpid) if vids else frame)


def test_the_key_is_the_port_and_the_vlan_ids(box: Box):
    """VLAN 100 on p1 (group 1) and VLAN 100 on p2 (group 2) are different interfaces;
    untagged p1 is not bound; QinQ 10.100 on p1 (group 3) is not VLAN 100 either."""
    h = box.h
    h.bind((box.p1, (100, 0)), (1,))
    h.bind((box.p2, (100, 0)), (2,))
    h.bind((box.p1, (10, 100)), (3,))
    h.set_role(1, True)
    assert box.counted(disc(f.CLIENT, 100), box.p1) == (PASS, {"seen": 1, "passed": 1})
    assert box.counted(disc(f.CLIENT, 100), box.p2) == (
        DROP, {"seen": 1, "dropped_standby": 1})
    assert box.run(disc(f.CLIENT, 10, 100), box.p1) == DROP  # group 3 standby
    assert box.run(disc(f.CLIENT, 10, 100, tpid=0x88A8), box.p1) == DROP  # 802.1ad outer
    h.set_role(3, True)
    assert box.run(disc(f.CLIENT, 10, 100), box.p1) == PASS
    # Each group counts in its own slot.
    assert h.counters(1)["passed"] == 1 and h.counters(2)["dropped_standby"] == 1
    assert (h.counters(3)["passed"], h.counters(3)["seen"]) == (1, 3)


@pytest.mark.parametrize(("vids", "port"), [((), "p1"), ((300,), "p1"), ((100,), "p2"),
                                            ((100, 5), "p1"), ((5, 100), "p1")],
                         ids=["untagged", "vlan-300", "other-port", "qinq-100.5",
                              "qinq-5.100"])
def test_dhcp_on_an_unbound_port_or_vlan_is_passed_untouched_and_counted_apart(
        box: Box, vids: tuple[int, ...], port: str):
    box.h.bind((box.p1, (100, 0)), (1,))
    frame = disc(f.CLIENT, *vids)
    with inside(box.ns):
        result, delta = box.h.run_counted(frame, getattr(box, port))
    assert (result.verdict, delta) == (PASS, {"unbound": 1})
    assert result.data_out == frame  # untouched
    # Not ours even when malformed: a short BOOTP on an unbound VLAN passes too.
    short = bytes(f.tagged(f.short_bootp(), *vids)) if vids else bytes(f.short_bootp())
    assert box.counted(short, getattr(box, port)) == (PASS, {"unbound": 1})


def test_a_priority_tag_is_no_vlan(box: Box):
    """VID 0 (802.1p priority only): the kernel delivers it untagged, so it keys as
    untagged; a priority tag over VLAN 100 keys as VLAN 100."""
    h = box.h
    h.bind((box.p1, (0, 0)), (1,))
    h.bind((box.p1, (100, 0)), (2,))
    h.set_role(1, True)
    assert box.run(disc(f.CLIENT, 0), box.p1) == PASS
    assert box.run(disc(f.CLIENT, 0, 100), box.p1) == DROP  # group 2, standby
    h.set_role(2, True)
    assert box.run(disc(f.CLIENT, 0, 100), box.p1) == PASS
    assert h.counters(2)["passed"] == 1 and h.counters(1)["passed"] == 1


def test_malformed_counts_in_the_interfaces_group(box: Box):
    box.h.bind((box.p2, (100, 0)), (4,))
    frame = bytes(f.tagged(f.short_bootp(), 100))
    assert box.counted(frame, box.p2) == (DROP, {"seen": 1, "malformed": 1})
    assert box.h.counters(4)["malformed"] == 1


def test_a_takeover_flips_every_interface_of_the_group_and_no_other(box: Box):
    """Group 1 on 40 VLANs of p1 and p2, group 2 on 10 more: one role write moves all
    40, none of the 10."""
    h = box.h
    mine = [(box.p1 if i % 2 else box.p2, 100 + i) for i in range(40)]
    theirs = [(box.p1, 500 + i) for i in range(10)]
    for port, vid in mine:
        h.bind((port, (vid, 0)), (1,))
    for port, vid in theirs:
        h.bind((port, (vid, 0)), (2,))
    for active in (True, False):
        h.switch.set(1, active)
        assert {box.run(disc(f.CLIENT, vid), port) for port, vid in mine} == {
            PASS if active else DROP}
        assert {box.run(disc(f.CLIENT, vid), port) for port, vid in theirs} == {DROP}


def _macs(n: int, seed: int) -> list[str]:
    return f.random_macs(n, seed=seed)


def test_shared_interface_splits_clients_by_bucket(box: Box):
    """An interface bound to groups 5 and 6: with 5 active here (6 is the peer's), the
    even-bucket clients pass and the odd ones are dropped as the other bucket's; with
    both active (the survivor) all pass; with neither, all are standby drops."""
    h = box.h
    h.bind((box.p1, (200, 0)), (5, 6))
    macs = _macs(200, seed=11)
    mine = [m for m in macs if loadbalance.group_of(f.mac_bytes(m), 6) == 0]
    peers = [m for m in macs if loadbalance.group_of(f.mac_bytes(m), 6) == 1]
    assert 60 < len(mine) < 140
    h.set_role(5, True)
    assert {box.run(disc(m, 200), box.p1) for m in mine} == {PASS}
    assert {box.run(disc(m, 200), box.p1) for m in peers} == {DROP}
    c5, c6 = h.counters(5), h.counters(6)
    assert (c5["passed"], c5["seen"]) == (len(mine), len(mine))
    assert (c6["dropped_other_bucket"], c6["seen"]) == (len(peers), len(peers))
    h.set_role(6, True)
    assert {box.run(disc(m, 200), box.p1) for m in macs} == {PASS}
    h.set_role(5, False)
    h.set_role(6, False)
    assert {box.run(disc(m, 200), box.p1) for m in macs} == {DROP}
    assert h.counters(5)["dropped_standby"] == len(mine)
    c = h.counters()
    assert c["seen"] == sum(c[s.counter_name] for s in layout.OUTCOMES) == 3 * len(macs)


def bootp_discover(chaddr: bytes, hlen: int, htype: int = 1, vid: int = 0) -> bytes:
    frame = f.discover()
    frame[BOOTP].chaddr = chaddr
    frame[BOOTP].hlen = hlen
    frame[BOOTP].htype = htype
    return bytes(f.tagged(frame, vid) if vid else frame)


def test_the_kernels_group_is_the_python_rule_for_random_chaddrs(box: Box):
    """2,000 random chaddrs (16 octets) with random hlen 0..20 and htype, every role
    combination of a shared interface: the kernel's verdict is plan.decide's, whose
    group is loadbalance.group_of (hlen clamped to 16 on both sides)."""
    h = box.h
    h.bind((box.p2, (0, 0)), (1, 2))
    rng = random.Random(3074)
    cases = [(rng.randbytes(16), rng.randint(0, 20), rng.choice((1, 6, 32)))
             for _ in range(500)]
    wrong = []
    for on in ((), (1,), (2,), (1, 2)):
        for g in (1, 2):
            h.set_role(g, g in on)
        for chaddr, hlen, htype in cases:
            group, want = plan.decide((1, 2), on.__contains__, chaddr, hlen)
            got = box.run(bootp_discover(chaddr, hlen, htype), box.p2)
            if got != (PASS if want is S.PASSED else DROP):
                wrong.append((on, chaddr.hex(), hlen, group, want.name, got.name))
    assert not wrong, wrong[:10]
    c1, c2 = h.counters(1), h.counters(2)
    assert c1["seen"] + c2["seen"] == 4 * len(cases)


# -- the whole bucket from the kernel --------------------------------------------------------
PROBE = r"""
#include <uapi/linux/bpf.h>
#include "dhcp_steer.h"
#include "loadbalance.h"
#include "parse.h"

BPF_ARRAY(probe_table, struct lb_table_value, 1);
BPF_ARRAY(probe_out, __u32, 1);

/* Stores the RFC 3074 bucket of the frame's chaddr/hlen in probe_out[0], 1000 when
 * the frame is not a DHCP frame. */
int bucket_probe(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct dhcp_frame frame = {};
    struct lb_table_value *table;
    __u32 zero = 0, bucket = 1000;
    __u32 *out;

    table = probe_table.lookup(&zero);
    if (table && parse_dhcp(data, data_end, &frame) == PARSE_UDP67 &&
        parse_bootp(&frame, data_end))
        bucket = rfc3074_bucket(table, frame.chaddr, frame.hlen);
    out = probe_out.lookup(&zero);
    if (out)
        *out = bucket;
    return XDP_PASS;
}
"""


def _header_table() -> list[int]:
    text = (BPF_DIR / "dhcp_steer.h").read_text()
    m = re.search(r"#define RFC3074_MIX_TABLE\s*\\\s*\{(.*?)\}", text, flags=re.S)
    assert m
    return [int(v) for v in re.findall(r"\d+", m.group(1).replace("\\", " "))]


class Probe:
    """The probe program loaded with bcc in this process, its table from the C header."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(text=PROBE.encode(), cflags=[f"-I{BPF_DIR}"])
        self.fd = self.bpf.load_func(b"bucket_probe", BPF.XDP).fd
        table = self.bpf[b"probe_table"]
        leaf = table.Leaf()
        ctypes.memmove(ctypes.addressof(leaf), bytes(_header_table()), 256)
        table[table.Key(0)] = leaf
        self.out = self.bpf[b"probe_out"]

    def bucket(self, frame: bytes) -> int:
        from appliance.testing.xdp_run import run

        assert run(self.fd, frame).verdict == PASS
        return self.out[self.out.Key(0)].value


@pytest.fixture(scope="module")
def probe() -> Iterator[Probe]:
    p = Probe()
    try:
        yield p
    finally:
        p.bpf.cleanup()


def test_the_kernels_bucket_is_the_python_bucket(probe: Probe):
    """bpf/loadbalance.h with the header's table against loadbalance.bucket(key(...)):
    3,000 random chaddrs and hlens, plus every hlen 0..255 of one chaddr."""
    rng = random.Random(6)
    cases = [(rng.randbytes(16), rng.randint(0, 16)) for _ in range(3000)]
    cases += [(bytes(range(16)), hlen) for hlen in range(256)]
    buckets = set()
    for chaddr, hlen in cases:
        got = probe.bucket(bootp_discover(chaddr, hlen))
        want = loadbalance.bucket(loadbalance.key(chaddr, hlen))
        assert got == want, (chaddr.hex(), hlen, got, want)
        buckets.add(got)
    assert buckets == set(range(256))
    # Tagged frames hash the same chaddr: the tags only move the BOOTP header.
    chaddr = bytes(range(16, 32))
    assert probe.bucket(bootp_discover(chaddr, 6, vid=100)) == loadbalance.bucket(chaddr[:6])


def test_the_lb_table_map_holds_the_header_table(harness: Harness):
    """What the loader wrote into the daemon's program is the header's table."""
    assert list(harness.program.read_lb_table()) == _header_table()
