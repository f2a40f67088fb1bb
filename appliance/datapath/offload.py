"""A port's receive VLAN offload: read it, turn it off under tagged client interfaces.

Adapter (an ioctl on a socket, standard library only). A NIC with rx VLAN offload
(ethtool's `rx-vlan-offload`, NETIF_F_HW_VLAN_CTAG_RX) takes the 802.1Q tag out of
the frame into its receive descriptor before any program runs: native XDP then sees
the frame untagged, and so does generic XDP (the tag travels in the skb, not in the
data). The datapath keys a frame by its VLAN ids, so on such a port every tagged
client interface would look untagged: its DHCP "not ours", passed on both devices.
The facade therefore turns the offload off on each port that carries tagged
interfaces (DP017) and back on when it leaves the port; the kernel then removes the
tag in software after XDP, as it does for any driver without the offload, at a cost
per frame this appliance's DHCP rate never notices.

The legacy ethtool flags ioctl (ETHTOOL_GFLAGS / ETHTOOL_SFLAGS, include/uapi/linux/
ethtool.h) carries the C-tag offload only; an 802.1ad S-tag offload
(rx-vlan-stag-hw-parse) is rare and is left as it is (docs/datapath.md says how to
check it). The call acts in the calling thread's network namespace.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946  # include/uapi/linux/sockios.h
ETHTOOL_GFLAGS, ETHTOOL_SFLAGS = 0x25, 0x26
ETH_FLAG_RXVLAN = 1 << 8
_IFNAMSIZ = 16


def _ethtool(port: str, cmd: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("=II", cmd, data), 8)
    ifreq = struct.pack(f"@{_IFNAMSIZ}sP", port.encode()[:_IFNAMSIZ - 1],
                        ctypes.addressof(value)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    return struct.unpack_from("=II", value.raw)[1]


def rx_vlan_offload(port: str) -> bool | None:
    """True when `port` takes C-tags out of received frames; None when its driver
    answers no ethtool flags (then it has no such offload to turn off)."""
    try:
        return bool(_ethtool(port, ETHTOOL_GFLAGS) & ETH_FLAG_RXVLAN)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise


def set_rx_vlan_offload(port: str, on: bool) -> None:
    """Turn the C-tag receive offload of `port` on or off, the other flags as they are.
    Raises OSError (EOPNOTSUPP, EINVAL: the driver cannot change it)."""
    flags = _ethtool(port, ETHTOOL_GFLAGS)
    want = flags | ETH_FLAG_RXVLAN if on else flags & ~ETH_FLAG_RXVLAN
    if want != flags:
        _ethtool(port, ETHTOOL_SFLAGS, want)
