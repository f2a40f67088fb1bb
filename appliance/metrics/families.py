"""The Prometheus metric families made from a snapshot: every name, type, label and help.

Pure. `METRICS` is the catalogue (docs/metrics.md lists it, the Grafana dashboard may
query only these names: tests/unit/test_metrics*.py hold both to it); `families(snap)`
fills it from one Snapshot. The exporter (exporter.py) turns the result into
python3-prometheus-client's text format. Names follow the Prometheus conventions: one
prefix, base units (seconds, ratios 0..1), `_total` on counters, an enum as one series
per value with 1 on the current one.

Counters the daemon gains later (a new drop reason, a new sync refusal) flow through
without a change here: they are sorted into their family by their name (`dropped_*`,
`refused_*`, ...) as the runtime tree's stats/ files are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.metrics.snapshot import LEASE_STATES, Snapshot

PREFIX = "dhcp_hotbackup_"

# DHCP counter names (stats/<name>) by what they count; anything else is a note.
RECEIVED = ("discover", "request", "release", "decline", "inform")
SENT = ("offer", "ack", "nak")
VRRP_STATES = ("initialize", "backup", "master")
SYNC_STATES = ("connected", "syncing", "disconnected")
# VRRP's reasons for a transition to master that count as a takeover (vrrp/fsm.py
# Reason), each exported from 0 so that increase() sees the first one.
TAKEOVER_CAUSES = ("master_down", "master_stopped", "peer_down", "preempt")


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str  # as exposed: counters end in _total; a histogram's base name
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str

    def sample_names(self) -> tuple[str, ...]:
        """The names a query can use: a histogram's _bucket, _count and _sum."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum")
        return (self.name,)


Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Family:
    metric: MetricDef
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((self.metric.name + suffix, tuple(labels.items()), float(value)))


def _m(name: str, kind: str, labels: tuple[str, ...], help: str) -> MetricDef:
    return MetricDef(PREFIX + name, kind, labels, help)


IF, GRP, POOL = ("interface",), ("group",), ("pool",)

METRICS: tuple[MetricDef, ...] = (
    # -- the device --
    _m("info", "gauge", ("node", "version"), "Always 1: this device's name and version."),
    _m("start_time_seconds", "gauge", (), "When the daemon started (Unix time)."),
    _m("last_publish_timestamp_seconds", "gauge", (),
       "When the daemon last took this snapshot (about every second; older means its "
       "loop is stuck)."),
    # -- who serves --
    _m("active", "gauge", IF,
       "1 while this device answers DHCP on the interface (the datapath's role), else 0."),
    _m("interface_info", "gauge", ("interface", "group", "xdp_mode"),
       "Always 1: the VRRP group deciding who serves the interface (empty: standalone) "
       "and how the XDP program is attached (native, generic, mixed, off)."),
    # -- DHCP --
    _m("dhcp_packets_received_total", "counter", ("interface", "type"),
       "DHCP messages received and decoded, by type (discover, request, release, "
       "decline, inform)."),
    _m("dhcp_packets_sent_total", "counter", ("interface", "type"),
       "DHCP replies sent, by type (offer, ack, nak)."),
    _m("dhcp_packets_dropped_total", "counter", ("interface", "reason"),
       "DHCP packets answered by nobody, by reason (the runtime tree's stats/dropped_*; "
       "includes the drops made in the kernel)."),
    _m("dhcp_naks_total", "counter", ("interface", "reason"), "DHCPNAKs sent, by reason."),
    _m("dhcp_send_errors_total", "counter", IF, "Replies the kernel refused to send."),
    _m("dhcp_notes_total", "counter", ("interface", "note"),
       "Things noticed in messages that were still answered, by note."),
    _m("interface_requests_total", "counter", IF,
       "DHCP requests this device took from the interface (several interfaces: the "
       "by-type counters above are the device's, with no interface label)."),
    _m("interface_replies_total", "counter", IF, "DHCP replies sent on the interface."),
    _m("interface_dropped_standby_total", "counter", IF,
       "Requests on the interface for a group this device does not serve now."),
    # -- XDP --
    _m("xdp_packets_seen_total", "counter", IF, "DHCP packets the XDP program saw."),
    _m("xdp_packets_passed_total", "counter", IF,
       "DHCP packets the XDP program passed to the server."),
    _m("xdp_packets_dropped_total", "counter", ("interface", "reason"),
       "DHCP packets the XDP program dropped in the kernel, by reason."),
    # -- leases and pools --
    _m("leases", "gauge", ("pool", "state"),
       "Lease records by pool and state (offered, bound, released, expired, declined)."),
    _m("pool_addresses", "gauge", POOL,
       "Addresses the pool hands out: its ranges, and reservations outside them."),
    _m("pool_addresses_used", "gauge", POOL,
       "Addresses of the pool nobody else may be given: offered, bound or declined."),
    _m("pool_use_ratio", "gauge", POOL, "pool_addresses_used / pool_addresses (0..1)."),
    _m("pool_alarm_threshold_ratio", "gauge", ("pool", "level"),
       "The pool-use alarm's thresholds: raised at or above level=raise, cleared below "
       "level=clear (pools/<name>/alarm_percent, alarm_clear_percent)."),
    # -- VRRP --
    _m("vrrp_state", "gauge", ("group", "state"),
       "1 for the group's current VRRP state (initialize, backup, master), 0 for the others."),
    _m("vrrp_priority", "gauge", GRP, "The group's effective VRRP priority (after tracking)."),
    _m("vrrp_priority_configured", "gauge", GRP, "The group's configured VRRP priority."),
    _m("vrrp_info", "gauge", ("group", "vrid", "master"),
       "Always 1: the group's virtual router id and the master as seen from here."),
    _m("vrrp_events_total", "counter", ("group", "event"),
       "VRRP events: adverts sent and received, gratuitous ARPs, transitions, errors."),
    _m("vrrp_adverts_rejected_total", "counter", ("group", "reason"),
       "VRRP adverts dropped, by reason (bad_ttl, bad_checksum, other_vrid, ...)."),
    # -- takeovers --
    _m("takeovers_total", "counter", ("group", "cause"),
       "Times this device took a group over (became master from backup), by cause: "
       "master_down (no advert heard), master_stopped (the master's priority 0), "
       "peer_down (sync-link evidence), preempt."),
    _m("last_takeover_duration_seconds", "gauge", GRP,
       "The last takeover: from the failure's first evidence to this device serving."),
    _m("last_takeover_timestamp_seconds", "gauge", GRP, "When the last takeover happened."),
    # -- the sync link --
    _m("sync_peer_state", "gauge", ("state",),
       "1 for the sync peer's current state (connected, syncing, disconnected), else 0."),
    _m("sync_ready", "gauge", (),
       "1 while this device holds everything the peer had (VRRP may preempt)."),
    _m("sync_lag_updates", "gauge", (), "Updates sent to the peer and not yet acknowledged."),
    _m("sync_last_seq", "gauge", (), "How far the peer's change log is held here."),
    _m("sync_replication_delay_seconds", "histogram", (),
       "Replication delay of live updates: the peer's commit to durable here."),
    _m("sync_config_drift_settings", "gauge", (),
       "Settings that differ from the peer's (the runtime tree's sync/config_drift)."),
    _m("sync_clock_skew_seconds", "gauge", (),
       "The peer's wall clock minus ours, measured over the sync link."),
    _m("sync_events_total", "counter", ("event",),
       "Sync-link events: frames, leases and acks sent and received, catch-ups, merge "
       "outcomes, connections."),
    _m("sync_refused_total", "counter", ("reason",),
       "Sync frames or connections refused, by reason (bad_mac, replay, ...)."),
    # -- alarms --
    _m("alarm_active", "gauge", ("alarm", "subject"),
       "1 while the alarm is raised (pool_use, takeover, peer_lost, config_drift, "
       "clock_skew, store_failed; subject: the pool or group)."),
    _m("alarms_raised_total", "counter", ("alarm", "subject"), "Times the alarm was raised."),
)

BY_NAME = {m.name: m for m in METRICS}


def sample_names() -> set[str]:
    """Every series name a query may use."""
    return {n for m in METRICS for n in m.sample_names()}


def families(snap: Snapshot) -> list[Family]:
    """The metric families of `snap`, in METRICS order, those without samples left out."""
    fam = {m.name: Family(m) for m in METRICS}

    def f(name: str) -> Family:
        return fam[PREFIX + name]

    f("info").add(1, node=snap.node, version=snap.version)
    f("start_time_seconds").add(snap.started)
    f("last_publish_timestamp_seconds").add(snap.time)

    for i in snap.interfaces:
        f("active").add(int(i.active), interface=i.name)
        f("interface_info").add(1, interface=i.name, group=i.group or "",
                                xdp_mode=i.attach_mode)
        _dhcp(f, i.name, i.dhcp)
        _xdp(f, i.name, i.xdp)
        if i.counts:
            f("interface_requests_total").add(i.counts.get("received", 0), interface=i.name)
            f("interface_replies_total").add(i.counts.get("sent", 0), interface=i.name)
            f("interface_dropped_standby_total").add(i.counts.get("dropped_standby", 0),
                                                     interface=i.name)
    _dhcp(f, "", snap.device_dhcp)
    _xdp(f, "", snap.device_xdp)

    for p in snap.pools:
        for state in LEASE_STATES:
            f("leases").add(p.leases.get(state, 0), pool=p.name, state=state)
        f("pool_addresses").add(p.size, pool=p.name)
        f("pool_addresses_used").add(p.used, pool=p.name)
        if p.size:
            f("pool_use_ratio").add(p.used / p.size, pool=p.name)
        if p.alarm_percent:
            f("pool_alarm_threshold_ratio").add(p.alarm_percent / 100, pool=p.name,
                                                level="raise")
            f("pool_alarm_threshold_ratio").add(p.clear_percent / 100, pool=p.name,
                                                level="clear")

    for g in snap.groups:
        for state in VRRP_STATES:
            f("vrrp_state").add(int(g.state == state), group=g.name, state=state)
        f("vrrp_priority").add(g.priority, group=g.name)
        f("vrrp_priority_configured").add(g.configured_priority, group=g.name)
        f("vrrp_info").add(1, group=g.name, vrid=str(g.vrid), master=g.master)
        for k, v in sorted(g.events.items()):
            f("vrrp_events_total").add(v, group=g.name, event=k)
        for k, v in sorted(g.rejected.items()):
            f("vrrp_adverts_rejected_total").add(v, group=g.name, reason=_strip(k, "rx_"))
        for cause in TAKEOVER_CAUSES:
            f("takeovers_total").add(snap.takeovers.get((g.name, cause), 0), group=g.name,
                                     cause=cause)
    known = {(g.name, c) for g in snap.groups for c in TAKEOVER_CAUSES}
    for (group, cause), n in sorted(snap.takeovers.items()):
        if (group, cause) not in known:  # a group since removed, or a cause added later
            f("takeovers_total").add(n, group=group, cause=cause)
    for group, t in sorted(snap.last_takeover.items()):
        f("last_takeover_duration_seconds").add(t.duration_s, group=group)
        f("last_takeover_timestamp_seconds").add(t.at, group=group)

    s = snap.sync
    if s is not None:
        for state in SYNC_STATES:
            f("sync_peer_state").add(int(s.peer == state), state=state)
        f("sync_ready").add(int(s.ready))
        f("sync_lag_updates").add(s.lag)
        f("sync_last_seq").add(s.last_seq)
        h = f("sync_replication_delay_seconds")
        for bound, n in zip(s.delay.bounds, s.delay.counts, strict=True):
            h.add(n, "_bucket", le=_le(bound))
        h.add(s.delay.count, "_bucket", le="+Inf")
        h.add(s.delay.count, "_count")
        h.add(s.delay.total, "_sum")
        f("sync_config_drift_settings").add(len(s.drift))
        if s.clock_skew_s is not None:
            f("sync_clock_skew_seconds").add(s.clock_skew_s)
        for k, v in sorted(s.events.items()):
            f("sync_events_total").add(v, event=k)
        for k, v in sorted(s.refused.items()):
            f("sync_refused_total").add(v, reason=_strip(k, "refused_"))

    for a in snap.alarms:
        f("alarm_active").add(int(a.active), alarm=a.kind, subject=a.subject)
        f("alarms_raised_total").add(a.raised, alarm=a.kind, subject=a.subject)

    return [x for x in fam.values() if x.samples]


def _dhcp(f, ifname: str, counters) -> None:  # type: ignore[no-untyped-def]
    for k, v in sorted(counters.items()):
        if k in RECEIVED:
            f("dhcp_packets_received_total").add(v, interface=ifname, type=k)
        elif k in SENT:
            f("dhcp_packets_sent_total").add(v, interface=ifname, type=k)
        elif k.startswith("dropped_"):
            f("dhcp_packets_dropped_total").add(v, interface=ifname, reason=k[8:])
        elif k.startswith("nak_"):
            f("dhcp_naks_total").add(v, interface=ifname, reason=k[4:])
        elif k == "send_errors":
            f("dhcp_send_errors_total").add(v, interface=ifname)
        else:
            f("dhcp_notes_total").add(v, interface=ifname, note=k)


def _xdp(f, ifname: str, counters) -> None:  # type: ignore[no-untyped-def]
    # The program either passes a DHCP packet or drops it: every counter but these two
    # is a drop reason (dropped_standby, dropped_ratelimit, malformed, ...).
    for k, v in sorted(counters.items()):
        if k == "seen":
            f("xdp_packets_seen_total").add(v, interface=ifname)
        elif k == "passed":
            f("xdp_packets_passed_total").add(v, interface=ifname)
        else:
            f("xdp_packets_dropped_total").add(v, interface=ifname,
                                                reason=_strip(k, "dropped_"))


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _le(bound: float) -> str:
    """A bucket bound as Prometheus clients write it (0.005, 1.0, ...)."""
    return repr(float(bound))
