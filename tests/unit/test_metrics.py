"""The metric families made from a snapshot, their text, and the endpoint that serves it.

What a Prometheus user checks: the names and labels a dashboard queries are there with
the values the daemon holds; the text parses (prometheus_client's own parsers, and
`promtool check metrics`, Prometheus's linter); GET /metrics answers over a real socket,
in both formats Prometheus asks for.
"""

from __future__ import annotations

import ast
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from appliance.metrics import families as fm
from appliance.metrics.exporter import Exporter, render
from appliance.metrics.histogram import Buckets, DelayLog
from appliance.metrics.snapshot import (
    AlarmState,
    Group,
    Interface,
    Pool,
    Snapshot,
    Sync,
    Takeover,
)
from appliance.testing.require import require_tools

REPO = Path(__file__).resolve().parents[2]


def snapshot(**kw) -> Snapshot:
    buckets = Buckets((0.001, 0.01))
    for v in (0.0004, 0.002, 0.003, 0.5):
        buckets.observe(v)
    base = dict(
        node="deviceA", time=1_700_000_100.0, started=1_700_000_000.0, version="1.2.3",
        interfaces=(Interface("eth1", True, "vrrp", "native",
                              {"discover": 10, "request": 9, "offer": 10, "ack": 8, "nak": 1,
                               "dropped_standby": 4, "dropped_pool_exhausted": 2,
                               "nak_no_binding": 1, "send_errors": 0,
                               "option82_unrelayed": 3},
                              {"seen": 30, "passed": 20, "dropped_standby": 7,
                               "dropped_ratelimit": 2, "malformed": 1}),),
        groups=(Group("vrrp", 10, "master", 110, 120, "192.0.2.2",
                      {"tx_adverts": 50, "became_master": 1}, {"rx_bad_ttl": 3}),),
        pools=(Pool("lan", 100, {"bound": 80, "offered": 5, "declined": 2, "released": 9},
                    90, 80),),
        sync=Sync("connected", True, 3, 41, ("pools/lan/range",), -0.25, False,
                  buckets.snapshot(), {"frames_sent": 7, "lost_reset": 1},
                  {"refused_bad_mac": 2}),
        takeovers={("vrrp", "peer_down"): 2},
        last_takeover={"vrrp": Takeover("vrrp", "peer_down", 1_700_000_050.0, 0.004, "x")},
        alarms=(AlarmState("pool_use", "lan", False, 1.0),
                AlarmState("takeover", "vrrp", True, 2.0, "took over", 2)),
    )
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


def samples(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for f in fm.families(snap):
        for name, labels, value in f.samples:
            out[(name, tuple(sorted(labels)))] = value
    return out


def value(s, name: str, **labels: str) -> float:
    return s[(fm.PREFIX + name, tuple(sorted(labels.items())))]


# -- the families -------------------------------------------------------------------------
def test_a_snapshot_becomes_the_series_a_dashboard_reads():
    s = samples(snapshot())
    assert value(s, "active", interface="eth1") == 1
    assert value(s, "dhcp_packets_received_total", interface="eth1", type="discover") == 10
    assert value(s, "dhcp_packets_sent_total", interface="eth1", type="ack") == 8
    assert value(s, "dhcp_packets_dropped_total", interface="eth1", reason="standby") == 4
    assert value(s, "dhcp_packets_dropped_total", interface="eth1",
                 reason="pool_exhausted") == 2
    assert value(s, "dhcp_naks_total", interface="eth1", reason="no_binding") == 1
    assert value(s, "dhcp_notes_total", interface="eth1", note="option82_unrelayed") == 3
    assert value(s, "xdp_packets_seen_total", interface="eth1") == 30
    assert value(s, "xdp_packets_passed_total", interface="eth1") == 20
    assert value(s, "xdp_packets_dropped_total", interface="eth1", reason="ratelimit") == 2
    assert value(s, "xdp_packets_dropped_total", interface="eth1", reason="malformed") == 1
    # Leases by pool and state, every state present; use counts offered+bound+declined.
    assert value(s, "leases", pool="lan", state="expired") == 0
    assert value(s, "pool_addresses", pool="lan") == 100
    assert value(s, "pool_addresses_used", pool="lan") == 87
    assert value(s, "pool_use_ratio", pool="lan") == pytest.approx(0.87)
    assert value(s, "pool_alarm_threshold_ratio", pool="lan", level="clear") == 0.8
    # VRRP: one series per state, 1 on the current one.
    assert [value(s, "vrrp_state", group="vrrp", state=x)
            for x in ("initialize", "backup", "master")] == [0, 0, 1]
    assert value(s, "vrrp_priority", group="vrrp") == 110
    assert value(s, "vrrp_priority_configured", group="vrrp") == 120
    assert value(s, "vrrp_info", group="vrrp", vrid="10", master="192.0.2.2") == 1
    assert value(s, "vrrp_adverts_rejected_total", group="vrrp", reason="bad_ttl") == 3
    assert value(s, "vrrp_events_total", group="vrrp", event="tx_adverts") == 50
    # Every cause from 0, so that increase() sees the first takeover of each.
    assert value(s, "takeovers_total", group="vrrp", cause="peer_down") == 2
    assert value(s, "takeovers_total", group="vrrp", cause="master_down") == 0
    assert value(s, "last_takeover_duration_seconds", group="vrrp") == 0.004
    assert value(s, "sync_peer_state", state="connected") == 1
    assert value(s, "sync_peer_state", state="disconnected") == 0
    assert value(s, "sync_lag_updates") == 3
    assert value(s, "sync_config_drift_settings") == 1
    assert value(s, "sync_clock_skew_seconds") == -0.25
    assert value(s, "sync_refused_total", reason="bad_mac") == 2
    assert value(s, "sync_events_total", event="lost_reset") == 1
    assert value(s, "alarm_active", alarm="takeover", subject="vrrp") == 1
    assert value(s, "alarms_raised_total", alarm="takeover", subject="vrrp") == 2


def test_the_replication_delay_is_a_cumulative_histogram():
    s = samples(snapshot())
    b = "sync_replication_delay_seconds"
    assert value(s, b + "_bucket", le="0.001") == 1
    assert value(s, b + "_bucket", le="0.01") == 3
    assert value(s, b + "_bucket", le="+Inf") == 4
    assert value(s, b + "_count") == 4
    assert value(s, b + "_sum") == pytest.approx(0.5054)


def test_a_standalone_device_has_no_vrrp_or_sync_series():
    snap = snapshot(groups=(), sync=None, takeovers={}, last_takeover={}, alarms=())
    names = {n for (n, _l) in samples(snap)}
    assert not {n for n in names if n.startswith(("dhcp_hotbackup_vrrp", "dhcp_hotbackup_sync",
                                                   "dhcp_hotbackup_takeover"))}
    assert fm.PREFIX + "active" in names


def test_many_interfaces_count_the_devices_packets_once():
    """200 VLANs: the server's by-type counters are the device's, exported once with no
    interface label (a sum over interfaces must not count them 200 times); each
    interface has its own requests, replies and standby drops."""
    ifs = tuple(Interface(f"eth1.{v}", v % 2 == 0, "ga" if v % 2 == 0 else "gb", "native",
                          counts={"received": v, "sent": v - 1, "dropped_standby": 1})
                for v in range(100, 300))
    snap = snapshot(interfaces=ifs, device_dhcp={"ack": 8, "discover": 10},
                    device_xdp={"seen": 30})
    s = samples(snap)
    acks = [v for (n, labels), v in s.items()
            if n == fm.PREFIX + "dhcp_packets_sent_total" and ("type", "ack") in labels]
    assert acks == [8]
    assert value(s, "dhcp_packets_sent_total", interface="", type="ack") == 8
    assert value(s, "xdp_packets_seen_total", interface="") == 30
    assert value(s, "interface_requests_total", interface="eth1.250") == 250
    assert value(s, "interface_replies_total", interface="eth1.250") == 249
    assert sum(v for (n, _l), v in s.items()
               if n == fm.PREFIX + "interface_dropped_standby_total") == 200
    assert sum(v for (n, _l), v in s.items() if n == fm.PREFIX + "active") == 100


def test_unknown_skew_and_empty_pool_make_no_bogus_series():
    snap = snapshot(pools=(Pool("empty", 0, {}),),
                    sync=Sync("disconnected", False, 0, 0))
    names = {n for (n, _l) in samples(snap)}
    assert fm.PREFIX + "sync_clock_skew_seconds" not in names
    assert fm.PREFIX + "pool_use_ratio" not in names  # no division by a zero size


def test_catalogue_follows_prometheus_naming():
    seen = set()
    for m in fm.METRICS:
        assert re.fullmatch(r"dhcp_hotbackup_[a-z0-9_]+", m.name), m.name
        assert m.name not in seen
        seen.add(m.name)
        assert m.kind in ("counter", "gauge", "histogram")
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert m.help and "\n" not in m.help
        for unit in ("_ms", "_milliseconds", "_percent"):  # base units only
            assert unit not in m.name, m.name


def test_every_sample_carries_exactly_its_metrics_labels():
    for f in fm.families(snapshot()):
        for name, labels, _v in f.samples:
            keys = tuple(k for k, _ in labels if not (name.endswith("_bucket") and k == "le"))
            assert keys == f.metric.labels, (name, labels)


# -- the text -------------------------------------------------------------------------------
def test_text_format_parses_back_to_the_same_values():
    body, ctype = render(snapshot())
    assert ctype.startswith("text/plain; version=0.0.4")
    got = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert got == samples(snapshot())


def test_openmetrics_when_the_scraper_asks_for_it():
    body, ctype = render(snapshot(), "application/openmetrics-text; version=1.0.0,"
                                     "text/plain;version=0.0.4;q=0.5")
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    fams = {f.name: f for f in om_parse(body.decode())}
    assert fams[fm.PREFIX + "takeovers"].type == "counter"
    assert fams[fm.PREFIX + "sync_replication_delay_seconds"].type == "histogram"


def promtool() -> str:
    require_tools("promtool")  # Debian package prometheus (scripts/setup.sh)
    return "promtool"


@pytest.mark.parametrize("shape", ["one interface", "several interfaces"])
def test_promtool_check_metrics_passes(shape):
    snap = snapshot() if shape == "one interface" else snapshot(
        interfaces=(Interface("eth1.100", True, "ga", counts={"received": 3, "sent": 3}),
                    Interface("eth1.200", False, "gb", counts={"dropped_standby": 2})),
        device_dhcp={"ack": 3, "dropped_standby": 2}, device_xdp={"seen": 5})
    r = subprocess.run([promtool(), "check", "metrics"], input=render(snap)[0],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        (r.stdout + r.stderr).decode()


# -- the endpoint ---------------------------------------------------------------------------
def get(url: str, accept: str = "") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def exporter():
    ex = Exporter("127.0.0.1:0")
    ex.start()
    assert ex.bound.wait(10), "the endpoint did not bind"
    yield ex
    ex.stop()


def test_endpoint_serves_the_last_snapshot(exporter):
    url = f"http://127.0.0.1:{exporter.port}"
    assert get(url + "/metrics")[0] == 503  # nothing published yet
    exporter.update(snapshot())
    code, ctype, body = get(url + "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    assert b'dhcp_hotbackup_active{interface="eth1"} 1.0' in body
    exporter.update(snapshot(interfaces=(Interface("eth1", False),)))
    assert b'dhcp_hotbackup_active{interface="eth1"} 0.0' in get(url + "/metrics")[2]
    code, ctype, body = get(url + "/metrics", "application/openmetrics-text; version=1.0.0")
    assert code == 200 and ctype.startswith("application/openmetrics-text")
    assert get(url + "/")[0] == 200
    assert get(url + "/nope")[0] == 404
    assert exporter.scrapes == 3


def test_endpoint_stops_and_frees_its_port():
    ex = Exporter("127.0.0.1:0")
    ex.start()
    assert ex.bound.wait(10)
    port = ex.port
    ex.stop()
    assert not ex._thread.is_alive()  # type: ignore[union-attr]
    again = Exporter(f"127.0.0.1:{port}")
    again.start()
    try:
        assert again.bound.wait(10), "the port was not freed"
    finally:
        again.stop()


def test_an_address_that_cannot_be_bound_is_retried_without_raising(caplog):
    ex = Exporter("192.0.2.250:9467")  # not an address of this host
    ex.start()
    try:
        from appliance.testing.netns import wait_for

        wait_for(lambda: "M002" in caplog.text, 10, what="M002 logged")
        assert not ex.bound.is_set()
    finally:
        ex.stop()
    assert not ex._thread.is_alive()  # type: ignore[union-attr]


def test_bodies_are_rendered_on_the_loop_and_a_stuck_loop_is_a_503(monkeypatch):
    """With the daemon's loop given, the scrape's thread asks the loop to render (no
    GIL fight with the packet path: exporter.py) and waits; a loop that does not answer
    (stuck: it serves no DHCP either) makes the scrape fail, so Prometheus's `up` says
    so, instead of serving an old snapshot."""
    import asyncio
    import threading

    from appliance.metrics import exporter as exp

    monkeypatch.setattr(exp, "RENDER_WAIT_S", 0.5)
    loop = asyncio.new_event_loop()
    rendered_on: list[str] = []
    real = exp.render
    monkeypatch.setattr(exp, "render", lambda *a: (
        rendered_on.append(threading.current_thread().name), real(*a))[1])
    t = threading.Thread(target=loop.run_forever, name="the-loop", daemon=True)
    t.start()
    ex = Exporter("127.0.0.1:0", loop)
    ex.start()
    try:
        assert ex.bound.wait(10)
        url = f"http://127.0.0.1:{ex.port}/metrics"
        ex.update(snapshot())
        assert get(url)[0] == 200 and get(url)[0] == 200
        assert rendered_on == ["the-loop"]  # once per snapshot and format, on the loop
        gate = threading.Event()
        loop.call_soon_threadsafe(gate.wait, 5)  # the loop is stuck in a callback
        ex.update(snapshot(node="deviceB"))
        code, _ctype, body = get(url)
        assert code == 503 and b"did not answer" in body
        gate.set()
        assert get(url)[0] == 200
    finally:
        ex.stop()
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


# -- the delay record -----------------------------------------------------------------------
def test_delay_log_keeps_the_last_values_and_counts_every_one():
    d = DelayLog(maxlen=3, bounds=(1.0,))
    d.extend([100.0, 2000.0])
    d.append(500.0)
    d.extend(x for x in [300.0, 400.0])  # a generator, as the daemon passes one
    assert list(d) == [500.0, 300.0, 400.0]
    h = d.buckets.snapshot()
    assert h.count == 5 and h.counts == (4,) and h.total == pytest.approx(3.3)


def test_bucket_bound_is_inclusive():
    b = Buckets((0.001, 0.002))
    b.observe(0.001)
    b.observe(0.0020001)
    assert b.snapshot().counts == (1, 1)


# -- the rules of the code ------------------------------------------------------------------
def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_metrics_package_imports_no_daemon_part():
    # The snapshot is the interface: the metrics never reach into the daemon's objects.
    for p in (REPO / "appliance" / "metrics").glob("*.py"):
        bad = {m for m in imports(p) if m.startswith("appliance.")
               and not m.startswith("appliance.metrics")}
        assert not bad, f"{p.name} imports {sorted(bad)}"
