"""Datapath benchmark: takeover latency and the per-packet cost of the XDP program.

    sudo .venv/bin/python bench/datapath_flip.py [--flips 1000] [--frames 2000000]
        [--group-sizes 1,200] [--baseline main] [--prog-cost-only] [--groups-only]
        [--json]

Builds its own two namespaces (nothing leaves them) and removes them at the end:

    cli netns: eth0 ──veth── eth1 :srv netns (Datapath.open, native XDP; UDP :67 socket)

Traffic comes from an in-kernel generator: a 4-instruction XDP program run with
BPF_PROG_TEST_RUN in live-frames mode inside the client namespace, which transmits N
copies of a frame on cli/eth0 (xdp-trafficgen's method; appliance.testing.xdp_run).
The receiving veth processes them in the same CPU's softirq, so "pipeline ns/frame"
below is generator + veth + whatever the server side does with the frame, on one
core; differences between rows are what the server side costs.

Figures:

1. Map update alone: GroupSwitch.set (one bpf(2) BPF_MAP_UPDATE_ELEM) and
   Datapath.set_role (the same plus bookkeeping), timed one call at a time.
2. Takeover: a generator process floods DISCOVERs; standby, then set_role(True)
   and wait for the first DISCOVER on the :67 socket. Two intervals per flip: to the
   kernel receive timestamp of that datagram (SO_TIMESTAMPNS: it passed XDP and
   reached the socket layer) and to recvmsg() returning in this process.
2b. The same takeover with N interfaces bound to the group (--group-sizes, default 1
   and 200): N veth ports, each a port of its own with the program attached, all
   bound to one group; the flood comes in on the first. set_group_role(group, True)
   -> first DISCOVER passed, for each N, printed side by side.
3. Program cost under BPF_PROG_TEST_RUN (kernel-measured ns per run, 1M repeats),
   against the empty `return XDP_PASS` program: per role, for a known client and a new
   one (single runs over distinct MACs), with and without the new-client budget, for
   the flood's frame the empty budget refuses, for DHCP on a VLAN that is not ours and
   on an interface shared by two groups (the RFC 3074 hash). `--baseline main`
   measures main's bpf/ in the same run, alternating with this checkout's.
4. Datapath cost with real frames: a DISCOVER flood dropped by the standby in XDP vs
   the same flood passed to a user-space socket whose reader drops it (what mode
   "off" does); and non-DHCP UDP with XDP on vs off, rounds alternated in one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyroute2.ethtool import Ethtool
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from appliance.config.model import DatapathConfig
from appliance.datapath import Datapath
from appliance.datapath.plan import Binding
from appliance.testing.netns import Netns, Topology, inside
from appliance.testing.xdp_run import (
    BPF_F_TEST_XDP_LIVE_FRAMES,
    load_pass,
    load_redirect,
    run,
)

SO_TIMESTAMPNS = 35  # include/uapi/asm-generic/socket.h (SO_TIMESTAMPNS_OLD)
SO_RCVBUFFORCE = 33
SRV_IP, CLI_IP = "192.0.2.1", "192.0.2.2"
CLIENT = "02:00:00:00:00:01"

DISCOVER = bytes(
    Ether(src=CLIENT, dst="ff:ff:ff:ff:ff:ff")
    / IP(src="0.0.0.0", dst="255.255.255.255")
    / UDP(sport=68, dport=67)
    / BOOTP(chaddr=bytes.fromhex(CLIENT.replace(":", "")))
    / DHCP(options=[("message-type", "discover"), "end"]))
OTHER_UDP = bytes(
    Ether(src=CLIENT, dst="ff:ff:ff:ff:ff:ff") / IP(src=CLI_IP, dst=SRV_IP)
    / UDP(sport=40000, dport=9999) / Raw(b"x" * 250))
ARP_REQ = bytes(Ether(src=CLIENT, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLI_IP, pdst=SRV_IP))
# The DISCOVER tagged: VLAN 300 (bound to nothing: not ours) and VLAN 200 (bound to an
# interface shared by two groups: the RFC 3074 hash runs).
VLAN_300 = DISCOVER[:12] + b"\x81\x00\x01\x2c" + DISCOVER[12:]
VLAN_200 = DISCOVER[:12] + b"\x81\x00\x00\xc8" + DISCOVER[12:]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# -- setup ------------------------------------------------------------------------------
class Bench:
    def __init__(self, t: Topology, srv: Netns, cli: Netns) -> None:
        self.t, self.srv, self.cli = t, srv, cli
        with inside(srv):
            # GRO on lets veth take redirected frames with no XDP program attached
            # (the "XDP off" rows); with a program attached veth uses NAPI anyway.
            eth = Ethtool()
            feats = eth.get_features("eth1")
            feats.features["rx-gro"].enable = True
            eth.set_features("eth1", feats)
            eth.close()
            self.dp = Datapath.open("eth1", DatapathConfig(mode="xdp", rate_limit_pps=0),
                                    attach="native")
        with inside(cli):
            self.gen_fd = load_redirect(socket.if_nametoindex("eth0"))

    def close(self) -> None:
        os.close(self.gen_fd)
        with inside(self.srv):
            self.dp.close()

    def blast(self, frame: bytes, count: int) -> float:
        """Send `count` copies through the srv side; returns seconds taken."""
        with inside(self.cli):
            start = time.perf_counter()
            run(self.gen_fd, frame, repeat=count, flags=BPF_F_TEST_XDP_LIVE_FRAMES)
            return time.perf_counter() - start

    def ns_per_frame(self, frame: bytes, count: int) -> float:
        """Pipeline ns per frame. A live-frames test run has a fixed set-up and
        tear-down cost (about 25 ms here, an RCU grace period), so the rate comes
        from the difference between a run of `count` and one of count/5."""
        small = self.blast(frame, count // 5)
        big = self.blast(frame, count)
        return (big - small) / (count - count // 5) * 1e9

    def snmp_udp(self) -> dict[str, int]:
        lines = [ln.split() for ln in self.t.run(self.srv, ["cat", "/proc/net/snmp"])
                 .stdout.splitlines() if ln.startswith("Udp:")]
        return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))


# -- 1. map update alone ----------------------------------------------------------------
def map_update(b: Bench, n: int = 20000) -> dict[str, float]:
    switch = b.dp._switch  # the facade's prebuilt GroupSwitch
    assert switch is not None
    raw, facade = [], []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        switch.set(0, bool(i & 1))
        raw.append(clock() - t0)
    logging.disable(logging.INFO)  # set_role's INFO line is the daemon's, not the flip's
    for i in range(n):
        t0 = clock()
        b.dp.set_role(bool(i & 1))
        facade.append(clock() - t0)
    logging.disable(logging.NOTSET)
    b.dp.set_role(False)
    return {"update_p50_us": pct(raw, 50) / 1e3, "update_p99_us": pct(raw, 99) / 1e3,
            "set_role_p50_us": pct(facade, 50) / 1e3, "set_role_p99_us": pct(facade, 99) / 1e3}


# -- 2. takeover ------------------------------------------------------------------------
def _generator(cli: str, ifname: str) -> None:
    """Child process: flood DISCOVERs until terminated. One long test run (each call
    costs ~25 ms of set-up, so no loop of short calls); SIGTERM interrupts it."""
    with inside(cli):
        fd = load_redirect(socket.if_nametoindex(ifname))
        while True:
            run(fd, DISCOVER, repeat=2**31 - 1, flags=BPF_F_TEST_XDP_LIVE_FRAMES)


def takeover(b: Bench, flips: int) -> dict[str, float]:
    return measure_takeover(b.dp, 0, b.srv.name, b.cli.name, "eth0", flips)


def measure_takeover(dp: Datapath, group: int, srv: str, cli: str, cli_if: str,
                     flips: int) -> dict[str, float]:
    """Flood DISCOVERs from `cli_if` (namespace `cli`) into the server namespace `srv`;
    `flips` times: group standby, drain, set_group_role(group, True), wait for the
    first DISCOVER on a :67 socket in `srv`."""
    with inside(srv):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.bind(("", 67))
    sock.setblocking(False)
    ctx = multiprocessing.get_context("fork")
    gen = ctx.Process(target=_generator, args=(cli, cli_if), daemon=True)
    logging.disable(logging.INFO)
    before = dp.counters_by_group()[group]
    to_kernel, to_user, misses = [], [], 0
    gen.start()
    try:
        # Wait until the flood is on (the standby counts drops).
        deadline = time.monotonic() + 10
        while dp.counters_by_group()[group]["dropped_standby"] \
                - before["dropped_standby"] < 10000:
            if time.monotonic() > deadline:
                raise RuntimeError("generator did not start")
            time.sleep(0.01)
        for _ in range(flips):
            dp.set_group_role(group, False)
            time.sleep(0.0005)  # let frames already past XDP reach the socket
            while True:  # drain what the previous active period queued
                try:
                    sock.recv(4096)
                except BlockingIOError:
                    break
            t0_real = time.time_ns()
            t0 = time.perf_counter_ns()
            dp.set_group_role(group, True)
            while True:
                ready, _, _ = select.select([sock], [], [], 1.0)
                if not ready:
                    misses += 1
                    break
                _, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(16))
                t_user = time.perf_counter_ns()
                stamp = next((struct.unpack("qq", data[:16]) for lvl, typ, data in anc
                              if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS), None)
                if stamp is None:
                    continue
                t_kernel = stamp[0] * 1_000_000_000 + stamp[1]
                if t_kernel < t0_real:
                    continue  # queued before the flip
                to_kernel.append(t_kernel - t0_real)
                to_user.append(t_user - t0)
                break
        dp.set_group_role(group, False)
    finally:
        gen.terminate()  # our own child, by its handle
        gen.join(10)
        logging.disable(logging.NOTSET)
        sock.close()
    return {"flips": len(to_kernel), "misses": misses,
            "kernel_p50_us": pct(to_kernel, 50) / 1e3, "kernel_p99_us": pct(to_kernel, 99) / 1e3,
            "kernel_max_us": max(to_kernel) / 1e3,
            "user_p50_us": pct(to_user, 50) / 1e3, "user_p99_us": pct(to_user, 99) / 1e3,
            "user_max_us": max(to_user) / 1e3}


def group_takeover(n: int, flips: int) -> dict[str, object]:
    """Takeover with `n` interfaces bound to one group: n veth ports eth1.100.. in the
    server namespace (each a port of its own, the program attached to every one), their
    peers in the client namespace; a second group holds one more port, so the group is
    not alone. The flood comes in on the first port."""
    with Topology("bg") as t:
        srv, cli = t.host("srv"), t.host("cli")
        batch = "".join(
            f"link add eth1.{100 + i} netns {srv.name} type veth peer name q{i} "
            f"netns {cli.name}\n" for i in range(n))
        batch += (f"link add other0 netns {srv.name} type veth peer name qo "
                  f"netns {cli.name}\n")
        subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True,
                       capture_output=True, timeout=300)
        up_srv = "".join(f"link set eth1.{100 + i} up\n" for i in range(n)) + \
            "link set other0 up\n"
        up_cli = "".join(f"link set q{i} up\n" for i in range(n)) + "link set qo up\n"
        t.run(srv, ["ip", "-batch", "-"], input=up_srv, timeout=300)
        t.run(cli, ["ip", "-batch", "-"], input=up_cli, timeout=300)
        t.addr(srv, "eth1.100", f"{SRV_IP}/24")
        bindings = [Binding(f"eth1.{100 + i}", (0,)) for i in range(n)]
        bindings.append(Binding("other0", (1,)))
        with inside(srv):
            start = time.monotonic()
            dp = Datapath.open(bindings, DatapathConfig(mode="xdp", rate_limit_pps=0,
                                                        new_client_pps=0), attach="native")
            open_s = time.monotonic() - start
        try:
            result: dict[str, object] = {"interfaces": n, "ports": len(dp.attach_modes),
                                         "open_s": open_s}
            result.update(measure_takeover(dp, 0, srv.name, cli.name, "q0", flips))
        finally:
            with inside(srv):
                dp.close()
    return result


# -- 3. program cost under test run --------------------------------------------------------
class CostProgram:
    """One build of bpf/ loaded in this process with bcc (never attached), driven through
    bcc's tables by field name, so an older build (--baseline, before the new-client
    budget or before groups) runs the same rows as this checkout's. Frames "arrive on
    lo" (ifindex 1, the test run's default); a build with groups binds lo untagged to
    group 0 and lo VLAN 200 to groups 0 and 1 (shared)."""

    def __init__(self, bpf_dir: Path | None) -> None:
        from appliance.datapath.compiler import compile_in_process

        self.bpf, fn = compile_in_process(bpf_dir=bpf_dir)
        self.fd = fn.fd
        self.budget = _table(self.bpf, b"new_client")  # None: a build before the budget
        self.groups = _table(self.bpf, b"group_role") is not None  # False: before groups
        if self.groups:
            from appliance.datapath import layout

            table = self.bpf[b"lb_table"]
            leaf = table.Leaf()
            for i, v in enumerate(layout.LB_TABLE):
                leaf.mix[i] = v
            table[table.Key(0)] = leaf
            ifaces = self.bpf[b"ifaces"]
            for vlan, groups in (((0, 0), (0,)), ((200, 0), (0, 1))):
                key, value = ifaces.Key(), ifaces.Leaf()
                key.ifindex, key.vlan[0], key.vlan[1] = 1, *vlan
                value.groups = len(groups)
                for i, g in enumerate(groups):
                    value.group[i] = g
                ifaces[key] = value

    def set(self, active: bool, pps: int = 0, burst: int = 0, new_pps: int = 0,
            new_burst: int = 0) -> None:
        cfg = self.bpf[b"config"]
        if self.groups:
            role = self.bpf[b"group_role"]
            for g in (0, 1):
                role[role.Key(g)] = role.Leaf(int(active))
        else:
            role = self.bpf[b"role"]
            role[role.Key(0)] = role.Leaf(int(active))
        leaf = cfg.Leaf()
        leaf.rate_limit_pps, leaf.rate_limit_burst = pps, burst
        if self.budget is not None:
            leaf.new_client_pps, leaf.new_client_burst = new_pps, new_burst
            self.budget[self.budget.Key(0)] = self.budget.Leaf(0)  # full
        cfg[cfg.Key(0)] = leaf
        self.bpf[b"rate_limit"].clear()

    def close(self) -> None:
        self.bpf.cleanup()


def _table(bpf: object, name: bytes) -> object | None:
    try:
        return bpf[name]  # type: ignore[index]
    except KeyError:
        return None


def distinct_discovers(n: int, seed: int = 1) -> list[bytes]:
    """`n` DISCOVERs from `n` distinct MACs (Ethernet source = chaddr), patched into one
    template whose UDP checksum is 0 ("none", RFC 768)."""
    import random

    template = bytes(Ether(src=CLIENT, dst="ff:ff:ff:ff:ff:ff")
                     / IP(src="0.0.0.0", dst="255.255.255.255")
                     / UDP(sport=68, dport=67, chksum=0)
                     / BOOTP(chaddr=bytes.fromhex(CLIENT.replace(":", "")))
                     / DHCP(options=[("message-type", "discover"), "end"]))
    chaddr = 14 + 20 + 8 + 28
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        mac = b"\x02" + rng.getrandbits(40).to_bytes(5, "big")
        raw = bytearray(template)
        raw[6:12] = raw[chaddr:chaddr + 6] = mac
        out.append(bytes(raw))
    return out


def prog_cost(bpf_dir: Path | None, repeat: int = 1_000_000,
              singles: int = 20_000) -> dict[str, float | None]:
    """ns per run. Rows with repeat: the kernel's mean over `repeat` runs of one frame,
    best of 3. A new client exists only once per MAC, so its rows are single runs of
    `singles` distinct MACs, each paired with a run of a known MAC (paired_extra): what
    a new client costs on top of the known-client row."""
    prog = CostProgram(bpf_dir)
    empty = load_pass()
    big = 4_000_000  # RATE_LIMIT_MAX_BURST: no limit is reached in these rows
    out: dict[str, float | None] = {}

    def best(fd: int, frame: bytes) -> float:
        return min(run(fd, frame, repeat=repeat).duration_ns for _ in range(3))

    try:
        out["empty XDP_PASS program"] = best(empty, OTHER_UDP)
        for name, frame, active, limits in (
                ("ARP", ARP_REQ, False, (0, 0, 0, 0)),
                ("UDP to 9999 (not DHCP)", OTHER_UDP, False, (0, 0, 0, 0)),
                ("DISCOVER, standby (drop)", DISCOVER, False, (0, 0, 0, 0)),
                ("DISCOVER, active, limits off", DISCOVER, True, (0, 0, 0, 0)),
                ("known client, rate limit on", DISCOVER, True, (1_000_000, big, 0, 0)),
                ("known client, rate limit + budget on", DISCOVER, True,
                 (1_000_000, big, 1_000_000, big)),
                ("DISCOVER on VLAN 300, not ours (unbound)", VLAN_300, False, (0, 0, 0, 0)),
                ("DISCOVER, shared interface (hash), active", VLAN_200, True,
                 (0, 0, 0, 0)),
                ("DISCOVER, shared interface (hash), standby", VLAN_200, False,
                 (0, 0, 0, 0))):
            if (limits[2] and prog.budget is None) or (
                    ("VLAN" in name or "shared" in name) and not prog.groups):
                out[name] = None
                continue
            prog.set(active, *limits)
            out[name] = best(prog.fd, frame)
        # New clients: one run per MAC. Budget deep enough to admit all of them.
        frames = distinct_discovers(singles)
        for what, limits in (("rate limit on", (1_000_000, big, 0, 0)),
                             ("rate limit + budget on", (1_000_000, big, 1_000_000, big))):
            row = f"new client, {what} (over known)"
            if limits[2] and prog.budget is None:
                out[row] = None
                continue
            prog.set(True, *limits)
            run(prog.fd, DISCOVER)  # CLIENT is known from here on
            out[row] = paired_extra(prog.fd, frames, DISCOVER)
        # The flood's frame: unknown MAC, budget empty (1/s, spent by another MAC).
        if prog.budget is None:
            out["new client refused, budget empty"] = None
        else:
            prog.set(True, 1_000_000, big, 1, 1)
            run(prog.fd, frames[0])
            out["new client refused, budget empty"] = best(prog.fd, frames[1])
    finally:
        os.close(empty)
        prog.close()
    return out


def paired_extra(fd: int, new: list[bytes], known: bytes) -> float:
    """Median of (run of a new MAC's frame - run of a known MAC's frame), interleaved one
    to one. A single test run carries about 400 ns of harness and drifts with the load of
    a shared box; pairing cancels both, leaving what a new client costs over a known one
    (bucket lookup miss, budget, bucket insert, cold memory)."""
    diffs = []
    for frame in new:
        a = run(fd, frame).duration_ns
        b = run(fd, known).duration_ns
        diffs.append(a - b)
    return statistics.median(diffs)


def baseline_dir(ref: str, tmp: Path) -> Path:
    """bpf/ as it is at git `ref` (e.g. main), extracted under `tmp`."""
    import io
    import subprocess
    import tarfile

    repo = Path(__file__).resolve().parents[1]
    tar = subprocess.run(["git", "-C", str(repo), "archive", ref, "bpf"], check=True,
                         capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(tmp)  # our own repository's archive
    return tmp / "bpf"


# -- 4. datapath cost with real frames -------------------------------------------------------
def dhcp_flood(b: Bench, frames: int) -> dict[str, float]:
    """The same DISCOVER flood, dropped by the standby in XDP, and passed to a user-space
    socket whose reader (a thread of this process, on the other core) drops it."""
    dp = b.dp
    dp.set_role(False)
    before = dp.counters()["dropped_standby"]
    xdp_ns = min(b.ns_per_frame(DISCOVER, frames) for _ in range(3))
    counted = dp.counters()["dropped_standby"] - before

    with inside(b.srv):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", 67))
    sock.settimeout(0.2)
    got = [0]
    stop = threading.Event()
    buf = bytearray(4096)

    def reader() -> None:
        while not stop.is_set():
            try:
                sock.recv_into(buf)
            except TimeoutError:
                continue
            got[0] += 1

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    dp.set_role(True)
    try:
        n = max(frames // 8, 50_000)
        user_ns = b.ns_per_frame(DISCOVER, n)
        snmp0, got0 = b.snmp_udp(), got[0]
        seconds = b.blast(DISCOVER, n)
        read = got[0] - got0
        snmp1 = b.snmp_udp()
    finally:
        dp.set_role(False)
        stop.set()
        th.join(2)
        sock.close()
    return {
        "frames": frames,
        "xdp_drop_ns": xdp_ns, "xdp_drop_pps": 1e9 / xdp_ns,
        "xdp_dropped_counted": counted,
        "userspace_frames": n,
        "userspace_kernel_ns": user_ns, "userspace_kernel_pps": 1e9 / user_ns,
        "userspace_read_pps": read / seconds, "userspace_read": read,
        "userspace_socket_overflow": snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0),
    }


ODD_ETHERTYPE = bytes(Ether(src=CLIENT, dst="ff:ff:ff:ff:ff:ff", type=0x88B5)
                      / Raw(b"x" * 100))  # IEEE 802 local experimental EtherType


def non_dhcp_cost(b: Bench, frames: int, rounds: int = 7) -> dict[str, dict[str, object]]:
    """Pipeline ns/frame for non-DHCP frames, XDP on vs off, rounds alternated."""
    prog = b.dp.program
    assert prog is not None
    with inside(b.srv):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("", 9999))  # bound, never read: the stack goes all the way to it
    out: dict[str, dict[str, object]] = {}
    try:
        for name, frame in (("UDP to a socket (9999)", OTHER_UDP),
                            ("EtherType 0x88b5 (stack drops early)", ODD_ETHERTYPE)):
            on, off = [], []
            for _ in range(rounds):
                on.append(b.ns_per_frame(frame, frames))
                with inside(b.srv):
                    prog.detach()
                try:
                    off.append(b.ns_per_frame(frame, frames))
                finally:
                    with inside(b.srv):
                        prog.attach("eth1", "native")
            out[name] = {"on_ns": statistics.median(on), "off_ns": statistics.median(off),
                         "on_min": min(on), "off_min": min(off), "on_all": on, "off_all": off}
    finally:
        sink.close()
    return out


# -- main ------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=2_000_000)
    ap.add_argument("--baseline", metavar="GITREF",
                    help="also measure the program cost of bpf/ at this ref (e.g. main)")
    ap.add_argument("--prog-cost-only", action="store_true",
                    help="only the BPF_PROG_TEST_RUN section (no namespaces, no traffic)")
    ap.add_argument("--group-sizes", default="1,200",
                    help="interfaces bound to the group in the group takeover rows")
    ap.add_argument("--groups-only", action="store_true",
                    help="only the group takeover rows (1 and 200 interfaces)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (namespaces, XDP)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, object] = {"loadavg_before": os.getloadavg()[0]}
    sizes = [int(x) for x in args.group_sizes.split(",") if x]
    if not args.prog_cost_only:
        # Alternated, twice, so load on the shared box hits every size alike.
        runs: dict[int, list[dict[str, object]]] = {n: [] for n in sizes}
        for _ in range(2):
            for n in sizes:
                runs[n].append(group_takeover(n, max(args.flips // 2, 1)))
        results["group_takeover"] = {n: _merge(r) for n, r in runs.items()}
    if args.groups_only:
        results["loadavg_after"] = os.getloadavg()[0]
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print_groups(results)
        return 0
    if not args.prog_cost_only:
        with Topology("bn") as t:
            srv, cli = t.host("srv"), t.host("cli")
            t.veth(srv, "eth1", cli, "eth0")
            t.addr(srv, "eth1", f"{SRV_IP}/24")
            t.addr(cli, "eth0", f"{CLI_IP}/24")
            b = Bench(t, srv, cli)
            try:
                results["attach_mode"] = b.dp.attach_mode
                results["map_update"] = map_update(b)
                results["takeover"] = takeover(b, args.flips)
                results["dhcp_flood"] = dhcp_flood(b, args.frames)
                results["non_dhcp"] = non_dhcp_cost(b, args.frames // 2)
            finally:
                b.close()
    # The two builds alternate, twice, so load on the shared box hits both alike.
    costs: dict[str, list[dict[str, float | None]]] = {"this checkout": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline_dir(args.baseline, Path(tmp)) if args.baseline else None
        if base is not None:
            costs[args.baseline] = []
        for _ in range(2):
            costs["this checkout"].append(prog_cost(None))
            if base is not None:
                costs[args.baseline].append(prog_cost(base))
    results["prog_cost_ns"] = {
        build: {row: (None if runs[0][row] is None else min(r[row] for r in runs))  # type: ignore[type-var]
                for row in runs[0]} for build, runs in costs.items()}
    results["loadavg_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


def _merge(runs: list[dict[str, object]]) -> dict[str, object]:
    """Two runs of group_takeover: percentiles of each, the worse tail kept."""
    out = dict(runs[0])
    for key in ("kernel_p50_us", "user_p50_us"):
        out[key] = statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]
    for key in ("kernel_p99_us", "user_p99_us", "kernel_max_us", "user_max_us", "open_s"):
        out[key] = max(float(r[key]) for r in runs)  # type: ignore[arg-type]
    out["flips"] = sum(int(r["flips"]) for r in runs)  # type: ignore[call-overload]
    out["misses"] = sum(int(r["misses"]) for r in runs)  # type: ignore[call-overload]
    return out


def print_groups(r: dict) -> None:
    gt = r.get("group_takeover")
    if not gt:
        return
    if "map_update" not in r:
        print(f"dhcp-hotbackup datapath benchmark (group takeover): veth, native XDP, "
              f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load average "
              f"{r['loadavg_before']:.2f} before / {r['loadavg_after']:.2f} after")
        print()
    print("Group takeover: set_group_role(g, True) -> first DISCOVER passed "
          "(flood on the group's first interface)")
    print(f"  {'interfaces in the group':24s}" + "".join(f"{n:>22}" for n in gt))
    rows = (("ports attached", "ports", "{:.0f}"),
            ("Datapath.open", "open_s", "{:.2f} s"),
            ("to socket (kernel), p50", "kernel_p50_us", "{:.1f} us"),
            ("to socket (kernel), p99", "kernel_p99_us", "{:.1f} us"),
            ("to recvmsg(), p50", "user_p50_us", "{:.1f} us"),
            ("to recvmsg(), p99", "user_p99_us", "{:.1f} us"),
            ("flips / misses", None, None))
    for label, key, fmt in rows:
        if key is None:
            cells = [f"{v['flips']} / {v['misses']}" for v in gt.values()]
        else:
            cells = [fmt.format(v[key]) for v in gt.values()]
        print(f"  {label:24s}" + "".join(f"{c:>22}" for c in cells))


def print_prog_cost(pc: dict[str, dict[str, float | None]]) -> None:
    builds = list(pc)
    print("Program cost under BPF_PROG_TEST_RUN (ns per run, harness included; "
          "+ over the empty program)")
    print(f"  {'':48s}" + "".join(f"{b:>22s}" for b in builds))
    base = {b: pc[b]["empty XDP_PASS program"] for b in builds}
    for row in pc[builds[0]]:
        cells = []
        for b in builds:
            ns = pc[b].get(row)
            if ns is None:
                cells.append(f"{'-':>22s}")
            elif row.startswith("empty") or "(over known)" in row:
                cells.append(f"{ns:>12.0f} ns{'':7s}")
            else:
                cells.append(f"{ns:>12.0f} ns (+{ns - base[b]:>3.0f})")
        print(f"  {row:48s}" + "".join(cells))


def print_table(r: dict) -> None:
    if "map_update" not in r:
        print(f"dhcp-hotbackup datapath benchmark (program cost only): {os.cpu_count()} CPUs, "
              f"kernel {os.uname().release}, load average {r['loadavg_before']:.2f} before / "
              f"{r['loadavg_after']:.2f} after")
        print()
        print_prog_cost(r["prog_cost_ns"])
        return
    mu, tk = r["map_update"], r["takeover"]
    pc, fl, nd = r["prog_cost_ns"], r["dhcp_flood"], r["non_dhcp"]
    print(f"dhcp-hotbackup datapath benchmark: veth, {r['attach_mode']} XDP, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load average "
          f"{r['loadavg_before']:.2f} before / {r['loadavg_after']:.2f} after")
    print()
    print(f"{'Role flip':48s}{'p50':>10s}{'p99':>10s}")
    print(f"{'  map update alone (GroupSwitch.set, 1 syscall)':48s}"
          f"{mu['update_p50_us']:7.2f} us{mu['update_p99_us']:7.2f} us")
    print(f"{'  Datapath.set_role':48s}{mu['set_role_p50_us']:7.2f} us"
          f"{mu['set_role_p99_us']:7.2f} us")
    print(f"Takeover under a DISCOVER flood: {tk['flips']} flips, {tk['misses']} misses")
    print(f"{'  set_role(True) -> first DISCOVER at socket':48s}{tk['kernel_p50_us']:7.1f} us"
          f"{tk['kernel_p99_us']:7.1f} us  max {tk['kernel_max_us']:.1f} us (kernel stamp)")
    print(f"{'  set_role(True) -> recvmsg() returns':48s}{tk['user_p50_us']:7.1f} us"
          f"{tk['user_p99_us']:7.1f} us  max {tk['user_max_us']:.1f} us")
    print()
    print_groups(r)
    print()
    print_prog_cost(pc)
    print()
    ratio_read = fl["xdp_drop_pps"] / max(fl["userspace_read_pps"], 1)
    ratio_kernel = fl["xdp_drop_pps"] / fl["userspace_kernel_pps"]
    print("DHCP flood, one generator core (pipeline = generator + veth + server side)")
    print(f"  {'standby drops in XDP':40s}{fl['xdp_drop_pps'] / 1e6:7.2f} Mpps "
          f"({fl['xdp_drop_ns']:.0f} ns/frame)")
    print(f"  {'passed to a user-space socket':40s}{fl['userspace_kernel_pps'] / 1e6:7.2f} Mpps "
          f"({fl['userspace_kernel_ns']:.0f} ns/frame)")
    print(f"  {'  of which the process read and dropped':40s}"
          f"{fl['userspace_read_pps'] / 1e6:7.3f} Mpps "
          f"({fl['userspace_socket_overflow']:,} of {fl['userspace_frames']:,} lost to a "
          f"full socket buffer)")
    print(f"  {'ratio XDP drop / user-space drop':40s}{ratio_read:7.1f} x "
          f"(kernel-side pipeline ratio {ratio_kernel:.1f} x)")
    print()
    print("Non-DHCP frames, XDP on vs off (pipeline ns/frame over alternated rounds)")
    for name, v in nd.items():
        on = ", ".join(f"{x:.0f}" for x in v["on_all"])
        off = ", ".join(f"{x:.0f}" for x in v["off_all"])
        print(f"  {name:40s} median on {v['on_ns']:6.1f}  off {v['off_ns']:6.1f}  "
              f"diff {v['on_ns'] - v['off_ns']:+6.1f} ns")
        print(f"  {'':40s} min    on {v['on_min']:6.1f}  off {v['off_min']:6.1f}  "
              f"diff {v['on_min'] - v['off_min']:+6.1f} ns")
        print(f"    rounds on [{on}] off [{off}]")


if __name__ == "__main__":
    sys.exit(main())
