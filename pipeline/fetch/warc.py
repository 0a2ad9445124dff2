"""WARC.gz output of a fetch task: records written a URL at a time, files rotated by size.

Every record is its own gzip member, so a file cut at a record boundary is still a valid WARC.gz;
resuming after a kill cuts each file back to the end of the last record the journal accounts for.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

# Hop-by-hop encodings are undone by the HTTP client; the stored payload is the (content-encoded)
# entity, so the framing header must not claim otherwise to WARC readers.
DROPPED_HEADERS = {"transfer-encoding"}


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


class WarcFiles:
    """Appends exchanges to ``<folder>/<prefix>_NNN.warc.gz``, starting a new file past ``max_bytes``."""

    def __init__(self, folder: Path, prefix: str, max_bytes: int) -> None:
        self.folder, self.prefix, self.max_bytes = folder, prefix, max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self.number = 0
        self.file: BinaryIO | None = None
        self.writer: WARCWriter | None = None
        existing = sorted(folder.glob(f"{prefix}_*.warc.gz"))
        if existing:  # resuming: go on appending to the last file
            self.number = int(existing[-1].name[len(prefix) + 1:].split(".")[0])

    def name(self, number: int | None = None) -> str:
        return f"{self.prefix}_{self.number if number is None else number:03d}.warc.gz"

    def _open(self) -> None:
        path = self.folder / self.name()
        if path.exists() and path.stat().st_size >= self.max_bytes:
            self.number += 1
            path = self.folder / self.name()
        self.file = open(path, "ab")
        self.writer = WARCWriter(self.file, gzip=True)

    def write(self, exchanges: list[HttpExchange]) -> tuple[str, int, int, int]:
        """Write the exchanges (a redirect chain, then the page) back to back.

        Returns (file name, offset and length of the last response record, end offset of all).
        """
        if self.file is None:
            self._open()
        assert self.file is not None and self.writer is not None
        offset = length = 0
        for exchange in exchanges:
            offset = self.file.tell()
            self._write_exchange(exchange)
            length = self.file.tell() - offset
            self._write_request(exchange, offset)
        name, end = self.name(), self.file.tell()
        if end >= self.max_bytes:
            self.close()
            self.number += 1
        return name, offset, length, end

    def _write_exchange(self, ex: HttpExchange) -> None:
        assert self.writer is not None
        headers = [(k, v) for k, v in ex.response_headers if k.lower() not in DROPPED_HEADERS]
        http = StatusAndHeaders(f"{ex.status} {ex.reason}", headers, protocol=ex.protocol)
        extra = {"WARC-IP-Address": ex.peer} if ex.peer else {}
        record = self.writer.create_warc_record(
            ex.url, "response", payload=io.BytesIO(ex.body), http_headers=http,
            warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{uuid.uuid4()}>", **extra},
        )
        self.writer.write_record(record)

    def _write_request(self, ex: HttpExchange, response_offset: int) -> None:
        assert self.writer is not None
        http = StatusAndHeaders(f"{ex.method} {ex.request_path} {ex.protocol}", ex.request_headers,
                                is_http_request=True)
        record = self.writer.create_warc_record(ex.url, "request", payload=io.BytesIO(b""),
                                                http_headers=http)
        self.writer.write_record(record)

    def flush(self) -> None:
        """Push written records to the operating system (what a SIGKILL cannot take back) and disk."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.flush()
            self.file.close()
            self.file = self.writer = None


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
