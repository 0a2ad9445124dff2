"""Links reader throughput: ours beside a plain ``json.loads`` line loop, on the same dump.

    python bench/links.py [--lines 100000] [--repeat 3]

Builds a Pushshift-like dump (realistic 1-3 KB submission lines with the full field set, zstd with
a 2**31 window as real dumps have) and times, in this one process (so per core):

- baseline: zstandard's stream reader (window allowed) -> TextIOWrapper -> json.loads per line;
- ours, reader: pipeline.links.dumps (block reads, byte-level line split, msgspec decoding);
- ours, map task: the whole links map task (rules, normalization, month report, sorted runs).

Prints submissions/s for each and the ratios to the baseline (best of --repeat runs).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import runtime  # noqa: E402
from pipeline.config import LinksConfig, LocalExecutorConfig, PipelineConfig, PushshiftSourceConfig  # noqa: E402
from pipeline.links.dumps import MAX_WINDOW, decode_line, iter_blocks, iter_lines  # noqa: E402
from pipeline.links.stage import LinksMapStage  # noqa: E402
from tests.dumps import lines, submission, write_zst  # noqa: E402


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
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        data = lines(submission(rng, i) for i in range(args.lines))
        path = write_zst(Path(folder) / "RS_2017-01.zst", data)
        print(f"dump: {args.lines:,} submissions, {len(data) / args.lines:,.0f} B/line, "
              f"{len(data) / 2**20:,.0f} MiB raw, {path.stat().st_size / 2**20:,.1f} MiB zstd "
              f"(window 2**31)")
        results = {}
        for name, fn in [("baseline json.loads loop", baseline), ("ours: reader", ours_reader),
                         ("ours: whole map task", ours_map_task)]:
            seconds, count = timed(fn, path, args.repeat)
            assert count == args.lines, (name, count)
            results[name] = args.lines / seconds
        base = results["baseline json.loads loop"]
        for name, rate in results.items():
            print(f"{name:28s} {rate:12,.0f} submissions/s per core   {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
