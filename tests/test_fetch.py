"""Acceptance tests of the crawler, ``pipeline.fetch.fetch_urls``, against tests/web_server.py.

``fetch_urls(urls, cfg, out_dir)`` crawls the URLs (a blocking call with its own event loop), writes
WARC.gz files into ``out_dir`` and returns one index row per input URL, in input order, with: url,
final_url, status, content_type, bytes, reason, redirects, attempts, warc_file, warc_offset,
warc_length, fetched_at, elapsed_s. A kept page has ``reason`` None; every other outcome names a
snake_case reason (``http_404``, ``timeout``, ``too_large``, ``blocked_address``, ...).

The functional tests run with the address guard off (``allow_private=True``: the server is on
loopback). The guard tests at the end turn it on, with only 127.0.0.2 exempt, and check that the
server on 127.0.0.1 / ::1 never sees a request.

Timing (CI runs on a busy machine): the shared limits (``FAST``) are generous safety nets that no
answer of the local server comes near, so slowness cannot turn a page into a ``timeout``. A test whose
point is a limit (a deadline, a read timeout, a refusal "at once") sets its own, and puts the
alternative outcome far away: the bound it asserts is at most half of what the wrong behaviour would
take, and lower bounds (Retry-After, back-off, per-host delay) are exact, as slowness only adds to
them. Waits for the server's side use ``server.wait_ended``, which returns at the event.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from warcio.archiveiterator import ArchiveIterator

import pipeline.fetch.crawler as crawler_module
from pipeline.config import FetchConfig
from pipeline.fetch import fetch_urls
from pipeline.fetch.crawler import Crawler, HostGate, Outcome, host_groups
from pipeline.fetch.warc import WarcWriter
from tests.web_server import (
    ARTICLE_HTML,
    CP1252_HTML,
    FORBIDDEN,
    FORBIDDEN_V6,
    MAIN,
    METADATA_URL,
    MISLABELED_HTML,
    NO_ROBOTS,
    RESTRICTED,
    ROBOTS_503,
    UNRESOLVABLE_URL,
    UNTYPED_HTML,
    WebServer,
    gzip_bomb,
    page_html,
    refused_url,
)

ROW_KEYS = {"url", "final_url", "status", "content_type", "bytes", "reason", "redirects", "attempts",
            "warc_file", "warc_offset", "warc_length", "fetched_at", "elapsed_s"}
USER_AGENT = "webtext-test/1.0 (+https://example.org/webtext)"
FAST: dict[str, Any] = {  # quick retries; timeouts are safety nets (a test of a timeout sets its own)
    "allow_private": True, "timeout_s": 30.0, "connect_timeout_s": 10.0, "read_timeout_s": 10.0,
    "retries": 2, "retry_backoff_s": 0.05, "max_retry_after_s": 5.0, "per_host_delay_s": 0.0,
    "concurrency": 16, "user_agent": USER_AGENT,
}
GUARD_NETWORK = f"{MAIN}/32"  # with the guard on, only the main test host counts as public
MiB = 1 << 20


@pytest.fixture
def server() -> Iterator[WebServer]:
    with WebServer() as srv:
        yield srv


# --- helpers ---------------------------------------------------------------------------------------


def crawl(urls: list[str], out_dir: Path, **overrides: Any) -> list[dict[str, Any]]:
    """``fetch_urls`` with the FAST config (plus ``overrides``); checks the rows' shape and pointers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = fetch_urls(list(urls), FetchConfig(**{**FAST, **overrides}), out_dir)
    finished = time.time()
    assert [row["url"] for row in rows] == list(urls), "one row per input URL, in input order"
    for row in rows:
        check_row(row, out_dir, started, finished)
    return rows


def check_row(row: dict[str, Any], out_dir: Path, started: float, finished: float) -> None:
    """The invariants every index row keeps, and for a kept page, a WARC pointer to its response."""
    assert ROW_KEYS <= row.keys(), f"missing keys {ROW_KEYS - row.keys()} in {row}"
    assert isinstance(row["redirects"], list) and isinstance(row["attempts"], int)
    assert isinstance(row["bytes"], int) and row["bytes"] >= 0
    assert isinstance(row["elapsed_s"], float) and row["elapsed_s"] >= 0
    assert isinstance(row["fetched_at"], float) and started - 1 <= row["fetched_at"] <= finished + 1
    if row["reason"] is not None:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", row["reason"]), row["reason"]
        return
    assert 200 <= row["status"] < 300 and row["bytes"] > 0 and isinstance(row["final_url"], str)
    assert isinstance(row["warc_file"], str) and (out_dir / row["warc_file"]).is_file()
    assert isinstance(row["warc_offset"], int) and isinstance(row["warc_length"], int)
    first = records_at(out_dir, row)[0]
    assert (first.type, first.uri) == ("response", row["final_url"]), "warc_offset points at the response"


@dataclass
class Record:
    """One WARC record: its type, target URI, HTTP status (responses) and HTTP body as warcio decodes it
    (de-chunked, Content-Encoding undone; None when not asked for)."""

    type: str
    uri: str | None
    status: int | None
    payload: bytes | None


def read_records(stream: BinaryIO, payloads: bool) -> list[Record]:
    found = []
    for record in ArchiveIterator(stream):
        status = None
        if record.rec_type == "response" and record.http_headers is not None:
            status = int(record.http_headers.get_statuscode())
        payload = record.content_stream().read() if payloads else None
        found.append(Record(record.rec_type, record.rec_headers.get_header("WARC-Target-URI"), status,
                            payload))
    return found


def records_at(out_dir: Path, row: dict[str, Any]) -> list[Record]:
    """The records in ``[warc_offset, warc_offset + warc_length)`` of the row's WARC file."""
    with open(out_dir / row["warc_file"], "rb") as f:
        f.seek(row["warc_offset"])
        data = f.read(row["warc_length"])
    assert len(data) == row["warc_length"], "warc_length runs past the end of the file"
    records = read_records(io.BytesIO(data), payloads=True)
    assert records, "no WARC record at warc_offset"
    return records


def all_records(out_dir: Path) -> list[Record]:
    """Every record of every WARC file in ``out_dir`` (no payloads: some may be cut bodies)."""
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and ".warc" in p.name)
    assert files, f"no WARC file in {out_dir}"
    records = []
    for path in files:
        with open(path, "rb") as f:
            records.extend(read_records(f, payloads=False))
    return records


def media_type(row: dict[str, Any]) -> str | None:
    value = row["content_type"]
    return value.split(";")[0].strip().lower() if value else None


def assert_kept(row: dict[str, Any], body: bytes | None = None) -> None:
    assert row["reason"] is None, f"not kept: {row}"
    if body is not None:
        assert row["bytes"] == len(body)


class MemoryWatch:
    """Peak growth of this process's resident memory while the block runs, sampled every 2 ms.

    ``ru_maxrss`` also catches a spike between two samples, when it rises above the process's
    earlier peak.
    """

    def __init__(self) -> None:
        self.base = self.peak = self.growth = 0
        self._maxrss_before = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> MemoryWatch:
        self.base = self.peak = self.rss()
        self._maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.rss())
        maxrss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._maxrss_before) * 1024
        self.growth = max(self.peak - self.base, maxrss_growth)


# --- pages kept ------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_html_page_is_kept_and_archived(server: WebServer, tmp_path: Path) -> None:
    url = server.url("/article")
    [row] = crawl([url], tmp_path)
    assert_kept(row, ARTICLE_HTML)
    assert (row["status"], row["final_url"], row["redirects"], row["attempts"]) == (200, url, [], 1)
    assert media_type(row) == "text/html"
    response = records_at(tmp_path, row)[0]
    assert response.status == 200 and response.payload == ARTICLE_HTML
    assert any(r.type == "request" and r.uri == url for r in all_records(tmp_path))
    [request] = server.requests("/article")
    assert request.user_agent == USER_AGENT and request.method == "GET"


@pytest.mark.timeout(20)
def test_rows_keep_input_order(server: WebServer, tmp_path: Path) -> None:
    slow_first = server.url("/sleep/0.5")
    urls = [slow_first, server.url("/page/fast", NO_ROBOTS), "ftp://x/", server.url("/status/404")]
    rows = crawl(urls, tmp_path)  # crawl() checks the order
    assert [row["reason"] for row in rows] == [None, None, "bad_scheme", "http_404"]


@pytest.mark.timeout(20)
def test_gzip_encoded_page_is_decoded(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/encoded/gzip")], tmp_path)
    assert_kept(row, page_html("gzip"))  # bytes counted after decoding
    assert records_at(tmp_path, row)[0].payload == page_html("gzip")


@pytest.mark.timeout(20)
def test_html_without_content_type_is_sniffed(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/untyped/html")], tmp_path)
    assert_kept(row, UNTYPED_HTML)
    assert records_at(tmp_path, row)[0].payload == UNTYPED_HTML


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("path", "body"), [("/charset/mislabeled", MISLABELED_HTML),
                                            ("/charset/cp1252", CP1252_HTML)])
def test_wrong_or_missing_charset_keeps_raw_bytes(server: WebServer, tmp_path: Path, path: str,
                                                  body: bytes) -> None:
    [row] = crawl([server.url(path)], tmp_path)
    assert_kept(row, body)
    assert records_at(tmp_path, row)[0].payload == body, "the WARC holds the bytes as sent, not re-encoded"


# --- statuses and retries --------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("code", [404, 410])
def test_client_errors_are_not_retried(server: WebServer, tmp_path: Path, code: int) -> None:
    [row] = crawl([server.url(f"/status/{code}")], tmp_path)
    assert (row["reason"], row["status"], row["attempts"]) == (f"http_{code}", code, 1)
    assert len(server.requests(f"/status/{code}")) == 1


@pytest.mark.timeout(20)
def test_server_error_then_ok_is_retried(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/flaky/500/once")], tmp_path)
    assert_kept(row, page_html("once"))
    assert row["attempts"] == 2 and row["status"] == 200
    assert [r.status for r in server.requests("/flaky/500/once")] == [500, 200]


@pytest.mark.timeout(20)
def test_429_waits_for_retry_after(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/flaky/429/wait")], tmp_path)  # backoff 0.05 s, Retry-After 1 s
    assert_kept(row, page_html("wait"))
    assert row["attempts"] == 2
    first, second = server.requests("/flaky/429/wait")
    assert second.at - first.at >= 0.95, "Retry-After: 1 was not honoured"


@pytest.mark.timeout(60)
def test_retry_after_beyond_the_limit_fails_at_once(server: WebServer, tmp_path: Path) -> None:
    # Waiting would take 20 s (capped at the limit) or 600 s (cut by the 30 s deadline): "at once" is < 5 s.
    [row] = crawl([server.url("/flaky/429/long?retry_after=600")], tmp_path, max_retry_after_s=20.0)
    assert (row["reason"], row["attempts"]) == ("http_429", 1)
    assert row["status"] == 429, "a row with reason http_429 has status 429"
    assert row["elapsed_s"] < 5.0


@pytest.mark.timeout(20)
def test_a_retry_after_that_is_no_time_means_the_backoff(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/flaky/429/soon?retry_after=soon")], tmp_path)  # backoff 0.05 s
    assert_kept(row, page_html("soon"))
    assert row["attempts"] == 2


@pytest.mark.timeout(20)
def test_503_exhausts_retries_with_doubling_backoff(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/status/503")], tmp_path, retries=2, retry_backoff_s=0.1)
    assert (row["reason"], row["status"], row["attempts"]) == ("http_503", 503, 3)
    arrivals = [r.at for r in server.requests("/status/503")]
    assert len(arrivals) == 3
    assert arrivals[1] - arrivals[0] >= 0.09 and arrivals[2] - arrivals[1] >= 0.18


@pytest.mark.timeout(20)
def test_connection_refused(tmp_path: Path) -> None:
    url = refused_url()
    [row] = crawl([url], tmp_path / "robots", retries=1)  # fails already at robots.txt
    assert (row["reason"], row["status"], row["bytes"]) == ("connection_error", None, 0)
    [row] = crawl([url], tmp_path / "no-robots", retries=1, robots=False)  # the page itself: retried
    assert (row["reason"], row["status"], row["attempts"]) == ("connection_error", None, 2)


@pytest.mark.timeout(20)
def test_unresolvable_name(tmp_path: Path) -> None:
    [row] = crawl([UNRESOLVABLE_URL], tmp_path)
    assert (row["reason"], row["status"]) == ("dns_error", None)


@pytest.mark.timeout(20)
def test_bad_schemes(tmp_path: Path) -> None:
    rows = crawl(["ftp://x/", "file:///etc/passwd"], tmp_path)
    assert [row["reason"] for row in rows] == ["bad_scheme", "bad_scheme"]


# --- redirects -------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_redirect_chain_is_followed_and_every_hop_archived(server: WebServer, tmp_path: Path) -> None:
    url = server.url("/chain/start")
    hops = [server.url("/chain/two"), server.url("/chain/three"), server.url("/chain/end?via=three")]
    [row] = crawl([url], tmp_path)
    assert_kept(row, page_html("chain end"))
    assert (row["redirects"], row["final_url"], row["status"]) == (hops, hops[-1], 200)
    responses = {(r.uri, r.status) for r in all_records(tmp_path) if r.type == "response"}
    assert {(url, 301), (hops[0], 302), (hops[1], 307), (hops[2], 200)} <= responses


@pytest.mark.timeout(20)
def test_redirect_limit(server: WebServer, tmp_path: Path) -> None:
    seven, five = server.url("/hops/7"), server.url("/hops/5", NO_ROBOTS)
    too_many, at_limit = crawl([seven, five], tmp_path, max_redirects=5)
    assert too_many["reason"] == "too_many_redirects"
    assert len(server.requests(ip=MAIN, prefix="/hops/")) <= 6, "followed more than max_redirects"
    assert_kept(at_limit, page_html("hops end"))
    assert at_limit["redirects"] == [server.url(f"/hops/{n}", NO_ROBOTS) for n in range(4, -1, -1)]


@pytest.mark.timeout(20)
def test_redirect_loop(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/loop/a")], tmp_path, max_redirects=5)
    assert row["reason"] == "redirect_loop"
    assert len(server.requests(prefix="/loop/")) <= 3, "the loop was not noticed at its first repeat"


# --- bodies that must be cut -----------------------------------------------------------------------


@pytest.mark.timeout(40)
def test_drip_is_cut_by_the_total_deadline(server: WebServer, tmp_path: Path) -> None:
    start = time.monotonic()
    [row] = crawl([server.url("/drip")], tmp_path, timeout_s=2.0, read_timeout_s=1.5, retries=0,
                  robots=False)  # no robots.txt: no other request under the short read timeout
    took = time.monotonic() - start
    assert row["reason"] == "timeout"
    # A byte comes every 0.1 s, so the 1.5 s read timeout never fires (were it a whole-body limit, it
    # would end the fetch at ~1.5 s): only the 2 s total deadline ends it, never early. Without the
    # deadline the drip goes on for 60 s (STREAM_LIMIT_S): the upper bounds sit far below that.
    assert 1.99 <= row["elapsed_s"] < 10.0 and took < 15.0
    assert server.wait_ended("/drip"), "connection left open"


@pytest.mark.timeout(30)
def test_slow_answer_beyond_read_timeout(server: WebServer, tmp_path: Path) -> None:
    # The answer would come after 30 s and the total deadline ends it at 10 s: ending in under 5 s
    # (1 s expected) is the read timeout's doing. No robots.txt: the only request under 1 s is the point.
    [row] = crawl([server.url("/sleep/30")], tmp_path, timeout_s=10.0, read_timeout_s=1.0, retries=0,
                  robots=False)
    assert row["reason"] == "timeout"
    assert 0.95 <= row["elapsed_s"] < 5.0


@pytest.mark.timeout(40)
def test_endless_body_stops_at_the_byte_cap(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/endless")], tmp_path, max_bytes=MiB, timeout_s=20.0, retries=0)
    assert row["reason"] == "too_large"
    assert row["elapsed_s"] < 5.0, "stopped by the 20 s deadline, not by the byte cap"
    assert server.wait_ended("/endless"), "connection left open"


@pytest.mark.timeout(30)
def test_gzip_bomb_stops_at_the_decoded_cap_in_little_memory(server: WebServer, tmp_path: Path) -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc to watch memory")
    assert len(gzip_bomb()) < 2 * MiB  # built (and cached) before measuring: the server is in-process
    with MemoryWatch() as memory:  # the ~1 MB compressed body is under the cap: only decoded bytes count
        [row] = crawl([server.url("/bomb/gzip")], tmp_path, max_bytes=2 * MiB, timeout_s=10.0, retries=0)
    assert row["reason"] == "too_large"
    assert row["elapsed_s"] < 3.0
    assert memory.growth < 100 * MiB, f"resident memory grew by {memory.growth / MiB:.0f} MiB"


@pytest.mark.timeout(60)
def test_huge_content_length_is_refused_from_the_header(server: WebServer, tmp_path: Path) -> None:
    # the server sends 1 KiB and stalls: a crawler reading the body would wait read_timeout_s (20 s)
    [row] = crawl([server.url("/huge-length")], tmp_path, max_bytes=MiB, timeout_s=30.0,
                  read_timeout_s=20.0, retries=0)
    assert row["reason"] == "too_large"
    assert row["elapsed_s"] < 5.0


# --- content types ---------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("path", "declared"), [
    ("/media/pdf", "application/pdf"), ("/media/png", "image/png"),
    ("/media/binary", "application/octet-stream"), ("/media/json", "application/json"),
    ("/untyped/binary", None),
])
def test_not_html(server: WebServer, tmp_path: Path, path: str, declared: str | None) -> None:
    [row] = crawl([server.url(path)], tmp_path)
    assert row["reason"] == "not_html"
    assert row["status"] == 200, "status is the HTTP status received, also when the body is refused"
    if declared is not None:
        assert media_type(row) == declared, "content_type is recorded, also when the body is refused"


# --- robots.txt ------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_robots_disallow_is_honoured(server: WebServer, tmp_path: Path) -> None:
    private, public = server.url("/private/secret", RESTRICTED), server.url("/page/public", RESTRICTED)
    rows = crawl([private, public], tmp_path)
    assert [row["reason"] for row in rows] == ["robots_disallowed", None]
    assert not server.requests("/private/secret"), "a disallowed URL was requested"
    assert len(server.requests("/robots.txt", RESTRICTED)) == 1, "robots.txt is read once per host"


@pytest.mark.timeout(20)
def test_robots_group_of_our_agent(server: WebServer, tmp_path: Path) -> None:
    rows = crawl([server.url("/page/a", RESTRICTED), server.url("/page/b", MAIN)], tmp_path,
                 user_agent="badbot/2.0 (+https://example.org/badbot)")
    assert [row["reason"] for row in rows] == ["robots_disallowed", None]
    assert not server.requests("/page/a")


@pytest.mark.timeout(20)
def test_robots_5xx_makes_the_host_unavailable(server: WebServer, tmp_path: Path) -> None:
    urls = [server.url("/page/x", ROBOTS_503), server.url("/article", ROBOTS_503)]
    rows = crawl(urls, tmp_path / "robots")
    assert [row["reason"] for row in rows] == ["robots_unavailable", "robots_unavailable"]
    assert not server.pages(ROBOTS_503), "a page was requested although robots.txt was unavailable"
    [row] = crawl(urls[:1], tmp_path / "no-robots", robots=False)
    assert_kept(row, page_html("x"))


@pytest.mark.timeout(20)
def test_robots_404_allows_everything(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([server.url("/private/open", NO_ROBOTS)], tmp_path)
    assert_kept(row, page_html("open"))
    assert server.requests("/robots.txt", NO_ROBOTS), "robots.txt was not asked for"


# --- politeness ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_one_request_at_a_time_per_host_and_hosts_in_parallel(server: WebServer, tmp_path: Path) -> None:
    delay = 0.3  # each page takes 0.4 s: spacing starts by the delay alone would still overlap them
    urls = [server.url(f"/sleep/0.4?n={i}", ip) for ip in (MAIN, NO_ROBOTS) for i in range(4)]
    rows = crawl(urls, tmp_path, per_host_delay_s=delay, timeout_s=10.0)
    for row in rows:
        assert_kept(row)
    windows = []
    for ip in (MAIN, NO_ROBOTS):
        pages = sorted(server.requests(ip=ip, prefix="/sleep/"), key=lambda r: r.at)
        assert len(pages) == 4
        for before, after in itertools.pairwise(pages):
            assert after.at - before.at >= delay - 0.02, "two requests to one host closer than the delay"
            assert before.ended is not None and after.at >= before.ended, "two requests to one host at once"
        assert len(server.requests("/robots.txt", ip)) == 1
        windows.append((pages[0].at, pages[-1].at))
    (main_first, main_last), (other_first, other_last) = windows
    assert other_first < main_last and main_first < other_last, "hosts were crawled one after the other"


@pytest.mark.timeout(30)
def test_a_crawler_forgets_the_hosts_it_is_done_with(server: WebServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What a crawler keeps per host (its politeness slot, its robots.txt rules) does not grow with
    the hosts crawled: a task at WebText's size crawls hundreds of thousands of them."""
    monkeypatch.setattr(crawler_module, "ROBOTS_KEPT", 3)
    names = [f"h{i}.test" for i in range(8)]
    urls = [f"http://{name}:{server.port}/page/{j}" for name in names for j in range(2)]
    delay = 0.05
    cfg = FetchConfig(**{**FAST, "per_host_delay_s": delay, "concurrency": 2,
                         "hosts": hosts_option({"*.test": MAIN})})
    warc = WarcWriter(tmp_path, "forget", cfg.warc_max_bytes, cfg.warc_writers)
    outcomes: list[Outcome] = []
    held: dict[str, int] = {}

    async def run() -> None:
        async with Crawler(cfg, warc, outcomes.append) as crawler:
            await crawler.crawl(host_groups(enumerate(urls), None))
            held["robots"], held["pending"] = len(crawler.robots), len(crawler.robots_pending)
            held["slots_at_end"] = len(crawler.gate.hosts)
            await asyncio.sleep(delay + 0.1)
            held["slots_after_delay"] = len(crawler.gate.hosts)

    try:
        asyncio.run(run())
    finally:
        warc.close()
    assert sorted(o.ord for o in outcomes if o.reason is None) == list(range(len(urls)))
    assert held["robots"] == 3 and held["pending"] == 0
    assert held["slots_at_end"] <= 2 and held["slots_after_delay"] == 0
    # each host's URLs come one after another: its rules were never dropped while it was crawled
    assert len(server.requests("/robots.txt", MAIN)) == len(names)


def test_the_gate_keeps_a_host_until_its_delay_has_passed() -> None:
    """A host's slot goes only once nobody waits for it and its delay is over: a request to it
    right after the last one still waits the delay; one after that does not wait at all."""
    delay = 0.2

    async def run() -> list[float]:
        gate = HostGate(delay)
        starts = []
        for pause in (0.0, 0.0, delay + 0.1):
            await asyncio.sleep(pause)
            if pause:
                assert not gate.hosts, "kept after its delay passed"
            async with gate.slot("a.test"):
                starts.append(time.monotonic())
            assert set(gate.hosts) == {"a.test"}, "forgotten before its delay passed"
        return starts

    first, second, third = asyncio.run(run())
    assert second - first >= delay - 0.01, "a host forgotten too early would be requested at once"
    assert third - second < 2 * delay + 0.1, "after the pause, the request did not wait again"


# --- the address guard (allow_private=False) -------------------------------------------------------


def hosts_option(mapping: dict[str, str]) -> Any:
    """``FetchConfig.hosts`` in the form the config declares: ``["name=address", ...]`` (or a dict)."""
    if isinstance(FetchConfig().hosts, dict):
        return dict(mapping)
    return [f"{name}={address}" for name, address in mapping.items()]


def guard(**overrides: Any) -> dict[str, Any]:
    """Overrides turning the guard on, with only 127.0.0.2 exempt and two test names mapped."""
    return {"allow_private": False, "allowed_networks": [GUARD_NETWORK],
            "hosts": hosts_option({"rebind.example": FORBIDDEN, "site.example": MAIN}), **overrides}


@pytest.mark.timeout(20)
def test_guard_blocks_loopback_in_every_spelling(server: WebServer, tmp_path: Path) -> None:
    port = server.port
    urls = [
        f"http://127.0.0.1:{port}/page/direct",
        f"http://localhost:{port}/page/localhost",  # a name that resolves to 127.0.0.1
        f"http://rebind.example:{port}/page/rebind",  # a name mapped to 127.0.0.1 (DNS rebinding)
        f"http://[::1]:{port}/page/v6",
        f"http://[::ffff:127.0.0.1]:{port}/page/mapped",  # IPv4-mapped IPv6
        f"http://0.0.0.0:{port}/page/unspecified",  # connects to this machine on Linux
        server.url("/page/other-loopback", RESTRICTED),  # 127.0.0.3: loopback, not in allowed_networks
    ]
    rows = crawl(urls, tmp_path, **guard())
    assert [row["reason"] for row in rows] == ["blocked_address"] * len(urls)
    for ip in (FORBIDDEN, FORBIDDEN_V6, RESTRICTED):
        assert not server.requests(ip=ip), f"the guard let a request through to {ip}"


@pytest.mark.timeout(60)
def test_guard_refuses_private_networks_before_connecting(tmp_path: Path) -> None:
    # Nothing answers on these addresses: a connection attempt would fail at once as a
    # connection_error (unreachable) or hang until the 20 s connect timeout. Refusing takes no I/O.
    urls = ["http://10.0.0.1/", "http://172.16.0.1/x", "http://192.168.1.1/", METADATA_URL]
    start = time.monotonic()
    rows = crawl(urls, tmp_path, **guard(connect_timeout_s=20.0, timeout_s=30.0))
    assert [row["reason"] for row in rows] == ["blocked_address"] * len(urls)
    for row in rows:
        assert row["elapsed_s"] < 5.0 and row["status"] is None
    assert time.monotonic() - start < 10.0


@pytest.mark.timeout(20)
def test_guard_checks_every_redirect_hop(server: WebServer, tmp_path: Path) -> None:
    internal = f"http://{FORBIDDEN}:{server.port}/page/internal"
    rows = crawl([server.url("/redirect/private"), server.url("/redirect/metadata")], tmp_path, **guard())
    assert [row["reason"] for row in rows] == ["blocked_address", "blocked_address"]
    assert rows[0]["redirects"] == [internal] and rows[1]["redirects"] == [METADATA_URL]
    assert not server.requests("/page/internal"), "the redirect to 127.0.0.1 was followed"


@pytest.mark.timeout(20)
def test_guard_lets_allowed_addresses_through(server: WebServer, tmp_path: Path) -> None:
    named = f"http://site.example:{server.port}/page/named"
    rows = crawl([server.url("/page/allowed"), named], tmp_path, **guard())
    assert_kept(rows[0], page_html("allowed"))
    assert_kept(rows[1], page_html("named"))
    [request] = server.requests("/page/named")
    assert (request.ip, request.host) == (MAIN, f"site.example:{server.port}"), "hosts maps the address only"


@pytest.mark.timeout(20)
def test_credentials_in_url_are_refused(server: WebServer, tmp_path: Path) -> None:
    [row] = crawl([f"http://user:pw@{MAIN}:{server.port}/page/creds"], tmp_path, **guard())
    assert row["reason"] == "credentials_in_url"
    assert not server.requests("/page/creds")
