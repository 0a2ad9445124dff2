"""The publish stage: deduplicated documents -> the corpus as users get it (``corpus/``).

The documents, in order (input partition by partition, ``links.partitions`` of them, row by row), are
cut into shards of about ``publish.shard_mib``, however many partitions hold them: a plan made from
the inputs' Parquet footers alone (rows and compressed bytes of each row group, a cheap and
deterministic measure) sets how many shards there are and which rows each holds, whole partitions
grouped or a large one split by rows (``plan_shards``). Every task makes the same plan and writes a
contiguous run of the shards (``corpus/part-KKKKK.parquet``, numbered in document order), optionally
the same documents as ``jsonl.zst`` in the lm_dataformat layout (``{"text", "meta"}`` per line), and a
summary of what it wrote (``corpus/_parts/NNNNN.json``: files with sha256 and the rows they hold,
documents per month, lengths, domain counts per input partition, the plan's digest). A shard's bytes
depend only on its rows and the config, so they do not depend on the executor, the worker count or
an interrupted run. The task count stays ``links.partitions``: the SLURM executor submits every
stage's array before its input exists, so it cannot follow from the corpus size; tasks whose share
of the shards is empty finish at once.

With ``overlap.drop``, a task leaves out the documents that share ``overlap.drop_n``-grams with the
evaluation sets before they reach a shard (``overlap/decontaminate.py``): the plan is unchanged, and a
shard's bytes are still a function of the rows it keeps and the config. The dropped documents are
counted as ``contaminated_<set>`` and listed in ``corpus/_contaminated/NNNNN.jsonl``.

When every task is done, the driver writes ``manifest.json`` (totals, shards with sha256, the
resolved config, every stage's stats: the funnel from submissions to documents), the dataset card
``README.md`` (``templates/dataset_card.md`` filled from them: a YAML header that ``datasets`` and the
Hugging Face Hub read, then the text) and plots as PNG.
Domains are partitioned by host upstream, so a domain's documents all come from one input
partition: its count, summed over the tasks that read that partition, is exact, and so is the top list.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import logging
import math
import string
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import zstandard

from model.base.files import atomic_write
from model.base.schema import to_dict
from pipeline.config import PublishConfig
from pipeline.overlap.decontaminate import Decontamination, card_note, ids_file, reason
from pipeline.parquet_io import open_file, parquet_writer, read_metadata, reading
from pipeline.paths import StagePaths
from pipeline.plots import plots
from pipeline.runtime import (
    Stage,
    StageError,
    TaskContext,
    dump_json,
    read_json,
    require_complete,
)

log = logging.getLogger("webtext.publish")
CORPUS_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("domain", pa.string()), ("title", pa.string()),
    ("text", pa.string()), ("subreddit", pa.string()), ("subreddits", pa.list_(pa.string())),
    ("score", pa.int64()), ("n_submissions", pa.int64()), ("created_utc", pa.int64()),
    ("date", pa.string()), ("author", pa.string()), ("lang", pa.string()), ("lang_score", pa.float32()),
    ("n_chars", pa.int64()), ("n_tokens", pa.int64()), ("fetched_at", pa.float64()),
    ("source", pa.string()), ("archived_at", pa.float64()),
])
# The input columns a corpus row is made of (``subreddit`` comes from ``subreddits``): only these are
# read, and only their bytes count towards a shard's size.
SOURCE_COLUMNS = ("id", "url", "domain", "title", "text", "subreddits", "score", "n_submissions",
                  "created_utc", "date", "author", "lang", "lang_score", "n_chars", "n_tokens", "fetched_at",
                  "source", "archived_at")
LENGTH_BINS = [0, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, math.inf]
FUNNEL_STAGES = ("links", "fetch", "extract", "dedup")


def _month(created_utc: int | None) -> str:
    if created_utc is None:
        return "unknown"
    return datetime.fromtimestamp(created_utc, tz=timezone.utc).strftime("%Y-%m")


# --- the plan: which rows go to which shard, from the inputs' footers -----------------------------


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of input partition ``partition``: all or part of one corpus shard."""

    partition: int
    start: int
    stop: int


def row_group_sizes(path: Path) -> list[tuple[int, int]]:
    """(rows, compressed bytes of the columns the corpus keeps) of each row group of ``path``.

    Read from the Parquet footer only: the estimate of what the rows weigh in a corpus shard (zstd
    too) that the plan is made from, the same on every machine and in every task.
    """
    meta = read_metadata(path)
    sizes = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        kept = (group.column(c) for c in range(group.num_columns))
        sizes.append((group.num_rows, sum(c.total_compressed_size for c in kept
                                          if c.path_in_schema.split(".")[0] in SOURCE_COLUMNS)))
    return sizes


def plan_shards(row_groups: list[list[tuple[int, int]]], target_bytes: int) -> list[list[Piece]]:
    """The corpus shards, each as its pieces of input partitions, in document order.

    ``row_groups[p]`` lists (rows, estimated bytes) of each row group of partition ``p``. The documents
    (partition by partition, row by row) are cut into ``round(total / target_bytes)`` shards (at least
    one, at most one per document) of equal estimated bytes, a document weighing its row group's bytes
    divided by its rows. Integer arithmetic only: the same inputs give the same plan everywhere.
    """
    groups = [(rows, size) for partition in row_groups for rows, size in partition if rows]
    total_rows = sum(rows for rows, _ in groups)
    if not total_rows:
        return []
    total = sum(size for _, size in groups)
    count = max(1, min(total_rows, round(total / target_bytes)))
    cuts = [0]  # global row indices where shards start
    k, before, row = 1, 0, 0  # the boundary sought; bytes and rows before this row group
    for rows, size in groups:
        # Boundary k is the first row with at least k * total / count estimated bytes before it.
        while k < count and size and count * (before + size) >= k * total:
            cut = row - (-rows * (k * total - count * before) // (count * size))  # ceiling division
            if cut > cuts[-1]:  # one document heavier than a shard: no empty shard after it
                cuts.append(cut)
            k += 1
        before += size
        row += rows
    if cuts[-1] < total_rows:
        cuts.append(total_rows)
    lengths = [sum(rows for rows, _ in partition) for partition in row_groups]
    firsts = [0, *accumulate(lengths)]
    shards = []
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        first = bisect.bisect_right(firsts, start) - 1
        pieces = []
        for p in range(first, len(row_groups)):
            lo, hi = max(start, firsts[p]), min(stop, firsts[p + 1])
            if lo >= stop:
                break
            if lo < hi:
                pieces.append(Piece(p, lo - firsts[p], hi - firsts[p]))
        shards.append(pieces)
    return shards


def plan_digest(shards: list[list[Piece]]) -> str:
    """A fingerprint of the plan: the tasks of one corpus must all have made the same one."""
    rows = [[(p.partition, p.start, p.stop) for p in pieces] for pieces in shards]
    return hashlib.sha256(orjson.dumps(rows)).hexdigest()[:16]


def task_shards(index: int, tasks: int, shards: int) -> range:
    """The shards task ``index`` of ``tasks`` writes: a contiguous run, the runs in task order."""
    return range(index * shards // tasks, (index + 1) * shards // tasks)


# --- writing ----------------------------------------------------------------------------------------


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
    """One corpus shard being written: its Parquet file and, optionally, its jsonl.zst twin.

    Rows are written in row groups of ``group_rows``, counted from the shard's first row, whatever
    batches they arrive in: a shard's bytes are a function of its rows alone.
    """

    def __init__(self, ctx: TaskContext, name: str, jsonl: bool, group_rows: int) -> None:
        self.entry: dict[str, Any] = {"name": f"{name}.parquet", "documents": 0, "tokens": 0, "inputs": []}
        self.group_rows = group_rows
        self.pending: list[dict[str, Any]] = []
        self.parquet = _HashedFile(ctx.output(self.entry["name"]))
        self.writer = parquet_writer(self.parquet, CORPUS_SCHEMA, compression="zstd")
        self.jsonl = self.lines = None
        if jsonl:
            self.entry["jsonl"] = f"jsonl/{name}.jsonl.zst"
            self.jsonl = _HashedFile(ctx.output(self.entry["jsonl"]))
            self.lines = zstandard.ZstdCompressor(level=3).stream_writer(self.jsonl, closefd=False)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.pending.extend(rows)
        while len(self.pending) >= self.group_rows:
            self._write_group(self.group_rows)

    def _write_group(self, n: int) -> None:
        rows, self.pending = self.pending[:n], self.pending[n:]
        self.writer.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA))
        if self.lines is not None:  # lm_dataformat: {"text", "meta"} per line
            self.lines.write(b"".join(
                orjson.dumps({"text": r["text"], "meta": {k: v for k, v in r.items() if k != "text"}}) + b"\n"
                for r in rows))
        self.entry["documents"] += len(rows)
        self.entry["tokens"] += sum(r["n_tokens"] or 0 for r in rows)

    def close(self) -> dict[str, Any]:
        """Finish the files; the shard's manifest entry (counts, bytes, sha256, input rows)."""
        if self.pending:
            self._write_group(len(self.pending))
        self.writer.close()
        self.entry["bytes"], self.entry["sha256"] = self.parquet.tell(), self.parquet.sha256.hexdigest()
        self.parquet.close()
        if self.lines is not None and self.jsonl is not None:
            self.lines.close()
            self.entry["jsonl_bytes"] = self.jsonl.tell()
            self.entry["jsonl_sha256"] = self.jsonl.sha256.hexdigest()
            self.jsonl.close()
        return self.entry


class _Tally:
    """What a task's documents look like: months, lengths, and domains per input partition."""

    def __init__(self) -> None:
        self.months: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self.lengths = [0] * (len(LENGTH_BINS) - 1)
        self.domains: dict[int, Counter[str]] = {}

    def add(self, partition: int, rows: list[dict[str, Any]]) -> None:
        domains = self.domains.setdefault(partition, Counter())
        for r in rows:
            self.months[_month(r["created_utc"])] += 1
            self.sources[r["source"]] += 1
            domains[r["domain"] or "unknown"] += 1
            self.lengths[bisect.bisect_right(LENGTH_BINS, r["n_chars"]) - 1] += 1


class _TopDomains:
    """The exact top domains and domain count, merged from the tasks' counts in task order.

    A domain's documents all lie in one input partition (hosts are partitioned upstream), and the
    tasks read the partitions in order: once a later partition shows up, an earlier one is complete,
    its counts are final and only its top ``n`` can reach the global top list.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.open: dict[int, Counter[str]] = {}
        self.top: dict[str, int] = {}
        self.count = 0

    def add(self, by_partition: dict[str, dict[str, int]]) -> None:
        for partition, counts in sorted((int(p), c) for p, c in by_partition.items()):
            for done in [p for p in self.open if p < partition]:
                self._close(done)
            self.open.setdefault(partition, Counter()).update(counts)

    def _close(self, partition: int) -> None:
        counts = self.open.pop(partition)
        self.count += len(counts)
        counts.update(self.top)  # disjoint as said; summed, should inputs made elsewhere mix hosts
        self.top = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:self.n])

    def result(self) -> tuple[dict[str, int], int]:
        for partition in sorted(self.open):
            self._close(partition)
        return self.top, self.count


class PublishStage(Stage):
    name = "publish"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        # overlap.drop: documents sharing drop_n-grams with an evaluation set are left out
        self.decontamination = Decontamination.of(cfg.overlap)

    @property
    def conf(self) -> PublishConfig:
        return self.cfg.publish

    @property
    def source(self) -> StagePaths:
        return StagePaths(self.workdir, self.conf.source)

    @property
    def partitions(self) -> int:
        return self.cfg.links.partitions

    @property
    def num_tasks(self) -> int:
        return self.partitions

    def stage_config(self) -> dict[str, Any]:
        # "plan": how shards are cut; outputs of the earlier one-task-per-partition layout are refused.
        config = {"publish": to_dict(self.conf), "shards": self.partitions, "plan": "by_size"}
        if self.decontamination is not None:  # (absent when off: corpora made before it stay valid)
            config["decontaminate"] = self.decontamination.stage_config()
        return config

    def check_inputs(self) -> None:
        if not self.source.root.is_dir():
            raise StageError(f"publish: no documents in {self.source.root}; run the {self.conf.source} "
                             f"stage first (or set publish.source)")
        require_complete(self.source)
        missing = [i for i in range(self.partitions) if not self._input(i).exists()]
        if missing:
            raise StageError(f"publish: {len(missing)} of {self.partitions} shards missing in "
                             f"{self.source.root} (links.partitions={self.partitions}), first "
                             f"{self._input(missing[0]).name}")

    def _input(self, index: int) -> Path:
        return self.source.root / f"part-{index:05d}.parquet"

    def plan(self) -> list[list[Piece]]:
        """Every corpus shard as pieces of the inputs (``plan_shards`` on their footers)."""
        sizes = [row_group_sizes(self._input(p)) for p in range(self.partitions)]
        return plan_shards(sizes, max(1, int(self.conf.shard_mib * (1 << 20))))

    def run_task(self, ctx: TaskContext) -> None:
        shards = self.plan()
        mine = task_shards(ctx.index, ctx.tasks, len(shards))
        ctx.logger.info("shards %s of %d", f"{mine.start}-{mine.stop - 1}" if mine else "none", len(shards))
        files: list[dict[str, Any]] = []
        tally = _Tally()
        drop = self.decontamination
        table = drop.table() if drop is not None else None  # built once per process, used all task
        dropped: list[dict[str, Any]] = []
        for k in ctx.progress(mine, len(mine), "shards"):
            shard = _Shard(ctx, f"part-{k:05d}", self.conf.jsonl, self.conf.row_group_rows)
            for piece in shards[k]:
                shard.entry["inputs"].append({"file": self._input(piece.partition).name,
                                              "rows": [piece.start, piece.stop]})
                for rows in self._documents(piece):
                    if drop is not None and table is not None:  # before the shard sees them:
                        rows, left_out = drop.split(table, rows)  # its bytes follow its kept rows
                        for record in left_out:
                            ctx.count(reason(record["set"]))
                        dropped += left_out
                    shard.write(rows)
                    tally.add(piece.partition, rows)
                    ctx.count("kept", len(rows))
            files.append(shard.close())
        ctx.add("tokens", sum(f["tokens"] for f in files))
        ctx.add("bytes", sum(f["bytes"] for f in files))
        ctx.add("shards", len(files))
        summary = {"plan": plan_digest(shards), "files": files, "months": dict(sorted(tally.months.items())),
                   "sources": dict(sorted(tally.sources.items())), "lengths": tally.lengths,
                   "domains": {f"{p:05d}": dict(c) for p, c in sorted(tally.domains.items())}}
        if table is not None:  # the sets this task dropped by, checked in summarize
            summary["decontaminate"] = table.digest()
            atomic_write(ctx.output(ids_file(ctx.index)),
                         b"".join(orjson.dumps(r) + b"\n" for r in dropped))
        atomic_write(ctx.output(f"_parts/{ctx.index:05d}.json"), dump_json(summary))

    def _documents(self, piece: Piece) -> Iterator[list[dict[str, Any]]]:
        """The rows of ``piece`` as corpus rows, in order, streamed in batches of ``row_group_rows``."""
        path = self._input(piece.partition)
        with reading(path), open_file(path) as source:  # the caller's writes run outside this frame
            columns = [c for c in SOURCE_COLUMNS if c in source.schema_arrow.names]
            first = 0  # the row group's first row in the file
            for g in range(source.num_row_groups):
                rows = source.metadata.row_group(g).num_rows
                lo, hi = max(piece.start - first, 0), min(piece.stop - first, rows)  # within the group
                first += rows
                if lo >= hi:
                    continue
                at = 0  # the batch's first row in the group
                for batch in source.iter_batches(self.conf.row_group_rows, row_groups=[g], columns=columns):
                    a, b = max(lo - at, 0), min(hi - at, batch.num_rows)
                    if a < b:
                        yield [self._row(r) for r in batch.slice(a, b - a).to_pylist()]
                    at += batch.num_rows
                    if at >= hi:
                        break
                if first >= piece.stop:
                    break

    @staticmethod
    def _row(doc: dict[str, Any]) -> dict[str, Any]:
        subreddits = doc.get("subreddits") or []
        return {"id": doc["id"], "url": doc["url"], "domain": doc.get("domain"), "title": doc.get("title"),
                "text": doc["text"], "subreddit": subreddits[0] if subreddits else None,
                "subreddits": subreddits, "score": doc.get("score"),
                "n_submissions": doc.get("n_submissions"), "created_utc": doc.get("created_utc"),
                "date": doc.get("date"), "author": doc.get("author"), "lang": doc.get("lang"),
                "lang_score": doc.get("lang_score"), "n_chars": doc.get("n_chars") or len(doc["text"]),
                "n_tokens": doc.get("n_tokens"), "fetched_at": doc.get("fetched_at"),
                "source": doc.get("source") or "live", "archived_at": doc.get("archived_at")}

    # --- driver side, once every task is done ---------------------------------------------------------

    def summarize(self, stats: dict[str, Any]) -> dict[str, Any]:
        files: list[dict[str, Any]] = []
        months: Counter[str] = Counter()
        sources: Counter[str] = Counter()
        lengths = [0] * (len(LENGTH_BINS) - 1)
        domains = _TopDomains(self.conf.top_domains)
        plans: dict[str, int] = {}
        tables: dict[str | None, int] = {}
        for index in range(self.num_tasks):  # one task's summary at a time
            part = read_json(self.paths.root / "_parts" / f"{index:05d}.json")
            plans.setdefault(part.get("plan", "none"), index)
            tables.setdefault(part.get("decontaminate"), index)
            files.extend(part["files"])
            months.update(part["months"])
            sources.update(part.get("sources", {}))
            lengths = [a + b for a, b in zip(lengths, part["lengths"], strict=True)]
            domains.add(part["domains"])
        if len(plans) > 1:
            raise StageError(f"publish: tasks {sorted(plans.values())} of {self.paths.root} cut the corpus "
                             f"differently: the inputs in {self.source.root} changed between them. Delete "
                             f"{self.paths.root} and publish again")
        self._check_decontaminated_alike(tables)
        top, domain_count = domains.result()
        stages = {}
        for name in FUNNEL_STAGES:
            path = StagePaths(self.workdir, name).stats
            if path.exists():
                stages[name] = read_json(path)
        rows = funnel(stages)
        if self.decontamination is not None:  # publish's own row: the documents left out here
            rows += funnel({self.name: stats})
        manifest = {
            "documents": sum(f["documents"] for f in files), "tokens": sum(f["tokens"] for f in files),
            "bytes": sum(f["bytes"] for f in files), "shards": files, "months": dict(sorted(months.items())),
            "top_domains": top, "domains": domain_count, "sources": sources_table(sources, stages),
            "length_histogram": {"bins": LENGTH_BINS[:-1], "documents": lengths},
            "funnel": rows, "stages": stages, "config": to_dict(self.cfg),
        }
        if self.decontamination is not None:
            manifest["decontaminated"] = self.decontamination.manifest_entry(stats["counts"])
        atomic_write(self.paths.root / "manifest.json", dump_json(manifest))
        atomic_write(self.paths.root / "README.md", dataset_card(manifest, self.cfg))
        plots(manifest, self.paths.root)
        log.info("publish: %d documents, %d tokens in %d shards: %s", manifest["documents"],
                 manifest["tokens"], len(files), self.paths.root)
        return {**stats, "documents": manifest["documents"], "tokens": manifest["tokens"]}

    def _check_decontaminated_alike(self, tables: dict[str | None, int]) -> None:
        """Every task left documents out by the sets the config names now (the resume check compares
        the digest the driver saw, not the one each worker built from the files)."""
        expected = self.decontamination.digest() if self.decontamination is not None else None
        if set(tables) != {expected}:
            raise StageError(f"publish: tasks {sorted(tables.values())} of {self.paths.root} dropped "
                             f"contaminated documents by different evaluation sets (overlap.sets, "
                             f"overlap.drop): the set files changed during the run. Delete "
                             f"{self.paths.root} and publish again")


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


ARCHIVE_NAMES = {"wayback": "the Wayback Machine", "commoncrawl": "Common Crawl"}


def sources_table(documents: dict[str, int], stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source (live, wayback, commoncrawl): the pages fetch kept from it, the documents published."""
    metrics = stages.get("fetch", {}).get("metrics", {})
    pages = {k.removeprefix("pages_"): int(v) for k, v in metrics.items() if k.startswith("pages_")}
    if not pages and "fetch" in stages:  # fetch stats made before sources were counted: all live
        pages = {"live": stages["fetch"].get("counts", {}).get("kept", 0)}
    names = sorted(set(pages) | set(documents), key=lambda n: (n != "live", n))
    return [{"source": n, "pages": pages.get(n, 0), "documents": documents.get(n, 0)} for n in names]


CARD_TEMPLATE = Path(__file__).with_name("templates") / "dataset_card.md"


def dataset_card(manifest: dict[str, Any], cfg: Any) -> str:
    """The dataset card: a YAML header the Hub reads, then what the corpus is and how it was made."""
    template = string.Template(CARD_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(card_values(manifest, cfg))


def with_card_section(card: str, name: str, body: str) -> str:
    """``card`` with its section ``name`` (the text between ``<!-- name -->`` and ``<!-- /name -->``,
    which the template leaves empty) replaced by ``body``: a later stage (overlap) adds its part of
    the card, and a rerun of that stage replaces it, never adds a second one. A card made before the
    template had the markers gets them, before its caveats."""
    begin, end = f"<!-- {name} -->\n", f"<!-- /{name} -->\n"
    section = begin + (body.rstrip("\n") + "\n" if body.strip() else "") + end
    start = card.find(begin)
    stop = card.find(end, start) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        return card[:start] + section + card[stop + len(end):]
    at = card.find("\n## Caveats\n")
    at = len(card) if at < 0 else at + 1
    return card[:at] + section + "\n" + card[at:]


def card_values(manifest: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """What fills the card's placeholders: the corpus's numbers, how it was built, its caveats."""
    return {**_corpus_values(manifest), **_build_values(cfg), **_caveat_values(manifest),
            "decontaminated": card_note(manifest.get("decontaminated"))}


def _corpus_values(manifest: dict[str, Any]) -> dict[str, Any]:
    months = [m for m in manifest["months"] if m != "unknown"]
    top = list(manifest["top_domains"].items())[:20]
    return {
        "size_category": _size_category(manifest["documents"]), "documents": f"{manifest['documents']:,}",
        "tokens": f"{manifest['tokens']:,}", "bytes": f"{manifest['bytes']:,}",
        "shards": len(manifest["shards"]), "domains": f"{manifest['domains']:,}",
        "span": f"{months[0]} to {months[-1]}" if months else "unknown",
        "funnel": _table(_funnel_row(row) for row in manifest["funnel"]),
        "sources": _table((row["source"], f"{row['pages']:,}", f"{row['documents']:,}")
                          for row in manifest.get("sources", [])),
        "top_domains": _table((domain, f"{n:,}") for domain, n in top),
    }


def _build_values(cfg: Any) -> dict[str, Any]:
    return {
        "languages": "\n".join(f"- {lang}" for lang in (cfg.extract.languages or ["multilingual"])),
        "min_score": cfg.links.min_score, "archive_fetch": _archive_fetch(cfg),
        "language_filter": ", ".join(cfg.extract.languages or []) or "any",
        "min_tokens": cfg.extract.min_tokens, "quality": cfg.extract.quality,
        "threshold": cfg.dedup.threshold, "ngram": cfg.dedup.ngram, "num_perm": cfg.dedup.num_perm,
        "keep": cfg.dedup.keep,
    }


def _caveat_values(manifest: dict[str, Any]) -> dict[str, Any]:
    flagged = manifest["stages"].get("links", {}).get("flagged_months", [])
    archived = sum(r["documents"] for r in manifest.get("sources", []) if r["source"] != "live")
    return {
        "flagged_months": f"Months flagged by the links stage: {', '.join(flagged)}." if flagged
        else "No month was flagged.",
        "pages": "Live pages" if archived else "Pages",
        "archived_note": "" if not archived else (
            "; 1 document is an archived capture" if archived == 1 else
            f"; {archived:,} documents are archived captures") + " from near the submission time",
    }


def _table(rows: Iterable[tuple[Any, ...]]) -> str:
    """Markdown table rows, one a line."""
    return "\n".join(f"| {' | '.join(map(str, row))} |" for row in rows)


def _funnel_row(row: dict[str, Any]) -> tuple[str, str, str]:
    dropped = ", ".join(f"{k}: {v:,}" for k, v in sorted(row["dropped"].items()))
    return row["stage"], f"{row['kept']:,}", dropped or "-"


def _archive_fetch(cfg: Any) -> str:
    """The fetch step's sentence on web archives, where any are used."""
    archives = cfg.fetch.archives()
    if not archives:
        return ""
    when = ("For dead links (no such host, no answer, 404, 410, 5xx, ...)" if cfg.fetch.prefer == "live"
            else "For every link")
    names = " then ".join(ARCHIVE_NAMES.get(a, a) for a in archives)
    return (f"\n   {when}, the capture nearest the submission time (within "
            f"{cfg.fetch.archive_window_days:g} days)\n   was taken from {names}, under the same guards.")


def _size_category(documents: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if documents < limit:
            return label
    return "10M<n<100M"
