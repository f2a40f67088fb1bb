"""Durable replication bookkeeping beside the lease store: the database epoch and the
cursor into the peer's change log (docs/sync-protocol.md).

    epoch        16 hex digits: this lease database's id, random when it is created
    sync.cursor  epoch u64 | seq u64 | crc32 u32: how far the peer's log is held here

The cursor is rewritten in place (20 bytes, one sector: no torn write) and fdatasync'd
after the leases it covers are durable, so after a crash it never claims more than the
journal holds.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

_CURSOR = struct.Struct("!QQ")


def load_epoch(state_dir: str | os.PathLike[str], empty: bool) -> int:
    """The database epoch; a new random one if none is stored (or the store is empty,
    which makes a peer that held our old log take a snapshot)."""
    p = Path(state_dir) / "epoch"
    if not empty:
        try:
            return int(p.read_text().strip(), 16)
        except (OSError, ValueError):
            pass
    epoch = int.from_bytes(os.urandom(8), "big") or 1
    tmp = p.with_name(".epoch.tmp")
    tmp.write_text(f"{epoch:016x}\n")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return epoch


class CursorFile:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "sync.cursor"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

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
        body = _CURSOR.pack(epoch, seq)
        os.pwrite(self._fd, body + zlib.crc32(body).to_bytes(4, "big"), 0)
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
