"""Durable replication bookkeeping beside the lease store: the database epoch and the
cursor into the peer's change log (docs/sync-protocol.md).

    epoch        16 hex digits: this lease database's id, random when it is created
    sync.cursor  epoch u64 | seq u64 | crc32 u32: how far the peer's log is held here

The cursor is rewritten in place (20 bytes, one sector: no torn write) and fdatasync'd
after the leases it covers are durable, so after a crash it never claims more than the
journal holds. `reset()` makes it claim nothing: the peer then answers with a full
snapshot (what a device whose store was damaged needs). Both files are 0600; every
write is checked for a short count and the epoch's rename is made durable with a
directory fsync.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

from appliance.leases.journal import FILE_MODE, fsync_dir, write_all

_CURSOR = struct.Struct("!QQ")


def load_epoch(state_dir: str | os.PathLike[str], empty: bool) -> int:
    """The database epoch; a new random one if none is stored (or the store is empty,
    which makes a peer that held our old log take a snapshot)."""
    d = Path(state_dir)
    p = d / "epoch"
    if not empty:
        try:
            return int(p.read_text().strip(), 16)
        except (OSError, ValueError):
            pass
    epoch = int.from_bytes(os.urandom(8), "big") or 1
    tmp = d / ".epoch.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        write_all(fd, f"{epoch:016x}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    fsync_dir(d)
    return epoch


class CursorFile:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "sync.cursor"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)

    def load(self) -> tuple[int, int]:
        data = os.pread(self._fd, _CURSOR.size + 4, 0)
        if len(data) != _CURSOR.size + 4:
            return 0, 0
        body, crc = data[: _CURSOR.size], int.from_bytes(data[_CURSOR.size :], "big")
        if zlib.crc32(body) != crc:
            return 0, 0  # never trust a damaged cursor: the peer sends a snapshot
        epoch, seq = _CURSOR.unpack(body)
        return epoch, seq

    def store(self, epoch: int, seq: int) -> None:
        """Rewrite the cursor and fdatasync it; raises OSError unless all of it is
        written and durable."""
        body = _CURSOR.pack(epoch, seq)
        data = body + zlib.crc32(body).to_bytes(4, "big")
        off = 0
        while off < len(data):
            n = os.pwrite(self._fd, data[off:], off)
            if n <= 0:
                raise OSError(errno.EIO, f"write {self.path} made no progress")
            off += n
        os.fdatasync(self._fd)

    def reset(self) -> None:
        """Hold nothing of the peer's log: the next catch-up is a full snapshot."""
        self.store(0, 0)

    def close(self) -> None:
        os.close(self._fd)
