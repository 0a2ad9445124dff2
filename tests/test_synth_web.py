"""The synthetic web (``bench/synth/web.py``, ``text.py``) crawled by the real crawler.

The server runs in its own process for a plan of 400 links whose seed (5) gives every link kind and a
host with two boilerplate pages; the crawler (``pipeline.fetch.fetch_urls``, as the fetch stage runs
it) reaches every host through ``fetch.hosts=['*.test=127.0.0.1']``. Every link must end with the
reason its kind plans (``FETCH_REASON``): the shares the rehearsal counts on arrive exactly.

Timing: the crawler's deadline (``fetch.timeout_s``, 4 s) is far above what a page takes to come (a
few ms; ``slow`` links 0.3 s) and far below the timeout links' wait (60 s), so a busy machine cannot
turn one outcome into the other.
"""

from __future__ import annotations

import itertools
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from bench.synth import text
from bench.synth.plan import FETCH_REASON, KIND_SHARES, Plan
from bench.synth.web import WebSettings, article_text, language_of, page, running
from pipeline.config import ExtractConfig, FetchConfig
from pipeline.extract.core import extract_page, language, quality_reason
from pipeline.fetch import fetch_urls

log = logging.getLogger(__name__)
SEED, LINKS = 5, 400
MiB = 1 << 20
CRAWL = {"allow_private": True, "hosts": ["*.test=127.0.0.1"], "per_host_delay_s": 0.0,
         "concurrency": 64, "timeout_s": 4.0, "connect_timeout_s": 4.0, "read_timeout_s": 4.0,
         "retries": 1, "retry_backoff_s": 0.05, "max_bytes": MiB}


def free_port_pair() -> int:
    """A port ``p`` free on 127.0.0.1 with ``p + 1`` free too (where the plan's unreachable hosts
    point: nothing may listen there)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan(seed=SEED, links=LINKS, port=free_port_pair())


@pytest.fixture(scope="module")
def served(plan: Plan) -> Iterator[WebSettings]:
    with running(plan, timeout_sleep_s=60.0, oversized_bytes=int(1.2 * MiB)) as settings:
        yield settings


def shingles(value: str, n: int = 5) -> set[tuple[str, ...]]:
    words = value.lower().split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def kinds(plan: Plan, kind: str) -> list[int]:
    return [link.index for link in plan.iter_links() if link.kind == kind]


def warc_bodies(folder: Path) -> dict[str, bytes]:
    """Each response record's body as warcio decodes it (de-chunked, gzip undone), by target URI."""
    bodies = {}
    for path in sorted(folder.glob("*.warc.gz")):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    bodies[record.rec_headers.get_header("WARC-Target-URI")] = record.content_stream().read()
    return bodies


@pytest.mark.timeout(120)
def test_the_crawler_meets_every_planned_outcome(plan: Plan, served: WebSettings, tmp_path: Path) -> None:
    links = list(plan.iter_links())
    assert {link.kind for link in links} >= set(KIND_SHARES), "the seed must give every kind"
    started = time.monotonic()
    rows = fetch_urls([link.url for link in links], FetchConfig(**CRAWL), tmp_path)
    log.info("crawled %d links in %.1f s", len(rows), time.monotonic() - started)
    wrong = [(link.index, link.kind, row["reason"]) for link, row in zip(links, rows, strict=True)
             if row["reason"] != FETCH_REASON[link.kind]]
    assert not wrong, f"links whose outcome is not the planned one: {wrong}"
    assert Counter(row["reason"] or "kept" for row in rows) == plan.expected_fetch()

    bodies = warc_bodies(tmp_path)
    for link, row in zip(links, rows, strict=True):
        if row["reason"] is None:  # the server (another process) sent what page() renders here
            assert row["status"] == 200 and len(row["redirects"]) == link.hops
            assert bodies[row["final_url"]] == page(plan, link.index), link


def test_article_pages_are_50_to_300_kb_with_1_to_10_kb_of_text(plan: Plan) -> None:
    articles = kinds(plan, "article")
    sizes = [len(page(plan, i)) for i in articles]
    assert 50_000 <= min(sizes) and max(sizes) <= 300_000, (min(sizes), max(sizes))
    chars = sorted(len(article_text(plan, i)) for i in articles)
    assert text.MIN_CHARS <= chars[0] and chars[-1] <= text.MAX_CHARS + 200  # + the title
    assert 3_500 <= chars[len(chars) // 2] <= 5_500, chars[len(chars) // 2]


def test_pages_extract_to_their_text_in_their_language(plan: Plan) -> None:
    cfg = ExtractConfig()
    for kind, lang in [("article", "en"), ("redirect", "en"), ("syndicated", "en"), ("boilerplate", "en"),
                       ("non_english", None)]:
        for index in kinds(plan, kind)[:3]:
            found = extract_page(page(plan, index).decode(), plan.link(index).url, cfg)
            assert found is not None and found.text == article_text(plan, index), (kind, index)
            detected, score = language(found.text)
            assert detected == (lang or language_of(plan, index)), (kind, index)
            assert score > 0.9 and (lang != "en" or quality_reason(found.text) is None), (kind, index)


def test_articles_are_not_near_duplicates(plan: Plan) -> None:
    articles = kinds(plan, "article")
    pairs = random.Random(0).sample(list(itertools.combinations(articles, 2)), 300)
    worst = max(jaccard(article_text(plan, a), article_text(plan, b)) for a, b in pairs)
    assert worst < 0.05, worst


def test_syndicated_and_boilerplate_pages_are_near_duplicates(plan: Plan) -> None:
    for index in kinds(plan, "syndicated"):
        link = plan.link(index)
        assert link.source is not None and plan.link(link.source).host != link.host
        assert article_text(plan, index) == article_text(plan, link.source)
        assert page(plan, index) != page(plan, link.source)  # in this host's own page
    by_host: dict[int, list[int]] = {}
    for index in kinds(plan, "boilerplate"):
        by_host.setdefault(plan.link(index).host.rank, []).append(index)
    pairs = [(walls[0], walls[1]) for walls in by_host.values() if len(walls) > 1]
    assert pairs, "the seed must give a host two boilerplate pages"
    for a, b in pairs:
        assert jaccard(article_text(plan, a), article_text(plan, b)) > 0.8
    first, second = (walls[0] for walls in list(by_host.values())[:2])
    assert jaccard(article_text(plan, first), article_text(plan, second)) < 0.3  # other hosts' differ


def test_generation_is_deterministic(plan: Plan) -> None:
    again = Plan(seed=plan.seed, links=plan.links, port=plan.port)
    for index in kinds(plan, "article")[:5] + kinds(plan, "non_english")[:2]:
        assert page(again, index) == page(plan, index)
    other = Plan(seed=plan.seed + 1, links=plan.links, port=plan.port)
    assert text.document(other.seed, 0) != text.document(plan.seed, 0)


def test_page_render_rate(plan: Plan) -> None:
    articles = kinds(plan, "article")
    page(plan, articles[0])  # the pools are made
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < 0.5:
        page(plan, articles[count % len(articles)])
        count += 1
    rate = count / elapsed
    print(f"page(): {rate:,.0f} pages/s")
    assert rate > 1_000
