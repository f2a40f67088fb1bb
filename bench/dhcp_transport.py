"""The packet path's socket cost per datagram: receive, and each kind of send.

    sudo .venv/bin/python bench/dhcp_transport.py [--datagrams 20000] [--rounds 5]
        [--interfaces 200] [--baseline main] [--json]

Compares, in one run with rounds alternated, main's transport (one UDP socket bound to
the client interface with SO_BINDTODEVICE, an AF_PACKET socket bound to it) with this
checkout's (one UDP socket on 0.0.0.0:67 for every interface with IP_PKTINFO naming
the ingress port, one AF_PACKET socket for all, a Port table built by set_interfaces):

- recv: N DHCP DISCOVERs are queued in the socket first (sent from a client namespace,
  then the sender exits), then recv_batch(1024) drains them; ns per datagram;
- send LINK: the reply as a frame to chaddr through the AF_PACKET socket;
- send BROADCAST: 255.255.255.255 through the UDP socket (IP_PKTINFO: out of the
  ingress port, from the server identifier).

"this, 1 if" serves one interface, "this, K ifs" K (the datagrams arrive on one of
them): the per-packet cost must not grow with the interfaces. Everything stays in two
namespaces this script creates and removes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.dhcp.enums import MessageType
from appliance.dhcp.server import Dest, Ingress
from appliance.dhcp.transport import DhcpTransport
from appliance.testing.dhcpreq import request
from appliance.testing.netns import Topology, inside

REPO = Path(__file__).resolve().parents[1]
SRV_IP, CLI_IP = "192.0.2.2", "192.0.2.3"
SENDER = """
import socket, sys
n, payload = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
for _ in range(n):
    s.sendto(payload, (sys.argv[3], 67))
"""


def baseline_transport(ref: str):  # type: ignore[no-untyped-def]
    """main's dhcp/transport.py as a module of its own (it imports only what both have)."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:appliance/dhcp/transport.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path("/tmp") / f"dhcp_transport_{ref.replace('/', '_')}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("baseline_transport", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


class Old:
    def __init__(self, mod, ifname: str) -> None:  # type: ignore[no-untyped-def]
        self.t = mod.DhcpTransport(ifname, rcvbuf=64 << 20)
        self.t.set_source(bytes(map(int, SRV_IP.split("."))))

    def recv(self, limit: int) -> int:
        return len(self.t.recv_batch(limit))

    def send(self, payload: bytes, dest: Dest, ip: bytes, mac: bytes) -> None:
        self.t.send(payload, dest, ip, mac)

    def close(self) -> None:
        self.t.close()


class New:
    def __init__(self, ifnames: list[str], serve: str) -> None:
        self.t = DhcpTransport(rcvbuf=64 << 20)
        sid = bytes(map(int, SRV_IP.split(".")))
        ings = [Ingress(local_ips=(), server_ids=(sid,), name=n) for n in ifnames]
        assert self.t.set_interfaces(ings) == []
        self.port = next(p for p in self.t.ports if p.ifname == serve)

    def recv(self, limit: int) -> int:
        return len(self.t.recv_batch(limit))

    def send(self, payload: bytes, dest: Dest, ip: bytes, mac: bytes) -> None:
        self.t.send(payload, dest, ip, mac, self.port, 0)

    def close(self) -> None:
        self.t.close()


def fill(t: Topology, cli, n: int, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    t.run(cli, [sys.executable, "-c", SENDER, str(n), payload.hex(), SRV_IP])


def measure_recv(tr, t: Topology, cli, n: int, payload: bytes) -> float:  # type: ignore[no-untyped-def]
    while tr.recv(1024):  # empty first
        pass
    fill(t, cli, n, payload)
    got = 0
    t0 = time.perf_counter_ns()
    while True:
        k = tr.recv(1024)
        if not k:
            break
        got += k
    dt = time.perf_counter_ns() - t0
    if got < n * 0.99:
        raise SystemExit(f"{tr.name}: only {got} of {n} datagrams were queued (rcvbuf?)")
    return dt / got


def measure_send(tr, dest: Dest, n: int, payload: bytes) -> float:  # type: ignore[no-untyped-def]
    ip = b"\xff" * 4 if dest is Dest.BROADCAST else bytes((192, 0, 2, 200))
    mac = bytes.fromhex("027f00000042")
    send = tr.send
    t0 = time.perf_counter_ns()
    for _ in range(n):
        send(payload, dest, ip, mac)
    return (time.perf_counter_ns() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datagrams", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interfaces", type=int, default=200)
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    payload = request(MessageType.DISCOVER, "02:7f:00:00:00:01").encode()
    reply = bytes(300)
    with Topology("bt") as t:
        srv, cli = t.host("srv"), t.host("cli")
        t.veth(srv, "eth1", cli, "eth0")
        t.addr(srv, "eth1", f"{SRV_IP}/24")
        t.addr(cli, "eth0", f"{CLI_IP}/24")
        # The other client interfaces: veth ports whose peers sit in the client namespace.
        extra = []
        batch = "".join(f"link add eth1.{i} netns {srv} type veth peer name v{i} netns {cli}\n"
                        for i in range(args.interfaces - 1))
        if batch:
            subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
            extra = [f"eth1.{i}" for i in range(args.interfaces - 1)]
        mod = baseline_transport(args.baseline)
        # One transport at a time: sockets bound to :67 side by side would share (or,
        # bound to the device, take all of) the unicast datagrams.
        makers = [(args.baseline, lambda: Old(mod, "eth1")),
                  ("this, 1 if", lambda: New(["eth1"], "eth1")),
                  (f"this, {args.interfaces} ifs", lambda: New(["eth1", *extra], "eth1"))]
        rows: dict[str, dict[str, list[float]]] = {
            name: {"recv": [], "send_link": [], "send_broadcast": []} for name, _ in makers}
        for _ in range(args.rounds):
            for name, make in makers:
                with inside(srv):
                    tr = make()
                tr.name = name
                try:
                    r = rows[name]
                    r["recv"].append(measure_recv(tr, t, cli, args.datagrams, payload))
                    r["send_link"].append(measure_send(tr, Dest.LINK, args.datagrams, reply))
                    r["send_broadcast"].append(
                        measure_send(tr, Dest.BROADCAST, args.datagrams, reply))
                finally:
                    tr.close()
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in rows.items()}
    if args.json:
        print(json.dumps(med, indent=2))
        return 0
    print(f"ns per datagram, median of {args.rounds} rounds of {args.datagrams} "
          "(same run, rounds alternated)")
    print(f"{'transport':<16}{'recv':>10}{'send LINK':>12}{'send BCAST':>12}")
    for name, m in med.items():
        print(f"{name:<16}{m['recv']:>10.0f}{m['send_link']:>12.0f}"
              f"{m['send_broadcast']:>12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
