"""The replication backlog: waiters released by the peer's ACK (in seq order), by the
ack timeout (in arrival order, exactly on time), or all at once when the peer leaves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.sync.backlog import Backlog


def test_ack_releases_in_seq_order_up_to() -> None:
    b: Backlog[str] = Backlog()
    for seq in (1, 2, 3, 5):
        b.add(seq, 0.0, f"w{seq}")
    assert len(b) == 4
    assert b.ack(2) == ["w1", "w2"]
    assert b.ack(2) == []
    assert b.ack(4) == ["w3"]
    assert len(b) == 1 and b.acked == 3
    assert b.ack(100) == ["w5"] and len(b) == 0


def test_several_waiters_on_one_seq_and_none_waiters() -> None:
    b: Backlog[int] = Backlog()
    b.add(7, 0.0, 1)
    b.add(7, 0.0, 2)
    b.add(8, 0.0)  # counted as lag, nobody to wake
    assert len(b) == 3
    assert b.ack(8) == [1, 2] and len(b) == 0


def test_expiry_is_exact_and_counts() -> None:
    b: Backlog[str] = Backlog()
    b.add(1, 0.000, "a")
    b.add(2, 0.010, "b")
    b.add(3, 0.020, "c")
    assert b.next_deadline(0.050) == 0.050
    assert b.expired(0.049, 0.050) == []
    assert b.expired(0.065, 0.050) == ["a", "b"]
    assert b.timed_out == 2 and len(b) == 1
    assert b.oldest() == 0.020 and b.age(0.030) == pytest.approx(0.010)
    assert b.ack(3) == ["c"]
    assert b.oldest() is None and b.next_deadline(0.05) is None and b.age(1.0) == 0.0


def test_ack_after_expiry_does_not_release_twice() -> None:
    b: Backlog[str] = Backlog()
    b.add(1, 0.0, "a")
    b.add(2, 1.0, "b")
    assert b.expired(0.5, 0.5) == ["a"]
    assert b.ack(2) == ["b"]
    assert b.expired(10.0, 0.5) == []


def test_out_of_order_add_still_expires_on_time() -> None:
    b: Backlog[str] = Backlog()
    b.add(10, 0.0, "ten")
    b.add(12, 0.1, "twelve")
    b.add(11, 0.2, "eleven")  # parked late with a lower seq
    assert b.ack(11) == ["ten", "eleven"]
    assert b.expired(0.16, 0.05) == ["twelve"]


def test_release_all_when_peer_leaves() -> None:
    b: Backlog[str] = Backlog()
    for seq in range(5):
        b.add(seq, 0.0, str(seq))
    b.ack(1)
    assert b.release_all() == ["2", "3", "4"]
    assert b.released == 3 and len(b) == 0
    assert b.ack(10) == [] and b.expired(100.0, 0.0) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 50), st.floats(0, 1)),
    st.tuples(st.just("ack"), st.integers(0, 60), st.just(0.0)),
    st.tuples(st.just("expire"), st.integers(0, 0), st.floats(0, 2)),
    st.tuples(st.just("all"), st.integers(0, 0), st.just(0.0)),
), max_size=60))
def test_every_waiter_released_exactly_once(ops) -> None:
    b: Backlog[int] = Backlog()
    now = 0.0
    added: list[int] = []
    released: list[int] = []
    for op, n, t in ops:
        if op == "add":
            now += t
            added.append(len(added))
            b.add(n, now, added[-1])
        elif op == "ack":
            released += b.ack(n)
        elif op == "expire":
            released += b.expired(now + t, 0.5)
        else:
            released += b.release_all()
        assert len(b) == len(added) - len(released)
    released += b.release_all()
    assert sorted(released) == added
