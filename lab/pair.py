"""Two real daemons joined by a sync link, for the replication tests and benchmarks.

    lan  bridge ── a   (eth1 192.0.2.2/24)  ══ eth2 198.51.100.1 ── veth ── 198.51.100.2 eth2 ══ b
               └─ ra  (load relay: 192.0.2.3/24 + 198.18.0.1/16)             lanb bridge ──┤
                                                  rb (load relay, same addresses) ─────────┘

Each device is standalone (no vrrp/: always active) with sync/ pointing at the other, and
sits on a client LAN of its own with the same addresses, so a load generator on either LAN
talks to that device alone: both can serve at once (a split brain, on purpose) without
any traffic leaving the test's namespaces. `Pair` owns nothing that `Topology` does not
clean up.

    with Topology() as t:
        pair = Pair(t, tmp_path)
        pair.start()                      # both daemons, waits until they are in sync
        acks, summary = pair.a.load("--clients", 500)  # dhcpload from ra: every ACK
        pair.b.leases_by_mac()            # B's durable table (`leases --json`)

Test support only; the product never imports it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.testing.daemonfiles import CLI, DaemonFiles
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.trees import standalone_tree

REPO = Path(__file__).resolve().parents[1]

SERVER_IP = "192.0.2.2"
RELAY_IP = "192.0.2.3"  # the load relay's address on each client LAN
LOAD_NET = "198.18.0.0/16"  # RFC 2544 benchmarking range: room for thousands of clients
LOAD_RELAY = "198.18.0.1"  # giaddr of the load generator
LOAD_POOL = {"pools/load/subnet": LOAD_NET, "pools/load/range": "198.18.1.0-198.18.255.254",
             "pools/load/router": LOAD_RELAY}
KEY = "0123456789abcdef0123456789abcdef"
SYNC_PORT = 6470
SYNC_A, SYNC_B = "198.51.100.1", "198.51.100.2"



class Device(DaemonFiles):
    """One daemon of the pair: its namespace, config tree, runtime tree, log and load
    relay, and what an operator would look at."""

    def __init__(self, t: Topology, root: Path, name: str, ns: Netns, relay: Netns,
                 local: str, peer: str, extra: dict[str, str]) -> None:
        self.t, self.name, self.ns, self.relay = t, name, ns, relay
        self.root = root / name
        self.local_ip = local
        self.etc = standalone_tree(self.root, name=name, extra={
            "sync/interface": "eth2", "sync/local": f"{local}:{SYNC_PORT}",
            "sync/peer": f"{peer}:{SYNC_PORT}", "sync/key": KEY, **LOAD_POOL, **extra})
        self.run_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.log = self.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._loads = 0

    # -- life cycle --------------------------------------------------------------------
    def start(self, timeout: float = 60, wrap: Sequence[str] = ()) -> None:
        """Start the daemon and wait until it serves (its runtime tree names its pid).
        `wrap` comes before the command (e.g. faketime and its offset)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        with open(self.log, "ab") as log:
            p = self.t.popen(self.ns, [*wrap, CLI, "run", "--config", str(self.etc)], stdout=log,
                             stderr=subprocess.STDOUT)
        self.proc = p

        def serving() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"{self.name} exited ({p.returncode}):\n{self.log_tail()}")
            return self.value("pid") == str(p.pid) and self.value("role") == "active"

        wait_for(serving, timeout, what=f"{self.name} serving")

    def stop(self) -> None:
        """SIGTERM, as systemd would: the daemon must exit 0."""
        assert self.proc is not None
        rc = self.t.stop(self.proc, signal.SIGTERM, timeout=30)
        assert rc == 0, f"{self.name} exit status {rc} after SIGTERM:\n{self.log_tail()}"

    def kill9(self) -> None:
        assert self.proc is not None
        self.t.kill9(self.proc)

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, \
            f"{self.name} died ({self.proc and self.proc.returncode}):\n{self.log_tail()}"

    # -- what an operator looks at -----------------------------------------------------
    def sync_stats(self) -> dict[str, int]:
        """Every stats/sync_* counter, without the prefix."""
        out = {}
        d = self.run_dir / "stats"
        for p in d.glob("sync_*") if d.is_dir() else ():
            try:
                out[p.name[5:]] = int(p.read_text())
            except (OSError, ValueError):
                continue
        return out

    def refused(self) -> dict[str, int]:
        return {k: v for k, v in self.sync_stats().items() if k.startswith("refused_") and v}

    def peer_state(self) -> str | None:
        return self.value("sync/peer")

    def wait_peer(self, state: str, timeout: float = 30) -> None:
        try:
            wait_for(lambda: self.peer_state() == state, timeout,
                     what=f"{self.name} sync/peer {state}")
        except TimeoutError as e:
            raise AssertionError(f"{e}: it is {self.peer_state()}\n{self.log_tail()}") from None

    def leases(self, all: bool = False) -> list[dict]:
        """`dhcp-hotbackup leases --json [--all]`: the durable lease table."""
        cmd = [CLI, "leases", "--json", "--config", str(self.etc), *(["--all"] if all else [])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}"
        return json.loads(r.stdout)

    def leases_by_mac(self) -> dict[str, dict]:
        """Bound leases by MAC; a MAC bound twice is an error."""
        out: dict[str, dict] = {}
        for x in self.leases():
            assert x["mac"] not in out, \
                f"{self.name}: {x['mac']} bound twice: {out[x['mac']]['ip']} and {x['ip']}"
            out[x["mac"]] = x
        return out

    def bindings(self) -> dict[str, str]:
        """mac -> ip of every bound lease."""
        return {x["mac"]: x["ip"] for x in self.leases()}

    # -- load --------------------------------------------------------------------------
    def _load_cmd(self, out: Path, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "lab.dhcpload", "--relay", LOAD_RELAY,
                "--server", SERVER_IP, "--out", str(out), *args]

    def load(self, *args: object, timeout: float = 180) -> tuple[dict[str, str], dict]:
        """Run dhcpload from this device's load relay to the end; returns (acks mac ->
        ip, summary). Arguments as on its command line (--clients N --seed S ...)."""
        self._loads += 1
        out = self.root / f"load{self._loads}.json"
        r = self.t.run(self.relay, self._load_cmd(out, [str(a) for a in args]),
                       timeout=timeout, cwd=str(REPO))
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        return json.loads(out.read_text())["acks"], summary

    def load_async(self, *args: object) -> tuple[subprocess.Popen[bytes], Path]:
        """Start dhcpload in the background; read its result file after it exits."""
        self._loads += 1
        out = self.root / f"load{self._loads}.json"
        with open(self.root / f"load{self._loads}.log", "ab") as log:
            p = self.t.popen(self.relay, self._load_cmd(out, [str(a) for a in args]),
                             stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        return p, out

    def renew(self, bindings: dict[str, str], *args: object) -> tuple[dict[str, str], dict]:
        """Each client of `bindings` (mac -> ip) sends a renewing REQUEST (ciaddr)."""
        self._loads += 1
        src = self.root / f"renew{self._loads}.json"
        src.write_text(json.dumps({"acks": bindings}))
        return self.load("--renew", src, *args)

    def release(self, mac: str, ip: str) -> None:
        """A DHCPRELEASE of `ip` by `mac`, relayed through this device's load relay."""
        self.t.run(self.relay, [sys.executable, "-m", "lab.pair", "release",
                                mac, ip], cwd=str(REPO))

    def discover(self, mac: str) -> str:
        """A relayed DISCOVER from `mac`; returns the address OFFERed. The client stops
        there (mid-DORA): `renew({mac: ip})` completes it with a REQUEST."""
        r = self.t.run(self.relay, [sys.executable, "-m", "lab.pair",
                                    "discover", mac], cwd=str(REPO))
        return r.stdout.strip().splitlines()[-1]


class Pair:
    """Devices `a` (sync 198.51.100.1, pool-split parity 0) and `b` (198.51.100.2,
    parity 1), each on its own client LAN with a load relay; `extra` goes in both config
    trees (they must agree: what differs is reported as config drift)."""

    def __init__(self, t: Topology, root: Path, extra: dict[str, str] | None = None,
                 routes: tuple[tuple[str, str], ...] = ()) -> None:
        self.t = t
        root = Path(root)
        extra = dict(extra or {})
        self.lan, self.lanb = t.lan("lan"), t.lan("lanb")
        na, nb = t.host("a"), t.host("b")
        ra, rb = t.host("ra"), t.host("rb")
        for srv, relay, lan in ((na, ra, self.lan), (nb, rb, self.lanb)):
            t.attach(srv, lan, "eth1", f"{SERVER_IP}/24")
            t.attach(relay, lan, "eth0", f"{RELAY_IP}/24")
            t.addr(relay, "eth0", f"{LOAD_RELAY}/16")
            t.run(srv, ["ip", "route", "add", LOAD_NET, "via", RELAY_IP])
            for net, via in routes:
                t.run(srv, ["ip", "route", "add", net, "via", via])
        t.veth(na, "eth2", nb, "eth2")
        t.addr(na, "eth2", f"{SYNC_A}/24")
        t.addr(nb, "eth2", f"{SYNC_B}/24")
        self.a = Device(t, root, "deviceA", na, ra, SYNC_A, SYNC_B, extra)
        self.b = Device(t, root, "deviceB", nb, rb, SYNC_B, SYNC_A, extra)

    def start(self, timeout: float = 60) -> None:
        """Both daemons, then wait until each sees the other connected (in sync)."""
        self.a.start(timeout)
        self.b.start(timeout)
        self.wait_in_sync(timeout)

    def wait_in_sync(self, timeout: float = 60) -> None:
        self.a.wait_peer("connected", timeout)
        self.b.wait_peer("connected", timeout)

    def cut(self) -> None:
        """The sync link goes down at A (`ip link set eth2 down`)."""
        self.t.link(self.a.ns, "eth2", False)

    def restore(self) -> None:
        self.t.link(self.a.ns, "eth2", True)

    def stop(self) -> None:
        for d in (self.a, self.b):
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


def read_tables(*devices: Device) -> list[list[dict]]:
    """`leases --json` of several devices at once (each is a process: a 100k-lease table
    takes seconds to print)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(devices)) as ex:
        return list(ex.map(lambda d: d.leases(), devices))


# -- sync-link peers that are not the daemon: what the refusal tests send ---------------
def sync_connect(ns: Netns | str, peer: str = SYNC_B, port: int = SYNC_PORT,
                 source: str | None = None, timeout: float = 10) -> socket.socket:
    """A TCP connection to a daemon's sync port, made from inside `ns` (from `source`
    if given: the daemon accepts only its sync/peer address)."""
    from appliance.testing.netns import inside

    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((peer, port))
    return s


def read_until_closed(s: socket.socket, timeout: float = 10) -> bytes:
    """Everything the daemon sends until it closes the connection (it must, after a
    refusal); raises TimeoutError if it keeps it open."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return out
            out += data
    except ConnectionResetError:
        return out
    finally:
        s.close()


class SyncCapture:
    """The raw frames on one interface (AF_PACKET, opened in `ns` before the daemons
    start), and the TCP byte stream of each sync connection rebuilt from them."""

    def __init__(self, ns: Netns | str, ifname: str = "eth2") -> None:
        from appliance.testing.netns import inside

        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            self.sock.bind((ifname, 0x0800))
        self.sock.setblocking(False)
        self.segments: list[tuple[tuple[str, int, str, int], int, bytes]] = []

    def drain(self) -> None:
        while True:
            try:
                frame = self.sock.recv(65536)
            except BlockingIOError:
                return
            ip = frame[14:]
            if len(ip) < 20 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = int.from_bytes(ip[2:4], "big")
            tcp = ip[ihl:total]
            off = (tcp[12] >> 4) * 4
            payload = tcp[off:]
            if not payload:
                continue
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            sport, dport = int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")
            seq = int.from_bytes(tcp[4:8], "big")
            self.segments.append(((src, sport, dst, dport), seq, payload))

    def streams(self, src: str, dst: str, dport: int | None = None) -> list[bytes]:
        """The bytes sent from `src` to `dst` (port `dport`, or any), one entry per
        connection, in sequence order (retransmissions folded)."""
        self.drain()
        by_conn: dict[tuple[str, int, str, int], list[tuple[int, bytes]]] = {}
        for conn, seq, payload in self.segments:
            if conn[0] == src and conn[2] == dst and dport in (None, conn[3]):
                by_conn.setdefault(conn, []).append((seq, payload))
        out = []
        for segs in by_conn.values():
            base = segs[0][0]  # the first data segment seen (sequence numbers wrap)
            data = bytearray()
            for pos, p in sorted(((seq - base) % (1 << 32), p) for seq, p in segs):
                if pos > len(data):
                    break  # a segment is missing: the stream ends before it
                if pos + len(p) > len(data):
                    data[pos:] = p
            out.append(bytes(data))
        return out

    def close(self) -> None:
        self.sock.close()


def split_frames(stream: bytes) -> list[bytes]:
    """Cut a sync byte stream (one direction of one connection, from its start) into
    whole frames; a partial last frame is left out. The first is the sender's HELLO
    (an HMAC trailer), every later one carries an AEAD tag (frames.frame_size)."""
    from appliance.sync.frames import HEADER_LEN, frame_size

    out = []
    pos = 0
    while pos + HEADER_LEN <= len(stream):
        end = pos + frame_size(stream[pos : pos + HEADER_LEN], hello=not out)
        if end > len(stream):
            break
        out.append(stream[pos:end])
        pos = end
    return out


def _relayed(mtype: int, mac: str, ciaddr: str = "0.0.0.0", xid: int = 0) -> bytes:
    from appliance.testing.dhcpreq import request

    return request(mtype, mac, xid=xid or int.from_bytes(os.urandom(4), "big"),
                   ciaddr=ciaddr, giaddr=LOAD_RELAY, prl=None,
                   server_id=SERVER_IP if ciaddr != "0.0.0.0" else None).encode()


def _release(mac: str, ip: str) -> None:
    from appliance.dhcp.enums import MessageType

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(_relayed(MessageType.RELEASE, mac, ip), (SERVER_IP, 67))
    s.close()


def _discover(mac: str, timeout: float = 20) -> str:
    import time

    from appliance.dhcp.enums import MessageType
    from appliance.dhcp.message import DecodeError, DhcpMessage

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOAD_RELAY, 67))  # replies to a relay go to giaddr port 67
    xid = int.from_bytes(os.urandom(4), "big")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.sendto(_relayed(MessageType.DISCOVER, mac, xid=xid), (SERVER_IP, 67))
        s.settimeout(1.0)
        try:
            while True:
                m = DhcpMessage.decode(s.recv(4096))
                if m.xid == xid and m.message_type == MessageType.OFFER:
                    return socket.inet_ntoa(m.yiaddr)
        except (TimeoutError, DecodeError):
            continue
    raise SystemExit(f"no OFFER for {mac} within {timeout}s")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "release":
        _release(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "discover":
        print(_discover(sys.argv[2]), flush=True)
    else:
        raise SystemExit("usage: python -m lab.pair release MAC IP | discover MAC")
