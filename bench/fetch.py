"""Fetch throughput and client CPU: our crawler beside trafilatura's fetch_url pool and a bare aiohttp loop.

    python bench/fetch.py [--hosts 256] [--pages 6144] [--latency-ms 20] [--concurrency 256]

A server process (aiohttp, bound to 0.0.0.0, so every 127.x.y.z address reaches it) serves
realistic article pages of 50-300 KB after an injected latency; URLs are spread over many distinct
loopback hosts (127.0.a.b). On the same URLs, in turn, each client in worker processes of its own
(started before timing):

- ours: pipeline.fetch.fetch_urls with robots.txt, the address guard (loopback allowed through
  fetch.allowed_networks, the guard still checks every address), WARC.gz and the index written;
  per-host delay 0 so no host limits the rate; once in one process, and once as the fetch stage
  runs (one task per host partition, ``--processes`` worker processes, one per core by default);
- trafilatura: ``trafilatura.fetch_url`` in a 32-thread pool, its SSRF protection switched off
  through its config (the hosts are loopback);
- bare loop: aiohttp GETs at our concurrency that read each body and keep nothing (the ceiling of
  this machine);
- the bound: the bare loop, plus what archiving each body costs at the least at our settings
  (``pipeline/fetch/warc.py``): one gzip member with ISA-L at ``GZIP_LEVEL`` and two SHA-1 digests
  (the WARC payload and block digests), on the event loop.

Prints pages/s of each, and the client CPU per page: user + system time of the client processes
only (``resource.getrusage`` in each, every thread counted; the server's is not), so it does not
depend on how busy the machine is as wall time does. Then our ratios: to the trafilatura pool and
the bare loop in pages/s (issue 4's goals: >= 1.5x and >= 0.6x), and to the bound in CPU per page
(issue 14's goal: <= 1.5x). The table of ``bench/run.py`` has the same, with ours as the stage runs
it, on 2,048 pages (8 per host), or on 6,144 with ``--full``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import random
import resource
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from isal import isal_zlib

from bench.measure import Measure
from pipeline.config import FetchConfig
from pipeline.fetch import fetch_urls
from pipeline.fetch.warc import GZIP_LEVEL

WORDS = ("the city council voted to restore the evening route as a trial citing traffic on the "
         "bridge and requests from residents of the islands who must otherwise leave").split()


def page(rng: random.Random, size: int) -> bytes:
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(40))
    parts = [f"<!DOCTYPE html><html><head><title>Story</title></head><body><nav><ul>{nav}</ul></nav>"
             "<article><h1>A story</h1>"]
    total = sum(map(len, parts))
    while total < size:
        para = "<p>" + " ".join(rng.choice(WORDS) for _ in range(80)) + "</p>\n"
        parts.append(para)
        total += len(para)
    parts.append("</article><footer>© example</footer></body></html>")
    return "".join(parts).encode()


def serve(port: int, latency_s: float, ready: multiprocessing.Event) -> None:
    rng = random.Random(0)
    pages = [page(rng, rng.randint(50_000, 300_000)) for _ in range(32)]

    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(latency_s)
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        n = int(request.path.rsplit("/", 1)[-1] or 0)
        return web.Response(body=pages[n % len(pages)], content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port, backlog=4096).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def ours(urls: list[str], concurrency: int) -> int:
    cfg = FetchConfig(allowed_networks=["127.0.0.0/8"], per_host_delay_s=0.0, concurrency=concurrency,
                      timeout_s=60, read_timeout_s=30)
    with tempfile.TemporaryDirectory() as out:
        rows = fetch_urls(urls, cfg, Path(out))
    return sum(r["reason"] is None for r in rows)


def by_host(urls: list[str], parts: int) -> list[list[str]]:
    """The URLs split into ``parts`` partitions by host, as the links stage partitions them."""
    from urllib.parse import urlsplit

    split: list[list[str]] = [[] for _ in range(parts)]
    hosts: dict[str, int] = {}
    for url in urls:
        split[hosts.setdefault(urlsplit(url).hostname or "", len(hosts) % parts)].append(url)
    return split


def trafilatura_pool(urls: list[str]) -> int:
    from trafilatura import fetch_url
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "SSRF_PROTECTION", "off")
    config.set("DEFAULT", "MAX_FILE_SIZE", str(4 << 20))
    with ThreadPoolExecutor(32) as pool:
        pages = list(pool.map(lambda u: fetch_url(u, config=config), urls))
    return sum(p is not None for p in pages)


def bare_loop(urls: list[str], concurrency: int, per_body: Callable[[bytes], None] | None = None) -> int:
    async def main() -> int:
        done = 0
        semaphore = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def get(url: str) -> None:
                nonlocal done
                async with semaphore, session.get(url) as resp:
                    body = await resp.read()
                    done += resp.status == 200
                if per_body is not None:
                    per_body(body)
            await asyncio.gather(*(get(u) for u in urls))
        return done

    return asyncio.run(main())


def archive(body: bytes) -> None:
    """The least that archiving a body costs ours (``WarcFiles``): a gzip member at our level with
    ISA-L, and the two SHA-1 digests of a response record (payload, and block: headers + payload)."""
    packer = isal_zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    packer.compress(body)
    packer.flush()
    hashlib.sha1(body).digest()
    hashlib.sha1(body).digest()


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warm_up(urls: list[str], hold_s: float) -> None:
    """In a client process, before timing: every client once on a few URLs (imports, trafilatura's
    among them, and first-use costs), then a hold, so that each worker gets one of these calls."""
    for kind in ("ours", "bare", "trafilatura"):
        client(kind, urls, len(urls))
    time.sleep(hold_s)


def client(kind: str, urls: list[str], concurrency: int) -> tuple[int, float]:
    """In a client process: one run of ``kind`` on ``urls``; the pages fetched and the CPU seconds
    this process spent on them."""
    run = {"ours": lambda: ours(urls, concurrency),
           "bare": lambda: bare_loop(urls, concurrency),
           "bound": lambda: bare_loop(urls, concurrency, per_body=archive),
           "trafilatura": lambda: trafilatura_pool(urls)}[kind]
    start = cpu_seconds()
    pages = run()
    return pages, cpu_seconds() - start


@dataclass(frozen=True)
class Run:
    pages_per_s: float
    cpu_ms_per_page: float  # of the client processes only


class Clients:
    """The URLs, and client worker processes (started once) that fetch them from the server."""

    KINDS = ("bare", "bound", "trafilatura", "ours, 1 process", "ours")

    def __init__(self, urls: list[str], processes: int, concurrency: int) -> None:
        self.urls, self.concurrency = urls, concurrency
        self.parts = by_host(urls, processes)
        self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        list(self.pool.map(warm_up, [part[:4] for part in self.parts], [1.0] * processes))

    def run(self, kind: str) -> Run:
        """One run of ``kind``: ``ours`` as the stage runs it (one task per host partition, one
        worker process each, the concurrency shared); any other in one process."""
        if kind == "ours":
            jobs = [("ours", part, self.concurrency // len(self.parts)) for part in self.parts]
        else:
            jobs = [(kind.split(",")[0], self.urls, self.concurrency)]
        start = time.perf_counter()
        done = list(self.pool.map(client, *zip(*jobs, strict=True)))
        seconds = time.perf_counter() - start
        pages = sum(n for n, _ in done)
        assert pages == len(self.urls), f"{kind}: {pages} of {len(self.urls)} pages"
        return Run(pages / seconds, 1000 * sum(cpu for _, cpu in done) / pages)

    def close(self) -> None:
        self.pool.shutdown()


@contextmanager
def clients(hosts: int, pages: int, latency_ms: float, port: int, processes: int,
            concurrency: int) -> Iterator[Clients]:
    """The server in a process of its own, and the clients, for the time of the block."""
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, latency_ms / 1000, ready), daemon=True)
    server.start()
    crew = None
    try:
        if not ready.wait(30):
            raise RuntimeError(f"the bench's server did not start on port {port}")
        names = [f"127.0.{1 + i // 200}.{1 + i % 200}" for i in range(hosts)]
        urls = [f"http://{names[i % len(names)]}:{port}/story/{i}" for i in range(pages)]
        crew = Clients(urls, processes, concurrency)
        yield crew
    finally:
        if crew is not None:
            crew.close()
        server.terminate()
        server.join()


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    processes = 2  # the fetch stage with executor.workers=2 on 2 cores
    with clients(hosts=256, pages=6144 if full else 2048, latency_ms=20, port=18731, processes=processes,
                 concurrency=256) as crew:
        def rate(kind: str) -> Callable[[], float]:
            return lambda: crew.run(kind).pages_per_s

        def cpu(kind: str) -> Callable[[], float]:
            return lambda: crew.run(kind).cpu_ms_per_page

        ours_name = f"fetch, {processes} processes"
        yield [Measure(ours_name, "pages/s", rate("ours"), rate("trafilatura"),
                       "trafilatura fetch_url, 32 threads", goal=1.5, issue=4),
               Measure(ours_name, "pages/s", rate("ours"), rate("bare"), "bare aiohttp loop", goal=0.6,
                       issue=4),
               Measure(f"{ours_name}: client CPU", "CPU ms/page", cpu("ours"), cpu("bound"),
                       "bare loop + gzip + 2 SHA-1", goal=1.5, higher_is_better=False, issue=14),
               Measure(f"{ours_name}: client CPU", "CPU ms/page", cpu("ours"), cpu("bare"),
                       "bare aiohttp loop", goal=None, higher_is_better=False, issue=14)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=256)
    parser.add_argument("--pages", type=int, default=6144)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes of the stage-like run (executor.workers)")
    args = parser.parse_args()
    print(f"{args.pages} pages (50-300 KB) on {args.hosts} loopback hosts, {args.latency_ms:.0f} ms "
          f"latency, concurrency {args.concurrency}")
    names = {"bare": "bare aiohttp loop", "bound": "bare loop + gzip + 2 SHA-1",
             "trafilatura": "trafilatura fetch_url x32", "ours, 1 process": "ours, 1 process",
             "ours": f"ours, {args.processes} processes"}
    runs = {}
    with clients(args.hosts, args.pages, args.latency_ms, args.port, args.processes,
                 args.concurrency) as crew:
        for kind in Clients.KINDS:
            runs[kind] = crew.run(kind)
            rate, cpu = runs[kind].pages_per_s, runs[kind].cpu_ms_per_page
            print(f"{names[kind]:28s} {rate:8.1f} pages/s  ({args.pages / rate:4.1f} s)  "
                  f"{cpu:6.3f} client CPU ms/page")
    for kind in ("ours, 1 process", "ours"):
        rate, cpu = runs[kind].pages_per_s, runs[kind].cpu_ms_per_page
        print(f"{names[kind]}: {rate / runs['trafilatura'].pages_per_s:.2f}x the trafilatura pool "
              f"(target >= 1.5x), {rate / runs['bare'].pages_per_s:.2f}x the bare loop (target >= 0.6x); "
              f"CPU per page {cpu / runs['bound'].cpu_ms_per_page:.2f}x the bound (target <= 1.5x), "
              f"{cpu / runs['bare'].cpu_ms_per_page:.2f}x the bare loop")


if __name__ == "__main__":
    main()
