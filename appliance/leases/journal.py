"""The durable lease store: an append-only journal plus a snapshot, in node/state_dir.

Files (Kea memfile + LFC idea), the directory 0700 and every file 0600 (Option 82,
hostnames and MACs are subscriber data):
    leases.snap          every lease as of the last compaction
    leases.journal.old   the journal being folded into a new snapshot (only during one)
    leases.journal       changes since; appended, fdatasync'd once per batch (group commit)
    lock                 flock'd by the running daemon: one daemon per state dir
    *.damaged-<time>     a store file found damaged, kept aside for the operator

A record is `len u32 | crc32 u32 | encode_lease(...)`. Replay reads snapshot, old
journal, journal in that order; the last record of an address wins.

Bad bytes do not end a file. Replay resynchronises on the next valid record (a header
whose length is sane, whose CRC matches and whose body decodes) and tells two cases
apart:
- a torn tail: bad bytes at the end of the live journal with no valid record after
  them, left by a crash in the middle of a write. Nothing in them was acknowledged (an
  ACK waits for fdatasync), so they are cut off (J001);
- damage: valid records after bad ones, or any bad bytes in the snapshot or the old
  journal (both were complete and fsync'd before anything depended on them). Records in
  the damaged region may have been acknowledged. Replay keeps every valid record, logs
  J003 and leaves the files as they are; the caller then calls `rebuild()` (the damaged
  files kept aside, the store rewritten from what was recovered) and, in a pair, pulls
  the whole table from the peer (docs/operations.md).

Every write is checked for a short count (all bytes or an error). A failed write or
fdatasync puts the store in the failed state (`error`): what was written since the last
good fdatasync may not be on the disk, whatever later calls say (Linux reports a
writeback error once), so nothing more is appended until `rebuild()` has rewritten the
whole store from memory. The daemon probes (`probe()`) and rebuilds from housekeeping.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.leases.codec import LeaseDecodeError, decode_lease, encode_lease
from appliance.leases.model import Lease
from appliance.leases.table import LeaseTable

log = logging.getLogger("dhcp-hotbackup.journal")

_REC = struct.Struct("!II")
_MAX_RECORD = 4096
DIR_MODE = 0o700
FILE_MODE = 0o600
PROBE_BYTES = 64 * 1024
_FILES = ("leases.snap", "leases.journal.old", "leases.journal")


class StoreLocked(RuntimeError):
    pass


class StoreFailed(OSError):
    """A write or fdatasync of the store failed (now or earlier, before a rebuild)."""


def frame(lease: Lease) -> bytes:
    body = encode_lease(lease)
    return _REC.pack(len(body), zlib.crc32(body)) + body


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written: a short count (disk full part-way, a
    signal) is continued, and the error that stops it is raised."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # write(2) returns 0 only for a zero-length request
            raise OSError(errno.EIO, "write made no progress")
        view = view[n:]


def fsync_dir(d: Path) -> None:
    """Make a rename (or a new file) in `d` durable: the entry lives in the directory."""
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Scan:
    """What one pass over a store file found. `damaged`: (offset, length) of each run of
    bad bytes that has a valid record after it; `tail`: bad bytes after the last valid
    record (to the end of the file)."""

    path: Path
    total: int = 0
    records: int = 0
    good_end: int = 0
    damaged: list[tuple[int, int]] = field(default_factory=list)

    @property
    def tail(self) -> int:
        return self.total - self.good_end

    @property
    def bad_bytes(self) -> int:
        return sum(n for _, n in self.damaged) + self.tail

    def describe(self) -> str:
        parts = [f"{n} bytes at offset {off}" for off, n in self.damaged[:3]]
        if len(self.damaged) > 3:
            parts.append(f"{len(self.damaged) - 3} more regions")
        if self.tail:
            parts.append(f"{self.tail} bytes at the end (offset {self.good_end})")
        return f"{self.path.name}: " + ", ".join(parts)


def read_records(path: Path) -> tuple[list[Lease], int, int]:
    """(leases, good_bytes, total_bytes) of one file: every valid record, and the end
    of the last one."""
    out: list[Lease] = []
    scan = scan_records(path, out.append)
    return out, scan.good_end, scan.total


def scan_records(path: Path, sink: Callable[[Lease], None], chunk: int = 1 << 20) -> Scan:
    """Feed every valid record of `path` to `sink`, in file order, reading in chunks (a
    million-lease snapshot is never held in memory whole). At a bad record it moves on
    one byte at a time until a valid one starts: a record is taken only if its length
    is within bounds, its CRC matches and its body decodes, so a bad run is passed over
    and every whole record after it is kept. Never raises for the file's contents."""
    scan = Scan(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return scan
    with f:
        scan.total = os.fstat(f.fileno()).st_size
        unpack = _REC.unpack_from
        hsize = _REC.size
        crc32 = zlib.crc32
        buf = b""
        base = 0  # file offset of buf[0]
        pos = 0
        bad_at = -1  # file offset where the current run of bad bytes began
        eof = False
        while True:
            if not eof:
                more = f.read(chunk)
                eof = not more
                buf = buf[pos:] + more
                base += pos
                pos = 0
            n = len(buf)
            while n - pos >= hsize:
                ln, crc = unpack(buf, pos)
                lease = None
                if 0 < ln <= _MAX_RECORD:
                    end = pos + hsize + ln
                    if end > n and not eof:
                        break  # read on: the record may be whole
                    if end <= n:
                        body = buf[pos + hsize:end]
                        if crc32(body) == crc:
                            try:
                                lease = decode_lease(body)
                            except LeaseDecodeError:
                                lease = None
                if lease is None:
                    if bad_at < 0:
                        bad_at = base + pos
                    pos += 1
                    continue
                if bad_at >= 0:
                    scan.damaged.append((bad_at, base + pos - bad_at))
                    bad_at = -1
                sink(lease)
                scan.records += 1
                pos = end
                scan.good_end = base + pos
            if eof:
                return scan


class Journal:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        _tighten(self.dir)
        self.snap = self.dir / "leases.snap"
        self.path = self.dir / "leases.journal"
        self.old = self.dir / "leases.journal.old"
        self._lockfd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
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
        # Files found damaged by replay(), for rebuild(); empty when the store is sound.
        self.damage: list[Scan] = []
        # Set when a write or fdatasync failed (also by the compaction thread); cleared
        # only by rebuild(). While set, append() and sync() raise StoreFailed.
        self.error: OSError | None = None
        self._compactor: threading.Thread | None = None

    # -- start-up ----------------------------------------------------------------------
    def replay(self, sink: Callable[[Lease], None]) -> int:
        """Feed every stored lease change to `sink`, oldest first; returns the count.
        Cuts a torn tail off the journal; records damage in `self.damage` and leaves
        damaged files untouched (rebuild() deals with them)."""
        count = 0

        def counting(lease: Lease) -> None:
            nonlocal count
            count += 1
            sink(lease)

        self.damage = []
        for p in (self.snap, self.old, self.path):
            before = count
            scan = scan_records(p, counting)
            if scan.damaged or (scan.tail and p is not self.path):
                self.damage.append(scan)
                log.error("J003 %s: damaged: %s; %d valid records read from it, the ones "
                          "in the damaged bytes are lost here", p, scan.describe(),
                          scan.records)
            elif scan.tail:
                self.torn_bytes += scan.tail
                log.warning("J001 %s: %d bytes after offset %d are a torn record; cut off "
                            "(nothing acknowledged is lost)", p, scan.tail, scan.good_end)
                with open(p, "r+b") as f:
                    f.truncate(scan.good_end)
                    os.fsync(f.fileno())
            if p is not self.snap:
                self.records_since_snapshot += count - before
        self._open()
        return count

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                           FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)
        self.size = os.fstat(self._fd).st_size
        fsync_dir(self.dir)

    # -- the write path ----------------------------------------------------------------
    def append(self, leases: Iterable[Lease]) -> None:
        """Write records (not yet durable: call sync()). Raises StoreFailed if the
        write fails or the store failed earlier; a partial batch is cut off again."""
        frames = [frame(lease) for lease in leases]
        if self.error is not None:
            raise self._failed_earlier()
        if frames:
            data = b"".join(frames)
            try:
                write_all(self._fd, data)
            except OSError as e:
                try:
                    # The journal must end on a whole record (shrinking needs no space).
                    os.ftruncate(self._fd, self.size)
                except OSError:
                    pass  # replay cuts it as a torn tail; rebuild() replaces the file
                raise self._fail("write", e) from e
            self.size += len(data)
            self.records_since_snapshot += len(frames)

    def sync(self) -> None:
        """Make everything appended so far durable (one fdatasync for the whole batch)."""
        if self.error is not None:
            raise self._failed_earlier()
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            raise self._fail("fdatasync", e) from e

    def _fail(self, op: str, e: OSError) -> StoreFailed:
        err = StoreFailed(e.errno, f"{op} {self.path}: {e.strerror or e}")
        self.error = err
        return err

    def _failed_earlier(self) -> StoreFailed:
        assert self.error is not None
        return StoreFailed(self.error.errno, f"store failed earlier ({self.error.strerror})")

    def probe(self, size: int = PROBE_BYTES) -> None:
        """A write and fdatasync of a scratch file beside the store; raises OSError while
        the disk cannot take them (full, read-only, failing)."""
        p = self.dir / "probe"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            write_all(fd, bytes(size))
            os.fdatasync(fd)
        finally:
            os.close(fd)
            try:
                os.unlink(p)
            except OSError:
                pass

    # -- compaction --------------------------------------------------------------------
    def needs_compaction(self, live: int) -> bool:
        return self.error is None and \
            (self._compactor is None or not self._compactor.is_alive()) and \
            self.records_since_snapshot > max(100_000, 2 * live)

    def compact(self, leases: list[Lease], background: bool = True) -> None:
        """Fold the journal into a new snapshot of `leases` (the table as of now).
        Appends continue to a fresh journal while the snapshot is written."""
        if self._compactor is not None and self._compactor.is_alive():
            return
        if self.old.exists():
            # A previous compaction did not finish: its journal is still needed as is.
            self._compact_step(leases)
            return
        os.fsync(self._fd)
        os.close(self._fd)
        os.rename(self.path, self.old)
        self._open()  # fsyncs the directory: the rename and the new journal
        self.records_since_snapshot = 0
        if background:
            self._compactor = threading.Thread(
                target=self._compact_step, args=(leases,), name="lease-compaction",
                daemon=True)
            self._compactor.start()
        else:
            self._compact_step(leases)

    def _compact_step(self, leases: list[Lease]) -> None:
        try:
            self._write_snapshot(leases)
            try:
                os.unlink(self.old)
            except FileNotFoundError:
                pass
            fsync_dir(self.dir)
        except OSError as e:
            # The old journal stays (nothing is lost); the disk is failing or full.
            self.error = StoreFailed(e.errno, f"snapshot {self.snap}: {e.strerror or e}")
            log.error("J004 lease snapshot not written: %s", e)
            return
        log.info("J002 lease snapshot written: %d leases", len(leases))

    def _write_snapshot(self, leases: Iterable[Lease]) -> None:
        """`leases` as leases.snap: written to a temporary file, fsync'd, renamed into
        place, the directory fsync'd."""
        tmp = self.dir / "leases.snap.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            buf: list[bytes] = []
            for lease in leases:
                buf.append(frame(lease))
                if len(buf) >= 4096:
                    write_all(fd, b"".join(buf))
                    buf.clear()
            write_all(fd, b"".join(buf))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        os.close(fd)
        os.replace(tmp, self.snap)
        fsync_dir(self.dir)

    def wait_compaction(self) -> None:
        if self._compactor is not None:
            self._compactor.join()

    # -- damage and failure ------------------------------------------------------------
    def rebuild(self, leases: Iterable[Lease], now: float) -> list[Path]:
        """Make `leases` (the whole table) the store: each damaged file found by
        replay() is first kept aside as `<name>.damaged-<UTC time>` (a hard link), then
        the leases are written as a new snapshot and an empty journal replaces the
        journal(s). Clears `error` and `damage`. Returns the names kept aside.

        A crash at any step leaves a store that replays to the same leases (or, before
        the snapshot, finds the same damage again). Raises OSError if the disk fails."""
        self.wait_compaction()
        kept: list[Path] = []
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        for scan in self.damage:
            dst = scan.path.with_name(f"{scan.path.name}.damaged-{stamp}")
            i = 1
            while dst.exists():
                i += 1
                dst = scan.path.with_name(f"{scan.path.name}.damaged-{stamp}-{i}")
            try:
                os.link(scan.path, dst)
            except OSError:
                shutil.copyfile(scan.path, dst)  # a file system without hard links
            os.chmod(dst, FILE_MODE)
            kept.append(dst)
        if kept:
            fsync_dir(self.dir)
        self._write_snapshot(leases)
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        tmp = self.dir / "leases.journal.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        try:
            os.unlink(self.old)
        except FileNotFoundError:
            pass
        fsync_dir(self.dir)
        self._open()
        self.records_since_snapshot = 0
        self.damage = []
        self.error = None
        log.info("J005 lease store rewritten from memory: a new snapshot, an empty journal%s",
                 f"; damaged files kept as {', '.join(p.name for p in kept)}" if kept else "")
        return kept

    def close(self) -> None:
        self.wait_compaction()
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError as e:
                if self.error is None:
                    log.error("J006 lease journal not made durable at close: %s", e)
            os.close(self._fd)
            self._fd = -1
        if self._lockfd >= 0:
            os.close(self._lockfd)
            self._lockfd = -1


def _tighten(d: Path) -> None:
    """The state dir 0700 and its files 0600, whatever an older version or the
    operator left (they hold subscriber data: MACs, hostnames, Option 82)."""
    try:
        if os.stat(d).st_mode & 0o777 != DIR_MODE:
            os.chmod(d, DIR_MODE)
        for name in (*_FILES, "lock", "epoch", "sync.cursor"):
            p = d / name
            try:
                if os.stat(p).st_mode & 0o777 != FILE_MODE:
                    os.chmod(p, FILE_MODE)
            except FileNotFoundError:
                pass
    except OSError as e:  # e.g. a read-only bind mount: the store still works
        log.warning("J007 cannot set the modes of %s: %s", d, e)


def read_store(state_dir: str | os.PathLike[str], origin: str = "",
               damage: list[Scan] | None = None) -> dict[int, Lease]:
    """The durable state, read-only (no lock, nothing cut), rebuilt exactly as the daemon
    rebuilds it at start (a client moved to a new address frees its old one; bad bytes
    are passed over the same way), so `dhcp-hotbackup leases` shows what the daemon
    holds, whether or not it runs. Damaged files are added to `damage`."""
    d = Path(state_dir)
    table = LeaseTable(origin)
    for name in _FILES:
        scan = scan_records(d / name, table.load)
        # As replay() sees it; the live journal's tail may be a write in progress.
        if damage is not None and (scan.damaged or (scan.tail and name != "leases.journal")):
            damage.append(scan)
    return table.by_ip
