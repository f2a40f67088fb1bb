"""Sync wire format: typed frames, their byte layout, keys, and the per-connection
sealing (HMAC for the HELLO, an AEAD for every frame after it).

Pure: no sockets, no clock, no randomness. Nonces and keys come in as arguments.

A frame on the TCP stream (network byte order, docs/sync-protocol.md §Framing):

    version u8 (2) | type u8 | flags u16 (0) | length u32 | counter u64 | body | trailer

`counter` counts the frames sent in one direction of one connection, from 0; the
receiver demands exactly the next value, so a replayed, dropped or reordered frame is
refused even though it is genuine. Frame 0 of each side is its HELLO, sent before any
key exists: its trailer is HMAC-SHA256(K_hello, header || body) and its body is in clear,
so a HELLO carries nothing secret (no subscriber data, no config). Every later frame is
sealed with ChaCha20-Poly1305 (RFC 8439) under the direction key derived from sync/key
and both HELLO nonces: trailer = the 16-byte tag, body encrypted, nonce = 4 zero bytes ||
counter (a key lives for one direction of one connection and the counter never repeats
in it, so a nonce is never reused under a key), the 16 header bytes as associated data.

Rules for this module:
- A decoder returns a typed frame or raises FrameError with a Reason; nothing else
  escapes, whatever the bytes (tests/unit/test_sync_fuzz.py asserts it).
- The length is checked against the limit as soon as the 16 header bytes are there,
  before anything is buffered for the body. Until the peer has authenticated, the
  limit is PREAUTH_MAX_BODY: an unauthenticated peer never makes us buffer or
  authenticate more than a few KiB.
- Encoding is canonical: decode(encode(f)) == f and a decoder refuses trailing bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar

from appliance.leases.codec import LeaseDecodeError, decode_lease, encode_lease
from appliance.leases.model import Lease, LeaseState

VERSION = 2
OLD_VERSIONS = frozenset({1})  # earlier releases: refused with their own reason
HEADER = struct.Struct("!BBHIQ")  # version, type, flags, body length, frame counter
HEADER_LEN = HEADER.size  # 16
HELLO_MAC_LEN = 32  # HMAC-SHA256 of frame 0 (full length: it is sent once a connection)
TAG_LEN = 16  # the AEAD tag of every later frame
MAC_LEN = HELLO_MAC_LEN  # the proof in AUTH is an HMAC-SHA256 too
NONCE_LEN = 32
KEY_LEN = 32
DIGEST_LEN = 8  # per-setting digest in CONFIG's drift summary (keyed: not reversible)
# After authentication. CONFIG carries one summary line per reservation; 4 MiB leaves
# room for ~60k reservations while bounding what a peer can make us hold.
DEFAULT_MAX_BODY = 4 << 20
# Before it: a HELLO is about 100 bytes (a node name is at most 255), an AUTH 32.
PREAUTH_MAX_BODY = 4096
# Chosen by measurement (docs/sync-protocol.md §Measured): on this machine's
# python3-cryptography 38 both cost one OpenSSL context per call (~10 us) and the same
# for bulk; ChaCha20-Poly1305 was a little cheaper for the small frames that dominate
# (ACK, HEARTBEAT, one-lease UPDATES), and needs no AES instructions to be constant time.
AEAD = "chacha20-poly1305"
AEADS = ("chacha20-poly1305", "aes-256-gcm")


def _crypto() -> dict[str, object]:
    """python3-cryptography, imported on first use. Its OpenSSL backend imports socket
    (email.utils, for x509), which a pure module must not need in order to be imported
    (tests/unit/test_layering.py); the transport imports it at start-up, so the first
    connection does not pay for the import."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return {"chacha20-poly1305": ChaCha20Poly1305, "aes-256-gcm": AESGCM,
            "InvalidTag": InvalidTag, "SHA256": SHA256, "HKDF": HKDF}

_LABEL_HELLO = b"dhcp-hotbackup sync v2 hello key"
_LABEL_FRAME = b"dhcp-hotbackup sync v2 frame key"
_LABEL_AUTH_KEY = b"dhcp-hotbackup sync v2 auth key"
_LABEL_AUTH = b"dhcp-hotbackup sync v2 auth"
_LABEL_SETTING = b"dhcp-hotbackup sync v2 setting key"
_LABEL_CONFIG = b"dhcp-hotbackup sync v2 config"

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_2U64 = struct.Struct("!QQ")
_ACK = struct.Struct("!QI")
_BEGIN = struct.Struct("!BQQ")
# max_version, boot_id, epoch, last_seq, lease_count, wall clock (us since 1970)
_HELLO_FIXED = struct.Struct("!BQQQQq")
# last_seq, sender's wall clock at sending (us), the peer's stamp it echoes (us, 0: none),
# how long the sender held that stamp before this frame (us)
_HEARTBEAT = struct.Struct("!QqqI")
_NONCE_PAD = bytes(4)


class FrameType(IntEnum):
    HELLO = 1
    AUTH = 2
    SYNC_REQ = 3
    UPDATES = 4  # one or more lease changes; "UPDATE" is UPDATES with one lease
    ACK = 5
    BULK_BEGIN = 6
    BULK_PAGE = 7
    BULK_END = 8
    HEARTBEAT = 9
    NOTICE = 10
    BYE = 11
    CONFIG = 12  # the drift summary, after authentication (version 2)


class Reason(Enum):
    """Why input from the peer was refused. The value is the counter name
    (runtime tree stats/sync/<value>); every refusal also drops the connection."""

    # framing (raised by this module)
    BAD_MAC = "refused_bad_mac"  # MAC or AEAD tag does not verify: forged, corrupted, wrong key
    REPLAY = "refused_replay"  # genuine frame, counter already seen
    REORDERED = "refused_reordered"  # genuine frame, counter skips ahead
    TRUNCATED = "refused_truncated"  # stream ended inside a frame
    OVERSIZED = "refused_oversized"  # declared body length above the limit
    BAD_VERSION = "refused_bad_version"  # header version we do not speak
    OLD_VERSION = "refused_old_version"  # a peer of an earlier release (wire version 1)
    BAD_TYPE = "refused_bad_type"  # authenticated frame of a type we do not know
    MALFORMED = "refused_malformed"  # body inconsistent with its type
    # protocol (raised by session.py)
    BAD_AUTH = "refused_bad_auth"  # the peer does not know sync/key (HELLO MAC or AUTH)
    UNEXPECTED = "refused_unexpected"  # a valid frame at a time the protocol forbids it
    NAME_CLASH = "refused_name_clash"  # the peer claims our own node name
    # transport (raised by transport.py)
    UNKNOWN_PEER = "refused_unknown_peer"  # connection from an address not in sync/peer
    PREAUTH_LIMIT = "refused_preauth_limit"  # too many unauthenticated connections at once


class FrameError(Exception):
    """Input refused; `reason` names the counter, `detail` is for the log line."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class BulkKind(IntEnum):
    SNAPSHOT = 1  # BULK_PAGEs of the whole table, then UPDATES since from_seq
    DELTA = 2  # UPDATES since from_seq only


class NoticeCode(IntEnum):
    """NOTICE reasons. Unknown codes are delivered as plain ints (forward compatible)."""

    CLIENT_LINK_DOWN = 1  # "my client link is down: take over now"
    CLIENT_LINK_UP = 2
    STEPPING_DOWN = 3  # leaving master on purpose (shutdown, maintenance)
    ROLE_ACTIVE = 4  # the sender now serves DHCP (sent on every role change and connect)
    ROLE_STANDBY = 5  # the sender no longer serves DHCP
    STORE_FAILED = 6  # "my lease store cannot write (disk full, I/O error): take over now"
    # "take these groups now": detail "<group>,<group>|<why>" (the pair policy's HandOver:
    # an interface of the group is down, or the lease store cannot write)
    HAND_OVER = 7


class ByeReason(IntEnum):
    SHUTDOWN = 1  # the daemon is stopping on purpose
    DUPLICATE = 2  # the other of two simultaneous connections is kept
    REPLACED = 3  # a newer connection from a restarted peer replaces this one
    PROTOCOL_ERROR = 4


# -- frames --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame each side sends, in clear (authenticated, not encrypted: no key
    exists yet). Identifies the node and its change log, carries the nonce for key
    derivation and the sender's wall clock. Nothing in it is secret."""

    TYPE: ClassVar[FrameType] = FrameType.HELLO
    node: str
    nonce: bytes  # NONCE_LEN random bytes from the transport
    boot_id: int  # random per daemon start: tells a restarted peer from a duplicate
    epoch: int  # id of the sender's lease database; changes when it starts empty
    last_seq: int  # newest change in the sender's log
    lease_count: int
    wall_us: int = 0  # the sender's wall clock when it sent this (us since 1970; 0: unknown)
    max_version: int = VERSION  # highest wire version the sender speaks (negotiation)


@dataclass(frozen=True, slots=True)
class Auth:
    TYPE: ClassVar[FrameType] = FrameType.AUTH
    proof: bytes  # auth_proof(): the response to the peer's nonce (the challenge)


@dataclass(frozen=True, slots=True)
class SyncReq:
    """'I hold your log up to `seq` of database `epoch`': asks for the rest."""

    TYPE: ClassVar[FrameType] = FrameType.SYNC_REQ
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class Updates:
    TYPE: ClassVar[FrameType] = FrameType.UPDATES
    leases: tuple[Lease, ...]  # strictly increasing seq


@dataclass(frozen=True, slots=True)
class Ack:
    """Everything up to `seq` is durable here; `pages` BULK_PAGEs of the current bulk are."""

    TYPE: ClassVar[FrameType] = FrameType.ACK
    seq: int
    pages: int = 0


@dataclass(frozen=True, slots=True)
class BulkBegin:
    TYPE: ClassVar[FrameType] = FrameType.BULK_BEGIN
    kind: BulkKind
    total: int  # leases to expect (snapshot) or changes (delta): for progress only
    from_seq: int  # UPDATES that follow have seq > from_seq


@dataclass(frozen=True, slots=True)
class BulkPage:
    TYPE: ClassVar[FrameType] = FrameType.BULK_PAGE
    leases: tuple[Lease, ...]  # any order, any origin


@dataclass(frozen=True, slots=True)
class BulkEnd:
    """Catch-up done: with everything before this frame the receiver holds the sender's
    log up to `seq`."""

    TYPE: ClassVar[FrameType] = FrameType.BULK_END
    seq: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Sent every heartbeat_s, under load too: liveness, the sender's log position, and
    one NTP-style time sample (RFC 5905 §8: the receiver has t1 = `echo_us` it sent,
    t2 = tx_us - dwell_us and t3 = tx_us on the sender's clock, t4 its own receive time)."""

    TYPE: ClassVar[FrameType] = FrameType.HEARTBEAT
    last_seq: int  # the sender's newest change: lets the receiver show how far behind it is
    tx_us: int = 0  # the sender's wall clock when it sent this (us; 0: unknown)
    echo_us: int = 0  # the newest wall-clock stamp the sender received from us (0: none)
    dwell_us: int = 0  # how long the sender held `echo_us` before sending this (us)


@dataclass(frozen=True, slots=True)
class Notice:
    TYPE: ClassVar[FrameType] = FrameType.NOTICE
    code: int  # NoticeCode, or an unknown int from a newer peer
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Bye:
    TYPE: ClassVar[FrameType] = FrameType.BYE
    reason: int  # ByeReason, or an unknown int


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    """The settings that must match on both devices: a keyed digest of each and one over
    all of them. Sent after AUTH (encrypted), again after a reload."""

    TYPE: ClassVar[FrameType] = FrameType.CONFIG
    digest: bytes  # 32 bytes over the whole summary
    summary: tuple[tuple[str, bytes], ...] = ()  # (config path, DIGEST_LEN digest)


Frame = Hello | Auth | SyncReq | Updates | Ack | BulkBegin | BulkPage | BulkEnd | Heartbeat \
    | Notice | Bye | ConfigSummary


# -- keys ----------------------------------------------------------------------------


def _h(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _hkdf(psk: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256, 32 bytes."""
    c = _crypto()
    return c["HKDF"](c["SHA256"](), KEY_LEN, salt or None, info).derive(psk)  # type: ignore[operator]


class FrameMac:
    """HMAC-SHA256 (RFC 2104) under one key, with the keyed inner and outer SHA-256
    states computed once: a frame then costs two state copies instead of a full key
    setup (0.8 us instead of 2 us a frame on this machine). Same bytes as hmac.digest."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # RFC 2104 §2: longer keys are hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, msg: bytes | bytearray | memoryview) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class HelloSeal:
    """Frame 0 (HELLO): authenticated with HMAC-SHA256 under K_hello, body in clear.
    K_hello depends on sync/key alone, the same on every connection: so it seals
    nothing but a HELLO, which holds nothing secret, and never an AEAD nonce."""

    __slots__ = ("_mac",)
    trailer = HELLO_MAC_LEN

    def __init__(self, key: bytes) -> None:
        self._mac = FrameMac(key)

    def seal(self, header: bytes, body: bytes) -> bytes:
        msg = header + body
        return msg + self._mac.digest(msg)

    def open(self, data: bytes) -> bytes:
        end = len(data) - HELLO_MAC_LEN
        if not hmac.compare_digest(self._mac.digest(memoryview(data)[:end]), data[end:]):
            raise FrameError(Reason.BAD_MAC, f"frame {_U64.unpack_from(data, 8)[0]} "
                                             f"(type {data[1]})")
        return data[HEADER_LEN:end]


class AeadSeal:
    """Every frame after HELLO: the body encrypted and, with the header as associated
    data, authenticated (AEAD; RFC 8439 or NIST SP 800-38D). The 96-bit nonce is 4 zero
    bytes and the frame counter from the header: one key per direction of one
    connection, and the sender's counter only grows, so no nonce repeats under a key."""

    __slots__ = ("_aead", "_invalid")
    trailer = TAG_LEN

    def __init__(self, key: bytes, aead: str = AEAD) -> None:
        if len(key) != KEY_LEN:
            raise ValueError(f"an AEAD key is {KEY_LEN} bytes")
        if aead not in AEADS:
            raise ValueError(f"AEAD {aead!r}: one of {', '.join(AEADS)}")
        c = _crypto()
        self._aead = c[aead](key)  # type: ignore[operator]
        self._invalid: type[Exception] = c["InvalidTag"]  # type: ignore[assignment]

    def seal(self, header: bytes, body: bytes) -> bytes:
        return header + self._aead.encrypt(_NONCE_PAD + header[8:16], body, header)

    def open(self, data: bytes) -> bytes:
        header = data[:HEADER_LEN]
        try:
            return self._aead.decrypt(_NONCE_PAD + header[8:16], data[HEADER_LEN:], header)
        except self._invalid:
            raise FrameError(Reason.BAD_MAC, f"frame {_U64.unpack_from(data, 8)[0]} "
                                             f"(type {data[1]})") from None


Seal = HelloSeal | AeadSeal


def hello_key(psk: bytes) -> bytes:
    """Key of frame 0 (HELLO): proves sync/key knowledge, not freshness (AUTH does)."""
    return _hkdf(psk, b"", _LABEL_HELLO)


def direction_key(psk: bytes, sender_nonce: bytes, receiver_nonce: bytes) -> bytes:
    """AEAD key of every frame after HELLO from the owner of `sender_nonce`: HKDF with
    both nonces as the salt, in sending order, so each direction of each connection has
    a key of its own and a frame reflected back to its sender does not verify."""
    return _hkdf(psk, sender_nonce + receiver_nonce, _LABEL_FRAME)


def auth_key(psk: bytes) -> bytes:
    return _hkdf(psk, b"", _LABEL_AUTH_KEY)


def auth_proof(psk: bytes, own_hello: Hello, peer_hello: Hello, *,
               key: bytes | None = None) -> bytes:
    """Challenge-response: a MAC over the peer's nonce (the challenge) and both HELLOs
    as sent, so it is fresh, bound to this connection and to what each side announced.
    `key` is auth_key(psk), when the caller keeps it."""
    return _h(key or auth_key(psk),
              _LABEL_AUTH + encode_body(own_hello) + encode_body(peer_hello))


def setting_key(psk: bytes) -> bytes:
    return _hkdf(psk, b"", _LABEL_SETTING)


def setting_digest(psk: bytes, path: str, value: str, *, key: bytes | None = None) -> bytes:
    """Digest of one config value for the drift summary. Keyed, so a low-entropy value
    (a lease time) cannot be recovered even by whoever holds the decrypted frame."""
    return _h(key or setting_key(psk),
              path.encode() + b"\0" + value.encode())[:DIGEST_LEN]


def config_digest(key: bytes, summary: Sequence[tuple[str, bytes]]) -> bytes:
    """The digest over a whole (sorted) summary; `key` is setting_key(psk)."""
    h = hmac.new(key, _LABEL_CONFIG, "sha256")
    for p, d in summary:
        h.update(p.encode() + b"\0" + d)
    return h.digest()


# -- bodies --------------------------------------------------------------------------


def _short(b: bytes) -> bytes:
    if len(b) > 255:
        raise ValueError("string longer than 255 bytes")
    return bytes((len(b),)) + b


def _leases_body(leases: Sequence[Lease]) -> bytes:
    parts = [_U32.pack(len(leases))]
    pack16 = _U16.pack
    for lease in leases:
        b = encode_lease(lease)
        parts.append(pack16(len(b)))
        parts.append(b)
    return b"".join(parts)


def encoded_size(lease: Lease) -> int:
    """Bytes a lease takes inside UPDATES/BULK_PAGE (for splitting batches)."""
    return 2 + len(encode_lease(lease))


def encode_body(frame: Frame) -> bytes:
    t = frame.TYPE
    if t is FrameType.UPDATES or t is FrameType.BULK_PAGE:
        return _leases_body(frame.leases)  # type: ignore[union-attr]
    if t is FrameType.ACK:
        return _ACK.pack(frame.seq, frame.pages)  # type: ignore[union-attr]
    if t is FrameType.HEARTBEAT:
        f0: Heartbeat = frame  # type: ignore[assignment]
        return _HEARTBEAT.pack(f0.last_seq, f0.tx_us, f0.echo_us, f0.dwell_us)
    if t is FrameType.SYNC_REQ:
        return _2U64.pack(frame.epoch, frame.seq)  # type: ignore[union-attr]
    if t is FrameType.BULK_END:
        return _U64.pack(frame.seq)  # type: ignore[union-attr]
    if t is FrameType.BULK_BEGIN:
        return _BEGIN.pack(frame.kind, frame.total, frame.from_seq)  # type: ignore[union-attr]
    if t is FrameType.AUTH:
        if len(frame.proof) != MAC_LEN:  # type: ignore[union-attr]
            raise ValueError("AUTH proof must be 32 bytes")
        return frame.proof  # type: ignore[union-attr]
    if t is FrameType.NOTICE:
        f: Notice = frame  # type: ignore[assignment]
        d = f.detail.encode("utf-8")
        return _U16.pack(f.code) + _short(d)
    if t is FrameType.BYE:
        return _U16.pack(frame.reason)  # type: ignore[union-attr]
    if t is FrameType.HELLO:
        h: Hello = frame  # type: ignore[assignment]
        if len(h.nonce) != NONCE_LEN:
            raise ValueError("HELLO nonce must be 32 bytes")
        return b"".join((
            _HELLO_FIXED.pack(h.max_version, h.boot_id, h.epoch, h.last_seq, h.lease_count,
                              h.wall_us),
            _short(h.node.encode("utf-8")),
            h.nonce,
        ))
    if t is FrameType.CONFIG:
        c: ConfigSummary = frame  # type: ignore[assignment]
        if len(c.digest) != 32:
            raise ValueError("CONFIG digest must be 32 bytes")
        parts = [c.digest, _U32.pack(len(c.summary))]
        for path, digest in c.summary:
            p = path.encode("utf-8")
            if len(p) > 0xFFFF or len(digest) != DIGEST_LEN:
                raise ValueError(f"bad summary entry {path!r}")
            parts.append(_U16.pack(len(p)))
            parts.append(p)
            parts.append(digest)
        return b"".join(parts)
    raise ValueError(f"not a frame: {frame!r}")


def _bad(detail: str) -> FrameError:
    return FrameError(Reason.MALFORMED, detail)


def _exact(body: bytes, n: int, what: str) -> None:
    if len(body) != n:
        raise _bad(f"{what} body is {len(body)} bytes, expected {n}")


def _parse_leases(body: bytes) -> tuple[Lease, ...]:
    n = len(body)
    if n < 4:
        raise _bad("lease list truncated")
    (count,) = _U32.unpack_from(body, 0)
    # Each lease takes at least 2 + 33 bytes: a count that cannot fit is refused before
    # any work, so a tiny frame cannot announce billions of leases.
    if count * 35 > n - 4:
        raise _bad(f"lease count {count} does not fit in {n} bytes")
    out = []
    pos = 4
    mv = memoryview(body)
    unpack16 = _U16.unpack_from
    offered = LeaseState.OFFERED
    for _ in range(count):
        if pos + 2 > n:
            raise _bad("lease list truncated")
        (ln,) = unpack16(body, pos)
        end = pos + 2 + ln
        if end > n:
            raise _bad("lease overruns the frame")
        try:
            lease = decode_lease(mv[pos + 2 : end])
        except LeaseDecodeError as e:
            raise _bad(f"lease {len(out)}: {e}") from None
        if lease.state is offered:
            raise _bad("an OFFERED lease is never replicated")
        out.append(lease)
        pos = end
    if pos != n:
        raise _bad("trailing bytes after lease list")
    return tuple(out)


def _parse_hello(body: bytes) -> Hello:
    n = len(body)
    pos = _HELLO_FIXED.size
    if n < pos + 1:
        raise _bad("HELLO truncated")
    maxv, boot, epoch, last, count, wall = _HELLO_FIXED.unpack_from(body, 0)
    ln = body[pos]
    end = pos + 1 + ln
    if end + NONCE_LEN != n:
        raise _bad(f"HELLO is {n} bytes, its node name says {end + NONCE_LEN}")
    try:
        node = body[pos + 1 : end].decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("HELLO node name is not UTF-8") from None
    return Hello(node=node, nonce=body[end:], boot_id=boot, epoch=epoch, last_seq=last,
                 lease_count=count, wall_us=wall, max_version=maxv)


def _parse_config(body: bytes) -> ConfigSummary:
    n = len(body)
    if n < 36:
        raise _bad("CONFIG truncated")
    digest = body[:32]
    (entries,) = _U32.unpack_from(body, 32)
    pos = 36
    if entries * (2 + DIGEST_LEN) > n - pos:
        raise _bad(f"CONFIG summary count {entries} does not fit")
    summary = []
    for _ in range(entries):
        if pos + 2 > n:
            raise _bad("CONFIG summary truncated")
        (pl,) = _U16.unpack_from(body, pos)
        pend = pos + 2 + pl
        if pend + DIGEST_LEN > n:
            raise _bad("CONFIG summary truncated")
        try:
            path = body[pos + 2 : pend].decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("CONFIG summary path is not UTF-8") from None
        summary.append((path, body[pend : pend + DIGEST_LEN]))
        pos = pend + DIGEST_LEN
    if pos != n:
        raise _bad("trailing bytes after CONFIG")
    return ConfigSummary(digest, tuple(summary))


def decode_body(ftype: int, body: bytes) -> Frame:
    """The typed frame for an authenticated body. FrameError(BAD_TYPE or MALFORMED)."""
    if ftype == FrameType.UPDATES:
        return Updates(_parse_leases(body))
    if ftype == FrameType.ACK:
        _exact(body, _ACK.size, "ACK")
        return Ack(*_ACK.unpack(body))
    if ftype == FrameType.HEARTBEAT:
        _exact(body, _HEARTBEAT.size, "HEARTBEAT")
        return Heartbeat(*_HEARTBEAT.unpack(body))
    if ftype == FrameType.BULK_PAGE:
        return BulkPage(_parse_leases(body))
    if ftype == FrameType.SYNC_REQ:
        _exact(body, 16, "SYNC_REQ")
        return SyncReq(*_2U64.unpack(body))
    if ftype == FrameType.BULK_END:
        _exact(body, 8, "BULK_END")
        return BulkEnd(*_U64.unpack(body))
    if ftype == FrameType.BULK_BEGIN:
        _exact(body, _BEGIN.size, "BULK_BEGIN")
        kind, total, from_seq = _BEGIN.unpack(body)
        if kind not in (BulkKind.SNAPSHOT, BulkKind.DELTA):
            raise _bad(f"unknown bulk kind {kind}")
        return BulkBegin(BulkKind(kind), total, from_seq)
    if ftype == FrameType.AUTH:
        _exact(body, MAC_LEN, "AUTH")
        return Auth(body)
    if ftype == FrameType.HELLO:
        return _parse_hello(body)
    if ftype == FrameType.CONFIG:
        return _parse_config(body)
    if ftype == FrameType.NOTICE:
        if len(body) < 3 or len(body) != 3 + body[2]:
            raise _bad("NOTICE length mismatch")
        try:
            detail = body[3:].decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("NOTICE detail is not UTF-8") from None
        return Notice(_U16.unpack_from(body, 0)[0], detail)
    if ftype == FrameType.BYE:
        _exact(body, 2, "BYE")
        return Bye(_U16.unpack(body)[0])
    raise FrameError(Reason.BAD_TYPE, f"frame type {ftype}")


# -- whole frames --------------------------------------------------------------------


def _seal_of(key: bytes | Seal) -> Seal:
    """A raw 32-byte key means an AEAD key (every frame but HELLO)."""
    return key if isinstance(key, HelloSeal | AeadSeal) else AeadSeal(key)


def encode_frame(frame: Frame, key: bytes | Seal, counter: int) -> bytes:
    body = encode_body(frame)
    return _seal_of(key).seal(HEADER.pack(VERSION, frame.TYPE, 0, len(body), counter), body)


def check_header(header: bytes | bytearray | memoryview, max_body: int = DEFAULT_MAX_BODY,
                 trailer: int = TAG_LEN) -> int:
    """Validate the 16 header bytes alone; return the bytes still to read (body +
    trailer). This is where an oversized frame is refused, before its body is buffered."""
    version, _ftype, flags, length, _counter = HEADER.unpack_from(header, 0)
    if version != VERSION:
        if version in OLD_VERSIONS:
            raise FrameError(Reason.OLD_VERSION, f"version {version}, we speak {VERSION}")
        raise FrameError(Reason.BAD_VERSION, f"version {version}, we speak {VERSION}")
    if length > max_body:
        raise FrameError(Reason.OVERSIZED, f"{length} bytes, limit {max_body}")
    if flags:
        # Checked before the MAC too: no flag is defined in version 2.
        raise FrameError(Reason.MALFORMED, f"flags {flags:#x}")
    return length + trailer


def frame_size(header: bytes | bytearray | memoryview, hello: bool) -> int:
    """Total bytes of the frame that starts with `header` (any version-2 header):
    `hello` says whether it is a side's first frame (HMAC trailer) or a later one."""
    return HEADER_LEN + HEADER.unpack_from(header, 0)[3] + \
        (HELLO_MAC_LEN if hello else TAG_LEN)


def decode_frame(data: bytes, key: bytes | Seal, counter: int,
                 max_body: int = DEFAULT_MAX_BODY) -> Frame:
    """Decode exactly one whole frame, expected to carry `counter` under `key`."""
    if len(data) < HEADER_LEN:
        raise FrameError(Reason.TRUNCATED, f"{len(data)} bytes, header is {HEADER_LEN}")
    seal = _seal_of(key)
    need = check_header(data, max_body, seal.trailer)
    total = HEADER_LEN + need
    if len(data) < total:
        raise FrameError(Reason.TRUNCATED, f"{len(data)} of {total} bytes")
    if len(data) > total:
        raise FrameError(Reason.MALFORMED, f"{len(data) - total} bytes after the frame")
    return _verify(data, seal, counter)


def _verify(data: bytes, seal: Seal, counter: int) -> Frame:
    """`data` is exactly one frame whose header passed check_header()."""
    body = seal.open(data)
    got = _U64.unpack_from(data, 8)[0]
    if got != counter:
        if got < counter:
            raise FrameError(Reason.REPLAY, f"counter {got}, expected {counter}")
        raise FrameError(Reason.REORDERED, f"counter {got}, expected {counter}")
    return decode_body(data[1], body)


class FrameCodec:
    """One connection's framing state: seals, the two counters and the receive buffer.

    Sending: encode(frame) -> bytes. Receiving: feed(data) then next_frame() until it
    returns None. next_frame() hands out one frame at a time because the keys change
    after HELLO: the caller switches keys (set_session_keys) before the next frame is
    verified, and raises `max_body` once the peer has authenticated. After a FrameError
    the codec refuses everything (the connection is dead).
    """

    __slots__ = ("_buf", "_error", "_need", "_pos", "_recv", "_recv_ctr", "_send",
                 "_send_ctr", "aead", "max_body")

    def __init__(self, psk: bytes, max_body: int = PREAUTH_MAX_BODY, aead: str = AEAD,
                 ) -> None:
        hello = HelloSeal(hello_key(psk))
        self._send: Seal = hello
        self._recv: Seal = hello
        self.aead = aead
        self._send_ctr = 0
        self._recv_ctr = 0
        self._buf = bytearray()
        self._pos = 0
        self._need = 0  # total length of the frame at _pos once its header is checked
        self._error: FrameError | None = None
        self.max_body = max_body

    def set_session_keys(self, send_key: bytes, recv_key: bytes) -> None:
        self._send = AeadSeal(send_key, self.aead)
        self._recv = AeadSeal(recv_key, self.aead)

    @property
    def keyed(self) -> bool:
        return isinstance(self._recv, AeadSeal)

    @property
    def frames_sent(self) -> int:
        return self._send_ctr

    @property
    def frames_received(self) -> int:
        return self._recv_ctr

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def encode(self, frame: Frame) -> bytes:
        body = encode_body(frame)
        if len(body) > DEFAULT_MAX_BODY:
            raise ValueError(f"frame body of {len(body)} bytes over the limit")
        out = self._send.seal(HEADER.pack(VERSION, frame.TYPE, 0, len(body), self._send_ctr),
                              body)
        self._send_ctr += 1
        return out

    def encode_leases(self, ftype: FrameType, leases: Sequence[Lease], budget: int,
                      ) -> list[tuple[bytes, int]]:
        """UPDATES or BULK_PAGE frames carrying `leases` in order, each body at most
        `budget` bytes (but at least one lease): [(frame bytes, leases in it)]. Each lease
        is encoded once, straight into its frame body."""
        if ftype is not FrameType.UPDATES and ftype is not FrameType.BULK_PAGE:
            raise ValueError(f"{ftype!r} does not carry leases")
        budget = min(budget, DEFAULT_MAX_BODY)
        out: list[tuple[bytes, int]] = []
        parts: list[bytes] = []
        size = 4
        pack16 = _U16.pack
        for lease in leases:
            b = encode_lease(lease)
            n = 2 + len(b)
            if parts and size + n > budget:
                out.append(self._lease_frame(ftype, parts))
                parts = []
                size = 4
            parts.append(pack16(len(b)))
            parts.append(b)
            size += n
        if parts or not out:
            out.append(self._lease_frame(ftype, parts))
        return out

    def _lease_frame(self, ftype: FrameType, parts: list[bytes]) -> tuple[bytes, int]:
        count = len(parts) // 2
        body = _U32.pack(count) + b"".join(parts)
        out = self._send.seal(HEADER.pack(VERSION, ftype, 0, len(body), self._send_ctr), body)
        self._send_ctr += 1
        return out, count

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is None:
            self._buf += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, None if more bytes are needed; FrameError if the
        stream is refused (then again on every later call)."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        try:
            if not self._need:
                if avail < HEADER_LEN:
                    return None
                self._need = HEADER_LEN + check_header(buf[pos : pos + HEADER_LEN],
                                                       self.max_body, self._recv.trailer)
            need = self._need
            if avail < need:
                return None
            data = bytes(buf[pos : pos + need])
            self._need = 0
            self._pos = pos + need
            if self._pos == len(buf):
                buf.clear()
                self._pos = 0
            elif self._pos > 65536 and self._pos * 2 > len(buf):
                # Drop consumed bytes now and then, not per frame (that would be quadratic).
                del buf[: self._pos]
                self._pos = 0
            frame = _verify(data, self._recv, self._recv_ctr)
        except FrameError as e:
            self._error = e
            raise
        self._recv_ctr += 1
        return frame

    def eof(self) -> None:
        """The stream ended: FrameError(TRUNCATED) if it ended inside a frame."""
        if self._error is None and self.buffered:
            self._error = FrameError(Reason.TRUNCATED,
                                     f"stream ended {self.buffered} bytes into a frame")
            raise self._error
