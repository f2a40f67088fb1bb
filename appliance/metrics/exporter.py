"""The Prometheus endpoint: GET /metrics on `metrics/listen`, served from a thread.

Adapter (a listening socket, threads, python3-prometheus-client's text formats). The
daemon hands over a Snapshot about once a second (`update`). The HTTP side (accepting,
reading the request, writing the body) runs in this module's threads, so a slow or stuck
scraper costs the event loop nothing. The rendering (families.py, then
prometheus_client's encoder) runs on the daemon's loop, asked for by the scrape with
`call_soon_threadsafe`, once per snapshot and format however many scrapers ask: a pause
of about 0.8 ms between two callbacks (bench/metrics_scrape.py), instead of a thread
that holds the GIL for as long while the loop waits for it at each of its system calls.
A loop that does not render within RENDER_WAIT_S is stuck (it serves no DHCP either):
the scrape gets a 503, so Prometheus's `up` shows it, rather than old figures.

The body is Prometheus's text format 0.0.4, or OpenMetrics when the scraper asks for it
(`Accept: application/openmetrics-text`, as Prometheus does), both written by
prometheus_client. An address that cannot be bound yet (the interface is still coming
up) is retried every RETRY_S without stopping DHCP (M002).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from appliance.metrics.families import families
from appliance.metrics.snapshot import Snapshot

log = logging.getLogger("dhcp-hotbackup.metrics")

RETRY_S = 5.0
RENDER_WAIT_S = 5.0  # a loop that does not render within this is stuck: 503, `up` 0
POLL_S = 0.2  # how often the server thread looks for a stop (stop() waits at most this)
REQUEST_TIMEOUT_S = 10.0  # a client that sends nothing is dropped after this
INDEX = (b"<html><head><title>dhcp-hotbackup</title></head><body>"
         b"<a href=\"/metrics\">/metrics</a></body></html>\n")


def parse_listen(listen: str) -> tuple[str, int]:
    """'192.0.2.2:9467' -> ('192.0.2.2', 9467) (the config reader checked it)."""
    host, _, port = listen.rpartition(":")
    return host, int(port)


class _Collector:
    """What prometheus_client's encoders read: the families of one snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        for fam in families(self.snap):
            m = fam.metric
            # prometheus_client names a counter family without `_total` and adds it
            # back when writing the 0.0.4 text format.
            name = m.name[:-6] if m.kind == "counter" else m.name
            out = Metric(name, m.help, m.kind)
            for sample, labels, value in fam.samples:
                out.add_sample(sample, dict(labels), value)
            yield out


def _kind(accept: str) -> str:
    return "openmetrics" if "application/openmetrics-text" in accept else "text"


def render(snap: Snapshot, accept: str = "") -> tuple[bytes, str]:
    """The scrape body for `snap` and its content type, as the Accept header asks."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_Collector(snap)), content_type  # type: ignore[arg-type]


class Exporter:
    """The endpoint: `start()` once, `update(snapshot)` on every publish, `stop()`."""

    def __init__(self, listen: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.listen = listen
        self._loop = loop  # renders the bodies; None: render in the scrape's thread
        self.host, self.port = parse_listen(listen)
        self._snap: Snapshot | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # orders stop() against the thread's bind
        self.bound = threading.Event()  # set once the socket listens
        self.scrapes = 0
        self.errors = 0
        # The last body per content type and the snapshot it was made from: a second
        # scraper (an HA pair of Prometheus servers) between two publishes costs nothing.
        self._cache: dict[str, tuple[Snapshot, bytes, str]] = {}
        self._last_error_log = 0.0

    def update(self, snap: Snapshot) -> None:
        # One reference assignment: the server thread reads either the old or the new
        # snapshot, never half of one (snapshots are not changed after this).
        self._snap = snap

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._stop.set()
            server = self._server
        if server is not None:
            server.shutdown()  # returns once serve_forever has seen it (<= POLL_S)
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the server thread ------------------------------------------------------------
    def _run(self) -> None:
        failing = ""
        while not self._stop.is_set():
            try:
                server = ThreadingHTTPServer((self.host, self.port), self._handler())
            except OSError as e:
                if str(e) != failing:
                    failing = str(e)
                    log.warning("M002 metrics endpoint cannot listen on %s: %s; retrying "
                                "every %.0f s (DHCP is not affected)", self.listen, e, RETRY_S)
                self._stop.wait(RETRY_S)
                continue
            server.daemon_threads = True
            with self._lock:
                if self._stop.is_set():
                    server.server_close()
                    return
                # From here stop() shuts this server down, and serve_forever returns
                # at once even if that came first.
                self._server = server
            self.port = server.server_address[1]  # port 0 in tests: the one chosen
            self.bound.set()
            log.info("M001 metrics endpoint listening on http://%s:%d/metrics",
                     self.host, self.port)
            server.serve_forever(POLL_S)
            return

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S
            server_version = "dhcp-hotbackup"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/":
                    self._reply(200, INDEX, "text/html; charset=utf-8")
                elif path == "/metrics":
                    exporter._scrape(self)
                else:
                    self._reply(404, b"not found: try /metrics\n", "text/plain")

            def _reply(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per scrape would flood the journal

        return Handler

    def _body(self, accept: str) -> tuple[bytes, str] | None:
        """The last snapshot rendered as `accept` asks (cached per format)."""
        snap = self._snap
        if snap is None:
            return None
        kind = _kind(accept)
        cached = self._cache.get(kind)
        if cached is not None and cached[0] is snap:
            return cached[1], cached[2]
        body, ctype = render(snap, accept)
        self._cache[kind] = (snap, body, ctype)
        return body, ctype

    def _on_loop(self, accept: str) -> tuple[bytes, str] | None:
        """_body(), run on the daemon's loop; this thread waits for it."""
        loop = self._loop
        snap, kind = self._snap, _kind(accept)
        cached = self._cache.get(kind)
        if loop is None or (cached is not None and cached[0] is snap):
            return self._body(accept)  # rendered already (a second scraper), or no loop
        done = threading.Event()
        out: list[object] = []

        def job() -> None:
            try:
                out.append(self._body(accept))
            except Exception as e:  # handed to the scrape's thread, which logs it
                out.append(e)
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(job)
        except RuntimeError:  # the loop is closed: the daemon is stopping
            raise TimeoutError("the daemon is stopping") from None
        if not done.wait(RENDER_WAIT_S):
            raise TimeoutError(f"the daemon's event loop did not answer within "
                               f"{RENDER_WAIT_S:.0f} s")
        if isinstance(out[0], Exception):
            raise out[0]
        return out[0]  # type: ignore[return-value]

    def _scrape(self, h) -> None:  # type: ignore[no-untyped-def]
        accept = h.headers.get("Accept", "")
        try:
            got = self._on_loop(accept)
        except TimeoutError as e:
            h._reply(503, f"{e}\n".encode(), "text/plain")
            return
        except Exception as e:  # a bug in families(): say so, keep serving
            self.errors += 1
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                log.error("M003 metrics could not be rendered (%d times so far): %r",
                          self.errors, e)
            h._reply(500, b"metrics could not be rendered; see the log (M003)\n",
                     "text/plain")
            return
        if got is None:
            h._reply(503, b"no snapshot yet: the daemon is starting\n", "text/plain")
            return
        body, ctype = got
        self.scrapes += 1
        h._reply(200, body, ctype)
