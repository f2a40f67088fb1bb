"""The lease table's per-(pool, state) counts, which the metrics and the pool-use alarm
read every second: after any sequence of changes they equal a recount of the table."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.leases.model import Lease, LeaseState
from appliance.leases.table import LeaseTable

T0 = 1_700_000_000.0

op = st.tuples(
    st.sampled_from(["offer", "commit", "load", "reclaim"]),
    st.integers(0, 7),  # address
    st.integers(0, 4),  # client
    st.sampled_from(list(LeaseState)),
    st.sampled_from(["lan", "guest"]),
    st.integers(0, 30),  # expires (seconds after T0) / the reclaim's now
)


def recount(t: LeaseTable) -> Counter:
    return Counter((x.pool, x.state) for x in t.by_ip.values())


@settings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=60))
def test_counts_equal_a_recount(ops):
    t = LeaseTable(origin="a")
    for kind, ip, client, state, pool, secs in ops:
        if kind == "reclaim":
            t.reclaim(T0 + secs)
        else:
            if kind == "offer":
                state = LeaseState.OFFERED
            x = Lease(ip=ip, mac=bytes([2, 0, 0, 0, 0, client]), client_id=None, state=state,
                      start=T0, expires=T0 + secs, pool=pool, seq=len(ops))
            getattr(t, kind)(x)
        counts = {k: v for k, v in t.counts.items() if v}
        assert counts == recount(t)
        assert all(v >= 0 for v in t.counts.values())
