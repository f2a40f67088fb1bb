"""The RFC 6926 bulk leasequery listener: TCP connections from requesters (a BNG or relay
rebuilding its state after a reboot), DHCPBULKLEASEQUERY in, framed answers out.

An asyncio adapter of dhcp/leasequery.py, started by the daemon when
leasequery/bulk_listen is set. What it decides is in the pure module (framing, which
bindings a query names, the answers); here are the limits, each refusal a named reason
(leasequery.LqReason: a counter and a rate-limited log line):

- at most leasequery/bulk_max_connections connections at once; one more is closed at
  accept (`bulk_refused_connections`);
- only requesters in leasequery/requesters (the connection's source address); others
  are closed at accept (`bulk_refused_not_allowed`);
- a frame of length 0 or longer than one DHCP message, or a message that does not
  decode, closes the connection (`bulk_refused_frame`), as does a message other than
  DHCPBULKLEASEQUERY (`bulk_refused_not_query`): nothing after it can be trusted;
- no query (or a peer that reads none of our answers) for
  leasequery/bulk_idle_timeout_s closes it (`bulk_closed_idle`);
- a query while this device serves no group gets DHCPLEASEQUERYDONE with NotAllowed
  (`bulk_refused_standby`); one in progress when it stops serving ends with
  QueryTerminated (`bulk_query_terminated`): the requester asks the new active device.

Queries of one connection are answered one after the other, in order (RFC 6926 lets
a server do so); the next is not read before the last answer is written, so a requester
that sends faster than it reads is held back by TCP, not by our memory. Answers are
written STEP at a time with a drain and a turn of the event loop between steps: DHCP
keeps being served while a million bindings stream out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from ipaddress import IPv4Address

from appliance.clock import Clock
from appliance.config.model import LeasequeryConfig
from appliance.dhcp.enums import MessageType
from appliance.dhcp.leasequery import (
    COUNTERS,
    LOG,
    FrameError,
    Framer,
    Leasequery,
    LqReason,
    Status,
    allowed,
    frame,
    read_bulk_query,
)
from appliance.dhcp.message import DhcpMessage
from appliance.ratelog import RateLimitedLog

log = logging.getLogger("dhcp-hotbackup")

STEP = 256  # answers written between two turns of the event loop
_READ = 65536


class BulkListener:
    def __init__(self, lq: Leasequery, cfg: LeasequeryConfig,
                 server_id: Callable[[], bytes | None], stats: MutableMapping[str, int],
                 clock: Clock, ratelog: RateLimitedLog) -> None:
        """`server_id()`: the server identifier for our answers while this device serves
        a group, None while it serves none (standby)."""
        self.lq = lq
        self.cfg = cfg
        self.server_id = server_id
        self.stats = stats
        for name in (*COUNTERS, *(r.value for r in LqReason)):
            stats.setdefault(name, 0)
        self.clock = clock
        self._ratelog = ratelog
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def port(self) -> int:
        """The TCP port listened on (the one asked for, or the kernel's pick for 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        host, _, port = self.cfg.bulk_listen.rpartition(":")
        self._server = await asyncio.start_server(self._accept, host, int(port),
                                                  reuse_address=True)
        log.info("LQ020 bulk leasequery (RFC 6926) listening on %s", self.cfg.bulk_listen)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    def _refuse(self, why: LqReason, detail: str) -> None:
        self.stats[why.value] += 1
        lid, text = LOG[why]
        self._ratelog.warning(self.clock.mono(), lid, "%s (%s)", text, detail)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        who = f"{peer[0]}:{peer[1]}"
        try:
            if len(self._conns) >= self.cfg.bulk_max_connections:
                self._refuse(LqReason.BULK_CONNECTIONS, f"{who}; "
                             f"{self.cfg.bulk_max_connections} open")
                return
            try:
                src = int(IPv4Address(peer[0]))
            except ValueError:
                src = 0
            if not allowed(self.lq.requesters, src):
                self._refuse(LqReason.BULK_NOT_ALLOWED, who)
                return
            self._conns.add(writer)
            await self._serve(reader, writer, who)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     who: str) -> None:
        framer = Framer()
        idle = self.cfg.bulk_idle_timeout_s
        while True:
            try:
                data = await asyncio.wait_for(reader.read(_READ), idle)
            except TimeoutError:
                self._refuse(LqReason.BULK_IDLE, f"{who}: nothing for {idle} s")
                return
            if not data:
                return  # the requester closed
            try:
                frames = framer.feed(data)
            except FrameError as e:
                self._refuse(LqReason.BULK_FRAME, f"{who}: {e}")
                return
            for raw in frames:
                msg = read_bulk_query(raw)
                if isinstance(msg, LqReason):
                    self._refuse(msg, who)
                    return
                self.stats["bulkleasequery"] += 1
                if not await self._answer(msg, writer, who):
                    return

    async def _answer(self, msg: DhcpMessage, writer: asyncio.StreamWriter, who: str
                      ) -> bool:
        """Write every answer of one query; False: the connection is to be closed."""
        sid = self.server_id()
        lq = self.lq
        now = self.clock.wall()
        if sid is None:
            self._refuse(LqReason.BULK_STANDBY, who)
            writer.write(frame(lq.done(msg, bytes(4), now, Status.NOT_ALLOWED,
                                       "not the active server").encode(0)))
            self.stats["leasequerydone"] += 1
            return await self._drain(writer, who)
        n = 0
        for r in lq.bulk(msg, sid, now):
            if r.message_type == MessageType.LEASEQUERYDONE:
                self.stats["leasequerydone"] += 1
                if r.options.get(151, b"\x00")[:1] == bytes((Status.MALFORMED_QUERY,)):
                    self._refuse(LqReason.BULK_MALFORMED, who)
            else:
                self.stats["bulk_replies"] += 1
            writer.write(frame(r.encode(0)))
            n += 1
            if n % STEP == 0:
                if not await self._drain(writer, who):
                    return False
                await asyncio.sleep(0)
                if self.server_id() is None:
                    self._refuse(LqReason.BULK_TERMINATED, f"{who}: {n} answers sent")
                    writer.write(frame(lq.done(msg, sid, self.clock.wall(),
                                               Status.QUERY_TERMINATED,
                                               "this server stopped serving").encode(0)))
                    self.stats["leasequerydone"] += 1
                    return await self._drain(writer, who)
        return await self._drain(writer, who)

    async def _drain(self, writer: asyncio.StreamWriter, who: str) -> bool:
        """Wait for the kernel to take what was written; a requester that reads nothing
        for the idle timeout is closed."""
        try:
            await asyncio.wait_for(writer.drain(), self.cfg.bulk_idle_timeout_s)
        except TimeoutError:
            self._refuse(LqReason.BULK_IDLE, f"{who}: reads nothing")
            return False
        return True
