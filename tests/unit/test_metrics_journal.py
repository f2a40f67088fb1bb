"""The journal handler's fields, without a journal (tests/integration/test_metrics_pair.py
runs a real systemd-journald): each line's stable ID as DHCP_HOTBACKUP_ID and a
MESSAGE_ID that stays the same forever (docs/metrics.md lists the important ones)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from appliance.metrics import journal

REPO = Path(__file__).resolve().parents[2]


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("dhcp-hotbackup", logging.WARNING, __file__, 1, msg, args, None)


@pytest.mark.parametrize("msg,args,ident", [
    ("D049 %s: taking over now", ("the peer's daemon is gone",), "D049"),
    ("%s %s", ("M020", "alarm takeover/vrrp raised: ..."), "M020"),  # the alarm lines
    ("SYNC040 clock skew %d ms", (1200,), "SYNC040"),
    ("VRRP_TRANSITION vrid %d -> %s", (10, "master"), "VRRP_TRANSITION"),
    ("%s repeated; further messages suppressed for %.0fs", ("D010", 60), "D010"),
])
def test_a_line_with_an_id_gets_both_fields(msg, args, ident):
    f = journal.fields(record(msg, *args))
    assert f == {"DHCP_HOTBACKUP_ID": ident, "MESSAGE_ID": journal.message_id(ident)}
    assert re.fullmatch(r"[0-9a-f]{32}", f["MESSAGE_ID"])


@pytest.mark.parametrize("msg", ["no id here", "D04 too short", "D0499 too long",
                                 "d049 lower case", "D049x glued to a word"])
def test_a_line_without_an_id_gets_none(msg):
    assert journal.fields(record(msg)) == {}


def test_message_ids_are_stable_and_distinct():
    # Saved journalctl queries depend on these: the docs print them, this pins them.
    doc = (REPO / "docs" / "metrics.md").read_text()
    listed = {i: m for m, i in re.findall(r"^\| `([0-9a-f]{32})` \| ([A-Z]+\d{3}) \|", doc,
                                          re.M)}
    assert {"M020", "D049", "D030", "M010", "M030"} <= set(listed), listed
    for ident, mid in listed.items():
        assert journal.message_id(ident) == mid, ident
    ids = [f"D{n:03d}" for n in range(100)] + [f"M{n:03d}" for n in range(100)]
    assert len({journal.message_id(i) for i in ids}) == len(ids)


def test_under_systemd_is_told_by_its_environment():
    assert journal.under_systemd({"INVOCATION_ID": "abc"})
    assert journal.under_systemd({"JOURNAL_STREAM": "8:1234"})
    assert not journal.under_systemd({"TERM": "xterm"})


def test_no_journal_socket_means_no_handler(tmp_path):
    assert journal.handler(str(tmp_path / "no-socket")) is None


def test_handler_sends_the_fields(tmp_path):
    # python3-systemd's handler with its sender replaced: what would reach the socket.
    path = tmp_path / "socket"
    path.touch()
    h = journal.handler(str(path))
    assert h is not None
    sent = []
    h.send = lambda *a, **kw: sent.append((a[0], kw))  # type: ignore[attr-defined]
    h.emit(record("D049 %s: taking over now", "evidence"))
    msg, kw = sent[0]
    assert msg == "D049 evidence: taking over now"
    assert kw["DHCP_HOTBACKUP_ID"] == "D049" and kw["MESSAGE_ID"] == journal.message_id("D049")
    assert kw["SYSLOG_IDENTIFIER"] == "dhcp-hotbackup" and kw["PRIORITY"] == "4"
