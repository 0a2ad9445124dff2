"""The links stage, as map/reduce over host partitions.

map (``links/_map/``, one task per dump file): submissions -> rules -> links, buffered up to
    ``links.map_buffer_rows`` and written as runs sorted by (host, url), one file per partition.
reduce (``links/``, one task per partition): a k-way merge of that partition's sorted runs,
    aggregated per URL into ``part-NNNNN.parquet``: one row per normalized URL, grouped by host.

Memory per task is bounded by configuration: the map buffer, and in the reduce one small batch
per run plus one URL's provenance at a time.
"""

from __future__ import annotations

import glob
import heapq
import itertools
import json
import logging
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from model.base.schema import to_dict
from pipeline.config import LinksConfig, PushshiftSourceConfig, RedditSourceConfig
from pipeline.links.dumps import DumpReadError, decode_line, iter_blocks, iter_lines
from pipeline.links.rules import Link, Rules, as_int, partition_of
from pipeline.parquet_io import iter_batches, parquet_writer, write_table
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, read_json, require_complete

log = logging.getLogger("webtext.links")

# A run row: sorted as a tuple, so the key (host, url) comes first and ties break deterministically.
RUN_SCHEMA = pa.schema([
    ("host", pa.string()), ("url", pa.string()), ("created_utc", pa.int64()),
    ("submission_id", pa.string()), ("raw_url", pa.string()), ("subreddit", pa.string()),
    ("score", pa.int64()),
])
LINKS_SCHEMA = pa.schema([
    ("url", pa.string()), ("raw_url", pa.string()), ("host", pa.string()),
    ("n_submissions", pa.int64()), ("score_sum", pa.int64()), ("score_max", pa.int64()),
    ("subreddits", pa.list_(pa.string())), ("first_created_utc", pa.int64()),
    ("submission_ids", pa.list_(pa.string())),
])
MERGE_BATCH_ROWS = 1024  # rows read at a time from each run in the reduce
TOP_HOSTS = 20  # hosts with the most URLs, reported in stats.json for the crawl's time floor


def _month(created: int, cache: dict[int, str]) -> str:
    day = created // 86400
    month = cache.get(day)
    if month is None:
        month = cache[day] = time.strftime("%Y-%m", time.gmtime(day * 86400))
    return month


def require_links(workdir: Path, partitions: int, who: str) -> None:
    """Raise ``StageError`` unless the links are complete and were made with ``partitions``
    (the later stages' task count and file names follow from it)."""
    links = StagePaths(workdir, "links")
    if not links.meta.exists():
        raise StageError(f"{who}: no links in {links.root}; run the links stage first")
    require_complete(links)
    made = read_json(links.meta)["tasks"]
    if made != partitions:
        raise StageError(f"{who}: {links.root} has {made} partitions but links.partitions={partitions}; "
                         "use the value the links were made with")


class LinksMapStage(Stage):
    name = "links_map"

    @property
    def conf(self) -> LinksConfig:
        return self.cfg.links

    def input_files(self) -> list[Path]:
        """The dumps to read, in a fixed order: one map task each."""
        source = self.cfg.source
        if isinstance(source, PushshiftSourceConfig):
            patterns = source.files
        elif isinstance(source, RedditSourceConfig):
            patterns = [str(self.workdir / source.archive / "*" / "*.jsonl.zst")]
        else:
            raise StageError(f"links: no reader for source {source.name!r}")
        files = {Path(p).resolve() for pattern in patterns for p in glob.glob(pattern)}
        return sorted(files, key=lambda p: (p.name, str(p)))

    @property
    def num_tasks(self) -> int:
        return len(self.input_files())

    def stage_config(self) -> dict[str, Any]:
        inputs = [{"path": str(p), "bytes": p.stat().st_size} for p in self.input_files()]
        return {"links": to_dict(self.conf), "inputs": inputs}

    def setup(self) -> None:
        if isinstance(self.cfg.source, RedditSourceConfig):
            self._collect_reddit()

    def _collect_reddit(self) -> None:
        from pipeline.links.reddit import collect

        archive = self.workdir / self.cfg.source.archive
        counts = collect(self.cfg.source, archive, log)
        log.info("reddit: %s", counts)
        if self.paths.meta.exists() and read_json(self.paths.meta)["config"] != self.stage_config():
            # The archive grew: links are a pure function of it and cheap, so they are rebuilt.
            log.info("reddit archive changed since links were made: rebuilding links/")
            shutil.rmtree(StagePaths(self.workdir, "links").root)

    def check_inputs(self) -> None:
        if self.input_files():
            return
        source = self.cfg.source
        if isinstance(source, PushshiftSourceConfig):
            raise StageError(f"links: no submission dump matches source.files={source.files}; give "
                             "paths or globs, e.g. source.files='[/data/RS_2017-*.zst]'")
        raise StageError(f"links: the Reddit archive {self.workdir / source.archive} holds no "
                         "submissions yet")

    def run_task(self, ctx: TaskContext) -> None:
        path = self.input_files()[ctx.index]
        ctx.logger.info("reading %s", path)
        rules, months, month_of_day = Rules(self.conf), Counter[tuple[str, str]](), dict[int, str]()
        buffers: list[list[tuple]] = [[] for _ in range(self.conf.partitions)]
        held, runs = 0, 0
        lines = iter_lines(iter_blocks(path, self.conf.read_bytes))
        try:
            for line in ctx.progress(lines, None, "lines"):
                result = self._one_line(line, rules, months, month_of_day, ctx)
                if result is None:
                    continue
                buffers[partition_of(result.host, self.conf.partitions)].append(
                    (result.host, result.url, result.created_utc, result.submission_id,
                     result.raw_url, result.subreddit, result.score))
                held += 1
                if held >= self.conf.map_buffer_rows:
                    self._write_runs(ctx, buffers, runs)
                    held, runs = 0, runs + 1
        except DumpReadError as err:
            ctx.count("dump_read_error")
            ctx.logger.error("stopped reading part-way: %s", err)
        self._write_runs(ctx, buffers, runs)
        for (month, field), n in sorted(months.items()):
            ctx.add(f"month.{month}.{field}", n)

    def _one_line(self, line: bytes, rules: Rules, months: Counter[tuple[str, str]],
                  month_of_day: dict[int, str], ctx: TaskContext) -> Link | None:
        """Count one dump line into the month report and the funnel; the link it gives, if any.

        A line that starts with NUL bytes (RS_2011-01 has one) holds whole JSON after them: it is
        read without them and counted under its own reason, the repair as a metric beside the
        funnel (``repaired_nul_prefix``), so each line stays under exactly one count.
        """
        if line[:1] == b"\x00":
            line = line.lstrip(b"\x00")
            if line.strip():
                ctx.add("repaired_nul_prefix", 1)
        if not line.strip():
            ctx.count("empty_line")
            return None
        sub = decode_line(line)
        if isinstance(sub, str):
            ctx.count(sub)
            return None
        created = as_int(sub.created_utc)
        month = _month(created, month_of_day) if created is not None and created >= 0 else "unknown"
        months[month, "submissions"] += 1
        if isinstance(sub.url, str) and sub.url and sub.is_self is not True:
            months[month, "link_posts"] += 1
            score = as_int(sub.score)
            if score is not None and score >= self.conf.min_score:
                months[month, "score_ge_min"] += 1
        result = rules.link_or_reason(sub)
        if isinstance(result, str):
            ctx.count(result)
            return None
        ctx.count("kept")
        months[month, "kept"] += 1
        return result

    def _write_runs(self, ctx: TaskContext, buffers: list[list[tuple]], run: int) -> None:
        for part, rows in enumerate(buffers):
            if not rows:
                continue
            rows.sort()
            columns = zip(*rows, strict=True)
            arrays = [pa.array(c, type=f.type) for c, f in zip(columns, RUN_SCHEMA, strict=True)]
            table = pa.Table.from_arrays(arrays, schema=RUN_SCHEMA)
            write_table(table, ctx.output(f"p{part:05d}/t{ctx.index:05d}_r{run:04d}.parquet"))
            rows.clear()


class LinksReduceStage(Stage):
    name = "links"

    @property
    def conf(self) -> LinksConfig:
        return self.cfg.links

    @property
    def map_paths(self) -> StagePaths:
        return StagePaths(self.workdir, LinksMapStage.name)

    @property
    def num_tasks(self) -> int:
        return self.conf.partitions

    def stage_config(self) -> LinksConfig:
        return self.conf

    def check_inputs(self) -> None:
        if not self.map_paths.meta.exists():
            raise StageError(f"links: the map pass has not run in {self.map_paths.root}")
        require_complete(self.map_paths)

    def run_task(self, ctx: TaskContext) -> None:
        runs = sorted(glob.glob(str(self.map_paths.root / f"p{ctx.index:05d}" / "*.parquet")))
        ctx.logger.info("merging %d sorted runs", len(runs))
        merged = heapq.merge(*(_read_run(Path(r)) for r in runs))
        rows: list[dict[str, Any]] = []
        hosts = 0
        largest: list[tuple[int, str]] = []  # the TOP_HOSTS hosts with most URLs (a min-heap)
        with parquet_writer(ctx.output(f"part-{ctx.index:05d}.parquet"), LINKS_SCHEMA,
                            compression="zstd") as writer:
            for host, by_host in itertools.groupby(merged, key=lambda r: r[0]):
                hosts += 1
                urls = 0
                for url, group in itertools.groupby(by_host, key=lambda r: r[1]):
                    row = self._aggregate(ctx, host, url, group)
                    if row is not None:
                        rows.append(row)
                        urls += 1
                    if len(rows) >= self.conf.row_group_rows:
                        writer.write_table(pa.Table.from_pylist(rows, schema=LINKS_SCHEMA))
                        rows.clear()
                if urls:
                    heapq.heappush(largest, (urls, host))
                    if len(largest) > TOP_HOSTS:
                        heapq.heappop(largest)
            writer.write_table(pa.Table.from_pylist(rows, schema=LINKS_SCHEMA))
        ctx.add("hosts", hosts)
        ranked = sorted(largest, key=lambda h: (-h[0], h[1]))
        top = {host: urls for urls, host in ranked}
        ctx.output(f"_hosts/part-{ctx.index:05d}.json").write_text(json.dumps(top))

    def _aggregate(self, ctx: TaskContext, host: str, url: str, group: Iterator[tuple]) -> dict | None:
        """One URL's provenance from its submissions (sorted by created_utc, then id)."""
        seen: dict[str, tuple] = {}
        for row in group:
            _, _, created, sid, raw, subreddit, score = row
            if sid in seen:  # the same submission from two dumps (RS and RS_v2, or two snapshots)
                ctx.count("duplicate_submission")
                if score > seen[sid][6]:
                    seen[sid] = row
                continue
            seen[sid] = row
        subs = list(seen.values())
        scores = [r[6] for r in subs]
        if self.conf.score_rule == "sum_per_url" and sum(scores) < self.conf.min_score:
            ctx.count("url_score_below_min")
            return None
        ctx.count("kept")
        ctx.add("submissions", len(subs))
        return {
            "url": url, "raw_url": subs[0][4], "host": host, "n_submissions": len(subs),
            "score_sum": sum(scores), "score_max": max(scores),
            "subreddits": sorted({r[5] for r in subs if r[5]}), "first_created_utc": subs[0][2],
            "submission_ids": [r[3] for r in subs],
        }

    def summarize(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Add the map pass's funnel and the per-month report (with stale-score flags)."""
        mapped = read_json(self.map_paths.stats) if self.map_paths.stats.exists() else {}
        months = month_report(mapped.get("metrics", {}), self.conf)
        flagged = [m for m, row in months.items() if row["flagged"]]
        if flagged:
            log.warning("links: months where the share of link posts with score >= %d collapses "
                        "(stale Pushshift scores?): %s", self.conf.min_score, ", ".join(flagged))
        top = largest_hosts(self.paths.root)
        delay = self.cfg.fetch.per_host_delay_s
        host, urls = next(iter(top.items()), ("", 0))
        floor = urls * delay
        if top:
            log.info("links: the largest host, %s, has %s URLs: at fetch.per_host_delay_s=%g the crawl "
                     "takes at least %.1f h, however many tasks run", host, f"{urls:,}", delay, floor / 3600)
        return {**stats, "submissions": mapped.get("counts", {}), "months": months,
                "flagged_months": flagged, "top_hosts": [[h, n] for h, n in top.items()],  # ranked
                "crawl_floor_s": floor}


def largest_hosts(root: Path, top: int | None = None) -> dict[str, int]:
    """The hosts with the most URLs over all partitions, most first: the politeness delay serializes
    each host's requests, so the largest one sets a floor under the crawl's time."""
    merged: dict[str, int] = {}
    for path in sorted(root.glob("_hosts/part-*.json")):
        merged.update(json.loads(path.read_text()))  # a host lives in one partition
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:top or TOP_HOSTS])


def _read_run(path: Path) -> Iterator[tuple]:
    """The rows of one sorted run, a small batch at a time."""
    for batch in iter_batches(path, batch_size=MERGE_BATCH_ROWS):
        yield from zip(*(batch.column(i).to_pylist() for i in range(batch.num_columns)), strict=True)


def month_report(metrics: dict[str, float], cfg: LinksConfig) -> dict[str, dict[str, Any]]:
    """Per month: submissions, link posts, share with score >= min_score, kept; and a flag.

    Pushshift captured scores at ingest time, so some months carry scores of posts a few seconds
    old and almost none reach the bar. A month is flagged when its share falls below
    ``month_collapse_ratio`` x the median share of the months with enough link posts.
    """
    months: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if key.startswith("month."):
            _, month, field = key.split(".")
            months.setdefault(month, {"submissions": 0, "link_posts": 0, "score_ge_min": 0, "kept": 0})
            months[month][field] = int(value)
    judged = [m for m, row in months.items() if row["link_posts"] >= cfg.month_min_link_posts]
    for row in months.values():
        posts = row["link_posts"]
        row["share_score_ge_min"] = round(row["score_ge_min"] / posts, 4) if posts else None
    median = statistics.median(months[m]["share_score_ge_min"] for m in judged) if judged else None
    for month, row in months.items():
        row["flagged"] = bool(median and month in judged
                              and row["share_score_ge_min"] < cfg.month_collapse_ratio * median)
    return dict(sorted(months.items()))
