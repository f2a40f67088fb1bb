"""Client classes (classes/<name>/): which a message's client belongs to.

Pure. A class matches on option 60 (vendor class identifier), option 77 (user class,
RFC 3004: any of its instances), the relay's Option 82 circuit-id or remote-id (RFC 3046
§3.1, §3.2; only from a relay, giaddr set, §2.1), a MAC prefix, or the relay's address
(giaddr). Every criterion a class gives must match; within one, any pattern may. A class
adds options to its members' replies, and a pool may allow or deny classes.

Compiled when the config is loaded: a class is a list of small tests on the raw option
bytes (a set for exact values, a tuple for bytes.startswith on prefixes); classify()
returns the classes as a bit mask, bit i for the i-th class in name order, which is also
the key of the reply option cache (dhcp/reply.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.config.model import ClassConfig
from appliance.config.schema import pattern
from appliance.dhcp.enums import Opt, RelaySubOpt
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.options import OptionError, parse_relay_info

_ZERO = b"\x00\x00\x00\x00"
_VENDOR_CLASS = int(Opt.VENDOR_CLASS)
_USER_CLASS = int(Opt.USER_CLASS)
_RELAY_INFO = int(Opt.RELAY_AGENT_INFO)

Test = Callable[[DhcpMessage], bool]


@dataclass(frozen=True, slots=True)
class Patterns:
    """Exact values and prefixes; matches(v) is one set probe and one startswith."""

    exact: frozenset[bytes]
    prefixes: tuple[bytes, ...]

    @classmethod
    def of(cls, lines: tuple[str, ...]) -> Patterns:
        parsed = [pattern(s) for s in lines]
        return cls(frozenset(b for b, p in parsed if not p), tuple(b for b, p in parsed if p))

    def matches(self, v: bytes) -> bool:
        return v in self.exact or (bool(self.prefixes) and v.startswith(self.prefixes))


def _user_classes(raw: bytes) -> list[bytes]:
    """RFC 3004 §4: instances of (length, data). Some clients (Windows, iPXE) send one
    bare string instead: the whole value is tried too."""
    out = [raw]
    i, n = 0, len(raw)
    items = []
    while i < n:
        j = i + 1 + raw[i]
        if raw[i] == 0 or j > n:
            return out
        items.append(raw[i + 1 : j])
        i = j
    return out + items


def _option_test(code: int, pats: Patterns) -> Test:
    def test(msg: DhcpMessage) -> bool:
        v = msg.options.get(code)
        return v is not None and pats.matches(v.rstrip(b"\x00"))
    return test


def _user_class_test(pats: Patterns) -> Test:
    def test(msg: DhcpMessage) -> bool:
        v = msg.options.get(_USER_CLASS)
        return v is not None and any(pats.matches(x) for x in _user_classes(v))
    return test


def _relay_sub_test(sub: int, pats: Patterns) -> Test:
    def test(msg: DhcpMessage) -> bool:
        if msg.giaddr == _ZERO:
            return False
        rai = msg.options.get(_RELAY_INFO)
        if rai is None:
            return False
        try:
            subs = parse_relay_info(rai)
        except OptionError:
            return False
        return any(c == sub and pats.matches(v) for c, v in subs)
    return test


def _mac_test(prefixes: tuple[bytes, ...]) -> Test:
    def test(msg: DhcpMessage) -> bool:
        return msg.mac.startswith(prefixes)
    return test


def _relay_test(nets: tuple[tuple[int, int], ...]) -> Test:
    def test(msg: DhcpMessage) -> bool:
        gi = msg.giaddr
        if gi == _ZERO:
            return False
        ip = int.from_bytes(gi, "big")
        for net, mask in nets:  # a loop, not any(): per packet, no generator
            if ip & mask == net:
                return True
        return False
    return test


def _tests(c: ClassConfig) -> tuple[Test, ...]:
    out: list[Test] = []
    if c.vendor_class:
        out.append(_option_test(_VENDOR_CLASS, Patterns.of(c.vendor_class)))
    if c.user_class:
        out.append(_user_class_test(Patterns.of(c.user_class)))
    if c.circuit_id:
        out.append(_relay_sub_test(int(RelaySubOpt.CIRCUIT_ID), Patterns.of(c.circuit_id)))
    if c.remote_id:
        out.append(_relay_sub_test(int(RelaySubOpt.REMOTE_ID), Patterns.of(c.remote_id)))
    if c.mac_prefix:
        out.append(_mac_test(c.mac_prefix))
    if c.relay:
        out.append(_relay_test(tuple((int(n.network_address), int(n.netmask))
                                     for n in c.relay)))
    return tuple(out)


class Classifier:
    """The classes of a config, in name order (the first named wins an option two
    classes both set)."""

    def __init__(self, configs: tuple[ClassConfig, ...] = ()) -> None:
        ordered = sorted(configs, key=lambda c: c.name)
        self.names = tuple(c.name for c in ordered)
        self.bit = {n: 1 << i for i, n in enumerate(self.names)}
        self.options = tuple({o.code: o.data for o in c.options} for c in ordered)
        self._tests = tuple((1 << i, _tests(c)) for i, c in enumerate(ordered))

    def mask(self, names: tuple[str, ...]) -> int:
        """The bits of these class names (unknown names: none; config/tree.py refuses
        them)."""
        m = 0
        for n in names:
            m |= self.bit.get(n, 0)
        return m

    def classify(self, msg: DhcpMessage) -> int:
        """The classes `msg`'s client is in, as a bit mask."""
        m = 0
        for bit, tests in self._tests:
            if len(tests) == 1:  # the usual class: one criterion
                if tests[0](msg):
                    m |= bit
                continue
            for t in tests:
                if not t(msg):
                    break
            else:
                m |= bit
        return m

    def names_of(self, mask: int) -> list[str]:
        return [n for i, n in enumerate(self.names) if mask >> i & 1]
