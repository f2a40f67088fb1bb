"""Who serves: the one place that turns VRRP, link and store state into ACTIVE or STANDBY.

Pure. The daemon asks `decide` after every VRRP transition, client-link change and
lease-store failure or recovery, and flips the datapath (one role-map word) when the
answer changes.

Rules:
- standalone (no vrrp/ folder): always ACTIVE. With a failed lease store it stays
  ACTIVE (there is nobody to hand over to) and the daemon answers only what it can make
  durable: a reply whose lease could not be written is withheld.
- in a pair: ACTIVE exactly while VRRP is master, the client link is up and the lease
  store takes writes. A device whose disk is full or failing cannot keep its promise
  (nothing ACKed before it is durable), so it gives the role to its peer: the daemon
  also tells the peer (NOTICE STORE_FAILED) and advertises the lowest VRRP priority
  until writes succeed again (docs/failover.md).
- VRRP itself holds back preemption until the sync gate opens (vrrp/fsm.py), so a
  device that is not in sync never takes the role from a healthy master; if no master
  is heard at all it still serves (a stale server beats no server: docs/vrrp.md).
- the preempt gate VRRP reads is the sync link's ready_to_serve (sync/transport.py).
"""

from __future__ import annotations

from enum import Enum

# The VRRP priority a device advertises while its lease store is failed: the lowest a
# router may send (RFC 5798 §5.2.4; 0 means "stopping"), so any peer wins the election.
STORE_FAILED_PRIORITY = 1


class Role(Enum):
    ACTIVE = "active"
    STANDBY = "standby"


def decide(standalone: bool, vrrp_state: str | None, client_link_up: bool = True,
           store_ok: bool = True) -> Role:
    """A device whose client link is down, or (in a pair) whose lease store cannot
    write, cannot serve: it is STANDBY whatever VRRP says (VRRP keeps running so that
    it resumes, or yields, when the link or the disk returns)."""
    if standalone:
        return Role.ACTIVE
    return Role.ACTIVE if vrrp_state == "master" and client_link_up and store_ok \
        else Role.STANDBY
