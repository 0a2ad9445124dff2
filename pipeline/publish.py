"""The publish stage: deduplicated documents -> the corpus as users get it (``corpus/``).

One task per documents shard (``links.partitions``), in document order: each writes its documents as
Parquet shards of about ``publish.shard_mib`` (``corpus/part-SSSSS-JJJ.parquet``: the input shard,
then the piece, so name order is document order and tasks run in parallel), optionally the same
documents as ``jsonl.zst`` in the lm_dataformat layout (``{"text", "meta"}`` per line), and a
summary of what it wrote (``corpus/_parts/SSSSS.json``: files with sha256, documents per month,
domains, lengths). When every task is done, the driver writes ``manifest.json`` (totals, shards
with sha256, the resolved config, every stage's stats: the funnel from submissions to documents),
the dataset card ``README.md`` (a YAML header that ``datasets`` and the Hugging Face Hub read) and
plots as PNG. Domains are partitioned by host upstream, so per-task domain counts are exact and the
global top list is exact too.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import logging
import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from pipeline.config import PublishConfig
from pipeline.paths import StagePaths
from pipeline.runtime import (
    Stage,
    StageError,
    TaskContext,
    atomic_write,
    dump_json,
    read_json,
    require_complete,
)
from pipeline.schema import to_dict

log = logging.getLogger("webtext.publish")
CORPUS_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("domain", pa.string()), ("title", pa.string()),
    ("text", pa.string()), ("subreddit", pa.string()), ("subreddits", pa.list_(pa.string())),
    ("score", pa.int64()), ("n_submissions", pa.int64()), ("created_utc", pa.int64()),
    ("date", pa.string()), ("author", pa.string()), ("lang", pa.string()), ("lang_score", pa.float32()),
    ("n_chars", pa.int64()), ("n_tokens", pa.int64()), ("fetched_at", pa.float64()),
])
LENGTH_BINS = [0, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, math.inf]
FUNNEL_STAGES = ("links", "fetch", "extract", "dedup")


def _month(created_utc: int | None) -> str:
    if created_utc is None:
        return "unknown"
    return datetime.fromtimestamp(created_utc, tz=timezone.utc).strftime("%Y-%m")


class _HashedFile(io.FileIO):
    """A file opened for writing that keeps the sha256 of what is written (no second read)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "wb")
        self.sha256 = hashlib.sha256()

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.sha256.update(memoryview(data).cast("B")[:written])
        return written


class _Shard:
    """One corpus shard being written: its Parquet file and, optionally, its jsonl.zst twin."""

    def __init__(self, ctx: TaskContext, name: str, jsonl: bool) -> None:
        self.entry: dict[str, Any] = {"name": f"{name}.parquet", "documents": 0, "tokens": 0}
        self.parquet = _HashedFile(ctx.output(self.entry["name"]))
        self.writer = pq.ParquetWriter(self.parquet, CORPUS_SCHEMA, compression="zstd")
        self.jsonl = self.lines = None
        if jsonl:
            self.entry["jsonl"] = f"jsonl/{name}.jsonl.zst"
            self.jsonl = _HashedFile(ctx.output(self.entry["jsonl"]))
            self.lines = zstandard.ZstdCompressor(level=3).stream_writer(self.jsonl, closefd=False)

    @property
    def bytes(self) -> int:
        return self.parquet.tell()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA))
        if self.lines is not None:  # lm_dataformat: {"text", "meta"} per line
            self.lines.write(b"".join(
                orjson.dumps({"text": r["text"], "meta": {k: v for k, v in r.items() if k != "text"}}) + b"\n"
                for r in rows))
        self.entry["documents"] += len(rows)
        self.entry["tokens"] += sum(r["n_tokens"] or 0 for r in rows)

    def close(self) -> dict[str, Any]:
        """Finish the files; the shard's manifest entry (counts, bytes, sha256)."""
        self.writer.close()
        self.entry["bytes"], self.entry["sha256"] = self.parquet.tell(), self.parquet.sha256.hexdigest()
        self.parquet.close()
        if self.lines is not None and self.jsonl is not None:
            self.lines.close()
            self.entry["jsonl_bytes"] = self.jsonl.tell()
            self.entry["jsonl_sha256"] = self.jsonl.sha256.hexdigest()
            self.jsonl.close()
        return self.entry


class PublishStage(Stage):
    name = "publish"

    @property
    def conf(self) -> PublishConfig:
        return self.cfg.publish

    @property
    def source(self) -> StagePaths:
        return StagePaths(self.workdir, self.conf.source)

    @property
    def num_tasks(self) -> int:
        return self.cfg.links.partitions

    def stage_config(self) -> dict[str, Any]:
        return {"publish": to_dict(self.conf), "shards": self.num_tasks}

    def check_inputs(self) -> None:
        if not self.source.root.is_dir():
            raise StageError(f"publish: no documents in {self.source.root}; run the {self.conf.source} "
                             f"stage first (or set publish.source)")
        require_complete(self.source)
        missing = [i for i in range(self.num_tasks) if not self._input(i).exists()]
        if missing:
            raise StageError(f"publish: {len(missing)} of {self.num_tasks} shards missing in "
                             f"{self.source.root} (links.partitions={self.num_tasks}), first "
                             f"{self._input(missing[0]).name}")

    def _input(self, index: int) -> Path:
        return self.source.root / f"part-{index:05d}.parquet"

    def run_task(self, ctx: TaskContext) -> None:
        target = int(self.conf.shard_mib * (1 << 20))
        files: list[dict[str, Any]] = []
        months: Counter[str] = Counter()
        domains: Counter[str] = Counter()
        lengths = [0] * (len(LENGTH_BINS) - 1)
        shard: _Shard | None = None
        for batch in pq.ParquetFile(self._input(ctx.index)).iter_batches(self.conf.row_group_rows):
            if shard is None or shard.bytes >= target:
                if shard is not None:
                    files.append(shard.close())
                shard = _Shard(ctx, f"part-{ctx.index:05d}-{len(files):03d}", self.conf.jsonl)
            rows = [self._row(r) for r in batch.to_pylist()]
            shard.write(rows)
            for r in rows:
                months[_month(r["created_utc"])] += 1
                domains[r["domain"] or "unknown"] += 1
                lengths[bisect.bisect_right(LENGTH_BINS, r["n_chars"]) - 1] += 1
            ctx.count("kept", len(rows))
        if shard is not None:
            files.append(shard.close())
        ctx.add("tokens", sum(f["tokens"] for f in files))
        ctx.add("bytes", sum(f["bytes"] for f in files))
        summary = {"files": files, "months": dict(sorted(months.items())),
                   "domains": dict(domains.most_common(self.conf.top_domains)),
                   "domain_count": len(domains), "lengths": lengths}
        atomic_write(ctx.output(f"_parts/{ctx.index:05d}.json"), dump_json(summary))

    @staticmethod
    def _row(doc: dict[str, Any]) -> dict[str, Any]:
        subreddits = doc.get("subreddits") or []
        return {"id": doc["id"], "url": doc["url"], "domain": doc.get("domain"), "title": doc.get("title"),
                "text": doc["text"], "subreddit": subreddits[0] if subreddits else None,
                "subreddits": subreddits, "score": doc.get("score"),
                "n_submissions": doc.get("n_submissions"), "created_utc": doc.get("created_utc"),
                "date": doc.get("date"), "author": doc.get("author"), "lang": doc.get("lang"),
                "lang_score": doc.get("lang_score"), "n_chars": doc.get("n_chars") or len(doc["text"]),
                "n_tokens": doc.get("n_tokens"), "fetched_at": doc.get("fetched_at")}

    # --- driver side, once every task is done ---------------------------------------------------------

    def summarize(self, stats: dict[str, Any]) -> dict[str, Any]:
        parts = [read_json(self.paths.root / "_parts" / f"{i:05d}.json") for i in range(self.num_tasks)]
        files = [f for part in parts for f in part["files"]]
        months: Counter[str] = Counter()
        domains: Counter[str] = Counter()
        lengths = [0] * (len(LENGTH_BINS) - 1)
        for part in parts:
            months.update(part["months"])
            domains.update(part["domains"])  # disjoint across tasks: hosts are partitioned
            lengths = [a + b for a, b in zip(lengths, part["lengths"], strict=True)]
        stages = {}
        for name in FUNNEL_STAGES:
            path = StagePaths(self.workdir, name).stats
            if path.exists():
                stages[name] = read_json(path)
        manifest = {
            "documents": sum(f["documents"] for f in files), "tokens": sum(f["tokens"] for f in files),
            "bytes": sum(f["bytes"] for f in files), "shards": files, "months": dict(sorted(months.items())),
            "top_domains": dict(domains.most_common(self.conf.top_domains)),
            "domains": sum(p["domain_count"] for p in parts),
            "length_histogram": {"bins": LENGTH_BINS[:-1], "documents": lengths},
            "funnel": funnel(stages), "stages": stages, "config": to_dict(self.cfg),
        }
        atomic_write(self.paths.root / "manifest.json", dump_json(manifest))
        atomic_write(self.paths.root / "README.md", dataset_card(manifest, self.cfg))
        plots(manifest, self.paths.root)
        log.info("publish: %d documents, %d tokens in %d shards: %s", manifest["documents"],
                 manifest["tokens"], len(files), self.paths.root)
        return {**stats, "documents": manifest["documents"], "tokens": manifest["tokens"]}


def funnel(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """From submissions to documents: each stage's input, what it kept and why it dropped the rest."""
    rows = []
    for name, stats in stages.items():
        counts = dict(stats.get("counts", {}))
        kept = counts.pop("kept", 0)
        if name == "links":
            submissions = stats.get("submissions", {})
            rows.append({"stage": "links (submissions)", "kept": submissions.get("kept", 0),
                         "dropped": {k: v for k, v in submissions.items() if k != "kept"}})
        rows.append({"stage": name, "kept": kept, "dropped": counts})
    return rows


def dataset_card(manifest: dict[str, Any], cfg: Any) -> str:
    """The dataset card: a YAML header the Hub reads, then what the corpus is and how it was made."""
    months = [m for m in manifest["months"] if m != "unknown"]
    span = f"{months[0]} to {months[-1]}" if months else "unknown"
    flagged = manifest["stages"].get("links", {}).get("flagged_months", [])
    funnel_lines = "\n".join(
        f"| {row['stage']} | {row['kept']:,} | "
        f"{', '.join(f'{k}: {v:,}' for k, v in sorted(row['dropped'].items())) or '-'} |"
        for row in manifest["funnel"])
    domains = "\n".join(f"| {d} | {n:,} |" for d, n in list(manifest["top_domains"].items())[:20])
    min_score = cfg.links.min_score
    languages = "\n".join(f"- {lang}" for lang in (cfg.extract.languages or ["multilingual"]))
    return f"""---
pretty_name: webtext
language:
{languages}
license: other
task_categories:
- text-generation
size_categories:
- {_size_category(manifest['documents'])}
configs:
- config_name: default
  data_files:
  - split: train
    path: "part-*.parquet"
---

# webtext

A WebText-style corpus: the pages that Reddit submissions with a score of at least {min_score} link to,
fetched, their main text extracted, filtered and deduplicated, built with the webtext pipeline
(`python -m pipeline`).

- **Documents:** {manifest['documents']:,}; **GPT-2 tokens:** {manifest['tokens']:,}; **Parquet bytes:**
  {manifest['bytes']:,} in {len(manifest['shards'])} shards (`part-*.parquet`, sha256 in `manifest.json`).
- **Submissions from:** {span}. **Domains:** {manifest['domains']:,}.
- **Columns:** `id` (hash of the normalized URL), `url`, `domain`, `title`, `text`, `subreddit` (of the
  best-scored submission), `subreddits`, `score`, `n_submissions`, `created_utc` (first submission),
  `date`, `author`, `lang`, `lang_score`, `n_chars`, `n_tokens`, `fetched_at`.

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_files="corpus/part-*.parquet", split="train")
```

## How it was built

1. **links**: URLs of link submissions with score >= {min_score}, normalized and deduplicated.
2. **fetch**: each URL fetched politely (robots.txt, per-host delay), never private addresses; raw
   responses kept as WARC.
3. **extract**: main text with trafilatura; language ({', '.join(cfg.extract.languages or []) or 'any'}),
   length (>= {cfg.extract.min_tokens} GPT-2 tokens) and quality ({cfg.extract.quality}) filters.
4. **dedup**: exact duplicates, then MinHash LSH near-duplicates (Jaccard >= {cfg.dedup.threshold} of word
   {cfg.dedup.ngram}-grams, {cfg.dedup.num_perm} permutations); the {cfg.dedup.keep} document of a
   cluster is kept.

The full resolved configuration and every stage's statistics are in `manifest.json`.

## Funnel

| stage | kept | dropped, by reason |
| --- | --- | --- |
{funnel_lines}

## Top domains

| domain | documents |
| --- | --- |
{domains}

Plots: `documents_per_month.png`, `top_domains.png`, `length_histogram.png`, `funnel.png`.

## Caveats

- Reddit scores in Pushshift dumps were captured when the dumps were made; for some months that was
  seconds after posting, so few submissions reach the score bar.
  {'Months flagged by the links stage: ' + ', '.join(flagged) + '.' if flagged else 'No month was flagged.'}
- Pages are as fetched when this corpus was built, not as they were when submitted.
- Language identification and quality filters are statistical and make mistakes.

## License

The texts belong to their authors and publishers; this corpus is distributed for research on the
same terms as WebText and OpenWebText: check the rights that apply to you before using or sharing it.
The metadata and the code that built it are the project's.
"""


def _size_category(documents: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if documents < limit:
            return label
    return "10M<n<100M"


def plots(manifest: dict[str, Any], folder: Path) -> None:
    """PNG plots beside the card: documents per month, top domains, length histogram, funnel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        atomic_write(folder / name, buffer.getvalue())

    months = manifest["months"]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(range(len(months)), list(months.values()))
    ax.set_xticks(range(len(months)), list(months), rotation=90, fontsize=7)
    ax.set_ylabel("documents")
    ax.set_title("Documents by month of first submission")
    save(fig, "documents_per_month.png")

    top = list(manifest["top_domains"].items())[:30][::-1]
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.barh([d for d, _ in top], [n for _, n in top])
    ax.set_xlabel("documents")
    ax.set_title("Top domains")
    save(fig, "top_domains.png")

    bins = manifest["length_histogram"]["bins"]
    labels = [f">={b:,}" for b in bins]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(labels, manifest["length_histogram"]["documents"])
    ax.set_xlabel("characters")
    ax.set_ylabel("documents")
    ax.set_title("Document length")
    save(fig, "length_histogram.png")

    rows = [r for r in manifest["funnel"] if r["dropped"]]
    reasons = sorted({k for r in rows for k in r["dropped"]})
    fig, ax = plt.subplots(figsize=(10, 1 + 0.4 * max(1, len(reasons))))
    y = 0
    for row in rows:
        for reason in sorted(row["dropped"], key=lambda k: -row["dropped"][k]):
            ax.barh(y, row["dropped"][reason])
            ax.text(0, y, f" {row['stage']}: {reason}", va="center", fontsize=7)
            y += 1
    ax.set_yticks([])
    dropped = [n for r in rows for n in r["dropped"].values() if n > 0]
    if dropped and max(dropped) > 100 * min(dropped):
        ax.set_xscale("log")
    ax.set_xlabel("items dropped")
    ax.set_title("Where items were dropped, by stage and reason")
    save(fig, "funnel.png")
