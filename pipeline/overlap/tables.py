"""The evaluation sets' n-gram table, built once per process.

Two users, one cache: the overlap stage measures the corpus with a table of ``overlap.n``-grams, and
publish, with ``overlap.drop``, leaves documents out with a table of ``overlap.drop_n``-grams
(``decontaminate.py``). A process keeps the last table it built: a worker builds the publish table
for its first publish task, keeps it for the others, and trades it for the overlap table when the
overlap tasks come (the stages run one after the other), so it never holds both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.overlap.ngrams import NgramTable, parse_sets, read_set
from pipeline.runtime import StageError

BATCH_DOCS = 256  # documents per NgramTable.find_many call: its numpy work is done once per batch
_TABLE: tuple[Any, NgramTable] | None = None  # this process's table, built for the key it holds


def resolved_sets(specs: list[str]) -> list[tuple[str, str]]:
    """``overlap.sets`` as (name, absolute path) pairs: resolved in the driver, since SLURM tasks may
    start in another folder."""
    return [(name, str(Path(path).resolve())) for name, path in parse_sets(specs)]


def ngram_table(sets: list[tuple[str, str]], text_field: str, n: int) -> NgramTable:
    """The table of ``sets`` ((name, path) pairs), built once per process: a worker builds it for
    its first task and keeps it for the others (a changed file, by size or time, builds it anew).
    A set file that cannot be read raises ``StageError`` naming ``overlap.sets``."""
    global _TABLE
    stamps = []
    for _, path in sets:
        stat = Path(path).stat() if Path(path).is_file() else None
        stamps.append((stat.st_size, stat.st_mtime_ns) if stat else None)
    key = (tuple(sets), tuple(stamps), text_field, n)
    if _TABLE is None or _TABLE[0] != key:
        try:
            evalsets = [read_set(name, path, text_field) for name, path in sets]
        except ValueError as err:
            raise StageError(f"overlap.sets: {err}") from None
        _TABLE = None  # the old table goes before the new one is built
        _TABLE = (key, NgramTable.build(evalsets, n))
    return _TABLE[1]
