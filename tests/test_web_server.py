"""Self-checks of tests/web_server.py with plain http.client: each endpoint answers as documented.

These pin the server's behaviour so that a failing crawler test (tests/test_fetch.py) points at the
crawler, not at the server. They stay fast: the slow endpoints are read partially.

Timing: the client's socket timeout (``SAFETY_S``) is a safety net far above any answer time, so a
slow, busy machine cannot turn an answer into a timeout; where a short timeout is the point (a stall),
it is set on the socket only once the answer so far has arrived, and the stall it must see lasts far
longer. Waits for the server's side (a handler ending) use ``server.wait_for``, which returns at the event.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import struct
import time
import urllib.robotparser
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import pytest

from tests.web_server import (
    ARTICLE_HTML,
    BINARY,
    BOMB_SIZE,
    CP1252_HTML,
    DRIP_INTERVAL_S,
    DRIP_START,
    FORBIDDEN,
    FORBIDDEN_V6,
    HAS_BROTLI,
    HUGE_LENGTH,
    JSON,
    MAIN,
    METADATA_URL,
    MISLABELED_HTML,
    NO_ROBOTS,
    PDF,
    PNG,
    REFUSED,
    RESTRICTED,
    ROBOTS_503,
    SERVED,
    UNRESOLVABLE_URL,
    UNTYPED_BINARY,
    UNTYPED_HTML,
    WebServer,
    gzip_bomb,
    page_html,
    refused_url,
)

SAFETY_S = 30.0  # socket timeout of every request: only a hang reaches it


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    with WebServer() as srv:
        yield srv


def open_response(url: str, timeout: float = SAFETY_S, headers: dict[str, str] | None = None,
                  method: str = "GET") -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send one request (no redirects followed, no decoding); the caller reads and closes."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.connect()
        sock = conn.sock  # kept: getresponse() forgets it when the server closes after the answer
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        response = conn.getresponse()
        response.sock = sock  # type: ignore[attr-defined]  # for set_read_timeout
        return conn, response
    except BaseException:
        conn.close()
        raise


def set_read_timeout(response: http.client.HTTPResponse, seconds: float) -> None:
    """From now on, a read of ``response`` that gets no byte for ``seconds`` raises TimeoutError."""
    response.sock.settimeout(seconds)  # type: ignore[attr-defined]


def get(url: str, timeout: float = SAFETY_S, **kwargs: object) -> Answer:
    conn, response = open_response(url, timeout, **kwargs)  # type: ignore[arg-type]
    try:
        body = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


def follow(url: str, limit: int = 10) -> tuple[list[tuple[int, str]], Answer]:
    """Follow redirects by hand: the (status, absolute Location) of each hop, and the last answer."""
    hops: list[tuple[int, str]] = []
    for _ in range(limit):
        answer = get(url)
        if answer.status not in (301, 302, 303, 307, 308):
            return hops, answer
        url = urljoin(url, answer.headers["location"])
        hops.append((answer.status, url))
    return hops, answer


# --- hosts -----------------------------------------------------------------------------------------


def test_same_port_on_every_address_and_requests_are_logged(server: WebServer) -> None:
    assert server.listening[: len(SERVED)] == SERVED and FORBIDDEN in server.listening
    addresses = [*SERVED, FORBIDDEN] + ([FORBIDDEN_V6] if server.ipv6 else [])
    for ip in addresses:
        answer = get(server.url(f"/page/on-{ip.replace(':', '-')}", ip),
                     headers={"User-Agent": "selfcheck/1", "Host": f"named.test:{server.port}"})
        assert answer.status == 200
        [record] = server.requests(f"/page/on-{ip.replace(':', '-')}")
        assert (record.ip, record.host, record.method, record.user_agent) == (
            ip, f"named.test:{server.port}", "GET", "selfcheck/1")
        assert record.ended is not None and record.ended >= record.at and record.status == 200
    with socket.socket() as probe:  # nothing on the refused address
        assert probe.connect_ex((REFUSED, server.port)) != 0


def test_robots_differ_per_host(server: WebServer) -> None:
    def parser(ip: str) -> urllib.robotparser.RobotFileParser:
        answer = get(server.url("/robots.txt", ip))
        assert answer.status == 200
        robots = urllib.robotparser.RobotFileParser()
        robots.parse(answer.body.decode().splitlines())
        return robots

    main, restricted = parser(MAIN), parser(RESTRICTED)
    assert main.can_fetch("webtext", "/private/x") and main.can_fetch("badbot", "/page/x")
    assert restricted.can_fetch("webtext", "/page/x") and not restricted.can_fetch("webtext", "/private/x")
    assert not restricted.can_fetch("badbot/1.0", "/page/x")
    assert get(server.url("/robots.txt", ROBOTS_503)).status == 503
    assert get(server.url("/robots.txt", NO_ROBOTS)).status == 404
    assert get(server.url("/robots.txt", FORBIDDEN)).status == 404


# --- pages -----------------------------------------------------------------------------------------


def test_article_and_small_pages(server: WebServer) -> None:
    article = get(server.url("/article"))
    assert article.status == 200 and article.headers["content-type"] == "text/html; charset=utf-8"
    assert article.body == ARTICLE_HTML and 50_000 <= len(article.body) <= 300_000
    assert article.body.startswith(b"<!DOCTYPE html>") and "東京" in article.body.decode("utf-8")
    assert article.body.count(b"<p>") > 50
    assert get(server.url("/page/hello")).body == page_html("hello")
    assert get(server.url("/private/secret", RESTRICTED)).body == page_html("secret")


def test_statuses(server: WebServer) -> None:
    for code in (404, 410, 503, 503):
        answer = get(server.url(f"/status/{code}"))
        assert answer.status == code and answer.headers["content-type"].startswith("text/html")
    assert get(server.url("/no/such/path")).status == 404


def test_flaky_fails_then_answers_and_resets(server: WebServer) -> None:
    url = server.url("/flaky/500/a")
    assert [get(url).status for _ in range(3)] == [500, 200, 200]
    assert get(url).body == page_html("a")
    assert get(server.url("/flaky/500/a", RESTRICTED)).status == 500  # counted per host
    server.reset_counters()
    assert get(url).status == 500
    first = get(server.url("/flaky/429/b"))
    assert first.status == 429 and first.headers["retry-after"] == "1"
    assert get(server.url("/flaky/429/b")).status == 200
    assert get(server.url("/flaky/429/c?retry_after=30")).headers["retry-after"] == "30"
    assert [get(server.url("/flaky/503/d?fails=2")).status for _ in range(3)] == [503, 503, 200]


def test_sleep_answers_late(server: WebServer) -> None:
    start = time.monotonic()
    assert get(server.url("/sleep/0.2")).status == 200
    assert time.monotonic() - start >= 0.2  # a lower bound: a slow machine only adds to it
    # The answer would come after 30 s, 100 times the client's timeout: only the timeout can end this.
    with pytest.raises(TimeoutError):
        get(server.url("/sleep/30"), timeout=0.3)


# --- redirects -------------------------------------------------------------------------------------


def test_redirect_chain_mixes_codes_and_location_forms(server: WebServer) -> None:
    base = server.base()
    start = get(server.url("/chain/start"))
    assert start.headers["location"] == "/chain/two"  # absolute path
    assert get(server.url("/chain/three")).headers["location"] == "end?via=three"  # relative
    hops, final = follow(server.url("/chain/start"))
    assert hops == [(301, f"{base}/chain/two"), (302, f"{base}/chain/three"),
                    (307, f"{base}/chain/end?via=three")]
    assert final.status == 200 and final.body == page_html("chain end")


def test_hops_count_down(server: WebServer) -> None:
    hops, final = follow(server.url("/hops/7"))
    assert [url for _, url in hops] == [server.url(f"/hops/{n}") for n in range(6, -1, -1)]
    assert {code for code, _ in hops} == {301, 302, 307, 308} and final.status == 200
    assert get(server.url("/hops/3")).headers["location"].startswith("http://")
    assert get(server.url("/hops/2")).headers["location"] == "/hops/1"


def test_loop_and_redirects_to_forbidden_addresses(server: WebServer) -> None:
    assert get(server.url("/loop/a")).headers["location"] == "/loop/b"
    assert get(server.url("/loop/b")).headers["location"] == "/loop/a"
    private = get(server.url("/redirect/private"))
    assert private.status == 302
    assert private.headers["location"] == f"http://127.0.0.1:{server.port}/page/internal"
    assert get(private.headers["location"]).status == 200  # served, so a guard bug would show up
    assert get(server.url("/redirect/metadata")).headers["location"] == METADATA_URL


# --- types and charsets ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "content_type", "body"), [
    ("/media/pdf", "application/pdf", PDF),
    ("/media/png", "image/png", PNG),
    ("/media/binary", "application/octet-stream", BINARY),
    ("/media/json", "application/json", JSON),
])
def test_media_types(server: WebServer, path: str, content_type: str, body: bytes) -> None:
    answer = get(server.url(path))
    assert (answer.status, answer.headers["content-type"], answer.body) == (200, content_type, body)


def test_untyped_bodies_have_no_content_type(server: WebServer) -> None:
    for path, body in (("/untyped/html", UNTYPED_HTML), ("/untyped/binary", UNTYPED_BINARY)):
        answer = get(server.url(path))
        assert answer.status == 200 and "content-type" not in answer.headers and answer.body == body
    assert UNTYPED_HTML.startswith(b"<!DOCTYPE html>") and b"\x00" in UNTYPED_BINARY[:8]


def test_charsets(server: WebServer) -> None:
    mislabeled = get(server.url("/charset/mislabeled"))
    assert mislabeled.headers["content-type"] == "text/html; charset=iso-8859-1"
    assert mislabeled.body == MISLABELED_HTML and "東京" in MISLABELED_HTML.decode("utf-8")
    cp1252 = get(server.url("/charset/cp1252"))
    assert cp1252.headers["content-type"] == "text/html" and cp1252.body == CP1252_HTML
    assert "€5" in CP1252_HTML.decode("cp1252")
    with pytest.raises(UnicodeDecodeError):
        CP1252_HTML.decode("utf-8")


def test_content_encodings(server: WebServer) -> None:
    answer = get(server.url("/encoded/gzip"))
    assert answer.headers["content-encoding"] == "gzip"
    assert gzip.decompress(answer.body) == page_html("gzip")
    # The crawler asks for gzip and deflate only; /encoded/br exists where brotli is installed.
    assert get(server.url("/encoded/br")).status == (200 if HAS_BROTLI else 404)


# --- bodies to cut ---------------------------------------------------------------------------------


def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(server: WebServer) -> None:
    answer = get(server.url("/bomb/gzip"))
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.body == gzip_bomb() and len(answer.body) < 1_200_000
    assert struct.unpack("<I", answer.body[-4:])[0] == BOMB_SIZE % 2**32  # gzip's ISIZE
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    head = inflater.decompress(answer.body[:8192], 4 << 20)  # inflate only the first 4 MiB
    assert head.startswith(DRIP_START + b"<p>   ") and len(head) == 4 << 20
    for size in (len(DRIP_START) + 5, 3 << 20, (2 << 20) + 12345):  # the same builder, checked whole
        data = gzip.decompress(gzip_bomb(size))  # verifies the CRC and ISIZE too
        assert len(data) == size and data.startswith(DRIP_START)


def test_huge_content_length_then_stall(server: WebServer) -> None:
    conn, response = open_response(server.url("/huge-length"))
    try:
        assert response.getheader("Content-Length") == str(HUGE_LENGTH)
        assert len(response.read(1024)) == 1024
        set_read_timeout(response, 0.3)  # the stall lasts until the client leaves: nothing comes
        with pytest.raises(TimeoutError):
            response.read(1)
    finally:
        response.close()
        conn.close()


def test_drip_sends_a_byte_every_interval(server: WebServer) -> None:
    dots = 5
    start = time.monotonic()  # before the request: the server cannot send dot k sooner than k intervals later
    conn, response = open_response(server.url("/drip"))
    try:
        assert response.getheader("Content-Type", "").startswith("text/html")
        assert response.read(len(DRIP_START)) == DRIP_START
        assert [response.read(1) for _ in range(dots)] == [b"."] * dots
        took = time.monotonic() - start
        # Lower bound: exact (asyncio never wakes early). Upper bound: only that the bytes keep
        # coming, with seconds to spare for a slow machine (a stalled drip would take forever).
        assert dots * DRIP_INTERVAL_S - 0.01 <= took < dots * DRIP_INTERVAL_S + 5.0
    finally:
        response.close()
        conn.close()
    # the handler notices the client left at its next write
    assert server.wait_ended("/drip"), "the drip handler still runs after its client left"


def test_endless_body_streams_without_length(server: WebServer) -> None:
    conn, response = open_response(server.url("/endless"))
    try:
        assert response.getheader("Content-Length") is None
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Type", "").startswith("text/html")
        assert len(response.read(3 << 20)) == 3 << 20
    finally:
        response.close()
        conn.close()
    assert server.wait_ended("/endless"), "the endless handler still runs after its client left"
    # every stream of this module's server (drip, huge-length, endless) ends once its client left
    assert server.wait_for(lambda: server.active_streams == 0), f"{server.active_streams} streams left"


# --- other URLs and the lifecycle ------------------------------------------------------------------


def test_refused_and_unresolvable_urls() -> None:
    url = refused_url()
    parts = urlsplit(url)
    assert parts.hostname == REFUSED and url.endswith("/")
    with socket.socket() as client:
        client.settimeout(1.0)
        assert client.connect_ex((REFUSED, parts.port)) != 0
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(urlsplit(UNRESOLVABLE_URL).hostname, 80)


def test_stops_quickly_while_streaming() -> None:
    server = WebServer().start()
    held: list[tuple[http.client.HTTPConnection, http.client.HTTPResponse | None]] = []
    try:
        for path in ("/drip", "/endless", "/huge-length"):
            conn, response = open_response(server.url(path))
            response.read(len(DRIP_START))  # then never again: /endless blocks on a full buffer
            held.append((conn, response))  # a dropped response closes its socket
        sleeper = http.client.HTTPConnection(MAIN, server.port, timeout=SAFETY_S)
        sleeper.request("GET", "/sleep/60")  # a handler in the middle of its wait
        held.append((sleeper, None))
        assert server.wait_for(lambda: server.active_streams == 3 and bool(server.requests("/sleep/60")))
        assert server.requests("/sleep/60")[0].ended is None
        # Left alone, the sleeper would answer after 60 s and the streams run for STREAM_LIMIT_S (60 s):
        # a stop in under 10 s can only be stop() ending them (it usually takes well under a second).
        start = time.monotonic()
        server.stop(timeout=30.0)
        assert time.monotonic() - start < 10.0
    finally:
        for conn, response in held:
            if response is not None:
                response.close()
            conn.close()
        server.stop()
    with socket.socket() as client:
        client.settimeout(1.0)
        assert client.connect_ex((MAIN, server.port)) != 0
