"""Device A's disk fills up under load: A stops serving, B serves, nothing un-durable
was ACKed; the disk is freed: A comes back, syncs and takes the role back.

    lan bridge ─┬─ deviceA  prio 120, node/state_dir on a 32 MB loop-mounted ext4
                │           ══ sync veth ══
                ├─ deviceB  prio 100
                └─ load     lab.dhcpload plays a relay (198.18/16): new clients, through VIP

The file system is filled with fallocate (as a runaway log would) under load.
A's next journal write fails (ENOSPC): the batch's replies are withheld, A goes standby,
tells B over the sync link (NOTICE STORE_FAILED) and advertises VRRP priority 1; B takes
over at once. When the fill file is removed, A's housekeeping probe succeeds, A rewrites
its store, reconnects, catches up from B and preempts, and serves again. Every ACK a
client got is on B's store and on A's. Real daemons in namespaces; `Topology` unmounts
the file system and removes its image even when the test fails.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import REPO
from appliance.testing.netns import Topology, wait_for
from lab.hapair import LOAD_RELAY, VIP, HaPair

pytestmark = [pytest.mark.netns, pytest.mark.slow]

START_TIMEOUT = 90


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root: network namespaces and a loop mount")
        pytest.skip("needs root: network namespaces and a loop mount")


def fill(fs: Path) -> list[Path]:
    """Allocate every free block of the file system at `fs` (posix_fallocate, largest
    pieces first); returns the files made."""
    files: list[Path] = []
    st = os.statvfs(fs)
    size = st.f_bavail * st.f_frsize
    while size >= st.f_frsize:
        p = fs / f"fill{len(files)}"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
            files.append(p)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            os.unlink(p)
            size //= 2
        finally:
            os.close(fd)
    return files


def _load(ha: HaPair, out: Path, *args: object) -> subprocess.Popen[bytes]:
    """lab.dhcpload from the load namespace through the VIP, in the background: new
    clients only (a DORA each, no renewal that could re-create a lost binding), every
    ACK written to `out` when it ends."""
    log = open(out.with_suffix(".log"), "ab")
    return ha.t.popen(ha.load_ns, [sys.executable, "-m", "lab.dhcpload", "--relay",
                                   LOAD_RELAY, "--server", VIP, "--out", str(out),
                                   *map(str, args)],
                      stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))


def _logged_at(log: str, marker: str) -> float:
    """The wall-clock time of the first log line containing `marker` (asctime, ms)."""
    line = next(x for x in log.splitlines() if marker in x)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _takeover_ms(ha: HaPair) -> float:
    """A's store failure (D060) to B's transition to master, in ms."""
    return (ha.b.transition()["time"] - _logged_at(ha.a.log_text(), "D060")) * 1000


def _acks(p: subprocess.Popen[bytes], out: Path) -> tuple[dict[str, str], dict]:
    assert p.wait(120) == 0, out.with_suffix(".log").read_text()
    res = json.loads(out.read_text())
    return res["acks"], res["summary"]


def test_disk_full_hands_over_then_comes_back(tmp_path: Path):
    with Topology("df") as t:
        ha = HaPair(t, tmp_path, advert_ms=100)
        fs = t.loopfs(ha.a.state_dir, size_mb=32)
        ha.start(START_TIMEOUT)
        first = tmp_path / "load1.json"
        load = _load(ha, first, "--clients", 5000, "--rate", 200, "--duration", 10,
                     "--window", 64, "--timeout", 0.3, "--retries", 8)
        ha.a.wait(lambda: ha.a.stat("ack") >= 100, "100 ACKs from A", 30)
        acked_by_a = ha.a.stat("ack")
        t_fill = time.monotonic()
        filler = fill(fs)
        # A's next journal write fails: it stops serving and hands over at once.
        ha.a.wait(lambda: ha.a.value("store/state") == "failed", "store failed", 30)
        ha.a.wait(lambda: ha.a.is_("standby"), "standby", 5)
        ha.b.wait(lambda: ha.b.is_("active", "master"), "B active", 5)
        t_failed = time.monotonic()
        assert ha.a.value("vrrp/priority") == "1"  # B's takeover sticks
        assert "No space left" in (ha.a.value("store/error") or "")
        log_a = ha.a.log_text()
        assert "D060 lease store failed" in log_a and "D066 sync link closed" in log_a
        assert "D046 group vrrp cannot be served here (the lease store cannot write): the " \
            "peer was told to take over now" in log_a
        # B took over on A's notice (or on its priority-1 advert, whichever came first).
        assert ha.b.transition().get("reason") in ("peer_down", "preempt")
        # The notice is logged by B either way (D049 taking over, or D047 already
        # master): when the advert won, the notice's line follows it by a moment.
        ha.b.wait(lambda: "the peer hands group vrrp over: the lease store cannot write"
                  in ha.b.log_text(), "B logs A's hand-over notice", 5)
        took_ms = _takeover_ms(ha)
        ha.b.wait(lambda: ha.b.stat("ack") >= 200, "B serves: 200 ACKs", 30)
        withheld = ha.a.wait(lambda: ha.a.stat("dropped_store_failed"), "withheld", 5)
        acked, summary = _acks(load, first)
        # A client whose DORA spans the switch may be NAKed in SELECTING (A's OFFER was in
        # A's memory only, and B offered that address to another client): a real client
        # starts over; this load counts it and stops. Nobody ACKed is ever NAKed.
        assert len(acked) >= 1000, summary
        # Still full: A keeps probing, stays standby and serves nobody.
        assert ha.a.value("store/state") == "failed" and ha.a.is_("standby")
        # Every ACK a client got is durable on B (DORA only: nothing could re-create a
        # binding that was lost), also the ones A sent before its disk filled.
        on_b = ha.b.bindings()
        lost = {m: ip for m, ip in acked.items() if on_b.get(m) != ip}
        assert not lost, f"{len(lost)} ACKed leases not on B, e.g. {list(lost.items())[:5]}"

        for p in filler:
            p.unlink()
        ha.a.wait(lambda: ha.a.value("store/state") == "ok", "store ok again", 30)
        ha.steady(ha.a, START_TIMEOUT)  # synced from B, then preempted
        assert ha.a.transition().get("reason") == "preempt", ha.a.transition()
        back_s = ha.a.transition()["time"] - _logged_at(ha.a.log_text(), "D061")
        run = ha.a.log_text()
        recovered = run.find("D061 lease store writes again")
        synced = run.find("D040 sync connected", recovered)
        preempt = run.find("-> master (preempt)", synced)
        assert 0 <= recovered < synced < preempt, "A preempted before it was in sync"
        assert ha.a.value("vrrp/priority") == "120"
        # A serves again.
        before = ha.a.stat("ack")
        second = tmp_path / "load2.json"
        more, summary = _acks(_load(ha, second, "--clients", 500, "--seed", 9), second)
        assert len(more) == 500 and summary["naks"] == 0, summary
        ha.a.wait(lambda: ha.a.stat("ack") >= before + 500, "A's 500 ACKs", 10)
        # Every ACK of both runs on both stores; no address bound twice on either.
        on_a, on_b = ha.a.bindings(), ha.b.bindings()
        for name, on in (("A", on_a), ("B", on_b)):
            lost = {m: ip for m, ip in {**acked, **more}.items() if on.get(m) != ip}
            assert not lost, f"{len(lost)} ACKed leases missing on {name}: " \
                f"{list(lost.items())[:5]}"
        assert not set(more.values()) & set(acked.values())
        print(f"disk full: A failed {(t_failed - t_fill) * 1000:.0f} ms after the fill "
              f"({acked_by_a} ACKs before, {withheld} replies withheld), B master "
              f"{took_ms:.1f} ms after A's D060 ({ha.b.stat('ack')} ACKs); A back "
              f"{back_s * 1000:.0f} ms after its store was back (D061 to preempt): "
              f"{ha.a.stat('store_recoveries')} recovery; load {summary}")
        ha.stop()


EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32): include/uapi/linux/ext4.h
EXT4_GOING_FLAGS_NOLOGFLUSH = 2


def test_failing_disk_hands_over_and_acks_nothing_undurable(tmp_path: Path):
    """The disk starts failing (the kernel's ext4 shutdown: every write and fdatasync
    returns EIO from then on, as on a dying drive): A hands over and stays out."""
    with Topology("dio") as t:
        ha = HaPair(t, tmp_path, advert_ms=100)
        fs = t.loopfs(ha.a.state_dir, size_mb=32)
        ha.start(START_TIMEOUT)
        out = tmp_path / "load.json"
        load = _load(ha, out, "--clients", 3000, "--rate", 200, "--duration", 6,
                     "--window", 64, "--timeout", 0.3, "--retries", 8)
        ha.a.wait(lambda: ha.a.stat("ack") >= 100, "100 ACKs from A", 30)
        fd = os.open(fs, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)
        ha.a.wait(lambda: ha.a.value("store/state") == "failed", "store failed", 30)
        ha.b.wait(lambda: ha.b.is_("active", "master"), "B active", 5)
        assert ha.a.is_("standby") and ha.a.value("vrrp/priority") == "1"
        assert "Input/output error" in (ha.a.value("store/error") or "")
        took_ms = _takeover_ms(ha)
        acked, summary = _acks(load, out)
        assert len(acked) >= 600, summary
        on_b = ha.b.bindings()
        lost = {m: ip for m, ip in acked.items() if on_b.get(m) != ip}
        assert not lost, f"{len(lost)} ACKed leases not on B, e.g. {list(lost.items())[:5]}"
        # The disk does not come back: A keeps probing and stays out of the way.
        ha.a.wait(lambda: "D063 lease store still failing" in ha.a.log_text(), "probe", 10)
        assert ha.a.value("store/state") == "failed" and ha.a.is_("standby", "backup")
        print(f"failing disk: B master {took_ms:.1f} ms after A's D060, "
              f"{ha.a.stat('dropped_store_failed')} replies withheld by A, B served "
              f"{ha.b.stat('ack')} ACKs; load {summary}")
        ha.stop()


def test_standalone_keeps_trying_and_acks_only_what_is_durable(tmp_path: Path):
    """No peer to hand over to: the device stays active, withholds every reply it cannot
    make durable, and serves again as soon as the disk takes writes."""
    from appliance.testing.daemonfiles import CLI, runtime_stat, runtime_value
    from appliance.testing.trees import standalone_tree
    from lab.loadnet import LOAD_POOL, server_and_relay

    etc = standalone_tree(tmp_path, extra=LOAD_POOL)
    run, state = tmp_path / "run", tmp_path / "state"
    with Topology("dsa") as t:
        srv, rel = server_and_relay(t)
        fs = t.loopfs(state, size_mb=32)
        with open(tmp_path / "daemon.log", "ab") as log:
            daemon = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log,
                             stderr=subprocess.STDOUT)

        def value(rel_path: str) -> str | None:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            return runtime_value(run, rel_path)

        wait_for(lambda: value("role") == "active", 30, what="daemon active")

        def load(name: str, *args: object) -> tuple[dict[str, str], dict]:
            out = tmp_path / f"{name}.json"
            r = t.run(rel, [sys.executable, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                            "--server", "192.0.2.2", "--out", str(out), *map(str, args)],
                      timeout=120, cwd=str(REPO))
            return json.loads(out.read_text())["acks"], json.loads(r.stdout.splitlines()[-1])

        before, _ = load("before", "--clients", 300)
        assert len(before) == 300
        filler = fill(fs)
        during, _ = load("during", "--clients", 200, "--seed", 5, "--timeout", 0.3,
                         "--retries", 2)
        wait_for(lambda: value("store/state") == "failed", 10, what="store failed")
        assert value("role") == "active"  # nobody to hand over to
        wait_for(lambda: runtime_stat(run, "dropped_store_failed") > 0, 10, what="withheld")
        assert len(during) < 200  # most were not answered: their leases could not be written
        for p in filler:
            p.unlink()
        wait_for(lambda: value("store/state") == "ok", 30, what="store ok again")
        after, summary = load("after", "--clients", 200, "--seed", 6)
        assert len(after) == 200, summary
        assert t.stop(daemon, timeout=30) == 0, (tmp_path / "daemon.log").read_text()
        store = {x["mac"]: x["ip"] for x in json.loads(subprocess.run(
            [CLI, "leases", "--json", "--config", str(etc)], capture_output=True, text=True,
            check=True).stdout)}
        acked = {**before, **during, **after}
        lost = {m: ip for m, ip in acked.items() if store.get(m) != ip}
        assert not lost, f"{len(lost)} ACKed leases not in the store: {list(lost.items())[:5]}"
        assert len(set(acked.values())) == len(acked)
        print(f"standalone disk full: {len(during)} of 200 ACKed while filling, "
              f"{runtime_stat(run, 'dropped_store_failed')} replies withheld")
