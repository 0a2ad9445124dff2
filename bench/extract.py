"""Extract throughput: our stage beside a bare ``trafilatura.extract`` loop on the same pages.

    python bench/extract.py [--pages 400]

Realistic article pages (50-300 KB of HTML: navigation, cookie banner, related links, comments,
footer around the article) are written as a fetch stage would leave them (WARC.gz records and an
index, with a links partition beside it). Then, on the same pages:

- baseline: ``trafilatura.extract(page)`` in a loop, one process, with the options ours uses
  (metadata on, comments and tables off, the same date search), so that the difference is the
  stage's own work;
- the same with ``trafilatura.bare_extraction``, which ours calls (``extract`` adds text formatting);
- ours, 1 worker: the extract stage (WARC reading, decoding, isolated extraction process with its
  deadline, language ID, GPT-2 token count, Parquet output) with ``executor.workers=1``;
- ours, 2 workers: the same with ``executor.workers=2`` (one task per partition, in parallel).

Times are the tasks' own (from their completion markers), so process start-up of the pool is left
out; the extraction child's start-up is included. Prints pages/s, our per-worker overhead and the
2-worker speed-up over the bare loop.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import trafilatura

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import (  # noqa: E402
    ExtractConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
)
from pipeline.executor import LocalExecutor  # noqa: E402
from pipeline.extract.stage import ExtractStage  # noqa: E402
from pipeline.fetch.stage import INDEX_SCHEMA  # noqa: E402
from pipeline.fetch.warc import HttpExchange, WarcFiles  # noqa: E402
from pipeline.links.stage import LINKS_SCHEMA  # noqa: E402
from pipeline.runtime import atomic_write, dump_json  # noqa: E402

WORDS = ("the council voted to restore the evening ferry route as a trial after residents of the "
         "islands asked for a later crossing and traffic on the bridge kept growing every year").split()


def page(rng: random.Random, size: int) -> bytes:
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(60))
    related = "".join(f'<li><a href="/story/{i}">Related story number {i}</a></li>' for i in range(30))
    comments = "".join(f'<div class="comment"><b>user{i}</b><p>I agree with this, thanks for '
                       f'writing it up, comment {i}.</p></div>' for i in range(40))
    head = (f"<!DOCTYPE html><html><head><title>Story</title><style>{'.x{color:red}' * 200}</style>"
            f"</head><body><div class='cookie'>We use cookies to improve your experience.</div>"
            f"<nav><ul>{nav}</ul></nav><main><article><h1>The ferry returns</h1>")
    tail = (f"</article></main><aside><ul>{related}</ul></aside><section class='comments'>{comments}"
            f"</section><footer>© harbor gazette · contact · terms</footer></body></html>")
    body, total = [], len(head) + len(tail)
    while total < size:
        para = "<p>" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120))) + ".</p>\n"
        body.append(para)
        total += len(para)
    return (head + "".join(body) + tail).encode()


def fetched_workdir(pages: list[bytes], partitions: int) -> Path:
    """A workdir holding links and fetch outputs for ``pages``, as those stages leave them."""
    workdir = Path(tempfile.mkdtemp())
    for part in range(partitions):
        mine = list(range(part, len(pages), partitions))
        warc = WarcFiles(workdir / "fetch" / "warc", f"{part:05d}", 1 << 40)
        index, links = [], []
        for ord_, n in enumerate(mine):
            url = f"http://site{n % 50}.example/story/{n}"
            exchange = HttpExchange(url, "GET", f"/story/{n}", [], "HTTP/1.1", 200, "OK",
                                    [("Content-Type", "text/html; charset=utf-8")], pages[n])
            name, offset, length, end = warc.write([exchange])
            index.append({"ord": ord_, "url": url, "final_url": url, "status": 200,
                          "content_type": "text/html", "bytes": len(pages[n]), "reason": None,
                          "redirects": [], "attempts": 1, "warc_file": name, "warc_offset": offset,
                          "warc_length": length, "warc_end": end, "fetched_at": 0.0, "elapsed_s": 0.0})
            links.append({"url": url, "raw_url": url, "host": f"site{n % 50}.example", "n_submissions": 1,
                          "score_sum": 5, "score_max": 5, "subreddits": ["news"],
                          "first_created_utc": 1500000000, "submission_ids": [str(n)]})
        warc.close()
        (workdir / "fetch" / "index").mkdir(parents=True, exist_ok=True)
        (workdir / "links").mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA),
                       workdir / "fetch" / "index" / f"{part:05d}.parquet")
        pq.write_table(pa.Table.from_pylist(links, schema=LINKS_SCHEMA),
                       workdir / "links" / f"part-{part:05d}.parquet")
    return workdir


def run_stage(workdir: Path, partitions: int, workers: int) -> float:
    """Seconds the extract tasks took, wall clock from the first start to the last end."""
    cfg = PipelineConfig(workdir=str(workdir), stages=["extract"],
                         executor=LocalExecutorConfig(workers=workers), source=PushshiftSourceConfig(),
                         links=LinksConfig(partitions=partitions), extract=ExtractConfig())
    stage = ExtractStage(cfg)
    LocalExecutor(cfg.executor).run([stage])
    markers = [json.loads(stage.paths.done(i).read_text()) for i in range(partitions)]
    return max(m["started_at"] + m["elapsed_s"] for m in markers) - min(m["started_at"] for m in markers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=400)
    args = parser.parse_args()
    rng = random.Random(0)
    pages = [page(rng, rng.randint(50_000, 300_000)) for _ in range(args.pages)]
    print(f"{args.pages} pages, {sum(map(len, pages)) / len(pages) / 1000:.0f} KB mean")
    start = time.perf_counter()
    for html in pages:
        trafilatura.extract(html, with_metadata=True, include_comments=False, include_tables=False,
                            deduplicate=False,
                            date_extraction_params={"extensive_search": False, "original_date": True})
    bare = args.pages / (time.perf_counter() - start)
    rates = {"bare trafilatura.extract loop": bare}
    start = time.perf_counter()  # what ours calls: the same extraction, without text formatting
    for html in pages:
        trafilatura.bare_extraction(html, with_metadata=True, include_comments=False,
                                    include_tables=False, deduplicate=False,
                                    date_extraction_params={"extensive_search": False,
                                                            "original_date": True})
    rates["bare_extraction loop"] = args.pages / (time.perf_counter() - start)
    for workers in (1, 2):
        workdir = fetched_workdir(pages, partitions=2)
        for folder in ("links", "fetch"):  # the inputs look finished to require_complete
            atomic_write(workdir / folder / "_state" / "stage.json",
                         dump_json({"stage": folder, "tasks": 0, "config": {}}))
        rates[f"ours, {workers} worker(s)"] = args.pages / run_stage(workdir, 2, workers)
    for name, rate in rates.items():
        print(f"{name:32s} {rate:7.2f} pages/s   {rate / bare:5.2f}x")
    inner = rates["bare_extraction loop"]
    print(f"per-worker overhead: {bare / rates['ours, 1 worker(s)'] - 1:+.1%} against the extract "
          f"loop, {inner / rates['ours, 1 worker(s)'] - 1:+.1%} against the bare_extraction loop; "
          f"2 workers: {rates['ours, 2 worker(s)'] / bare:.2f}x and "
          f"{rates['ours, 2 worker(s)'] / inner:.2f}x")


if __name__ == "__main__":
    main()
