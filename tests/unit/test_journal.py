"""The durable store: replay, torn tails, compaction, one daemon per state dir."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from appliance.leases import journal as journal_mod
from appliance.leases import syncstate
from appliance.leases.journal import Journal, StoreFailed, StoreLocked, frame, read_store
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


def test_bad_last_record_is_a_torn_tail(tmp_path):
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
    assert not j2.damage and j2.torn_bytes == len(frame(lease(2, seq=2)))
    j2.close()


def _damage_mid(tmp_path, name: str, n: int = 10) -> bytes:
    """A store of n leases (in the snapshot or the journal) with one byte flipped in
    the middle of the file; returns the damaged bytes."""
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    leases = [lease(i, seq=i + 1) for i in range(n)]
    if name == "leases.snap":
        j.compact(leases, background=False)
    else:
        j.append(leases)
        j.sync()
    j.close()
    p = tmp_path / name
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x5A
    p.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("name", ["leases.journal", "leases.snap"])
def test_damage_mid_file_is_passed_over_kept_aside_and_rebuilt(tmp_path, name, caplog):
    damaged = _damage_mid(tmp_path, name)
    j = Journal(tmp_path)
    got = _collect(j)
    # One record lost (the one holding the flipped byte), the nine others recovered,
    # those after the damage included.
    assert len(got) == 9 and got[-1].seq == 10
    assert [s.path.name for s in j.damage] == [name]
    assert "J003" in caplog.text
    assert (tmp_path / name).read_bytes() == damaged  # nothing cut before rebuild()
    kept = j.rebuild(got, T0)
    assert [p.name for p in kept] == [f"{name}.damaged-20231114T221320Z"]
    assert kept[0].read_bytes() == damaged and oct(kept[0].stat().st_mode & 0o777) == "0o600"
    assert not j.damage and j.error is None
    j.append([lease(20, seq=20)])
    j.sync()
    j.close()
    j2 = Journal(tmp_path)
    again = _collect(j2)
    assert not j2.damage and again == [*got, lease(20, seq=20)]
    j2.close()


def test_bad_tail_of_the_snapshot_is_damage_not_a_torn_tail(tmp_path):
    # A snapshot is fsync'd before it is renamed into place: it is never torn.
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.compact([lease(1, seq=1), lease(2, seq=2)], background=False)
    j.close()
    with open(tmp_path / "leases.snap", "r+b") as f:
        f.truncate(f.seek(0, 2) - 5)
    j2 = Journal(tmp_path)
    assert [x.seq for x in _collect(j2)] == [1]
    assert [s.path.name for s in j2.damage] == ["leases.snap"] and j2.torn_bytes == 0
    j2.close()


def test_read_store_reads_through_damage_and_names_it(tmp_path):
    _damage_mid(tmp_path, "leases.journal")
    damage: list = []
    store = read_store(tmp_path, damage=damage)
    assert len(store) == 9 and lease(9).ip in store
    assert [s.path.name for s in damage] == ["leases.journal"]
    assert damage[0].damaged and damage[0].bad_bytes == len(frame(lease(5, seq=6)))


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


# -- short writes, a full disk, an fdatasync error ------------------------------------------
def _short_writes(monkeypatch, limit: int = 7) -> list[int]:
    """os.write writes at most `limit` bytes a call (as write(2) may); returns the counts."""
    real = os.write
    counts: list[int] = []

    def short(fd, data):
        n = real(fd, bytes(data[:limit]))
        counts.append(n)
        return n

    monkeypatch.setattr(journal_mod.os, "write", short)
    return counts


def test_short_writes_are_continued_everywhere(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    counts = _short_writes(monkeypatch)
    batch = [lease(i, seq=i + 1) for i in range(5)]
    j.append(batch)
    j.sync()
    j.compact(batch[:3], background=False)  # the snapshot
    j.append(batch[3:])
    j.rebuild(batch, T0)  # the rewrite after a failure
    syncstate.load_epoch(tmp_path, empty=True)  # the epoch file
    monkeypatch.undo()
    assert counts and max(counts) <= 7
    j.close()
    assert sorted(read_store(tmp_path)) == sorted(x.ip for x in batch)
    j2 = Journal(tmp_path)
    assert _collect(j2) == batch
    j2.close()
    assert len((tmp_path / "epoch").read_text().strip()) == 16


def test_cursor_short_pwrite_is_continued(tmp_path, monkeypatch):
    c = syncstate.CursorFile(tmp_path)
    real = os.pwrite
    monkeypatch.setattr(syncstate.os, "pwrite", lambda fd, data, off: real(fd, data[:3], off))
    c.store(0x1122334455667788, 42)
    monkeypatch.undo()
    assert c.load() == (0x1122334455667788, 42)
    c.reset()
    assert c.load() == (0, 0)
    c.close()


def _disk_full_after(monkeypatch, budget: int) -> None:
    """os.write takes `budget` more bytes, then fails as a full disk does: a short
    count first, then ENOSPC."""
    real = os.write
    left = [budget]

    def full(fd, data):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[:left[0]]))
        left[0] -= n
        return n

    monkeypatch.setattr(journal_mod.os, "write", full)


def test_disk_full_mid_batch_fails_the_store_and_cuts_the_partial_batch(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1)])
    j.sync()
    good = (tmp_path / "leases.journal").stat().st_size
    _disk_full_after(monkeypatch, 30)  # part of the next batch's first record
    with pytest.raises(StoreFailed, match="No space left"):
        j.append([lease(2, seq=2), lease(3, seq=3)])
    monkeypatch.undo()
    assert (tmp_path / "leases.journal").stat().st_size == good  # ends on a whole record
    assert j.error is not None and j.error.errno == errno.ENOSPC
    # Failed stays failed, even when the disk would take the bytes now: what was written
    # since the last good fdatasync is not trusted until rebuild() rewrote everything.
    with pytest.raises(StoreFailed):
        j.append([lease(4, seq=4)])
    with pytest.raises(StoreFailed):
        j.sync()
    assert not j.needs_compaction(0)
    assert (tmp_path / "leases.journal").stat().st_size == good
    j.probe()
    j.rebuild([lease(1, seq=1), lease(2, seq=2)], T0)
    assert j.error is None
    j.append([lease(3, seq=3)])
    j.sync()
    j.close()
    assert sorted(read_store(tmp_path)) == [lease(i).ip for i in (1, 2, 3)]


def test_fdatasync_error_fails_the_store(tmp_path, monkeypatch):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1)])

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_mod.os, "fdatasync", eio)
    with pytest.raises(StoreFailed, match="fdatasync"):
        j.sync()
    with pytest.raises(OSError):
        j.probe()
    monkeypatch.undo()
    with pytest.raises(StoreFailed):  # a later fdatasync would not prove the batch durable
        j.sync()
    j.probe()
    j.close()


def test_failed_compaction_fails_the_store_and_keeps_the_journal(tmp_path):
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1)])
    j.sync()
    (tmp_path / "leases.snap.tmp").mkdir()  # the snapshot cannot be written
    j.compact([lease(1, seq=1)], background=True)
    j.wait_compaction()
    assert j.error is not None and (tmp_path / "leases.journal.old").exists()
    (tmp_path / "leases.snap.tmp").rmdir()
    j.rebuild([lease(1, seq=1)], T0)
    assert not (tmp_path / "leases.journal.old").exists()
    j.close()
    assert list(read_store(tmp_path)) == [lease(1).ip]


# -- modes and directory fsyncs -----------------------------------------------------------
def test_state_dir_0700_and_files_0600_also_when_found_looser(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o755)
    (d / "leases.journal").write_bytes(frame(lease(1, seq=1)))
    os.chmod(d / "leases.journal", 0o644)
    j = Journal(d)
    j.replay(lambda x: None)
    j.compact([lease(1, seq=1)], background=False)
    syncstate.load_epoch(d, empty=True)
    syncstate.CursorFile(d).close()
    j.close()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()}
    assert set(modes) >= {"leases.snap", "leases.journal", "lock", "epoch", "sync.cursor"}
    assert set(modes.values()) == {0o600}, modes


def test_every_rename_is_followed_by_a_directory_fsync(tmp_path, monkeypatch):
    events: list[str] = []
    real_rename, real_replace, real_fsync_dir = os.rename, os.replace, journal_mod.fsync_dir

    def rename(a, b):
        events.append("rename")
        return real_rename(a, b)

    def replace(a, b):
        events.append("rename")
        return real_replace(a, b)

    def fsync_dir(d):
        events.append("fsync_dir")
        return real_fsync_dir(d)

    monkeypatch.setattr(journal_mod.os, "rename", rename)
    monkeypatch.setattr(journal_mod.os, "replace", replace)
    monkeypatch.setattr(journal_mod, "fsync_dir", fsync_dir)
    monkeypatch.setattr(syncstate, "fsync_dir", fsync_dir)
    j = Journal(tmp_path)
    j.replay(lambda x: None)
    j.append([lease(1, seq=1)])
    j.sync()
    j.compact([lease(1, seq=1)], background=False)  # rotation and snapshot swap
    j.rebuild([lease(1, seq=1)], T0)  # snapshot and journal swap
    syncstate.load_epoch(tmp_path, empty=True)  # the epoch file
    j.close()
    assert events.count("rename") >= 5
    for i, e in enumerate(events):
        if e == "rename":
            assert "fsync_dir" in events[i + 1:i + 3], events
