"""The durable store: replay, torn tails, compaction, one daemon per state dir."""

from __future__ import annotations

import os

import pytest

from appliance.leases.journal import Journal, StoreLocked, read_store
from appliance.leases.model import Lease, LeaseState

T0 = 1_700_000_000.0


def _collect(j: Journal) -> list[Lease]:
    out: list[Lease] = []
    j.replay(out.append)
    return out


def lease(i: int, state=LeaseState.BOUND, seq=0) -> Lease:
    return Lease(ip=0xC0000200 + i, mac=bytes([2, 0, 0, 0, 0, i]), client_id=None,
                 state=state, start=T0, expires=T0 + 600, pool="lan", seq=seq,
                 relay_info=b"\x01\x04eth0" if i % 2 else None, hostname=f"h{i}")


def test_replay_returns_what_was_synced(tmp_path):
    j = Journal(tmp_path)
    assert _collect(j) == []
    batch = [lease(i, seq=i + 1) for i in range(10)]
    j.append(batch)
    j.sync()
    j.close()
    j2 = Journal(tmp_path)
    assert _collect(j2) == batch
    j2.close()


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1), lease(2, seq=2)])
    j.sync()
    j.close()
    with open(tmp_path / "leases.journal", "ab") as f:
        f.write(b"\x00\x00\x00\x40garbage")  # a record cut short by kill -9
    j2 = Journal(tmp_path)
    got = _collect(j2)
    assert [x.seq for x in got] == [1, 2] and j2.torn_bytes == 11
    j2.append([lease(3, seq=3)])
    j2.sync()
    j2.close()
    assert sorted(read_store(tmp_path)) == [0xC0000201, 0xC0000202, 0xC0000203]


def test_corrupt_record_stops_replay_of_that_file(tmp_path):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1), lease(2, seq=2)])
    j.sync()
    j.close()
    data = bytearray((tmp_path / "leases.journal").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "leases.journal").write_bytes(bytes(data))
    j2 = Journal(tmp_path)
    assert [x.seq for x in _collect(j2)] == [1]
    j2.close()


@pytest.mark.parametrize("background", [False, True])
def test_compaction_keeps_the_last_state_of_every_address(tmp_path, background):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(i, seq=i + 1) for i in range(5)])
    j.append([lease(1, LeaseState.RELEASED, seq=6)])
    j.sync()
    live = {x.ip: x for x in [lease(i, seq=i + 1) for i in range(5)]}
    live[lease(1).ip] = lease(1, LeaseState.RELEASED, seq=6)
    j.compact(list(live.values()), background=background)
    j.append([lease(7, seq=7)])  # written while the snapshot is being made
    j.sync()
    j.close()
    assert not (tmp_path / "leases.journal.old").exists()
    store = read_store(tmp_path)
    assert store[lease(1).ip].state == LeaseState.RELEASED
    assert lease(7).ip in store and len(store) == 6


def test_interrupted_compaction_loses_nothing(tmp_path):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1)])
    j.sync()
    j.close()
    # As if the daemon died after rotating the journal, before the snapshot was renamed.
    os.rename(tmp_path / "leases.journal", tmp_path / "leases.journal.old")
    j2 = Journal(tmp_path)
    assert [x.seq for x in _collect(j2)] == [1]
    j2.close()


def test_second_daemon_on_the_same_state_dir_is_refused(tmp_path):
    j = Journal(tmp_path)
    with pytest.raises(StoreLocked, match="state dir"):
        Journal(tmp_path)
    j.close()
