"""The XDP datapath: steers DHCP to the active server, drops it on the standby.

Modules: layout [P] (bpf/dhcp_steer.h in Python), plan [P] (desired map contents,
interfaces placed on their ports), compiler [A] (bcc, in a child process), loader [A]
(the program by fd: attach, maps), links [A] (the kernel's link table), stats [A]
(per-CPU counters), service (the facade the daemon uses: Datapath, cleanup,
cleanup_all). docs/datapath.md is the guide.

`from appliance.datapath import Datapath, cleanup` works without importing bcc
until an XDP datapath is opened, so the pure modules and mode "off" need no bcc.
"""

from __future__ import annotations

from typing import Any


class DatapathError(RuntimeError):
    """The XDP datapath could not be compiled, attached or updated."""


def __getattr__(name: str) -> Any:
    # PEP 562: the facade is imported on first use, not with the package.
    if name in ("Datapath", "cleanup", "cleanup_all"):
        from appliance.datapath import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
