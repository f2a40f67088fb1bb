"""DHCP refusal reasons are one enum end to end: the server's Decision carries the member,
its value is the counter the daemon publishes (STAT_NAMES), and docs/operations.md lists
every one, with the log id of those that are logged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.dhcp import server
from appliance.dhcp.enums import LOG, Note, Reason

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
ROW = re.compile(r"^\| `stats/([a-z0-9_]+)` \| (D\d{3})? ?\|", re.M)


def doc_rows() -> dict[str, str]:
    """counter -> log id ('' when none) of each one-counter row of the doc's tables."""
    return {m.group(1): m.group(2) or "" for m in ROW.finditer(DOC.read_text())}


def logged_ids() -> set[str]:
    """Every id the "Log messages" table names, ranges (D060-D069) expanded."""
    text = DOC.read_text().split("## Log messages", 1)[1]
    out: set[str] = set()
    for a, b in re.findall(r"^\| (D\d{3})(?:-(D\d{3}))? ", text, re.M):
        lo, hi = int(a[1:]), int((b or a)[1:])
        out.update(f"D{i:03d}" for i in range(lo, hi + 1))
    return out


@pytest.mark.parametrize("why", [*Reason, *Note], ids=lambda w: w.value)
def test_every_reason_and_note_is_a_documented_counter(why):
    rows = doc_rows()
    assert why.value in rows, f"docs/operations.md has no row for stats/{why.value}"
    lg = LOG.get(why)
    if lg is not None:
        assert rows[why.value] == lg[0], f"stats/{why.value}: the doc says log " \
            f"{rows[why.value] or 'none'}, the code logs {lg[0]}"
        assert lg[0] in logged_ids(), f"{lg[0]} missing from the Log messages table"


def test_the_doc_lists_no_refusal_the_code_does_not_have():
    known = {w.value for w in (*Reason, *Note)}
    stale = [c for c in doc_rows() if c.startswith(("dropped_", "nak_")) and c not in known]
    assert not stale, f"documented but not in dhcp/enums.py: {stale}"


def test_counter_names_are_unique_and_say_what_they_count():
    values = [w.value for w in (*Reason, *Note)]
    assert len(values) == len(set(values))
    for r in Reason:
        assert r.value.startswith("nak_" if r.name.startswith("NAK_") else "dropped_"), r
    assert set(server._NAK_TEXT) == {r for r in Reason if r.name.startswith("NAK_")}
    assert len({lg[0] for lg in LOG.values()}) == len(LOG)  # one id, one reason


def test_the_daemon_publishes_every_counter_from_the_start():
    from appliance.daemon import STAT_NAMES

    assert {w.value for w in (*Reason, *Note)} <= set(STAT_NAMES)
    assert len(STAT_NAMES) == len(set(STAT_NAMES))
