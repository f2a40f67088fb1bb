"""The RFC 3074 hash in Python (appliance/dhcp/loadbalance.py): the table is the one in
bpf/dhcp_steer.h, the hash follows RFC 3074 §6, and the rule splits clients evenly.
That the kernel computes the same bucket is tests/datapath/test_xdp_groups.py's part."""

from __future__ import annotations

import random
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from appliance.dhcp import loadbalance
from appliance.dhcp.loadbalance import MIX_TABLE, bucket, group_index, group_of, key

HEADER = Path(__file__).resolve().parents[2] / "bpf" / "dhcp_steer.h"


def header_table() -> tuple[int, ...]:
    """RFC3074_MIX_TABLE as the C header spells it."""
    text = HEADER.read_text()
    m = re.search(r"#define RFC3074_MIX_TABLE\s*\\\s*\{(.*?)\}", text, flags=re.S)
    assert m, "RFC3074_MIX_TABLE not found in bpf/dhcp_steer.h"
    return tuple(int(v) for v in re.findall(r"\d+", m.group(1).replace("\\", " ")))


def test_the_c_header_and_python_hold_the_same_table():
    assert header_table() == MIX_TABLE


def test_the_table_is_a_permutation_of_0_to_255():
    """Pearson's hash needs a permutation (RFC 3074 §6: 256 distinct values)."""
    assert sorted(MIX_TABLE) == list(range(256))


def test_hand_derived_values():
    """From the algorithm alone: seed = the key's length, then h = T[h ^ octet] from the
    last octet to the first."""
    assert bucket(b"") == 0  # no octet: the seed, 0
    assert bucket(b"\x00") == MIX_TABLE[1 ^ 0x00] == 175
    assert bucket(b"\xff") == MIX_TABLE[1 ^ 0xFF] == 234
    # Two octets: the second one first.
    assert bucket(b"\x01\x02") == MIX_TABLE[MIX_TABLE[2 ^ 0x02] ^ 0x01]


def reference(hwaddr: bytes) -> int:
    """Kea's loadBalanceHash (query_filter.cc), transcribed index for index."""
    h = len(hwaddr) % 256
    i = len(hwaddr)
    while i > 0:
        i -= 1
        h = MIX_TABLE[h ^ hwaddr[i]]
    return h


@given(st.binary(max_size=16))
def test_bucket_is_keas_hash(hwaddr: bytes):
    assert bucket(hwaddr) == reference(hwaddr)


@given(st.binary(min_size=16, max_size=16), st.integers(0, 255))
def test_key_clamps_hlen_to_the_chaddr_field(chaddr: bytes, hlen: int):
    """The kernel hashes chaddr's first hlen octets, hlen at most 16 (RFC 2131 §2)."""
    assert key(chaddr, hlen) == chaddr[: min(hlen, 16)]
    assert group_of(chaddr, hlen) == bucket(chaddr[: min(hlen, 16)]) % 2


def test_group_index_is_the_buckets_parity():
    assert [group_index(b) for b in range(6)] == [0, 1, 0, 1, 0, 1]
    assert {group_index(b) for b in range(256)} == set(range(loadbalance.GROUPS))


def test_two_groups_split_random_macs_evenly():
    """65,535 random MACs (Kea's test size): each group within 48-52 % (the hash is a
    permutation walk, so the split is close to even; Kea's own test accepts > 25 %)."""
    rng = random.Random(3074)
    n = 65535
    ones = sum(group_of(rng.getrandbits(48).to_bytes(6, "big"), 6) for _ in range(n))
    assert 0.48 * n < ones < 0.52 * n, ones


def test_every_bucket_is_reached_by_macs():
    rng = random.Random(7)
    seen = {bucket(rng.getrandbits(48).to_bytes(6, "big")) for _ in range(20000)}
    assert seen == set(range(256))
