"""The config tree: every bad value is refused naming the file, the value and the rule."""

from __future__ import annotations

import os
import signal
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config.model import diff
from appliance.config.tree import ConfigError, load, write_tree
from appliance.testing.trees import standalone_tree

PAIR = {
    "vrrp/vrid": "10", "vrrp/priority": "120", "vrrp/advert_interval_ms": "100",
    "vrrp/virtual_ip": "192.0.2.1/24", "vrrp/track/eth1": "30",
    "sync/interface": "eth2", "sync/local": "198.51.100.1:6470",
    "sync/peer": "198.51.100.2:6470", "sync/key": "0123456789abcdef0123456789abcdef",
}


def test_standalone_tree_loads(tmp_path):
    cfg = load(standalone_tree(tmp_path))
    assert cfg.standalone and cfg.client_interface == "eth1"
    assert cfg.pools[0].ranges[0][0] == IPv4Address("192.0.2.100")
    assert cfg.datapath.mode == "off" and cfg.datapath.rate_limit_pps == 50


def test_pair_tree_loads(tmp_path):
    cfg = load(standalone_tree(tmp_path, extra=PAIR))
    assert cfg.vrrp.vrid == 10 and cfg.vrrp.track == (("eth1", 30),)
    assert cfg.sync.peer == (IPv4Address("198.51.100.2"), 6470) and cfg.sync.mode == "sync"
    assert "0123" not in repr(cfg.sync)  # the secret never shows in logs


BAD = [
    ("vrrp/vrid", "300", "must be an integer in 1..255"),
    ("vrrp/priority", "1_20", "must be an integer in 1..255"),
    ("vrrp/priority", "\u0661\u0662\u0660", "must be an integer in 1..255"),  # Arabic-Indic 120
    ("sync/peer", "198.51.100.2:+6470", "port in 1..65535"),
    ("vrrp/advert_interval_ms", "105", "multiple of 10"),
    ("vrrp/preempt", "yes", "must be 0 or 1"),
    ("vrrp/virtual_ip", "192.0.2.1", "address with prefix"),
    ("sync/local", "198.51.100.1", "ADDRESS:PORT"),
    ("sync/mode", "fast", "one of sync | async"),
    ("sync/key", "short", "at least 32 characters"),
    ("pools/lan/range", "192.0.2.200-192.0.2.100", "above the last"),
    ("pools/lan/range", "198.51.100.1-198.51.100.5", "inside subnet"),
    ("pools/lan/subnet", "192.0.2.1/24", "no host bits"),
    ("pools/lan/lease_time", "abc", "integer"),
    ("pools/lan/dns", "8.8.8", "not an IPv4 address"),
    ("pools/lan/reservations/02:00:00:00:00:01", "198.51.100.9", "outside"),
    ("pools/lan/reservations/not-a-mac", "192.0.2.9", "not a MAC address"),
    ("datapath/mode", "ebpf", "one of xdp | off"),
    ("client/interface", "this-name-is-too-long", "interface name"),
    ("vrrp/track/eth1", "0", "1..254"),
    ("node/typo", "x", "unknown setting"),
]


@pytest.mark.parametrize("rel,value,rule", BAD)
def test_bad_value_names_file_value_and_rule(tmp_path, rel, value, rule):
    etc = standalone_tree(tmp_path, extra=PAIR)
    write_tree(etc, {rel: value})
    with pytest.raises(ConfigError) as e:
        load(etc)
    msgs = [str(p) for p in e.value.problems]
    assert any(str(etc / rel) in m and rule in m for m in msgs), msgs
    if "not-a-mac" not in rel and "typo" not in rel:
        assert any(value in m for m in msgs), msgs


def test_all_problems_reported_at_once(tmp_path):
    etc = standalone_tree(tmp_path)
    write_tree(etc, {"pools/lan/lease_time": "x", "datapath/mode": "y"})
    with pytest.raises(ConfigError) as e:
        load(etc)
    assert len(e.value.problems) == 2


def test_missing_required_and_key_mode(tmp_path):
    etc = standalone_tree(tmp_path, extra=PAIR)
    os.unlink(etc / "client/interface")
    os.chmod(etc / "sync/key", 0o644)
    with pytest.raises(ConfigError) as e:
        load(etc)
    text = str(e.value)
    assert "client/interface: missing" in text and "chmod 600" in text


def test_overlapping_pools_refused(tmp_path):
    etc = standalone_tree(tmp_path, extra={"pools/other/subnet": "192.0.2.0/25",
                                           "pools/other/range": "192.0.2.100-192.0.2.110"})
    with pytest.raises(ConfigError, match="overlaps"):
        load(etc)


def test_diff_names_changed_settings(tmp_path):
    a = load(standalone_tree(tmp_path / "a", extra=PAIR))
    b_etc = standalone_tree(tmp_path / "b", extra=PAIR)
    write_tree(b_etc, {"vrrp/priority": "90", "pools/lan/lease_time": "60",
                       "node/state_dir": str(tmp_path / "a/state"),
                       "node/run_dir": str(tmp_path / "a/run")})
    assert diff(a, load(b_etc)) == ["pools/lan/lease_time", "vrrp/priority"]


def test_check_config_command(tmp_path, capsys):
    etc = standalone_tree(tmp_path)
    assert main(["check-config", str(etc)]) == 0
    assert "ok" in capsys.readouterr().out
    write_tree(etc, {"pools/lan/lease_time": "5"})
    with pytest.raises(SystemExit) as e:
        main(["check-config", "--config", str(etc)])
    assert e.value.code == 2
    assert "lease_time: '5': must be an integer in 10..31536000" in capsys.readouterr().err


def test_docs_config_md_matches_the_schema():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gen", root / "scripts/gen_config_doc.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "docs/config.md").read_text() == gen.render(), \
        "docs/config.md is stale: run .venv/bin/python scripts/gen_config_doc.py"


def test_readme_and_package_leftovers_are_not_settings(tmp_path):
    etc = standalone_tree(tmp_path, extra=PAIR)
    (etc / "README").write_text("how this tree works\n")
    (etc / "pools/lan/lease_time.dpkg-dist").write_text("600\n")
    (etc / "pools/lan/router.ucf-old").write_text("192.0.2.9\n")
    (etc / "sync/README.sync").write_text("the sync link\n")
    cfg = load(etc)
    assert cfg.vrrp is not None and cfg.sync is not None and cfg.pools[0].lease_time == 3600


# -- what the tree reader refuses instead of taking a default ---------------------------
def problems(etc: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(etc)
    return [str(p) for p in e.value.problems]


def one(msgs: list[str], path: Path, rule: str) -> str:
    found = [m for m in msgs if m.startswith(f"{path}: ") and rule in m]
    assert found, f"no problem for {path} saying {rule!r}: {msgs}"
    return found[0]


@pytest.mark.parametrize("folder,needs", [("vrrp", "vrrp/vrid"), ("sync", "sync/interface")])
@pytest.mark.parametrize("leftover", [None, "README", "vrid.dpkg-new", ".keep"])
def test_empty_vrrp_or_sync_folder_is_an_error_not_a_standalone_device(tmp_path, folder,
                                                                       needs, leftover):
    # dpkg re-creates the package's folders on upgrade even where the operator removed
    # them (the postinst removes them again, empty): until then, and whenever someone
    # empties the folder, the device must not come up standalone, i.e. always active.
    etc = standalone_tree(tmp_path)
    (etc / folder).mkdir()
    if leftover:
        (etc / folder / leftover).write_text("10\n")
    msg = one(problems(etc), etc / folder, "the folder holds no setting")
    assert needs in msg and f"a standalone device has no {folder}/ folder: remove it" in msg


def test_empty_pool_folder_and_a_file_in_place_of_a_folder_are_errors(tmp_path):
    etc = standalone_tree(tmp_path)
    (etc / "pools/old").mkdir()
    (etc / "vrrp").write_text("10\n")
    (etc / "pools/stray").write_text("192.0.2.0/24\n")
    msgs = problems(etc)
    one(msgs, etc / "pools/old", "the folder holds no setting: a pool needs subnet and range")
    one(msgs, etc / "vrrp", "must be a folder holding vrrp/vrid and vrrp/virtual_ip")
    one(msgs, etc / "pools/stray", "must be a folder")


def test_a_vrrp_folder_holding_only_a_new_setting_says_what_is_missing(tmp_path):
    # An upgrade that ships a new conffile in vrrp/ brings the folder back to a
    # standalone device's tree with that one file in it.
    etc = standalone_tree(tmp_path)
    write_tree(etc, {"vrrp/garp_count": "5"})
    msg = one(problems(etc), etc / "vrrp/vrid", "missing: this setting is required")
    assert "a standalone device has no vrrp/ folder at all" in msg


@pytest.mark.parametrize("rel", ["pools/lan/lease_time", "datapath/mode", "node/name",
                                 "sync/key", "vrrp/track/eth1"])
def test_dangling_symlink_is_an_error_not_the_default(tmp_path, rel):
    etc = standalone_tree(tmp_path, extra=PAIR)
    os.unlink(etc / rel)
    os.symlink(tmp_path / "gone" / "value", etc / rel)
    msg = one(problems(etc), etc / rel, "broken symbolic link")
    assert str(tmp_path / "gone" / "value") in msg and "point the link at an existing file" in msg


def test_dangling_symlink_in_place_of_vrrp_is_an_error_not_a_standalone_device(tmp_path):
    etc = standalone_tree(tmp_path)
    os.symlink("/nonexistent/vrrp", etc / "vrrp")
    one(problems(etc), etc / "vrrp", "broken symbolic link: its target '/nonexistent/vrrp'")


@pytest.mark.parametrize("rel", ["pools/lan/lease_time", "sync", "pools/lan/reservations"])
def test_looping_symlink_is_an_error(tmp_path, rel):
    etc = standalone_tree(tmp_path, extra=PAIR)
    target = etc / rel
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.symlink(target.name + ".b", target)  # a -> a.b -> a
    os.symlink(target.name, target.with_name(target.name + ".b"))
    msgs = problems(etc)
    one(msgs, target, "symbolic link loop")


def test_symlinks_to_real_files_and_folders_are_followed(tmp_path):
    # An operator may keep a value or a whole pool elsewhere (e.g. the key on another
    # file system); a link that leads to a file is read like the file.
    etc = standalone_tree(tmp_path, extra=PAIR)
    outside = tmp_path / "shared"
    write_tree(outside, {"lease_time": "600", "guest/subnet": "198.51.100.0/24",
                         "guest/range": "198.51.100.10-198.51.100.20"})
    os.unlink(etc / "pools/lan/lease_time")
    os.symlink(outside / "lease_time", etc / "pools/lan/lease_time")
    os.symlink(outside / "guest", etc / "pools/guest")
    cfg = load(etc)
    assert {p.name: p.lease_time for p in cfg.pools} == {"lan": 600, "guest": 3600}


def test_unreadable_file_and_folder_are_errors(tmp_path, without_dac_override):
    etc = standalone_tree(tmp_path, extra=PAIR)
    os.chmod(etc / "pools/lan/lease_time", 0)
    os.chmod(etc / "vrrp", 0)
    with without_dac_override():
        msgs = problems(etc)
    one(msgs, etc / "pools/lan/lease_time", "cannot read: Permission denied")
    one(msgs, etc / "vrrp", "cannot list the folder: Permission denied")
    assert all("run check-config as root" in m for m in msgs if "Permission" in m)
    assert not any(f"{etc}/vrrp/" in m for m in msgs), msgs  # one problem, not one a file


def test_unreadable_tree_is_one_error(tmp_path, without_dac_override):
    etc = standalone_tree(tmp_path)
    os.chmod(etc, 0o311)  # can be entered, not listed
    with without_dac_override():
        assert problems(etc) == [f"{etc}: cannot list the folder: Permission denied: the "
                                 "daemon runs as root; run check-config as root too, or make "
                                 "the tree readable (folders 755, files 644, sync/key 600)"]


def test_pipes_devices_and_huge_files_are_refused_without_hanging(tmp_path):
    etc = standalone_tree(tmp_path, extra=PAIR)
    os.unlink(etc / "datapath/mode")
    os.mkfifo(etc / "datapath/mode")  # open() would wait for a writer forever
    os.unlink(etc / "pools/lan/dns")
    os.symlink("/dev/zero", etc / "pools/lan/dns")  # read() would never end
    (etc / "pools/lan/router").write_text("# padding\n" * 10_000)
    signal.alarm(10)  # a reader that blocks on the pipe dies here instead of hanging
    try:
        msgs = problems(etc)
    finally:
        signal.alarm(0)
    one(msgs, etc / "datapath/mode", "is a named pipe, not a file holding the value")
    one(msgs, etc / "pools/lan/dns", "is a character device")
    one(msgs, etc / "pools/lan/router", "larger than 65536 bytes")


def test_not_utf8_is_an_error(tmp_path):
    etc = standalone_tree(tmp_path)
    (etc / "pools/lan/domain").write_bytes(b"caf\xe9.example\n")
    one(problems(etc), etc / "pools/lan/domain", "is not UTF-8 text")


def test_check_config_lists_every_tree_problem_in_one_round(tmp_path, capsys,
                                                             without_dac_override):
    etc = standalone_tree(tmp_path)
    (etc / "sync").mkdir()
    os.unlink(etc / "pools/lan/lease_time")
    os.symlink("lease_time", etc / "pools/lan/lease_time")
    os.symlink("nowhere", etc / "datapath/rate_limit_pps")
    os.chmod(etc / "pools/lan/router", 0)
    write_tree(etc, {"pools/lan/dns": "8.8.8"})
    with without_dac_override(), pytest.raises(SystemExit) as e:
        main(["check-config", str(etc)])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"dhcp-hotbackup: invalid config tree {etc}:"
    for path, rule in (("sync", "the folder holds no setting"),
                       ("pools/lan/lease_time", "symbolic link loop"),
                       ("datapath/rate_limit_pps", "broken symbolic link"),
                       ("pools/lan/router", "cannot read: Permission denied"),
                       ("pools/lan/dns", "not an IPv4 address")):
        one([ln.strip() for ln in err[1:]], etc / path, rule)
    assert len(err) == 6, err
