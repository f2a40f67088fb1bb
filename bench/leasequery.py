"""What a leasequery costs the event loop, with 100k and 1M bindings in the table.

The decision code alone (dhcp/leasequery.py), no network: the answer to one RFC 4388
query by address and by MAC, and the RFC 6926 "all bindings" stream (answers built and
encoded, as dhcp/tcp.py writes them). There is no peer figure: Kea's leasequery hook
(libdhcp_lease_query.so) is not in Debian 12's kea packages.

    .venv/bin/python bench/leasequery.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.dhcp.leasequery import Leasequery
from appliance.dhcp.message import DhcpMessage
from appliance.leases.model import Lease, LeaseState
from appliance.leases.table import LeaseTable

T0 = 1.7e9
SID = bytes((192, 0, 2, 1))
BNG = int(IPv4Address("198.51.100.7"))


def query(mtype: int, ciaddr: int = 0, mac: bytes = b"") -> DhcpMessage:
    return DhcpMessage(op=1, htype=1 if mac else 0, hlen=len(mac), hops=0, xid=1, secs=0,
                       flags=0, ciaddr=ciaddr.to_bytes(4, "big"), yiaddr=bytes(4),
                       siaddr=bytes(4), giaddr=BNG.to_bytes(4, "big"),
                       chaddr=mac + bytes(16 - len(mac)), sname=bytes(64), file=bytes(128),
                       options={53: bytes((mtype,))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    args = ap.parse_args()
    base = int(IPv4Address("100.64.0.0"))
    print("bindings   by address   by MAC     bulk all (answers/s)")
    for n in (int(x) for x in args.sizes.split(",")):
        t = LeaseTable(origin="A")
        for i in range(n):
            mac = (0x020000000000 + i).to_bytes(6, "big")
            t.load(Lease(ip=base + i, mac=mac, client_id=b"\x01" + mac, state=LeaseState.BOUND,
                         start=T0, expires=T0 + 3600, pool="p", seq=i + 1, origin="A",
                         relay_info=b"\x01\x05port1"))
        lq = Leasequery(t, None, (IPv4Network("198.51.100.0/24"),), "A")
        q = query(10, ciaddr=base + n // 2)
        s = time.perf_counter()
        for _ in range(2000):
            lq.answer(q, BNG, SID, T0).reply.encode()  # type: ignore[union-attr]
        by_ip = (time.perf_counter() - s) / 2000
        q = query(10, mac=(0x020000000000 + n // 2).to_bytes(6, "big"))
        s = time.perf_counter()
        for _ in range(5):
            lq.answer(q, BNG, SID, T0)
        by_mac = (time.perf_counter() - s) / 5
        s = time.perf_counter()
        k = sum(1 for r in lq.bulk(query(14), SID, T0) if r.encode(0))
        bulk = time.perf_counter() - s
        print(f"{n:>9,}   {by_ip * 1e6:7.0f} µs   {by_mac * 1e3:6.1f} ms   "
              f"{bulk:6.1f} s ({k / bulk:,.0f}/s)")


if __name__ == "__main__":
    main()
