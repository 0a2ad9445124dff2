"""Streaming readers of Pushshift submission dumps (``RS_*.zst``, ``.xz``, ``.bz2``, plain ``.json``).

Real dumps are zstd frames with a 2 GiB window (``zstd --long=31``); a decoder that keeps the default
limit fails with "Frame requires too much memory for decoding", so ours allows ``2**31``. Dumps are
read in large blocks and split into lines on bytes: a line (or a multibyte character) cut by a block
boundary is joined with the next block before it is decoded, so nothing is lost at boundaries.

Lines are decoded with msgspec into a struct of the few fields the links stage uses; the dozens of
other fields are skipped without being materialised, which is most of the speed.
"""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import zstandard

MAX_WINDOW = 2**31


class Submission(msgspec.Struct):
    """The fields of a submission the links stage reads; any other field is skipped."""

    id: Any = None
    url: Any = None
    score: Any = None
    created_utc: Any = None
    subreddit: Any = None
    over_18: Any = None
    is_self: Any = None


_decoder = msgspec.json.Decoder(Submission)


class DumpReadError(RuntimeError):
    """A dump that cannot be read to its end (truncated or corrupt); what came before it was read."""


class ZstdReader:
    """``read(n)`` over concatenated zstd frames, with a 2 GiB window allowed.

    zstandard's own ``stream_reader`` reports a file cut short mid-frame as a clean end of file;
    this reader raises instead (``DumpReadError``), so a truncated dump is counted, never taken for
    a complete one.
    """

    def __init__(self, raw: BinaryIO, chunk_bytes: int = 1 << 16) -> None:
        self.raw, self.chunk_bytes = raw, chunk_bytes
        self.dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        self.frame = self.dctx.decompressobj()
        self.in_frame = False  # bytes of the current frame fed, frame not finished
        self.buffer = bytearray()

    def _feed(self) -> bool:
        """Decompress one more chunk of input; False at the end of the input."""
        data = self.raw.read(self.chunk_bytes)
        if not data:
            if self.in_frame:
                raise zstandard.ZstdError("file ends inside a frame (truncated dump)")
            return False
        while data:
            self.in_frame = True
            self.buffer += self.frame.decompress(data)
            if not self.frame.eof:
                break
            data, self.in_frame = self.frame.unused_data, False  # the next frame starts here
            self.frame = self.dctx.decompressobj()
        return True

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size and self._feed():
            pass
        block = bytes(self.buffer[:size])
        del self.buffer[:size]
        return block


@contextmanager
def open_dump(path: Path) -> Iterator[BinaryIO]:
    """The decompressed byte stream of a dump, by its suffix."""
    name = path.name.lower()
    if name.endswith(".zst") or name.endswith(".zstd"):
        with open(path, "rb") as raw:
            yield ZstdReader(raw)  # type: ignore[misc]
    elif name.endswith(".xz"):
        with lzma.open(path, "rb") as stream:
            yield stream
    elif name.endswith(".bz2"):
        with bz2.open(path, "rb") as stream:
            yield stream
    else:
        with open(path, "rb") as stream:
            yield stream


def iter_lines(stream: BinaryIO, read_bytes: int) -> Iterator[bytes]:
    """The lines of a byte stream, read ``read_bytes`` at a time; no line is split or lost.

    Raises ``DumpReadError`` when decompression fails part-way (the lines before it were yielded;
    a partial last line is not).
    """
    rest = b""
    while True:
        try:
            block = stream.read(read_bytes)
        except (zstandard.ZstdError, lzma.LZMAError, EOFError, OSError) as err:
            raise DumpReadError(f"{type(err).__name__}: {err}") from err
        if not block:
            break
        lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def decode_line(line: bytes) -> Submission | str:
    """A submission, or the reason the line gives none (``broken_json``, ``not_an_object``, ...)."""
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError:
        return "not_an_object"
    except msgspec.DecodeError:
        return "broken_json"
    except UnicodeDecodeError:
        # A few dump lines carry invalid UTF-8; keep the submission, with U+FFFD in place.
        return decode_line(line.decode("utf-8", "replace").encode())
