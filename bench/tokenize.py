"""Tokenize throughput: the tokenize stage beside a single-thread tiktoken ``encode_ordinary`` loop.

    python bench/tokenize.py [--docs 40000] [--workers 2] [--repeat 3]

Documents: the English paragraphs of the extraction test corpus (``tests/pages.py``) lengthened to a
log-normal size around WebText's ~5 KB (``bench/dedup.py``'s documents), written as publish writes
the corpus (``corpus/*.parquet``, zstd, row groups of ``publish.row_group_rows`` documents). On the
same documents:

- baseline: ``encode_ordinary`` in a loop, one thread, over the texts already in memory, with the
  GPT-2 encoding ``model/base/tokenizer.py`` builds offline (built before timing);
- ours: the tokenize stage as a user runs it (``executor=local`` with ``--workers`` workers, the
  default ``tokenize`` config: 16 tasks, 0.5% to val): Parquet reads, encoding, the split, llm.c
  shards written. Its time is the tasks' own, from their completion markers (the first start to the
  last end): the pool's start-up (interpreters and imports, about a second) is left out, as a real
  task of ~500,000 documents makes it nothing; each worker's loading of the encoding (~0.3 s) is in.

Both count the same tokens (the stage's counts less its ``<|endoftext|>`` separators). Prints
tokens/s of each (best of ``--repeat``), ours also with the pool's start-up, and ours as a multiple
of the loop. In the table of ``bench/run.py``: the same on 16,000 documents, or on 40,000 with
``--full`` (issue 14's goal: >= 1.8x on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq

from bench.dedup import documents
from bench.measure import Measure
from model.base.tokenizer import gpt2_encoding
from pipeline.config import PublishConfig
from pipeline.executor import LocalExecutor
from pipeline.tokenize import TokenizeStage
from tests.helpers import pipeline_config

WORKERS = 2


def write_corpus(workdir: Path, texts: list[str]) -> None:
    """``workdir/corpus/part-00000.parquet`` as publish writes it (the columns tokenize reads)."""
    (workdir / "corpus").mkdir(parents=True)
    table = pa.Table.from_pylist([{"id": f"{i:016x}", "url": f"https://site{i % 50}.example/{i}", "text": t}
                                  for i, t in enumerate(texts)])
    pq.write_table(table, workdir / "corpus" / "part-00000.parquet", compression="zstd",
                   row_group_size=PublishConfig().row_group_rows)


def loop(texts: list[str]) -> tuple[float, int]:
    """Seconds of one ``encode_ordinary`` loop over ``texts``, and the tokens it made."""
    encoding = gpt2_encoding()
    start = time.perf_counter()
    tokens = sum(len(encoding.encode_ordinary(text)) for text in texts)
    return time.perf_counter() - start, tokens


def stage(workdir: Path, workers: int) -> tuple[float, float, int]:
    """One run of the tokenize stage on ``workdir/corpus``: the tasks' seconds (first start to last
    end), the whole run's seconds (pool start-up included), and the document tokens written."""
    shutil.rmtree(workdir / "tokens", ignore_errors=True)
    cfg = pipeline_config(workdir, workers)
    tokenize = TokenizeStage(cfg)
    start = time.perf_counter()
    LocalExecutor(cfg.executor).run([tokenize])
    whole = time.perf_counter() - start
    markers = [json.loads(tokenize.paths.done(i).read_text()) for i in range(tokenize.num_tasks)]
    tasks = (max(m["started_at"] + m["elapsed_s"] for m in markers) - min(m["started_at"] for m in markers))
    stats = json.loads(tokenize.paths.stats.read_text())
    tokens = sum(stats["metrics"].get(f"{split}_tokens", 0) for split in ("train", "val"))
    return tasks, whole, tokens - stats["counts"]["kept"]  # less one <|endoftext|> per document


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    texts = documents(40_000 if full else 16_000)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        write_corpus(workdir, texts)
        gpt2_encoding()  # built (and checked) before the loop is timed

        def ours() -> float:
            seconds, _, tokens = stage(workdir, WORKERS)
            return tokens / seconds

        def baseline() -> float:
            seconds, tokens = loop(texts)
            return tokens / seconds

        yield [Measure(f"tokenize stage, {WORKERS} workers", "tokens/s", ours, baseline,
                       "tiktoken encode_ordinary loop, 1 thread", goal=1.8, issue=14)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    texts = documents(args.docs)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        write_corpus(workdir, texts)
        gpt2_encoding()
        loops = [loop(texts) for _ in range(args.repeat)]
        runs = [stage(workdir, args.workers) for _ in range(args.repeat)]
    tokens = loops[0][1]
    assert all(run[2] == tokens for run in runs), f"the stage wrote {runs[0][2]:,}, the loop {tokens:,}"
    print(f"{len(texts):,} documents, {sum(map(len, texts)) / len(texts) / 1000:.1f} KB and "
          f"{tokens / len(texts):,.0f} tokens on average; {tokens:,} tokens")
    rates = {"tiktoken encode_ordinary loop, 1 thread": tokens / min(s for s, _ in loops),
             f"ours, {args.workers} workers (tasks' time)": tokens / min(r[0] for r in runs),
             f"ours, {args.workers} workers (pool start-up included)": tokens / min(r[1] for r in runs)}
    bare = rates["tiktoken encode_ordinary loop, 1 thread"]
    for name, rate in rates.items():
        print(f"{name:52s} {rate:12,.0f} tokens/s   {rate / bare:5.2f}x")
    print("target: ours >= 1.8x the loop on 2 cores")


if __name__ == "__main__":
    main()
