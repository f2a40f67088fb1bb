"""The real daemon serving several client interfaces, for the packet path's namespace
tests (tests/integration/test_dhcp_interfaces.py) while the config tree this daemon reads
names one (client/interface). Once the daemon is built from the interfaces/ tree (issue
12), a test writes that tree instead and this module goes.

    python -m appliance.testing.multiif --config ETC --spec SPEC.json

SPEC.json:

    {"interfaces": [{"name": "eth1.100", "groups": ["ga"], "virtual_ips": ["192.0.2.1"]},
                    {"name": "eth1.300", "groups": ["ga", "gb"],
                     "virtual_ips": ["203.0.113.1", "203.0.113.254"]},
                    {"name": "eth1.400"}],
     "serving": ["ga", ""]}

Everything else is the daemon as `dhcp-hotbackup run` runs it on a standalone tree (the
tree's client/interface must be one of the interfaces; datapath/mode off): the lease
store, the runtime tree, the packet path (dhcp/service.py). `serving` is the groups the
device answers ("" = the interfaces bound to none; default: every group), as the pair
policy's Serve actions would set them; the test adds the virtual IPs itself, as VRRP
would on the master.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from ipaddress import IPv4Address

from appliance.config import tree as config_tree
from appliance.daemon import Daemon
from appliance.dhcp.server import Ingress
from appliance.dhcp.service import client_interface


class MultiInterfaceDaemon(Daemon):
    def __init__(self, cfg, spec: dict) -> None:  # type: ignore[no-untyped-def]
        super().__init__(cfg)
        self.spec = spec

    def _interfaces(self) -> list[Ingress]:
        return [client_interface(i["name"], tuple(i.get("groups", ())),
                                 [IPv4Address(v) for v in i.get("virtual_ips", ())])
                for i in self.spec["interfaces"]]

    def _set_serving(self, group: str, on: bool, why: str) -> None:
        # The tree is standalone: the pair policy serves its one "group" (none); the
        # packet path answers the groups the spec names instead, while that is served.
        super()._set_serving(group, on, why)
        if self.dhcp is not None:
            every = {g for i in self.spec["interfaces"] for g in i.get("groups", ()) or ("",)}
            self.dhcp.serving(set(self.spec.get("serving", every)) if self.active else ())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--spec", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_tree.load(args.config)
    with open(args.spec) as f:
        spec = json.load(f)
    return asyncio.run(MultiInterfaceDaemon(cfg, spec).run())


if __name__ == "__main__":
    raise SystemExit(main())
