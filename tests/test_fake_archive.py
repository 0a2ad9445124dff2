"""The loopback fakes of the Wayback Machine and Common Crawl speak their protocols."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from email.message import Message
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlencode

import pyarrow as pa
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.sample.archive import CC_INDEX_SCHEMA, Capture, FakeArchives, timestamp_of, unix_of, url_key

CRAWL = "CC-MAIN-2017-13"
PAGE = "https://www.example.com/story?id=7"
OLD = "http://example.com/old"
WAYBACK = [
    Capture(PAGE, "20170301120000", body=b"<html><body><p>first</p></body></html>",
            headers=[("Server", "nginx")]),
    Capture(PAGE, "20170301180000", body=b"<html><body><p>first</p></body></html>"),
    Capture(PAGE, "20170415090000", body=b"<html><body><p>second</p></body></html>"),
    Capture(PAGE, "20170520000000", status=404, body=b"gone"),
    Capture(OLD, "20170310000000", status=301, location="https://example.com/new"),
    Capture("https://other.example/", "20170301000000", body=b"other"),
]
COMMONCRAWL = {CRAWL: [
    Capture(PAGE, "20170325101010", body=b"<html><body><p>cc copy</p></body></html>"),
    Capture(OLD, "20170326000000", status=301, location="https://example.com/new"),
    Capture("http://example.com/feed", "20170327000000", mime="application/rss+xml", body=b"<rss/>"),
]}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """(status, headers, body) of a GET, redirects not followed."""
    try:
        with _OPENER.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture(scope="module")
def archives() -> Iterator[FakeArchives]:
    with FakeArchives(wayback=WAYBACK, commoncrawl=COMMONCRAWL) as fake:
        yield fake


def wayback_cdx(archives: FakeArchives, url: str, *params: tuple[str, str]) -> list[list[str]]:
    query = urlencode([("url", url), ("output", "json"), *params])
    status, _, body = get(f"{archives.wayback_cdx_url}?{query}")
    assert status == 200
    return json.loads(body)


def cc_cdx(archives: FakeArchives, url: str, *params: tuple[str, str]) -> tuple[int, list[dict]]:
    query = urlencode([("url", url), ("output", "json"), *params])
    status, headers, body = get(f"{archives.commoncrawl_cdx_url}/{CRAWL}-index?{query}")
    if status != 200:
        return status, [json.loads(body)]
    assert headers["Content-Type"] == "text/x-ndjson"
    return status, [json.loads(line) for line in body.splitlines()]


def test_timestamps_and_url_keys() -> None:
    assert timestamp_of(unix_of("20170301120000")) == "20170301120000"
    assert timestamp_of(0.9) == "19700101000000"
    assert url_key("http://www.Example.com:80/a?b=1#frag") == "com,example)/a?b=1"
    assert url_key("https://example.com") == url_key("example.com/") == "com,example)/"
    assert url_key("http://example.com:8080/x") == "com,example:8080)/x"
    with pytest.raises(ValueError):
        Capture(PAGE, "2017")


def test_wayback_cdx_rows_window_filters_collapse_closest(archives: FakeArchives) -> None:
    rows = wayback_cdx(archives, "http://example.com/story?id=7")  # scheme and www. do not matter
    assert rows[0] == ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]
    assert [row[1] for row in rows[1:]] == ["20170301120000", "20170301180000", "20170415090000",
                                             "20170520000000"]
    assert rows[1][0] == "com,example)/story?id=7" and rows[1][2] == PAGE and rows[1][4] == "200"
    assert rows[1][5] == rows[2][5] != rows[3][5]  # same body, same digest
    assert [r[1] for r in wayback_cdx(archives, PAGE, ("from", "201704"), ("to", "2017"))[1:]] == [
        "20170415090000", "20170520000000"]
    assert len(wayback_cdx(archives, PAGE, ("filter", "statuscode:200"))) == 4
    assert wayback_cdx(archives, PAGE, ("filter", "statuscode:20")) == []  # a full match: none
    assert [r[4] for r in wayback_cdx(archives, PAGE, ("filter", "!statuscode:2.."))[1:]] == ["404"]
    assert [r[0] for r in wayback_cdx(archives, PAGE, ("collapse", "digest"), ("fl", "timestamp"))] == [
        "timestamp", "20170301120000", "20170415090000", "20170520000000"]
    assert len(wayback_cdx(archives, PAGE, ("collapse", "timestamp:6"))) == 4
    closest = wayback_cdx(archives, PAGE, ("sort", "closest"), ("closest", "20170410"), ("limit", "2"),
                          ("fl", "timestamp,statuscode"))
    assert closest == [["timestamp", "statuscode"], ["20170415090000", "200"], ["20170301180000", "200"]]
    assert wayback_cdx(archives, "https://example.com/never") == []


def test_wayback_replay(archives: FakeArchives) -> None:
    first = WAYBACK[0]
    status, headers, body = get(f"{archives.wayback_replay_url}/{first.timestamp}id_/{PAGE}")
    assert (status, body) == (200, first.body)  # the query string of the original is part of it
    assert parsedate_to_datetime(headers["Memento-Datetime"]).timestamp() == unix_of(first.timestamp)
    assert headers["Link"] == f'<{PAGE}>; rel="original"' and headers["X-Archive-Orig-Server"] == "nginx"
    status, _, body = get(f"{archives.wayback_replay_url}/{first.timestamp}/{PAGE}")
    assert status == 200 and b"WAYBACK TOOLBAR" in body and body != first.body

    for wanted, nearest in [("20170410000000", "20170415090000"), ("2017", "20170301120000")]:
        status, headers, _ = get(f"{archives.wayback_replay_url}/{wanted}id_/{PAGE}")
        assert status == 302 and headers["Location"] == f"{archives.wayback_replay_url}/{nearest}id_/{PAGE}"
    status, headers, _ = get(f"{archives.wayback_replay_url}/20170310000000id_/{OLD}")
    assert status == 301 and headers["Location"] == (
        f"{archives.wayback_replay_url}/20170310000000id_/https://example.com/new")
    assert get(f"{archives.wayback_replay_url}/20170520000000id_/{PAGE}")[::2] == (404, b"gone")
    assert get(f"{archives.wayback_replay_url}/20170101000000id_/https://never.example/")[0] == 404
    assert get(f"{archives.base}/elsewhere")[0] == 404


def test_commoncrawl_cdx(archives: FakeArchives) -> None:
    status, rows = cc_cdx(archives, "example.com/story?id=7")
    assert status == 200 and len(rows) == 1
    row = rows[0]
    assert row["urlkey"] == "com,example)/story?id=7" and row["url"] == PAGE
    assert (row["timestamp"], row["mime"], row["mime-detected"], row["status"]) == (
        "20170325101010", "text/html", "text/html", "200")
    assert row["filename"] == f"crawl-data/{CRAWL}/segments/1234567890123.45/warc/{CRAWL}-00000.warc.gz"
    assert row["length"].isdigit() and row["offset"].isdigit() and row["languages"] == "eng"
    assert cc_cdx(archives, OLD)[1][0]["redirect"] == "https://example.com/new"
    feed = "http://example.com/feed"
    assert cc_cdx(archives, feed, ("filter", "mime:rss"))[0] == 200  # contains
    assert cc_cdx(archives, feed, ("filter", "=mime:rss"))[0] == 404  # exact
    assert cc_cdx(archives, feed, ("filter", "~mime:application/"))[0] == 200  # regex from the start
    assert cc_cdx(archives, feed, ("filter", "!=status:200"))[0] == 404
    assert cc_cdx(archives, feed, ("fl", "url,status"))[1] == [{"url": feed, "status": "200"}]
    assert cc_cdx(archives, feed, ("from", "2018"))[0] == 404
    assert cc_cdx(archives, "https://never.example/x") == (
        404, [{"message": "No Captures found for: https://never.example/x"}])
    assert get(f"{archives.base}/CC-MAIN-1999-01-index?url=example.com&output=json")[0] == 404


def test_range_request_reads_one_warc_record(archives: FakeArchives) -> None:
    (row,) = cc_cdx(archives, PAGE)[1]
    offset, length = int(row["offset"]), int(row["length"])
    url = f"{archives.commoncrawl_data_url}/{row['filename']}"
    status, headers, member = get(url, {"Range": f"bytes={offset}-{offset + length - 1}"})
    total = len(get(url)[2])
    assert status == 206 and headers["Content-Range"] == f"bytes {offset}-{offset + length - 1}/{total}"
    inflate = zlib.decompressobj(31)
    inflate.decompress(member)
    assert inflate.eof and not inflate.unused_data  # exactly one gzip member
    records = [(record.rec_type, record.rec_headers.get_header("WARC-Target-URI"),
                record.http_headers.get_statuscode(), record.content_stream().read())
               for record in ArchiveIterator(io.BytesIO(member))]
    assert records == [("response", PAGE, "200", COMMONCRAWL[CRAWL][0].body)]
    assert get(url, {"Range": f"bytes={total}-"})[0] == 416
    archives.ignore_range = True
    try:
        assert get(url, {"Range": "bytes=0-9"})[0] == 200
    finally:
        archives.ignore_range = False
    archives.add_file("cc-index-table.paths.gz", b"0123456789")
    assert get(f"{archives.base}/cc-index-table.paths.gz", {"Range": "bytes=-3"})[::2] == (206, b"789")


def test_fail_next_then_normal(archives: FakeArchives) -> None:
    archives.fail_next("/cdx", 429, 2, retry_after="3")
    before = len(archives.requests)
    url = f"{archives.wayback_cdx_url}?url={quote(PAGE)}&output=json"
    answers = [get(url) for _ in range(3)]
    assert [status for status, _, _ in answers] == [429, 429, 200]
    assert answers[0][1]["Retry-After"] == "3"
    assert len(archives.requests) - before == 3 and archives.requests[-1][1].startswith("/cdx?url=")
    archives.fail_next(f"/{CRAWL}-index", 503, 1)
    index = f"{archives.commoncrawl_cdx_url}/{CRAWL}-index?url={quote(PAGE)}&output=json"
    assert get(index)[0] == 503 and get(index)[0] == 200


def test_cc_index_rows_point_at_the_served_records(archives: FakeArchives) -> None:
    rows = archives.cc_index_rows(CRAWL)
    table = pa.Table.from_pylist(rows, schema=CC_INDEX_SCHEMA)
    assert table.num_rows == 3
    by_url = {row["url"]: row for row in rows}
    for url, row in by_url.items():
        (cdx,) = cc_cdx(archives, url)[1]
        assert row["warc_record_offset"] == int(cdx["offset"]) > 0
        assert row["warc_record_length"] == int(cdx["length"])
        assert row["url_surtkey"] == cdx["urlkey"] and row["warc_filename"] == cdx["filename"]
    page = by_url[PAGE]
    assert (page["url_host_name"], page["url_host_tld"], page["url_host_registered_domain"]) == (
        "www.example.com", "com", "example.com")
    assert (page["url_path"], page["url_query"], page["url_port"]) == ("/story", "id=7", None)
    assert timestamp_of(page["fetch_time"].timestamp()) == "20170325101010" and page["subset"] == "warc"
    assert by_url[OLD]["subset"] == "crawldiagnostics" and by_url[OLD]["fetch_redirect"] == "https://example.com/new"
