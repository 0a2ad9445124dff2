"""MinHash signature throughput: ours beside datasketch's per-shingle and bulk paths, from text.

    python bench/dedup.py [--docs 2000] [--repeat 3] [--memory]

Documents are made of the extraction test corpus's English paragraphs (``tests/pages.py``), lengthened
to a log-normal size around WebText's ~5 KB per document. Each method is timed from the text, in this
one process (so per core), with the same word 5-gram shingles, ``num_perm`` and seed:

- ``MinHash.update``: one datasketch ``update`` call per shingle (its default scheme, affine32, with
  its default sha1 32-bit hash of the shingle's bytes); the shingles from ``shingle_strings``;
- ``MinHash.bulk``: datasketch's batch path over the same shingles (``update_batch`` per document:
  one Python hash call per shingle, then the permutations applied with numpy);
- ours: ``MinHasher`` (normalization, numpy word and shingle hashes, datasketch's affine32
  permutations applied to the whole document in cache-sized chunks).

Prints documents/s for each (best of ``--repeat``) and ours as a multiple of each. In the table of
``bench/run.py``: ours beside each of the two (issue 6's goals, >= 10x and >= 2x), on 1,000 documents
(the per-shingle loop on a tenth of them), or 2,000 with ``--full``.

``--memory`` runs the whole dedup stage (``executor=local``, 2 workers) on three corpus sizes
(4,000, 16,000 and 64,000 documents, a fifth of them near copies) with the tasks scaled to them (1,000
documents per shard; bucket ranges and graph partitions grown in step), each in a fresh process,
and prints the peak resident memory of the largest task process.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from datasketch import MinHash

from bench.measure import Measure
from pipeline.dedup.minhash import MinHasher, shingle_strings
from tests import pages

PARAGRAPHS = [b for story, _, _ in pages.ARTICLES if story.lang == "en" for b in story.body
              if not b.startswith(("## ", "> ", "@"))]


def documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        target = min(50_000.0, max(800.0, rng.lognormvariate(math.log(4500), 0.6)))
        paragraphs: list[str] = []
        while sum(map(len, paragraphs)) < target:
            paragraphs.append(rng.choice(PARAGRAPHS))
        docs.append("\n\n".join(paragraphs))
    return docs


def per_shingle(docs: list[str], num_perm: int) -> None:
    for doc in docs:
        m = MinHash(num_perm=num_perm, seed=1)
        for shingle in shingle_strings(doc):
            m.update(shingle)


def bulk(docs: list[str], num_perm: int) -> None:
    MinHash.bulk([shingle_strings(doc) for doc in docs], num_perm=num_perm, seed=1)


def ours(docs: list[str], num_perm: int) -> None:
    hasher = MinHasher(num_perm=num_perm, seed=1)
    for doc in docs:
        hasher(doc)


def best_rate(fn: Callable[[list[str], int], None], docs: list[str], num_perm: int, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn(docs, num_perm)
        best = min(best, time.perf_counter() - start)
    return len(docs) / best


@contextmanager
def measures(full: bool, num_perm: int = 128) -> Iterator[list[Measure]]:
    docs = documents(2000 if full else 1000)
    few = docs[: len(docs) // 10]  # per-shingle updates are slow: timed on a tenth of the documents

    def rate(fn: Callable[[list[str], int], None], batch: list[str]) -> Callable[[], float]:
        return lambda: best_rate(fn, batch, num_perm, repeat=1)

    yield [Measure("dedup: MinHash signatures", "docs/s", rate(ours, docs), rate(per_shingle, few),
                   "datasketch MinHash.update per shingle", goal=10.0, issue=6),
           Measure("dedup: MinHash signatures", "docs/s", rate(ours, docs), rate(bulk, docs),
                   "datasketch MinHash.bulk", goal=2.0, issue=6)]


def memory_run(docs: int) -> None:
    """One dedup run on ``docs`` documents in a fresh workdir; prints the largest child's peak RSS."""
    import random as _random
    import resource
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.config import (
        DedupConfig,
        LinksConfig,
        LocalExecutorConfig,
        PipelineConfig,
        PushshiftSourceConfig,
    )
    from pipeline.executor import LocalExecutor
    from pipeline.extract.stage import DOCS_SCHEMA, doc_id
    from pipeline.registry import build

    shards = max(1, docs // 1000)
    rng = _random.Random(docs)
    vocabulary = [f"{rng.getrandbits(36):x}" for _ in range(50000)]
    workdir = Path(tempfile.mkdtemp())
    (workdir / "docs").mkdir()
    originals: list[list[str]] = []
    for shard in range(shards):
        rows = []
        for i in range(1000):
            if originals and rng.random() < 0.2:  # a near copy of an earlier document
                words = list(rng.choice(originals))
                for j in rng.sample(range(len(words)), 5):
                    words[j] = rng.choice(vocabulary)
            else:
                words = [rng.choice(vocabulary) for _ in range(rng.randint(200, 1200))]
                if len(originals) < 5000:
                    originals.append(words)
            url = f"http://site{shard}.example/{i}"
            rows.append({"id": doc_id(url), "url": url, "domain": f"site{shard}.example",
                         "text": " ".join(words), "created_utc": 1_500_000_000 + rng.randrange(10**7),
                         "score": 5, "n_chars": 0})
        pq.write_table(pa.Table.from_pylist(rows, schema=DOCS_SCHEMA),
                       workdir / "docs" / f"part-{shard:05d}.parquet")
    scale = max(1, shards // 4)
    dedup = DedupConfig(bucket_ranges=scale, components_partitions=2 * scale, max_rounds=6)
    cfg = PipelineConfig(workdir=str(workdir), stages=["dedup"], executor=LocalExecutorConfig(workers=2),
                         source=PushshiftSourceConfig(), links=LinksConfig(partitions=shards), dedup=dedup)
    start = time.perf_counter()
    LocalExecutor(cfg.executor).run(build(cfg.stages, cfg))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stats = json.loads((workdir / "dedup" / "stats.json").read_text())
    elapsed = time.perf_counter() - start
    print(f"{docs:7d} documents, {shards:3d} shards, bucket_ranges={scale:2d}, components_partitions="
          f"{2 * scale:2d}: peak task RSS {peak:6.1f} MB; {elapsed:5.1f} s; {stats['counts']}")
    shutil.rmtree(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--memory", action="store_true", help="peak task memory at three corpus sizes")
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        memory_run(args.memory_run)
        return
    if args.memory:
        import subprocess

        for docs in (4000, 16000, 64000):
            subprocess.run([sys.executable, __file__, "--memory-run", str(docs)], check=True)
        return
    docs = documents(args.docs)
    shingles = sum(len(set(shingle_strings(d))) for d in docs[:200]) / min(200, len(docs))
    print(f"{len(docs)} documents, {sum(map(len, docs)) / len(docs) / 1000:.1f} KB and ~{shingles:.0f} "
          f"distinct shingles on average; num_perm={args.num_perm}")
    # per-shingle updates are slow: time them on a tenth of the documents
    rates = {"datasketch MinHash.update per shingle": best_rate(per_shingle, docs[: max(1, len(docs) // 10)],
                                                                args.num_perm, args.repeat),
             "datasketch MinHash.bulk": best_rate(bulk, docs, args.num_perm, args.repeat),
             "ours (MinHasher)": best_rate(ours, docs, args.num_perm, args.repeat)}
    for name, rate in rates.items():
        print(f"{name:40s} {rate:9.1f} docs/s")
    mine, update = rates["ours (MinHasher)"], rates["datasketch MinHash.update per shingle"]
    print(f"ours: {mine / update:.1f}x MinHash.update (target >= 10x), "
          f"{mine / rates['datasketch MinHash.bulk']:.2f}x MinHash.bulk (target >= 2x)")


if __name__ == "__main__":
    main()
