"""The crawler: asynchronous, polite, bounded in time and bytes, and guarded against private addresses.

``Crawler.crawl(hosts)`` fetches URLs grouped by host. Per host, one request is in flight at a time
and requests start at least ``per_host_delay_s`` apart; over all hosts, ``concurrency`` requests run
at once. Every URL ends as exactly one ``Outcome``: kept (``reason`` None, its records in the WARC)
or a snake_case reason. Redirects are followed by hand, so that every hop passes the address guard
and robots.txt, and every hop is recorded.
"""

from __future__ import annotations

import asyncio
import email.utils
import fnmatch
import logging
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import aiohttp

from pipeline.config import FetchConfig
from pipeline.fetch.guard import AddressPolicy, BlockedAddress, GuardedResolver, ip_literal
from pipeline.fetch.warc import HttpExchange, WarcWriter

log = logging.getLogger("webtext.fetch")
ROBOTS_MAX_BYTES = 512 << 10  # RFC 9309: parse at least 500 KiB
ROBOTS_KEPT = 4096  # origins whose robots.txt rules a crawler keeps, the most recently used
SNIFF_BYTES = 1024
REDIRECTS = {301, 302, 303, 307, 308}
# A host whose robots.txt fails so cannot be reached at all: its pages get the reason (a dead link
# when fetch.archive is on), not robots_unavailable.
UNREACHABLE = {"blocked_address", "dns_error", "connection_error", "ssl_error", "timeout"}
Item = tuple[int, str, "float | None"]  # a URL to fetch: (ord, url, submission time)
NO_SNAPSHOT = "no_snapshot"  # no archive holds a capture in the window
# Failures of an archive's service rather than of the archived page: counted under the archive's name.
SERVICE_FAILURES = {"dns_error", "connection_error", "ssl_error", "timeout", "broken_response",
                    "decode_error", "fetch_error", "bad_answer"}


class Refused(Exception):
    """A URL ends here, for ``reason``; a refused response's status and type are kept for the index."""

    def __init__(self, reason: str, detail: str = "", status: int | None = None,
                 content_type: str | None = None, url: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.status, self.content_type, self.url = reason, status, content_type, url


@dataclass
class Outcome:
    """What became of one input URL: one row of the fetch index."""

    ord: int
    url: str
    final_url: str | None = None
    status: int | None = None
    content_type: str | None = None
    bytes: int = 0
    reason: str | None = None
    redirects: list[str] = field(default_factory=list)
    attempts: int = 0
    warc_file: str | None = None
    warc_offset: int | None = None
    warc_length: int | None = None
    warc_end: int | None = None  # end of this URL's records in warc_file (for resuming)
    fetched_at: float = 0.0
    elapsed_s: float = 0.0
    source: str | None = None  # live, wayback or commoncrawl: where the outcome comes from
    archived_at: float | None = None  # an archived page: when the archive captured it
    archive_url: str | None = None  # ... the capture's URL in the archive (a WARC file for Common Crawl)
    archive_id: str | None = None  # ... the archive's identifier (timestamp; WARC-Record-ID)
    live_reason: str | None = None  # a link gone to the archives because it was dead: why

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Response:
    """A complete (or refused) response of one request."""

    exchange: HttpExchange
    media_type: str | None
    decoded_bytes: int

    def body(self) -> bytes:
        """The body with its content-encoding undone (a non-page read is capped when read)."""
        encoding = (self.exchange.header("content-encoding") or "").lower().strip()
        decoder = _decoder(encoding)
        if decoder is None:
            return self.exchange.body
        try:
            return decoder.decompress(self.exchange.body, ROBOTS_MAX_BYTES * 8)
        except zlib.error as err:
            raise Refused("decode_error", str(err)) from None


class HostGate:
    """One request in flight per host, and ``delay_s`` between request starts to a host.

    A host is forgotten once nobody holds or waits for its slot and its delay has passed (it would
    then wait for nothing): the gate holds the hosts of the last ``delay_s``, not every host the
    task has crawled, which at WebText's size is hundreds of thousands a task.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.hosts: dict[str, _HostSlot] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = _HostSlot()
        state.users += 1
        try:
            async with state.lock:
                wait = state.next_start - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.next_start = time.monotonic() + self.delay_s
                yield
        finally:
            state.users -= 1
            if not state.users:
                asyncio.get_running_loop().call_later(max(0.0, state.next_start - time.monotonic()),
                                                      self._forget, host, state)

    def _forget(self, host: str, state: _HostSlot) -> None:
        if self.hosts.get(host) is state and not state.users and state.next_start <= time.monotonic():
            del self.hosts[host]


class _HostSlot:
    __slots__ = ("lock", "next_start", "users")

    def __init__(self) -> None:
        self.lock, self.next_start, self.users = asyncio.Lock(), 0.0, 0


def http_date(value: str | None) -> float | None:
    """Unix seconds of an HTTP date (Retry-After, Memento-Datetime); None when it is not one."""
    if not value or not value.strip():
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def media_type(value: str | None) -> str | None:
    """The bare, lowercase media type of a Content-Type value."""
    return value.split(";")[0].strip().lower() or None if value else None


def looks_like_html(head: bytes) -> bool:
    """Sniff a body without Content-Type (WHATWG's rules, reduced to HTML)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")) or b"<html" in text


def _decoder(encoding: str) -> Any:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=31)
    if encoding == "deflate":
        return zlib.decompressobj(wbits=47)  # zlib or gzip header, detected
    raise Refused("unsupported_encoding", encoding)



class Archive(Protocol):
    """What the crawler asks of a web archive (``pipeline/fetch/archive.py`` makes them)."""

    name: str
    rate: Any  # closed with the crawler

    def check_target(self, url: str) -> None: ...

    async def recover(self, outcome: Outcome, chain: list[HttpExchange], created: float | None) -> None: ...


class Crawler:
    """``archives``: builds the web archives dead links go to (``fetch.archive``) on this crawler's
    requests: ``pipeline.fetch.archive.archives_for(cfg, ...)``; none when not given."""

    def __init__(self, cfg: FetchConfig, warc: WarcWriter, on_outcome: Callable[[Outcome], None],
                 archives: Callable[[Crawler], list[Archive]] | None = None) -> None:
        self.cfg, self.warc, self.on_outcome = cfg, warc, on_outcome
        self.throttled: Counter[str] = Counter()
        self.archive_failed: set[str] = set()
        self.archives: list[Archive] = archives(self) if archives else []
        self.policy = AddressPolicy.from_config(cfg.allow_private, cfg.allowed_networks, cfg.host_overrides())
        self.gate = HostGate(cfg.per_host_delay_s)
        # robots.txt rules of the origins used last (a host's URLs are fetched one after another,
        # so an origin is looked up again only by a redirect into it): memory does not grow with
        # the hosts a task has crawled
        self.robots: OrderedDict[str, RobotFileParser | str] = OrderedDict()
        self.robots_pending: dict[str, asyncio.Future[RobotFileParser | str]] = {}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Crawler:
        cfg = self.cfg
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy), limit=cfg.concurrency,
                                         ttl_dns_cache=300, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout_s,
                                          sock_read=cfg.read_timeout_s),
            headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "gzip, deflate",
                     "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"},
        )
        if cfg.allow_private:
            log.warning("fetch.allow_private=true: the address guard is OFF (tests and demos only)")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()
        for archive in self.archives:
            archive.rate.close()

    # --- scheduling ----------------------------------------------------------------------------------

    async def crawl(self, hosts: AsyncIterator[list[Item]]) -> None:
        """Fetch every URL; ``hosts`` yields the URLs of one host at a time, as (ord, url, submission
        time or None)."""
        queue: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=self.cfg.concurrency)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.cfg.concurrency)]
        feeder = asyncio.create_task(self._feed(hosts, queue, len(workers)))
        try:  # the first failure (a full disk) stops all: a feeder left waiting on a full queue would hang
            await asyncio.gather(feeder, *workers)
        finally:
            for task in [feeder, *workers]:
                task.cancel()

    async def _feed(self, hosts: AsyncIterator[list[Item]], queue: asyncio.Queue[list[Item] | None],
                    workers: int) -> None:
        async for urls in hosts:
            await queue.put(urls)
        for _ in range(workers):
            await queue.put(None)

    async def _worker(self, queue: asyncio.Queue[list[Item] | None]) -> None:
        while (urls := await queue.get()) is not None:
            for ord_, url, created in urls:
                outcome, chain = await self.fetch(ord_, url, created)
                if outcome.reason is None:
                    # The writer thread returns pointers in submission order, and nothing is
                    # awaited between the pointer and on_outcome: the journal's order is the WARC's.
                    pointer = await asyncio.wrap_future(self.warc.submit(chain))
                    outcome.warc_file, outcome.warc_offset, outcome.warc_length, outcome.warc_end = pointer
                self.on_outcome(outcome)

    # --- one URL -------------------------------------------------------------------------------------

    async def fetch(self, ord_: int, url: str, created: float | None = None
                    ) -> tuple[Outcome, list[HttpExchange]]:
        """The outcome of one URL, and the exchanges to record when it is kept.

        ``prefer=archive``: the archives first, live only when none has a snapshot; ``prefer=live``:
        live first, the archives when the live outcome is a dead link (``dead_reasons``).
        """
        started = time.monotonic()
        result = None
        if self.archives and self.cfg.prefer == "archive":
            result = await self._from_archives(ord_, url, created)
        if result is None:
            result = await self._live(ord_, url)
            live = result[0]
            if self.archives and self.cfg.prefer == "live" and self.is_dead(live.reason):
                archived = await self._from_archives(ord_, url, created)
                if archived is None:
                    live.live_reason, live.reason, live.source = live.reason, NO_SNAPSHOT, None
                else:
                    archived[0].live_reason = live.reason
                    result = archived
        result[0].elapsed_s = round(time.monotonic() - started, 4)
        return result

    def is_dead(self, reason: str | None) -> bool:
        return reason is not None and any(fnmatch.fnmatchcase(reason, p) for p in self.cfg.dead_reasons)

    async def _live(self, ord_: int, url: str) -> tuple[Outcome, list[HttpExchange]]:
        outcome = Outcome(ord=ord_, url=url, fetched_at=time.time(), source="live")
        chain: list[HttpExchange] = []
        await self._settle(outcome, asyncio.wait_for(self._follow(outcome, chain), self.cfg.timeout_s))
        return outcome, chain

    async def _from_archives(self, ord_: int, url: str, created: float | None
                             ) -> tuple[Outcome, list[HttpExchange]] | None:
        """The first archive's page, in ``fetch.archive`` order; else the first archive's failure to
        give the snapshot it has; None when no archive has one in the window."""
        failed = None
        for archive in self.archives:
            outcome = Outcome(ord=ord_, url=url, fetched_at=time.time(), source=archive.name, attempts=1)
            chain: list[HttpExchange] = []
            try:
                archive.check_target(url)
            except Refused as refused:  # the link itself may not be fetched from anywhere
                outcome.reason = refused.reason
                return outcome, chain
            await self._settle(outcome, archive.recover(outcome, chain, created))
            if outcome.reason is None:
                return outcome, chain
            if outcome.reason == NO_SNAPSHOT:
                continue
            if outcome.reason in SERVICE_FAILURES or outcome.reason.startswith("http_"):
                # the archive failed us, not the page: say which archive
                unwell = outcome.reason in SERVICE_FAILURES or outcome.reason in ("http_429", "http_503")
                if unwell and archive.name not in self.archive_failed:
                    self.archive_failed.add(archive.name)
                    log.warning("%s failed with %s (%s); is it reachable? Later failures are counted, "
                                "not logged", archive.name, outcome.reason, outcome.url)
                outcome.reason = f"{archive.name}_{outcome.reason}"
            failed = failed or (outcome, chain)
        return failed

    async def _settle(self, outcome: Outcome, work: Any) -> None:
        """Run ``work`` (filling ``outcome``), turning its failure into ``outcome.reason``."""
        try:
            await work
        except Refused as refused:
            outcome.reason = refused.reason
            if refused.status is not None:  # a response came, and was refused
                outcome.status, outcome.final_url = refused.status, refused.url
                outcome.content_type = refused.content_type
        except asyncio.TimeoutError:
            outcome.reason = "timeout"
        except Exception:  # a bug or an error nobody foresaw must not stop the other URLs
            log.exception("fetching %s failed unexpectedly", outcome.url)
            outcome.reason = "fetch_error"

    async def _follow(self, outcome: Outcome, chain: list[HttpExchange]) -> None:
        current, seen = outcome.url, {outcome.url}
        for _ in range(self.cfg.max_redirects + 1):
            response = await self._request_allowed(current, outcome)
            exchange = response.exchange
            outcome.final_url, outcome.status = current, exchange.status
            location = exchange.header("location")
            if exchange.status in REDIRECTS and location:
                chain.append(exchange)
                current = urljoin(current, location.strip()).split("#")[0]
                outcome.redirects.append(current)
                if current in seen:
                    raise Refused("redirect_loop", current)
                seen.add(current)
                continue
            if not 200 <= exchange.status < 300:
                raise Refused(f"http_{exchange.status}")
            outcome.content_type, outcome.bytes = response.media_type, response.decoded_bytes
            chain.append(exchange)
            return
        raise Refused("too_many_redirects", current)

    def check_url(self, url: str) -> tuple[SplitResult, str]:
        """The URL's parts and lowercase host, or ``Refused``: not http(s), credentials, no host, or
        an IP literal the guard refuses (a name is checked when it resolves)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Refused("bad_scheme", parts.scheme)
        if parts.username or parts.password:
            raise Refused("credentials_in_url")
        host = (parts.hostname or "").lower()
        if not host:
            raise Refused("unparseable_url", url)
        literal = ip_literal(host)
        if literal is not None and not self.policy.allows(literal):
            raise Refused("blocked_address", host)
        return parts, host

    async def _request_allowed(self, url: str, outcome: Outcome) -> Response:
        """Check the URL (scheme, credentials, address, robots.txt), then request it with retries."""
        parts, host = self.check_url(url)
        if self.cfg.robots and not await self._robots_allow(url, parts):
            raise Refused("robots_disallowed")
        return await self._request_with_retries(url, host, outcome)

    async def _request_with_retries(self, url: str, host: str, outcome: Outcome) -> Response:
        async def attempt() -> Response:
            outcome.attempts += 1
            async with self.gate.slot(host):
                return await self._request(url, page=True)

        return await self.retrying(attempt)

    async def retrying(self, attempt: Callable[[], Awaitable[Response]],
                       wait: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Response:
        """``attempt()``, retried ``fetch.retries`` times: after a connection error, the backoff;
        after a 429 or 5xx, its Retry-After (or the backoff), waited by ``wait``. The backoff
        doubles at each retry."""
        delay = self.cfg.retry_backoff_s
        for n in range(self.cfg.retries + 1):
            last = n == self.cfg.retries
            try:
                response = await attempt()
            except Refused as refused:
                if refused.reason != "connection_error" or last:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
                continue
            status = response.exchange.status
            if (status == 429 or status >= 500) and not last:
                await wait(self._retry_after(response, delay))
                delay *= 2
                continue
            return response
        raise AssertionError("unreachable")

    def _retry_after(self, response: Response, default: float) -> float:
        """Seconds to wait before retrying: Retry-After when given (capped), else ``default``."""
        value = response.exchange.header("retry-after")
        if value is None:
            return default
        try:
            wait = float(value)
        except ValueError:  # an HTTP date, or nonsense: the backoff
            when = http_date(value)
            wait = when - time.time() if when is not None else default
        if wait > self.cfg.max_retry_after_s:
            status = response.exchange.status
            raise Refused(f"http_{status}", f"Retry-After {value} too long", status=status,
                          content_type=response.media_type, url=response.exchange.url)
        return max(wait, 0.0)

    async def _request(self, url: str, page: bool, headers: dict[str, str] | None = None,
                       cap: int | None = None, body_if: tuple[int, ...] | None = None) -> Response:
        """One GET, its body read under the byte caps; errors become ``Refused`` reasons.

        A page (``page``) must have an allowed content type and fit ``max_bytes``; other bodies
        (an archive's index answer, a WARC record) must fit ``cap``; without one (robots.txt) they
        are read up to ``ROBOTS_MAX_BYTES`` and the rest ignored. ``body_if``: the statuses whose
        body is read (default: 2xx).
        """
        assert self.session is not None
        try:
            async with self.session.get(url, allow_redirects=False, headers=headers) as resp:
                return await self._read(resp, url, page, cap, body_if)
        except aiohttp.ClientConnectorDNSError as err:
            blocked = isinstance(err.os_error, BlockedAddress)
            raise Refused("blocked_address" if blocked else "dns_error", str(err)) from None
        except aiohttp.ClientSSLError as err:
            raise Refused("ssl_error", str(err)) from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                aiohttp.ClientOSError) as err:
            raise Refused("connection_error", str(err)) from None
        except aiohttp.ServerTimeoutError as err:
            raise Refused("timeout", str(err)) from None
        except aiohttp.ClientPayloadError as err:
            raise Refused("broken_response", str(err)) from None
        except (aiohttp.InvalidURL, ValueError) as err:
            raise Refused("unparseable_url", str(err)) from None
        except aiohttp.ClientResponseError as err:
            raise Refused("bad_response", str(err)) from None

    async def _read(self, resp: aiohttp.ClientResponse, url: str, page: bool, cap: int | None = None,
                    body_if: tuple[int, ...] | None = None) -> Response:
        kind = media_type(resp.headers.get("Content-Type"))
        exchange = HttpExchange(
            url=url, method="GET", request_path=resp.request_info.url.raw_path_qs,
            request_headers=list(resp.request_info.headers.items()),
            protocol=f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version else "HTTP/1.1",
            status=resp.status, reason=resp.reason or "",
            response_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers],
            body=b"", peer=_peer(resp),
        )
        if not 200 <= resp.status < 300 or (body_if is not None and resp.status not in body_if):
            return Response(exchange, kind, 0)  # redirects and errors: the headers are enough
        if not page:
            raw, decoded, _ = await _read_capped(resp, cap or ROBOTS_MAX_BYTES, truncate=cap is None)
            exchange.body = raw
            return Response(exchange, kind, decoded)
        facts = {"status": resp.status, "content_type": kind, "url": url}
        if kind is not None and kind not in self.cfg.content_types:
            raise Refused("not_html", kind, **facts)
        if resp.content_length is not None and resp.content_length > self.cfg.max_bytes:
            raise Refused("too_large", f"Content-Length {resp.content_length}", **facts)
        try:
            raw, decoded, head = await _read_capped(resp, self.cfg.max_bytes)
        except Refused as refused:
            raise Refused(refused.reason, str(refused), **facts) from None
        if kind is None and not looks_like_html(head):
            raise Refused("not_html", "no Content-Type, and the body is not HTML", **facts)
        exchange.body = raw
        return Response(exchange, kind, decoded)

    # --- robots.txt ----------------------------------------------------------------------------------

    async def _robots_allow(self, url: str, parts: Any) -> bool:
        origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1].lower()}"
        rules = self.robots.get(origin)
        if rules is not None:
            self.robots.move_to_end(origin)
        else:
            pending = self.robots_pending.get(origin)
            if pending is None:  # the first URL of this origin fetches its robots.txt; others wait
                pending = self.robots_pending[origin] = asyncio.ensure_future(self._load_robots(origin))
            rules = self.robots[origin] = await asyncio.shield(pending)
            if self.robots_pending.get(origin) is pending:
                del self.robots_pending[origin]
            while len(self.robots) > ROBOTS_KEPT:
                self.robots.popitem(last=False)
        if rules == "unavailable":
            raise Refused("robots_unavailable", origin)
        if isinstance(rules, str) and rules in UNREACHABLE:
            raise Refused(rules, f"{origin} (fetching robots.txt)")
        if rules == "allow_all":
            return True
        assert isinstance(rules, RobotFileParser)
        return rules.can_fetch(self.cfg.user_agent, url)

    async def _load_robots(self, origin: str) -> RobotFileParser | str:
        """RFC 9309: 2xx parsed; 4xx (not 429) allow everything; 5xx, 429, errors: unavailable."""
        url, host = f"{origin}/robots.txt", urlsplit(origin).hostname or ""
        for _ in range(self.cfg.max_redirects + 1):
            try:
                async with self.gate.slot(host):
                    response = await self._request(url, page=False)
            except Refused as refused:
                # A host that cannot be reached at all: its pages would fail the same way, and
                # saying why (no such name, refused address, connection refused, no answer in
                # time) helps more.
                return refused.reason if refused.reason in UNREACHABLE else "unavailable"
            status = response.exchange.status
            location = response.exchange.header("location")
            if status in REDIRECTS and location:
                url = urljoin(url, location)
                target = urlsplit(url)
                literal = ip_literal(target.hostname or "")
                if literal is not None and not self.policy.allows(literal):
                    return "unavailable"
                host = target.hostname or host
                continue
            if 200 <= status < 300:
                return _parse_robots(response.exchange)
            if 400 <= status < 500 and status != 429:
                return "allow_all"
            return "unavailable"
        return "allow_all"  # RFC 9309: more than five redirects counts as not found


def _parse_robots(exchange: HttpExchange) -> RobotFileParser:
    encoding = exchange.header("content-encoding") or ""
    body = exchange.body
    decoder = _decoder(encoding.lower().strip()) if encoding else None
    if decoder is not None:
        body = decoder.decompress(body, ROBOTS_MAX_BYTES)
    parser = RobotFileParser()
    parser.parse(body.decode("utf-8", "replace").splitlines())
    return parser


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int,
                       truncate: bool = False) -> tuple[bytes, int, bytes]:
    """(raw body, decoded size, first decoded bytes); ``too_large`` past ``max_bytes`` either way
    (or, with ``truncate``, the body cut at ``max_bytes``).

    A gzip bomb stops at the cap: at most ``max_bytes + 1`` bytes are ever decompressed, and
    decompressed bytes are counted, not kept (the WARC stores the entity as it came).
    """
    encoding = resp.headers.get("Content-Encoding", "").lower().strip()
    decoder = _decoder(encoding)
    raw = bytearray()
    head = b""
    decoded = 0
    async for chunk in resp.content.iter_any():  # whatever has arrived: the fewest Python steps
        raw += chunk
        if len(raw) > max_bytes:
            if truncate:
                return bytes(raw[:max_bytes]), decoded, head
            raise Refused("too_large", f"more than {max_bytes} bytes")
        if decoder is None:
            piece = chunk
        else:
            try:
                piece = decoder.decompress(chunk, max_bytes + 1 - decoded)
            except zlib.error as err:
                raise Refused("decode_error", str(err)) from None
        decoded += len(piece)
        if len(head) < SNIFF_BYTES:
            head += piece[:SNIFF_BYTES - len(head)]
        if decoded > max_bytes or (decoder is not None and decoder.unconsumed_tail):
            if truncate:
                return bytes(raw), decoded, head
            raise Refused("too_large", f"more than {max_bytes} bytes decompressed")
    return bytes(raw), decoded, head


def _peer(resp: aiohttp.ClientResponse) -> str | None:
    connection = resp.connection
    if connection is None or connection.transport is None:
        return None
    peer = connection.transport.get_extra_info("peername")
    return str(peer[0]) if peer else None


async def host_groups(urls: Iterable[tuple[int, str]], created: float | None = None
                      ) -> AsyncIterator[list[Item]]:
    """Group (ord, url) pairs by host, the host with the most URLs first (ties in first-seen order),
    URLs in their order; every URL gets the submission time ``created``."""
    groups: dict[str, list[Item]] = {}
    for ord_, url in urls:
        host = (urlsplit(url).hostname or "").lower()
        groups.setdefault(host, []).append((ord_, url, created))
    for group in sorted(groups.values(), key=len, reverse=True):  # sorted() is stable
        yield group
