"""The embedded sample: a few articles with their Reddit provenance, for ``make demo``.

The documents were written for this project (no third-party text), in the corpus schema
(id, url, domain, title, text, subreddit, score, created_utc).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

DOCUMENTS = Path(__file__).with_name("documents.jsonl")


def documents() -> list[dict]:
    return [orjson.loads(line) for line in DOCUMENTS.read_bytes().splitlines() if line.strip()]


def write_corpus(folder: Path) -> Path:
    """Write the sample as a corpus shard (``folder/part-00000.parquet``), as publish lays it out."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    pq.write_table(pa.Table.from_pylist(documents()), path, row_group_size=2, compression="zstd")
    return path
