"""The config tree reader under hostile trees: whatever is on disk, `load()` returns a
Config or raises ConfigError naming paths inside the tree, and it never hangs.

Two generators. One damages a valid pair tree step by step (random bytes in a file,
a folder where a file belongs, a file where a folder belongs, emptied folders, random
names, symbolic links dangling, looping, to the tree's own root or parent, out of the
tree, to /dev/zero, a named pipe, unreadable entries); the other builds trees from
nothing with random names and contents. Every load runs without CAP_DAC_OVERRIDE, so
mode-000 entries are unreadable for root as for anyone, and under a 10 s alarm: a
reader that opened a named pipe or read /dev/zero would block there, and the alarm
turns that into a failure instead of a hung test run.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config.model import Config
from appliance.config.tree import ConfigError, load, write_tree

SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

VALID = {
    "node/name": "deviceA", "node/state_dir": "/var/lib/x", "node/run_dir": "/run/x",
    "client/interface": "eth1",
    "vrrp/vrid": "10", "vrrp/priority": "120", "vrrp/advert_interval_ms": "100",
    "vrrp/virtual_ip": "192.0.2.1/24", "vrrp/track/eth1": "30",
    "sync/interface": "eth2", "sync/local": "198.51.100.1:6470",
    "sync/peer": "198.51.100.2:6470", "sync/key": "0123456789abcdef0123456789abcdef",
    "pools/lan/subnet": "192.0.2.0/24", "pools/lan/range": "192.0.2.100-192.0.2.199",
    "pools/lan/router": "192.0.2.1", "pools/lan/dns": "192.0.2.53",
    "pools/lan/domain": "example.net", "pools/lan/lease_time": "600",
    "pools/lan/reservations/02:00:00:00:00:01": "192.0.2.50",
    "datapath/mode": "off", "datapath/rate_limit_pps": "50",
}
# Names as they come: any characters but '/' and NUL, and undecodable bytes (a file
# created by another locale), which Python hands over as surrogate escapes.
names = st.one_of(
    st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
            min_size=1, max_size=12),
    st.binary(min_size=1, max_size=12).map(os.fsdecode),
    st.sampled_from(["README", ".hidden", "x~", "vrid.dpkg-new", "subnet", "range", "key",
                     "track", "reservations", "02:00:00:00:00:09", "lan", "guest", "group",
                     "virtual_ip", "interface", "ga", "eth1.100"]),
).filter(lambda n: n not in (".", "..") and "/" not in n and "\x00" not in n)

contents = st.one_of(
    st.binary(max_size=64),
    st.text(st.sampled_from("0123456789abcdef.:/-# \n\t\u00a0\u0661x"), max_size=40)
    .map(str.encode),
    st.sampled_from([b"", b"\n", b"# only a comment\n", b"\xff\xfe", b"1\n2\n",
                     b"192.0.2.0/24", b"10.0.0.0/8", b"192.0.2.1-192.0.2.250",
                     b"0.0.0.0-255.255.255.255", b"9" * 5000]),
)

LINKS = ["dangling", "self", "pair", "root", "parent", "outside-file", "outside-dir",
         "/dev/zero", "/dev/null", "/", "fifo", "valid-sibling"]

# The same pair in the interfaces/ layout: two VLANs, two groups, one of them shared
# (RFC 3074 split), an admin group advertising on its own interface.
VALID_INTERFACES = {
    **{k: v for k, v in VALID.items() if not k.startswith(("client/", "vrrp/"))},
    "interfaces/eth1.100/group": "ga", "interfaces/eth1.100/virtual_ip": "192.0.2.1/24",
    "interfaces/eth1.200/group": "ga\ngb",
    "interfaces/eth1.200/virtual_ip": "198.51.100.1/24\n198.51.100.2/24",
    "vrrp/ga/vrid": "10", "vrrp/ga/priority": "200", "vrrp/ga/track/eth3": "20",
    "vrrp/gb/vrid": "20", "vrrp/gb/interface": "eth1.200", "vrrp/gb/peer": "198.51.100.3",
    "vrrp/adm/vrid": "5", "vrrp/adm/interface": "eth0", "vrrp/adm/virtual_ip": "203.0.113.1/24",
    "pools/v200/subnet": "198.51.100.0/24", "pools/v200/range": "198.51.100.10-198.51.100.20",
}


def _places(valid: dict[str, str]) -> tuple[list[str], list[str]]:
    folders = sorted({"", *(str(Path(rel).parent) for rel in valid)} - {"."})
    return folders, sorted({*valid, *folders, "pools/guest", "vrrp/preempt", "node/typo",
                            "client/interface", "interfaces/eth1.300", "vrrp/gc/vrid"})


def _steps(valid: dict[str, str]) -> st.SearchStrategy:
    folders, places = _places(valid)
    folders = sorted({*folders, "vrrp/track", "pools/lan/reservations"})
    return st.one_of(
        st.tuples(st.just("write"), st.sampled_from(places), contents),
        st.tuples(st.just("remove"), st.sampled_from(places)),
        st.tuples(st.just("mkdir"), st.sampled_from(places)),
        st.tuples(st.just("empty"), st.sampled_from(folders)),
        st.tuples(st.just("add"), st.sampled_from(folders), names, contents),
        st.tuples(st.just("adddir"), st.sampled_from(folders), names),
        st.tuples(st.just("link"), st.sampled_from(places), st.sampled_from(LINKS)),
        st.tuples(st.just("fifo"), st.sampled_from(places)),
        st.tuples(st.just("chmod"), st.sampled_from(places),
                  st.sampled_from([0, 0o200, 0o100])),
    )


def _clear(p: Path) -> None:
    if p.is_symlink() or not p.exists():
        if p.is_symlink():
            p.unlink()
        return
    if p.is_dir():
        for child in p.iterdir():
            _clear(child)
        p.rmdir()
    else:
        p.unlink()


def _apply(root: Path, outside: Path, step: tuple) -> None:
    kind, rel, *args = step
    p = root / rel if rel else root
    if kind == "write":
        _clear(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(args[0])
    elif kind == "remove" and rel:
        _clear(p)
    elif kind == "mkdir" and rel:
        _clear(p)
        p.mkdir(parents=True)
    elif kind == "empty" and p.is_dir() and not p.is_symlink():
        for child in p.iterdir():
            _clear(child)
    elif kind in ("add", "adddir") and p.is_dir() and not p.is_symlink():
        q = p / args[0]
        _clear(q)
        if kind == "add":
            q.write_bytes(args[1])
        else:
            q.mkdir()
    elif kind == "link" and rel:
        _clear(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        target = {
            "dangling": "does-not-exist", "self": p.name, "pair": p.name + ".2",
            "root": str(root), "parent": "..", "outside-file": str(outside / "value"),
            "outside-dir": str(outside), "fifo": str(outside / "fifo"),
            "valid-sibling": str(outside / "lan"),
        }.get(args[0], args[0])
        os.symlink(target, p)
        if args[0] == "pair":
            os.symlink(p.name, p.with_name(p.name + ".2"))
    elif kind == "fifo" and rel:
        _clear(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(p)
    elif kind == "chmod" and (p.exists() and not p.is_symlink()):
        os.chmod(p, args[0])


class Hung(Exception):
    pass


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def fire(signum: int, frame: object) -> None:
        raise Hung(f"load() still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _check_load(root: Path, without_dac_override) -> None:
    with without_dac_override(), _alarm(10):
        try:
            cfg = load(root)
        except ConfigError as e:
            assert e.problems, "ConfigError without a problem"
            for p in e.problems:
                assert p.path == str(root) or p.path.startswith(f"{root}/"), p.path
                assert p.rule, p
            # What check-config prints and D020 logs must be printable.
            str(e).encode("utf-8", "backslashreplace")
            return
    assert isinstance(cfg, Config)


def _outside(base: Path) -> Path:
    outside = base / "outside"
    write_tree(outside, {"value": "600", "lan/subnet": "203.0.113.0/24",
                         "lan/range": "203.0.113.10-203.0.113.20"})
    os.mkfifo(outside / "fifo")
    return outside


def _damaged(valid: dict[str, str], damage: list, without_dac_override) -> None:
    with tempfile.TemporaryDirectory(prefix="cfgfuzz-") as d:
        base = Path(d)
        root = base / "etc"
        write_tree(root, valid)
        os.chmod(root / "sync/key", 0o600)
        outside = _outside(base)
        for step in damage:
            try:
                _apply(root, outside, step)
            except OSError:
                pass  # a step that the damage so far makes impossible (a file as parent)
        _check_load(root, without_dac_override)


@SETTINGS
@given(st.lists(_steps(VALID), max_size=8))
def test_damaged_pair_tree_loads_or_is_refused(without_dac_override, damage: list) -> None:
    _damaged(VALID, damage, without_dac_override)


@SETTINGS
@given(st.lists(_steps(VALID_INTERFACES), max_size=8))
def test_damaged_interfaces_tree_loads_or_is_refused(without_dac_override,
                                                      damage: list) -> None:
    _damaged(VALID_INTERFACES, damage, without_dac_override)


def _build(parent: Path, spec: dict, outside: Path) -> None:
    for name, value in spec.items():
        p = parent / name
        if isinstance(value, dict):
            p.mkdir()
            _build(p, value, outside)
        elif isinstance(value, bytes):
            p.write_bytes(value)
        elif value == "fifo":
            os.mkfifo(p)
        elif value == "self":
            os.symlink(name, p)
        else:
            os.symlink(value, p)


leaf = st.one_of(contents, st.sampled_from(["fifo", "self", "does-not-exist", "/dev/zero",
                                            "..", "/"]))
tops = st.sampled_from(["node", "client", "interfaces", "vrrp", "sync", "pools", "datapath",
                        "eth1", "group", "virtual_ip", "ga", "vrid", "interface"])
trees = st.recursive(
    leaf,
    lambda children: st.dictionaries(st.one_of(names, tops), children, max_size=5),
    max_leaves=20,
).filter(lambda t: isinstance(t, dict))


@SETTINGS
@given(trees)
def test_random_tree_loads_or_is_refused(without_dac_override, spec: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="cfgfuzz-") as d:
        base = Path(d)
        root = base / "etc"
        root.mkdir()
        _build(root, spec, _outside(base))
        _check_load(root, without_dac_override)


def test_the_damage_generator_reaches_a_valid_tree(without_dac_override) -> None:
    # The generators' starting points load: the fuzzing starts from trees that work, so
    # the damage, not the base, is what the reader is tested against.
    for valid, groups in ((VALID, 1), (VALID_INTERFACES, 3)):
        with tempfile.TemporaryDirectory(prefix="cfgfuzz-") as d:
            root = Path(d) / "etc"
            write_tree(root, valid)
            os.chmod(root / "sync/key", 0o600)
            with without_dac_override():
                assert len(load(root).groups) == groups
