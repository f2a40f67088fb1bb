"""DHCPv4 message codec: the BOOTP header (RFC 2131 §2) and the options area around it.

Rules:
- This module turns bytes into a DhcpMessage and back; it decides nothing about leases.
- decode() never raises anything but DecodeError, whose `reason` is one of DecodeReason
  (each becomes a `dropped_malformed` sub-counter); tests/unit/test_dhcp_fuzz.py holds it
  to that.
- Option values stay raw bytes keyed by code; typed views live in dhcp/options.py, so
  an option nobody asked about costs one dict slot and no parsing.
- It is the per-packet path: one struct for the 240 fixed bytes, a tight option loop,
  no validation in the dataclass constructor.

Message layout (RFC 2131 §2, Figure 1), offsets in bytes:

    0 op | 1 htype | 2 hlen | 3 hops | 4 xid(4) | 8 secs(2) | 10 flags(2)
    12 ciaddr | 16 yiaddr | 20 siaddr | 24 giaddr | 28 chaddr(16)
    44 sname(64) | 108 file(128) | 236 magic cookie(4) | 240 options...
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import StrEnum

from appliance.dhcp.enums import BOOTP_MIN_SIZE, MAGIC_COOKIE, Op, Opt

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
HEADER_LEN = _HEADER.size  # 240: fixed fields plus the magic cookie
assert HEADER_LEN == 240

# Largest message we accept. Option 57 may announce up to 65535 (RFC 2132 §9.10), but
# nothing on an Ethernet edge sends more than one frame's worth; 4096 leaves room for
# jumbo frames and bounds the work a hostile packet can cause.
MAX_MESSAGE_LEN = 4096

_SNAME = slice(44, 108)
_FILE = slice(108, 236)
_ZERO4 = bytes(4)
_ZERO16 = bytes(16)
_ZERO64 = bytes(64)
_ZERO128 = bytes(128)
_OPT_OVERLOAD = int(Opt.OVERLOAD)
_OPT_MESSAGE_TYPE = int(Opt.MESSAGE_TYPE)


class DecodeReason(StrEnum):
    """Why a buffer is not a DHCP message. The values are stable counter names."""

    TRUNCATED = "truncated"  # shorter than the 240-byte header + cookie
    OVERSIZED = "oversized"  # longer than MAX_MESSAGE_LEN
    BAD_MAGIC = "bad_magic"  # RFC 2131 §3: cookie 99.130.83.99 must follow the header
    BAD_OP = "bad_op"  # op neither BOOTREQUEST nor BOOTREPLY
    BAD_HLEN = "bad_hlen"  # hlen larger than the 16-byte chaddr field
    OPTION_OVERRUN = "option_overrun"  # an option's length runs past its field
    BAD_OVERLOAD = "bad_overload"  # option 52 not one byte of 1, 2 or 3 (RFC 2132 §9.3)


class DecodeError(ValueError):
    """A buffer that is not a well-formed DHCP message; see DecodeReason."""

    def __init__(self, reason: DecodeReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


def _parse_options(buf: bytes, i: int, end: int, opts: dict[int, bytes], where: str) -> None:
    """Read code/length/value options from buf[i:end] into opts (RFC 2132 §2).

    PAD is skipped and END stops the walk: what follows END is padding. Running off the
    end of the field without END is tolerated when the last option ends exactly there.
    A code that repeats is concatenated onto the earlier value (RFC 3396 §7).
    """
    while i < end:
        code = buf[i]
        if code == 255:
            return
        if code == 0:
            i += 1
            continue
        if i + 1 >= end:
            raise DecodeError(DecodeReason.OPTION_OVERRUN, f"{where}: option {code} has no length")
        j = i + 2 + buf[i + 1]
        if j > end:
            raise DecodeError(
                DecodeReason.OPTION_OVERRUN, f"{where}: option {code} runs {j - end} bytes past"
            )
        prev = opts.get(code)
        opts[code] = buf[i + 2 : j] if prev is None else prev + buf[i + 2 : j]
        i = j


@dataclass(slots=True)
class DhcpMessage:
    """One DHCP/BOOTP message. Addresses are 4 raw bytes; chaddr/sname/file are the whole
    fixed-size fields, raw. `options` maps code -> raw value in wire order, PAD/END/OVERLOAD
    omitted, repeated codes concatenated (RFC 3396).

    `overload` records the option 52 value seen by decode() (1 file, 2 sname, 3 both,
    0 none); those fields' options are already merged into `options`, so it takes no
    part in equality and encode() ignores it.
    """

    op: int
    htype: int
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    ciaddr: bytes
    yiaddr: bytes
    siaddr: bytes
    giaddr: bytes
    chaddr: bytes
    sname: bytes
    file: bytes
    options: dict[int, bytes]
    overload: int = field(default=0, compare=False)

    @property
    def mac(self) -> bytes:
        """The client hardware address: chaddr[:hlen], hlen clamped to the 16-byte field."""
        return self.chaddr[: min(self.hlen, 16)]

    @property
    def message_type(self) -> int | None:
        """Option 53 (RFC 2132 §9.6), or None when absent or not exactly one byte."""
        v = self.options.get(_OPT_MESSAGE_TYPE)
        if v is None or len(v) != 1:
            return None
        return v[0]

    @classmethod
    def decode(cls, data: bytes) -> DhcpMessage:
        """Parse one DHCP message (the UDP payload). Raises DecodeError only."""
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        if n < HEADER_LEN:
            raise DecodeError(DecodeReason.TRUNCATED, f"{n} bytes")
        if n > MAX_MESSAGE_LEN:
            raise DecodeError(DecodeReason.OVERSIZED, f"{n} bytes")
        (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, ch, sname, file, cookie) = (
            _HEADER.unpack_from(data)
        )
        if cookie != MAGIC_COOKIE:
            raise DecodeError(DecodeReason.BAD_MAGIC, cookie.hex())
        if op != 1 and op != 2:
            raise DecodeError(DecodeReason.BAD_OP, str(op))
        if hlen > 16:
            raise DecodeError(DecodeReason.BAD_HLEN, str(hlen))
        opts: dict[int, bytes] = {}
        _parse_options(data, HEADER_LEN, n, opts, "options")
        overload = 0
        if _OPT_OVERLOAD in opts:
            overload = _decode_overload(data, opts)
        return cls(
            op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, ch, sname, file, opts, overload
        )

    def encode(self, min_size: int = BOOTP_MIN_SIZE) -> bytes:
        """Serialise: header, cookie, option 53 first (RFC 2131 §4.1 does not require it,
        but some relays and clients look only there), the other options in dict order,
        END, then zero padding up to min_size (RFC 1542 §2.1: at least 300 bytes).

        Values longer than 255 bytes are split into consecutive instances of the same
        code (RFC 3396 §5). The options all go in the options field; encode() never
        overloads sname/file, it writes them as given. Raises ValueError on a field of
        the wrong size, an out-of-range integer, or option code 0/255.
        """
        if (
            len(self.ciaddr) != 4
            or len(self.yiaddr) != 4
            or len(self.siaddr) != 4
            or len(self.giaddr) != 4
            or len(self.chaddr) != 16
            or len(self.sname) != 64
            or len(self.file) != 128
        ):
            raise ValueError("DhcpMessage address or fixed field of the wrong size")
        try:
            buf = bytearray(
                _HEADER.pack(
                    self.op, self.htype, self.hlen, self.hops, self.xid, self.secs, self.flags,
                    self.ciaddr, self.yiaddr, self.siaddr, self.giaddr, self.chaddr,
                    self.sname, self.file, MAGIC_COOKIE,
                )
            )  # fmt: skip
        except struct.error as e:
            raise ValueError(f"DhcpMessage header field out of range: {e}") from None
        opts = self.options
        mt = opts.get(_OPT_MESSAGE_TYPE)
        if mt is not None:
            _put_option(buf, _OPT_MESSAGE_TYPE, mt)
        for code, value in opts.items():
            if code == _OPT_MESSAGE_TYPE:
                continue
            n = len(value)
            if n < 256 and 0 < code < 255:
                buf.append(code)
                buf.append(n)
                buf += value
            else:
                _put_option(buf, code, value)
        buf.append(255)
        if len(buf) < min_size:
            buf += bytes(min_size - len(buf))
        return bytes(buf)


def _put_option(buf: bytearray, code: int, value: bytes) -> None:
    """Append one option, split into <=255-byte instances when long (RFC 3396 §5)."""
    if not 0 < code < 255:
        raise ValueError(f"option code {code} cannot carry a value (PAD/END or out of range)")
    n = len(value)
    if n == 0:
        buf.append(code)
        buf.append(0)
        return
    for k in range(0, n, 255):
        chunk = value[k : k + 255]
        buf.append(code)
        buf.append(len(chunk))
        buf += chunk


def _decode_overload(data: bytes, opts: dict[int, bytes]) -> int:
    """Apply option 52 (RFC 2132 §9.3): options continue in `file` (1), `sname` (2) or both
    (3), read in the order options field, file, sname (RFC 2131 §4.1). Option 52 is framing,
    so it is removed from opts; a 52 inside those fields is ignored (it may only appear in
    the options field).
    """
    value = opts.pop(_OPT_OVERLOAD)
    if len(value) != 1 or value[0] not in (1, 2, 3):
        raise DecodeError(DecodeReason.BAD_OVERLOAD, value.hex())
    overload = value[0]
    extra: dict[int, bytes] = {}
    if overload & 1:
        _parse_options(data, _FILE.start, _FILE.stop, extra, "file")
    if overload & 2:
        # sname follows file in reading order; parse into its own dict so that a code in
        # both fields concatenates file-then-sname.
        sname_opts: dict[int, bytes] = {}
        _parse_options(data, _SNAME.start, _SNAME.stop, sname_opts, "sname")
        for code, v in sname_opts.items():
            prev = extra.get(code)
            extra[code] = v if prev is None else prev + v
    for code, v in extra.items():
        if code == _OPT_OVERLOAD:
            continue
        prev = opts.get(code)
        opts[code] = v if prev is None else prev + v
    return overload


def new_reply(request: DhcpMessage, message_type: int) -> DhcpMessage:
    """A BOOTREPLY skeleton for `request` (RFC 2131 §4.3.1, Table 3): xid, flags, giaddr,
    htype/hlen/chaddr copied; ciaddr/yiaddr/siaddr zero, hops/secs 0, sname/file empty;
    options hold only the message type. The server fills in the rest.
    """
    return DhcpMessage(
        op=Op.BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        hops=0,
        xid=request.xid,
        secs=0,
        flags=request.flags,
        ciaddr=_ZERO4,
        yiaddr=_ZERO4,
        siaddr=_ZERO4,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        sname=_ZERO64,
        file=_ZERO128,
        options={_OPT_MESSAGE_TYPE: bytes((message_type,))},
    )
