"""Fake sync peers that speak the real wire protocol (ExaBGP's qa/sbin/bgp idea, Kea's
HAPartner): a test scripts what the peer says, frame by frame, and reads what the device
under test answers, decoded. They use the product's own codec (appliance.sync.frames), so
a wire change shows in them at once.

- `FakeSyncPeer`: bytes in, bytes out, no I/O: drive a `Session` (or anything that eats
  bytes) directly. `handshake(node)` completes HELLO/AUTH/SYNC_REQ with a MemoryNode-like
  object (`handle(event, now)`, `outbox`, `next_nonce()`).
- `SocketSyncPeer`: the same over an asyncio TCP connection to a real SyncLink or daemon.

Test support only; the product never imports it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from appliance.sync.changelog import Cursor
from appliance.sync.frames import (
    DEFAULT_MAX_BODY,
    Ack,
    Auth,
    BulkEnd,
    Frame,
    FrameCodec,
    Hello,
    SyncReq,
    auth_proof,
    direction_key,
)

NOTHING = Cursor()  # a device that holds none of the peer's log


def nonce(tag: str) -> bytes:
    """A fixed 32-byte nonce for reproducible transcripts."""
    return hashlib.sha256(tag.encode()).digest()


class FakeSyncPeer:
    """A scripted peer with a known key and nonce: `frame(f)` seals what it sends,
    `read(data)` opens what it receives (switching to the session keys at the device's
    HELLO, as the real session does)."""

    def __init__(self, name: str = "peer", key: bytes = b"", *, epoch: int = 0xFEED,
                 last_seq: int = 0, tag: str = "fake", boot_id: int = 7,
                 wall_us: int = 0) -> None:
        if not key:
            raise ValueError("a fake peer needs the pair's sync/key")
        self.name = name
        self.key = key
        self.codec = FrameCodec(key)
        self.nonce = nonce(tag)
        self.hello = Hello(node=name, nonce=self.nonce, boot_id=boot_id, epoch=epoch,
                           last_seq=last_seq, lease_count=0, wall_us=wall_us)
        self.received: list[Frame] = []
        self.hello_bytes = b""
        self.peer_hello: Hello | None = None

    def send_hello(self) -> bytes:
        """Our HELLO (frame 0, HMAC-sealed, in clear): made before the keys switch."""
        if not self.hello_bytes:
            self.hello_bytes = self.codec.encode(self.hello)
        return self.hello_bytes

    def frame(self, f: Frame) -> bytes:
        return self.codec.encode(f)

    def auth(self) -> Auth:
        """The AUTH answering the device's HELLO (read it first)."""
        assert self.peer_hello is not None, "no HELLO from the device yet"
        return Auth(auth_proof(self.key, self.hello, self.peer_hello))

    def read(self, data: bytes) -> list[Frame]:
        self.codec.feed(data)
        out = []
        while (f := self.codec.next_frame()) is not None:
            out.append(f)
            if isinstance(f, Hello):
                self.send_hello()
                self.peer_hello = f
                self.codec.set_session_keys(direction_key(self.key, self.nonce, f.nonce),
                                            direction_key(self.key, f.nonce, self.nonce))
                # The device authenticates as soon as it reads our AUTH: its frames may
                # be large from then on.
                self.codec.max_body = DEFAULT_MAX_BODY
        self.received.extend(out)
        return out

    def handshake(self, node: Any, now: float = 0.0, held: Cursor = NOTHING) -> None:
        """Connect `node` (a MemoryNode: handle(event, now), outbox, next_nonce()) to this
        peer and complete HELLO/AUTH/SYNC_REQ."""
        from appliance.sync.session import Connected, DataReceived

        node.handle(Connected(node.next_nonce(), outbound=False), now)
        self.read(b"".join(node.outbox))
        node.outbox.clear()
        node.handle(DataReceived(self.send_hello()), now)
        self.read(b"".join(node.outbox))
        node.outbox.clear()
        node.handle(DataReceived(self.frame(self.auth())), now)
        node.handle(DataReceived(self.frame(SyncReq(held.epoch, held.seq))), now)
        self.read(b"".join(node.outbox))
        node.outbox.clear()

    def send(self, node: Any, f: Frame, now: float = 0.0) -> list[Frame]:
        """Send one frame to `node`; returns what it answered."""
        from appliance.sync.session import DataReceived

        node.handle(DataReceived(self.frame(f)), now)
        out = self.read(b"".join(node.outbox))
        node.outbox.clear()
        return out


class SocketSyncPeer(FakeSyncPeer):
    """A FakeSyncPeer on a real TCP connection (asyncio streams)."""

    def __init__(self, key: bytes, name: str = "rawpeer") -> None:
        super().__init__(name, key, tag=os.urandom(8).hex(), boot_id=99, epoch=0xABC)
        self.frames: list[Frame] = []

    async def connect(self, host: str, port: int) -> None:
        self.r, self.w = await asyncio.open_connection(host, port)

    def send_frame(self, f: Frame) -> bytes:
        data = self.codec.encode(f)
        self.w.write(data)
        return data

    async def read_until(self, cls: type) -> Frame:
        """Read frames until one of type `cls` (all of them are kept in `frames`)."""
        while True:
            f = self.codec.next_frame()
            if f is not None:
                self.frames.append(f)
                if isinstance(f, Hello):
                    self.peer_hello = f
                    self.codec.set_session_keys(
                        direction_key(self.key, self.nonce, f.nonce),
                        direction_key(self.key, f.nonce, self.nonce))
                    self.codec.max_body = DEFAULT_MAX_BODY
                if isinstance(f, cls):
                    return f
                continue
            data = await self.r.read(65536)
            if not data:
                raise EOFError
            self.codec.feed(data)

    async def handshake_over_tcp(self) -> None:
        """HELLO, AUTH, SYNC_REQ(nothing held); ACK the device's catch-up."""
        self.send_frame(self.hello)
        await self.read_until(Hello)
        self.send_frame(self.auth())
        self.send_frame(SyncReq(0, 0))
        end = await self.read_until(BulkEnd)  # the device's answer to our SYNC_REQ
        self.send_frame(Ack(end.seq, 0))  # type: ignore[union-attr]

    async def closed(self) -> bool:
        """True once the device has closed the connection (what it sent before is read)."""
        try:
            while await asyncio.wait_for(self.r.read(65536), 5):
                pass
        except ConnectionResetError:
            pass
        return True
