"""Who serves: the one place that turns VRRP and sync state into ACTIVE or STANDBY.

Pure. The daemon asks `decide` after every VRRP transition and sync state change and
flips the datapath (one role-map word) when the answer changes.

Rules:
- standalone (no vrrp/ folder): always ACTIVE;
- in a pair: ACTIVE exactly while VRRP is master and the client link is up. VRRP
  itself holds back preemption until the sync gate opens (vrrp/fsm.py), so a device
  that is not in sync never takes the role from a healthy master; if no master is heard
  at all it still serves (a stale server beats no server: docs/vrrp.md).
- the preempt gate VRRP reads is the sync link's ready_to_serve (sync/transport.py).
"""

from __future__ import annotations

from enum import Enum


class Role(Enum):
    ACTIVE = "active"
    STANDBY = "standby"


def decide(standalone: bool, vrrp_state: str | None, client_link_up: bool = True) -> Role:
    """A device whose client link is down cannot serve: it is STANDBY whatever VRRP
    says (VRRP keeps running so that it resumes, or yields, when the link returns)."""
    if standalone:
        return Role.ACTIVE
    return Role.ACTIVE if vrrp_state == "master" and client_link_up else Role.STANDBY

