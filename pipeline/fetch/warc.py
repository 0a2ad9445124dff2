"""WARC.gz output of a fetch task: records written a URL at a time, files rotated by size.

Every record is its own gzip member, so a file cut at a record boundary is still a valid WARC.gz;
resuming after a kill cuts each file back to the end of the last record the journal accounts for.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import itertools
import os
import uuid
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

try:  # ISA-L's deflate: the same gzip format, several times faster than zlib at low levels
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _deflate = zlib  # type: ignore[assignment]

# Hop-by-hop encodings are undone by the HTTP client; the stored payload is the (content-encoded)
# entity, so the framing header must not claim otherwise to WARC readers.
DROPPED_HEADERS = {"transfer-encoding"}
GZIP_LEVEL = 1


@dataclass
class HttpExchange:
    """One request and its complete response, as they go into the WARC."""

    url: str
    method: str
    request_path: str
    request_headers: list[tuple[str, str]]
    protocol: str
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    body: bytes  # the entity as received: still content-encoded (gzip, ...)
    peer: str | None = None
    # An archived response: written with the capture's date, the archive's identifiers as extra
    # WARC headers, and no request record (the request went to the archive, not to ``url``).
    record_request: bool = True
    warc_date: str | None = None
    warc_extra: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first response header called ``name`` (any case), or None."""
        name = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == name), None)


class WarcFiles:
    """Appends exchanges to ``<folder>/<prefix>_NNN.warc.gz``, starting a new file past ``max_bytes``."""

    def __init__(self, folder: Path, prefix: str, max_bytes: int, gzip_level: int = GZIP_LEVEL) -> None:
        self.folder, self.prefix, self.max_bytes, self.gzip_level = folder, prefix, max_bytes, gzip_level
        self.number: int | None = None  # found at the first write: the last file a killed run left
        self.file: BinaryIO | None = None
        # Records are serialized uncompressed here, then gzipped one member each at gzip_level with
        # ISA-L (warcio's own gzip runs zlib at level 9: about 20 times slower for ~20% smaller).
        self.buffer = io.BytesIO()
        self.writer = WARCWriter(self.buffer, gzip=False)
        # A failed write (a full disk) may leave part of a record: nothing more is written or
        # flushed, so no journal line points past it (the next attempt cuts the file back).
        self.failed: BaseException | None = None

    def name(self, number: int | None = None) -> str:
        return f"{self.prefix}_{self.number if number is None else number:03d}.warc.gz"

    def _open(self) -> None:
        if self.number is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            existing = sorted(self.folder.glob(f"{self.prefix}_*.warc.gz"))
            # resuming: go on appending to the last file
            self.number = int(existing[-1].name[len(self.prefix) + 1:].split(".")[0]) if existing else 0
        path = self.folder / self.name()
        if path.exists() and path.stat().st_size >= self.max_bytes:
            self.number += 1
            path = self.folder / self.name()
        self.file = open(path, "ab")

    def write(self, exchanges: list[HttpExchange]) -> tuple[str, int, int, int]:
        """Write the exchanges (a redirect chain, then the page) back to back.

        Returns (file name, offset and length of the last response record, end offset of all).
        """
        if self.failed is not None:
            raise self.failed
        try:
            return self._write(exchanges)
        except BaseException as err:
            self._failing(err)
            raise

    def _failing(self, err: BaseException) -> None:
        self.failed = err
        if isinstance(err, OSError) and err.filename is None and self.number is not None:
            err.filename = str(self.folder / self.name())  # a failed write names no file

    def _write(self, exchanges: list[HttpExchange]) -> tuple[str, int, int, int]:
        if self.file is None:
            self._open()
        assert self.file is not None
        offset = length = 0
        for exchange in exchanges:
            offset = self.file.tell()
            self._write_exchange(exchange)
            length = self.file.tell() - offset
            if exchange.record_request:
                self._write_request(exchange)
        name, end = self.name(), self.file.tell()
        if end >= self.max_bytes:
            self.close()
            self.number = (self.number or 0) + 1
        return name, offset, length, end

    def _write_member(self, record: object) -> None:
        """One record as one gzip member: a file cut between members is still a valid WARC.gz."""
        assert self.file is not None
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.write_record(record)
        packer = _deflate.compressobj(self.gzip_level, zlib.DEFLATED, zlib.MAX_WBITS + 16)
        self.file.write(packer.compress(self.buffer.getbuffer()) + packer.flush())

    def _write_exchange(self, ex: HttpExchange) -> None:
        headers = [(k, v) for k, v in ex.response_headers if k.lower() not in DROPPED_HEADERS]
        http = StatusAndHeaders(f"{ex.status} {ex.reason}", headers, protocol=ex.protocol)
        http.compute_headers_buffer()
        # Digests computed here in one pass each (hashlib releases the GIL), so that warcio does
        # not spool the body through a temporary file to compute them.
        block = hashlib.sha1(http.headers_buff)
        block.update(ex.body)
        warc_headers = {
            "WARC-Record-ID": f"<urn:uuid:{uuid.uuid4()}>",
            "WARC-Payload-Digest": _digest(hashlib.sha1(ex.body)),
            "WARC-Block-Digest": _digest(block),
            **({"WARC-IP-Address": ex.peer} if ex.peer else {}),
            **({"WARC-Date": ex.warc_date} if ex.warc_date else {}),
            **dict(ex.warc_extra),
        }
        record = self.writer.create_warc_record(
            ex.url, "response", payload=io.BytesIO(ex.body), length=len(ex.body), http_headers=http,
            warc_headers_dict=warc_headers,
        )
        self._write_member(record)

    def _write_request(self, ex: HttpExchange) -> None:
        http = StatusAndHeaders(f"{ex.method} {ex.request_path} {ex.protocol}", ex.request_headers,
                                is_http_request=True)
        record = self.writer.create_warc_record(ex.url, "request", payload=io.BytesIO(b""), length=0,
                                                http_headers=http)
        self._write_member(record)

    def flush(self) -> None:
        """Push written records to the operating system (what a SIGKILL cannot take back) and disk."""
        if self.failed is not None:
            raise self.failed
        if self.file is not None:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            except BaseException as err:
                self._failing(err)
                raise

    def close(self) -> None:
        if self.file is None:
            return
        try:
            if self.failed is None:
                self.flush()
                self.file.close()
        finally:
            if not self.file.closed:  # after a failure: what its buffer holds may not fit
                with contextlib.suppress(OSError):
                    self.file.close()
            self.file = None


def _digest(hasher: Any) -> str:
    """A WARC digest value: ``sha1:`` and the base32 of the hash."""
    return "sha1:" + base64.b32encode(hasher.digest()).decode("ascii")


def cut_back(folder: Path, prefix: str, ends: dict[str, int]) -> None:
    """Cut each WARC file to the end of its last journaled record; drop files with none.

    ``ends`` maps file name -> end offset of the last record the journal accounts for.
    """
    for path in folder.glob(f"{prefix}_*.warc.gz"):
        end = ends.get(path.name, 0)
        if end == 0:
            path.unlink()
        elif path.stat().st_size > end:
            with open(path, "r+b") as f:
                f.truncate(end)


# --- a writer thread: compression and digests off the event loop -----------------------------------


class WarcWriter:
    """WARC files behind ``threads`` writer threads, each with files of its own
    (``<prefix>_<k>_NNN.warc.gz``): the crawler's event loop hands them exchanges and gets pointers
    back, while gzip and SHA-1 (which release the GIL) run beside it and beside each other.

    Each thread returns pointers in the order it was handed exchanges, so within each file the
    records and the journal lines that point at them keep one order, which resuming relies on.
    """

    def __init__(self, folder: Path, prefix: str, max_bytes: int, threads: int = 2) -> None:
        self.files = [WarcFiles(folder, f"{prefix}_{k}", max_bytes) for k in range(threads)]
        self.threads = [ThreadPoolExecutor(1, thread_name_prefix=f"warc{k}") for k in range(threads)]
        self.turn = itertools.count()

    def submit(self, exchanges: list[HttpExchange]) -> Future[tuple[str, int, int, int]]:
        k = next(self.turn) % len(self.files)
        return self.threads[k].submit(self.files[k].write, exchanges)

    def flush(self) -> None:
        """Every record submitted so far is on disk when this returns."""
        for future in [t.submit(f.flush) for t, f in zip(self.threads, self.files, strict=True)]:
            future.result()

    def close(self) -> None:
        try:
            for future in [t.submit(f.close) for t, f in zip(self.threads, self.files, strict=True)]:
                future.result()
        finally:
            for thread in self.threads:
                thread.shutdown()
