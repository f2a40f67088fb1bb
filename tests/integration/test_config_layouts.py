"""The real daemon on trees in the interfaces/ layout: a pair written as one interface
bound to one group runs as the same pair written in the one-interface layout (the
master serves a real client with the group's virtual IP as server identifier, a
priority reload moves the master); a tree naming an interface the box lacks, or a
standalone interface without an address, is refused at start naming it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import CLI, runtime_value
from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import require_tools
from appliance.testing.trees import interfaces_tree
from lab.clients import Udhcpc

pytestmark = pytest.mark.netns


def value(root: Path, rel: str) -> str:
    return runtime_value(root / "run", rel) or ""


def tree(root: Path, name: str, prio: int) -> Path:
    return interfaces_tree(root / name, name=name,
                           interfaces={"eth1": [("g", "192.0.2.1/24")]},
                           groups={"g": {"vrid": "21", "priority": str(prio),
                                         "advert_interval_ms": "1000"}})


def test_pair_in_the_interfaces_layout_serves_and_reloads(tmp_path):
    require_tools("udhcpc")
    ea, eb = tree(tmp_path, "A", 120), tree(tmp_path, "B", 100)
    with Topology() as t:
        lan = t.lan()
        a, b, c = t.host("a"), t.host("b"), t.host("c")
        t.attach(a, lan, "eth1", "192.0.2.2/24")
        t.attach(b, lan, "eth1", "192.0.2.3/24")
        t.attach(c, lan, "eth0", mac="02:7e:00:00:01:01")
        log_a = open(tmp_path / "a.log", "wb")
        pa = t.popen(a, [CLI, "run", "--config", str(ea)], stdout=log_a,
                     stderr=subprocess.STDOUT)
        wait_for(lambda: value(tmp_path / "A", "role") == "active", 20, what="A active")
        pb = t.popen(b, [CLI, "run", "--config", str(eb)])
        wait_for(lambda: value(tmp_path / "B", "vrrp/state") == "backup", 20, what="B backup")

        with Udhcpc(t, c, "eth0", tmp_path / "udhcpc").start() as client:
            client.wait_event("bound")
        assert "192.0.2.1" in (tmp_path / "a.log").read_text()  # D002: server identifier
        leases = subprocess.run([CLI, "leases", "--json", "--config", str(ea)],
                                capture_output=True, text=True, timeout=30)
        assert "02:7e:00:00:01:01" in leases.stdout

        # vrrp/g/priority is a priority reload: advertised at once, B preempts
        (ea / "vrrp/g/priority").write_text("90\n")
        r = subprocess.run([CLI, "reload", "--config", str(ea)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and "changed: vrrp/g/priority" in r.stdout, r.stdout
        wait_for(lambda: value(tmp_path / "B", "role") == "active", 5, interval=0.02,
                 what="B preempts")
        # an interface the box lacks is refused whole, named; the running config stays
        (ea / "interfaces/eth9").mkdir()
        r = subprocess.run([CLI, "reload", "--config", str(ea)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2 and "not on this box: eth9" in r.stdout, r.stdout
        assert value(tmp_path / "A", "vrrp/state") == "backup"
        assert t.stop(pa) == 0 and t.stop(pb) == 0


@pytest.mark.parametrize("interfaces,groups,says", [
    ({"eth1": [], "nosuch100": []}, {}, "interface(s) not on this box: nosuch100"),
    ({"eth1": [], "eth3": []}, {}, "client interface eth3 has no IPv4 address"),
])
def test_start_refuses_what_it_cannot_serve(tmp_path, interfaces, groups, says):
    etc = interfaces_tree(tmp_path, interfaces=interfaces, groups=groups)
    with Topology() as t:
        srv = t.host("srv")
        lan = t.lan()
        t.attach(srv, lan, "eth1", "192.0.2.2/24")
        t.attach(srv, t.lan("lan2"), "eth2", "198.51.100.2/24")
        t.attach(srv, t.lan("lan3"), "eth3")  # no address: nothing to name the server by
        r = t.run(srv, [CLI, "run", "--config", str(etc)], check=False, timeout=30)
        assert r.returncode == 1
        assert "D099 cannot run" in r.stderr and says in r.stderr, r.stderr
