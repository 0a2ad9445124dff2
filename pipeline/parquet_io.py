"""Parquet files of the stages: written with page checksums, read with them checked.

A stage's output that a later stage cannot read (truncated, bytes flipped, not Parquet at all)
stops the reading task with a ``StageError`` that names the file, the task that wrote it, and how
to have that task write it again. Readers of another stage's Parquet files go through ``reading``
(or the functions here built on it); so do reads of its other files (fetch's WARC files).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.paths import StagePaths
from pipeline.runtime import StageError, read_json

# A CRC32 per page, checked on read: without it a flipped byte in a page often decodes silently
# to other values (a quarter of single-byte flips in a zstd docs part, measured). The footer has no
# checksum: its statistics (min/max per column chunk) are written for other tools (the corpus's
# sha256 in manifest.json covers them there) but never decide what the pipeline reads.
WRITE_OPTIONS: dict[str, Any] = {"write_page_checksum": True}


def write_table(table: pa.Table, path: Path | BinaryIO, **options: Any) -> None:
    pq.write_table(table, path, **WRITE_OPTIONS, **options)


def parquet_writer(path: Path | BinaryIO, schema: pa.Schema, **options: Any) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, **WRITE_OPTIONS, **options)


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn an error of pyarrow or of the OS while reading ``path`` into a ``StageError`` saying
    which task to redo. Only reads belong in the block: a failed write is not a damaged input."""
    try:
        yield
    except MemoryError:  # pyarrow's included: out of memory is not a damaged file
        raise
    except (pa.ArrowException, OSError) as err:
        raise StageError(unreadable(Path(path), err)) from err


def open_file(path: Path) -> pq.ParquetFile:
    """``path`` opened (footer read); its later reads go in ``reading(path)`` blocks too."""
    with reading(path):
        return pq.ParquetFile(path, page_checksum_verification=True)


def read_table(path: Path, filters: Any = None, **options: Any) -> pa.Table:
    """``path`` (its ``columns``), then the rows ``filters`` (pyarrow's DNF form) keeps.

    The filters are applied to the rows read, never pushed down: pyarrow would skip row groups on
    their footer min/max statistics, which no checksum covers, so a flipped byte there would drop
    rows silently. Nothing in the pipeline reads those statistics.
    """
    columns = options.pop("columns", None)
    with reading(path):
        table = pq.read_table(path, page_checksum_verification=True,
                              columns=None if filters is not None else columns, **options)
    if filters is None:
        return table
    table = table.filter(pq.filters_to_expression(filters))
    return table if columns is None else table.select(columns)


def release_unused_memory() -> None:
    """Give back what Arrow's allocator keeps after a row group is freed. Its default (mimalloc)
    holds on to it: a process reading and writing 5 MB row groups of documents one after another
    grew to 210 MB resident with 18 MB of Arrow data alive (a dedup filter task at 16S)."""
    pa.default_memory_pool().release_unused()


def read_metadata(path: Path) -> pq.FileMetaData:
    with reading(path):
        return pq.read_metadata(path)


def iter_batches(path: Path, **options: Any) -> Iterator[pa.RecordBatch]:
    """``ParquetFile.iter_batches`` of ``path``, one row group at a time; errors of the reads come as
    ``StageError``.

    One reader over the whole file holds decoded pages of the row groups ahead: its memory grew with
    the file (a 25-row-group docs part: 98 MB of Arrow memory, 21 MB for a 2-group one), so a task's
    peak grew with its partition. A reader per row group holds one group, which its writer's
    ``row_group_size`` bounds.
    """
    groups = options.pop("row_groups", None)
    with reading(path), open_file(path) as source:
        for group in range(source.num_row_groups) if groups is None else groups:
            yield from source.iter_batches(row_groups=[group], **options)


def unreadable(path: Path, err: BaseException) -> str:
    """The file, why it cannot be read, and how to have the task that wrote it write it again.

    One line: the executors report a failed task by its error's last line.
    """
    why = " ".join(f"{type(err).__name__}: {err}".split())
    message = f"{path} cannot be read ({why})"
    paths = StagePaths.holding(path)
    if paths is None:
        return message
    task = writer_task(paths, path)
    if task is None:
        return f"{message}; no finished task of {paths.stage} lists it as an output"
    stage = paths.top_stage
    of = paths.stage if paths.stage == stage else f"{paths.stage}, a pass of the {stage} stage"
    return (f"{message}. It was written by task {task} of {of}: delete that task's completion marker "
            f"{paths.done(task)} and run again with {stage} added to stages (python -m pipeline "
            f"stages=[{stage},...] workdir={paths.workdir}, your other settings as before): that task "
            f"alone runs again, and the stages after it go on where they stopped")


def writer_task(paths: StagePaths, path: Path) -> int | None:
    """The finished task of ``paths`` whose marker lists ``path`` among its outputs, if any."""
    name = Path(path).resolve().relative_to(paths.root).as_posix()
    for marker in sorted(paths.done_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if name in read_json(marker)["outputs"]:
                return int(marker.stem)
    return None
