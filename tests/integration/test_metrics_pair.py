"""Metrics, alarms and the journal with real parts: a real Prometheus (Debian package
`prometheus`) scraping both devices of a pair through a failover, a real
systemd-journald taking both daemons' logs, real DHCP clients filling and emptying a
small pool until its alarm is raised and cleared.

    lan bridge ─┬─ a     eth1 192.0.2.2  metrics 0.0.0.0:9467 ═ sync ═ b  eth1 192.0.2.3
                ├─ prom  eth0 192.0.2.9  prometheus, scrape_interval 1s, our rule files
                └─ load  (lab.hapair)

systemd-journald runs in a private mount namespace of its own (a tmpfs over /run/systemd
with a directory of this test bound at /run/systemd/journal, another at /run/log), and
each daemon in one that binds the same directory, so `journalctl -D` reads what they
logged, with the fields they sent. Nothing of the host's /run is changed.

What a user checks: in Prometheus, both targets up, `dhcp_hotbackup_active` moving from
A to B when A is killed and back when it returns, B's takeover counter risen by one
with cause peer_down, every query of the Grafana dashboard and of the rule files
answered; in the journal, the takeover found by `DHCP_HOTBACKUP_ID=M020` and by its
MESSAGE_ID; for the pool, the alarm in the log, the runtime tree, `status` and the
endpoint, raised by the third client and cleared when two release.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import lab.daemon
import lab.hapair
from appliance.metrics.journal import message_id
from appliance.testing.daemonfiles import CLI
from appliance.testing.netns import Netns, Topology, inside, wait_for
from appliance.testing.require import missing, require_root, require_tools
from appliance.testing.trees import standalone_tree
from lab.clients import Dhclient, Udhcpc
from lab.hapair import HaPair
from tests.unit.test_metrics_dashboard import RULES, dashboard_queries

REPO = Path(__file__).resolve().parents[2]
PORT = 9467
PROM_IP = "192.0.2.9"
JOURNALD = "/lib/systemd/systemd-journald"

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def need(*tools: str) -> None:
    """Root and the tools, or skip; with CI=true a missing one fails (require.py)."""
    require_root()
    require_tools(*(t for t in tools if not t.startswith("/")))
    for path in (t for t in tools if t.startswith("/")):
        if not Path(path).exists():
            missing(f"{path} not installed")


# -- Prometheus ----------------------------------------------------------------------------
class Prometheus:
    """prometheus in namespace `ns`, scraping `targets` every second, with our rule files;
    its HTTP API on 127.0.0.1:9090 inside the namespace."""

    def __init__(self, t: Topology, ns: Netns, work: Path, targets: list[str]) -> None:
        self.t, self.ns, self.work = t, ns, work
        work.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no indentation to get wrong.
        (work / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in RULES],
            "scrape_configs": [{"job_name": "dhcp-hotbackup", "static_configs": [
                {"targets": targets, "labels": {"pair": "test"}}]}],
        }, indent=1))
        self.log = work / "prometheus.log"
        with open(self.log, "ab") as log:
            self.proc = t.popen(ns, [
                "prometheus", f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}", "--web.listen-address=127.0.0.1:9090",
                "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 60, 0.2, what="prometheus ready")

    def _get(self, path: str, **params: str) -> bytes:
        url = f"http://127.0.0.1:9090{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with inside(self.ns), urllib.request.urlopen(url, timeout=10) as r:
            return r.read()

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
        try:
            self._get("/-/ready")
            return True
        except OSError:
            return False

    def query(self, expr: str) -> list[dict]:
        """An instant query: the result vector (raises on a PromQL error)."""
        try:
            r = json.loads(self._get("/api/v1/query", query=expr))
        except urllib.error.HTTPError as e:  # 400: a PromQL error, said in the body
            raise AssertionError(f"{expr}: {e.read().decode()}") from None
        assert r["status"] == "success", (expr, r)
        return r["data"]["result"]

    def values(self, expr: str, label: str = "instance") -> dict[str, float]:
        return {x["metric"].get(label, ""): float(x["value"][1]) for x in self.query(expr)}

    def wait(self, expr: str, pred, what: str, timeout: float = 60) -> dict[str, float]:
        last: dict[str, float] = {}

        def ok():  # type: ignore[no-untyped-def]
            nonlocal last
            last = self.values(expr)
            return pred(last)

        try:
            wait_for(ok, timeout, 0.25, what=what)
        except TimeoutError as e:
            raise AssertionError(f"{e}: {expr} = {last}") from None
        return last


# -- systemd-journald ----------------------------------------------------------------------
class Journald:
    """A real systemd-journald whose socket directory is `work/socket` (not the host's
    /run/systemd/journal) and whose journal files go to `work/log/journal`."""

    MOUNT = ("mount -t tmpfs -o size=1m,mode=0755 tmpfs /run/systemd && "
             "mkdir /run/systemd/journal && mount --bind \"$0\" /run/systemd/journal")

    def __init__(self, work: Path) -> None:
        self.sockdir, self.logdir = work / "socket", work / "log"
        self.sockdir.mkdir(parents=True)
        self.logdir.mkdir(parents=True)
        self.out = work / "journald.out"
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"{self.MOUNT} && mount --bind \"$1\" /run/log && exec {JOURNALD}",
                 str(self.sockdir), str(self.logdir)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: (self.sockdir / "socket").is_socket() or self.proc.poll() is not None,
                 20, what="journald socket")
        assert self.proc.poll() is None, f"journald exited:\n{self.out.read_text()}"

    def wrapper(self, path: Path, cli: str = CLI) -> str:
        """A command that runs `dhcp-hotbackup ...` as systemd would for our purpose:
        INVOCATION_ID set, the journal's socket at its usual path (in a mount namespace
        of the daemon's own), so the daemon logs to this journald."""
        path.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            export INVOCATION_ID=0123456789abcdef0123456789abcdef
            exec unshare --mount --propagation private sh -c \\
              '{self.MOUNT} && shift && exec "$@"' {self.sockdir} - {cli} "$@"
            """))
        path.chmod(0o755)
        return str(path)

    def entries(self, *matches: str) -> list[dict]:
        r = subprocess.run(["journalctl", "-D", str(self.logdir / "journal"), "-o", "json",
                            "--no-pager", *matches], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode in (0, 1), r.stderr  # 1: no entries
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    def text(self, pid: int) -> str:
        return "\n".join(e.get("MESSAGE", "") for e in self.entries(f"_PID={pid}"))

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def fetch(ns: Netns, url: str, accept: str = "") -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with inside(ns), urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


# -- the pair under Prometheus and the journal ----------------------------------------------
def test_prometheus_and_the_journal_see_a_failover(tmp_path: Path, monkeypatch):
    need("prometheus", "journalctl", "unshare", JOURNALD)
    jd = Journald(tmp_path / "journald")
    try:
        # Both daemons (and their restarts) log to this journald.
        # (lab.daemon starts them; lab.hapair runs the other commands.)
        wrapper = jd.wrapper(tmp_path / "dhcp-hotbackup")
        for module in (lab.daemon, lab.hapair):
            monkeypatch.setattr(module, "CLI", wrapper)
        with Topology("mx") as t:
            ha = HaPair(t, tmp_path / "pair", values={"metrics/listen": f"0.0.0.0:{PORT}"})
            a_inst, b_inst = f"{lab.hapair.A_IP}:{PORT}", f"{lab.hapair.B_IP}:{PORT}"
            prom_ns = t.host("prom")
            t.attach(prom_ns, ha.lan, "eth0", f"{PROM_IP}/24")
            ha.start()
            try:
                _failover(t, ha, jd, prom_ns, tmp_path, a_inst, b_inst)
            except AssertionError as e:
                raise AssertionError(f"{e}\n==== A\n{jd.text(ha.a.proc.pid)[-3000:]}\n"  # type: ignore[union-attr]
                                     f"==== B\n{jd.text(ha.b.proc.pid)[-3000:]}") from None
            ha.stop()
    finally:
        jd.close()


def _failover(t: Topology, ha: HaPair, jd: Journald, prom_ns: Netns, tmp: Path,
              a_inst: str, b_inst: str) -> None:
    # A client with a lease, so the DHCP panels have something to show.
    ns, _mac = ha.client("c1")
    cl = Udhcpc(t, ns, "eth0", tmp / "c1").start()
    cl.wait_event("bound")

    prom = Prometheus(t, prom_ns, tmp / "prom", [a_inst, b_inst])
    active = 'dhcp_hotbackup_active{interface="eth1"}'
    prom.wait('up{job="dhcp-hotbackup"}', lambda v: v == {a_inst: 1, b_inst: 1},
              "both targets up")
    prom.wait(active, lambda v: v == {a_inst: 1, b_inst: 0}, "A active, B standby")
    taken = f'dhcp_hotbackup_takeovers_total{{instance="{b_inst}",cause="peer_down"}}'
    before = prom.values(taken).get(b_inst)
    assert before is not None, "B exports its takeover counter before any takeover"

    # kill -9 of A: B takes over on the sync link's evidence.
    ha.a.kill9()
    ha.b.wait(lambda: ha.b.is_("active", "master"), "active after A's kill")
    prom.wait(f'dhcp_hotbackup_active{{instance="{b_inst}",interface="eth1"}}',
              lambda v: v == {b_inst: 1}, "B's role metric flipped to active")
    prom.wait(f'up{{instance="{a_inst}"}}', lambda v: v == {a_inst: 0}, "A's target down")
    prom.wait(taken, lambda v: v.get(b_inst) == before + 1, "B's takeover counter +1")
    dur = prom.values(f'dhcp_hotbackup_last_takeover_duration_seconds{{instance="{b_inst}"}}')
    assert 0 < dur[b_inst] < 1.0, dur  # evidence to serving: milliseconds, not VRRP's 360
    prom.wait(f'dhcp_hotbackup_alarm_active{{alarm="takeover",subject="vrrp",'
              f'instance="{b_inst}"}}', lambda v: v == {b_inst: 1}, "B's takeover alarm")
    prom.wait('ALERTS{alertname="DhcpHotbackupAlarm",alarm="takeover"}',
              lambda v: bool(v), "the alerting rule sees the alarm")

    # A comes back, syncs, takes the group back: both up, the role back on A.
    ha.a.start()
    ha.steady(ha.a)
    prom.wait('up{job="dhcp-hotbackup"}', lambda v: v == {a_inst: 1, b_inst: 1},
              "both targets up again")
    prom.wait(active, lambda v: v == {a_inst: 1, b_inst: 0}, "A active again")
    flips = prom.values(f'changes({active}[5m])')
    assert flips.get(b_inst, 0) >= 2, f"B's role went 0 -> 1 -> 0: {flips}"

    # Every query of the dashboard and the rule files runs; the main panels have data.
    for where, q in dashboard_queries():
        q = (q.replace("$__rate_interval", "5m").replace("$__range", "5m")
             .replace("$job", ".*"))
        # Grafana's label_values(metric, label) lists that label's values: as PromQL,
        # `group by (label) (metric)`.
        q = re.sub(r"^label_values\((.+), *(\w+)\)$", r"group by (\2) (\1)", q)
        prom.query(q)  # a PromQL error fails here, naming the query
        if where.startswith(("panel 'Role per interface'", "panel 'Pool use'",
                             "panel 'VRRP state per group'", "panel 'Takeovers'")):
            assert prom.query(q), f"{where}: no data: {q}"
    # The client renews with A (whose counters restarted): kea-exporter's series, made by
    # the recording rules, count that ACK.
    cl.renew()
    cl.wait_event("renew")
    prom.wait('kea_dhcp4_packets_sent_total{operation="ack"}',
              lambda v: v.get(a_inst, 0) >= 1, "kea-compat: A's ACK counted")

    # The journal: every takeover by its ID field and by its MESSAGE_ID.
    b_pid = ha.b.proc.pid  # type: ignore[union-attr]
    by_id = jd.entries("DHCP_HOTBACKUP_ID=M020", f"_PID={b_pid}")
    # (B may have been master for a moment at start-up too: master_down, no master yet.)
    ours = [e for e in by_id if "(peer_down" in e["MESSAGE"]]
    assert len(ours) == 1, [e["MESSAGE"] for e in by_id]
    e = ours[0]
    assert "took over group vrrp (peer_down: the peer's daemon is gone" in e["MESSAGE"], \
        e["MESSAGE"]
    assert e["MESSAGE_ID"] == message_id("M020") and e["PRIORITY"] == "4"
    assert e["SYSLOG_IDENTIFIER"] == "dhcp-hotbackup"
    by_mid = jd.entries(f"MESSAGE_ID={message_id('M020')}", f"_PID={b_pid}")
    assert [x["MESSAGE"] for x in by_mid] == [x["MESSAGE"] for x in by_id]
    assert jd.entries("DHCP_HOTBACKUP_ID=D049", f"_PID={b_pid}"), "D049 by field"
    # When A took the group back, B's alarm cleared (M021).
    wait_for(lambda: jd.entries("DHCP_HOTBACKUP_ID=M021", f"_PID={b_pid}"), 20,
             what="M021 in the journal")
    cl.stop()


# -- the pool-use alarm with real clients ----------------------------------------------------
def test_pool_use_alarm_is_raised_and_cleared_by_real_clients(tmp_path: Path):
    """A pool of four addresses, alarm at 75 %, cleared below 50 %: three clients
    (udhcpc, udhcpc, dhclient) raise it, two releases clear it."""
    need("udhcpc", "dhclient", "promtool")
    with Topology("mp") as t:
        lan, srv = t.lan(), t.host("srv")
        t.attach(srv, lan, "eth1", "192.0.2.2/24")
        root = tmp_path / "srv"
        etc = standalone_tree(root, ranges="192.0.2.100-192.0.2.103", extra={
            "pools/lan/alarm_percent": "75", "pools/lan/alarm_clear_percent": "50",
            "metrics/listen": f"192.0.2.2:{PORT}"})
        run_dir, log = root / "run", root / "daemon.log"
        with open(log, "ab") as f:
            proc = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=f,
                           stderr=subprocess.STDOUT)

        def file(rel: str) -> str | None:
            try:
                return (run_dir / rel).read_text().strip()
            except OSError:
                return None

        def metric(name: str) -> str:
            for line in fetch(srv, f"http://192.0.2.2:{PORT}/metrics").splitlines():
                if line.startswith(name + " "):
                    return line.split()[-1]
            return ""

        def status() -> str:
            return subprocess.run([CLI, "status", "--config", str(etc)], capture_output=True,
                                  text=True, timeout=60).stdout

        def waiting(pred, what: str):  # type: ignore[no-untyped-def]
            try:
                return wait_for(pred, 30, 0.1, what=what)
            except TimeoutError as e:
                raise AssertionError(f"{e}\n{log.read_text()[-3000:]}") from None

        alarm = 'dhcp_hotbackup_alarm_active{alarm="pool_use",subject="lan"}'
        waiting(lambda: file("alarms/pool_use/lan") == "" and file("role") == "active",
                "the daemon serving, its alarm known and clear")
        waiting(lambda: metric(alarm) == "0.0", "the alarm's series at 0")

        clients = []
        for i, kind in enumerate((Udhcpc, Udhcpc, Dhclient)):
            ns = t.host(f"c{i}")
            t.attach(ns, lan, "eth0", mac=f"02:7e:00:00:00:{i + 1:02x}")
            c = kind(t, ns, "eth0", tmp_path / f"c{i}").start()
            c.wait_event("bound" if kind is Udhcpc else "BOUND")
            clients.append(c)
            if i < 2:  # 1 and 2 of 4: under the threshold
                assert file("alarms/pool_use/lan") == "", f"raised at {i + 1} of 4"

        # Three of four: 75 %.
        raised = waiting(lambda: file("alarms/pool_use/lan"), "alarms/pool_use/lan raised")
        assert "pool lan 75% used (3 of 4 addresses)" in raised, raised
        waiting(lambda: metric(alarm) == "1.0", "dhcp_hotbackup_alarm_active 1")
        assert metric('dhcp_hotbackup_pool_use_ratio{pool="lan"}') == "0.75"
        assert "M010 alarm pool_use/lan raised: pool lan 75% used" in log.read_text()
        assert "ALARM     pool_use/lan: pool lan 75% used" in status()

        # promtool lints what the running daemon serves.
        r = subprocess.run(["promtool", "check", "metrics"], capture_output=True, timeout=60,
                           input=fetch(srv, f"http://192.0.2.2:{PORT}/metrics").encode())
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr

        # Two release (a DHCPRELEASE each): 1 of 4, below 50 %.
        clients[2].release()
        clients[0].release()
        waiting(lambda: file("alarms/pool_use/lan") == "", "alarms/pool_use/lan cleared")
        waiting(lambda: metric(alarm) == "0.0", "dhcp_hotbackup_alarm_active 0")
        assert "M011 alarm pool_use/lan cleared: pool lan 25% used" in log.read_text()
        assert metric('dhcp_hotbackup_alarms_raised_total{alarm="pool_use",subject="lan"}') \
            == "1.0"
        assert "ALARM" not in status()

        # metrics/listen applies on reload: the endpoint moves, then stops.
        def reload(value: str) -> str:
            (etc / "metrics" / "listen").write_text(value + "\n")
            r = subprocess.run([CLI, "reload", "--config", str(etc)], capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout

        def answers(port: int) -> bool:
            try:
                return "dhcp_hotbackup_active" in fetch(srv, f"http://192.0.2.2:{port}/metrics")
            except OSError:
                return False

        assert "changed: metrics/listen" in reload(f"192.0.2.2:{PORT + 1}")
        waiting(lambda: answers(PORT + 1), "the endpoint on the new port")
        assert not answers(PORT)
        assert "changed: metrics/listen" in reload("")
        assert not answers(PORT + 1)
        for c in clients:
            c.stop()
        rc = t.stop(proc, timeout=15)
        assert rc == 0, f"exit status {rc}\n{log.read_text()[-3000:]}"
