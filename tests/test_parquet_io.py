"""Reading the stages' Parquet files: ``iter_batches`` holds one row group at a time, so a task's
memory is bounded by its writer's ``row_group_size``, not by how large the partition grew."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.parquet_io import iter_batches, write_table


def test_iter_batches_reads_every_row_in_order_holding_one_row_group_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    texts = [rng.bytes(2000).hex() for _ in range(20_000)]  # 4 MB per row group of 1,000 rows
    path = tmp_path / "part.parquet"
    write_table(pa.table({"n": np.arange(len(texts)), "text": texts}), path, row_group_size=1000,
                compression="zstd")
    base, peak, seen = pa.total_allocated_bytes(), 0, []
    for batch in iter_batches(path, batch_size=4096):
        peak = max(peak, pa.total_allocated_bytes() - base)
        seen.extend(batch.column("n").to_pylist())
    assert seen == list(range(len(texts)))
    # one reader over the file held the groups ahead: 62 MB here, growing with the file
    assert peak < 24 << 20, f"{peak >> 20} MB of Arrow memory held while reading"
    # a subset of the groups, and the other options, as ParquetFile.iter_batches takes them
    some = [b.column("n").to_pylist() for b in iter_batches(path, row_groups=[3, 5], columns=["n"])]
    assert sum(some, []) == [*range(3000, 4000), *range(5000, 6000)]
