"""The fetch stage: one task per links partition, so one task owns every URL of its hosts.

Outputs: ``fetch/warc/NNNNN_W_KKK.warc.gz`` (task, writer thread, file: ``warc.WarcWriter``; response
and request records, redirect hops included) and ``fetch/index/NNNNN.parquet`` (one row per input
URL: its outcome and WARC pointer).

A task survives being killed: outcomes go to a journal (``fetch/_state/journal/NNNNN.jsonl``)
in batches, each batch only after the WARC records it points to were flushed. A rerun reads the
journal, cuts every WARC file back to the end of the last record the journal accounts for (so no
truncated or unaccounted record stays behind), and fetches only the URLs the journal lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from tqdm import tqdm

from pipeline.config import FetchConfig
from pipeline.fetch.archive import archives_for
from pipeline.fetch.crawler import Crawler, Item, Outcome
from pipeline.fetch.warc import WarcWriter, cut_back
from pipeline.links.stage import require_links
from pipeline.parquet_io import parquet_writer, read_table
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, require_complete, writing

INDEX_SCHEMA = pa.schema([
    ("ord", pa.int64()), ("url", pa.string()), ("final_url", pa.string()), ("status", pa.int32()),
    ("content_type", pa.string()), ("bytes", pa.int64()), ("reason", pa.string()),
    ("redirects", pa.list_(pa.string())), ("attempts", pa.int32()), ("warc_file", pa.string()),
    ("warc_offset", pa.int64()), ("warc_length", pa.int64()), ("warc_end", pa.int64()),
    ("fetched_at", pa.float64()), ("elapsed_s", pa.float64()), ("source", pa.string()),
    ("archived_at", pa.float64()), ("archive_url", pa.string()), ("archive_id", pa.string()),
    ("live_reason", pa.string()),
])


INDEX_ROWS_PER_GROUP = 10_000  # rows of the fetch index written at a time


class Journal:
    """Outcomes of a task so far, written in batches after the WARC records they point to.

    After a failed write (a full disk) nothing more is written: the next attempt cuts back the
    part of a line it may have left (``cut_journal``).
    """

    def __init__(self, path: Path, warc: WarcWriter, flush_every: int) -> None:
        self.path, self.warc, self.flush_every = path, warc, flush_every
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "ab", buffering=0)  # unbuffered: nothing of a failed write lingers
        self.pending: list[bytes] = []
        self.failed: BaseException | None = None

    def add(self, outcome: Outcome) -> None:
        self.pending.append(orjson.dumps(outcome.row()) + b"\n")
        if len(self.pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """WARC first, then the journal lines: a line on disk never points past the WARC on disk."""
        if not self.pending:
            return
        if self.failed is not None:
            raise self.failed
        try:
            self.warc.flush()
            with writing(self.path):
                data = memoryview(b"".join(self.pending))
                while data:  # a write to a filling disk may write part of its bytes
                    data = data[self.file.write(data):]
                os.fsync(self.file.fileno())
        except BaseException as err:
            self.failed = err
            raise
        self.pending.clear()

    def close(self) -> None:
        try:
            if self.failed is None:
                self.flush()
        finally:
            self.file.close()


def cut_journal(path: Path) -> None:
    """Cut a journal back to its last whole line (a failed or killed write may leave part of one)."""
    if path.exists():
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            os.truncate(path, data.rfind(b"\n") + 1)


def journal_offsets(path: Path, expected: int) -> array:
    """Where each input position's outcome starts in a journal: ``offsets[ord]``, -1 where it has
    none; the last line of an ``ord`` wins, and a line cut by a kill is ignored. Eight bytes per
    URL, so the index can be written in the links' order without holding the outcomes."""
    offsets = array("q", [-1]) * expected
    at = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                ord_ = orjson.loads(line)["ord"]
            except orjson.JSONDecodeError:
                ord_ = None  # empty, or the last line, cut short
            if ord_ is not None and 0 <= ord_ < expected:
                offsets[ord_] = at
            at += len(line)
    return offsets


def read_journal(path: Path) -> dict[int, dict[str, Any]]:
    """The outcomes a journal holds, by input position; a line cut by a kill is ignored."""
    rows: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for line in path.read_bytes().split(b"\n"):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # empty, or the last line, cut short
        rows[row["ord"]] = row
    return rows


class FetchStage(Stage):
    name = "fetch"
    resumes_within_task = True

    @property
    def conf(self) -> FetchConfig:
        return self.cfg.fetch

    @property
    def links(self) -> StagePaths:
        return StagePaths(self.workdir, "links")

    @property
    def num_tasks(self) -> int:
        return self.cfg.links.partitions

    def stage_config(self) -> FetchConfig:
        return self.conf

    def check_inputs(self) -> None:
        require_links(self.workdir, self.num_tasks, "fetch")
        if self.conf.commoncrawl_join():
            join = StagePaths(self.workdir, "fetch_ccindex")
            if not join.meta.exists():
                raise StageError(f"fetch: fetch.commoncrawl_index is set but {join.root} holds no join of "
                                 "the links with it; run the fetch stage whole (stages=[...,fetch,...])")
            require_complete(join)

    def journal_path(self, index: int) -> Path:
        return self.paths.state / "journal" / f"{index:05d}.jsonl"

    def run_task(self, ctx: TaskContext) -> None:
        urls = read_table(self.links.root / f"part-{ctx.index:05d}.parquet",
                          columns=["url", "host", "first_created_utc"])
        journal_path = self.journal_path(ctx.index)
        done = self._resume(ctx, journal_path)
        warc = WarcWriter(ctx.tmp / "warc", f"{ctx.index:05d}", self.conf.warc_max_bytes,
                          self.conf.warc_writers)
        journal = Journal(journal_path, warc, self.conf.flush_every)
        expected = urls.num_rows
        todo = [(i, u, h, c) for i, (u, h, c) in enumerate(zip(
                    urls.column("url").to_pylist(), urls.column("host").to_pylist(),
                    urls.column("first_created_utc").to_pylist(), strict=True))
                if i not in done]
        ctx.logger.info("%d URLs, %d already fetched, %d to go", expected, len(done), len(todo))
        hosts = host_order(todo)  # what the task holds while it crawls: its URLs to go, by host
        del urls, todo, done
        pa.default_memory_pool().release_unused()  # the links part's decoded columns, kept by the allocator
        largest = {ord_ for ord_, _, _ in hosts[0]} if hosts else set()  # its URLs set the floor
        progress = _Progress(ctx, expected - sum(map(len, hosts)), expected, largest,
                             self.conf.per_host_delay_s)

        def on_outcome(outcome: Outcome) -> None:
            journal.add(outcome)
            progress.update(outcome)

        captures = None
        if self.conf.commoncrawl_join():
            from pipeline.fetch.ccindex import read_captures

            captures = read_captures(self.workdir, ctx.index)

        async def crawl() -> None:
            archives = archives_for(self.conf, self.paths.state / "archive_rate", captures)
            async with Crawler(self.conf, warc, on_outcome, archives) as crawler:
                try:
                    await crawler.crawl(_one_host_at_a_time(hosts))
                finally:
                    for name, n in crawler.throttled.items():
                        ctx.add(f"throttled_{name}", n)

        try:
            asyncio.run(crawl())
        finally:
            with contextlib.ExitStack() as closing:  # each closed, whatever the others raise
                closing.callback(progress.close)
                closing.callback(warc.close)
                closing.callback(journal.close)
        self._write_index(ctx, journal_path, expected)

    def task_committed(self, index: int) -> None:
        """The journal goes once the outputs are committed (a commit that fails, on a full disk,
        is undone: the next attempt finds the journal and the WARC files and fetches nothing)."""
        self.journal_path(index).unlink(missing_ok=True)

    def _resume(self, ctx: TaskContext, journal_path: Path) -> dict[int, dict[str, Any]]:
        """The outcomes of a killed attempt, its WARC files cut back to match; or a fresh start."""
        cut_journal(journal_path)
        done = read_journal(journal_path)
        if not done:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
            ctx.tmp.mkdir(parents=True)
            journal_path.unlink(missing_ok=True)
            return done
        folder = ctx.tmp / "warc"
        sizes = {p.name: p.stat().st_size for p in folder.glob("*.warc.gz")} if folder.is_dir() else {}
        # A line pointing past its file's end (cannot happen when flushes kept their order) is
        # dropped and its URL fetched again, rather than trusted.
        done = {k: r for k, r in done.items()
                if r["warc_file"] is None or r["warc_end"] <= sizes.get(r["warc_file"], -1)}
        ends: dict[str, int] = {}
        for row in done.values():
            if row["warc_file"] is not None:
                ends[row["warc_file"]] = max(ends.get(row["warc_file"], 0), row["warc_end"])
        cut_back(folder, f"{ctx.index:05d}", ends)
        ctx.logger.info("resuming: %d outcomes journaled; WARC files cut back to %s", len(done), ends)
        return done

    def _write_index(self, ctx: TaskContext, journal: Path, expected: int) -> None:
        """The index, one row per input URL in the links' order, read from the journal a row group
        at a time (the journal is in the order outcomes came)."""
        offsets = journal_offsets(journal, expected)
        missing = offsets.count(-1)
        if missing:
            raise StageError(f"fetch task {ctx.index}: {expected} URLs in, {expected - missing} outcomes out")
        path = ctx.output(f"index/{ctx.index:05d}.parquet")
        with open(journal, "rb") as f, parquet_writer(path, INDEX_SCHEMA, compression="zstd") as writer:
            for start in range(0, expected, INDEX_ROWS_PER_GROUP):
                rows = []
                for at in offsets[start:start + INDEX_ROWS_PER_GROUP]:
                    f.seek(at)
                    rows.append(orjson.loads(f.readline()))
                writer.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA))
                self._count(ctx, rows)
            if expected == 0:
                writer.write_table(INDEX_SCHEMA.empty_table())
        for warc in sorted((ctx.tmp / "warc").glob("*.warc.gz")):  # committed as warc/<name>
            ctx.add("warc_bytes", warc.stat().st_size)

    @staticmethod
    def _count(ctx: TaskContext, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            ctx.count(row["reason"] or "kept")
            ctx.add("bytes", row["bytes"])
            ctx.add("redirects", len(row["redirects"]))
            if row["reason"] is None:
                ctx.add(f"pages_{row.get('source') or 'live'}", 1)  # kept pages by source
            if row.get("live_reason"):
                ctx.add(f"dead_{row['live_reason']}", 1)  # dead live links, whatever the archives gave


def host_order(todo: list[tuple[int, str, str, int | None]]) -> list[list[Item]]:
    """The URLs to fetch with their submission times, a host at a time, the host with the most URLs
    first (ties by name).

    A host's URLs are fetched one after another at least ``per_host_delay_s`` apart, so the largest
    host sets the task's floor; started first, it is busy from the task's start to its end while the
    other workers go through the small hosts beside it. (In first-seen order it could start last.)
    """
    groups: dict[str, list[Item]] = {}
    for ord_, url, host, created in todo:
        groups.setdefault(host, []).append((ord_, url, created))
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [urls for _, urls in ranked]


async def _one_host_at_a_time(hosts: list[list[Item]]) -> AsyncIterator[list[Item]]:
    """``hosts`` in order, each dropped from the list as it is handed out (its URLs then live only
    as long as the crawler works on them)."""
    hosts.reverse()
    while hosts:
        yield hosts.pop()


class _Progress:
    """A progress bar on a terminal (URLs, pages/s, MB, errors); in logs, a line every 10 seconds."""

    def __init__(self, ctx: TaskContext, already: int, total: int, largest: set[int] | None = None,
                 delay_s: float = 0.0) -> None:
        self.ctx, self.start, self.last = ctx, time.monotonic(), time.monotonic()
        # the largest host's URLs to go: the task needs at least these x the delay, whatever its rate
        self.largest, self.delay_s = largest if largest is not None else set(), delay_s
        self.done, self.kept, self.bytes, self.errors, self.total = already, 0, 0, 0, total
        self.bar = tqdm(total=total, initial=already, desc=f"fetch {ctx.index:05d}", unit="url",
                        disable=None, leave=False, mininterval=0.5)

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        if outcome.reason is None:
            self.kept, self.bytes = self.kept + 1, self.bytes + outcome.bytes
        else:
            self.errors += 1
        self.bar.update()
        if outcome.ord in self.largest:
            self.largest.discard(outcome.ord)
        self.ctx.report(self.done, self.total, "URLs", at_least_s=len(self.largest) * self.delay_s)
        now = time.monotonic()
        if now - self.last >= 10:
            self.last = now
            rate = (self.kept + self.errors) / (now - self.start)
            self.bar.set_postfix(pages=self.kept, MB=round(self.bytes / 1e6, 1), errors=self.errors)
            self.ctx.logger.info("%d URLs done (%.1f/s): %d pages, %.1f MB, %d not kept",
                                 self.done, rate, self.kept, self.bytes / 1e6, self.errors)

    def close(self) -> None:
        self.ctx.report(self.done, self.total, "URLs", final=True)
        self.bar.close()
