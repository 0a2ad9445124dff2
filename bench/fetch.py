"""Fetch throughput: our crawler beside trafilatura's fetch_url pool and a bare aiohttp loop.

    python bench/fetch.py [--hosts 256] [--pages 6144] [--latency-ms 20] [--concurrency 256]

A server process (aiohttp, bound to 0.0.0.0, so every 127.x.y.z address reaches it) serves
realistic article pages of 50-300 KB after an injected latency; URLs are spread over many distinct
loopback hosts (127.0.a.b). On the same URLs, in turn:

- ours: pipeline.fetch.fetch_urls with robots.txt, the address guard (loopback allowed through
  fetch.allowed_networks, the guard still checks every address), WARC.gz and the index written;
  per-host delay 0 so no host limits the rate; once in one process, and once as the fetch stage
  runs (one task per host partition, ``--processes`` worker processes, one per core by default);
- trafilatura: ``trafilatura.fetch_url`` in a 32-thread pool, its SSRF protection switched off
  through its config (the hosts are loopback);
- bare loop: aiohttp GETs at our concurrency that read each body and keep nothing (the ceiling of
  this machine).

Prints pages/s of each and our ratios to the other two.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import FetchConfig  # noqa: E402
from pipeline.fetch import fetch_urls  # noqa: E402

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


def ours_processes(pool: ProcessPoolExecutor, parts: list[list[str]], concurrency: int) -> int:
    """As the fetch stage runs: one task per host partition, in worker processes."""
    return sum(pool.map(ours, parts, [concurrency // len(parts)] * len(parts)))


def trafilatura_pool(urls: list[str]) -> int:
    from trafilatura import fetch_url
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "SSRF_PROTECTION", "off")
    config.set("DEFAULT", "MAX_FILE_SIZE", str(4 << 20))
    with ThreadPoolExecutor(32) as pool:
        pages = list(pool.map(lambda u: fetch_url(u, config=config), urls))
    return sum(p is not None for p in pages)


def bare_loop(urls: list[str], concurrency: int) -> int:
    async def main() -> int:
        done = 0
        semaphore = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def get(url: str) -> None:
                nonlocal done
                async with semaphore, session.get(url) as resp:
                    await resp.read()
                    done += resp.status == 200
            await asyncio.gather(*(get(u) for u in urls))
        return done

    return asyncio.run(main())


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
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.port, args.latency_ms / 1000, ready),
                                     daemon=True)
    server.start()
    ready.wait(30)
    hosts = [f"127.0.{1 + i // 200}.{1 + i % 200}" for i in range(args.hosts)]
    urls = [f"http://{hosts[i % len(hosts)]}:{args.port}/story/{i}" for i in range(args.pages)]
    print(f"{args.pages} pages (50-300 KB) on {args.hosts} loopback hosts, {args.latency_ms:.0f} ms "
          f"latency, concurrency {args.concurrency}")
    rates = {}
    parts = by_host(urls, args.processes)
    pool = ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(ours, [part[:4] for part in parts], [4] * len(parts)))  # workers started
    runs = [("bare aiohttp loop", lambda: bare_loop(urls, args.concurrency)),
            ("trafilatura fetch_url x32", lambda: trafilatura_pool(urls)),
            ("ours, 1 process", lambda: ours(urls, args.concurrency)),
            (f"ours, {args.processes} processes", lambda: ours_processes(pool, parts, args.concurrency))]
    try:
        for name, run in runs:
            start = time.perf_counter()
            fetched = run()
            seconds = time.perf_counter() - start
            assert fetched == args.pages, f"{name}: {fetched} of {args.pages} pages"
            rates[name] = args.pages / seconds
            print(f"{name:28s} {rates[name]:8.1f} pages/s  ({seconds:.1f} s)")
    finally:
        pool.shutdown()
        server.terminate()
    for name in (runs[2][0], runs[3][0]):
        print(f"{name}: {rates[name] / rates['trafilatura fetch_url x32']:.2f}x the trafilatura pool, "
              f"{rates[name] / rates['bare aiohttp loop']:.2f}x the bare loop")


if __name__ == "__main__":
    main()
