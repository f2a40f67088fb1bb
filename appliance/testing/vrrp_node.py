"""A stand-alone VRRP node for tests and benchmarks: VrrpService alone on an asyncio loop.

    python -m appliance.testing.vrrp_node --interface eth1 --vrid 51 --priority 150 \\
        --advert-ms 100 --vip 192.0.2.1/24 [--track eth2=30] [--preempt 0|1] \\
        [--state-file F] [--gate 0|1] [--vmac 0|1]

Prints every transition as one JSON line on stdout (flushed), and keeps `--state-file`
(JSON: state, priority, master, gate, counters, transitions) current: rewritten by
rename on every transition and, when something else changed, every 20 ms.

Signals: SIGTERM/SIGINT stop the service (priority-0 advert, VIPs removed) and exit 0;
SIGUSR1 opens the sync gate, SIGUSR2 closes it.

Test support only (it stands in for the daemon until the daemon integrates
VrrpService); the product never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Interface
from typing import Any

from appliance.config.model import VrrpConfig
from appliance.testing.netns import Netns, Topology
from appliance.vrrp.service import VrrpService

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_REFRESH_S = 0.02


def _track(value: str) -> tuple[str, int]:
    name, _, dec = value.partition("=")
    if not name or not dec:
        raise argparse.ArgumentTypeError(f"--track wants IFNAME=DECREMENT, got {value!r}")
    return name, int(dec)


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise argparse.ArgumentTypeError("0 or 1")
    return value == "1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m appliance.testing.vrrp_node",
                                description=__doc__.splitlines()[0])
    p.add_argument("--interface", required=True)
    p.add_argument("--vrid", type=int, required=True)
    p.add_argument("--priority", type=int, required=True)
    p.add_argument("--advert-ms", type=int, default=100)
    p.add_argument("--vip", type=IPv4Interface, action="append", required=True)
    p.add_argument("--track", type=_track, action="append", default=[])
    p.add_argument("--preempt", type=_flag, default=True)
    p.add_argument("--preempt-delay-ms", type=int, default=0)
    p.add_argument("--gate", type=_flag, default=True, help="initial sync gate")
    p.add_argument("--vmac", type=_flag, default=False)
    p.add_argument("--garp-count", type=int, default=5)
    p.add_argument("--garp-interval-ms", type=int, default=0)
    p.add_argument("--garp-repeat-s", type=int, default=5)
    p.add_argument("--state-file")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cfg = VrrpConfig(
            vrid=args.vrid,
            priority=args.priority,
            advert_interval_ms=args.advert_ms,
            preempt=args.preempt,
            virtual_ips=tuple(args.vip),
            preempt_delay_ms=args.preempt_delay_ms,
            track=tuple(args.track),
            use_vmac=args.vmac,
            garp_count=args.garp_count,
            garp_interval_ms=args.garp_interval_ms,
            garp_repeat_s=args.garp_repeat_s,
        )
        self.transitions: list[dict[str, Any]] = []
        self.service: VrrpService | None = None
        self.gate = args.gate
        self._written: str | None = None
        self._done = asyncio.Event()

    def on_transition(self, state: str, info: dict[str, Any]) -> None:
        record = {"t": time.time(), "state": state, **info}
        self.transitions.append(record)
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
        # after the service has finished the transition (VIPs, GARP): file I/O here
        # would delay them, which a daemon's datapath flip does not
        asyncio.get_running_loop().call_soon(self.write_state)

    def snapshot(self) -> dict[str, Any]:
        svc = self.service
        assert svc is not None
        return {
            "pid": os.getpid(),
            "state": svc.state,
            "priority": svc.priority,
            "master": svc.master,
            "gate": self.gate,
            "counters": svc.counters(),
            "transitions": self.transitions,
        }

    def write_state(self) -> None:
        path = self.args.state_file
        if not path or self.service is None:
            return
        text = json.dumps(self.snapshot(), default=str, sort_keys=True)
        if text == self._written:
            return
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        self._written = text

    def set_gate(self, ready: bool) -> None:
        self.gate = ready
        if self.service is not None:
            self.service.set_gate(ready)
        self.write_state()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.service = VrrpService(self.cfg, self.args.interface, self.on_transition, loop)
        self.service.set_gate(self.gate)
        loop.add_signal_handler(signal.SIGTERM, self._done.set)
        loop.add_signal_handler(signal.SIGINT, self._done.set)
        loop.add_signal_handler(signal.SIGUSR1, self.set_gate, True)
        loop.add_signal_handler(signal.SIGUSR2, self.set_gate, False)
        await self.service.start()
        self.write_state()
        while not self._done.is_set():
            try:
                await asyncio.wait_for(self._done.wait(), _REFRESH_S)
            except TimeoutError:
                pass
            self.write_state()
        await self.service.stop()
        self.write_state()
        return 0


# -- a lab for tests and benchmarks: our nodes and keepalived on one bridge ------------

KEEPALIVED_CONF = """\
# written by appliance.testing.vrrp_node for a test run
global_defs {{
    router_id {router_id}
    vrrp_version 3
    vrrp_garp_master_delay {garp_repeat_s}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface {interface}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert_s}
{preempt}    virtual_ipaddress {{
{vips}
    }}
}}
"""


def keepalived_conf(*, interface: str, vrid: int, priority: int, advert_ms: int,
                    vips: list[str], preempt: bool = True, router_id: str = "ka",
                    garp_repeat_s: int = 5) -> str:
    """A keepalived 2.2.7 VRRPv3 instance equivalent to our node's arguments."""
    return KEEPALIVED_CONF.format(
        router_id=router_id, interface=interface, vrid=vrid, priority=priority,
        advert_s=f"{advert_ms / 1000:g}", garp_repeat_s=garp_repeat_s,
        preempt="" if preempt else "    nopreempt\n",
        vips="\n".join(f"        {v}" for v in vips))


class LanWatch:
    """tcpdump in an observer namespace, collecting with their kernel capture timestamps
    (time.time() clock) the gratuitous ARPs, `garps` [(t, sender_mac, address)], and the
    VRRP adverts, `adverts` [(t, src_ip, priority)]."""

    def __init__(self, topo: Topology, ns: Netns, ifname: str = "eth1") -> None:
        self.garps: list[tuple[float, str, str]] = []
        self.adverts: list[tuple[float, str, int]] = []
        self._cond = threading.Condition()
        self._proc = topo.popen(ns, ["tcpdump", "-i", ifname, "-l", "-n", "-tt", "-e",
                                     "--immediate-mode", "arp or ip proto 112"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._ready = threading.Event()
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(10):
            raise TimeoutError("tcpdump did not start listening")

    def _read_err(self) -> None:
        for line in self._proc.stderr:
            if b"listening on" in line:
                self._ready.set()

    def _read(self) -> None:
        for raw in self._proc.stdout:
            parts = raw.decode(errors="replace").split()
            if "who-has" in parts:
                self._arp(parts)
            elif "VRRPv3," in parts:
                self._vrrp(parts)

    def _arp(self, parts: list[str]) -> None:
        # 1700000000.123456 02:00:00:00:00:0b > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806),
        #   length 42: Request who-has 192.0.2.100 (ff:ff:ff:ff:ff:ff) tell 192.0.2.100, ...
        # (tcpdump shows "(ff:ff:ff:ff:ff:ff)" after who-has when tha is not zero)
        try:
            i, j = parts.index("who-has"), parts.index("tell")
        except ValueError:
            return
        if j + 1 >= len(parts) or parts[i + 1] != parts[j + 1].rstrip(","):
            return  # an ordinary ARP request, not gratuitous
        with self._cond:
            self.garps.append((float(parts[0]), parts[1], parts[i + 1]))
            self._cond.notify_all()

    def _vrrp(self, parts: list[str]) -> None:
        # 1700000000.123456 02:..:0a > 01:00:5e:00:00:12, ethertype IPv4 (0x0800), length 46:
        #   192.0.2.10 > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 150, intvl 10cs, ...
        try:
            src = parts[parts.index("224.0.0.18:") - 2]
            prio = int(parts[parts.index("prio") + 1].rstrip(","))
        except (ValueError, IndexError):
            return
        with self._cond:
            self.adverts.append((float(parts[0]), src, prio))
            self._cond.notify_all()

    def _wait(self, find, what: str, timeout: float) -> float:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what}")
                self._cond.wait(left)

    def wait(self, mac: str, after: float, timeout: float = 10.0) -> float:
        """Capture time of the first gratuitous ARP from `mac` later than `after`."""
        return self._wait(
            lambda: next((t for t, m, _ in self.garps if m == mac and t > after), None),
            f"gratuitous ARP from {mac} after {after}", timeout)

    def wait_advert(self, src: str, after: float, timeout: float = 10.0) -> float:
        """Capture time of the first advert from `src` later than `after`."""
        return self._wait(
            lambda: next((t for t, s, _ in self.adverts if s == src and t > after), None),
            f"advert from {src} after {after}", timeout)

    def last_advert(self, src: str, before: float) -> float | None:
        """Capture time of the last advert from `src` earlier than `before`."""
        with self._cond:
            times = [t for t, s, _ in self.adverts if s == src and t < before]
        return max(times) if times else None


class VrrpLab:
    """A bridge with hosts that run our node or keepalived, and an observer namespace.

    Host i gets eth1 = 192.0.2.<10+i>/24 with MAC 02:00:00:00:00:<10+i>; every process
    is started through the Topology (ended by PID) and logs into `workdir`.
    """

    def __init__(self, topo: Topology, workdir: str, *, vrid: int = 51,
                 advert_ms: int = 100, vip: str = "192.0.2.100/24") -> None:
        self.t = topo
        self.dir = workdir
        self.vrid = vrid
        self.advert_ms = advert_ms
        self.vip = vip
        self.lan = topo.lan()
        self.obs = topo.host("obs")
        topo.attach(self.obs, self.lan, "eth1", "192.0.2.250/24", mac="02:00:00:00:00:fa")
        self.hosts: dict[str, Netns] = {}
        self.ip: dict[str, str] = {}
        self.mac: dict[str, str] = {}
        self._starts = 0

    def host(self, name: str) -> Netns:
        n = 10 + len(self.hosts)
        ns = self.t.host(name)
        self.ip[name] = f"192.0.2.{n}"
        self.mac[name] = f"02:00:00:00:00:{n:02x}"
        self.t.attach(ns, self.lan, "eth1", f"{self.ip[name]}/24", mac=self.mac[name])
        self.hosts[name] = ns
        return ns

    def state_file(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.json")

    def start_ours(self, name: str, priority: int, *extra: str) -> subprocess.Popen[bytes]:
        self._starts += 1
        path = self.state_file(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        log = open(os.path.join(self.dir, f"{name}.{self._starts}.log"), "wb")
        cmd = [sys.executable, "-m", "appliance.testing.vrrp_node", "--interface", "eth1",
               "--vrid", str(self.vrid), "--priority", str(priority),
               "--advert-ms", str(self.advert_ms), "--vip", self.vip,
               "--state-file", path, "--log-level", "INFO", *extra]
        p = self.t.popen(self.hosts[name], cmd, stdout=log, stderr=subprocess.STDOUT,
                         cwd=_REPO)
        log.close()
        return p

    def start_keepalived(self, name: str, priority: int, *, preempt: bool = True,
                         garp_repeat_s: int = 5) -> subprocess.Popen[bytes]:
        self._starts += 1
        base = os.path.join(self.dir, f"{name}.ka{self._starts}")
        with open(f"{base}.conf", "w") as f:
            f.write(keepalived_conf(interface="eth1", vrid=self.vrid, priority=priority,
                                    advert_ms=self.advert_ms, vips=[self.vip],
                                    preempt=preempt, router_id=name,
                                    garp_repeat_s=garp_repeat_s))
        log = open(f"{base}.log", "wb")
        p = self.t.popen(self.hosts[name],
                         ["keepalived", "-n", "-l", "-D", "-P", "-f", f"{base}.conf",
                          "-p", f"{base}.pid", "-r", f"{base}.vrrp.pid"],
                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return p

    def state(self, name: str) -> dict[str, Any]:
        try:
            with open(self.state_file(name)) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def has_vip(self, name: str) -> bool:
        r = self.t.run(self.hosts[name], ["ip", "-4", "-o", "addr", "show", "dev", "eth1"])
        return f" {self.vip.split('/')[0]}/" in r.stdout

    def arp_watch(self) -> LanWatch:
        return LanWatch(self.t, self.obs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(Node(args).run())


if __name__ == "__main__":
    sys.exit(main())
