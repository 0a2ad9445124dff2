"""Loopback fakes of the Wayback Machine and Common Crawl, for the fetch stage's tests and the demo.

``FakeArchives`` is one threaded HTTP server on 127.0.0.1 (a free port, served from a daemon thread)
that plays both archives' public protocols, as their documentation describes them:

- the Wayback CDX server (internetarchive/wayback, ``wayback-cdx-server/README.md``) at ``/cdx``:
  ``url``, ``matchType=exact|prefix``, ``output=json`` (a JSON array, header row first; ``[]`` when
  nothing matches), ``from``/``to`` (1-14 digit prefixes), ``filter=[!]field:regex`` (full match,
  repeatable), ``collapse=field[:N]`` (adjacent rows), ``fl``, ``sort=closest&closest=TS``, ``limit``
  (negative: the last N);
- Wayback replay at ``/web/<timestamp>id_/<original url>``: the archived bytes as captured (no toolbar,
  no link rewriting), a 302 to the nearest capture when the timestamp is not one, archived redirects
  pointing back into the archive; ``/web/<timestamp>/<url>`` adds a toolbar banner to HTML;
- Common Crawl's index server, pywb's CDX server API (webrecorder/pywb,
  ``docs/manual/cdxserver_api.rst``) at ``/<crawl>-index`` with ``output=json`` (NDJSON), pywb's
  ``filter=[!][=|~]field:value`` (contains, exact, regex matching the start), ``from``/``to``, ``fl``,
  ``sort=closest|reverse``, ``limit``; no capture is a 404 ``{"message": "No Captures found for: <url>"}``
  as index.commoncrawl.org answers; ``/collinfo.json`` lists the crawls;
- Common Crawl's data server (data.commoncrawl.org): one WARC file per crawl, each record its own gzip
  member, served with ``Range: bytes=a-b`` (206 + Content-Range, 416 past the end), so an index row's
  (offset, length) addresses exactly one ``response`` record. ``cc_index_rows`` gives the same
  captures as rows of the columnar index (commoncrawl/cc-index-table, ``cc-index-schema-flat.json``).

URL keys are a reduced SURT (``com,example)/path?q``): scheme ignored, host lowercased, a leading
``www.`` and a default port dropped, no fragment, path and query kept as they are.
``fail_next`` injects 429/503 answers; every request, injected failures included, is logged in
``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

SEGMENT = "1234567890123.45"
WAYBACK_FIELDS = ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]
TOOLBAR = b"<!-- BEGIN WAYBACK TOOLBAR INSERT --><div id=\"wm-ipp\">Wayback Machine</div>" \
          b"<!-- END WAYBACK TOOLBAR INSERT -->"
_FORMAT = "%Y%m%d%H%M%S"  # the 14-digit timestamps of CDX lines and replay URLs
_TIMESTAMP = re.compile(r"\d{14}")
_REPLAY = re.compile(r"/web/(?P<ts>\d{1,14})(?P<id>id_)?/(?P<url>.+)", re.S)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

CC_INDEX_SCHEMA = pa.schema([
    ("url_surtkey", pa.string()), ("url", pa.string()), ("url_host_name", pa.string()),
    ("url_host_tld", pa.string()), ("url_host_registered_domain", pa.string()),
    ("url_protocol", pa.string()), ("url_port", pa.int32()), ("url_path", pa.string()),
    ("url_query", pa.string()), ("fetch_time", pa.timestamp("us", tz="UTC")),
    ("fetch_status", pa.int16()), ("fetch_redirect", pa.string()), ("content_digest", pa.string()),
    ("content_mime_type", pa.string()), ("content_mime_detected", pa.string()),
    ("content_charset", pa.string()), ("content_languages", pa.string()),
    ("content_truncated", pa.string()), ("warc_filename", pa.string()),
    ("warc_record_offset", pa.int32()), ("warc_record_length", pa.int32()),
    ("warc_segment", pa.string()), ("crawl", pa.string()), ("subset", pa.string()),
])
"""The columns of Common Crawl's columnar URL index (cc-index-table) that ``cc_index_rows`` fills."""


@dataclass
class Capture:
    """One archived HTTP response."""

    url: str  # the original URL as archived (WARC-Target-URI, the CDX "original")
    timestamp: str  # 14 digits, UTC, yyyyMMddhhmmss
    status: int = 200
    mime: str = "text/html"
    body: bytes = b""
    location: str | None = None  # for 3xx captures: the original (absolute) Location
    headers: list[tuple[str, str]] = field(default_factory=list)  # extra original response headers

    def __post_init__(self) -> None:
        if not _TIMESTAMP.fullmatch(self.timestamp):
            raise ValueError(f"timestamp must be 14 digits, got {self.timestamp!r}")
        if self.status in (301, 302, 303, 307, 308) and not self.location:
            raise ValueError(f"a {self.status} capture of {self.url} needs a location")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def timestamp_of(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime(_FORMAT)


def utc_of(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, _FORMAT).replace(tzinfo=timezone.utc)


def unix_of(timestamp: str) -> int:
    return int(utc_of(timestamp).timestamp())


def url_key(url: str) -> str:
    """A reduced SURT of ``url``: ``http://www.Example.com:80/a?b#c`` -> ``com,example)/a?b``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "").removeprefix("www.")
    port = f":{parts.port}" if parts.port not in (None, {"http": 80, "https": 443}.get(parts.scheme)) else ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{','.join(reversed(host.split('.')))}{port}){parts.path or '/'}{query}"


def digest(body: bytes) -> str:
    """The CDX digest: base32 SHA-1 of the payload (WARC-Payload-Digest without ``sha1:``)."""
    return base64.b32encode(hashlib.sha1(body).digest()).decode()


def _base_mime(mime: str) -> str:
    return mime.split(";")[0].strip().lower()


def _http_headers(capture: Capture) -> StatusAndHeaders:
    headers = [("Content-Type", capture.mime), ("Content-Length", str(len(capture.body)))]
    if capture.location:
        headers.append(("Location", capture.location))
    statusline = f"{capture.status} {HTTPStatus(capture.status).phrase}"
    return StatusAndHeaders(statusline, headers + capture.headers, protocol="HTTP/1.1")


def warc_records(capture: Capture) -> tuple[bytes, bytes]:
    """The capture's ``request`` and ``response`` WARC records, each one gzip member."""
    members = []
    parts = urlsplit(capture.url)
    target = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
    request = StatusAndHeaders(f"GET {target} HTTP/1.1",
                               [("Host", parts.netloc), ("User-Agent", "CCBot/2.0")], is_http_request=True)
    response = _http_headers(capture)
    for kind, http, payload in [("request", request, b""), ("response", response, capture.body)]:
        out = io.BytesIO()
        writer = WARCWriter(out, gzip=True)
        writer.write_record(writer.create_warc_record(
            capture.url, kind, payload=io.BytesIO(payload), length=len(payload), http_headers=http,
            warc_headers_dict={"WARC-Date": utc_of(capture.timestamp).strftime("%Y-%m-%dT%H:%M:%SZ")}))
        members.append(out.getvalue())
    return members[0], members[1]


def warc_file(name: str, captures: list[Capture]) -> tuple[bytes, list[tuple[int, int]]]:
    """A WARC file (warcinfo, then request + response per capture) and each response's (offset, length)."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    writer.write_record(writer.create_warcinfo_record(name, {"software": "pipeline.sample.archive"}))
    spans = []
    for capture in captures:
        request, response = warc_records(capture)
        out.write(request)
        spans.append((out.tell(), len(response)))
        out.write(response)
    return out.getvalue(), spans


# --- what both CDX servers share: matching, time windows, ordering --------------------------------

def _in_window(rows: list[dict], start: str | None, end: str | None) -> list[dict]:
    low, high = (start or "").ljust(14, "0"), (end or "").ljust(14, "9")
    return [row for row in rows if low <= row["timestamp"] <= high]


def _order(rows: list[dict], sort: str | None, closest: str | None) -> list[dict]:
    if sort == "closest" and closest:
        target = unix_of(closest + "00000101000000"[len(closest):])  # "2017" -> 20170101000000
        return sorted(rows, key=lambda row: abs(unix_of(row["timestamp"]) - target))
    return rows[::-1] if sort == "reverse" else rows


def _wayback_filter(spec: str) -> Callable[[dict], bool]:
    """``[!]field:regex``, a full match (Java's ``Matcher.matches``)."""
    invert = spec.startswith("!")
    name, _, regex = spec.removeprefix("!").partition(":")
    if name not in WAYBACK_FIELDS:
        raise ValueError(f"unknown filter field {name!r}")
    pattern = re.compile(regex)
    return lambda row: (pattern.fullmatch(row[name]) is not None) != invert


def _pywb_filter(spec: str) -> Callable[[dict], bool]:
    """``[!][=|~]field:value``: contains, ``=`` exact, ``~`` regex matching the start (``re.match``)."""
    invert = spec.startswith("!")
    spec = spec.removeprefix("!")
    mode = spec[0] if spec[:1] in ("=", "~") else ""
    name, _, value = spec.removeprefix(mode).partition(":")
    pattern = re.compile(value) if mode == "~" else None

    def keep(row: dict) -> bool:
        field_value = str(row.get(name, ""))
        if pattern is not None:
            return (pattern.match(field_value) is not None) != invert
        return (field_value == value if mode == "=" else value in field_value) != invert
    return keep


def _collapse(rows: list[dict], spec: str | None) -> list[dict]:
    """Drop rows whose ``field`` (or its first N characters) equals the previous row's."""
    if not spec:
        return rows
    name, _, n = spec.partition(":")
    width = int(n) if n else None
    kept: list[dict] = []
    for row in rows:
        if not kept or kept[-1][name][:width] != row[name][:width]:
            kept.append(row)
    return kept


def _limit(rows: list[dict], limit: str | None) -> list[dict]:
    if not limit:
        return rows
    n = int(limit)
    return rows[n:] if n < 0 else rows[:n]


def _one(query: dict[str, list[str]], name: str) -> str | None:
    return query.get(name, [None])[-1]


def _select(rows: list[dict], query: dict[str, list[str]],
            filters: list[Callable[[dict], bool]]) -> list[dict]:
    """The CDX query shared by both servers, ``rows`` in timestamp order."""
    if "url" not in query:
        raise ValueError("url is required")
    key = url_key(query["url"][0].removesuffix("*"))
    prefix = _one(query, "matchType") == "prefix" or query["url"][0].endswith("*")
    rows = [row for row in rows if (row["urlkey"].startswith(key) if prefix else row["urlkey"] == key)]
    rows = _in_window(rows, _one(query, "from"), _one(query, "to"))
    rows = [row for row in rows if all(keep(row) for keep in filters)]
    rows = _order(rows, _one(query, "sort"), _one(query, "closest"))
    return _limit(_collapse(rows, _one(query, "collapse")), _one(query, "limit"))


# --- the server ----------------------------------------------------------------------------------

class FakeArchives:
    """The Wayback Machine and Common Crawl on one loopback port; a context manager.

    ``FakeArchives(wayback=[Capture, ...], commoncrawl={"CC-MAIN-2017-13": [Capture, ...]})``
    """

    def __init__(self, wayback: list[Capture] | None = None,
                 commoncrawl: dict[str, list[Capture]] | None = None, port: int = 0) -> None:
        self.wayback = sorted(wayback or [], key=lambda c: c.timestamp)
        self.commoncrawl = {crawl: list(captures) for crawl, captures in (commoncrawl or {}).items()}
        self.ignore_range = False  # answer every file request 200 with the whole file
        self.requests: list[tuple[float, str]] = []  # (time.monotonic(), path with query)
        self.answered: Counter[str] = Counter()  # answers by status ("200", "206", ...); "HEAD" apart
        self.port = port  # 0: a free one, known once started
        self._lock = threading.Lock()
        self._failures: list[list[Any]] = []  # [prefix, status, remaining, retry_after, body, type]
        self._files: dict[str, bytes] = {}
        self._cc_rows: dict[str, list[dict]] = {}
        self._wayback_rows: list[dict] = []
        self._server: _Server | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def wayback_cdx_url(self) -> str:
        return f"{self.base}/cdx"

    @property
    def wayback_replay_url(self) -> str:
        return f"{self.base}/web"

    @property
    def commoncrawl_cdx_url(self) -> str:
        """The index server: a crawl's CDX endpoint is ``{commoncrawl_cdx_url}/{crawl}-index``."""
        return self.base

    @property
    def commoncrawl_data_url(self) -> str:
        """The data server: a WARC file is at ``{commoncrawl_data_url}/{warc_filename}``."""
        return self.base

    def warc_filename(self, crawl: str) -> str:
        return f"crawl-data/{crawl}/segments/{SEGMENT}/warc/{crawl}-00000.warc.gz"

    def add_file(self, path: str, data: bytes) -> None:
        """Serve ``data`` at ``/<path>``, with Range support."""
        self._files[path.lstrip("/")] = data

    def fail_next(self, prefix: str, status: int, count: int, retry_after: str | None = None,
                  body: bytes | None = None, content_type: str = "text/plain") -> None:
        """The next ``count`` requests whose path starts with ``prefix`` answer ``status`` (with
        ``body``, the status's phrase by default): an archive unwell, or answering nonsense."""
        with self._lock:
            self._failures.append([prefix, status, count, retry_after, body, content_type])

    def cc_index_rows(self, crawl: str) -> list[dict]:
        """The crawl's captures as rows of the columnar index (``CC_INDEX_SCHEMA``), in SURT order."""
        in_surt_order = sorted(self._cc_rows[crawl], key=lambda row: (row["urlkey"], row["timestamp"]))
        return [_columnar_row(cdx, crawl) for cdx in in_surt_order]

    def start(self) -> FakeArchives:
        for crawl, captures in self.commoncrawl.items():
            name = self.warc_filename(crawl)
            data, spans = warc_file(name, captures)
            self.add_file(name, data)
            rows = [_cc_row(capture, name, offset, length)
                    for capture, (offset, length) in zip(captures, spans, strict=True)]
            self._cc_rows[crawl] = sorted(rows, key=lambda r: r["timestamp"])
        self._wayback_rows = [{"urlkey": url_key(c.url), "timestamp": c.timestamp, "original": c.url,
                               "mimetype": _base_mime(c.mime), "statuscode": str(c.status),
                               "digest": digest(c.body), "length": str(len(warc_records(c)[1])),
                               "capture": c} for c in self.wayback]
        handler = type("Handler", (_Handler,), {"archives": self})
        self._server = _Server(("127.0.0.1", self.port), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeArchives:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling: each answer is a Reply, sent by _Handler ---

    def answer(self, raw_path: str, range_header: str | None, head: bool = False) -> Reply:
        reply = self._answer(raw_path, range_header)
        with self._lock:
            self.answered["HEAD" if head else str(reply.status)] += 1
        return reply

    def _answer(self, raw_path: str, range_header: str | None) -> Reply:
        with self._lock:
            self.requests.append((time.monotonic(), raw_path))
            failure = next((f for f in self._failures if raw_path.startswith(f[0]) and f[2] > 0), None)
            if failure:
                failure[2] -= 1
        if failure:
            _, status, _, retry_after, body, content_type = failure
            headers = [("Content-Type", content_type)]
            if retry_after is not None:
                headers.append(("Retry-After", retry_after))
            return Reply(status, HTTPStatus(status).phrase.encode() if body is None else body, headers)
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            if parts.path == "/cdx":
                return self._wayback_cdx(query)
            if raw_path.startswith("/web/"):
                return self._replay(raw_path)
            if parts.path == "/collinfo.json":
                return self._collinfo()
            if parts.path.endswith("-index") and parts.path[1:-6] in self._cc_rows:
                return self._cc_cdx(self._cc_rows[parts.path[1:-6]], query)
        except (ValueError, KeyError, re.error) as error:
            return Reply(400, f"bad request: {error}".encode(), [("Content-Type", "text/plain")])
        if parts.path.lstrip("/") in self._files:
            return self._file(self._files[parts.path.lstrip("/")], range_header)
        return Reply(404, b"not found", [("Content-Type", "text/plain")])

    def _wayback_cdx(self, query: dict[str, list[str]]) -> Reply:
        fields = _one(query, "fl")
        names = fields.split(",") if fields else WAYBACK_FIELDS
        if unknown := set(names) - set(WAYBACK_FIELDS):
            raise ValueError(f"unknown fields {sorted(unknown)}")
        filters = [_wayback_filter(spec) for spec in query.get("filter", [])]
        selected = _select(self._wayback_rows, query, filters)
        rows = [[row[name] for name in names] for row in selected]
        if _one(query, "output") == "json":
            body = json.dumps([names, *rows] if rows else []).encode()
            return Reply(200, body, [("Content-Type", "application/json")])
        body = "".join(" ".join(row) + "\n" for row in rows).encode()
        return Reply(200, body, [("Content-Type", "text/plain")])

    def _replay(self, raw_path: str) -> Reply:
        match = _REPLAY.fullmatch(raw_path)
        if not match:
            return Reply(404, b"not found", [("Content-Type", "text/plain")])
        wanted, modifier = match["ts"], match["id"] or ""
        rows = [row for row in self._wayback_rows if row["urlkey"] == url_key(match["url"])]
        if not rows:
            return Reply(404, b"Wayback Machine has not archived that URL.", [("Content-Type", "text/plain")])
        capture: Capture = _order(rows, "closest", wanted)[0]["capture"]
        if capture.timestamp != wanted:
            location = f"{self.wayback_replay_url}/{capture.timestamp}{modifier}/{capture.url}"
            return Reply(302, b"", [("Location", location)])
        headers = [("Memento-Datetime", formatdate(unix_of(capture.timestamp), usegmt=True)),
                   ("Link", f'<{capture.url}>; rel="original"'), ("Content-Type", capture.mime)]
        headers += [(f"X-Archive-Orig-{name}", value) for name, value in capture.headers]
        if capture.location:
            headers.append(("Location", f"{self.wayback_replay_url}/{capture.timestamp}{modifier}/"
                                        f"{capture.location}"))
        body = capture.body
        if not modifier and _base_mime(capture.mime) == "text/html":
            body = _with_toolbar(body)
        return Reply(capture.status, body, headers)

    def _collinfo(self) -> Reply:
        crawls = [{"id": crawl, "name": crawl, "timegate": f"{self.base}/{crawl}/",
                   "cdx-api": f"{self.base}/{crawl}-index"} for crawl in sorted(self._cc_rows, reverse=True)]
        return Reply(200, json.dumps(crawls).encode(), [("Content-Type", "application/json")])

    def _cc_cdx(self, rows: list[dict], query: dict[str, list[str]]) -> Reply:
        filters = [_pywb_filter(spec) for spec in query.get("filter", [])]
        rows = _select(rows, query, filters)
        if not rows:
            message = json.dumps({"message": f"No Captures found for: {query['url'][0]}"})
            return Reply(404, message.encode(), [("Content-Type", "application/json")])
        if fields := _one(query, "fl"):
            rows = [{name: row[name] for name in fields.split(",") if name in row} for row in rows]
        if _one(query, "output") == "json":
            body = "".join(json.dumps(row) + "\n" for row in rows)
            return Reply(200, body.encode(), [("Content-Type", "text/x-ndjson")])
        body = "".join(f"{row.get('urlkey', '-')} {row.get('timestamp', '-')} {json.dumps(row)}\n"
                       for row in rows)
        return Reply(200, body.encode(), [("Content-Type", "text/x-cdxj")])

    def _file(self, data: bytes, range_header: str | None) -> Reply:
        total = len(data)
        whole = Reply(200, data, [("Content-Type", "application/octet-stream")])
        match = _RANGE.fullmatch((range_header or "").strip())
        if self.ignore_range or not match or match.groups() == ("", ""):
            return whole
        first, last = match.groups()
        if first and last and int(last) < int(first):
            return whole  # syntactically invalid: ignored, as RFC 9110 allows
        if first:
            start, end = int(first), min(int(last) if last else total - 1, total - 1)
        else:  # a suffix range: the last N bytes
            start, end = max(total - int(last), 0), total - 1
        if start >= total:
            return Reply(416, b"", [("Content-Range", f"bytes */{total}")])
        return Reply(206, data[start:end + 1], [("Content-Type", "application/octet-stream"),
                                                ("Content-Range", f"bytes {start}-{end}/{total}")])


def _with_toolbar(body: bytes) -> bytes:
    """The replay banner, after ``<body>`` (or first): what ``id_`` replay leaves out."""
    match = re.search(rb"<body[^>]*>", body, re.I)
    at = match.end() if match else 0
    return body[:at] + TOOLBAR + body[at:]


def _cc_row(capture: Capture, filename: str, offset: int, length: int) -> dict:
    """The capture's line in Common Crawl's CDX index (pywb's JSON fields)."""
    mime = _base_mime(capture.mime)
    row = {"urlkey": url_key(capture.url), "timestamp": capture.timestamp, "url": capture.url, "mime": mime,
           "mime-detected": mime, "status": str(capture.status), "digest": digest(capture.body),
           "length": str(length), "offset": str(offset), "filename": filename}
    if capture.location:
        row["redirect"] = capture.location
    if 200 <= capture.status < 300:  # language and charset detection run on successful fetches only
        row |= {"languages": "eng", "encoding": "UTF-8"}
    return row


def _columnar_row(cdx: dict, crawl: str) -> dict:
    """A CDX line as a row of the columnar index (cc-index-table's flat schema)."""
    parts = urlsplit(cdx["url"])
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        labels: list[str] = []
    except ValueError:
        labels = host.split(".")
    status = int(cdx["status"])
    return {
        "url_surtkey": cdx["urlkey"], "url": cdx["url"], "url_host_name": host,
        "url_host_tld": labels[-1] if labels else None,
        "url_host_registered_domain": ".".join(labels[-2:]) if len(labels) >= 2 else None,
        "url_protocol": parts.scheme, "url_port": parts.port, "url_path": parts.path or "/",
        "url_query": parts.query or None,
        "fetch_time": utc_of(cdx["timestamp"]),
        "fetch_status": status, "fetch_redirect": cdx.get("redirect"), "content_digest": cdx["digest"],
        "content_mime_type": cdx["mime"], "content_mime_detected": cdx["mime-detected"],
        "content_charset": cdx.get("encoding"), "content_languages": cdx.get("languages"),
        "content_truncated": None, "warc_filename": cdx["filename"],
        "warc_record_offset": int(cdx["offset"]), "warc_record_length": int(cdx["length"]),
        "warc_segment": SEGMENT, "crawl": crawl,
        "subset": "warc" if 200 <= status < 300 else "crawldiagnostics",
    }


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no error
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    archives: FakeArchives
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._reply(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(with_body=False)

    def _reply(self, with_body: bool) -> None:
        reply = self.archives.answer(self.path, self.headers.get("Range"), head=not with_body)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass
