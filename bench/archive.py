"""The join of the links with Common Crawl's columnar index: ours beside a pyarrow in-memory join.

    python bench/archive.py [--scale 1 4] [--repeat 1]

Builds a copy of the columnar index in its real schema (``tests/cc_index.py``'s ``Synthetic``: two
crawls, about 250,000 captures and 19,500 links per scale unit, three quarters of the hosts not in
the links, captures under URL variants: ``http``/``https``, ``www.``, ``:80``/``:443``, tracking
parameters), and its links partitions. Then, on the same files, each side in a child process of its
own (so that its peak memory is its own):

- ours: the two passes of ``fetch.commoncrawl_index`` (``fetch_ccindex_map``, ``fetch_ccindex``)
  one task after the other, as ``tests/cc_index.py`` runs them: memory bounded by
  ``fetch.commoncrawl_join_buffer_rows`` (20,000 here) and the read batches, never by the sizes;
- baseline: what one writes with pyarrow alone: read the columns needed of every index file (status
  200 and HTML kept), read every links part, hash-join them on the URL, and keep each link's capture
  nearest its submission within the window. It holds the whole filtered index and all the links in
  memory at once, and joins exact URLs only: it is a ceiling for speed, not the same result. It finds
  only the captures whose URL is written as the link is (the script prints how many links each
  side matched).

Figure: index rows/s (rows read over the seconds of the join, inside the child: interpreter start-up
left out), and each side's peak RSS (VmHWM). The issue set no goal against a baseline; the table
shows the ratio unjudged. In the table of ``bench/run.py``: scale 1 (scale 4 with ``--full``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.measure import Measure

HOSTS_PER_SCALE = 19_500
JOIN = {"commoncrawl_join_buffer_rows": 20_000, "commoncrawl_join_batch_rows": 4096}
HTML = ["text/html", "application/xhtml+xml"]
MIB = 1 << 20


def build(root: Path, scale: int) -> dict[str, Any]:
    """The index and the links at ``scale`` under ``root``; the child's spec."""
    from tests.cc_index import CRAWLS, Synthetic, join_config, write_index, write_links

    syn = Synthetic(hosts=HOSTS_PER_SCALE * scale)
    for crawl in CRAWLS:
        write_index(root / "index", crawl, syn.rows(crawl), rows_per_file=100_000, row_group_rows=10_000)
    cfg = join_config(root / "work", root / "index", **JOIN)
    links = syn.links()
    write_links(cfg, links)
    return {"workdir": str(root / "work"), "index": str(root / "index"), "crawls": list(CRAWLS),
            "partitions": cfg.links.partitions, "links": len(links),
            "expected": syn.reasons().get("matched", 0)}


def ours(spec: dict[str, Any]) -> dict[str, Any]:
    from tests.cc_index import join_config, run_join

    shutil.rmtree(Path(spec["workdir"]) / "fetch", ignore_errors=True)  # each run joins from nothing
    cfg = join_config(Path(spec["workdir"]), spec["index"], spec["partitions"], **JOIN)
    start = time.perf_counter()
    mapped, reduced = run_join(cfg)
    seconds = time.perf_counter() - start
    return {"rows": mapped["metrics"]["index_rows"], "seconds": seconds,
            "matched": reduced["counts"]["matched"]}


def baseline(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.config import FetchConfig

    window_s = FetchConfig().archive_window_days * 86400
    start = time.perf_counter()
    tables, rows = [], 0
    for crawl in spec["crawls"]:
        for path in sorted((Path(spec["index"]) / f"crawl={crawl}" / "subset=warc").glob("*.parquet")):
            table = pq.read_table(path, columns=["url", "fetch_time", "fetch_status", "content_mime_type",
                                                 "content_mime_detected", "warc_filename",
                                                 "warc_record_offset", "warc_record_length"])
            rows += table.num_rows
            mime = pc.coalesce(table["content_mime_detected"], table["content_mime_type"])
            keep = pc.and_(pc.equal(table["fetch_status"], 200), pc.is_in(mime, pa.array(HTML)))
            table = table.filter(keep)
            fetch_s = pc.divide(table["fetch_time"].cast(pa.int64()), 1_000_000)
            tables.append(pa.table({"url": table["url"], "fetch_s": fetch_s, "crawl": [crawl] * len(table),
                                    "warc_filename": table["warc_filename"],
                                    "warc_offset": table["warc_record_offset"],
                                    "warc_length": table["warc_record_length"]}))
    index = pa.concat_tables(tables)
    links = pa.concat_tables(pq.read_table(Path(spec["workdir"]) / "links" / f"part-{p:05d}.parquet",
                                           columns=["url", "first_created_utc"])
                             for p in range(spec["partitions"]))
    joined = links.join(index, keys="url", join_type="inner")
    distance = pc.abs(pc.subtract(joined["fetch_s"], joined["first_created_utc"]))
    joined = joined.append_column("distance", distance).filter(pc.less_equal(distance, window_s))
    joined = joined.sort_by([("url", "ascending"), ("distance", "ascending"), ("fetch_s", "ascending")])
    urls = joined["url"].combine_chunks()
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(urls[1:], urls[:-1])]) if len(urls) else urls
    nearest = joined.filter(first)  # the first row of each URL: its nearest capture
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "matched": nearest.num_rows}


def in_child(side: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One run of ``side`` in a fresh interpreter: its figures and its peak RSS."""
    child = subprocess.run([sys.executable, __file__, "--child", side, json.dumps(spec)], cwd=ROOT,
                           capture_output=True, text=True, timeout=3600)
    if child.returncode != 0:
        raise RuntimeError(f"{side} join failed: {child.stderr[-3000:]}")
    return json.loads(child.stdout.splitlines()[-1])


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    scale = 4 if full else 1
    with tempfile.TemporaryDirectory() as folder:
        spec = build(Path(folder), scale)

        def rate(side: str) -> float:
            result = in_child(side, spec)
            return result["rows"] / result["seconds"]

        def memory(side: str) -> float:
            return in_child(side, spec)["peak_rss_bytes"] / MIB

        yield [
            Measure(f"archive: Common Crawl index join, scale {scale}", "index rows/s",
                    lambda: rate("ours"), lambda: rate("baseline"), "pyarrow in-memory exact-URL join",
                    goal=None, issue=15),
            Measure(f"archive: index join peak memory, scale {scale}", "MiB", lambda: memory("ours"),
                    lambda: memory("baseline"), "pyarrow in-memory exact-URL join", goal=None,
                    higher_is_better=False, issue=15),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 4],
                        help="index and links sizes, in units of ~250,000 captures and 19,500 links")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side per scale (the best kept)")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from tests.cc_index import peak_rss_bytes

        side, spec = args.child
        result = (ours if side == "ours" else baseline)(json.loads(spec))
        print(json.dumps({**result, "peak_rss_bytes": peak_rss_bytes()}))
        return
    for scale in args.scale:
        with tempfile.TemporaryDirectory() as folder:
            spec = build(Path(folder), scale)
            size = sum(p.stat().st_size for p in Path(spec["index"]).rglob("*.parquet"))
            results = {}
            for side in ("ours", "baseline"):
                runs = [in_child(side, spec) for _ in range(args.repeat)]
                results[side] = min(runs, key=lambda r: r["seconds"])
            print(f"scale {scale}: {results['ours']['rows']:,} index rows ({size / MIB:.1f} MiB of Parquet), "
                  f"{spec['links']:,} links, {spec['expected']:,} with a capture in the window")
            for side, name in (("ours", "ours (map + reduce)"), ("baseline", "pyarrow in-memory join")):
                r = results[side]
                print(f"  {name:24s} {r['rows'] / r['seconds']:12,.0f} index rows/s  {r['seconds']:6.1f} s  "
                      f"peak RSS {r['peak_rss_bytes'] / MIB:7.1f} MiB  matched {r['matched']:,}")
            speed = results["baseline"]["seconds"] / results["ours"]["seconds"]
            memory = results["ours"]["peak_rss_bytes"] / results["baseline"]["peak_rss_bytes"]
            print(f"  ours / baseline: {speed:.2f}x the speed, {memory:.2f}x the memory")


if __name__ == "__main__":
    main()
