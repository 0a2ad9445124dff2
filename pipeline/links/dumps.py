"""Streaming readers of Pushshift submission dumps (``RS_*.zst``, Arctic Shift's ``.zst_blocks``,
``.xz``, ``.bz2``, plain JSON lines).

Real dumps are zstd frames with a 2 GiB window (``zstd --long=31``); a decoder that keeps the default
limit fails with "Frame requires too much memory for decoding", so ours allows ``2**31``. Dumps are
read in blocks and split into lines on bytes: a line (or a multibyte character) cut by a block
boundary is joined with the next block before it is decoded, so nothing is lost at boundaries.

Lines are decoded with msgspec into a struct of the few fields the links stage uses; the dozens of
other fields are skipped without being materialised, which is most of the speed.
"""

from __future__ import annotations

import bz2
import lzma
import struct
from collections.abc import Iterable, Iterator
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


def _zstd_blocks(raw: BinaryIO, read_bytes: int) -> Iterator[bytes]:
    """Decompressed blocks of concatenated zstd frames, ``read_bytes`` of input at a time.

    zstandard's own readers report a file cut short mid-frame as a clean end of file; this one
    raises, so a truncated dump is counted, never taken for a complete one.
    """
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    frame, in_frame = dctx.decompressobj(), False
    while data := raw.read(read_bytes):
        while data:
            in_frame = True
            block = frame.decompress(data)
            if block:
                yield block
            if not frame.eof:
                break
            data, in_frame = frame.unused_data, False  # the next frame starts here
            frame = dctx.decompressobj()
    if in_frame:
        raise zstandard.ZstdError("the file ends inside a frame (truncated dump)")


def _zst_blocks(raw: BinaryIO) -> Iterator[bytes]:
    """The rows of Arctic Shift's ``.zst_blocks`` format, a block at a time, one line per row.

    The format (github.com/ArthurHeitmann/zst_blocks_format): blocks of a little-endian uint32 size
    and a zstd frame of that size, which holds a uint32 row count, (offset, size) uint32 pairs, and
    the rows (JSON objects) they point into. A file cut short or a damaged block raises ``ZstdError``.
    """
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    while head := raw.read(4):
        size = struct.unpack("<I", head)[0] if len(head) == 4 else -1
        data = raw.read(size) if size >= 0 else b""
        if size < 0 or len(data) < size:
            raise zstandard.ZstdError("the file ends inside a block (truncated dump)")
        frame = dctx.decompressobj()
        block = frame.decompress(data)
        try:
            if not frame.eof:
                raise struct.error("its zstd frame is incomplete")
            rows = struct.unpack_from("<I", block)[0]
            spans = struct.unpack_from(f"<{2 * rows}I", block, 4)
        except struct.error as err:
            raise zstandard.ZstdError(f"a damaged block: {err}") from None
        start, places = 4 + 8 * rows, list(zip(spans[::2], spans[1::2], strict=True))
        if any(start + offset + length > len(block) for offset, length in places):
            raise zstandard.ZstdError("a damaged block: a row lies past its end")
        yield b"".join(block[start + offset:start + offset + length] + b"\n" for offset, length in places)


def _open_stream(path: Path) -> BinaryIO:
    name = path.name.lower()
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def iter_blocks(path: Path, read_bytes: int) -> Iterator[bytes]:
    """The decompressed content of a dump, in blocks; the format comes from the suffix.

    ``read_bytes`` is read from the file at a time (compressed bytes for zstd, whose blocks then
    vary in size; decompressed bytes for xz, bz2 and plain files; ``.zst_blocks`` files a block of
    rows at a time, each row a line). Raises ``DumpReadError`` when the dump is corrupt or truncated,
    after yielding everything before the damage.
    """
    zstd = path.name.lower().endswith((".zst", ".zstd"))
    zst_blocks = path.name.lower().endswith(".zst_blocks")
    try:
        with open(path, "rb") if zstd or zst_blocks else _open_stream(path) as stream:
            if zstd:
                yield from _zstd_blocks(stream, read_bytes)
            elif zst_blocks:
                yield from _zst_blocks(stream)
            else:
                while block := stream.read(read_bytes):
                    yield block
    except (zstandard.ZstdError, lzma.LZMAError, EOFError, OSError) as err:
        raise DumpReadError(f"{path.name}: {type(err).__name__}: {err}") from err


def iter_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of blocks; a line (or a character) cut by a block boundary is joined
    with the rest of it before being yielded. A final line without a newline is yielded too."""
    rest = b""
    for block in blocks:
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
