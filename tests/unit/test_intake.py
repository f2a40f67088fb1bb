"""The intake queue: known clients first, late requests shed before any work, the oldest
shed when full; and the queue-delay estimate under an offset clock."""

from __future__ import annotations

from appliance.dhcp.intake import Intake, QueueDelay


def test_known_clients_are_served_before_new_discovers_in_arrival_order():
    q: Intake[str] = Intake()
    q.push("new1", False, 10.0)
    q.push("req1", True, 10.0)
    q.push("new2", False, 10.0)
    q.push("req2", True, 10.0)
    assert q.take(3, now=0.0) == ["req1", "req2", "new1"]
    assert q.take(3, now=0.0) == ["new2"]
    assert len(q) == 0


def test_late_entries_are_shed_unanswered_and_counted():
    q: Intake[str] = Intake()
    q.push("old", True, 1.0)
    q.push("fresh", True, 5.0)
    q.push("old-new", False, 1.0)
    assert q.take(10, now=2.0) == ["fresh"]
    assert q.shed_late == 2


def test_a_full_queue_sheds_its_oldest_entry_not_the_newest():
    q: Intake[int] = Intake(capacity=3)
    for i in range(5):
        q.push(i, False, 10.0)
    assert q.shed_full == 2
    assert q.take(10, now=0.0) == [2, 3, 4]


def test_known_queue_is_not_pushed_out_by_a_flood_of_new_clients():
    q: Intake[str] = Intake(capacity=2)
    q.push("renewal", True, 10.0)
    for i in range(100):
        q.push(f"flood{i}", False, 10.0)
    assert q.take(1, now=0.0) == ["renewal"]


def test_clear_reports_what_was_forgotten():
    q: Intake[str] = Intake()
    q.push("a", True, 1.0)
    q.push("b", False, 1.0)
    assert q.clear() == 2 and len(q) == 0


def test_drop_forgets_what_is_no_longer_served_and_keeps_the_rest_in_order():
    """A group stops being served here: its queued requests go, nothing else moves."""
    q: Intake[tuple[str, str]] = Intake()
    for item, known in ((("ga", "r1"), True), (("gb", "r2"), True), (("ga", "r3"), True),
                        (("gb", "d1"), False), (("ga", "d2"), False)):
        q.push(item, known, 10.0)
    assert q.drop(lambda e: e[0] == "gb") == 2
    assert q.take(10, now=0.0) == [("ga", "r1"), ("ga", "r3"), ("ga", "d2")]
    assert q.drop(lambda e: True) == 0


def test_queue_delay_on_a_true_clock_is_the_lag():
    d = QueueDelay()
    w = d.waited([99.9999, 99.5, 99.0], wall_now=100.0)
    assert [round(x, 4) for x in w] == [0.0, 0.4999, 0.9999]


def test_queue_delay_survives_a_clock_a_day_ahead_of_the_kernel_stamps():
    # faketime offsets the daemon's clock, not the kernel's receive stamps.
    d = QueueDelay()
    day = 86400.0
    assert d.waited([100.0, 99.0], wall_now=100.0 + day + 0.001) == \
        [0.0, 1.0]
    # Later batches keep the learnt offset: a fresh datagram waited ~0, an old one 0.7 s.
    w = d.waited([200.0, 199.3], wall_now=200.0 + day + 0.001)
    assert [round(x, 3) for x in w] == [0.0, 0.7]


def test_queue_delay_relearns_after_a_clock_step_either_way():
    d = QueueDelay()
    d.waited([100.0], wall_now=100.001)
    # The daemon's clock is stepped back an hour: datagrams are not "from the future".
    assert d.waited([200.0], wall_now=200.0 - 3600) == [0.0]
    # ... and forward again: they are not an hour old either.
    assert d.waited([300.0], wall_now=300.0 + 7200) == [0.0]


def test_datagrams_without_a_stamp_count_as_fresh():
    d = QueueDelay()
    assert d.waited([0.0, 0.0], wall_now=5.0) == [0.0, 0.0]
