"""A DHCP load generator that plays a relay agent: many clients, every ACK recorded.

It binds a UDP socket on a relay address (port 67) and runs full DORA exchanges (or
renewals) for many synthetic clients with a window of exchanges in flight; replies come
back to giaddr. Unlike perfdhcp it writes down which client was ACKed which address,
which is what the crash and failover tests check ("every ACKed lease survives").

    python -m lab.dhcpload --relay 192.0.2.3 --server 192.0.2.2 \
        --clients 2000 --window 64 --out acks.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from appliance.dhcp.enums import MessageType, Opt
from appliance.dhcp.message import DecodeError, DhcpMessage
from appliance.testing.dhcpreq import request

ZERO = b"\x00" * 4


@dataclass
class Client:
    mac: bytes
    phase: str = "discover"  # discover -> request -> done
    xid: int = 0
    offered: bytes = ZERO
    sent_at: float = 0.0
    started: float = 0.0
    tries: int = 0
    renew_ip: bytes = ZERO


@dataclass
class Result:
    acks: dict[str, str] = field(default_factory=dict)  # mac -> ip
    naks: int = 0
    timeouts: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # REQUEST -> ACK
    started: float = 0.0
    elapsed: float = 0.0


def replies(sock: socket.socket) -> Iterator[DhcpMessage]:
    """Every DHCP message queued on the non-blocking `sock` (undecodable ones skipped)."""
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        try:
            yield DhcpMessage.decode(data)
        except DecodeError:
            continue


class Exchange(Protocol):
    sent_at: float
    tries: int


X = TypeVar("X", bound=Exchange)


def retransmit(in_flight: dict[int, X], now: float, timeout: float, retries: int,
               send: Callable[[X], None]) -> int:
    """Resend (with `send`, which files it under its new xid) every exchange of
    `in_flight` (xid -> client) unanswered for `timeout`, up to `retries` times each;
    returns how many were given up."""
    given_up = 0
    for xid, c in list(in_flight.items()):
        if now - c.sent_at > timeout:
            del in_flight[xid]
            if c.tries < retries:
                c.tries += 1
                send(c)
            else:
                given_up += 1
    return given_up


def _request(c: Client, relay: bytes, mtype: int, xid: int) -> bytes:
    if c.phase == "request":
        return request(mtype, c.mac, xid=xid, giaddr=relay, requested=c.offered,
                       server_id=c.server_id).encode()  # type: ignore[attr-defined]
    return request(mtype, c.mac, xid=xid, giaddr=relay,
                   ciaddr=c.renew_ip if c.phase == "renew" else ZERO).encode()


def run(relay: str, server: str, macs: list[bytes], window: int, timeout: float,
        duration: float, renew: dict[bytes, bytes] | None = None, retries: int = 2,
        rate: float = 0.0, linger: float = 1.0) -> Result:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((relay, 67))
    sock.setblocking(False)
    relay_b = socket.inet_aton(relay)
    dest = (server, 67)
    todo = list(reversed(macs))
    by_xid: dict[int, Client] = {}  # exchanges in flight, by their latest xid
    # Every xid ever sent: a late answer to a retransmitted request still counts (the
    # server did commit that lease, so the client must be seen to have its ACK).
    known: dict[int, Client] = {}
    res = Result(started=time.time())
    t0 = time.monotonic()
    deadline = t0 + duration
    sent_new = 0

    def send(c: Client) -> None:
        c.xid = random.getrandbits(32)
        by_xid[c.xid] = c
        known[c.xid] = c
        if c.phase == "discover":
            mt = MessageType.DISCOVER
        else:
            mt = MessageType.REQUEST
        c.sent_at = time.monotonic()
        try:
            sock.sendto(_request(c, relay_b, mt, c.xid), dest)
        except (BlockingIOError, OSError):
            pass

    while True:
        now = time.monotonic()
        if now > deadline:
            break
        # Fill the window (optionally paced at `rate` new exchanges per second).
        while todo and len(by_xid) < window and (not rate or sent_new < (now - t0) * rate):
            c = Client(todo.pop(), started=now)
            if renew is not None:
                c.phase, c.renew_ip = "renew", renew[c.mac]
            sent_new += 1
            send(c)
        if not todo and not by_xid:
            break
        r, _, _ = select.select([sock], [], [], 0.01)
        if r:
            for m in replies(sock):
                c = known.get(m.xid)
                if c is None or m.mac != c.mac:
                    continue  # not ours, or an xid two clients drew (32 random bits)
                by_xid.pop(c.xid, None)
                mt = m.message_type
                if mt == MessageType.ACK and c.phase == "done":
                    continue
                if mt == MessageType.OFFER and c.phase == "discover":
                    c.phase, c.offered, c.tries = "request", m.yiaddr, 0
                    c.server_id = m.options.get(Opt.SERVER_ID, ZERO)  # type: ignore[attr-defined]
                    send(c)
                elif mt == MessageType.ACK:
                    res.latencies_ms.append((time.monotonic() - c.sent_at) * 1000)
                    res.acks[c.mac.hex(":")] = socket.inet_ntoa(m.yiaddr)
                    c.phase = "done"
                elif mt == MessageType.OFFER:
                    continue  # a late OFFER for a client that has moved on
                elif mt == MessageType.NAK:
                    res.naks += 1
                    c.phase = "done"
        res.timeouts += retransmit(by_xid, time.monotonic(), timeout, retries, send)
    res.elapsed = time.monotonic() - t0
    # Linger: answers still on their way (a server catching up) are recorded, not lost.
    end = time.monotonic() + linger
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.05)
        for m in replies(sock) if r else ():
            c = known.get(m.xid)
            if c is not None and m.mac == c.mac and m.message_type == MessageType.ACK and \
                    c.phase != "done":
                res.acks[c.mac.hex(":")] = socket.inet_ntoa(m.yiaddr)
                c.phase = "done"
    sock.close()
    return res


def macs_for(n: int, seed: int = 1) -> list[bytes]:
    return [bytes([0x02, seed & 0xFF]) + i.to_bytes(4, "big") for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relay", required=True, help="local relay address to bind (giaddr)")
    p.add_argument("--server", required=True)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1, help="MAC prefix byte: disjoint client sets")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=0.0, help="new clients per second (0: as fast "
                   "as the window allows)")
    p.add_argument("--linger", type=float, default=1.0,
                   help="after the run, keep recording late answers this long")
    p.add_argument("--renew", help="JSON {mac: ip} from an earlier run: renew those instead")
    p.add_argument("--out", help="write the result as JSON here")
    a = p.parse_args(argv)
    renew = None
    if a.renew:
        with open(a.renew) as f:
            prev = json.load(f)["acks"]
        renew = {bytes.fromhex(m.replace(":", "")): socket.inet_aton(ip) for m, ip in prev.items()}
        macs = list(renew)
    else:
        macs = macs_for(a.clients, a.seed)
    res = run(a.relay, a.server, macs, a.window, a.timeout, a.duration, renew, a.retries,
              a.rate, a.linger)
    lat = sorted(res.latencies_ms)
    summary = {
        "clients": len(macs), "acked": len(res.acks), "naks": res.naks,
        "timeouts": res.timeouts, "elapsed_s": round(res.elapsed, 3),
        "rate_per_s": round(len(res.acks) / res.elapsed, 1) if res.elapsed else 0,
        "p50_ms": round(lat[len(lat) // 2], 3) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99)], 3) if lat else None,
    }
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"summary": summary, "acks": res.acks}, f)
        os.replace(tmp, a.out)
    print(json.dumps(summary), file=sys.stdout, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
