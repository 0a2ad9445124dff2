"""Common Crawl's columnar URL index in miniature, the links it is joined with, and a child process
that runs the join and reports its peak memory.

``CC_SCHEMA`` has the real index's types for the columns the join reads (see
commoncrawl/cc-index-table ``cc-index-schema-flat.json``); ``write_index`` writes
``<folder>/crawl=<name>/subset=warc/part-NNNNN.parquet`` from an iterator of rows, a row group at a
time. ``Synthetic`` plans an index of many hosts, most of them not in the links, and the links; it
knows which capture each link must get.

``python -m tests.cc_index RUN_JSON`` runs the map and reduce passes in this process and prints
their stats and the process's peak RSS as JSON: the memory test runs it as a child of its own.
"""

from __future__ import annotations

import gzip
import json
import resource
import sys
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import runtime
from pipeline.config import (
    FetchConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
)
from pipeline.fetch.ccindex import CCIndexMapStage, CCIndexReduceStage
from pipeline.links.rules import partition_of
from pipeline.links.stage import LINKS_SCHEMA
from pipeline.runtime import Stage, TaskContext

CC_SCHEMA = pa.schema([
    ("url_surtkey", pa.string()), ("url", pa.string()), ("url_host_name", pa.string()),
    ("url_path", pa.string()), ("url_query", pa.string()),
    ("fetch_time", pa.timestamp("us", tz="UTC")), ("fetch_status", pa.int16()),
    ("content_mime_type", pa.string()), ("content_mime_detected", pa.string()),
    ("warc_filename", pa.string()), ("warc_record_offset", pa.int32()),
    ("warc_record_length", pa.int32()), ("subset", pa.string()),
])
CRAWLS = ("CC-MAIN-2017-13", "CC-MAIN-2017-17")
DAY = 86400
BASE_UTC = 1_483_228_800  # 2017-01-01
LINKS_ROW_GROUP_ROWS = 4096


def write_index(folder: Path, crawl: str, rows: Iterable[dict[str, Any]], rows_per_file: int,
                row_group_rows: int, crawl_column: bool = False) -> list[Path]:
    """Index rows (``CC_SCHEMA`` fields; ``fetch_time`` in unix microseconds) as one crawl's files,
    ``rows_per_file`` rows each; memory holds one row group. ``crawl_column`` adds a ``crawl``
    column, as some copies of the index have."""
    out = folder / f"crawl={crawl}" / "subset=warc"
    out.mkdir(parents=True, exist_ok=True)
    schema = CC_SCHEMA.append(pa.field("crawl", pa.string())) if crawl_column else CC_SCHEMA
    extra = {"subset": "warc", "crawl": crawl} if crawl_column else {"subset": "warc"}
    paths: list[Path] = []
    writer: pq.ParquetWriter | None = None
    group: list[dict[str, Any]] = []
    in_file = 0

    def flush() -> None:
        if group:
            writer.write_table(pa.Table.from_pylist([{**r, **extra} for r in group], schema=schema))
            group.clear()

    for row in rows:
        if writer is None:
            paths.append(out / f"part-{len(paths):05d}.parquet")
            writer = pq.ParquetWriter(paths[-1], schema, compression="zstd")
        group.append(row)
        in_file += 1
        if len(group) >= row_group_rows or in_file >= rows_per_file:
            flush()
        if in_file >= rows_per_file:
            writer.close()
            writer, in_file = None, 0
    if writer is not None:
        flush()
        writer.close()
    return paths


def index_row(url: str, fetch_s: int, crawl: str, *, status: int = 200, mime: str = "text/html",
              detected: str | None = "text/html", filename: str = "", offset: int = 0,
              length: int = 1000) -> dict[str, Any]:
    """One index row; the host, path, query and SURT key are derived from ``url`` (roughly)."""
    scheme, rest = url.split("://", 1)
    netloc, _, path = rest.partition("/")
    host = netloc.rsplit("@", 1)[-1].split(":")[0].lower()
    path, _, query = ("/" + path).partition("?")
    surt = ",".join(reversed(host.removeprefix("www.").split("."))) + ")" + path.lower()
    return {
        "url_surtkey": surt + (f"?{query}" if query else ""), "url": url, "url_host_name": host,
        "url_path": path, "url_query": query or None, "fetch_time": fetch_s * 1_000_000,
        "fetch_status": status, "content_mime_type": mime, "content_mime_detected": detected,
        "warc_filename": filename or f"crawl-data/{crawl}/segments/1490218186353.38/warc/{crawl}-"
                                     "20170322212946-00000-ip-10-233-31-227.ec2.internal.warc.gz",
        "warc_record_offset": offset, "warc_record_length": length,
    }


def link_row(url: str, host: str, created: int | None) -> dict[str, Any]:
    """A links row (``LINKS_SCHEMA``) of an already normalized URL."""
    return {"url": url, "raw_url": url, "host": host, "n_submissions": 1, "score_sum": 5,
            "score_max": 5, "subreddits": ["news"], "first_created_utc": created,
            "submission_ids": [f"t3_{zlib.crc32(url.encode()):x}"]}


@dataclass(frozen=True)
class Synthetic:
    """An index of ``hosts`` hosts of ``pages`` pages and the links of every ``link_host_every``-th
    host, in SURT order (host by host). What the index holds of a page depends on its kind:

    0: a ``http://www.`` capture 10 days before the submission (with tracking parameters) in the
       first crawl, and one 2 days after with ``:443`` in the second: the second wins;
    1: one capture 400 days after: outside a 365-day window;
    2: none;
    3: a 404 at the submission time, a PDF (detected, though declared HTML) an hour after, and a
       good capture (``http://...:80``) 30 days before: that one wins;
    4: two captures 5 days before and after, one per crawl: the earlier wins.

    Links are the even pages of link hosts; half of those hosts are named with ``www.``, and a
    third of the links are http.
    """

    hosts: int
    pages: int = 8
    link_host_every: int = 4

    def host(self, h: int) -> str:
        return f"site{h:06d}.example"

    def is_linked(self, h: int, j: int) -> bool:
        return h % self.link_host_every == 0 and j % 2 == 0

    def page(self, h: int, j: int) -> int:
        return h * self.pages + j

    def kind(self, h: int, j: int) -> int:
        return self.page(h, j) % 5

    def created(self, h: int, j: int) -> int:
        return BASE_UTC + self.page(h, j) * 7919 % (200 * DAY)

    def path(self, h: int, j: int) -> str:
        return f"/news/2017/{j:03d}/story-{h}-{j}-about-the-things-that-happened.html"

    def link(self, h: int, j: int) -> tuple[str, str]:
        """(url, host) of the link of page (h, j)."""
        host = ("www." if h % (2 * self.link_host_every) else "") + self.host(h)
        scheme = "http" if self.page(h, j) % 3 == 0 else "https"
        return f"{scheme}://{host}{self.path(h, j)}", host

    def links(self) -> list[dict[str, Any]]:
        return [link_row(*self.link(h, j), self.created(h, j))
                for h in range(self.hosts) for j in range(self.pages) if self.is_linked(h, j)]

    def captures(self, h: int, j: int) -> list[tuple[str, int, str, int, int, str]]:
        """The page's captures: (crawl, variant, url, fetch_s, status, detected media type)."""
        t, host, path = self.created(h, j), self.host(h), self.path(h, j)
        a, b = CRAWLS
        kind = self.kind(h, j)
        if kind == 0:
            return [(a, 0, f"http://www.{host}{path}?utm_source=reddit&fbclid=x1", t - 10 * DAY, 200,
                     "text/html"),
                    (b, 1, f"https://{host}:443{path}", t + 2 * DAY, 200, "text/html")]
        if kind == 1:
            return [(b, 0, f"https://{host}{path}", t + 400 * DAY, 200, "text/html")]
        if kind == 3:
            return [(a, 0, f"https://{host}{path}", t, 404, "text/html"),
                    (a, 1, f"https://{host}{path}", t + 3600, 200, "application/pdf"),
                    (b, 2, f"http://{host}:80{path}", t - 30 * DAY, 200, "text/html")]
        if kind == 4:
            return [(a, 0, f"https://www.{host}{path}", t - 5 * DAY, 200, "text/html"),
                    (b, 1, f"http://{host}{path}", t + 5 * DAY, 200, "text/html")]
        return []

    def warc(self, crawl: str, h: int, j: int, variant: int) -> tuple[str, int, int]:
        """(warc_filename, offset, length) of a capture."""
        p = self.page(h, j)
        filename = (f"crawl-data/{crawl}/segments/1490218{h % 1000:03d}.{j}/warc/{crawl}-"
                    f"20170322{h % 10**6:06d}-{p % 640:05d}-ip-10-233-31-227.ec2.internal.warc.gz")
        return filename, (p * 9973 + variant * 1237) % 2_000_000_000, 5000 + p % 20000

    def rows(self, crawl: str) -> Iterator[dict[str, Any]]:
        """The index rows of one crawl, host by host (SURT order)."""
        for h in range(self.hosts):
            for j in range(self.pages):
                for kept, variant, url, fetch_s, status, detected in self.captures(h, j):
                    if kept != crawl:
                        continue
                    filename, offset, length = self.warc(crawl, h, j, variant)
                    host = url.split("/", 3)[2].split(":")[0]
                    path, _, query = self.path(h, j), "", url.partition("?")[2]
                    yield {
                        "url_surtkey": f"example,site{h:06d})" + path + (f"?{query}" if query else ""),
                        "url": url, "url_host_name": host, "url_path": path, "url_query": query or None,
                        "fetch_time": fetch_s * 1_000_000, "fetch_status": status,
                        "content_mime_type": "text/html", "content_mime_detected": detected,
                        "warc_filename": filename, "warc_record_offset": offset,
                        "warc_record_length": length,
                    }

    def expected(self) -> dict[str, tuple]:
        """Link URL -> (captured_at, crawl, warc_filename, warc_offset, warc_length) it must get."""
        wins = {0: 1, 3: 2, 4: 0}  # the winning capture, by kind
        found = {}
        for h in range(self.hosts):
            for j in range(self.pages):
                if self.is_linked(h, j) and self.kind(h, j) in wins:
                    crawl, variant, _, fetch_s, _, _ = self.captures(h, j)[wins[self.kind(h, j)]]
                    found[self.link(h, j)[0]] = (fetch_s, crawl, *self.warc(crawl, h, j, variant))
        return found

    def reasons(self) -> dict[str, int]:
        """How many links end matched, outside_window and no_capture."""
        names = {0: "matched", 1: "outside_window", 2: "no_capture", 3: "matched", 4: "matched"}
        counts: dict[str, int] = defaultdict(int)
        for h in range(self.hosts):
            for j in range(self.pages):
                if self.is_linked(h, j):
                    counts[names[self.kind(h, j)]] += 1
        return dict(counts)


class LinksFixture(Stage):
    """The links stage's output made from given rows: ``links/part-NNNNN.parquet`` sorted by
    (host, url), with the stage's markers, as the links stage leaves them."""

    name = "links"

    def __init__(self, cfg: PipelineConfig, rows: list[dict[str, Any]]) -> None:
        super().__init__(cfg)
        self.parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            self.parts[partition_of(row["host"], cfg.links.partitions)].append(row)

    @property
    def num_tasks(self) -> int:
        return self.cfg.links.partitions

    def stage_config(self) -> LinksConfig:
        return self.cfg.links

    def run_task(self, ctx: TaskContext) -> None:
        rows = sorted(self.parts[ctx.index], key=lambda r: (r["host"], r["url"]))
        pq.write_table(pa.Table.from_pylist(rows, schema=LINKS_SCHEMA),
                       ctx.output(f"part-{ctx.index:05d}.parquet"), row_group_size=LINKS_ROW_GROUP_ROWS)


INDEX_TABLE = "cc-index/table/cc-main/warc"  # where the index lies under Common Crawl's data URL


def publish_listing(root: Path, crawl: str) -> Path:
    """``root/crawl-data/<crawl>/cc-index-table.paths.gz`` naming the crawl's files under
    ``root/INDEX_TABLE``, relative to ``root``, and (as the real one does) other subsets' files."""
    files = sorted((root / INDEX_TABLE / f"crawl={crawl}" / "subset=warc").glob("*.parquet"))
    lines = [p.relative_to(root).as_posix() for p in files]
    lines.append(f"{INDEX_TABLE}/crawl={crawl}/subset=crawldiagnostics/part-00000.c000.gz.parquet")
    listing = root / "crawl-data" / crawl / "cc-index-table.paths.gz"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_bytes(gzip.compress("\n".join(lines).encode() + b"\n"))
    return listing


def join_config(workdir: Path, index: str, partitions: int = 4, **fetch: Any) -> PipelineConfig:
    """A config with Common Crawl's index at ``index`` (a folder or ``remote``); not validated."""
    fetch = {"commoncrawl_crawls": list(CRAWLS), "commoncrawl_join_tasks": 2,
             "commoncrawl_join_bloom_mib": 1.0, **fetch}
    return PipelineConfig(workdir=str(workdir), executor=LocalExecutorConfig(workers=1),
                          source=PushshiftSourceConfig(), links=LinksConfig(partitions=partitions),
                          fetch=FetchConfig(archive="commoncrawl", commoncrawl_index=str(index), **fetch))


def run_stage(stage: Stage) -> dict[str, Any]:
    """A stage's tasks one after the other in this process, as an executor runs them."""
    stage.setup()
    stage.check_inputs()
    runtime.prepare(stage)
    for index in range(stage.num_tasks):
        runtime.run_task(stage, index)
    return runtime.finalize(stage)


def write_links(cfg: PipelineConfig, rows: list[dict[str, Any]]) -> None:
    run_stage(LinksFixture(cfg, rows))


def run_join(cfg: PipelineConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The map and reduce passes; their stats."""
    return run_stage(CCIndexMapStage(cfg)), run_stage(CCIndexReduceStage(cfg))


def main(argv: list[str]) -> None:
    """``RUN_JSON``: {"workdir", "index", "fetch": {...}}; prints stats and peak RSS as JSON."""
    spec = json.loads(argv[0])
    cfg = join_config(Path(spec["workdir"]), spec["index"], spec.get("partitions", 4), **spec["fetch"])
    mapped, reduced = run_join(cfg)
    print(json.dumps({"peak_rss_bytes": peak_rss_bytes(), "map": mapped, "reduce": reduced,
                      "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def peak_rss_bytes() -> int:
    """This process's peak resident set size since it was exec'd (``VmHWM``).

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the high-water mark of the address
    space an ``exec`` replaces into it, and Python starts a child by (v)fork and exec, so a child's
    ru_maxrss is at least its parent's RSS (a test process that made the fixtures: hundreds of MB).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


if __name__ == "__main__":
    main(sys.argv[1:])
