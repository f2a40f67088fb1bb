"""Real DHCP clients, ISC dhcrelay and tcpdump, run in a test namespace with private files.

Each wrapper keeps its lease, pid, script, event and log files in a directory the test
owns, so runs side by side never share state: dhclient never touches /var/lib/dhcp, and
dhcpcd runs in a private mount namespace with the test's own directories bound over /run
and /var/lib/dhcpcd (dhcpcd 9 keeps its pid file, control socket, DUID and lease there,
shared by every network namespace otherwise). Every process is started with
Topology.popen and ended by its PID; the event scripts configure the address only (no
resolv.conf, no hostname), inside the client's namespace.

`python -m lab.clients exchange` is the scapy half of `scapy_exchange`: it
runs inside a client namespace, sends raw frames and reports the DHCP replies it saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from appliance.testing.netns import Netns, Topology, wait_for

REPO = Path(__file__).resolve().parents[1]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def _read_events(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def ipv4_addrs(t: Topology, ns: Netns, ifname: str) -> list[str]:
    """The IPv4 addresses configured on `ifname` (what `ip addr` shows a user)."""
    out = t.run(ns, ["ip", "-j", "-4", "addr", "show", "dev", ifname]).stdout
    return [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def link_macs(t: Topology, ns: Netns) -> dict[str, str]:
    """ifname -> MAC of every link in `ns`."""
    out = t.run(ns, ["ip", "-j", "link", "show"]).stdout
    return {link["ifname"]: link.get("address", "") for link in json.loads(out)}


class _Client:
    """A process this test started in `ns`, with a work directory and a log."""

    def __init__(self, t: Topology, ns: Netns, ifname: str, workdir: Path) -> None:
        self.t, self.ns, self.ifname = t, ns, ifname
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "log"
        self.events_file = self.dir / "events"
        self.proc: subprocess.Popen[bytes] | None = None

    def _popen(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            self.proc = self.t.popen(self.ns, cmd, stdout=log, stderr=subprocess.STDOUT)
        return self.proc

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.running(), f"client exited ({self.proc and self.proc.returncode}):\n" + \
            self.log_text()
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        wait_for(lambda: self.proc.poll() is not None, timeout,  # type: ignore[union-attr]
                 what=f"{self.ns}: client exit")
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc is not None:
            self.t.stop(self.proc)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def events(self) -> list[list[str]]:
        """Lines the event script wrote: [event, address...]."""
        return _read_events(self.events_file)

    def wait_event(self, name: str, count: int = 1, timeout: float = 30) -> list[str]:
        """Wait until `name` was reported `count` times; returns the last such line."""

        def seen() -> list[str] | None:
            hits = [e for e in self.events() if e and e[0] == name]
            if len(hits) >= count:
                return hits[count - 1]
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.ns}: client exited ({self.proc.returncode}) before "
                                     f"{name}:\n{self.log_text()}")
            return None

        try:
            return wait_for(seen, timeout, what=f"{self.ns}: {name} x{count}")
        except TimeoutError as e:
            raise AssertionError(f"{e}; events {self.events()}\n{self.log_text()}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Dhclient(_Client):
    """ISC dhclient in the foreground (-d) with its own config, lease file, pid file and
    an event script that only sets the address: `events()` gives [reason, new, old]."""

    def __init__(self, t: Topology, ns: Netns, ifname: str, workdir: Path,
                 hostname: str = "itest-dhclient") -> None:
        super().__init__(t, ns, ifname, workdir)
        self.conf = self.dir / "dhclient.conf"
        self.conf.write_text(
            f'send host-name "{hostname}";\n'
            "request subnet-mask, broadcast-address, routers, domain-name, "
            "domain-name-servers;\n")
        self.lease_file = self.dir / "dhclient.leases"
        self.pid_file = self.dir / "dhclient.pid"
        self.script = _script(self.dir / "dhclient-script", f"""
            echo "$reason ${{new_ip_address:--}} ${{old_ip_address:--}}" >> {self.events_file}
            case "$reason" in
              PREINIT) ip link set dev "$interface" up ;;
              BOUND|RENEW|REBIND|REBOOT)
                ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
              EXPIRE|FAIL|RELEASE|STOP)
                [ -z "$old_ip_address" ] || \\
                  ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
            esac
            exit 0
            """)

    def _args(self) -> list[str]:
        return ["-cf", str(self.conf), "-sf", str(self.script), "-lf", str(self.lease_file),
                "-pf", str(self.pid_file)]

    def start(self) -> Dhclient:
        self._popen(["dhclient", "-d", "-v", "-1", *self._args(), self.ifname])
        return self

    def release(self, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`dhclient -r`: stops the running client (pid file) and sends DHCPRELEASE."""
        return self.t.run(self.ns, ["dhclient", "-r", "-v", *self._args(), self.ifname],
                          timeout=timeout)


class Udhcpc(_Client):
    """busybox udhcpc in the foreground (-f) with a script that sets the address (so that
    its unicast renewal can leave); SIGUSR1 renews, SIGUSR2 releases."""

    def __init__(self, t: Topology, ns: Netns, ifname: str, workdir: Path) -> None:
        super().__init__(t, ns, ifname, workdir)
        self.pid_file = self.dir / "udhcpc.pid"
        self.script = _script(self.dir / "udhcpc-script", f"""
            echo "$1 ${{ip:--}}" >> {self.events_file}
            case "$1" in
              deconfig) ip -4 addr flush dev "$interface" ;;
              bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
            esac
            exit 0
            """)

    def start(self, *extra: str) -> Udhcpc:
        self._popen(["udhcpc", "-f", "-i", self.ifname, "-s", str(self.script),
                     "-p", str(self.pid_file), "-t", "10", "-T", "2", "-A", "2", *extra])
        return self

    def renew(self) -> None:
        self.signal(signal.SIGUSR1)

    def release(self) -> None:
        self.signal(signal.SIGUSR2)


def record_script(path: Path, outdir: Path) -> Path:
    """A udhcpc script that configures nothing and writes the bound address to
    outdir/<interface>."""
    outdir.mkdir(parents=True, exist_ok=True)
    return _script(path, f"""
        [ "$1" = bound ] && echo "$ip" > "{outdir}/$interface"
        exit 0
        """)


def udhcpc_oneshot(t: Topology, ns: Netns, ifname: str, script: Path,
                   log: Path) -> subprocess.Popen[bytes]:
    """`udhcpc -q -n`: get one lease (or fail) and exit."""
    with open(log, "ab") as f:
        return t.popen(ns, ["udhcpc", "-q", "-n", "-f", "-i", ifname, "-s", str(script),
                            "-t", "10", "-T", "2"], stdout=f, stderr=subprocess.STDOUT)


class Dhcpcd(_Client):
    """dhcpcd 9 in the foreground (-B), IPv4 only, no ARP (no DAD wait), no hook scripts,
    in a private mount namespace: the test's run/ and db/ directories are bound over /run
    and /var/lib/dhcpcd, so its pid file, control socket, DUID and lease are this test's.
    Control commands (`dhcpcd -N`, `dhcpcd -k`) run in that mount namespace too."""

    def __init__(self, t: Topology, ns: Netns, ifname: str, workdir: Path,
                 hostname: str = "itest-dhcpcd") -> None:
        super().__init__(t, ns, ifname, workdir)
        self.run_dir = self.dir / "run"
        self.db_dir = self.dir / "db"
        self.run_dir.mkdir(exist_ok=True)
        self.db_dir.mkdir(exist_ok=True)
        self.conf = self.dir / "dhcpcd.conf"
        self.conf.write_text(f"duid\nhostname {hostname}\n"
                             "option domain_name_servers, domain_name\n")
        self.dhcpcd_log = self.dir / "dhcpcd.log"

    def start(self) -> Dhcpcd:
        sh = (f"mount --bind {self.run_dir} /run && mkdir -p /run/dhcpcd && "
              f"mount --bind {self.db_dir} /var/lib/dhcpcd && "
              f"exec dhcpcd -B -d -4 -A -L -t 30 -f {self.conf} -c /bin/true "
              f"-j {self.dhcpcd_log} {self.ifname}")
        self._popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", sh])
        return self

    def ctl(self, *flags: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `dhcpcd -4 FLAGS ifname` against the running daemon, as a user would."""
        assert self.running(), "dhcpcd is not running:\n" + self.log_text()
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-n", "dhcpcd", "-4", *flags,
                            self.ifname], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"dhcpcd {' '.join(flags)} failed ({r.returncode}): "
                                 f"{r.stderr or r.stdout}")
        return r

    def renew(self) -> None:
        self.ctl("-N")

    def release(self) -> None:
        self.ctl("-k")

    def duid(self) -> bytes:
        """The DUID dhcpcd generated and stored (its /var/lib/dhcpcd/duid)."""
        return bytes.fromhex((self.db_dir / "duid").read_text().strip().replace(":", ""))

    def log_text(self) -> str:
        try:
            return self.dhcpcd_log.read_text(errors="replace")
        except FileNotFoundError:
            return super().log_text()

    def count(self, line: str) -> int:
        """How many times `line` appears in dhcpcd's own log."""
        return self.log_text().count(line)


class Dhcrelay(_Client):
    """ISC dhcrelay in the foreground: `dhcrelay -d -4 [-a] -iu UP -id DOWN SERVER`."""

    def __init__(self, t: Topology, ns: Netns, upstream: str, downstream: str, server: str,
                 workdir: Path, agent_option: bool = True) -> None:
        super().__init__(t, ns, downstream, workdir)
        self.upstream, self.downstream, self.server = upstream, downstream, server
        self.agent_option = agent_option

    def start(self, timeout: float = 20) -> Dhcrelay:
        self._popen(["dhcrelay", "-d", "-4", *(["-a"] if self.agent_option else []),
                     "-pf", str(self.dir / "dhcrelay.pid"),
                     "-iu", self.upstream, "-id", self.downstream, self.server])

        def ready() -> bool:
            if not self.running():
                raise AssertionError("dhcrelay exited:\n" + self.log_text())
            return "Sending on   Socket/fallback" in self.log_text()

        wait_for(ready, timeout, what="dhcrelay listening")
        return self


class Capture(_Client):
    """tcpdump -w on one interface of `ns`, written per packet (-U)."""

    def __init__(self, t: Topology, ns: Netns, ifname: str, workdir: Path,
                 bpf: str = "udp port 67 or udp port 68") -> None:
        super().__init__(t, ns, ifname, workdir)
        self.pcap = self.dir / f"{ifname}.pcap"
        self.bpf = bpf

    def start(self, timeout: float = 20) -> Capture:
        # -Z root: tcpdump would otherwise drop to its own user and not write here.
        self._popen(["tcpdump", "-i", self.ifname, "-n", "-U", "-Z", "root", "-s", "0",
                     "-w", str(self.pcap), self.bpf])
        wait_for(lambda: "listening on" in self.log_text(), timeout, what="tcpdump listening")
        return self

    def packets(self) -> list:
        """Scapy packets captured so far (a half-written last record is skipped)."""
        from scapy.error import Scapy_Exception
        from scapy.utils import PcapReader

        out = []
        try:
            with PcapReader(str(self.pcap)) as r:
                for p in r:
                    out.append(p)
        except (OSError, EOFError, ValueError, Scapy_Exception):
            pass
        return out


def scapy_exchange(t: Topology, ns: Netns, ifname: str, frames: list[bytes],
                   until_xids: list[int], timeout: float = 20) -> list[bytes]:
    """Send raw Ethernet `frames` from `ns` on `ifname` and return every DHCP reply (UDP
    from port 67, BOOTREPLY) seen there until replies with all of `until_xids` arrived
    (or `timeout`). Runs scapy in a child process inside the namespace."""
    spec = {"iface": ifname, "frames": [f.hex() for f in frames],
            "until_xids": list(until_xids), "timeout": timeout}
    r = t.run(ns, [sys.executable, "-m", "lab.clients", "exchange"],
              input=json.dumps(spec), timeout=timeout + 60, cwd=str(REPO))
    return [bytes.fromhex(h) for h in json.loads(r.stdout.strip().splitlines()[-1])]


def _exchange(spec: dict) -> list[str]:
    import threading

    from scapy.all import AsyncSniffer, conf, sendp
    from scapy.layers.dhcp import BOOTP
    from scapy.layers.inet import UDP

    conf.verb = 0
    iface = spec["iface"]
    want = set(spec["until_xids"])
    replies: list[str] = []
    seen: set[int] = set()
    done = threading.Event()
    started = threading.Event()

    def on_packet(p) -> None:
        if UDP in p and p[UDP].sport == 67 and BOOTP in p and p[BOOTP].op == 2:
            replies.append(bytes(p).hex())
            seen.add(p[BOOTP].xid)
            if want <= seen:
                done.set()

    sniffer = AsyncSniffer(iface=iface, prn=on_packet, store=False,
                           started_callback=started.set)
    sniffer.start()
    if not started.wait(15):
        raise SystemExit("sniffer did not start")
    for h in spec["frames"]:
        sendp(bytes.fromhex(h), iface=iface, verbose=False)
    done.wait(spec["timeout"])
    sniffer.stop()
    return replies


def _main(argv: list[str]) -> int:
    if argv[:1] != ["exchange"]:
        print("usage: python -m lab.clients exchange < spec.json",
              file=sys.stderr)
        return 2
    print(json.dumps(_exchange(json.load(sys.stdin))))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
