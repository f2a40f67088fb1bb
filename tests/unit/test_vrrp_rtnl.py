"""vrrp/rtnl.py's decoder and encoder, without a kernel: the messages it builds are
the bytes `ip` sends (checked field by field), and `parse` never raises anything but
RtnlError on malformed input (fuzzed), nor loops forever."""

from __future__ import annotations

import random
import socket
import struct

import pytest

from appliance.vrrp import rtnl

# RTM_NEWLINK for "eth1", index 7, up and running, MAC 02:00:00:00:00:0a, as the kernel
# would send it (nlmsghdr, ifinfomsg, IFLA_IFNAME, IFLA_ADDRESS).
IFINFO = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, 7, 0x41, 0)
ATTRS = rtnl.attr(rtnl.IFLA_IFNAME, b"eth1\0") + rtnl.attr(rtnl.IFLA_ADDRESS,
                                                            bytes.fromhex("02000000000a"))
BODY = IFINFO + ATTRS
NEWLINK = struct.pack("=IHHII", 16 + len(BODY), rtnl.RTM_NEWLINK, 0, 5, 0) + BODY
ACK = struct.pack("=IHHII", 36, rtnl.NLMSG_ERROR, 0, 6, 0) + struct.pack("=i", 0) + \
    bytes(16)
NAK = struct.pack("=IHHII", 36, rtnl.NLMSG_ERROR, 0, 7, 0) + struct.pack("=i", -19) + \
    bytes(16)


def test_a_link_message_and_errors_decode():
    (kind, _flags, seq, m), = rtnl.parse(NEWLINK)
    assert (kind, seq) == (rtnl.RTM_NEWLINK, 5)
    assert isinstance(m, rtnl.Message)
    assert (m.index, m.flags, m.text(rtnl.IFLA_IFNAME)) == (7, 0x41, "eth1")
    assert m.attrs[rtnl.IFLA_ADDRESS] == bytes.fromhex("02000000000a")
    assert [p for *_, p in rtnl.parse(ACK + NAK)] == [0, 19]  # errno, positive


def test_attributes_are_padded_to_four_bytes():
    assert rtnl.attr(1, b"abc") == struct.pack("=HH", 7, 1) + b"abc\0"
    assert len(rtnl.attr(3, b"eth1\0")) == 12


@pytest.mark.parametrize("cut", range(len(NEWLINK)))
def test_every_truncation_is_an_error_or_nothing(cut: int):
    try:
        list(rtnl.parse(NEWLINK[:cut]))
    except rtnl.RtnlError:
        pass


def test_random_and_mutated_input_never_crashes():
    rng = random.Random(11)
    seeds = [NEWLINK, ACK, NAK, NEWLINK + ACK]
    for i in range(20000):
        if i % 2:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 96)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data)
        try:
            list(rtnl.parse(data))
        except rtnl.RtnlError:
            pass
