"""VRRPv3 timer arithmetic: Skew_Time, Master_Down_Interval and unit conversions (RFC 5798 §6.1).

Pure: numbers in, numbers out. VRRPv3 counts intervals in centiseconds on the wire
(§5.2.7); the state machine schedules in seconds (float), like the event loop it runs on.
"""

from __future__ import annotations

CS_PER_S = 100


def ms_to_cs(ms: int) -> int:
    """The config's advert_interval_ms as VRRPv3 centiseconds (the config enforces a
    multiple of 10; anything finer is rounded down, never to 0)."""
    return max(1, ms // 10)


def cs_to_s(cs: float) -> float:
    return cs / CS_PER_S


def skew_time_cs(priority: int, master_adver_interval_cs: int) -> float:
    """RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256.

    In centiseconds. The higher the local priority, the shorter the skew, so that of
    several backups the one with the highest priority times out first.
    """
    return ((256 - priority) * master_adver_interval_cs) / 256


def master_down_interval_cs(priority: int, master_adver_interval_cs: int) -> float:
    """RFC 5798 §6.1: Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_Time."""
    return 3 * master_adver_interval_cs + skew_time_cs(priority, master_adver_interval_cs)


def skew_time_s(priority: int, master_adver_interval_cs: int) -> float:
    return cs_to_s(skew_time_cs(priority, master_adver_interval_cs))


def master_down_interval_s(priority: int, master_adver_interval_cs: int) -> float:
    return cs_to_s(master_down_interval_cs(priority, master_adver_interval_cs))
