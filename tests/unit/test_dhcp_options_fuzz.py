"""Hypothesis against the option file reader and the option codecs: whatever an operator
writes or a client sends, the result is a value or an OptionError (a config error naming
the file, a malformed option shown as such), never another exception; what is encoded
decodes to the same; a reply fitted to a size is within it and loses nothing silently."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config.tree import ConfigError, load, write_tree
from appliance.dhcp import options as o
from appliance.dhcp.message import DhcpMessage, new_reply
from appliance.dhcp.reply import HEADER, fit

NAMES = [*sorted(o.OPTION_DEFS_BY_NAME), "224", "43", "121"]
TYPED = [f"{c}.{t}" for c in (224, 250) for t in o.TYPE_NAMES]
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
line = text.map(lambda s: s.replace("\n", " ").strip()).filter(bool)
lines = st.lists(line, max_size=5)
# values that look like the real thing, to get past the first check
plausible = st.one_of(
    st.ip_addresses(v=4).map(str), st.integers(-(2**33), 2**33).map(str),
    st.sampled_from(["0x0102", "0a:0b", "true", "example.net", "10.0.0.0/8 192.0.2.1",
                     "1 string x", "3561 1 u8 7", "3561 string a", "0.0.0.0/0 - 192.0.2.1",
                     "1 addresses 192.0.2.1,192.0.2.2", "4 hex 0x", ",", "-"]),
)
plausible_lines = st.lists(st.one_of(plausible, line), min_size=1, max_size=4)


@given(st.sampled_from(NAMES + TYPED), st.one_of(lines, plausible_lines))
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
def test_option_files_give_a_value_or_an_option_error(name, ls):
    try:
        code, raw = o.parse_option_file(name, ls)
    except o.OptionError:
        return
    assert 1 <= code <= 254 and len(raw) <= o.MAX_OPTION_BYTES
    d = o.STD_OPTION_DEFS.get(code)
    if d is not None and "." not in name:
        o.decode_option(code, raw)  # what we send decodes with the same table
    o.format_option(code, raw)


DECODERS = [o.decode_suboptions, o.decode_vivco, o.decode_vivso, o.decode_domain_list,
            o.decode_classless_routes, o.parse_relay_info]


@given(st.sampled_from(DECODERS), st.binary(max_size=300))
@settings(max_examples=3000)
def test_decoders_give_a_value_or_an_option_error(decode, raw):
    try:
        decode(raw)
    except o.OptionError:
        pass


@given(st.binary(max_size=300))
def test_sub_option_codecs_round_trip(raw):
    for dec, enc in ((o.decode_suboptions, o.encode_suboptions),
                     (o.decode_vivso, o.encode_vivso), (o.decode_vivco, o.encode_vivco)):
        try:
            v = dec(raw)
        except o.OptionError:
            continue
        assert enc(v) == raw


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)


@given(st.lists(domain, min_size=1, max_size=12))
def test_domain_search_compresses_and_decodes_to_the_same(names):
    raw = o.encode_domain_list(names)
    assert o.decode_domain_list(raw) == names
    assert len(raw) <= sum(len(o.encode_domain_name(n)) for n in names)


@given(st.binary(max_size=200))
def test_domain_list_bytes_decode_stably(raw):
    try:
        names = o.decode_domain_list(raw)
    except o.OptionError:
        return
    try:
        again = o.encode_domain_list(names)
    except (o.OptionError, UnicodeEncodeError):
        return  # labels that are not ASCII text (backslash-escaped by the decoder)
    assert o.decode_domain_list(again) == names


route = st.tuples(st.integers(0, 32), st.ip_addresses(v=4), st.ip_addresses(v=4))


@given(st.lists(route, max_size=30))
def test_classless_routes_round_trip(rs):
    routes = [(IPv4Network((int(a) >> (32 - w) << (32 - w) if w else 0, w)), IPv4Address(gw))
              for w, a, gw in rs]
    assert o.decode_classless_routes(o.encode_classless_routes(routes)) == routes


opt_code = st.integers(1, 254).filter(lambda c: c not in (52, 53, 54, 82))
option_set = st.dictionaries(opt_code, st.binary(max_size=300), max_size=25)


@given(option_set, st.integers(548, 1472))
@settings(max_examples=500)
def test_a_fitted_reply_is_within_the_limit_and_loses_only_what_is_counted(opts, limit):
    req = DhcpMessage(1, 1, 6, 0, 1, 0, 0, bytes(4), bytes(4), bytes(4), bytes(4),
                      bytes(16), bytes(64), bytes(128), {53: b"\x01"})
    r = new_reply(req, 2)
    r.options[54] = b"\xc0\x00\x02\x01"
    r.options.update(opts)
    r.options[82] = b"\x01\x03rd0"
    dropped = fit(r, limit)
    wire = r.encode(min_size=0)
    assert len(wire) <= max(limit, HEADER + 20)
    back = DhcpMessage.decode(wire)
    assert back.options[54] == b"\xc0\x00\x02\x01" and back.options[82] == b"\x01\x03rd0"
    kept = {c: v for c, v in back.options.items() if c not in (53, 54, 82)}
    assert all(opts[c] == v for c, v in kept.items())
    assert len(kept) + dropped == len(opts)


@given(st.sampled_from(NAMES + TYPED), st.binary(max_size=200))
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_tree_reader_refuses_any_option_file_with_a_config_error(tmp_path, name, data):
    root = tmp_path / "etc"
    write_tree(root, {"interfaces/eth1/.keep": "", "pools/lan/subnet": "192.0.2.0/24",
                      "pools/lan/range": "192.0.2.10-192.0.2.20"})
    (root / "options").mkdir(exist_ok=True)
    for f in (root / "options").iterdir():
        f.unlink()
    (root / "options" / name).write_bytes(data)
    try:
        load(root)
    except ConfigError as e:
        assert str(root / "options" / name) in str(e)


def _policy():
    from ipaddress import IPv4Network as Net

    from appliance.config.model import ClassConfig, HostConfig
    from appliance.dhcp.classes import Classifier
    from appliance.dhcp.hosts import Hosts

    classes = Classifier((
        ClassConfig("a", vendor_class=("STB-*", "0x00ff")), ClassConfig("b", user_class=("iPXE",)),
        ClassConfig("c", circuit_id=("eth0/*",), relay=(Net("198.51.100.0/24"),)),
        ClassConfig("d", remote_id=("0xaabb*",)), ClassConfig("e", mac_prefix=(b"\x00\x1a",))))
    hosts = Hosts((HostConfig("h1", mac=b"\x02\x00\x00\x00\x00\x01"),
                   HostConfig("h2", client_id=b"\x01\x02"),
                   HostConfig("h3", circuit_id=b"eth0/1"),
                   HostConfig("h4", remote_id=b"\xaa\xbb", relay=IPv4Address("198.51.100.1"))))
    return classes, hosts


CLASSES_, HOSTS_ = _policy()


@given(st.dictionaries(st.sampled_from([60, 61, 77, 82]), st.binary(max_size=60), max_size=4),
       st.binary(min_size=16, max_size=16), st.integers(0, 16),
       st.sampled_from([bytes(4), IPv4Address("198.51.100.1").packed, b"\xff" * 4]))
@settings(max_examples=2000)
def test_class_and_host_matching_never_fails_on_what_a_client_sends(opts, chaddr, hlen, gi):
    msg = DhcpMessage(1, 1, hlen, 0, 1, 0, 0, bytes(4), bytes(4), bytes(4), gi, chaddr,
                      bytes(64), bytes(128), {53: b"\x01", **opts})
    mask = CLASSES_.classify(msg)
    assert 0 <= mask < 1 << 5
    h = HOSTS_.find(msg)
    if h is not None and h.name in ("h3", "h4"):
        assert gi != bytes(4)  # a port host only through a relay
