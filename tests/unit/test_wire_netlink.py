"""The netlink framing both rtnetlink clients share (appliance/wire/netlink.py): what it
builds it reads back, and any bytes at all either parse or raise NetlinkError."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.wire import netlink as nl


def test_a_message_of_attributes_reads_back():
    body = nl.IFINFO.pack(0, 1, 7, 0x41, 0) + nl.attr(3, b"eth1\0") + nl.attr(1, b"\x02" * 6)
    dgram = nl.message(nl.RTM_NEWLINK, nl.NLM_F_MULTI, 9, body) + \
        nl.message(nl.NLMSG_ERROR, 0, 10, struct.pack("=i", -errno.ENODEV) + b"\0" * 16)
    (k1, f1, s1, b1, e1), (k2, _f2, s2, b2, e2) = nl.messages(dgram)
    assert (k1, f1, s1) == (nl.RTM_NEWLINK, nl.NLM_F_MULTI, 9)
    assert nl.fixed(nl.IFINFO, dgram, b1, e1, "ifinfomsg")[2] == 7
    assert nl.attrs(dgram, b1 + nl.IFINFO.size, e1) == {3: b"eth1\0", 1: b"\x02" * 6}
    assert (k2, s2, nl.error_of(dgram, b2, e2)) == (nl.NLMSG_ERROR, 10, errno.ENODEV)


def test_nested_and_byte_order_flags_are_masked_off_the_type():
    raw = nl.attr(18 | nl.NLA_F_NESTED, nl.attr(1, b"vlan\0")) + nl.attr(2 | 0x4000, b"x")
    assert set(nl.attrs(raw, 0, len(raw))) == {18, 2}


@pytest.mark.parametrize(("buf", "what"), [
    (struct.pack("=IHHII", 8, 16, 0, 0, 0), "overruns"),  # length below the header
    (struct.pack("=IHHII", 40, 16, 0, 0, 0), "overruns"),  # length past the datagram
])
def test_a_bad_length_is_an_error_that_says_so(buf: bytes, what: str):
    with pytest.raises(nl.NetlinkError, match=what) as e:
        list(nl.messages(buf))
    assert e.value.errno == errno.EBADMSG


def test_short_fixed_headers_and_errors_are_named():
    with pytest.raises(nl.NetlinkError, match="truncated ifaddrmsg"):
        nl.fixed(nl.IFADDR, b"\0" * 4, 0, 4, "ifaddrmsg")
    with pytest.raises(nl.NetlinkError, match="truncated NLMSG_ERROR"):
        nl.error_of(b"\0\0", 0, 2)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_netlink_error(buf: bytes):
    try:
        for _kind, _flags, _seq, body, end in nl.messages(buf):
            assert body <= end <= len(buf)  # a body never reaches past the datagram
            nl.attrs(buf, body, end)
    except nl.NetlinkError:
        pass
