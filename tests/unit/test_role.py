"""role.decide over every input: who serves."""

from __future__ import annotations

import itertools

import pytest

from appliance.role import STORE_FAILED_PRIORITY, Role, decide


@pytest.mark.parametrize(("vrrp", "link", "store"),
                         list(itertools.product(["initialize", "backup", "master", None],
                                                [True, False], [True, False])))
def test_matrix(vrrp, link, store) -> None:
    # Standalone: always active (a failed store withholds replies, it does not hand over).
    assert decide(True, vrrp, link, store) is Role.ACTIVE
    # A pair: active only as VRRP master with its client link up and its store writing.
    want = Role.ACTIVE if (vrrp == "master" and link and store) else Role.STANDBY
    assert decide(False, vrrp, link, store) is want


def test_store_failed_priority_loses_every_election() -> None:
    # RFC 5798 §5.2.4: 1..254 for a backup-capable router; 1 is below any peer's.
    assert STORE_FAILED_PRIORITY == 1
