"""Links reader throughput: ours beside a plain ``json.loads`` line loop, on the same dump.

    python bench/links.py [--lines 100000] [--repeat 3]

Builds a Pushshift-like dump (realistic 1-3 KB submission lines with the full field set, zstd with
a 2**31 window as real dumps have) and times, in this one process (so per core):

- baseline: zstandard's stream reader (window allowed) -> TextIOWrapper -> json.loads per line;
- ours, reader: pipeline.links.dumps (block reads, byte-level line split, msgspec decoding);
- ours, map task: the whole links map task (rules, normalization, month report, sorted runs).

Prints submissions/s for each and the ratios to the baseline (best of --repeat runs). In the table
of ``bench/run.py``: our reader beside the baseline (issue 3's goal, >= 2.0x), on 50,000 lines, or
on 100,000 with ``--full``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import io
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import zstandard

from bench.measure import Measure
from pipeline import runtime
from pipeline.config import LinksConfig, LocalExecutorConfig, PipelineConfig, PushshiftSourceConfig
from pipeline.links.dumps import MAX_WINDOW, decode_line, iter_blocks, iter_lines
from pipeline.links.stage import LinksMapStage
from tests.dumps import lines, submission, write_zst


def baseline(path: Path) -> int:
    n = 0
    with open(path, "rb") as raw:
        reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(raw)
        for line in io.TextIOWrapper(reader, encoding="utf-8"):
            json.loads(line)
            n += 1
    return n


def ours_reader(path: Path) -> int:
    n = 0
    for line in iter_lines(iter_blocks(path, LinksConfig().read_bytes)):
        decode_line(line)
        n += 1
    return n


def ours_map_task(path: Path) -> int:
    with tempfile.TemporaryDirectory() as workdir:
        cfg = PipelineConfig(workdir=workdir, stages=["links"], executor=LocalExecutorConfig(),
                             source=PushshiftSourceConfig(files=[str(path)]))
        stage = LinksMapStage(cfg)
        runtime.prepare(stage)
        stats = runtime.run_task(stage, 0)
        return sum(stats["counts"].values())


def dump(folder: Path, n: int) -> tuple[Path, int]:
    """A long-window zstd dump of ``n`` realistic submission lines, and its raw size."""
    rng = random.Random(0)
    data = lines(submission(rng, i) for i in range(n))
    return write_zst(Path(folder) / "RS_2017-01.zst", data), len(data)


def rate(fn: Callable[[Path], int], path: Path, n: int) -> float:
    """Submissions/s of one run of ``fn`` over the dump of ``n`` lines."""
    start = time.perf_counter()
    count = fn(path)
    seconds = time.perf_counter() - start
    assert count == n, (fn.__name__, count)
    return n / seconds


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    n = 100_000 if full else 50_000
    with tempfile.TemporaryDirectory() as folder:
        path, _ = dump(Path(folder), n)
        yield [Measure("links: dump reader", "submissions/s", lambda: rate(ours_reader, path, n),
                       lambda: rate(baseline, path, n), "json.loads line loop", goal=2.0, issue=3)]


def timed(fn, path: Path, repeat: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn(path)
        best = min(best, time.perf_counter() - start)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, size = dump(Path(folder), args.lines)
        print(f"dump: {args.lines:,} submissions, {size / args.lines:,.0f} B/line, "
              f"{size / 2**20:,.0f} MiB raw, {path.stat().st_size / 2**20:,.1f} MiB zstd "
              f"(window 2**31)")
        results = {}
        for name, fn in [("baseline json.loads loop", baseline), ("ours: reader", ours_reader),
                         ("ours: whole map task", ours_map_task)]:
            seconds, count = timed(fn, path, args.repeat)
            assert count == args.lines, (name, count)
            results[name] = args.lines / seconds
        base = results["baseline json.loads loop"]
        for name, speed in results.items():
            print(f"{name:28s} {speed:12,.0f} submissions/s per core   {speed / base:5.2f}x")


if __name__ == "__main__":
    main()
