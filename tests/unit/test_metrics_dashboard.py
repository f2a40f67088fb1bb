"""The Grafana dashboard and the Prometheus rules in packaging/grafana/: valid files whose
queries use only metrics we export (a renamed metric would leave a panel empty), and the
docs list every metric. tests/integration/test_metrics_pair.py runs the queries for real."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from appliance.metrics.families import METRICS, sample_names
from appliance.testing.require import require_tools

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "packaging" / "grafana"
DASHBOARD = GRAFANA / "dhcp-hotbackup.json"
RULES = sorted(GRAFANA.glob("*.rules.yml"))
NAME = re.compile(r"\bdhcp_hotbackup_[a-z0-9_]+")


def promtool() -> str:
    require_tools("promtool")  # Debian package prometheus (scripts/setup.sh)
    return "promtool"


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and variable query."""
    d = json.loads(DASHBOARD.read_text())
    out = []

    def panels(ps):  # type: ignore[no-untyped-def]
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(d["panels"]):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for a in d.get("annotations", {}).get("list", []):
        if "expr" in a:
            out.append((f"annotation {a['name']!r}", a["expr"]))
    for v in d["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            out.append((f"variable {v['name']}", q["query"]))
    return out


def test_dashboard_is_valid_grafana_json():
    d = json.loads(DASHBOARD.read_text())
    assert d["title"] and d["uid"] and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    assert {v["name"] for v in d["templating"]["list"]} == {"datasource", "job"}


def test_dashboard_covers_what_an_operator_of_a_pair_watches():
    used = {n for _w, q in dashboard_queries() for n in NAME.findall(q)}
    for name in ("dhcp_hotbackup_active", "dhcp_hotbackup_dhcp_packets_sent_total",
                 "dhcp_hotbackup_pool_use_ratio", "dhcp_hotbackup_sync_lag_updates",
                 "dhcp_hotbackup_sync_replication_delay_seconds_bucket",
                 "dhcp_hotbackup_takeovers_total", "dhcp_hotbackup_alarm_active"):
        assert name in used, name


def test_every_query_uses_only_exported_metrics():
    known = sample_names()
    queries = dashboard_queries() + [(f"{r.name} {i}", e) for r in RULES
                                     for i, e in enumerate(rule_exprs(r))]
    bad = [(where, n) for where, q in queries for n in NAME.findall(q) if n not in known]
    assert not bad, bad


def rule_exprs(path: Path) -> list[str]:
    # The files are plain: `expr:` on one line or folded (`>`) over the indented lines
    # below it (no YAML library needed: PyYAML is not a dependency).
    out, cur, indent = [], None, 0
    for line in path.read_text().splitlines():
        m = re.match(r"^(\s*)(?:- )?expr: ?(.*)$", line)
        if m:
            if cur is not None:
                out.append(cur)
            indent = len(m.group(1))
            cur = "" if m.group(2).strip() == ">" else m.group(2)
            continue
        if cur is not None:
            if line.strip() and len(line) - len(line.lstrip()) > indent and \
                    not re.match(r"^\s*[a-z_]+:", line):
                cur += " " + line.strip()
            else:
                out.append(cur)
                cur = None
    if cur is not None:
        out.append(cur)
    return [e.strip() for e in out]


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_rules_pass_promtool(path):
    r = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    assert rule_exprs(path)


def test_docs_list_every_metric_and_only_those():
    doc = (REPO / "docs" / "metrics.md").read_text()
    rows = set(re.findall(r"^\| `(dhcp_hotbackup_[a-z0-9_]+)` \|", doc, re.M))
    assert rows == {m.name for m in METRICS}, (rows ^ {m.name for m in METRICS})
    known = sample_names()
    for n in NAME.findall(doc):
        assert n in known or any(n == m.name for m in METRICS), n
    for m in METRICS:  # the labels in the docs' table are the metric's labels
        row = re.search(rf"^\| `{m.name}` \| (\w+) \|\s*([a-z_, ]*?)\s*\|", doc, re.M)
        assert row, m.name
        assert row.group(1) == m.kind, m.name
        assert tuple(x.strip() for x in row.group(2).split(",") if x.strip()) == m.labels, \
            m.name
