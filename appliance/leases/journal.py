"""The durable lease store: an append-only journal plus a snapshot, in node/state_dir.

Files (Kea memfile + LFC idea):
    leases.snap          every lease as of the last compaction
    leases.journal.old   the journal being folded into a new snapshot (only during one)
    leases.journal       changes since; appended, fdatasync'd once per batch (group commit)
    lock                 flock'd by the running daemon: one daemon per state dir

A record is `len u32 | crc32 u32 | encode_lease(...)`. Replay reads snapshot, old
journal, journal in that order; the last record of an address wins. A torn tail left by
a crash (short or bad-CRC record) ends the replay of that file and is cut off; nothing
before it is lost, and nothing after it was ever acknowledged (an ACK waits for fsync).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from appliance.leases.codec import LeaseDecodeError, decode_lease, encode_lease
from appliance.leases.model import Lease
from appliance.leases.table import LeaseTable

log = logging.getLogger("dhcp-hotbackup.journal")

_REC = struct.Struct("!II")
_MAX_RECORD = 4096


class StoreLocked(RuntimeError):
    pass


def frame(lease: Lease) -> bytes:
    body = encode_lease(lease)
    return _REC.pack(len(body), zlib.crc32(body)) + body


def read_records(path: Path) -> tuple[list[Lease], int, int]:
    """(leases, good_bytes, total_bytes) of one file; stops at the first bad record."""
    out: list[Lease] = []
    good, total = scan_records(path, out.append)
    return out, good, total


def scan_records(path: Path, sink: Callable[[Lease], None],
                 chunk: int = 1 << 20) -> tuple[int, int]:
    """Feed each good record of `path` to `sink`, reading in chunks (a million-lease
    snapshot is never held in memory whole). Returns (good_bytes, total_bytes)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0, 0
    with f:
        total = os.fstat(f.fileno()).st_size
        buf = b""
        good = 0  # bytes of good records before buf
        while True:
            more = f.read(chunk)
            buf += more
            pos, n = 0, len(buf)
            while pos + _REC.size <= n:
                ln, crc = _REC.unpack_from(buf, pos)
                end = pos + _REC.size + ln
                if ln > _MAX_RECORD:
                    return good + pos, total
                if end > n:
                    break
                body = buf[pos + _REC.size : end]
                if zlib.crc32(body) != crc:
                    return good + pos, total
                try:
                    lease = decode_lease(body)
                except LeaseDecodeError:
                    return good + pos, total
                sink(lease)
                pos = end
            good += pos
            buf = buf[pos:]
            if not more:
                return good, total


class Journal:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snap = self.dir / "leases.snap"
        self.path = self.dir / "leases.journal"
        self.old = self.dir / "leases.journal.old"
        self._lockfd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lockfd)
            raise StoreLocked(f"{self.dir}: another dhcp-hotbackup daemon holds this state "
                              "dir (node/state_dir)") from None
        self._fd = -1
        self.size = 0
        self.records_since_snapshot = 0
        self.torn_bytes = 0
        self._compactor: threading.Thread | None = None

    # -- start-up ----------------------------------------------------------------------
    def replay(self, sink: Callable[[Lease], None]) -> int:
        """Feed every stored lease change to `sink`, oldest first; returns the count.
        Cuts a torn tail off a file (nothing after it was ever acknowledged)."""
        count = 0

        def counting(lease: Lease) -> None:
            nonlocal count
            count += 1
            sink(lease)

        for p in (self.snap, self.old, self.path):
            before = count
            good, total = scan_records(p, counting)
            if good != total:
                self.torn_bytes += total - good
                log.warning("J001 %s: %d bytes after offset %d are a torn or corrupt record; "
                            "cut off (nothing acknowledged is lost)", p, total - good, good)
                with open(p, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            if p is not self.snap:
                self.records_since_snapshot += count - before
        self._open()
        return count

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
        _fsync_dir(self.dir)

    # -- the write path ----------------------------------------------------------------
    def append(self, leases: Iterable[Lease]) -> None:
        """Write records (not yet durable: call sync())."""
        frames = [frame(lease) for lease in leases]
        if frames:
            data = b"".join(frames)
            os.write(self._fd, data)
            self.size += len(data)
            self.records_since_snapshot += len(frames)

    def sync(self) -> None:
        """Make everything appended so far durable (one fdatasync for the whole batch)."""
        os.fdatasync(self._fd)

    # -- compaction --------------------------------------------------------------------
    def needs_compaction(self, live: int) -> bool:
        return (self._compactor is None or not self._compactor.is_alive()) and \
            self.records_since_snapshot > max(100_000, 2 * live)

    def compact(self, leases: list[Lease], background: bool = True) -> None:
        """Fold the journal into a new snapshot of `leases` (the table as of now).
        Appends continue to a fresh journal while the snapshot is written."""
        if self._compactor is not None and self._compactor.is_alive():
            return
        if self.old.exists():
            # A previous compaction did not finish: its journal is still needed as is.
            self._write_snapshot(leases, fold_old=True)
            return
        os.fsync(self._fd)
        os.close(self._fd)
        os.rename(self.path, self.old)
        self._open()
        self.records_since_snapshot = 0
        if background:
            self._compactor = threading.Thread(
                target=self._write_snapshot, args=(leases, True), name="lease-compaction",
                daemon=True)
            self._compactor.start()
        else:
            self._write_snapshot(leases, True)

    def _write_snapshot(self, leases: list[Lease], fold_old: bool) -> None:
        tmp = self.dir / "leases.snap.tmp"
        with open(tmp, "wb") as f:
            buf: list[bytes] = []
            for lease in leases:
                buf.append(frame(lease))
                if len(buf) >= 4096:
                    f.write(b"".join(buf))
                    buf.clear()
            f.write(b"".join(buf))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.snap)
        _fsync_dir(self.dir)
        if fold_old:
            try:
                os.unlink(self.old)
            except FileNotFoundError:
                pass
            _fsync_dir(self.dir)
        log.info("J002 lease snapshot written: %d leases", len(leases))

    def wait_compaction(self) -> None:
        if self._compactor is not None:
            self._compactor.join()

    def close(self) -> None:
        self.wait_compaction()
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._lockfd >= 0:
            os.close(self._lockfd)
            self._lockfd = -1


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_store(state_dir: str | os.PathLike[str], origin: str = "") -> dict[int, Lease]:
    """The durable state, read-only (no lock, nothing cut), rebuilt exactly as the daemon
    rebuilds it at start (a client moved to a new address frees its old one), so
    `dhcp-hotbackup leases` shows what the daemon holds, whether or not it runs."""
    d = Path(state_dir)
    table = LeaseTable(origin)
    for p in (d / "leases.snap", d / "leases.journal.old", d / "leases.journal"):
        scan_records(p, table.load)
    return table.by_ip
