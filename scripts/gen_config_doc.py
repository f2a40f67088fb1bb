"""Writes docs/config.md from appliance/config/schema.py (a test keeps the two in step)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config.model import LEGACY_GROUP
from appliance.config.schema import KEYS, RELOAD_HELP, Key
from appliance.dhcp.options import NOT_CONFIGURABLE, STD_OPTION_DEFS, TYPE_NAMES

HEAD = """# Config tree reference

Generated from `appliance/config/schema.py` by `scripts/gen_config_doc.py`; do not edit.

The tree is a directory (default `/etc/dhcp-hotbackup`, or `--config DIR`) with one value
per file; a list holds one item per line. Blank lines and lines starting with `#` are
ignored. `dhcp-hotbackup check-config DIR` validates a tree and names the file, the value
and the rule for each problem; `check-config --list-keys` prints these tables.

## The shape

`interfaces/` holds one folder per client-facing interface: a port (`eth1`) or a VLAN
sub-interface (`eth1.100`). `vrrp/` holds one folder per VRRP group; an interface names
the group whose master serves it. `sync/` is the link to the other device. Without
`vrrp/` and `sync/` the device is a standalone server, always active.

```
interfaces/<ifname>/group        no file: standalone, always active here
                                 one line: that group's master serves here
                                 two lines: both devices serve here, clients split between
                                 the two groups by the RFC 3074 hash (load-sharing on one LAN)
interfaces/<ifname>/virtual_ip   one line per group line, same order: the server identifier
vrrp/<group>/...                 one VRRP instance: vrid, priority, ...; it advertises on
                                 vrrp/<group>/interface (default: the first interface, in
                                 name order, that names it) and moves every interface bound
                                 to it (one admin group for many VLANs: Huawei's mVRRP)
```

The smallest tree, a standalone server on `eth1` (its own address is the server
identifier):

```
node/name                 deviceA
interfaces/eth1/          (an empty folder)
pools/lan/subnet          192.0.2.0/24
pools/lan/range           192.0.2.100-192.0.2.199
```

Two VLANs in load-sharing: device A is master of `ga` (VLAN 100), device B of `gb` (VLAN
200); each backs the other up and the survivor of a failure serves both.

```
interfaces/eth1.100/group        ga
interfaces/eth1.100/virtual_ip   192.0.2.1/24
interfaces/eth1.200/group        gb
interfaces/eth1.200/virtual_ip   198.51.100.1/24
vrrp/ga/vrid                     10
vrrp/ga/priority                 200        (device B: 100)
vrrp/gb/vrid                     20
vrrp/gb/priority                 100        (device B: 200)
pools/v100/subnet                192.0.2.0/24
pools/v100/range                 192.0.2.100-192.0.2.199
pools/v200/subnet                198.51.100.0/24
pools/v200/range                 198.51.100.100-198.51.100.199
sync/interface, local, peer, key as for any pair (below)
```

One LAN shared by both devices: `interfaces/eth1/group` holds two lines (`ga`, `gb`) and
`interfaces/eth1/virtual_ip` two addresses in the same order; device A is master of
`ga`, B of `gb`; each answers the clients whose RFC 3074 bucket is its group's.

check-config refuses, naming the file and the value: an interface bound to a group with
no folder `vrrp/<group>/`; a group that no interface names and that has no
`vrrp/<group>/interface` and `virtual_ip` of its own; more than two group lines;
`virtual_ip` lines that do not match the group lines; a virtual IP outside every pool's
subnet, used twice, or a network or broadcast address; two groups advertising the same
vrid on one interface; an interface name that is not a Linux one. `vrrp/<group>/track/<ifname>`
may name any interface. An interface the box does not have is named when the daemon
starts (D099).

## Every setting

`reload` says what `dhcp-hotbackup reload` (SIGHUP) does with a changed value (below);
`peer`: both devices must hold the same value, and the sync link's drift check names the
file when they do not (`sync/config_drift`, log SYNC006).

| file | default | example | reload | peer | meaning |
|---|---|---|---|---|---|
"""

LEGACY = f"""
## Trees written for one interface

A tree in the layout that came before `interfaces/` is read unchanged, so a package
upgrade does not touch a running pair: `client/interface` names the one interface and
the group's settings sit directly in `vrrp/`. The device reads it as one interface bound
to one group named `{LEGACY_GROUP}` (so the runtime tree and the metrics call the group
`{LEGACY_GROUP}`); the first `vrrp/virtual_ip` line is the server identifier, and the
adverts carry all of them. `client/interface` alone is one standalone interface. Messages,
the reload's report and the drift check name this layout's files. A tree that mixes the
two (`client/` beside `interfaces/`, a setting directly in `vrrp/` beside a group folder)
is refused naming both. To move to the new layout keeping the group's name: move
`client/interface`'s value to a folder `interfaces/<ifname>/` with `group` = `{LEGACY_GROUP}`
and `virtual_ip` = the first `vrrp/virtual_ip` line, the files in `vrrp/` into
`vrrp/{LEGACY_GROUP}/`, and drop the first line from `vrrp/{LEGACY_GROUP}/virtual_ip` (or the
file, if that was its only line). Do it on both devices: until both have, the drift check
names the paths that differ.

| file | in the new layout | default | meaning |
|---|---|---|---|
"""

RELOAD = """
## What a reload does

| reload | what happens |
|---|---|
"""


OPTIONS = """
## Option names and types

A file under `options/`, `pools/<name>/options/`, `classes/<class>/options/` or
`hosts/<host>/options/` is named by one of these names or by its code, optionally
followed by `.<type>` (required for a code not listed here: `options/224.u32`). How each
type is written, with examples: docs/dhcp-options.md. Options marked *server* are
written by the server itself (or only sent by clients and relays): a file for one is
refused, naming where the value comes from.

| code | name | type | |
|---|---|---|---|
"""

TYPES = """
Types a file name may give (`.<type>`), the short names first, then Kea's spellings:

"""


def _default(k: Key) -> str:
    if k.path == "pools/<name>/domain":
        return "(none)"
    if k.default is None:
        return "**required**"
    return f"`{k.default}`"


def render() -> str:
    rows = []
    for k in KEYS:
        if k.legacy:
            continue
        ex = f"`{k.example}`" if k.example else ""
        cls = k.reload.value if k.reload is not None else "**unclassified**"
        peer = "same" if k.agree else ""
        rows.append(f"| `{k.path}` | {_default(k)} | {ex} | {cls} | {peer} | {k.help} |")
    legacy = []
    for k in KEYS:
        if not k.legacy:
            continue
        now = ("`interfaces/<ifname>/`" if k.path == "client/interface" else
               "`vrrp/<group>/virtual_ip`, and the first line `interfaces/<ifname>/virtual_ip`"
               if k.path == "vrrp/virtual_ip" else
               f"`vrrp/<group>/{k.path[len('vrrp/'):]}`")
        legacy.append(f"| `{k.path}` | {now} | {_default(k)} | {k.help} |")
    reload = [f"| {cls.value} | {text} |" for cls, text in RELOAD_HELP.items()]
    opts = [f"| {c} | `{d.name}` | {d.type.value} | {'server' if c in NOT_CONFIGURABLE else ''} |"
            for c, d in sorted(STD_OPTION_DEFS.items())]
    types = ", ".join(f"`{n}` ({t.value})" for n, t in TYPE_NAMES.items())
    return (HEAD + "\n".join(rows) + "\n" + LEGACY + "\n".join(legacy) + "\n" + RELOAD
            + "\n".join(reload) + "\n" + OPTIONS + "\n".join(opts) + "\n" + TYPES + types
            + ".\n")


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    out.write_text(render())
    print(f"wrote {out}")
