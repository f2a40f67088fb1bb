"""Writes docs/config.md from appliance/config/schema.py (a test keeps the two in step)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.config.schema import KEYS

HEAD = """# Config tree reference

Generated from `appliance/config/schema.py` by `scripts/gen_config_doc.py`; do not edit.

The tree is a directory (default `/etc/dhcp-hotbackup`, or `--config DIR`) with one value
per file; a list holds one item per line. Blank lines and lines starting with `#` are
ignored. `vrrp/` and `sync/` are optional: without them the device is a standalone
server, always active. `dhcp-hotbackup check-config DIR` validates a tree and names the
file, the value and the rule for each problem; `check-config --list-keys` prints this
table.

| file | default | example | meaning |
|---|---|---|---|
"""


def render() -> str:
    rows = []
    for k in KEYS:
        default = "**required**" if k.default is None else f"`{k.default}`"
        if k.path == "pools/<name>/domain":
            default = "(none)"
        ex = f"`{k.example}`" if k.example else ""
        rows.append(f"| `{k.path}` | {default} | {ex} | {k.help} |")
    return HEAD + "\n".join(rows) + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    out.write_text(render())
    print(f"wrote {out}")
