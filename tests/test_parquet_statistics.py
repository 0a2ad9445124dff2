"""A flipped byte in a Parquet footer's statistics (a column chunk's min or max): the footer has no
checksum, so the pipeline's readers never decide what to read by them. Every such flip gives the
right rows or the project's error naming the file, never a row group skipped without a word."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.dedup.stage import BAND_SCHEMA, _bucket_range
from pipeline.parquet_io import read_table, write_table
from pipeline.runtime import StageError
from tests.conftest import REPO

# Distinct 64-bit values (no byte pattern of theirs occurs elsewhere in a footer): row group g holds
# BASE + g * STEP + 0..ROWS-1, so its min and max are known.
BASE, STEP, ROWS, GROUPS = 0x5A3C_91E7_0000_0000, 0x0000_0100_0000_0000, 4, 3


def band_file(path: Path) -> Path:
    """A band file as dedup_sig writes it (sorted by bucket), through the project's writer."""
    bucket = [BASE + g * STEP + r for g in range(GROUPS) for r in range(ROWS)]
    rows = {"bucket": bucket, **{name: list(range(len(bucket))) for name in BAND_SCHEMA.names[1:]}}
    write_table(pa.table(rows, schema=BAND_SCHEMA), path, row_group_size=ROWS)
    return path


def flips(path: Path, value: int) -> Iterator[bytes]:
    """The file with one bit flipped in a footer statistic (min or max) equal to ``value``: each byte
    of it, a low bit and the high bit."""
    data = path.read_bytes()
    footer = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    encoded = struct.pack("<Q", value)
    places = [footer + m.start() for m in re.finditer(re.escape(encoded), data[footer:])]
    assert places, "the statistic is in the footer"
    for at in places:
        for byte in range(8):
            for bit in (0x01, 0x80):
                yield data[:at + byte] + bytes([data[at + byte] ^ bit]) + data[at + byte + 1:]


def right_or_named(path: Path, read: Callable[[], list[int]], expected: list[int]) -> str:
    """What ``read`` gave for the damaged ``path``: right, or refused with an error naming it."""
    try:
        got = read()
    except StageError as err:
        assert str(err).startswith(f"{path} cannot be read ("), err
        return "refused"
    assert got == expected, "rows dropped (or made up) on the word of a damaged statistic"
    return "right"


# The middle row group's statistics; a query at each end of its range: a max flipped lower, or a min
# flipped higher, once made pyarrow's filter and the pairs pass skip the group.
MIDDLE_MIN, MIDDLE_MAX = BASE + STEP, BASE + STEP + ROWS - 1


@pytest.mark.parametrize("value", [MIDDLE_MIN, MIDDLE_MAX])
def test_a_filtered_read_does_not_trust_the_statistics(tmp_path: Path, value: int) -> None:
    path = band_file(tmp_path / "band.parquet")
    clean = path.read_bytes()
    outcomes = set()
    for damaged in flips(path, value):
        path.write_bytes(damaged)
        outcomes.add(right_or_named(path, lambda: read_table(path, filters=[("bucket", "=", value)],
                                                             columns=["key"]).column("key").to_pylist(),
                                    [value - BASE - STEP + ROWS]))
    path.write_bytes(clean)
    assert read_table(path, filters=[("bucket", ">=", MIDDLE_MAX)]).num_rows == ROWS + 1
    assert outcomes == {"right"}, "statistics are not read at all"


@pytest.mark.parametrize("value", [MIDDLE_MIN, MIDDLE_MAX])
def test_the_pairs_pass_finds_its_bucket_range_without_the_statistics(tmp_path: Path, value: int) -> None:
    path = band_file(tmp_path / "band.parquet")
    outcomes = set()
    for damaged in flips(path, value):
        path.write_bytes(damaged)
        outcomes.add(right_or_named(path, lambda: _bucket_range(path, value, value + 1).column("key")
                                    .to_pylist(), [value - BASE - STEP + ROWS]))
    assert outcomes == {"right"}


def test_bucket_ranges_across_row_groups(tmp_path: Path) -> None:
    path = band_file(tmp_path / "band.parquet")
    every = [BASE + g * STEP + r for g in range(GROUPS) for r in range(ROWS)]
    for low, high in [(0, 1 << 64), (0, BASE), (MIDDLE_MIN - 1, MIDDLE_MAX), (MIDDLE_MAX, MIDDLE_MAX + STEP),
                      (BASE + 2, BASE + 2 * STEP + 1), (every[-1], 1 << 64), (every[-1] + 1, 1 << 64)]:
        assert _bucket_range(path, low, high).column("bucket").to_pylist() == [
            b for b in every if low <= b < high], (low, high)
    empty = tmp_path / "empty.parquet"
    write_table(BAND_SCHEMA.empty_table(), empty)
    assert _bucket_range(empty, 0, 1 << 64).num_rows == 0


def test_no_pipeline_code_decides_by_footer_statistics() -> None:
    """Statistics and pyarrow's filter pushdown (which prunes row groups by them) appear nowhere in
    pipeline/: ``parquet_io.read_table`` takes ``filters`` and applies them to the rows it read."""
    pattern = re.compile(r"\.statistics\b|pyarrow\.dataset|ParquetDataset|pq\.read_table\([^)]*filters")
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for path in sorted((REPO / "pipeline").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line) and not line.lstrip().startswith("#")]
    assert not found, found
