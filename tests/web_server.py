"""A pathological web server on several loopback addresses, for testing the crawler (pipeline.fetch).

``WebServer`` runs an aiohttp application in a background thread with its own event loop. It listens
on ONE port on several loopback IPs (Linux routes all of 127.0.0.0/8 to ``lo``), so each IP is a
different "host" to a crawler: its own robots.txt, its own politeness slot, its own connections.

Hosts (all on ``server.port``; ``server.base(ip)`` is ``http://<ip>:<port>``):

============  ===========================================================================
IP            robots.txt, and what a crawler must do
============  ===========================================================================
127.0.0.2     ``MAIN``: 200, allows everything. The ordinary site.
127.0.0.3     ``RESTRICTED``: 200, disallows ``/private/`` for every agent and everything for
              the agent ``badbot``. Disallowed URLs must never be requested.
127.0.0.4     ``ROBOTS_503``: robots.txt answers 503 (RFC 9309: assume complete disallow); the
              host's pages must not be requested (``robots_unavailable``).
127.0.0.6     ``NO_ROBOTS``: robots.txt answers 404 (RFC 9309: allow everything).
127.0.0.1     ``FORBIDDEN``: served too (robots.txt 404), so that a crawler whose address guard
              fails is caught in the request log instead of failing to connect. With the guard
              on, no request may ever arrive here.
::1           ``FORBIDDEN_V6``: as 127.0.0.1, when the machine has IPv6 (``server.ipv6``).
127.0.0.5     ``REFUSED``: nothing listens there; ``refused_url()`` gives a closed port on it.
============  ===========================================================================

Every host serves every path below. Per-host behaviour is keyed by the address the request arrived
on (not the Host header), so ``FetchConfig.hosts`` can map any name onto any of these IPs.

Pages (keep them; ``bytes`` is the body length after decoding the content coding):

- ``/article``: a ~150 KB HTML article, ``text/html; charset=utf-8`` (body: ``ARTICLE_HTML``);
- ``/page/<name>``: a small HTML page, body ``page_html(name)``; ``/private/<name>`` the same
  (disallowed on RESTRICTED);
- ``/sleep/<seconds>``: a small page sent after ``<seconds>`` (at most ``MAX_SLEEP_S``, 60; ``stop()``
  ends the wait). ``/sleep/30`` is the slow server that a short ``read_timeout_s`` must cut
  (``timeout``): the answer is far enough away that only the read timeout can end the request;
- ``/encoded/gzip``: a small page with ``Content-Encoding: gzip`` (decode it; ``page_html("gzip")``);
  ``/encoded/br``: the same with brotli, only when brotli is installed (``HAS_BROTLI``; else 404);
- ``/untyped/html``: HTML with NO Content-Type header, starting with ``<!DOCTYPE html>``: sniff it
  and keep it (body ``UNTYPED_HTML``);
- ``/charset/mislabeled``: UTF-8 bytes declared ``charset=iso-8859-1`` (``MISLABELED_HTML``) and
  ``/charset/cp1252``: cp1252 bytes, ``text/html`` without charset (``CP1252_HTML``): keep them, and
  archive the bytes exactly as sent.

Statuses and retries (``retries`` retries after a connection error, 429 or 5xx):

- ``/status/<code>``: always answers ``<code>`` with a small HTML body (``/status/404``,
  ``/status/410`` -> ``http_404``/``http_410`` without retrying; ``/status/503`` exhausts the
  retries -> ``http_503`` after ``retries + 1`` attempts);
- ``/flaky/<code>/<key>``: answers ``<code>`` the first ``?fails=N`` times (default 1) per host and
  path, then 200 with ``page_html(key)``. ``/flaky/500/<key>``: retry, kept at attempt 2.
  ``/flaky/429/<key>`` also sends ``Retry-After: 1`` (``?retry_after=S`` to change it): wait at least
  that long before retrying; a Retry-After above ``max_retry_after_s`` fails the URL (``http_429``).
  Counters: ``server.reset_counters()``.

Redirects (``redirects`` lists the URLs followed; at most ``max_redirects``):

- ``/chain/start``: 301 (Location ``/chain/two``, absolute path) -> 302 (``http://<Host>/chain/three``,
  absolute URL) -> 307 (``end?via=three``, relative) -> ``/chain/end?via=three``: 200 page. The WARC
  must hold each hop's response;
- ``/hops/<n>``: ``n`` redirects (codes cycle 301, 302, 307, 308; Location alternates absolute URL and
  absolute path) down to ``/hops/0``, a 200 page. ``/hops/7`` -> ``too_many_redirects`` (default 5),
  ``/hops/5`` is kept;
- ``/loop/a`` -> ``/loop/b`` -> ``/loop/a``: ``redirect_loop``;
- ``/redirect/private``: 302 to ``http://127.0.0.1:<port>/page/internal`` (``blocked_address``
  unless private addresses are allowed); ``/redirect/metadata``: 302 to ``METADATA_URL``
  (``http://169.254.169.254/latest/meta-data/``), always ``blocked_address`` with the guard on.

Bodies that must be cut (the server side of each is bounded by ``STREAM_LIMIT_S`` and by ``stop()``):

- ``/drip``: a valid HTML start, then one byte every ``DRIP_INTERVAL_S`` (0.1 s) forever: a read
  timeout well above the interval never fires, only the total deadline ``timeout_s`` ends it
  (``timeout``);
- ``/endless``: ``text/html``, 64 KiB chunks forever, chunked, no Content-Length: stop at
  ``max_bytes`` (``too_large``);
- ``/bomb/gzip``: ``Content-Encoding: gzip``, ~1 MB on the wire (honest Content-Length) that inflates
  to 1 GiB of ``<p>`` and spaces: count the DECODED bytes and stop at ``max_bytes`` without inflating
  it all (``too_large``). Deflate cannot exceed ~1032:1, so 1 GiB needs ~1 MB compressed;
- ``/huge-length``: ``Content-Length: 10 GiB``, then 1 KiB of body and a stall: reject it from the
  header (``too_large``) without waiting for the body.

Not HTML (``not_html``): ``/media/pdf`` (``application/pdf``), ``/media/png`` (``image/png``),
``/media/binary`` (``application/octet-stream``), ``/media/json`` (``application/json``), and
``/untyped/binary``: binary with no Content-Type at all.

Other URLs: ``refused_url()`` (connection refused: ``connection_error``), ``UNRESOLVABLE_URL``
(``.invalid`` never resolves: ``dns_error``).

Every request is logged: ``server.requests(path=None, ip=None, prefix=None)`` gives ``Recorded``
entries (method, the IP it arrived on, Host header, path, query, user agent, status, and
``time.monotonic()`` of its arrival and of its handler's end: ``ended`` stays None while it runs;
it is set before the response is sent, so once a client has an answer, its request has ended);
``server.pages(ip)`` leaves out robots.txt; ``server.clear_log()``, ``server.reset_counters()``.
``server.active_streams`` counts drip/endless/huge-length responses still being sent.

Tests wait on events, not on sleeps: ``server.wait_for(condition, timeout)`` blocks until
``condition()`` holds, re-checking it each time a request arrives or ends or a stream starts or ends
(the timeout is only a safety net: it returns as soon as the condition holds);
``server.wait_ended(path)`` waits until every request of ``path`` (at least one) has ended.

Use::

    with WebServer() as server:
        fetch_urls([server.url("/article")], cfg, out_dir)
        assert server.requests("/article")

or as a pytest fixture::

    @pytest.fixture
    def server() -> Iterator[WebServer]:
        with WebServer() as srv:
            yield srv

``stop()`` (and leaving the ``with``) returns within about a second even while clients hold endless
responses open: it ends them, aborts every connection, and raises if the thread is still alive
after 15 s (a safety net far above the usual time, so that a busy machine does not trip it).
``server.ipv6`` says whether ``[::1]`` is served; ``server.listening`` lists the addresses.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gzip
import html
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler

MAIN = "127.0.0.2"
RESTRICTED = "127.0.0.3"
ROBOTS_503 = "127.0.0.4"
REFUSED = "127.0.0.5"
NO_ROBOTS = "127.0.0.6"
FORBIDDEN = "127.0.0.1"
FORBIDDEN_V6 = "::1"
SERVED = (MAIN, RESTRICTED, ROBOTS_503, NO_ROBOTS)
UNRESOLVABLE_URL = "http://no-such-host.invalid/"
METADATA_URL = "http://169.254.169.254/latest/meta-data/"

STREAM_LIMIT_S = 60.0  # an endless response ends on its own after this long (safety net)
DRIP_INTERVAL_S = 0.1  # far below any read timeout a test sets: only a total deadline ends /drip
ENDLESS_CHUNK = 64 << 10
HUGE_LENGTH = 10 << 30
BOMB_SIZE = 1 << 30
MAX_SLEEP_S = 60.0
_STRIP_TYPE = "X-Test-Strip-Content-Type"  # marker: on_response_prepare removes Content-Type

try:
    import brotli  # type: ignore[import-not-found]

    HAS_BROTLI = True
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None
    HAS_BROTLI = False


# --- bodies ----------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in is was that for on with as by at from this which be are have it not or an were "
    "city council budget report river bridge election research university study data model network "
    "energy climate policy market price growth health hospital school teacher student museum history "
    "century music film novel author science physics biology computer software language library "
    "café naïve résumé Zürich São Paulo Kraków 東京 Ελλάδα — “quoted” 2019 42 3.5%"
).split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 24))]
    return " ".join(words).capitalize() + rng.choice(".....?!")


def _article_html(seed: int = 20190214, target: int = 150_000) -> bytes:
    """A realistic news article: head with meta and inline CSS/JS, nav, sections, sidebar, footer."""
    rng = random.Random(seed)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>City council approves river bridge budget after long debate</title>\n"
        '<meta name="description" content="The council voted 7-2 to fund the new bridge.">\n'
        "<style>body{font-family:Georgia,serif;max-width:42em;margin:auto}nav a{margin:0 .5em}"
        ".byline{color:#666}</style>\n<script>window.dataLayer=window.dataLayer||[];"
        "function gtag(){dataLayer.push(arguments)}</script>\n</head>\n<body>\n"
        '<nav><a href="/">Home</a><a href="/page/world">World</a><a href="/page/science">Science</a>'
        '<a href="/page/culture">Culture</a></nav>\n<article>\n'
        "<h1>City council approves river bridge budget after long debate</h1>\n"
        '<p class="byline">By Ana Müller · 14 February 2019 · 12 min read</p>\n'
    )
    parts = [head]
    size, section = len(head.encode()), 0
    while size < target:
        if rng.random() < 0.15:
            section += 1
            block = f"<h2>Section {section}: {html.escape(_sentence(rng).rstrip('.?!'))}</h2>\n"
        else:
            text = " ".join(_sentence(rng) for _ in range(rng.randint(3, 8)))
            block = f"<p>{html.escape(text)}</p>\n"
        parts.append(block)
        size += len(block.encode())
    parts.append(
        '</article>\n<aside><h3>Related</h3><ul><li><a href="/page/r1">Budget explained</a></li>'
        '<li><a href="/page/r2">Bridge timeline</a></li></ul></aside>\n'
        "<footer><p>© 2019 The Example Gazette</p></footer>\n</body>\n</html>\n"
    )
    return "".join(parts).encode()


def page_html(name: str) -> bytes:
    """The small UTF-8 HTML page served for ``/page/<name>`` (and the other small pages)."""
    title = html.escape(name)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>A small page called {title}. Plenty of words follow so that an "
        "extractor would find a paragraph here: the quick brown fox jumps over the lazy dog, "
        "café naïve 東京.</p></body></html>\n"
    ).encode()


def _png() -> bytes:
    """A valid 1x1 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # one scanline: filter 0, one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


ARTICLE_HTML = _article_html()
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG = _png()
BINARY = bytes(random.Random(7).randrange(256) for _ in range(4096))
JSON = b'{"title": "not a web page", "items": [1, 2, 3], "ok": true}\n'
UNTYPED_HTML = b"<!DOCTYPE html>\n" + page_html("untyped").split(b"\n", 1)[1]
UNTYPED_BINARY = b"\x00\x01\x02\x03\xfe\xff" + BINARY
MISLABELED_HTML = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Mislabeled</title></head><body>'
    "<p>Declared ISO-8859-1, sent as UTF-8: café, naïve, Zürich, 東京, “quotes” — dash.</p>"
    "</body></html>\n"
).encode()
CP1252_HTML = (
    "<!DOCTYPE html>\n<html><head><title>Windows-1252</title></head><body>"
    "<p>No charset anywhere: “smart quotes”, €5, café – naïve … Œuvre.</p></body></html>\n"
).encode("cp1252")
ROBOTS_RESTRICTED = "User-agent: badbot\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n"
ROBOTS_OPEN = "User-agent: *\nDisallow:\n"
ROBOTS: dict[str, tuple[int, str]] = {  # local IP -> (status, body); others: 404
    MAIN: (200, ROBOTS_OPEN),
    RESTRICTED: (200, ROBOTS_RESTRICTED),
    ROBOTS_503: (503, "Service Unavailable\n"),
}
DRIP_START = b"<!DOCTYPE html>\n<html><head><title>drip</title></head><body><p>"
HOPS_CODES = (301, 302, 307, 308)


def gzip_bomb(size: int = BOMB_SIZE) -> bytes:
    """A gzip stream (one member) of ``DRIP_START`` then ``<p>`` and spaces, ``size`` bytes inflated.

    Built without ever holding the inflated data: one MiB block is deflated once with a full flush
    (which resets the dictionary, so the compressed block can be repeated as is) and repeated; the
    CRC is computed block by block. ``gzip_bomb()`` (1 GiB, ~1 MB) is cached.
    """
    return _bomb(size)


@functools.lru_cache(maxsize=4)
def _bomb(size: int) -> bytes:
    block_size = 1 << 20
    block = b"<p>" + b" " * (block_size - 3)
    prefix = DRIP_START
    blocks, tail = divmod(size - len(prefix), block_size)
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]  # gzip header: deflate, no name, mtime 0
    crc = zlib.crc32(prefix)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    out.append(deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH))
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    out.append(segment * blocks)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    rest = block[:tail]
    out.append(deflate.compress(rest) + deflate.flush(zlib.Z_FINISH))
    crc = zlib.crc32(rest, crc)
    out.append(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    return b"".join(out)


# --- addresses -------------------------------------------------------------------------------------


def refused_url(ip: str = REFUSED, attempts: int = 20) -> str:
    """``http://<ip>:<port>/`` where nothing listens: connecting is refused at once."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((ip, 0))
            port = probe.getsockname()[1]
        with socket.socket() as client:
            client.settimeout(1.0)
            if client.connect_ex((ip, port)) == errno.ECONNREFUSED:
                return f"http://{ip}:{port}/"
    raise RuntimeError(f"found no closed port on {ip}")


def _listen_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_same_port(addresses: Sequence[str], optional: Sequence[str] = (),
                   attempts: int = 50) -> tuple[int, dict[str, socket.socket]]:
    """Listening sockets on one port free on every address; ``optional`` ones are skipped if unusable.

    The port is picked by the kernel on the first address, then taken on the others; a clash on
    any of them starts over with a new port (at most ``attempts`` times).
    """
    for _ in range(attempts):
        first = _listen_socket(addresses[0], 0)
        port = first.getsockname()[1]
        sockets = {addresses[0]: first}
        try:
            for address in addresses[1:]:
                sockets[address] = _listen_socket(address, port)
            for address in optional:
                try:
                    sockets[address] = _listen_socket(address, port)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise
        except OSError as exc:
            for sock in sockets.values():
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return port, sockets
    raise RuntimeError(f"no port free on all of {list(addresses)} after {attempts} attempts")


# --- the server ------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """One request the server received. ``ended`` is set when its handler returned (or failed)."""

    method: str
    ip: str  # the local address it arrived on: which "host" answered
    host: str  # the Host header
    path: str
    query: str
    user_agent: str
    at: float  # time.monotonic() on arrival
    ended: float | None = None
    status: int | None = None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """The pathological server of this module's docstring, on ``ips`` plus the forbidden addresses."""

    def __init__(self, ips: Sequence[str] = SERVED, *, forbidden: bool = True,
                 shutdown_s: float = 1.0) -> None:
        self.ips = tuple(ips)
        self._forbidden = forbidden
        self._shutdown_s = shutdown_s
        self.port = 0
        self.listening: tuple[str, ...] = ()
        self._log: list[Recorded] = []
        self._counters: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition()  # notified when the log or the streams change
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._streams: set[asyncio.BaseTransport] = set()  # connections carrying endless responses
        self._protocols: list[RequestHandler] = []  # every connection made, to close them all at stop

    # --- addresses and the log -------------------------------------------------------------------

    @property
    def ipv6(self) -> bool:
        """Whether ``[::1]`` is served too (the machine has IPv6 loopback)."""
        return FORBIDDEN_V6 in self.listening

    def base(self, ip: str = MAIN) -> str:
        """``http://<ip>:<port>`` (IPv6 in brackets)."""
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{self.port}"

    def url(self, path: str, ip: str = MAIN) -> str:
        """The absolute URL of ``path`` (starting with ``/``) on host ``ip``."""
        return self.base(ip) + path

    def requests(self, path: str | None = None, ip: str | None = None, *,
                 prefix: str | None = None) -> list[Recorded]:
        """Requests received, in arrival order: all, or those of exactly ``path``, ``prefix`` or ``ip``."""
        with self._lock:
            found = list(self._log)
        return [r for r in found if (path is None or r.path == path) and (ip is None or r.ip == ip)
                and (prefix is None or r.path.startswith(prefix))]

    def pages(self, ip: str | None = None) -> list[Recorded]:
        """Requests other than robots.txt."""
        return [r for r in self.requests(ip=ip) if r.path != "/robots.txt"]

    def clear_log(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._log.clear()

    def reset_counters(self) -> None:
        """Make every ``/flaky/`` path fail again as on its first request."""
        with self._lock:
            self._counters.clear()

    @property
    def active_streams(self) -> int:
        """Endless/stalled responses (drip, endless, huge-length) whose handler is still running."""
        with self._lock:
            return len(self._streams)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait until ``condition()`` holds; False if it still does not after ``timeout`` seconds.

        ``condition`` is checked now and again each time a request arrives or ends, or a stream
        starts or ends; the timeout is a safety net (a passing test never waits for it).
        """
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def wait_ended(self, path: str, timeout: float = 30.0) -> bool:
        """Wait until ``path`` was requested and every request of it has ended (its handler returned)."""
        def ended() -> bool:
            found = self.requests(path)
            return bool(found) and all(r.ended is not None for r in found)

        return self.wait_for(ended, timeout)

    def _notify(self) -> None:
        """Wake ``wait_for``: the log or the streams changed (called without ``_lock`` held)."""
        with self._changed:
            self._changed.notify_all()

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> WebServer:
        """Bind the port on every address and serve from a daemon thread (once per object)."""
        if self._thread is not None or self._ready.is_set():
            raise RuntimeError("a WebServer starts once; make a new one")
        required = list(self.ips)
        if self._forbidden and FORBIDDEN not in required:
            required.append(FORBIDDEN)
        optional = (FORBIDDEN_V6,) if self._forbidden else ()  # ::1 only where IPv6 exists
        self.port, sockets = bind_same_port(required, optional)
        self.listening = tuple(sockets)
        self._thread = threading.Thread(target=self._run, args=(list(sockets.values()),),
                                        name=f"web-server-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"web server did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving: endless handlers end, open connections are closed; raises after ``timeout``."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed in between
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"web server thread still running {timeout} s after stop()")
        self._thread = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, sockets: list[socket.socket]) -> None:
        try:
            asyncio.run(self._serve(sockets))
        except BaseException as exc:  # reported by start(); after start, serving just ends
            self._error = exc
            self._ready.set()
        finally:
            for sock in sockets:
                sock.close()

    async def _serve(self, sockets: list[socket.socket]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self._app(), handle_signals=False, access_log=None,
                               shutdown_timeout=self._shutdown_s)
        await runner.setup()
        make_handler = runner.server
        assert make_handler is not None

        def connection() -> asyncio.Protocol:  # aiohttp's protocol, remembered to be closed at stop
            protocol = make_handler()
            self._protocols.append(protocol)
            return protocol

        listeners: list[asyncio.AbstractServer] = []
        try:
            for sock in sockets:
                listeners.append(await loop.create_server(connection, sock=sock))
            self._ready.set()
            await self._stopping.wait()
        finally:
            for listener in listeners:
                listener.close()
            with self._lock:
                streams = list(self._streams)
            for transport in streams:  # a stalled reader would keep a write (or write_eof) waiting
                transport.abort()
            await runner.cleanup()
            await self._close_connections()

    async def _close_connections(self, timeout: float = 5.0) -> None:
        """Abort the connections still open, and let the loop run until their sockets are closed.

        A transport closes its socket in a loop callback (aiohttp forgets the transport as soon as it
        asked it to close), and a connection accepted just before the listeners closed gets its
        transport in a task; anything pending when ``asyncio.run`` closes the loop would leak a
        socket (ResourceWarning). So abort what is still open, wait (bounded) until no other task is
        left, then give the loop a few more turns for the close callbacks.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_ = [p.transport for p in self._protocols if p.transport is not None]
            for transport in open_:
                transport.abort()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not open_ and not pending:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)
        self._protocols.clear()

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; True if the server started stopping meanwhile."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return False
        return True

    # --- application ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.on_response_prepare.append(_strip_content_type)
        get = [
            ("/robots.txt", self._robots),
            ("/article", _fixed(ARTICLE_HTML, "text/html; charset=utf-8")),
            ("/page/{name}", self._page),
            ("/private/{name}", self._page),
            ("/sleep/{seconds}", self._sleep),
            ("/encoded/gzip", self._gzip_page),
            ("/untyped/html", _fixed(UNTYPED_HTML, None)),
            ("/untyped/binary", _fixed(UNTYPED_BINARY, None)),
            ("/charset/mislabeled", _fixed(MISLABELED_HTML, "text/html; charset=iso-8859-1")),
            ("/charset/cp1252", _fixed(CP1252_HTML, "text/html")),
            ("/status/{code}", self._status),
            ("/flaky/{code}/{key}", self._flaky),
            ("/chain/{step}", self._chain),
            ("/hops/{n}", self._hops),
            ("/loop/{name}", self._loop_redirect),
            ("/redirect/private", self._to_private),
            ("/redirect/metadata", _redirect_to(METADATA_URL)),
            ("/drip", self._drip),
            ("/endless", self._endless),
            ("/bomb/gzip", self._gzip_bomb),
            ("/huge-length", self._huge_length),
            ("/media/pdf", _fixed(PDF, "application/pdf")),
            ("/media/png", _fixed(PNG, "image/png")),
            ("/media/binary", _fixed(BINARY, "application/octet-stream")),
            ("/media/json", _fixed(JSON, "application/json")),
        ]
        if HAS_BROTLI:
            get.append(("/encoded/br", self._brotli_page))
        for path, handler in get:
            app.router.add_route("*", path, handler)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = Recorded(request.method, _local_ip(request), request.headers.get(hdrs.HOST, ""),
                          request.path, request.query_string, request.headers.get(hdrs.USER_AGENT, ""),
                          time.monotonic())
        with self._lock:
            self._log.append(record)
        self._notify()
        try:
            response = await handler(request)
            record.status = response.status
            return response
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        finally:
            record.ended = time.monotonic()
            self._notify()

    # --- handlers ---------------------------------------------------------------------------------

    async def _robots(self, request: web.Request) -> web.Response:
        status, body = ROBOTS.get(_local_ip(request), (404, "Not Found\n"))
        return web.Response(status=status, text=body, content_type="text/plain")

    async def _page(self, request: web.Request) -> web.Response:
        return _html(page_html(request.match_info["name"]))

    async def _sleep(self, request: web.Request) -> web.Response:
        seconds = min(float(request.match_info["seconds"]), MAX_SLEEP_S)
        await self._pause(seconds)
        return _html(page_html(f"slept {seconds:g}"))

    async def _gzip_page(self, request: web.Request) -> web.Response:
        return _html(gzip.compress(page_html("gzip"), mtime=0), headers={hdrs.CONTENT_ENCODING: "gzip"})

    async def _brotli_page(self, request: web.Request) -> web.Response:  # pragma: no cover
        return _html(brotli.compress(page_html("br")), headers={hdrs.CONTENT_ENCODING: "br"})

    async def _status(self, request: web.Request) -> web.Response:
        code = _code(request)
        return _html(page_html(f"status {code}"), status=code)

    async def _flaky(self, request: web.Request) -> web.Response:
        code, key = _code(request), request.match_info["key"]
        with self._lock:
            counter = (_local_ip(request), request.path)
            seen = self._counters[counter] = self._counters.get(counter, 0) + 1
        if seen > int(request.query.get("fails", "1")):
            return _html(page_html(key))
        headers = {hdrs.RETRY_AFTER: request.query.get("retry_after", "1")} if code == 429 else {}
        return _html(page_html(f"status {code}"), status=code, headers=headers)

    async def _chain(self, request: web.Request) -> web.Response:
        step = request.match_info["step"]
        if step == "start":
            return _redirect(301, "/chain/two")
        if step == "two":
            return _redirect(302, f"http://{request.host}/chain/three")
        if step == "three":
            return _redirect(307, "end?via=three")
        if step == "end":
            return _html(page_html("chain end"))
        raise web.HTTPNotFound()

    async def _hops(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n <= 0:
            return _html(page_html("hops end"))
        target = f"/hops/{n - 1}"
        if n % 2:
            target = f"http://{request.host}{target}"
        return _redirect(HOPS_CODES[n % len(HOPS_CODES)], target)

    async def _loop_redirect(self, request: web.Request) -> web.Response:
        return _redirect(302, "/loop/b" if request.match_info["name"] == "a" else "/loop/a")

    async def _to_private(self, request: web.Request) -> web.Response:
        return _redirect(302, f"http://{FORBIDDEN}:{self.port}/page/internal")

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip_bomb(), headers={
            hdrs.CONTENT_TYPE: "text/html; charset=utf-8", hdrs.CONTENT_ENCODING: "gzip"})

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        async def body(response: web.StreamResponse) -> None:
            await response.write(DRIP_START)
            while not await self._pause(DRIP_INTERVAL_S):
                await response.write(b".")

        return await self._stream(request, body)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        chunk = (b"<p>" + b"x" * 1020 + b"</p>") * (ENDLESS_CHUNK // 1027) + b"\n"

        async def body(response: web.StreamResponse) -> None:
            await response.write(b"<!DOCTYPE html>\n<html><body>\n")
            while not self._stopping_now():
                await response.write(chunk)

        return await self._stream(request, body)

    async def _huge_length(self, request: web.Request) -> web.StreamResponse:
        async def body(response: web.StreamResponse) -> None:
            await response.write(DRIP_START + b"x" * (1024 - len(DRIP_START)))
            while not _gone(request) and not await self._pause(0.1):
                pass

        return await self._stream(request, body, length=HUGE_LENGTH)

    async def _stream(self, request: web.Request, body: Callable[[web.StreamResponse], Awaitable[None]],
                      length: int | None = None) -> web.StreamResponse:
        """Send ``body`` as a ``text/html`` stream until it ends, the client leaves, the server stops,
        or ``STREAM_LIMIT_S`` passes; the connection is closed afterwards."""
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/html; charset=utf-8"})
        if length is not None:
            response.content_length = length
        response.force_close()
        transport = request.transport
        assert transport is not None
        with self._lock:
            self._streams.add(transport)
        self._notify()
        try:
            await response.prepare(request)
            await asyncio.wait_for(body(response), STREAM_LIMIT_S)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the client went away (or the safety limit passed): nothing more to send
        finally:
            with self._lock:
                self._streams.discard(transport)
            self._notify()
        if length is not None or self._stopping_now():
            transport.abort()  # the promised length was never sent, or we are closing: do not linger
        return response

    def _stopping_now(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()


# --- helpers ---------------------------------------------------------------------------------------


def _local_ip(request: web.Request) -> str:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return str(sockname[0]) if sockname else ""


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _code(request: web.Request) -> int:
    code = int(request.match_info["code"])
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"status {code} not served\n")
    return code


def _html(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status,
                        headers={hdrs.CONTENT_TYPE: "text/html; charset=utf-8", **(headers or {})})


def _redirect(status: int, location: str) -> web.Response:
    body = f'<html><body><a href="{html.escape(location)}">moved</a></body></html>\n'
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={hdrs.LOCATION: location})


def _redirect_to(location: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return _redirect(302, location)

    return handler


def _fixed(body: bytes, content_type: str | None) -> Handler:
    """A handler answering 200 with ``body``; ``content_type`` None sends no Content-Type at all."""
    headers = {hdrs.CONTENT_TYPE: content_type} if content_type else {_STRIP_TYPE: "1"}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    return handler


async def _strip_content_type(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp defaults Content-Type to application/octet-stream; drop it where a test needs none.

    on_response_prepare runs after aiohttp filled its default headers and before they are sent.
    """
    if _STRIP_TYPE in response.headers:
        del response.headers[_STRIP_TYPE]
        response.headers.popall(hdrs.CONTENT_TYPE, None)
