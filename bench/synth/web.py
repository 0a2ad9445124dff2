"""The synthetic web: one loopback server that answers for every host of a plan, by the Host header.

    python -m bench.synth.web --seed 7 --links 25000 --port 18400   # serves until Ctrl-C

Crawl it with ``fetch.allow_private=true fetch.hosts='[*.test=127.0.0.1]'``: every live host's name
ends in ``.test``; dead hosts' names end in ``.invalid`` (no answer ever) or point at ``port + 1``
(nothing listens). What a link answers is set by its ``kind`` (``bench/synth/plan.py``):

- ``article``: 200 ``text/html``, 50-300 KB of page around 1-10 KB of main text (``bench/synth/text.py``);
- ``redirect``: ``link.hops`` redirects (301 or 302) on the same host (``?hop=1``, ``?hop=2``, ...),
  then the article;
- ``http_404``, ``http_410``: that status, with a small error page;
- ``timeout``: the article after ``timeout_sleep_s`` (longer than the crawler's ``fetch.timeout_s``);
- ``slow``: the article after ``slow_s``;
- ``not_html``: JSON or a PDF;
- ``oversized``: an article page padded past ``oversized_bytes`` (set it above ``fetch.max_bytes``),
  half of them with a Content-Length, half chunked without one;
- ``robots``: an article under ``/members/``, which the host's robots.txt disallows for every agent
  (hosts with ``robots_rules``; the others answer 404 for /robots.txt: everything allowed);
- ``non_english``: a German or French article;
- ``boilerplate``: the host's cookie wall and login page, nearly the same text on every one;
- ``syndicated``: the article of ``link.source``, another host's, in this host's page.

Hosts with ``gzip`` send their HTML ``Content-Encoding: gzip`` (ISA-L level 1) to clients that
accept it. A path that is not one of the plan's links, or a Host that is not the link's, gets 404.

Pages are concatenations of pieces made once at start-up (about 1.7 s, and 1.4 s for the text's
pool): ``FURNITURE`` blobs of 48-276 KB (a script bundle and framework page data in the head, an SVG
sprite, a teaser grid with ad slots: the generators of ``bench/extract.py``), four per host chosen
by a stable hash; the host's navigation, cookie banner and footer; and the article's own HTML. A page
costs about 0.15 ms to render (``page()``: 6,000-8,000 pages/s); the server, one process, answered
about 3,000 pages/s (133 KB each on the wire, a quarter gzip-encoded) to an aiohttp client at 16-64
connections on the 2-core development machine, the client on the other core.

``page(plan, index)`` is the body a link serves (before any Content-Encoding; after its redirects
and waits), ``article_text(plan, index)`` the main text on it, for checking what extraction finds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import html
import json
import logging
import multiprocessing
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from isal import isal_zlib

from bench.synth import text
from bench.synth.plan import NAME_PARTS, SECTIONS, Host, Link, Plan, _u64
from bench.synth.text import Document

log = logging.getLogger(__name__)

FURNITURE = 32  # distinct furniture blobs; a host uses four of them
FURNITURE_BYTES = (48_000, 276_000)  # their sizes, evenly spread: pages of 50-300 KB
LAYOUTS_PER_HOST = 4
HTML = "text/html; charset=utf-8"
ROBOTS_RULES = b"User-agent: *\nDisallow: /members/\n"
CHUNK = 64 << 10
AUTHORS = ("Ada Brennan", "Tomas Okafor", "Mira Lindqvist", "Jonah Reyes", "Priya Natarajan",
           "Elena Costa", "Samuel Achebe", "Hana Kobayashi", "Lucas Meyer", "Grace Whitfield")


@dataclass(frozen=True)
class WebSettings:
    """How the server behaves where the plan leaves it open: the waits and the oversized size."""

    timeout_sleep_s: float = 45.0  # a timeout link answers after this: above the crawl's fetch.timeout_s
    slow_s: float = 0.3  # a slow link answers after this: well under fetch.timeout_s
    oversized_bytes: int = 1_258_291  # 1.2 MiB: above the rehearsal's fetch.max_bytes (1 MiB)
    host: str = "127.0.0.1"  # the address listened on (the plan gives the port)
    shutdown_s: float = 2.0  # on stop, requests still running (timeout waits) get this long
    start_timeout_s: float = 120.0  # running(): the longest wait for the server to listen


@dataclass(frozen=True)
class Answer:
    """What a link finally answers: status, media type, body; ``html`` bodies may be gzip-encoded."""

    status: int
    content_type: str
    body: bytes
    html: bool = True


# --- pieces made once -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Furniture:
    """The non-article bytes of a page: ``head`` (a script bundle and page data), ``sprite`` (an SVG
    icon sprite, first in the body), ``grid`` (a teaser grid after the article)."""

    head: bytes
    sprite: bytes
    grid: bytes


@functools.lru_cache(maxsize=2)
def furniture(seed: int) -> tuple[Furniture, ...]:
    """``FURNITURE`` blobs, their sizes evenly spread over ``FURNITURE_BYTES`` in a shuffled order."""
    from bench.extract import SHARES, hydration_data, icon_sprite, script_bundle, teaser_grid

    rnd = random.Random(_u64(seed, "furniture"))
    pool = text.sentence_pool(seed)
    headlines = [text.headline(pool[rnd.randrange(len(pool))], rnd.randint(4, 9)) for _ in range(400)]
    low, high = FURNITURE_BYTES
    sizes = [low + (high - low) * i // (FURNITURE - 1) for i in range(FURNITURE)]
    rnd.shuffle(sizes)
    blobs = []
    for size in sizes:
        head = script_bundle(rnd, int(size * SHARES["script"])) + hydration_data(
            rnd, int(size * SHARES["data"]), headlines)
        sprite = icon_sprite(rnd, int(size * SHARES["svg"]))
        grid = teaser_grid(rnd, int(size * SHARES["teasers"]), headlines)
        blobs.append(Furniture(head.encode(), sprite.encode(), grid.encode()))
    return tuple(blobs)


def site_name(host: Host) -> str:
    """A host's display name: ``www.dailyherald-12.test`` -> ``Daily Herald``."""
    label = host.name.removeprefix("www.").split("-")[0]
    for first in NAME_PARTS[0]:
        if label.startswith(first):
            return f"{first.title()} {label[len(first):].title()}"
    return label.title()


@dataclass(frozen=True)
class Chrome:
    """A host's own page parts: ``top`` (header, navigation, cookie banner), ``bottom`` (footer)."""

    site: str  # the display name, HTML-escaped
    top: bytes
    bottom: bytes


@functools.lru_cache(maxsize=8192)
def chrome(host: Host) -> Chrome:
    site = html.escape(site_name(host))
    nav = "".join(f'<li><a href="/{s}/">{s.title()}</a></li>' for s in SECTIONS)
    top = (f'<header class="site-header"><a class="logo" href="/">{site}</a>'
           f'<nav class="sections" aria-label="Sections"><ul>{nav}</ul></nav>'
           f'<form class="search" role="search" action="/search"><input type="search" name="q" '
           f'placeholder="Search {site}"></form><a class="subscribe" href="/subscribe">Subscribe</a>'
           f'</header><div id="cookie-banner" class="cookie-banner" role="dialog" aria-label="Cookies">'
           f'<p>{site} and its partners use cookies to improve your experience, measure audiences and '
           f'show relevant ads.</p><button class="accept">Accept all</button>'
           f'<button class="manage">Manage choices</button></div>')
    links = "".join(f'<li><a href="/{s.lower().replace(" ", "-")}">{s}</a></li>' for s in (
        "About us", "Contact", "Careers", "Advertise", "Privacy policy", "Terms of use", "Cookie settings"))
    bottom = (f'<footer class="site-footer"><nav aria-label="Footer"><ul>{links}</ul></nav>'
              f'<p class="copyright">&copy; 2017 {site}. All rights reserved.</p></footer></body></html>')
    return Chrome(site, top.encode(), bottom.encode())


@functools.lru_cache(maxsize=2)
def oversized_padding(seed: int, size: int) -> bytes:
    """At least ``size`` bytes of teaser grids: what pads an oversized page past the crawler's cap."""
    grids = [f.grid for f in furniture(seed)]
    out, total = [], 0
    while total < size:
        out.append(grids[len(out) % len(grids)])
        total += len(out[-1])
    return b"".join(out)


# --- what a link answers --------------------------------------------------------------------------


def language_of(plan: Plan, index: int) -> str:
    """A non-English link's language: German or French, half each."""
    return "de" if _u64(plan.seed, "lang", index) % 2 == 0 else "fr"


def main_document(plan: Plan, link: Link) -> Document | None:
    """The main text a link's page carries; None where it answers no page (errors, not HTML, a dead
    host). A syndicated link carries its source's article; a boilerplate link its host's wall."""
    kind = link.kind
    if kind in ("article", "redirect", "timeout", "slow", "oversized", "robots"):
        return text.document(plan.seed, link.index)
    if kind == "syndicated":
        assert link.source is not None
        return text.document(plan.seed, link.source)
    if kind == "non_english":
        return text.foreign_document(plan.seed, link.index, language_of(plan, link.index))
    if kind == "boilerplate":
        return text.wall(plan.seed, link.host.rank, site_name(link.host), link.index)
    return None


def _byline(plan: Plan, link: Link) -> str:
    """An author and a publication date in the link's year (from its path, as the plan writes it)."""
    h = _u64(plan.seed, "byline", link.index)
    year = next((p for p in urlsplit(link.url).path.split("/") if len(p) == 4 and p.isdigit()), "2016")
    day = f"{year}-{1 + h % 12:02d}-{1 + (h >> 8) % 28:02d}"
    return (f'<p class="byline">By <span class="author">{AUTHORS[(h >> 16) % len(AUTHORS)]}</span>, '
            f'<time datetime="{day}">{day}</time></p>')


def _main_html(plan: Plan, link: Link, doc: Document) -> str:
    """The page's main content: the article, or for boilerplate the wall with its login form."""
    paragraphs = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in doc.paragraphs)
    title = html.escape(doc.title, quote=False)
    if link.kind == "boilerplate":
        return (f'<main id="content"><div class="login-wall"><h1>{title}</h1>{paragraphs}'
                f'<form class="login" action="/account/login" method="post"><input type="hidden" '
                f'name="next" value="story-{link.index}"><label>Email <input type="email" name="email">'
                f'</label><label>Password <input type="password" name="password"></label>'
                f'<button type="submit">Sign in</button></form></div></main>')
    return (f'<main id="content"><article class="story"><h1>{title}</h1>{_byline(plan, link)}'
            f'{paragraphs}</article></main>')


def _furniture_of(plan: Plan, link: Link) -> Furniture:
    """One of the host's ``LAYOUTS_PER_HOST`` furniture blobs, by stable hashes of host and link."""
    blobs = furniture(plan.seed)
    offset = _u64(plan.seed, "layout", link.index) % LAYOUTS_PER_HOST
    return blobs[(_u64(plan.seed, "furniture", link.host.rank) + offset) % len(blobs)]


def _html_page(plan: Plan, link: Link, doc: Document, padding: bytes = b"") -> bytes:
    """A whole page: head, furniture, the host's chrome, the main content (``padding`` after it)."""
    parts, blob = chrome(link.host), _furniture_of(plan, link)
    title = html.escape(doc.title)
    summary = html.escape(doc.paragraphs[0][:160]) if doc.paragraphs else ""
    head = (f'<!DOCTYPE html><html lang="{doc.lang}"><head><meta charset="utf-8"><title>{title} | '
            f'{parts.site}</title><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="description" content="{summary}"><meta property="og:title" content="{title}">'
            f'<meta property="og:site_name" content="{parts.site}"><link rel="canonical" href="{link.url}">')
    return b"".join((head.encode(), blob.head, b"</head><body>", blob.sprite, parts.top,
                     _main_html(plan, link, doc).encode(), padding, blob.grid, parts.bottom))


def error_page(host: Host | None, status: int) -> bytes:
    """A small error page (in the host's chrome when the host is known)."""
    what = "Page not found" if status == 404 else "This page has been removed"
    main = (f'<main id="content"><h1>{what}</h1><p>Try the search, or start again from the '
            f'<a href="/">front page</a>.</p></main>')
    if host is None:
        return f"<!DOCTYPE html><html><head><title>{what}</title></head><body>{main}</body></html>".encode()
    parts = chrome(host)
    head = f"<!DOCTYPE html><html lang=\"en\"><head><title>{what} | {parts.site}</title></head><body>"
    return b"".join((head.encode(), parts.top, main.encode(), parts.bottom))


def _pdf(title: str) -> bytes:
    """A one-page PDF showing ``title``."""
    safe = title.encode("latin-1", "replace").replace(b"\\", b"").replace(b"(", b"").replace(b")", b"")
    stream = b"BT /F1 18 Tf 72 720 Td (" + safe + b") Tj ET"
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
            b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n"
            b"4 0 obj << /Length " + str(len(stream)).encode() + b" >> stream\n" + stream
            + b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


def _not_html(plan: Plan, link: Link) -> Answer:
    """An API's JSON or a PDF, half each: answers the crawler must not keep."""
    doc = text.document(plan.seed, link.index)
    if _u64(plan.seed, "format", link.index) % 2:
        body = json.dumps({"id": link.index, "url": link.url, "title": doc.title,
                           "paragraphs": doc.paragraphs}).encode()
        return Answer(200, "application/json", body, html=False)
    return Answer(200, "application/pdf", _pdf(doc.title), html=False)


def answer(plan: Plan, link: Link, settings: WebSettings | None = None) -> Answer | None:
    """What ``link`` finally answers (after its redirects and waits); None for a dead host's."""
    if link.kind in ("http_404", "http_410"):
        status = int(link.kind[5:])
        return Answer(status, HTML, error_page(link.host, status))
    if link.kind == "not_html":
        return _not_html(plan, link)
    doc = main_document(plan, link)
    if doc is None:
        return None
    padding = b""
    if link.kind == "oversized":
        padding = oversized_padding(plan.seed, (settings or WebSettings()).oversized_bytes)
    return Answer(200, HTML, _html_page(plan, link, doc, padding))


def page(plan: Plan, index: int, settings: WebSettings | None = None) -> bytes:
    """The body link ``index`` serves: its final answer's, before any Content-Encoding."""
    found = answer(plan, plan.link(index), settings)
    if found is None:
        raise ValueError(f"link {index} is on a dead host ({plan.link(index).kind}): nothing answers")
    return found.body


def article_text(plan: Plan, index: int) -> str:
    """The main text on link ``index``'s page, as trafilatura extracts it: the title (the ``h1``),
    then the paragraphs, one a line; empty where the link answers no page."""
    doc = main_document(plan, plan.link(index))
    return "\n".join((doc.title, *doc.paragraphs)) if doc is not None else ""


# --- the server -----------------------------------------------------------------------------------


def _path_qs(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def host_named(plan: Plan, name: str) -> Host | None:
    """The plan's host called ``name`` (its rank is in the name: ``...-<rank>.test``), if any."""
    try:
        rank = int(name.rpartition(".")[0].rpartition("-")[2])
    except ValueError:
        return None
    if not 0 <= rank < len(plan.sizes):
        return None
    host = plan.host(rank)
    return host if host.name == name else None


class SyntheticWeb:
    """The request handler: routes by Host and path to a link of the plan, answers as its kind says."""

    def __init__(self, plan: Plan, settings: WebSettings) -> None:
        self.plan, self.settings = plan, settings
        self.link = functools.lru_cache(maxsize=1 << 16)(plan.link)
        furniture(plan.seed)  # made now, before the server listens
        if settings.oversized_bytes:
            oversized_padding(plan.seed, settings.oversized_bytes)

    def route(self, name: str, path: str) -> tuple[Link | None, int]:
        """The live link a request names, and which redirect hop it asks for (0: the link itself);
        (None, 0) when the path is no link's or the Host is not the link's host."""
        index = self.plan.index_of(path)
        if index is None:
            return None, 0
        link = self.link(index)
        if link.host.name != name or link.host.fate != "live":
            return None, 0
        base = _path_qs(link.url)
        if path == base:
            return link, 0
        hop = path.removeprefix(base + "?hop=") if link.kind == "redirect" else ""
        if hop.isdigit() and 1 <= int(hop) <= link.hops:
            return link, int(hop)
        return None, 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        name, path = request.host.partition(":")[0].lower(), request.raw_path
        if path == "/robots.txt":
            host = host_named(self.plan, name)
            if host is not None and host.fate == "live" and host.robots_rules:
                return web.Response(body=ROBOTS_RULES, content_type="text/plain")
            return web.Response(status=404, body=error_page(host, 404), headers={"Content-Type": HTML})
        link, hop = self.route(name, path)
        if link is None:
            return web.Response(status=404, body=error_page(None, 404), headers={"Content-Type": HTML})
        if link.kind == "redirect" and hop < link.hops:
            status = 301 if _u64(self.plan.seed, "status", link.index, hop) % 2 else 302
            location = f"{_path_qs(link.url)}?hop={hop + 1}"
            return web.Response(status=status, headers={"Location": location, "Content-Type": HTML})
        if link.kind in ("timeout", "slow"):
            settings = self.settings
            await asyncio.sleep(settings.timeout_sleep_s if link.kind == "timeout" else settings.slow_s)
        found = answer(self.plan, link, self.settings)
        assert found is not None  # route() gives live links only
        if link.kind == "oversized" and _u64(self.plan.seed, "chunked", link.index) % 2:
            return await self.chunked(request, found)
        return self.respond(request, link, found)

    def respond(self, request: web.BaseRequest, link: Link, found: Answer) -> web.Response:
        """``found``, gzip-encoded for a gzip host's HTML when the client accepts it (not oversized
        pages: their Content-Length must show the size)."""
        headers = {"Content-Type": found.content_type}
        body = found.body
        if (found.html and link.host.gzip and link.kind != "oversized"
                and "gzip" in request.headers.get("Accept-Encoding", "")):
            body = isal_zlib.compress(body, 1, 31)  # wbits 31: the gzip format
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=found.status, body=body, headers=headers)

    async def chunked(self, request: web.BaseRequest, found: Answer) -> web.StreamResponse:
        """``found`` sent chunked, without a Content-Length, until done or the client hangs up."""
        response = web.StreamResponse(status=found.status, headers={"Content-Type": found.content_type})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)  # the crawler may have hung up already (it stops at its cap)
            for start in range(0, len(found.body), CHUNK):
                await response.write(found.body[start:start + CHUNK])
            await response.write_eof()
        except ConnectionError:  # the crawler stops reading at its cap
            pass
        return response


class _Event(Protocol):
    def set(self) -> None: ...


def serve(plan: Plan, settings: WebSettings | None = None, ready: _Event | None = None) -> None:
    """Serve ``plan`` on ``settings.host``:``plan.port`` until SIGTERM or SIGINT; ``ready.set()``
    once it listens (its text and furniture are made before)."""
    asyncio.run(_serve(plan, settings or WebSettings(), ready))


async def _serve(plan: Plan, settings: WebSettings, ready: _Event | None) -> None:
    handler = SyntheticWeb(plan, settings)
    # handler_cancellation: a timeout link's wait ends when the crawler hangs up, not 45 s later
    server = web.Server(handler.handle, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=settings.shutdown_s)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, settings.host, plan.port, backlog=1024, reuse_address=True).start()
        log.info("synthetic web of %d links on http://%s:%d", plan.links, settings.host, plan.port)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def running(plan: Plan, **settings: float | int | str) -> Iterator[WebSettings]:
    """The synthetic web in a separate (spawned) process while the block runs; yields its settings.

    Returns once the server listens (its readiness event, not a guessed wait); on exit, SIGTERM, then
    SIGKILL if it has not stopped ``shutdown_s`` + 5 s later.
    """
    resolved = WebSettings(**settings)  # type: ignore[arg-type]
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=serve, args=(plan, resolved, ready), name="synthetic-web", daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + resolved.start_timeout_s
        while not ready.wait(0.05):
            if not process.is_alive():
                raise RuntimeError(f"the synthetic web exited ({process.exitcode}) before listening")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the synthetic web did not listen in {resolved.start_timeout_s} s")
        yield resolved
    finally:
        process.terminate()
        process.join(resolved.shutdown_s + 5)
        if process.is_alive():
            process.kill()
            process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a synthetic web plan on loopback until Ctrl-C.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--links", type=int, default=25_000)
    parser.add_argument("--port", type=int, default=18_400)
    for key, value in asdict(WebSettings()).items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = Plan(seed=args.pop("seed"), links=args.pop("links"), port=args.pop("port"))
    serve(plan, WebSettings(**args))


if __name__ == "__main__":
    main()
