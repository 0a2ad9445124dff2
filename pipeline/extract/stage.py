"""The extract stage: one task per fetch task (links partition); kept responses -> documents.

Reads ``fetch/index/NNNNN.parquet`` for the pages kept and their WARC pointers, takes each response
record's payload (content-encoding undone by warcio), extracts it in an isolated process
(``worker.IsolatedExtractor``), filters it, and writes ``docs/part-NNNNN.parquet`` with the Reddit
provenance of ``links/part-NNNNN.parquet``. Every page is counted: ``kept`` or its reason.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from isal import isal_zlib
from warcio.archiveiterator import ArchiveIterator

from pipeline.config import ExtractConfig
from pipeline.extract.worker import IsolatedExtractor
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


class WarcReader:
    """Payloads of response records by (file, offset, length), keeping files open within a task.

    A record is one gzip member (``length`` bytes at ``offset``, from the fetch index): it is read
    in one call and inflated with ISA-L, and warcio parses the inflated record (undoing chunking
    and content-encoding), which costs under half of warcio reading the gzip stream itself.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, BinaryIO] = {}

    def payload(self, name: str, offset: int, length: int) -> tuple[bytes, str | None]:
        """(entity body with content-encoding undone, Content-Type) of the record at ``offset``."""
        f = self.files.get(name)
        if f is None:
            f = self.files[name] = open(self.folder / name, "rb")
        f.seek(offset)
        member = f.read(length)
        try:
            record_bytes = isal_zlib.decompress(member, wbits=31)
        except isal_zlib.error as err:
            raise StageError(f"{name}@{offset}+{length}: not a complete gzip member ({err})") from err
        record = next(iter(ArchiveIterator(io.BytesIO(record_bytes), block_size=1 << 20)))
        if record.rec_type != "response":
            raise StageError(f"{name}@{offset} is a {record.rec_type} record, not a response")
        content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
        return record.content_stream().read(), content_type

    def close(self) -> None:
        for f in self.files.values():
            f.close()


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
        """The kept pages of fetch task ``index``, with their links provenance."""
        fetched = pq.read_table(self.fetch.root / "index" / f"{index:05d}.parquet").to_pylist()
        links = StagePaths(self.workdir, "links").root / f"part-{index:05d}.parquet"
        provenance = pq.read_table(links, columns=["host", "subreddits", "score_max", "n_submissions",
                                                   "first_created_utc"]).to_pylist()
        for row in fetched:
            if row["reason"] is None:
                yield {**row, **provenance[row["ord"]]}

    def run_task(self, ctx: TaskContext) -> None:
        reader = WarcReader(self.fetch.root / "warc")

        def requests() -> Iterator[tuple[dict[str, Any], bytes, str, str | None]]:
            for page in ctx.progress(self.pages(ctx.index), None, "pages"):
                body, content_type = reader.payload(page["warc_file"], page["warc_offset"],
                                                    page["warc_length"])
                yield page, body, page["final_url"] or page["url"], charset_of(content_type)

        rows: list[dict[str, Any]] = []
        with IsolatedExtractor(self.conf) as extract, pq.ParquetWriter(
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
