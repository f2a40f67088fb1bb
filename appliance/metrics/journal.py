"""Logging to the systemd journal, each line's stable ID as structured fields.

Adapter (python3-systemd's journal socket). Under systemd (JOURNAL_STREAM or
INVOCATION_ID set) `dhcp-hotbackup run` logs through `handler()`: every line keeps its
text ("D049 the peer's daemon is gone ...: taking over now") and gains

    DHCP_HOTBACKUP_ID=D049                             the ID itself
    MESSAGE_ID=<32 hex digits>                         the journal's catalogue field: a
                                                       UUID derived from the ID, stable
                                                       across versions (message_id())

so `journalctl DHCP_HOTBACKUP_ID=M020` or `journalctl MESSAGE_ID=...` finds every
takeover, as `journalctl -p warning` finds every warning. Elsewhere (a terminal, the
tests) the log goes to stderr as before.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from functools import lru_cache

# The first word of a message when it is a log ID: D040, SYNC007, M020, VRRP_LINK, ...
ID_RE = re.compile(r"^([A-Z]{1,8}[0-9]{3}|[A-Z]{2,}_[A-Z][A-Z0-9_]*)(?![A-Za-z0-9_])")
# The namespace of our MESSAGE_IDs (uuid5 of this and the ID): fixed forever, so that a
# saved `journalctl MESSAGE_ID=` query keeps working across versions.
NAMESPACE = uuid.UUID("5d7c1c0e-52a4-4f35-9c51-0e0a6c6f7a14")
SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "dhcp-hotbackup"


@lru_cache(maxsize=512)
def message_id(ident: str) -> str:
    """The journal MESSAGE_ID of log ID `ident`, as journalctl matches it (32 lower-case
    hex digits, the form `journalctl --new-id128` prints)."""
    return uuid.uuid5(NAMESPACE, ident).hex


def log_id(message: str) -> str | None:
    m = ID_RE.match(message)
    return m.group(1) if m else None


def under_systemd(environ: dict[str, str] | None = None) -> bool:
    """systemd started us: our stderr goes to the journal anyway (JOURNAL_STREAM) or we
    run as a unit (INVOCATION_ID)."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def fields(record: logging.LogRecord) -> dict[str, str]:
    """The structured fields a record gains (none when its message has no ID)."""
    ident = log_id(record.getMessage())
    if ident is None:
        return {}
    return {"MESSAGE_ID": message_id(ident), "DHCP_HOTBACKUP_ID": ident}


def handler(socket_path: str = SOCKET) -> logging.Handler | None:
    """A handler writing to the journal with the ID fields; None when python3-systemd or
    the journal's socket is missing (the caller logs to stderr then)."""
    try:
        from systemd import journal
    except ImportError:
        return None
    if not os.path.exists(socket_path):
        return None

    class IdJournalHandler(journal.JournalHandler):  # type: ignore[misc]
        def emit(self, record: logging.LogRecord) -> None:
            # JournalHandler sends every attribute of the record as a field.
            for k, v in fields(record).items():
                setattr(record, k, v)
            super().emit(record)

    return IdJournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)
