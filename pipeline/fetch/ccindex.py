"""Dead links recovered from Common Crawl: the links joined with its columnar URL index.

Per-URL CDX lookups do not scale to millions of links; the columnar index (Parquet, one row per
capture: ``crawl=<name>/subset=warc/*.parquet`` under ``cc-index/table/cc-main/warc/``) is joined
with the links instead, as map/reduce over the links' host partitions:

map (``fetch/_ccindex/_map/``, ``fetch.commoncrawl_join_tasks`` tasks, index files dealt out
    ``files[task::tasks]``): each file is streamed a batch at a time; rows are kept when the
    capture is a 200 of a wanted media type and its host passes a Bloom filter of the links' hosts
    (tested once per distinct host of a batch). Kept rows are keyed and buffered up to
    ``fetch.commoncrawl_join_buffer_rows``, then written as runs sorted by key, one file per links
    partition: ``p<partition>/t<task>_r<run>.parquet``.
reduce (``fetch/_ccindex/``, one task per links partition): a streaming sort-merge join of the
    partition's links with the k-way merge of its runs. Each link takes the capture nearest its
    first submission within ``fetch.archive_window_days``; ``part-<partition>.parquet`` holds one
    row per link that has one (``CAPTURE_SCHEMA``), sorted by the link's row number (``ord``).

The join key is ``match_key``: the host without ``www.`` and the URL after its host, so the
scheme and a ``www.`` do not matter, as in the SURT keys of the archives' own CDX lookups
(``http://www.example.com/a`` is a capture of the link ``https://example.com/a``). Both sides are
normalized by ``pipeline.links.rules.normalize_url`` first (tracking parameters, default ports).

Memory per task is bounded by configuration: in the map, the Bloom filter, one batch and the
buffer; in the reduce, one small batch per merged run (at most ``MERGE_FAN_IN`` runs at once: more
are merged in rounds first), four small batches of links, and one URL's captures.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import heapq
import itertools
import math
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.base.schema import diff
from pipeline.config import FetchConfig, PipelineConfig
from pipeline.fetch.archive import nearest
from pipeline.links.rules import UrlError, normalize_url, partition_of
from pipeline.links.stage import require_links
from pipeline.parquet_io import iter_batches, parquet_writer, read_metadata, read_table, write_table
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, read_json, require_complete

# One row per link with a capture in the window: where its WARC record lies in Common Crawl.
CAPTURE_SCHEMA = pa.schema([
    ("ord", pa.int64()), ("url", pa.string()), ("captured_at", pa.int64()), ("crawl", pa.string()),
    ("warc_filename", pa.string()), ("warc_offset", pa.int64()), ("warc_length", pa.int64()),
])
# A run row, in the order its tuples sort by: the join key first, then the capture, so that ties
# break the same way in Arrow's sort (map) and in Python's tuple comparison (reduce).
RUN_SCHEMA = pa.schema([
    ("host_key", pa.string()), ("url_key", pa.string()), ("fetch_time", pa.int64()),
    ("warc_filename", pa.string()), ("warc_offset", pa.int64()), ("warc_length", pa.int64()),
    ("crawl", pa.string()),
])
BUFFER_SCHEMA = pa.schema([("partition", pa.int32()), *RUN_SCHEMA])
# The index's columns the join reads; ``content_mime_detected`` (crawls from 2018 on) and ``crawl``
# (some copies) may be missing.
REQUIRED_COLUMNS = ("url", "url_host_name", "fetch_time", "fetch_status", "content_mime_type",
                    "warc_filename", "warc_record_offset", "warc_record_length")
OPTIONAL_COLUMNS = ("content_mime_detected", "crawl")
REMOTE = "remote"
# Index files are read through a buffer of this size per column, so a reader holds a page and
# this much of each column chunk, however large the file's row groups; a remote read (a range
# request) fetches at least this much.
READ_BUFFER_BYTES = 1 << 20
MERGE_BATCH_ROWS = 1024  # rows read at a time from each run (and from the links) in the reduce
# Most runs merged at once; more are merged in rounds first. A run's reader holds a row group
# (read whole) and a decoded batch, about 1.5 MB with the sizes below.
MERGE_FAN_IN = 32
RUN_ROW_GROUP_ROWS = MERGE_BATCH_ROWS
OUTPUT_ROW_GROUP_ROWS = 16_384
LINK_CLASSES = tuple(itertools.product((False, True), (False, True)))  # (www host, https)
_UNIT_PER_S = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


# --- pure functions: keys, hosts, the choice of a capture --------------------------------------------


def normalize_host(name: str | None) -> str | None:
    """A host as the links hold it (lowercase, IDNA punycode, no trailing dot); None if unusable."""
    host = (name or "").strip().lower().rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host or None


def host_key(host: str) -> str:
    """The host a link and a capture are matched under: ``www.`` dropped (as ``partition_of`` does)."""
    return host.removeprefix("www.")


def match_key(url: str, host: str) -> tuple[str, str]:
    """``(host_key, rest)`` of a URL normalized by ``normalize_url`` (which gave ``host``).

    ``rest`` is what follows the host: a port if any, the path and the query. Captures and links
    with equal keys are the same page whatever their scheme or ``www.``.
    """
    after_scheme = url.index("://") + 3
    netloc_host = len(host) + 2 if ":" in host else len(host)  # an IPv6 literal is bracketed
    return host_key(host), url[after_scheme + netloc_host:]


class Capture(NamedTuple):
    """A run row: an index capture under its join key (``RUN_SCHEMA``)."""

    host_key: str
    url_key: str
    fetch_time: int
    warc_filename: str
    warc_offset: int
    warc_length: int
    crawl: str


class LinkRow(NamedTuple):
    """A link of a partition under its join key; ``ord`` is its row number in the links part."""

    host_key: str
    url_key: str
    ord: int
    url: str
    created_utc: int | None
    link_class: int


def choose_capture(created_utc: int | None, captures: Iterable[Capture],
                   window_s: float) -> tuple[Capture | None, str]:
    """The capture of a link, and the counted reason: ``matched``, ``no_capture`` or ``outside_window``.

    The capture nearest the link's first submission within ``window_s`` seconds wins; ties go to the
    earlier capture, then the WARC file name, then the offset. A link without a submission time takes
    the earliest capture.
    """
    captures = list(captures)
    if not captures:
        return None, "no_capture"
    best = nearest(captures, created_utc, window_s, lambda c: (c.fetch_time, c.warc_filename, c.warc_offset))
    return best, "matched" if best is not None else "outside_window"


def join_by_key(links: Iterator[LinkRow], captures: Iterator[Capture]
                ) -> Iterator[tuple[list[LinkRow], list[Capture]]]:
    """The links of each key with the captures of that key; both inputs sorted by (host_key, url_key).

    Captures of keys no link has are passed over; only one key's links and captures are held.
    """
    capture = next(captures, None)
    for key, group in itertools.groupby(links, key=lambda link: link[:2]):
        while capture is not None and capture[:2] < key:
            capture = next(captures, None)
        found = []
        while capture is not None and capture[:2] == key:
            found.append(capture)
            capture = next(captures, None)
        yield list(group), found


class HostFilter:
    """A Bloom filter of host keys: never a false negative, rarely a false positive.

    Positions are ``h1 + i * h2`` (mod the bit count) for ``i < hashes``, from one 128-bit BLAKE2b
    digest per key; every test is over a list of keys, in numpy.
    """

    MAX_HASHES = 8

    def __init__(self, size_bytes: int, expected_keys: int) -> None:
        self.bits = np.zeros(max(1, size_bytes), dtype=np.uint8)
        self.size = self.bits.size * 8
        best = self.size / max(1, expected_keys) * math.log(2)
        self.hashes = min(self.MAX_HASHES, max(1, round(best)))
        self._steps = np.arange(self.hashes, dtype=np.uint64)

    def _positions(self, keys: list[str]) -> np.ndarray:
        digests = b"".join(hashlib.blake2b(k.encode(), digest_size=16).digest() for k in keys)
        h = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
        return (h[:, :1] + self._steps * h[:, 1:]) % np.uint64(self.size)  # (keys, hashes)

    def add(self, keys: list[str]) -> None:
        if keys:
            pos = self._positions(keys).ravel()
            np.bitwise_or.at(self.bits, pos >> 3, (np.uint64(1) << (pos & 7)).astype(np.uint8))

    def contains(self, keys: list[str]) -> np.ndarray:
        """One bool per key."""
        if not keys:
            return np.zeros(0, dtype=bool)
        pos = self._positions(keys)
        return ((self.bits[pos >> 3] >> (pos & 7).astype(np.uint8)) & 1).all(axis=1)

    def false_positive_rate(self) -> float:
        """The chance that a host not added passes, from the share of bits set."""
        filled = int(np.bitwise_count(self.bits).sum(dtype=np.int64)) / self.size
        return filled ** self.hashes


# --- paths and row files ---------------------------------------------------------------------------


def links_part(workdir: Path, partition: int) -> Path:
    return StagePaths(workdir, "links").root / f"part-{partition:05d}.parquet"


def captures_name(partition: int) -> str:
    return f"part-{partition:05d}.parquet"


def captures_path(workdir: Path, partition: int) -> Path:
    """The captures of the links of ``partition`` (the reduce's output for fetch task ``partition``)."""
    return StagePaths(workdir, "fetch_ccindex").root / captures_name(partition)


def run_name(partition: int, task: int, run: int) -> str:
    return f"p{partition:05d}/t{task:05d}_r{run:05d}.parquet"


def run_files(workdir: Path, partition: int) -> list[Path]:
    folder = StagePaths(workdir, "fetch_ccindex_map").root / f"p{partition:05d}"
    return sorted(folder.glob("*.parquet"))


def iter_rows(path: Path, batch_rows: int = MERGE_BATCH_ROWS) -> Iterator[tuple]:
    """The rows of a Parquet file as tuples, a small batch at a time (decoded in this thread: the
    batches are too small to gain from Arrow's threads, whose allocator caches cost memory)."""
    for batch in iter_batches(path, batch_size=batch_rows, use_threads=False):
        yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)


class RowWriter:
    """Rows (tuples in ``schema`` order) to a Parquet file, a row group of ``group_rows`` at a time."""

    def __init__(self, path: Path, schema: pa.Schema, group_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.schema, self.group_rows = schema, group_rows
        self.writer = parquet_writer(path, schema, compression="zstd")
        self.rows: list[tuple] = []

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.group_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            columns = zip(*self.rows, strict=True)
            arrays = [pa.array(c, type=f.type) for c, f in zip(columns, self.schema, strict=True)]
            self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
            self.rows.clear()

    def close(self) -> None:
        self.flush()
        self.writer.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_captures(workdir: Path, index: int) -> dict[int, dict[str, Any]]:
    """ord -> capture row (``CAPTURE_SCHEMA``) for fetch task ``index``; empty without a join."""
    path = captures_path(Path(workdir), index)
    if not path.exists():
        return {}
    return {row["ord"]: row for row in read_table(path).to_pylist()}


# --- the index files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFile:
    crawl: str
    location: str  # a local path, or a URL


def index_files(conf: FetchConfig, fs: Any = None) -> list[IndexFile]:
    """Every index file of the configured crawls, crawl by crawl, each crawl's sorted by name.

    ``fs`` (an fsspec HTTP filesystem) reads ``<data_url>/crawl-data/<crawl>/cc-index-table.paths.gz``
    when the index is ``remote``.
    """
    files: list[IndexFile] = []
    for crawl in conf.commoncrawl_crawls:
        if conf.commoncrawl_index == REMOTE:
            locations = _remote_listing(conf.commoncrawl_data_url, crawl, fs or http_filesystem())
        else:
            locations = _local_listing(Path(conf.commoncrawl_index), crawl)
        files.extend(IndexFile(crawl, location) for location in locations)
    return files


def _local_listing(root: Path, crawl: str) -> list[str]:
    folder = root / f"crawl={crawl}" / "subset=warc"
    if not folder.is_dir():
        raise StageError(f"fetch_ccindex: no index of crawl {crawl} in {root}: {folder} is missing "
                         "(fetch.commoncrawl_index holds crawl=<name>/subset=warc/*.parquet)")
    found = sorted(glob.glob(str(folder / "*.parquet")))
    if not found:
        raise StageError(f"fetch_ccindex: {folder} holds no Parquet files (crawl {crawl})")
    return found


def _remote_listing(data_url: str, crawl: str, fs: Any) -> list[str]:
    base = data_url.rstrip("/")
    url = f"{base}/crawl-data/{crawl}/cc-index-table.paths.gz"
    try:
        text = gzip.decompress(fs.cat_file(url)).decode()
    except FileNotFoundError:
        raise StageError(f"fetch_ccindex: crawl {crawl} has no index listing at {url} (is the "
                         "crawl name right?)") from None
    except (OSError, ValueError) as err:
        raise StageError(f"fetch_ccindex: cannot read the index listing {url} of crawl {crawl}: "
                         f"{err!r}") from None
    paths = sorted(line.strip().lstrip("/") for line in text.splitlines() if "subset=warc" in line)
    if not paths:
        raise StageError(f"fetch_ccindex: the listing {url} names no subset=warc files")
    return [f"{base}/{path}" for path in paths]


def http_filesystem() -> Any:
    import fsspec

    return fsspec.filesystem("http", block_size=READ_BUFFER_BYTES)


@contextlib.contextmanager
def open_index(file: IndexFile, fs: Any) -> Iterator[pq.ParquetFile]:
    """The Parquet file, read through buffers (a remote one with range requests)."""
    with contextlib.ExitStack() as stack:
        source = file.location if fs is None else stack.enter_context(
            fs.open(file.location, "rb", block_size=READ_BUFFER_BYTES))
        yield stack.enter_context(pq.ParquetFile(source, buffer_size=READ_BUFFER_BYTES))


def content_types(conf: FetchConfig) -> list[str]:
    """The media types a capture may have: ``fetch.content_types``, bare and lowercase, sorted."""
    return sorted({t.strip().lower() for t in conf.content_types})


def epoch_seconds(column: pa.Array) -> pa.Array:
    """``fetch_time`` in unix seconds: a timestamp of any unit (INT96 reads as ns), or seconds."""
    if pa.types.is_timestamp(column.type):
        return pc.divide(column.cast(pa.int64()), _UNIT_PER_S[column.type.unit])
    if pa.types.is_integer(column.type):
        return column.cast(pa.int64())
    raise StageError(f"fetch_ccindex: fetch_time of type {column.type} is not a timestamp")


# --- the passes ------------------------------------------------------------------------------------


class _JoinPass(Stage):
    """What both passes share: the links they read, their config, and its checks."""

    @property
    def conf(self) -> FetchConfig:
        return self.cfg.fetch

    def join_config(self) -> dict[str, Any]:
        """What determines the map's runs (the reduce adds the window)."""
        conf, index = self.conf, self.conf.commoncrawl_index
        config = {
            "crawls": list(conf.commoncrawl_crawls),
            "index": index if index in ("", REMOTE) else str(Path(index).resolve()),
            "content_types": content_types(conf),
            "partitions": self.cfg.links.partitions,
            "tracking_params": list(self.cfg.links.tracking_params),
        }
        if index == REMOTE:
            config["data_url"] = conf.commoncrawl_data_url
        return config

    def check_inputs(self) -> None:
        if not self.conf.commoncrawl_index:
            raise StageError(f"{self.name}: fetch.commoncrawl_index is empty: give the folder of "
                             "Common Crawl's columnar index, or 'remote'")
        require_links(self.workdir, self.cfg.links.partitions, self.name)


class CCIndexMapStage(_JoinPass):
    """Index files -> captures of the links' hosts, as runs sorted by key, one file per partition."""

    name = "fetch_ccindex_map"

    @property
    def num_tasks(self) -> int:
        return self.conf.commoncrawl_join_tasks

    def stage_config(self) -> dict[str, Any]:
        return self.join_config()

    def check_inputs(self) -> None:
        super().check_inputs()
        if self.conf.commoncrawl_index != REMOTE:
            index_files(self.conf)  # a missing crawl folder is said once, before any task starts

    def host_filter(self, ctx: TaskContext) -> HostFilter:
        """A Bloom filter of every link's host key, from the ``host`` column of all links parts."""
        parts = [links_part(self.workdir, p) for p in range(self.cfg.links.partitions)]
        rows = sum(read_metadata(p).num_rows for p in parts)
        hosts = HostFilter(int(self.conf.commoncrawl_join_bloom_mib * (1 << 20)), rows)
        for part in parts:
            batches = iter_batches(part, batch_size=65_536, columns=["host"], use_threads=False)
            for batch in batches:
                unique = pc.unique(batch.column(0).drop_null()).to_pylist()
                hosts.add(sorted({host_key(h) for h in unique}))
        rate = hosts.false_positive_rate()
        ctx.logger.info("host filter: %d links, %d hashes, false positive rate %.2g",
                        rows, hosts.hashes, rate)
        return hosts

    def run_task(self, ctx: TaskContext) -> None:
        fs = http_filesystem() if self.conf.commoncrawl_index == REMOTE else None
        files = index_files(self.conf, fs)[ctx.index::ctx.tasks]
        ctx.logger.info("%d index files", len(files))
        join = _MapTask(self, ctx, self.host_filter(ctx) if files else None)
        for file in files:
            ctx.logger.info("reading %s", file.location)
            with open_index(file, fs) as parquet:
                join.read(file, parquet)
            ctx.add("index_files", 1)
        join.write_runs()


class _MapTask:
    """One map task's state: the filters, the buffer of kept rows and the runs written."""

    def __init__(self, stage: CCIndexMapStage, ctx: TaskContext, hosts: HostFilter | None) -> None:
        self.ctx, self.hosts = ctx, hosts
        self.conf = stage.conf
        self.partitions = stage.cfg.links.partitions
        self.tracking = tuple(stage.cfg.links.tracking_params)
        self.types = pa.array(content_types(self.conf), pa.string())
        self.held: list[pa.RecordBatch] = []
        self.held_rows = 0
        self.runs = 0

    def read(self, file: IndexFile, parquet: pq.ParquetFile) -> None:
        names = set(parquet.schema_arrow.names)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise StageError(f"fetch_ccindex: {file.location} has no column {', '.join(missing)}")
        columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in names)]
        crawl = file.crawl
        size = self.conf.commoncrawl_join_batch_rows
        batches = parquet.iter_batches(batch_size=size, columns=columns, use_threads=False)
        for batch in self.ctx.progress(batches, -(-parquet.metadata.num_rows // size), "batches"):
            kept = self.select(batch, crawl)
            if kept is not None and kept.num_rows:
                self.held.append(kept)
                self.held_rows += kept.num_rows
                if self.held_rows >= self.conf.commoncrawl_join_buffer_rows:
                    self.write_runs()

    def _keep(self, batch: pa.RecordBatch, mask: pa.Array, reason: str) -> pa.RecordBatch:
        kept = batch.filter(pc.fill_null(mask, False))
        self.ctx.count(reason, batch.num_rows - kept.num_rows)
        return kept

    def select(self, batch: pa.RecordBatch, crawl: str) -> pa.RecordBatch | None:
        """The batch's rows that may be captures of links, keyed (``BUFFER_SCHEMA``)."""
        ctx = self.ctx
        ctx.add("index_rows", batch.num_rows)
        present = [batch.column(c).is_valid() for c in REQUIRED_COLUMNS]
        batch = self._keep(batch, _all(present), "missing_field")
        batch = self._keep(batch, pc.equal(batch.column("fetch_status"), 200), "status_not_200")
        ctx.add("passed_status", batch.num_rows)
        batch = self._keep(batch, pc.is_in(_media_type(batch), value_set=self.types), "not_html")
        ctx.add("passed_content_type", batch.num_rows)
        batch = self._keep(batch, self._known_hosts(batch.column("url_host_name")), "host_not_in_links")
        ctx.add("passed_hosts", batch.num_rows)
        return self._keyed(batch, crawl) if batch.num_rows else None

    def _known_hosts(self, hosts: pa.Array) -> pa.Array:
        """Per row: the host is (probably) a link's; tested once per distinct host of the batch."""
        encoded = pc.dictionary_encode(hosts)
        keys = [normalize_host(h) for h in encoded.dictionary.to_pylist()]
        usable = [i for i, k in enumerate(keys) if k is not None]
        known = np.zeros(len(keys), dtype=bool)
        known[usable] = self.hosts.contains([host_key(keys[i]) for i in usable])
        return pc.take(pa.array(known), encoded.indices)

    def _keyed(self, batch: pa.RecordBatch, crawl: str) -> pa.RecordBatch:
        """Each row's URL normalized into its join key and links partition; bad URLs counted."""
        rows, host_keys, url_keys, parts = [], [], [], []
        partition: dict[str, int] = {}
        for i, raw in enumerate(batch.column("url").to_pylist()):
            try:
                url, host = normalize_url(raw, self.tracking)
            except UrlError as err:
                self.ctx.count(err.reason)
                continue
            key_host, key_url = match_key(url, host)
            if host not in partition:
                partition[host] = partition_of(host, self.partitions)
            rows.append(i)
            host_keys.append(key_host)
            url_keys.append(key_url)
            parts.append(partition[host])
        self.ctx.count("kept", len(rows))
        taken = batch.take(pa.array(rows, pa.int64()))
        crawls = (pc.fill_null(taken.column("crawl").cast(pa.string()), crawl)
                  if "crawl" in taken.schema.names else pa.array([crawl] * len(rows), pa.string()))
        arrays = [
            pa.array(parts, pa.int32()), pa.array(host_keys, pa.string()), pa.array(url_keys, pa.string()),
            epoch_seconds(taken.column("fetch_time")), taken.column("warc_filename").cast(pa.string()),
            taken.column("warc_record_offset").cast(pa.int64()),
            taken.column("warc_record_length").cast(pa.int64()), crawls,
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=BUFFER_SCHEMA)

    def write_runs(self) -> None:
        """The buffer, sorted by (partition, key, capture), as one run file per partition."""
        if not self.held:
            return
        table = pa.Table.from_batches(self.held, schema=BUFFER_SCHEMA)
        self.held, self.held_rows = [], 0
        table = table.sort_by([(name, "ascending") for name in BUFFER_SCHEMA.names])
        parts = table.column("partition").to_numpy()
        starts = [0, *(np.flatnonzero(np.diff(parts)) + 1).tolist()]
        for start, end in zip(starts, [*starts[1:], len(parts)], strict=True):
            rows = table.slice(start, end - start).drop_columns(["partition"])
            path = self.ctx.output(run_name(int(parts[start]), self.ctx.index, self.runs))
            write_table(rows, path, row_group_size=RUN_ROW_GROUP_ROWS, compression="zstd")
        self.ctx.add("runs", 1)
        self.runs += 1


def _all(masks: list[pa.Array]) -> pa.Array:
    result = masks[0]
    for mask in masks[1:]:
        result = pc.and_(result, mask)
    return result


def _media_type(batch: pa.RecordBatch) -> pa.Array:
    """The detected media type where the index has one, else the declared one; lowercase, bare."""
    kind = batch.column("content_mime_type")
    if "content_mime_detected" in batch.schema.names:
        detected = batch.column("content_mime_detected")
        kind = pc.if_else(pc.fill_null(pc.not_equal(detected, ""), False), detected, kind)
    bare = pc.replace_substring_regex(kind.cast(pa.string()), pattern=";.*$", replacement="")
    return pc.utf8_lower(pc.utf8_trim_whitespace(bare))


class CCIndexReduceStage(_JoinPass):
    """A links partition joined with its index runs: the nearest capture of each link."""

    name = "fetch_ccindex"

    @property
    def map_paths(self) -> StagePaths:
        return StagePaths(self.workdir, CCIndexMapStage.name)

    @property
    def num_tasks(self) -> int:
        return self.cfg.links.partitions

    def stage_config(self) -> dict[str, Any]:
        return {**self.join_config(), "window_days": self.conf.archive_window_days}

    def check_inputs(self) -> None:
        super().check_inputs()
        if not self.map_paths.meta.exists():
            raise StageError(f"{self.name}: the map pass has not run in {self.map_paths.root}; run "
                             f"{CCIndexMapStage.name} first")
        require_complete(self.map_paths)
        changes = diff(read_json(self.map_paths.meta)["config"], self.join_config())
        if changes:
            raise StageError(f"{self.name}: the runs in {self.map_paths.root} were made with another "
                             f"config ({'; '.join(changes)}); rerun {CCIndexMapStage.name} with this one")

    def run_task(self, ctx: TaskContext) -> None:
        links = links_part(self.workdir, ctx.index)
        if not links.exists():
            raise StageError(f"{self.name}: {links} is missing")
        scratch = ctx.tmp / "_scratch"  # removed before the task's outputs are committed
        runs = merge_down(run_files(self.workdir, ctx.index), scratch, ctx)
        captures = heapq.merge(*(map(Capture._make, iter_rows(r)) for r in runs))
        by_key = heapq.merge(*(link_rows(links, www, https) for www, https in LINK_CLASSES))
        total = read_metadata(links).num_rows
        window_s = self.conf.archive_window_days * 86400
        # A link class's links come in row order, so each class's captures are written sorted by ord.
        classes = [scratch / f"class{c}.parquet" for c in range(len(LINK_CLASSES))]
        writers = [RowWriter(path, CAPTURE_SCHEMA, RUN_ROW_GROUP_ROWS) for path in classes]
        try:
            for group, found in join_by_key(ctx.progress(by_key, total, "links"), captures):
                ctx.add("captures_of_links", len(found))
                for link in group:
                    capture, reason = choose_capture(link.created_utc, found, window_s)
                    ctx.count(reason)
                    if capture is not None:
                        writers[link.link_class].add(
                            (link.ord, link.url, capture.fetch_time, capture.crawl,
                             capture.warc_filename, capture.warc_offset, capture.warc_length))
        finally:
            for writer in writers:
                writer.close()
        with RowWriter(ctx.output(captures_name(ctx.index)), CAPTURE_SCHEMA, OUTPUT_ROW_GROUP_ROWS) as out:
            for row in heapq.merge(*(iter_rows(path) for path in classes)):
                out.add(row)
        shutil.rmtree(scratch)


def link_rows(path: Path, www: bool, https: bool) -> Iterator[LinkRow]:
    """The links of one class (``www.`` host or not, https or http) in row order.

    A links part is sorted by (host, url); within a class the scheme and the ``www.`` are the same
    for every row, so row order is also (host_key, url_key) order, and the four classes merge into
    key order without re-sorting the part.
    """
    link_class = LINK_CLASSES.index((www, https))
    first = 0
    columns = ["url", "host", "first_created_utc"]
    batches = iter_batches(path, batch_size=MERGE_BATCH_ROWS, columns=columns, use_threads=False)
    for batch in batches:
        urls, hosts = batch.column("url"), batch.column("host")
        mask = pc.and_(pc.equal(pc.starts_with(hosts, "www."), www),
                       pc.equal(pc.starts_with(urls, "https:"), https))
        rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
        picked = batch.take(pa.array(rows, pa.int64()))
        for row, url, host, created in zip(
                rows.tolist(), *(picked.column(c).to_pylist() for c in columns), strict=True):
            yield LinkRow(*match_key(url, host), first + row, url, created, link_class)
        first += batch.num_rows


def merge_down(runs: list[Path], scratch: Path, ctx: TaskContext) -> list[Path]:
    """At most ``MERGE_FAN_IN`` runs: more are merged, ``MERGE_FAN_IN`` at a time, into scratch runs."""
    level = 0
    while len(runs) > MERGE_FAN_IN:
        merged = []
        for start in range(0, len(runs), MERGE_FAN_IN):
            group = runs[start:start + MERGE_FAN_IN]
            path = scratch / f"merge{level:02d}_{start // MERGE_FAN_IN:05d}.parquet"
            with RowWriter(path, RUN_SCHEMA, RUN_ROW_GROUP_ROWS) as writer:
                for row in heapq.merge(*(iter_rows(r) for r in group)):
                    writer.add(row)
            if level:  # the previous round's scratch runs; the map's stay
                for done in group:
                    done.unlink()
            merged.append(path)
        ctx.logger.info("merge round %d: %d runs into %d", level, len(runs), len(merged))
        runs, level = merged, level + 1
    return runs


def ccindex_stages(cfg: PipelineConfig) -> list[Stage]:
    """The join's passes when Common Crawl is an archive and its columnar index is given, else none."""
    if cfg.fetch.commoncrawl_join():
        return [CCIndexMapStage(cfg), CCIndexReduceStage(cfg)]
    return []
