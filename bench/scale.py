"""The rehearsal at scale: the whole flow on a synthetic Reddit and web at three sizes, measured.

    python bench/scale.py --links 400000 [--json bench/results/scale.json] [--workdir work/scale]

``--links`` is the largest size, 16S; the rehearsal runs S = links / 16, 4S and 16S (``--sizes``
picks some of them). For each size: the dumps of ``bench/synth/dump.py`` (2005-12..2017-12, the real
formats and quirks), the web of ``bench/synth/web.py`` on loopback, then each stage as its own
``python -m pipeline stages=[...]`` run (links, fetch, extract, dedup, publish, tokenize), and a few
training steps on the tokens (``python -m train``), with the same task counts at every size. Each
run is measured as a whole process tree (``bench/treeusage.py``): wall time, CPU core-seconds, the
peak resident set of its largest process (the driver, a task, an extraction process); plus the
bytes the stage wrote and its items in and out by reason.

Results go to ``<workdir>/<links>/rehearsal.json`` as each stage finishes, so a rerun of the same
command goes on where it stopped (a stage cut short is removed and run again: its figures are of
one whole run). ``--json PATH`` writes every size's results, the 16S / S ratios and the checks (the
shape: ``{"sizes": {"<links>": {"<stage>": {"wall_s", "cpu_s_per_item", "peak_rss_mb",
"items_in", "items_out", ...}}}, "ratios": ..., "checks": ...}``), and a Markdown table is printed.

The checks (issue 27): CPU per item at 16S within 1.15x of S, peak RSS within 1.25x, fetch's wall
time within 1.2x of its floor (the larger of the largest host's URLs x the per-host delay and the
URLs over the measured pages/s of this machine: client and server CPU over its cores), nothing lost
(the links funnel equals the dumps' truth line for line, fetch's outcomes equal the plan's), the
corpus loads with ``datasets`` and its card's counts equal the stats, and training starts in the same
time at every size. Progress: every stage logs a line per 30 s with items done of items to do, the
rate and the time left (``pipeline/executor.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import json
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.synth import web
from bench.synth.dump import DumpTruth, write_dumps
from bench.synth.plan import Plan
from model.base.files import atomic_write
from pipeline.paths import STAGE_FOLDERS

log = logging.getLogger("webtext.bench.scale")
STAGES = ("links", "fetch", "extract", "dedup", "publish", "tokenize")
CHECK_CPU, CHECK_RSS, CHECK_FLOOR, CHECK_START = 1.15, 1.25, 1.2, 1.5


@dataclass(frozen=True)
class Settings:
    """What every size shares: task counts, the crawl's politeness and limits, the training run."""

    seed: int = 7
    port: int = 18400
    partitions: int = 8  # links.partitions: the task count of fetch, extract, publish, two dedup passes
    workers: int = 2  # executor.workers
    # Above a loopback request's latency under load (0.11 s at 16S with all tasks running), as a
    # real crawl's delay (seconds) is above a real host's: the largest host is then paced by the delay,
    # which the floor assumes, not by how fast this machine answers (0.05 s measured 1.7x the floor).
    per_host_delay_s: float = 0.25
    concurrency: int = 32  # fetch.concurrency per task: all tasks together keep 256 requests in flight
    # fetch.timeout_s; the web's timeout links answer 3 s later. Not less: at 2 s, 183 of the 16S
    # run's 400,000 URLs (0.05%) timed out that the plan serves, the one-process web server being
    # saturated by 256 requests in flight on the two cores it shares with the crawler.
    timeout_s: float = 4.0
    max_bytes: int = 1 << 20  # fetch.max_bytes; the web's oversized pages are 1.2 MiB
    tokenize_tasks: int = 4
    val_fraction: float = 0.05  # tokenize.val_fraction (small sizes need a larger one for any val)
    train_steps: int = 20

    def pipeline_args(self, folder: Path, stage: str) -> list[str]:
        # Fetch tasks wait on sockets and the politeness delay, not on a core: all of them run at
        # once, as on a cluster with a core per task; the other stages get one worker per core.
        workers = self.partitions if stage == "fetch" else self.workers
        return [f"workdir={folder}", f"source.files=[{folder / 'dumps' / 'RS_*'}]", "links=webtext",
                f"links.partitions={self.partitions}", f"executor.workers={workers}", f"stages=[{stage}]",
                "fetch.allow_private=true", "fetch.hosts=['*.test=127.0.0.1']",
                f"fetch.per_host_delay_s={self.per_host_delay_s}", f"fetch.timeout_s={self.timeout_s}",
                f"fetch.concurrency={self.concurrency}",
                f"fetch.max_bytes={self.max_bytes}", "dedup.components_partitions=4",
                "dedup.bucket_ranges=2", f"tokenize.tasks={self.tokenize_tasks}",
                f"tokenize.val_fraction={self.val_fraction}"]

    def train_args(self, folder: Path) -> list[str]:
        steps = self.train_steps
        return ["model=gpt2-tiny", f"data.dir={folder / 'tokens'}", f"out_dir={folder / 'run'}",
                "device=cpu", f"max_steps={steps}", "micro_batch_size=8", "total_batch_tokens=1024",
                f"eval_every_steps={steps}", f"checkpoint_every_steps={steps}", "eval_tokens=1024",
                "log_every_steps=1", "eval.sample_tokens=8", f"optim.warmup_steps={min(10, steps)}"]


# --- measuring one run ----------------------------------------------------------------------------


def measured(command: list[str], log_path: Path) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """Run ``command`` under ``bench/treeusage.py``: its usage, and its output lines with the seconds
    since the start at which each arrived (the output also goes to ``log_path``)."""
    usage_path = log_path.with_suffix(".usage.json")
    argv = [sys.executable, "-m", "bench.treeusage", str(usage_path), "--", *command]
    lines: list[tuple[float, str]] = []
    start = time.monotonic()
    # this checkout's code, whatever the environment installed (a rehearsal runs from a worktree)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    with open(log_path, "w") as out, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, cwd=ROOT, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip("\n")))
            out.write(line)
            out.flush()
            if "tasks done," in line:  # the driver's progress line, every 30 s
                log.info("  %s", line.rstrip("\n")[-160:])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({proc.returncode}); see {log_path}")
    return json.loads(usage_path.read_text()), lines


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def folder_bytes(folder: Path) -> int:
    """Bytes of the files a stage wrote, without its bookkeeping (``_state``)."""
    total = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "_state"]
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def stats(folder: Path, stage: str) -> dict[str, Any]:
    return json.loads((folder / STAGE_FOLDERS[stage] / "stats.json").read_text())


# --- one size -------------------------------------------------------------------------------------


class Size:
    """One size of the rehearsal: its folder, plan, dumps and the figures measured so far."""

    def __init__(self, root: Path, links: int, settings: Settings) -> None:
        self.links, self.settings = links, settings
        self.folder = root / str(links)
        self.plan = Plan(seed=settings.seed, links=links, port=settings.port)
        self.results_path = self.folder / "rehearsal.json"
        self.results: dict[str, Any] = (json.loads(self.results_path.read_text())
                                        if self.results_path.exists() else {})

    def save(self) -> None:
        atomic_write(self.results_path, json.dumps(self.results, indent=1, sort_keys=True) + "\n")

    def run(self, remeasure: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Measure each stage not measured yet, and those of ``remeasure`` again. A stage measured
        again keeps the later stages' figures only when it gave the same items out by reason (its
        output is then the one they read, written again); otherwise they are measured again too."""
        self.folder.mkdir(parents=True, exist_ok=True)
        truth = self.dumps()
        for position, stage in enumerate(STAGES):
            if stage in self.results and stage not in remeasure:
                continue
            before = self.results.get(stage)
            self.results[stage] = self.stage(stage)
            self.results[stage]["checks"] = self.stage_checks(stage, truth)
            if before is None or _outcomes(before) != _outcomes(self.results[stage]):
                for later in (*STAGES[position + 1:], "train"):  # measured on other inputs: again
                    self.results.pop(later, None)
            self.save()
        if "train" not in self.results or "train" in remeasure:
            self.results["train"] = self.train()
            self.save()
        return self.results

    def dumps(self) -> DumpTruth:
        truth_path = self.folder / "dumps" / "truth.json"
        if truth_path.exists():
            return DumpTruth.read(truth_path)
        log.info("%s links: writing the dumps", f"{self.links:,}")
        started = time.monotonic()
        truth = write_dumps(self.plan, self.folder / "dumps")
        self.results["dumps"] = {"wall_s": round(time.monotonic() - started, 1), "lines": truth.lines,
                                 "bytes": sum(truth.compressed_bytes.values())}
        self.save()
        return truth

    def stage(self, stage: str) -> dict[str, Any]:
        """Run one stage from scratch (what a cut-short run left is removed), measured."""
        for name in (STAGE_FOLDERS[stage], f"logs/{stage}"):
            shutil.rmtree(self.folder / name, ignore_errors=True)
        log.info("%s links: %s", f"{self.links:,}", stage)
        command = [sys.executable, "-m", "pipeline", *self.settings.pipeline_args(self.folder, stage)]
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        server_cpu = None
        if stage == "fetch":
            with web.running(self.plan, timeout_sleep_s=self.settings.timeout_s + 3):
                server = next(p for p in multiprocessing.active_children() if p.name == "synthetic-web")
                before = cpu_seconds(server.pid)
                usage, _ = measured(command, logs / f"rehearsal_{stage}.log")
                server_cpu = cpu_seconds(server.pid) - before
        else:
            usage, _ = measured(command, logs / f"rehearsal_{stage}.log")
        return self.figures(stage, usage, server_cpu)

    def figures(self, stage: str, usage: dict[str, float], server_cpu: float | None) -> dict[str, Any]:
        s = stats(self.folder, stage)
        counts = s["counts"]
        if stage == "links":
            reasons = {**{f"map.{k}": v for k, v in s["submissions"].items()},
                       **{f"reduce.{k}": v for k, v in counts.items()}}
            items_in = sum(s["submissions"].values())
        else:
            reasons = dict(counts)
            items_in = sum(v for k, v in counts.items() if not k.startswith("_"))
        written = folder_bytes(self.folder / STAGE_FOLDERS[stage])
        result = {"wall_s": usage["wall_s"], "cpu_s": usage["cpu_s"], "peak_rss_mb": usage["peak_rss_mb"],
                  "items_in": items_in, "items_out": counts.get("kept", 0),
                  "cpu_s_per_item": usage["cpu_s"] / max(items_in, 1), "bytes_written": written,
                  "bytes_per_item": round(written / max(items_in, 1), 1), "reasons": reasons,
                  "metrics": s.get("metrics", {}), "commit": commit()}
        if server_cpu is not None:
            result["server_cpu_s"] = round(server_cpu, 3)
            result["settings"] = {"per_host_delay_s": self.settings.per_host_delay_s,
                                  "timeout_s": self.settings.timeout_s,
                                  "concurrency": self.settings.concurrency}
        return result

    def train(self) -> dict[str, Any]:
        """A few training steps on the tokens: the time to the first step (opening the shards is
        in it), and tokens/s after."""
        shutil.rmtree(self.folder / "run", ignore_errors=True)
        log.info("%s links: train", f"{self.links:,}")
        command = [sys.executable, "-m", "train", *self.settings.train_args(self.folder)]
        usage, lines = measured(command, self.folder / "logs" / "rehearsal_train.log")
        steps = [(t, line) for t, line in lines if re.search(r"step \d+/\d+: loss", line)]
        if not steps:
            raise RuntimeError(f"no training step logged; see {self.folder / 'logs' / 'rehearsal_train.log'}")
        metrics = stats(self.folder, "tokenize")["metrics"]
        tokens = int(metrics.get("train_tokens", 0) + metrics.get("val_tokens", 0))
        trained = self.settings.train_steps * 1024
        return {"wall_s": usage["wall_s"], "cpu_s": usage["cpu_s"], "peak_rss_mb": usage["peak_rss_mb"],
                "first_step_s": round(steps[0][0], 2), "items_in": trained, "items_out": trained,
                "cpu_s_per_item": usage["cpu_s"] / trained, "corpus_tokens": tokens,
                "steps_s": round(steps[-1][0] - steps[0][0], 2), "commit": commit()}

    # --- the checks of one size ---------------------------------------------------------------------

    def stage_checks(self, stage: str, truth: DumpTruth) -> dict[str, Any]:
        if stage == "links":
            return links_checks(self.folder, truth, self.plan)
        if stage == "fetch":
            return self.fetch_checks()
        if stage == "publish":
            return corpus_checks(self.folder)
        return {}

    def fetch_checks(self) -> dict[str, Any]:
        counts = Counter({k: v for k, v in stats(self.folder, "fetch")["counts"].items() if v})
        expected = self.plan.expected_fetch()
        return {"outcomes_as_planned": counts == expected,
                "outcome_differences": {k: counts.get(k, 0) - expected.get(k, 0)
                                        for k in set(counts) | set(expected)
                                        if counts.get(k, 0) != expected.get(k, 0)},
                "largest_host_urls": self.plan.sizes[0], **self.largest_host_floor()}

    def largest_host_floor(self) -> dict[str, Any]:
        """The politeness floor of the largest host as its requests make it: each redirect hop and
        its robots.txt are requests that wait the delay too (starts are the delay apart), and a
        timeout holds the host for ``timeout_s``, a slow answer for its wait, where longer."""
        host, start = self.plan.host(0), 0
        links = [self.plan.link(i) for i in range(start, start + host.links)]
        requests = 1 + sum(1 + link.hops for link in links if link.kind != "robots")
        timeouts = sum(link.kind == "timeout" for link in links)
        slow = sum(link.kind == "slow" for link in links)
        delay = self.settings.per_host_delay_s
        floor = ((requests - timeouts - slow) * delay + timeouts * max(delay, self.settings.timeout_s)
                 + slow * max(delay, web.WebSettings().slow_s))
        return {"largest_host_requests": requests, "largest_host_timeouts": timeouts,
                "largest_host_floor_s": round(floor, 1)}


def links_checks(folder: Path, truth: DumpTruth, plan: Plan) -> dict[str, Any]:
    """Nothing lost: every dump line in the map's funnel under one reason, as the truth says; the
    NUL-prefixed line read; the unique URLs exactly the plan's."""
    s, mapped_stats = stats(folder, "links"), stats(folder, "links_map")
    mapped = {k: v for k, v in s["submissions"].items() if v}
    expected = {k: v for k, v in truth.reasons.items() if v}
    return {"lines_written": truth.lines, "lines_counted": sum(mapped.values()),
            "map_counts_as_truth": mapped == expected,
            "nul_prefixed": truth.nul_prefixed,
            "nul_prefixed_repaired": mapped_stats["metrics"].get("repaired_nul_prefix", 0),
            "unique_links": s["counts"].get("kept", 0), "unique_links_planned": plan.links}


def corpus_checks(folder: Path) -> dict[str, Any]:
    """The corpus loads with ``datasets``; the dataset card's document count equals the stats'."""
    import datasets

    files = sorted(str(p) for p in (folder / "corpus").glob("*.parquet"))
    started = time.monotonic()
    dataset = datasets.load_dataset("parquet", data_files=files, split="train",
                                    cache_dir=str(folder / "hf_cache"))
    loaded = len(dataset)
    load_s = time.monotonic() - started
    shutil.rmtree(folder / "hf_cache", ignore_errors=True)
    manifest = json.loads((folder / "corpus" / "manifest.json").read_text())
    kept = stats(folder, "publish")["counts"].get("kept", 0)
    card = (folder / "corpus" / "README.md").read_text()
    documents = manifest["documents"]
    return {"datasets_rows": loaded, "datasets_load_s": round(load_s, 2), "stats_kept": kept,
            "manifest_documents": documents,
            "card_names_the_count": f"**Documents:** {documents:,}" in card
            or f"**Documents:** {documents}" in card}



# --- over the sizes: ratios, checks, the table ---------------------------------------------------


def _outcomes(figures: dict[str, Any]) -> tuple[Any, ...]:
    """What a stage's run gave: its items out and its counts by reason."""
    return figures.get("items_out"), sorted((figures.get("reasons") or {}).items())


def commit() -> str | None:
    """The commit of the code measured (this checkout's HEAD), with "+dirty" for uncommitted edits."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def ratios(small: dict[str, Any], large: dict[str, Any]) -> dict[str, dict[str, float]]:
    """16S / S per stage: CPU per item, peak RSS, wall time, bytes per item."""
    out = {}
    for stage in (*STAGES, "train"):
        a, b = small.get(stage), large.get(stage)
        if a is None or b is None:
            continue
        out[stage] = {key: round(b[key] / a[key], 3) for key in
                      ("cpu_s_per_item", "peak_rss_mb", "wall_s", "bytes_per_item", "first_step_s")
                      if a.get(key) and b.get(key) is not None}
    return out


def floor_check(size: dict[str, Any], settings: Settings, cores: int) -> dict[str, Any]:
    """Fetch's wall time against its floor: the largest host's URLs x the delay, or the URLs over
    this machine's pages/s (cores over the client's and the server's CPU per URL)."""
    fetch = size["fetch"]
    delay = fetch.get("settings", {}).get("per_host_delay_s", settings.per_host_delay_s)
    politeness = fetch["checks"]["largest_host_urls"] * delay
    cpu_bound = (fetch["cpu_s"] + fetch.get("server_cpu_s", 0.0)) / cores
    floor = max(politeness, cpu_bound)
    # the same with the largest host's floor as its requests make it (hops, robots.txt, timeouts)
    host_floor = fetch["checks"].get("largest_host_floor_s", politeness)
    refined = max(host_floor, cpu_bound)
    return {"wall_s": fetch["wall_s"], "politeness_floor_s": round(politeness, 1),
            "cpu_floor_s": round(cpu_bound, 1), "ratio": round(fetch["wall_s"] / floor, 3),
            "holds": fetch["wall_s"] <= CHECK_FLOOR * floor, "largest_host_floor_s": host_floor,
            "ratio_to_largest_host_floor": round(fetch["wall_s"] / refined, 3)}


def largest_host_timeline(folder: Path, plan: Plan, partitions: int) -> dict[str, Any]:
    """When the largest host's requests ran within its fetch task (from the fetch index and the
    task's marker): it must start with the task and end with it. ``serial_s`` is the sum of its
    URLs' fetch times (one request in flight per host): the host's own floor, latency included,
    where the delay alone gives ``largest_host_floor_s``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.links.rules import partition_of

    host = plan.host(0)
    part = partition_of(host.name, partitions)
    links = pq.read_table(folder / "links" / f"part-{part:05d}.parquet", columns=["host"])
    index = pq.read_table(folder / "fetch" / "index" / f"{part:05d}.parquet",
                          columns=["fetched_at", "elapsed_s"])
    index = index.filter(pc.equal(links.column("host"), host.name))
    marker = json.loads((folder / "fetch" / "_state" / "done" / f"{part:05d}.json").read_text())
    started = marker["started_at"]
    first = min(index.column("fetched_at").to_pylist()) - started
    last = max(a + e for a, e in zip(index.column("fetched_at").to_pylist(),
                                     index.column("elapsed_s").to_pylist(), strict=True)) - started
    return {"host": host.name, "task": part, "urls": index.num_rows, "task_s": marker["elapsed_s"],
            "first_request_s": round(first, 2), "last_answer_s": round(last, 2),
            "serial_s": round(sum(index.column("elapsed_s").to_pylist()), 1),
            "busy_start_to_end": first <= 0.05 * marker["elapsed_s"] + 5
            and last >= 0.95 * marker["elapsed_s"] - 5}


def checks(sizes: dict[int, dict[str, Any]], settings: Settings, root: Path | None = None) -> dict[str, Any]:
    """The issue's "what must hold", over the sizes measured."""
    cores = os.cpu_count() or 1  # the machine the client and the server share
    found: dict[str, Any] = {"floor": {str(n): floor_check(r, settings, cores) for n, r in sizes.items()
                                       if "fetch" in r}}
    if root is not None:
        found["largest_host"] = {
            str(n): largest_host_timeline(root / str(n), Plan(settings.seed, n, settings.port),
                                          settings.partitions)
            for n, r in sizes.items() if "fetch" in r and (root / str(n) / "fetch" / "index").is_dir()}
        for n, host in found["largest_host"].items():  # the floor with the host's latency in it
            floor = found["floor"][n]
            floor["ratio_to_largest_host_serial"] = round(
                floor["wall_s"] / max(host["serial_s"], floor["cpu_floor_s"]), 3)
    found["nothing_lost"] = {str(n): {"links": r["links"]["checks"], "fetch": r["fetch"]["checks"]}
                             for n, r in sizes.items() if "links" in r and "fetch" in r}
    found["corpus"] = {str(n): r["publish"]["checks"] for n, r in sizes.items() if "publish" in r}
    if len(sizes) >= 2:
        small, large = sizes[min(sizes)], sizes[max(sizes)]
        found["ratios"] = r = ratios(small, large)
        found["cpu_flat"] = {st: v["cpu_s_per_item"] <= CHECK_CPU for st, v in r.items()
                             if "cpu_s_per_item" in v and st != "train"}
        found["memory_bounded"] = {st: v["peak_rss_mb"] <= CHECK_RSS for st, v in r.items()
                                   if "peak_rss_mb" in v}
        if "train" in r and "first_step_s" in r["train"]:
            found["train_start_flat"] = r["train"]["first_step_s"] <= CHECK_START
    return found


def table(sizes: dict[int, dict[str, Any]]) -> str:
    """One Markdown table: per stage and size, the figures; then 16S / S."""
    head = ("| stage | links | wall s | CPU s | CPU ms/item | peak RSS MB | items in | items out "
            "| bytes/item |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = [head]
    for stage in (*STAGES, "train"):
        for n in sorted(sizes):
            r = sizes[n].get(stage)
            if r is None:
                continue
            rows.append(f"| {stage} | {n:,} | {r['wall_s']:,.1f} | {r['cpu_s']:,.1f} | "
                        f"{1000 * r['cpu_s_per_item']:.3f} | {r['peak_rss_mb']:,.0f} | {r['items_in']:,} | "
                        f"{r['items_out']:,} | {r.get('bytes_per_item', 0):,.0f} |")
    if len(sizes) >= 2:
        rows.append("")
        rows.append("| stage | CPU/item 16S/S | peak RSS 16S/S | wall 16S/S | bytes/item 16S/S |")
        rows.append("| --- | ---: | ---: | ---: | ---: |")
        for stage, v in ratios(sizes[min(sizes)], sizes[max(sizes)]).items():
            rows.append(f"| {stage} | {v.get('cpu_s_per_item', float('nan')):.3f} | "
                        f"{v.get('peak_rss_mb', float('nan')):.3f} | {v.get('wall_s', float('nan')):.3f} | "
                        f"{v.get('bytes_per_item', float('nan')):.3f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=400_000, help="the largest size, 16S (default 400,000)")
    parser.add_argument("--sizes", default="S,4S,16S", help="which sizes to run (default S,4S,16S)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "work" / "scale")
    parser.add_argument("--json", type=Path, help="write every size's results, ratios and checks here")
    parser.add_argument("--remeasure", default="",
                        help="stages to measure again where measured already (e.g. fetch,dedup,train); "
                             "later stages are kept when the stage gives the same items by reason")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: the table, checks and --json from what earlier runs measured")
    for key, value in Settings().__dict__.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = Settings(**{k: getattr(args, k) for k in Settings().__dict__})
    base = args.links // 16
    wanted = {"S": base, "4S": 4 * base, "16S": args.links}
    runs = [wanted[name.strip()] for name in args.sizes.split(",")]
    sizes: dict[int, dict[str, Any]] = {}
    for n in [] if args.report else sorted(set(runs)):
        started = time.monotonic()
        remeasure = frozenset(s.strip() for s in args.remeasure.split(",") if s.strip())
        unknown = remeasure - {*STAGES, "train"}
        if unknown:
            parser.error(f"--remeasure: no stage {', '.join(sorted(unknown))}; the stages: "
                         f"{', '.join((*STAGES, 'train'))}")
        sizes[n] = Size(args.workdir, n, settings).run(remeasure)
        log.info("%s links: done in %.0f s", f"{n:,}", time.monotonic() - started)
    for n in wanted.values():  # sizes measured by earlier runs
        path = args.workdir / str(n) / "rehearsal.json"
        if n not in sizes and path.exists():
            sizes[n] = json.loads(path.read_text())
    result = {"settings": settings.__dict__, "sizes": {str(n): sizes[n] for n in sorted(sizes)},
              "checks": checks(sizes, settings, args.workdir)}
    print(table(sizes))
    print(json.dumps(result["checks"], indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.json, json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
