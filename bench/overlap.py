"""Overlap throughput: the corpus pass against an evaluation n-gram table, beside reading the same
Parquet files and splitting their words.

    python bench/overlap.py [--docs 8000] [--eval-docs 600] [--n 8] [--repeat 3]

Corpus: ``--docs`` documents of about 5 KB of English paragraphs (``bench/dedup.py``'s documents),
written as publish writes the corpus (``bench/tokenize.py``'s ``write_corpus``: zstd Parquet, the
corpus's row groups). Evaluation set: ``--eval-docs`` examples in the corpus's vocabulary, mostly not
its text (``evaluation``: shuffled paragraphs, two planted as they are). In this one process
(per core), from the Parquet file:

- baseline: read the ``text`` column batch by batch and split every document into the paper's
  words (``words``: lower-case, ``re.findall(r"[a-z0-9]+")``), nothing else;
- ours: the same reads, then ``NgramTable.find_many`` on each batch (the words, their ids, the
  hashed windows, the bitmap, the lookups, the exact checks), and the union of what was found.

Prints MB of text per second for each (best of ``--repeat``), ours as a multiple of the baseline, and
the table's memory per million distinct evaluation n-grams. In the table of ``bench/run.py``: 4,000
documents (``--full``: 16,000); issue 29 asks for >= 10 MB/s per core and >= 0.5x the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow.parquet as pq

from bench.dedup import PARAGRAPHS, documents
from bench.measure import Measure
from bench.tokenize import write_corpus
from pipeline.overlap.ngrams import EvalSet, NgramTable, distinct, words


def text_bytes(path: Path) -> int:
    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    return sum(len(t.encode("utf-8")) for t in texts)


def baseline(path: Path) -> int:
    """Read and split: the words of every document."""
    count = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
        for text in batch.column(0).to_pylist():
            count += len(words(text))
    return count


def ours(path: Path, table: NgramTable) -> int:
    """Read, split, look up: the distinct evaluation n-grams found."""
    found: list[np.ndarray] = []
    for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
        found.extend(table.find_many(batch.column(0).to_pylist()))
    return len(distinct(np.concatenate(found))) if found else 0


def rate(run: Callable[[], int], size: int) -> float:
    start = time.perf_counter()
    run()
    return size / 1e6 / (time.perf_counter() - start)


def evaluation(count: int, seed: int = 99) -> list[str]:
    """``count`` examples of the corpus's language but mostly not its text: paragraphs of its pool (77)
    with their words shuffled, two left as they are (planted: the corpus holds a few percent of the
    set's n-grams, as WebText holds a few percent of the paper's test sets')."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        paragraph = rng.choice(PARAGRAPHS).split()
        if i % 2500:
            rng.shuffle(paragraph)
        out.append(" ".join(paragraph))
    return out


@contextmanager
def setup(docs: int, eval_docs: int, n: int) -> Iterator[tuple[Path, NgramTable, int]]:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        write_corpus(workdir, documents(docs))
        path = workdir / "corpus" / "part-00000.parquet"
        table = NgramTable.build([EvalSet("bench", "-", evaluation(eval_docs))], n)
        yield path, table, text_bytes(path)


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    with setup(16_000 if full else 4_000, 5000, 8) as (path, table, size):
        ours(path, table)  # first-use costs out of the timing
        yield [Measure("overlap: corpus pass, 8-grams, 1 core", "MB/s",
                       lambda: rate(lambda: ours(path, table), size),
                       lambda: rate(lambda: baseline(path), size),
                       "read Parquet + split words", goal=0.5, issue=29)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=8000)
    parser.add_argument("--eval-docs", type=int, default=5000)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with setup(args.docs, args.eval_docs, args.n) as (path, table, size):
        print(f"corpus {size / 1e6:.1f} MB of text in {args.docs:,} documents; table: "
              f"{table.num_unique:,} distinct {args.n}-grams, {table.nbytes / 2**20:.1f} MiB "
              f"({(table.nbytes - table.bitmap.nbytes) / table.num_unique * 1e6 / 2**20:.0f} MiB per "
              f"million n-grams beside the fixed {table.bitmap.nbytes / 2**20:.0f} MiB bitmap)")
        found = ours(path, table)
        print(f"distinct table n-grams found in the corpus: {found:,} ({found / table.num_unique:.1%})")
        best_ours = max(rate(lambda: ours(path, table), size) for _ in range(args.repeat))
        best_base = max(rate(lambda: baseline(path), size) for _ in range(args.repeat))
        print(f"ours {best_ours:.1f} MB/s; read + split words {best_base:.1f} MB/s: "
              f"{best_ours / best_base:.2f}x (goals: >= 10 MB/s, >= 0.5x)")


if __name__ == "__main__":
    main()
