"""Web archives as a source of pages: the Wayback Machine and Common Crawl (docs/archive.md).

A dead link (``fetch.prefer=live``) or any link (``fetch.prefer=archive``) is looked up in the
archives of ``fetch.archive``, in order; the capture nearest the submission's ``created_utc``
within ``fetch.archive_window_days`` is fetched raw and recorded like a live response, under its
original target URI, with the archive's identifiers.

- **Wayback Machine**: its CDX API (``output=json``, ``from``/``to`` around the submission, status
  200 or an archived redirect, ``collapse``, nearest first) gives the capture's timestamp; the raw
  capture is ``<replay>/<timestamp>id_/<url>`` (no toolbar, no rewritten links). An archived
  redirect points into the archive; it is followed like a live one, each target guarded.
- **Common Crawl**: the capture comes from a crawl's CDX server (``<cdx>/<crawl>-index``, crawls
  tried nearest first) or, at scale, from the join with the columnar index
  (``pipeline.fetch.ccindex``); the WARC record is read with an HTTP range request from
  ``<data>/<filename>`` and its response taken as the page.

Requests to an archive start at most ``fetch.archive_rate_per_s`` per second over every task of a
run (``ArchiveRate``: a schedule in a locked file); a 429 or 503 pauses that schedule for every
task (Retry-After, or the backoff) before the request is retried. Every request passes the address
guard; so does every URL an archived page or redirect names (an archive must not be a way around it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import io
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

from warcio.archiveiterator import ArchiveIterator

from pipeline.config import FetchConfig
from pipeline.fetch.crawler import NO_SNAPSHOT, REDIRECTS, Crawler, Outcome, Refused, http_date, media_type
from pipeline.fetch.warc import HttpExchange

log = logging.getLogger("webtext.fetch.archive")
T = TypeVar("T")
STATUS_FILTER = "(200|301|302|303|307|308)"  # a page, or an archived redirect to follow
LOOKUP_MAX_BYTES = 4 << 20  # a CDX answer: a few captures, nearest first
LOOKUP_LIMIT = 20
WARC_HEADER_SLACK = 64 << 10  # a WARC record's own headers and the HTTP headers, beyond the body cap
# Headers describing the stored entity's framing: archives hand us the decoded entity.
ENTITY_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


def timestamp14(unix: float) -> str:
    """A 14-digit UTC timestamp (yyyyMMddhhmmss), as the archives write them."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(max(unix, 0)))


def unix_of(timestamp: str) -> float:
    """Seconds since the epoch of a 1 to 14-digit timestamp (missing digits: the period's start)."""
    digits = (timestamp + "00000101000000"[len(timestamp):])[:14] if len(timestamp) < 14 else timestamp[:14]
    when = dt.datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def crawl_time(crawl: str) -> float:
    """When a Common Crawl crawl ran, from its name: CC-MAIN-2017-13 is ISO week 13 of 2017; the
    early names (CC-MAIN-2012, CC-MAIN-2009-2010) give a year or a span: its middle."""
    match = re.fullmatch(r"CC-MAIN-(\d{4})(?:-(\d{2,4}))?", crawl)
    if not match:
        raise ValueError(f"not a crawl name: {crawl!r}")
    year, part = int(match[1]), match[2]
    if part is None:
        return dt.datetime(year, 7, 1, tzinfo=dt.timezone.utc).timestamp()
    if len(part) == 2:
        return dt.datetime.fromisocalendar(year, int(part), 1).replace(tzinfo=dt.timezone.utc).timestamp()
    return (dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc).timestamp()
            + dt.datetime(int(part) + 1, 1, 1, tzinfo=dt.timezone.utc).timestamp()) / 2


def _iso_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Found:
    """A capture chosen in an archive."""

    url: str  # the original URL, as the archive has it
    timestamp: float  # capture time
    filename: str | None = None  # Common Crawl: the WARC file, offset and length of the record
    offset: int | None = None
    length: int | None = None
    crawl: str | None = None


def nearest(candidates: Iterable[T], created: float | None, window_s: float,
            when: Callable[[T], tuple[Any, ...]]) -> T | None:
    """The capture nearest ``created`` within ``window_s``; with no submission time, the earliest.

    ``when(capture)`` is its capture time, then what breaks ties after the earlier time (a WARC
    file and offset, say)."""
    if created is None:
        return min(candidates, key=when, default=None)
    inside = [c for c in candidates if abs(when(c)[0] - created) <= window_s]
    return min(inside, key=lambda c: (abs(when(c)[0] - created), *when(c)), default=None)


def _capture_time(found: Found) -> tuple[float]:
    return (found.timestamp,)


# --- the request rate, shared by every task of a run -----------------------------------------------


def archives_for(cfg: FetchConfig, state: Path | None = None,
                 captures: dict[int, dict[str, Any]] | None = None) -> Callable[[Crawler], list[Archive]]:
    """The archives ``fetch.archive`` names, in order, as ``Crawler(archives=...)`` builds them on its
    requests. ``state``: the folder of the archives' shared request schedules (None: this process
    only); ``captures``: Common Crawl captures from the columnar join, by ord (None: CDX lookups)."""
    def build(crawler: Crawler) -> list[Archive]:
        return [Wayback(crawler, state) if name == "wayback" else CommonCrawl(crawler, state, captures)
                for name in cfg.archives()]
    return build


class ArchiveRate:
    """Request starts to one archive at most ``rate`` per second, over every process of a run.

    The next free start time lives in ``path`` (on the shared filesystem, locked while read and
    moved on); without a path, in this process. Within a process one coroutine at a time takes a
    slot, so a pause (``pause``, after a 429 or 503) holds back every later request, not only the
    ones that had not yet reserved theirs.
    """

    def __init__(self, path: Path | None, rate: float) -> None:
        self.path, self.interval = path, 1.0 / rate
        self.lock = asyncio.Lock()
        self.thread_lock = threading.Lock()
        self.next_free = 0.0  # without a file
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except OSError as err:  # a filesystem without locks (Lustre without -o flock, ...)
                log.warning("cannot lock %s (%s): the rate of this archive holds per task, not for the "
                            "whole run; lower fetch.archive_rate_per_s by the number of tasks", path, err)
                os.close(self.fd)
                self.path = None

    def _move(self, start_after: float, step: float) -> float:
        """Take the first start time at or after ``start_after``; the next one is ``step`` later."""
        with self.thread_lock:
            if self.path is None:
                slot = max(self.next_free, start_after)
                self.next_free = slot + step
                return slot
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(self.fd, 8, 0)
                stored = struct.unpack("<d", raw)[0] if len(raw) == 8 else 0.0
                slot = max(stored, start_after)
                os.pwrite(self.fd, struct.pack("<d", slot + step), 0)
                return slot
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    async def wait(self) -> None:
        """Wait for this request's start time."""
        async with self.lock:
            slot = await asyncio.to_thread(self._move, time.time(), self.interval)
            delay = slot - time.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def pause(self, seconds: float) -> None:
        """No request starts for ``seconds`` from now, in any task (the archive asked us to slow down)."""
        await asyncio.to_thread(self._move, time.time() + seconds, self.interval)

    def close(self) -> None:
        if self.path is not None:
            os.close(self.fd)


# --- the archives ----------------------------------------------------------------------------------


class Archive:
    """One archive: finds the capture of a URL nearest its submission and records it."""

    name = "archive"

    def __init__(self, crawler: Crawler, state: Path | None) -> None:
        self.crawler, self.cfg = crawler, crawler.cfg
        self.window_s = self.cfg.archive_window_days * 86400
        self.rate = ArchiveRate(state / self.name if state is not None else None, self.cfg.archive_rate_per_s)

    async def recover(self, outcome: Outcome, chain: list[HttpExchange], created: float | None) -> None:
        """Fill ``outcome`` and ``chain`` from the archive, or raise ``Refused`` (``NO_SNAPSHOT``
        when it holds no capture in the window)."""
        raise NotImplementedError

    async def get(self, url: str, page: bool, headers: dict[str, str] | None = None,
                  cap: int = LOOKUP_MAX_BYTES, body_if: tuple[int, ...] | None = None) -> Any:
        """One request to the archive at its rate, with the crawler's retries, each attempt under the
        per-request deadline; a 429 or 503 pauses every task's requests to this archive."""
        async def attempt() -> Any:
            await self.rate.wait()
            try:
                return await asyncio.wait_for(
                    self.crawler._request(url, page=page, headers=headers, cap=cap, body_if=body_if),
                    self.cfg.timeout_s)
            except asyncio.TimeoutError:
                raise Refused("timeout", url) from None

        async def throttled(seconds: float) -> None:
            self.crawler.throttled[self.name] += 1
            log.info("%s asked us to slow down: pausing its requests for %.1fs", self.name, seconds)
            await self.rate.pause(seconds)

        return await self.crawler.retrying(attempt, throttled)

    def check_target(self, url: str) -> None:
        """An archived URL (the link itself, a redirect's target) must pass what a live one would;
        its name is not resolved, so ``localhost`` is refused by name."""
        _, host = self.crawler.check_url(url)
        host = host.rstrip(".")
        if host == "localhost" or host.endswith(".localhost"):
            raise Refused("blocked_address", f"{host} (archived)")

    def hop(self, outcome: Outcome, chain: list[HttpExchange], exchange: HttpExchange, target: str,
            seen: set[str]) -> None:
        """Record an archived redirect to ``target``: guarded, not a loop, within fetch.max_redirects."""
        self.check_target(target)
        if target in seen:
            raise Refused("redirect_loop", target)
        seen.add(target)
        if len(outcome.redirects) >= self.cfg.max_redirects:
            raise Refused("too_many_redirects", target)
        chain.append(exchange)
        outcome.redirects.append(target)


class Wayback(Archive):
    name = "wayback"

    async def lookup(self, url: str, created: float | None) -> Found | None:
        params: list[tuple[str, str]] = [("url", url), ("output", "json"),
                                         ("fl", "timestamp,original,statuscode"),
                                         ("filter", f"statuscode:{STATUS_FILTER}"),
                                         ("collapse", "timestamp:10")]  # one capture an hour at most
        if created is not None:
            params += [("from", timestamp14(created - self.window_s)),
                       ("to", timestamp14(created + self.window_s)),
                       ("closest", timestamp14(created)), ("sort", "closest")]
        params.append(("limit", str(LOOKUP_LIMIT if created is not None else 1)))
        response = await self.get(f"{self.cfg.wayback_cdx_url}?{urlencode(params)}", page=False)
        status = response.exchange.status
        if status == 404:
            return None
        if status != 200:
            raise Refused(f"http_{status}")
        try:
            rows = json.loads(response.body() or b"[]")
        except ValueError:
            raise Refused("bad_answer", "CDX answer is not JSON") from None
        if not isinstance(rows, list) or (rows and not isinstance(rows[0], list)):
            raise Refused("bad_answer", "CDX answer is not a list of rows")
        found = []
        for row in rows[1:]:  # the first row names the fields
            try:
                record = dict(zip(rows[0], row, strict=False))
                found.append(Found(str(record["original"]), unix_of(record["timestamp"])))
            except (KeyError, ValueError, TypeError):
                continue
        if len(rows) > 1 and not found:
            raise Refused("bad_answer", f"none of {len(rows) - 1} CDX rows has a URL and a timestamp")
        return nearest(found, created, self.window_s, _capture_time)

    def replay(self, timestamp: str, url: str) -> str:
        return f"{self.cfg.wayback_replay_url}/{timestamp}id_/{url}"

    def _parse_replay(self, location: str) -> tuple[str, str] | None:
        """(timestamp, original) of a replay URL of this archive, or None for another URL."""
        prefix = self.cfg.wayback_replay_url.rstrip("/") + "/"
        base = urlsplit(prefix)
        loc = urlsplit(location)
        if (loc.scheme, loc.netloc) != (base.scheme, base.netloc) or not loc.path.startswith(base.path):
            return None
        rest = location[location.index(base.path, len(f"{loc.scheme}://{loc.netloc}")) + len(base.path):]
        match = re.match(r"(\d{1,14})(?:[a-z]{2}_)?/(.+)", rest)
        return (match[1], match[2]) if match else None

    async def recover(self, outcome: Outcome, chain: list[HttpExchange], created: float | None) -> None:
        found = await self.lookup(outcome.url, created)
        if found is None:
            raise Refused(NO_SNAPSHOT)
        target, stamp = found.url, timestamp14(found.timestamp)
        self.check_target(target)
        seen = {target}
        for _ in range(self.cfg.max_redirects + 4):  # + the archive's own hops to the exact capture
            archive_url = self.replay(stamp, target)
            response = await self.get(archive_url, page=True)
            exchange = response.exchange
            location = exchange.header("location")
            if exchange.status in REDIRECTS and location:
                location = urljoin(archive_url, location.strip())
                inside = self._parse_replay(location)
                new_stamp, new_target = inside if inside is not None else (stamp, location)
                if new_target == target:  # the archive moving us to the capture's exact time
                    stamp = new_stamp
                    continue
                self.hop(outcome, chain, self._archived(exchange, target, archive_url, stamp), new_target,
                         seen)
                target, stamp = new_target, new_stamp
                continue
            if not 200 <= exchange.status < 300:
                raise Refused(f"http_{exchange.status}", archive_url)
            archived_at = http_date(exchange.header("memento-datetime")) or unix_of(stamp)
            chain.append(self._archived(exchange, target, archive_url, stamp))
            outcome.final_url, outcome.status = target, exchange.status
            outcome.content_type, outcome.bytes = response.media_type, response.decoded_bytes
            outcome.archived_at, outcome.archive_url, outcome.archive_id = archived_at, archive_url, stamp
            return
        raise Refused("too_many_redirects", target)

    def _archived(self, exchange: HttpExchange, target: str, archive_url: str, stamp: str) -> HttpExchange:
        exchange.url = target
        exchange.record_request = False  # the request went to the archive, not to ``target``
        exchange.warc_date = _iso(http_date(exchange.header("memento-datetime")) or unix_of(stamp))
        exchange.warc_extra = [("WARC-Archive-Source", self.name), ("WARC-Archive-URI", archive_url),
                               ("WARC-Archive-Timestamp", stamp)]
        return exchange


class CommonCrawl(Archive):
    name = "commoncrawl"

    def __init__(self, crawler: Crawler, state: Path | None,
                 captures: dict[int, dict[str, Any]] | None = None) -> None:
        super().__init__(crawler, state)
        self.crawls = sorted(self.cfg.commoncrawl_crawls)
        self.captures = captures  # from the columnar join, by ord; None: look up the CDX servers

    async def lookup_cdx(self, url: str, created: float | None,
                         crawls: list[str] | None = None) -> Found | None:
        """The nearest capture over the crawls, querying them nearest first and stopping once no
        later crawl can be nearer (a crawl's captures lie within about a month of its date)."""
        order = crawls or self.crawls
        if created is not None:
            order = sorted(order, key=lambda c: abs(crawl_time(c) - created))
        best: Found | None = None
        for crawl in order:
            if created is not None:
                distance = abs(crawl_time(crawl) - created) - 31 * 86400
                if distance > self.window_s or (
                        best is not None and distance > abs(best.timestamp - created)):
                    break
            params = [("url", url), ("output", "json"), ("filter", f"~status:{STATUS_FILTER}")]
            if created is not None:
                params += [("from", timestamp14(created - self.window_s)),
                           ("to", timestamp14(created + self.window_s)),
                           ("closest", timestamp14(created)), ("sort", "closest")]
            params.append(("limit", str(LOOKUP_LIMIT)))
            response = await self.get(f"{self.cfg.commoncrawl_cdx_url}/{crawl}-index?{urlencode(params)}",
                                      page=False)
            status = response.exchange.status
            if status == 404:  # "No Captures found"
                continue
            if status != 200:
                raise Refused(f"http_{status}")
            found, lines = [], [line for line in (response.body() or b"").splitlines() if line.strip()]
            for line in lines:  # one JSON object per line
                try:
                    record = json.loads(line)
                    found.append(Found(str(record["url"]), unix_of(record["timestamp"]),
                                       str(record["filename"]), int(record["offset"]), int(record["length"]),
                                       crawl))
                except (KeyError, ValueError, TypeError):
                    continue
            if lines and not found:
                raise Refused("bad_answer", f"none of {len(lines)} CDX lines of {crawl} is a capture")
            pick = nearest(found, created, self.window_s, _capture_time)
            if pick is not None and (best is None or created is None
                                     or abs(pick.timestamp - created) < abs(best.timestamp - created)):
                best = pick
            if best is not None and created is None:
                break
        return best

    async def recover(self, outcome: Outcome, chain: list[HttpExchange], created: float | None) -> None:
        if self.captures is not None:
            row = self.captures.get(outcome.ord)
            found = None if row is None else Found(
                row["url"], float(row["captured_at"]), row["warc_filename"], row["warc_offset"],
                row["warc_length"], row["crawl"])
        else:
            found = await self.lookup_cdx(outcome.url, created)
        if found is None:
            raise Refused(NO_SNAPSHOT)
        seen = {found.url}
        while True:
            self.check_target(found.url)
            exchange, record_id = await self.record(found)
            location = exchange.header("location")
            if exchange.status in REDIRECTS and location:
                target = urljoin(found.url, location.strip()).split("#")[0]
                self.hop(outcome, chain, exchange, target, seen)
                crawls = [found.crawl] if found.crawl else None
                following = await self.lookup_cdx(target, found.timestamp, crawls)
                if following is None:
                    raise Refused("commoncrawl_redirect_not_archived", target)
                found = following
                continue
            if not 200 <= exchange.status < 300:
                raise Refused(f"http_{exchange.status}")
            media = media_type(exchange.header("content-type"))
            if media is not None and media not in self.cfg.content_types:
                raise Refused("not_html", media, status=exchange.status, content_type=media, url=found.url)
            chain.append(exchange)
            outcome.final_url, outcome.status = found.url, exchange.status
            outcome.content_type, outcome.bytes = media, len(exchange.body)
            outcome.archived_at = _iso_date(exchange.warc_date) or found.timestamp
            outcome.archive_url = f"{self.cfg.commoncrawl_data_url}/{found.filename}"
            outcome.archive_id = record_id
            return

    async def record(self, found: Found) -> tuple[HttpExchange, str]:
        """The capture's WARC response record, read with a range request, as an exchange."""
        assert found.filename is not None and found.offset is not None and found.length is not None
        if found.length > self.cfg.max_bytes + WARC_HEADER_SLACK:
            raise Refused("too_large", f"WARC record of {found.length} bytes")
        end = found.offset + found.length - 1
        url = f"{self.cfg.commoncrawl_data_url}/{found.filename}"
        response = await self.get(url, page=False, cap=found.length, body_if=(206,),
                                  headers={"Range": f"bytes={found.offset}-{end}",
                                           "Accept-Encoding": "identity"})
        status = response.exchange.status
        if status != 206:
            raise Refused("commoncrawl_range_ignored" if status == 200 else f"http_{status}", url)
        member = response.body()
        if len(member) != found.length:
            raise Refused("broken_response", f"{len(member)} of {found.length} bytes")
        return parse_record(member, self.cfg.max_bytes, url, found)


def parse_record(member: bytes, max_bytes: int, url: str, found: Found) -> tuple[HttpExchange, str]:
    """A gzip member holding one WARC response record -> (exchange of its original URL, record id).

    The inflated record and the decoded entity are both capped at ``max_bytes`` (and the record's
    headers' slack): a bomb stops there.
    """
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(member, max_bytes + WARC_HEADER_SLACK)
    except zlib.error as err:
        raise Refused("broken_response", f"{url}: not a gzip member ({err})") from None
    if inflater.unconsumed_tail:
        raise Refused("too_large", "WARC record inflates past the cap")
    try:
        record = next(iter(ArchiveIterator(io.BytesIO(raw))))
    except StopIteration:
        raise Refused("broken_response", f"{url}: no WARC record") from None
    except Exception as err:  # warcio raises its own and plain errors on garbage
        raise Refused("broken_response", f"{url}: {err}") from None
    if record.rec_type != "response" or record.http_headers is None:
        raise Refused("broken_response", f"{url}: a {record.rec_type} record, not a response")
    body = record.content_stream().read(max_bytes + 1)  # chunking and content-encoding undone
    if len(body) > max_bytes:
        raise Refused("too_large", f"more than {max_bytes} bytes decoded")
    http = record.http_headers
    target = record.rec_headers.get_header("WARC-Target-URI") or found.url
    record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
    status = int(http.get_statuscode() or 0)
    protocol = http.protocol or "HTTP/1.1"
    headers = [(k, v) for k, v in http.headers if k.lower() not in ENTITY_HEADERS]
    reason = http.statusline.split(" ", 1)[1] if " " in http.statusline else ""
    date = record.rec_headers.get_header("WARC-Date")
    exchange = HttpExchange(url=target, method="GET", request_path="", request_headers=[], protocol=protocol,
                            status=status, reason=reason, response_headers=headers, body=body)
    exchange.record_request = False
    exchange.warc_date = date
    exchange.warc_extra = [("WARC-Archive-Source", "commoncrawl"), ("WARC-Archive-URI", url),
                           ("WARC-Archive-Record-ID", record_id),
                           ("WARC-Archive-Range", f"bytes={found.offset}-{found.offset + found.length - 1}"),
                           *([("WARC-Archive-Crawl", found.crawl)] if found.crawl else [])]
    return exchange, record_id
