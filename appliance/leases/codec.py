"""Binary encoding of one Lease, shared by the journal and the sync wire format.

Layout (network byte order):

    ip u32 | state u8 | flags u8 | start f64 | expires f64 | seq u64
    then, each as len u8 + bytes: mac, pool, origin,
    and, when the flag bit is set: client_id (1), hostname (2), relay_info (4),
    then relay u32 (8: the giaddr the binding was made through)

Every variable field is at most 255 bytes (model.MAX_FIELD, as the DHCP options it comes
from); the DHCP server bounds them when it decides, so encode_lease() raising ValueError
is a bug, never a client's doing. A record without flag 8 (written before it existed)
reads as relay 0. decode_lease() raises LeaseDecodeError on any inconsistency; it never
reads past the buffer it is given.
"""

from __future__ import annotations

import struct
from math import isfinite

from appliance.leases.model import MAX_FIELD, Lease, LeaseState

_HEAD = struct.Struct("!IBBddQ")
_U32 = struct.Struct("!I")
_F_CLIENT_ID = 1
_F_HOSTNAME = 2
_F_RELAY = 4
_F_GIADDR = 8
_F_ALL = _F_CLIENT_ID | _F_HOSTNAME | _F_RELAY | _F_GIADDR
_STATES = {int(s): s for s in LeaseState}


class LeaseDecodeError(ValueError):
    pass


_SHARED: dict[str, str] = {}


def _shared(s: str) -> str:
    if len(_SHARED) > 10000:  # names are few; a flood of distinct ones is not cached
        return s
    return _SHARED.setdefault(s, s)


_RELAYS: dict[int, int] = {}


def _relay_addr(ip: int) -> int:
    """Relay addresses repeat on every relayed lease: share one int object each."""
    if len(_RELAYS) > 10000:
        return ip
    return _RELAYS.setdefault(ip, ip)


def _short(b: bytes, what: str) -> bytes:
    if len(b) > MAX_FIELD:
        raise ValueError(f"lease {what} longer than {MAX_FIELD} bytes")
    return bytes((len(b),)) + b


def encode_lease(lease: Lease) -> bytes:
    if not (isfinite(lease.start) and isfinite(lease.expires)):
        raise ValueError("lease times must be finite numbers")
    flags = 0
    tail = []
    if lease.client_id is not None:
        flags |= _F_CLIENT_ID
        tail.append(_short(lease.client_id, "client_id"))
    if lease.hostname is not None:
        flags |= _F_HOSTNAME
        tail.append(_short(lease.hostname.encode("utf-8", "surrogateescape"), "hostname"))
    if lease.relay_info is not None:
        flags |= _F_RELAY
        tail.append(_short(lease.relay_info, "relay_info"))
    if lease.relay:
        flags |= _F_GIADDR
        tail.append(_U32.pack(lease.relay))
    return b"".join(
        (
            _HEAD.pack(lease.ip, lease.state, flags, lease.start, lease.expires, lease.seq),
            _short(lease.mac, "mac"),
            _short(lease.pool.encode(), "pool"),
            _short(lease.origin.encode(), "origin"),
            *tail,
        )
    )


def decode_lease(buf: bytes | memoryview) -> Lease:
    """Decode exactly one lease occupying all of `buf`."""
    buf = bytes(buf)
    n = len(buf)
    if n < _HEAD.size:
        raise LeaseDecodeError("lease record truncated")
    ip, state, flags, start, expires, seq = _HEAD.unpack_from(buf, 0)
    if state not in _STATES:
        raise LeaseDecodeError(f"unknown lease state {state}")
    if flags & ~_F_ALL:
        raise LeaseDecodeError(f"unknown lease flags {flags:#x}")
    if not (isfinite(start) and isfinite(expires)):
        # NaN or an infinity: no time a server stamps, and the expiry index cannot file it.
        raise LeaseDecodeError("lease time is not a finite number")
    pos = _HEAD.size

    def take() -> bytes:
        nonlocal pos
        if pos >= n:
            raise LeaseDecodeError("lease record truncated")
        ln = buf[pos]
        end = pos + 1 + ln
        if end > n:
            raise LeaseDecodeError("lease field overruns the record")
        v = buf[pos + 1 : end]
        pos = end
        return v

    mac = take()
    try:
        # Pool and origin names repeat on every lease: share one string object each.
        pool = _shared(take().decode())
        origin = _shared(take().decode())
    except UnicodeDecodeError as e:
        raise LeaseDecodeError("lease pool or origin is not UTF-8") from e
    client_id = take() if flags & _F_CLIENT_ID else None
    hostname = take().decode("utf-8", "surrogateescape") if flags & _F_HOSTNAME else None
    relay = take() if flags & _F_RELAY else None
    giaddr = 0
    if flags & _F_GIADDR:
        if pos + 4 > n:
            raise LeaseDecodeError("lease record truncated")
        giaddr = _relay_addr(_U32.unpack_from(buf, pos)[0])
        pos += 4
    if pos != n:
        raise LeaseDecodeError("trailing bytes after lease record")
    return Lease(
        ip=ip,
        mac=mac,
        client_id=client_id,
        state=_STATES[state],
        start=start,
        expires=expires,
        pool=pool,
        hostname=hostname,
        relay_info=relay,
        seq=seq,
        origin=origin,
        relay=giaddr,
    )
