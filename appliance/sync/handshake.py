"""The sync handshake: one connection's HELLO / AUTH exchange as a phase enum, a
transition table and the side that walks it (events in: the peer's frames; actions
out: the keys to switch to and the AUTH to send).

Rules for this file: pure (no sockets, no clock). Input from the peer never raises
anything but FrameError with a named Reason; the session refuses it (counter, SYNC007)
and closes the connection, and nothing here changes.

Theory of operation (docs/sync-protocol.md §Authentication and keys): both sides do
the same thing. On connect each sends HELLO (its node name, a fresh nonce, its log
position) under the HMAC hello key. On the peer's HELLO a side derives the two
direction keys from sync/key and both nonces and sends AUTH (a proof over both HELLOs)
encrypted; the peer's AUTH verifying ends the handshake. Only then may any other frame
come (STREAM), and only then are frames allowed to be large. BYE may come at any time.

    phase          trigger  next           what happens
    AWAIT_HELLO    hello    AWAIT_AUTH     keys derived, AUTH + SYNC_REQ + CONFIG sent
    AWAIT_AUTH     auth     AUTHENTICATED  the proof verifies: the peer holds sync/key
    AUTHENTICATED  stream   AUTHENTICATED  any frame of the two streams, HEARTBEAT, ...
    any            bye      (same)         the connection ends (the session's part)

Every other pair is refused `refused_unexpected`: a second HELLO, an AUTH out of turn,
a frame before authentication.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from appliance.sync.frames import (
    Auth,
    FrameError,
    Hello,
    Reason,
    auth_proof,
    direction_key,
)
from appliance.sync.phases import Move, Table


class Handshake(Enum):
    AWAIT_HELLO = "await_hello"  # connected, our HELLO sent
    AWAIT_AUTH = "await_auth"  # the peer's HELLO in, keys derived, our AUTH sent
    AUTHENTICATED = "authenticated"  # the peer's AUTH verified


class Trigger(Enum):
    """The peer's frames as the handshake sees them (all of them come from the peer)."""

    HELLO = "hello"
    AUTH = "auth"
    STREAM = "stream"  # any frame that needs an authenticated peer
    BYE = "bye"


_A, _U, _OK = Handshake.AWAIT_HELLO, Handshake.AWAIT_AUTH, Handshake.AUTHENTICATED

HANDSHAKE: Table[Handshake, Trigger] = Table("handshake", Handshake, Trigger, [
    Move(_A, Trigger.HELLO, _U, "keys derived from both nonces; AUTH, SYNC_REQ and "
                                "CONFIG sent"),
    Move(_U, Trigger.AUTH, _OK, "the proof verifies: the peer holds sync/key; frames "
                                "may be large now"),
    Move(_OK, Trigger.STREAM, _OK, "a frame of either stream, HEARTBEAT, NOTICE, CONFIG"),
    Move(_A, Trigger.BYE, _A, "the connection ends"),
    Move(_U, Trigger.BYE, _U, "the connection ends"),
    Move(_OK, Trigger.BYE, _OK, "the connection ends"),
], peer={
    Trigger.HELLO: "second HELLO",
    Trigger.AUTH: "AUTH out of turn",
    Trigger.STREAM: "frame before authentication",
    Trigger.BYE: "BYE in handshake phase {phase}",
})


@dataclass(frozen=True, slots=True)
class Keys:
    """Action: switch the codec to the direction keys, then send `auth` (and the first
    frames under them: SYNC_REQ, CONFIG)."""

    send: bytes
    recv: bytes
    auth: Auth


@dataclass(slots=True)
class HandshakeSide:
    """Our side of one connection's handshake."""

    node: str  # our node name
    key: bytes  # sync/key
    auth_key: bytes  # frames.auth_key(key), derived once per session
    nonce: bytes  # ours, fresh for this connection
    my_hello: Hello
    phase: Handshake = Handshake.AWAIT_HELLO
    peer: Hello | None = None  # the peer's HELLO (names in it are for logs until AUTH)

    @property
    def authenticated(self) -> bool:
        return self.phase is Handshake.AUTHENTICATED

    def on_hello(self, f: Hello) -> Keys:
        nxt = HANDSHAKE.next(self.phase, Trigger.HELLO)
        if f.node == self.node:
            raise FrameError(Reason.NAME_CLASH, f"peer calls itself {f.node!r} too")
        if f.nonce == self.nonce:
            raise FrameError(Reason.BAD_AUTH, "peer echoed our nonce")
        if f.max_version < 1:
            raise FrameError(Reason.BAD_VERSION, f"peer max version {f.max_version}")
        self.phase = nxt
        self.peer = f
        key = self.key
        return Keys(direction_key(key, self.nonce, f.nonce),
                    direction_key(key, f.nonce, self.nonce),
                    Auth(auth_proof(key, self.my_hello, f, key=self.auth_key)))

    def on_auth(self, f: Auth) -> Hello:
        """The peer's HELLO, now proven."""
        nxt = HANDSHAKE.next(self.phase, Trigger.AUTH)
        peer = self.peer
        assert peer is not None  # AWAIT_AUTH is reached by the peer's HELLO only
        if not hmac.compare_digest(f.proof, auth_proof(self.key, peer, self.my_hello,
                                                       key=self.auth_key)):
            raise FrameError(Reason.BAD_AUTH, "AUTH proof does not verify")
        self.phase = nxt
        return peer

    def on_bye(self) -> None:
        """The peer says goodbye: allowed in every phase (the session ends the
        connection)."""
        HANDSHAKE.next(self.phase, Trigger.BYE)

    def on_stream(self) -> None:
        """A frame that needs an authenticated peer: refused before AUTH verified."""
        if self.phase is not Handshake.AUTHENTICATED:
            HANDSHAKE.next(self.phase, Trigger.STREAM)
