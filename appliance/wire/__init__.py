"""wire: pure codecs for the Ethernet, IPv4 and UDP headers shared by every protocol.

Nothing here touches a socket. Parsers raise WireError with a short stable `reason`
(a counter name suffix); builders raise ValueError on arguments that cannot be encoded.
"""

from __future__ import annotations


class WireError(ValueError):
    """A frame or header that cannot be parsed; `reason` is short and stable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
