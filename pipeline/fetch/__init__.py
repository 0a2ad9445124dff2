"""The fetch stage: links -> raw responses in WARC.gz, with a Parquet index of every URL's outcome.

``fetch_urls`` runs the crawler on a plain list of URLs (tests, benchmarks, one-off use); the stage
(``pipeline.fetch.stage``) runs it per links partition, resumably.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pipeline.config import FetchConfig
from pipeline.fetch.archive import archives_for
from pipeline.fetch.crawler import Crawler, Outcome, host_groups
from pipeline.fetch.warc import WarcWriter


def fetch_urls(urls: list[str], cfg: FetchConfig, out_dir: Path,
               created: float | None = None) -> list[dict[str, Any]]:
    """Fetch ``urls`` into WARC.gz files in ``out_dir``; one index row per URL, in input order.

    ``created``: the submission time the archives (``cfg.archive``) look for captures near.
    """
    warc = WarcWriter(out_dir, "fetch", cfg.warc_max_bytes, cfg.warc_writers)
    outcomes: dict[int, Outcome] = {}

    async def crawl() -> None:
        async with Crawler(cfg, warc, lambda o: outcomes.__setitem__(o.ord, o), archives_for(cfg)) as crawler:
            await crawler.crawl(host_groups(enumerate(urls), created))

    try:
        asyncio.run(crawl())
    finally:
        warc.close()
    return [outcomes[i].row() for i in range(len(urls))]
