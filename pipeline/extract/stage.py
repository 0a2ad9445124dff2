"""The extract stage: one task per fetch task (links partition); kept responses -> documents.

Reads ``fetch/index/NNNNN.parquet`` for the pages kept and their WARC pointers, takes each response
record's payload (content-encoding undone by warcio), extracts it in an isolated process
(``worker.IsolatedExtractor``), filters it, and writes ``docs/part-NNNNN.parquet`` with the Reddit
provenance of ``links/part-NNNNN.parquet``. Every page is counted: ``kept`` or its reason.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pyarrow as pa
from isal import isal_zlib
from warcio.archiveiterator import ArchiveIterator

from pipeline.config import ExtractConfig
from pipeline.extract.worker import IsolatedExtractor
from pipeline.parquet_io import iter_batches, parquet_writer, read_table, reading
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, require_complete

DOCS_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("domain", pa.string()), ("title", pa.string()),
    ("date", pa.string()), ("author", pa.string()), ("text", pa.string()), ("lang", pa.string()),
    ("lang_score", pa.float32()), ("n_chars", pa.int64()), ("n_tokens", pa.int64()),
    ("subreddits", pa.list_(pa.string())), ("score", pa.int64()), ("n_submissions", pa.int64()),
    ("created_utc", pa.int64()), ("fetched_at", pa.float64()), ("final_url", pa.string()),
    ("encoding", pa.string()), ("warc_file", pa.string()), ("warc_offset", pa.int64()),
    ("warc_length", pa.int64()), ("source", pa.string()), ("archived_at", pa.float64()),
])
ROWS_PER_GROUP = 1000
GZIP_MAGIC = b"\x1f\x8b\x08"  # how every gzip member (every WARC record here) starts
SCAN_STEP = 1 << 16  # bytes handed to the inflater at a time when scanning a damaged file


def doc_id(url: str) -> str:
    """A document's stable id: a hash of its normalized URL."""
    return hashlib.blake2b(url.encode(), digest_size=16).hexdigest()


def charset_of(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, if any."""
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


INDEX_BATCH_ROWS = 1024  # rows of the fetch index and the links read at a time


def _rows(path: Path, columns: list[str] | None) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file as dicts, a batch at a time."""
    for batch in iter_batches(path, batch_size=INDEX_BATCH_ROWS, columns=columns):
        yield from batch.to_pylist()


class DamagedRecord(Exception):
    """A page's response record is not intact at its pointer, nor anywhere else in its file."""


class Payload(NamedTuple):
    body: bytes  # the entity body, content-encoding undone
    content_type: str | None
    offset: int  # where the record was read: the pointer's, unless a cut moved it


class WarcReader:
    """Payloads of response records by (file, offset, length), keeping files open within a task.

    A record is one gzip member (``length`` bytes at ``offset``, from the fetch index): it is read
    in one call and inflated with ISA-L, and warcio parses the inflated record (undoing chunking
    and content-encoding), which costs under half of warcio reading the gzip stream itself.

    A damaged file (bytes overwritten, a chunk cut out) is scanned once for its intact members: a
    record whose pointer no longer holds it is looked up there by its URI and length (a cut moves
    every record after it), and ``DamagedRecord`` is raised only for one that is intact nowhere.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, BinaryIO] = {}
        self.intact: dict[str, dict[tuple[str | None, int], list[int]]] = {}  # of scanned files
        self.moved = 0  # records read elsewhere than at their pointer

    def payload(self, name: str, offset: int, length: int, uri: str) -> Payload:
        """The response record for ``uri`` that the fetch index points at."""
        try:
            return self._read(name, offset, length, uri)
        except DamagedRecord:
            elsewhere = [at for at in self._intact(name).get((uri, length), []) if at != offset]
            if not elsewhere:
                raise
        self.moved += 1
        return self._read(name, min(elsewhere, key=lambda at: abs(at - offset)), length, uri)

    def _read(self, name: str, offset: int, length: int, uri: str) -> Payload:
        f = self.files.get(name)
        path = self.folder / name
        with reading(path):  # a missing or unreadable file: fetch's task must write it again
            if f is None:
                f = self.files[name] = open(path, "rb")
            f.seek(offset)
            member = f.read(length)
        record_bytes = inflate_member(member)
        if record_bytes is None:
            raise DamagedRecord(f"{name}@{offset}+{length}: not one complete gzip member")
        record = next(iter(ArchiveIterator(io.BytesIO(record_bytes), block_size=1 << 20)))
        target = record.rec_headers.get_header("WARC-Target-URI")
        if record.rec_type != "response" or target != uri:
            raise DamagedRecord(f"{name}@{offset} is a {record.rec_type} record of {target}, not the "
                                f"response of {uri}")
        content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
        return Payload(record.content_stream().read(), content_type, offset)

    def _intact(self, name: str) -> dict[tuple[str | None, int], list[int]]:
        """(URI, length) -> offsets of the intact response records of file ``name`` (scanned once)."""
        if name not in self.intact:
            found: dict[tuple[str | None, int], list[int]] = {}
            with reading(self.folder / name):
                for offset, length, record_bytes in intact_members(self.folder / name):
                    record = next(iter(ArchiveIterator(io.BytesIO(record_bytes))), None)
                    if record is not None and record.rec_type == "response":
                        uri = record.rec_headers.get_header("WARC-Target-URI")
                        found.setdefault((uri, length), []).append(offset)
            self.intact[name] = found
        return self.intact[name]

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def inflate_member(data: bytes | memoryview) -> bytes | None:
    """The inflated gzip member that ``data`` is exactly, or None (damaged, cut, or not one)."""
    inflater = isal_zlib.decompressobj(wbits=31)
    try:
        inflated = inflater.decompress(data)
    except isal_zlib.error:
        return None
    return inflated if inflater.eof and not inflater.unused_data else None


def intact_members(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(offset, length, inflated bytes) of every complete gzip member of ``path``, in order. Past
    damaged bytes, every later position where a member may start (the gzip magic) is tried."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            at = data.find(GZIP_MAGIC)
            while at >= 0:
                member = _member_at(data, at)
                if member is not None:
                    yield at, *member
                at = data.find(GZIP_MAGIC, at + (member[0] if member else 1))


def _member_at(data: mmap.mmap, at: int) -> tuple[int, bytes] | None:
    """(length, inflated bytes) of the complete gzip member starting at ``at``, or None."""
    inflater = isal_zlib.decompressobj(wbits=31)
    parts, end = [], at
    try:
        while not inflater.eof and end < len(data):
            parts.append(inflater.decompress(data[end:end + SCAN_STEP]))
            end += SCAN_STEP
    except isal_zlib.error:
        return None
    if not inflater.eof:
        return None
    return min(end, len(data)) - len(inflater.unused_data) - at, b"".join(parts)


class ExtractStage(Stage):
    name = "extract"

    @property
    def conf(self) -> ExtractConfig:
        return self.cfg.extract

    @property
    def fetch(self) -> StagePaths:
        return StagePaths(self.workdir, "fetch")

    @property
    def num_tasks(self) -> int:
        return self.cfg.links.partitions

    def stage_config(self) -> ExtractConfig:
        return self.conf

    def check_inputs(self) -> None:
        if not self.fetch.meta.exists():
            raise StageError(f"extract: no fetch output in {self.fetch.root}; run the fetch stage first")
        require_complete(self.fetch)

    def pages(self, index: int) -> Iterator[dict[str, Any]]:
        """The kept pages of fetch task ``index``, with their links provenance.

        The fetch index has one row per link of the partition, in the links' order (``ord``), so the
        two files are read side by side, a batch at a time: memory does not grow with the partition.
        """
        fetched = _rows(self.fetch.root / "index" / f"{index:05d}.parquet", None)
        links = StagePaths(self.workdir, "links").root / f"part-{index:05d}.parquet"
        provenance = _rows(links, ["host", "subreddits", "score_max", "n_submissions", "first_created_utc"])
        for ord_, (row, link) in enumerate(zip(fetched, provenance, strict=True)):
            if row["ord"] != ord_:
                raise StageError(f"extract task {index}: the fetch index is not in the links' order "
                                 f"(row {ord_} has ord {row['ord']}); rerun fetch task {index}")
            if row["reason"] is None:
                yield {**row, **link}

    def kept_pages(self, index: int) -> int:
        """How many pages fetch task ``index`` kept (one column of its index read)."""
        reasons = read_table(self.fetch.root / "index" / f"{index:05d}.parquet", columns=["reason"])
        return reasons.column("reason").null_count  # a kept page has no reason

    def run_task(self, ctx: TaskContext) -> None:
        reader = WarcReader(self.fetch.root / "warc")

        def requests() -> Iterator[tuple[dict[str, Any], bytes, str, str | None]]:
            for page in ctx.progress(self.pages(ctx.index), self.kept_pages(ctx.index), "pages"):
                uri = page["final_url"] or page["url"]
                try:
                    got = reader.payload(page["warc_file"], page["warc_offset"], page["warc_length"], uri)
                except DamagedRecord as err:
                    ctx.count("warc_damaged")
                    ctx.logger.warning("%s: WARC record damaged (%s)", uri, err)
                    continue
                yield {**page, "warc_offset": got.offset}, got.body, uri, charset_of(got.content_type)

        rows: list[dict[str, Any]] = []
        with IsolatedExtractor(self.conf) as extract, parquet_writer(
            ctx.output(f"part-{ctx.index:05d}.parquet"), DOCS_SCHEMA, compression="zstd"
        ) as writer:
            for page, result in extract.map(requests()):
                if isinstance(result, str):
                    ctx.count(result)
                    continue
                ctx.count("kept")
                ctx.add("tokens", result["n_tokens"])
                rows.append(self._row(page, result))
                if len(rows) >= ROWS_PER_GROUP:
                    writer.write_table(pa.Table.from_pylist(rows, schema=DOCS_SCHEMA))
                    rows.clear()
            writer.write_table(pa.Table.from_pylist(rows, schema=DOCS_SCHEMA))
            ctx.add("worker_restarts", extract.restarts)
            ctx.add("worker_start_s", round(extract.start_s, 3))
        if reader.moved:
            ctx.add("warc_records_moved", reader.moved)
        reader.close()

    @staticmethod
    def _row(page: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": doc_id(page["url"]), "url": page["url"], "domain": page["host"],
            "title": doc["title"], "date": doc["date"], "author": doc["author"], "text": doc["text"],
            "lang": doc["lang"], "lang_score": doc["lang_score"], "n_chars": doc["n_chars"],
            "n_tokens": doc["n_tokens"], "subreddits": page["subreddits"], "score": page["score_max"],
            "n_submissions": page["n_submissions"], "created_utc": page["first_created_utc"],
            "fetched_at": page["fetched_at"], "final_url": page["final_url"],
            "encoding": doc["encoding"], "warc_file": page["warc_file"],
            "warc_offset": page["warc_offset"], "warc_length": page["warc_length"],
            "source": page.get("source") or "live", "archived_at": page.get("archived_at"),
        }
