"""Every benchmark in bench/, as one table: measure, ours, baseline, ratio, goal, met or not.

    python bench/run.py [--full] [--only NAME ...] [--pairs N] [--json PATH]     (make bench)

Short settings by default (smaller inputs, 3 pairs: about 4 minutes on 2 cores), each script's own
full settings with ``--full`` (5 pairs: about 35 minutes, most of it extract's). For every measure,
ours and the baseline run interleaved (A B, B A, A B, ...: bench/measure.py) on the same inputs in
this one session; the ratio is the median of the per-pair ratios ours / baseline and the spread
their min-max. A verdict marked ``*`` rests on the median: some pairs fell on the other side of the
goal. The benches run in data-flow order (NAMES below); ``--only`` picks some of them. A bench that
fails is reported below the table and the others still run; Ctrl-C prints the table so far.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import importlib
import json
import logging
import os
import time

from bench.measure import Measure, Result, compare, figure

NAMES = ("links", "fetch", "archive", "extract", "dedup", "overlap", "tokenize", "train", "optim", "sample",
         "harness")
log = logging.getLogger("webtext.bench")


def run_bench(name: str, full: bool, pairs: int, results: list[Result],
              errors: list[tuple[str, str]]) -> None:
    """One bench's measures: each result appended to ``results`` as it is done, (measure, error) to
    ``errors`` for each that failed."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{name}")
        with module.measures(full) as measures:
            log.info("%s: inputs ready in %.0f s; %d measure(s)", name, time.perf_counter() - start,
                     len(measures))
            for measure in measures:
                try:
                    results.append(compare(measure, pairs))
                except Exception as err:  # one failing measure leaves the rest of the table standing
                    log.exception("%s failed", measure.name)
                    errors.append((measure.name, f"{type(err).__name__}: {err}"))
    except Exception as err:
        log.exception("bench %s failed", name)
        errors.append((name, f"{type(err).__name__}: {err}"))
    log.info("%s: done in %.0f s", name, time.perf_counter() - start)


def verdict(result: Result) -> str:
    met = result.met
    text = "-" if met is None else "yes" if met else "NO"
    return text + ("*" if result.straddles else "")


def table(results: list[Result], errors: list[tuple[str, str]]) -> str:
    """The results as aligned plain-text columns, errors below them."""
    head = ("measure", "vs", "unit", "ours", "baseline", "ratio", "spread", "goal", "met", "issue")
    rows = []
    for r in results:
        m: Measure = r.measure
        rows.append((m.name, m.baseline_name, m.unit, figure(r.ours_median),
                     figure(r.baseline_median), f"{r.ratio:.2f}x",
                     f"{min(r.ratios):.2f}-{max(r.ratios):.2f}x", m.goal_text(), verdict(r),
                     f"#{m.issue}" if m.issue else "-"))
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    numeric = {3, 4, 5, 6}  # right-aligned
    lines = []
    for row in [head, *rows]:
        cells = [cell.rjust(width) if i in numeric else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"FAILED {name}: {error}" for name, error in errors]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="each script's full settings (slow)")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help=f"only these benches, of: {', '.join(NAMES)}")
    parser.add_argument("--pairs", type=int, help="interleaved pairs per measure (default 3, 5 with --full)")
    parser.add_argument("--json", type=Path, help="also write every per-pair figure here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("webtext").setLevel(logging.WARNING)  # the stages' own progress lines
    log.setLevel(logging.INFO)
    pairs = args.pairs or (5 if args.full else 3)
    names = [n for n in NAMES if not args.only or n in args.only]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    results: list[Result] = []
    errors: list[tuple[str, str]] = []
    interrupted = False
    try:
        for name in names:
            run_bench(name, args.full, pairs, results, errors)
    except KeyboardInterrupt:  # Ctrl-C: the table so far
        interrupted = True
        errors.append(("run", "interrupted (Ctrl-C); the table holds the measures finished before"))
    minutes = (time.perf_counter() - start) / 60
    print(table(results, errors))
    print(f"\n{'full' if args.full else 'short'} settings, {pairs} pairs per measure, {minutes:.1f} min; "
          f"{os.cpu_count()} cores, load average {load:.2f} at the start and {os.getloadavg()[0]:.2f} at "
          f"the end. ratio: median of the per-pair ratios ours/baseline (runs interleaved); spread: "
          f"their min-max; *: some pairs disagree with the verdict.")
    if args.json:
        args.json.write_text(json.dumps([
            {"measure": r.measure.name, "baseline": r.measure.baseline_name, "unit": r.measure.unit,
             "ours": r.ours, "baseline_figures": r.baseline, "ratios": r.ratios, "ratio": r.ratio,
             "goal": r.measure.goal_text(), "met": r.met, "issue": r.measure.issue} for r in results
        ] + [{"measure": name, "error": error} for name, error in errors], indent=1))
    sys.exit(130 if interrupted else 1 if errors else 0)


if __name__ == "__main__":
    main()
