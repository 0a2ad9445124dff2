"""The overlap stage: how much of each evaluation set is in the corpus (the GPT-2 paper's Table 6).

The evaluation sets (``overlap.sets``) become an exact table of their distinct n-grams
(``ngrams.NgramTable``, built once per process), and each task streams its share of the corpus
against it: a contiguous slice of every (file, row group) of ``corpus/part-*.parquet``, in order, as
tokenize splits them. A task writes

    overlap/_parts/NNNNN.npy     the table ids of the n-grams its documents contain (sorted, distinct)
    overlap/_parts/NNNNN.jsonl   each document holding any: {"id", "url", "ngrams", "sets"}
    overlap/_parts/NNNNN.json    what it read: digests of the corpus's row groups and of the table

When every task is done, the driver unites the found ids and counts, at every n-gram position of
every example, whether its n-gram was found: ``overlap/report.json`` (per set, per example, the
overlapping documents; sorted keys, no timestamps, so a rerun writes the same bytes). It then puts
the table in the dataset card (``corpus/README.md``, its ``overlap`` section) and the report's
totals in ``corpus/manifest.json`` under ``overlap``.

The task count is ``links.partitions``, as publish's: the SLURM executor submits every stage's array
before its input exists, so it cannot follow from the corpus's size. Memory per task is the table's
(set by the evaluation sets), one row group of documents and a flag per distinct evaluation n-gram.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow.compute as pc

from model.base.files import atomic_write
from pipeline.config import OverlapConfig
from pipeline.overlap.ngrams import NgramTable
from pipeline.overlap.tables import BATCH_DOCS, ngram_table, resolved_sets
from pipeline.parquet_io import open_file, read_metadata, reading
from pipeline.paths import StagePaths
from pipeline.publish import with_card_section
from pipeline.runtime import Stage, StageError, TaskContext, dump_json, read_json, require_complete, writing

log = logging.getLogger("webtext.overlap")
CORPUS_COLUMNS = ("id", "url", "text")
CARD_SECTION = "overlap"  # the dataset card's section this stage writes (publish.with_card_section)
# The GPT-2 paper, Table 6: the share of each test set's 8-grams found in WebText's training set.
PAPER_TABLE_6 = {"PTB": 0.88, "WikiText-2": 1.63, "enwik8": 6.31, "text8": 3.94, "WikiText-103": 2.42,
                 "1BW": 3.75}


def set_figures(table: NgramTable, found: np.ndarray, paths: list[str]) -> dict[str, dict[str, Any]]:
    """Per set: its n-gram positions, how many are found (``found[id]``: the n-gram with table id
    ``id`` occurs in the corpus), their share, and the same per example, in the file's order."""
    figures = {}
    for index, (name, path) in enumerate(zip(table.sets, paths, strict=True)):
        examples = [{"ngrams": len(ids), "found": int(found[ids].sum())} for ids in table.positions(index)]
        ngrams = sum(e["ngrams"] for e in examples)
        hits = sum(e["found"] for e in examples)
        figures[name] = {"path": path, "ngrams": ngrams, "found": hits,
                         "ngram_share": hits / ngrams if ngrams else 0.0,
                         "examples_overlapping": sum(e["found"] > 0 for e in examples),
                         "examples": examples}
    return figures


CARD_TEXT = """\
## Overlap with evaluation sets

The share of each evaluation set's {n}-grams that occur in this corpus, as the GPT-2 paper measured
it for WebText (section 4, Table 6). Text is lower-cased and cut into words, the runs of letters and
digits (`[a-z0-9]+`); an n-gram counts at each of its positions in the set, and is found when the
same {n} words occur consecutively in at least one document; n-grams never span two examples or two
documents. The counts are exact (the paper used Bloom filters); `overlap/report.json` has them per
example and lists the overlapping documents.

| Set | n-grams | found | share |
| --- | --- | --- | --- |
{rows}

The paper's figures for WebText's training set (8-grams): {paper}.
"""


DECONTAMINATED_TEXT = """
This corpus was decontaminated at publish against {sets}: the {documents:,} documents sharing at least
{least:,} distinct {drop_n}-gram{plural} with one of them were left out (see the funnel). The table
shows what remains: {n}-grams of passages shorter than {drop_n} words, or of documents under that
threshold.
"""


def card_section(report: dict[str, Any], decontaminated: dict[str, Any] | None = None) -> str:
    """The dataset card's overlap section: Table 6's layout, with how the figures were made, and what
    publish's decontamination (the manifest's ``decontaminated``) left out before."""
    if not report["sets"]:
        return ("## Overlap with evaluation sets\n\nNo evaluation set was given (`overlap.sets`), so "
                "how much of any is in this corpus was not measured.\n")
    rows = "\n".join(f"| {name} | {s['ngrams']:,} | {s['found']:,} | {100 * s['ngram_share']:.2f}% |"
                     for name, s in report["sets"].items())
    paper = ", ".join(f"{name} {share:.2f}%" for name, share in PAPER_TABLE_6.items())
    text = CARD_TEXT.format(n=report["n"], rows=rows, paper=paper)
    if decontaminated:
        text += DECONTAMINATED_TEXT.format(
            sets=", ".join(s["name"] for s in decontaminated["sets"]), documents=decontaminated["documents"],
            least=decontaminated["min_ngrams"], drop_n=decontaminated["drop_n"], n=report["n"],
            plural="" if decontaminated["min_ngrams"] == 1 else "s")
    return text


def _digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj)).hexdigest()[:16]


class OverlapStage(Stage):
    name = "overlap"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.sets = resolved_sets(self.conf.sets)

    @property
    def conf(self) -> OverlapConfig:
        return self.cfg.overlap

    @property
    def corpus(self) -> StagePaths:
        return StagePaths(self.workdir, "publish")

    @property
    def num_tasks(self) -> int:
        return self.cfg.links.partitions

    def table(self) -> NgramTable:
        return ngram_table(self.sets, self.conf.text_field, self.conf.n)

    def stage_config(self) -> dict[str, Any]:
        # the table's digest: the same set files with other contents are other outputs
        return {"sets": [f"{name}={path}" for name, path in self.sets], "text_field": self.conf.text_field,
                "n": self.conf.n, "table": self.table().digest(), "tasks": "links.partitions"}

    def check_inputs(self) -> None:
        if not self.corpus.root.is_dir():
            raise StageError(f"overlap: no corpus in {self.corpus.root}; run the publish stage first")
        require_complete(self.corpus)

    def units(self) -> list[tuple[Path, int, int]]:
        """Every (file, row group, rows) of the corpus, in order: the units split among tasks."""
        units = []
        for path in sorted(self.corpus.root.glob("part-*.parquet")):
            meta = read_metadata(path)
            units += [(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        return units

    @staticmethod
    def _corpus_digest(units: list[tuple[Path, int, int]]) -> str:
        """What a task records of the corpus it read: the shards' names and row groups' rows."""
        return _digest([(p.name, g, rows) for p, g, rows in units])

    def _part(self, index: int, suffix: str) -> str:
        return f"_parts/{index:05d}.{suffix}"

    def run_task(self, ctx: TaskContext) -> None:
        table = self.table()
        units = self.units() if self.sets else []  # no set: nothing to look for, nothing read
        mine = units[ctx.index * len(units) // ctx.tasks:(ctx.index + 1) * len(units) // ctx.tasks]
        ctx.logger.info("row groups %d of %d; %d sets, %s distinct %d-grams (%.1f MiB)", len(mine),
                        len(units), len(table.sets), f"{table.num_unique:,}", table.n, table.nbytes / 2**20)
        found = np.zeros(table.num_unique, dtype=bool)
        path = ctx.output(self._part(ctx.index, "jsonl"))
        with open(path, "wb") as out:
            for file, group, _ in ctx.progress(mine, len(mine), "row groups"):
                self._scan(ctx, table, file, group, found, out)
        ids = np.flatnonzero(found).astype(np.int64)
        with writing(path := ctx.output(self._part(ctx.index, "npy"))):
            np.save(path, ids, allow_pickle=False)
        summary = {"corpus": self._corpus_digest(units), "table": table.digest(),
                   "row_groups": [[p.name, g] for p, g, _ in mine]}
        atomic_write(ctx.output(self._part(ctx.index, "json")), dump_json(summary))

    def _scan(self, ctx: TaskContext, table: NgramTable, path: Path, group: int, found: np.ndarray,
              out: IO[bytes]) -> None:
        """One row group's documents against the table: the n-grams found, the documents holding any."""
        parquet = open_file(path)
        missing = [c for c in CORPUS_COLUMNS if c not in parquet.schema_arrow.names]
        if missing:
            raise StageError(f"{path} has no column {missing[0]!r} (columns: {parquet.schema_arrow.names})")
        with reading(path):
            rows = parquet.read_row_group(group, columns=list(CORPUS_COLUMNS))
        texts = rows.column("text")
        ctx.count("documents", len(texts))
        ctx.add("text_bytes", pc.sum(pc.binary_length(texts)).as_py() or 0)
        texts, ids, urls = texts.to_pylist(), rows.column("id").to_pylist(), rows.column("url").to_pylist()
        lines = []
        for start in range(0, len(texts), BATCH_DOCS):
            batch = [t or "" for t in texts[start:start + BATCH_DOCS]]
            for doc, hits in enumerate(table.find_many(batch), start):
                if len(hits):
                    found[hits] = True
                    lines.append(orjson.dumps({"id": ids[doc], "url": urls[doc], "ngrams": len(hits),
                                               "sets": table.sets_of(hits)}, option=orjson.OPT_SORT_KEYS))
        ctx.count("overlapping", len(lines))
        with writing(Path(out.name)):
            out.writelines(line + b"\n" for line in lines)

    # --- driver side, once every task is done -------------------------------------------------------

    def summarize(self, stats: dict[str, Any]) -> dict[str, Any]:
        table = self.table()
        found = np.zeros(table.num_unique, dtype=bool)
        documents = []
        corpora: dict[str, int] = {}
        for index in range(self.num_tasks):
            part = read_json(self.paths.root / self._part(index, "json"))
            if part["table"] != table.digest():
                raise StageError(f"overlap: task {index} used other evaluation sets than "
                                 f"{[p for _, p in self.sets]} hold now; delete {self.paths.root} and "
                                 "run again")
            corpora.setdefault(part["corpus"], index)
            with reading(path := self.paths.root / self._part(index, "npy")):
                found[np.load(path, allow_pickle=False)] = True
            with reading(path := self.paths.root / self._part(index, "jsonl")):
                documents += [orjson.loads(line) for line in path.read_bytes().splitlines()]
        if len(corpora) > 1:
            raise StageError(f"overlap: tasks {sorted(corpora.values())} read different corpora: "
                             f"{self.corpus.root} changed between them. Delete {self.paths.root} and "
                             "run again")
        if corpora and set(corpora) != {self._corpus_digest(self.units() if self.sets else [])}:
            # finished tasks of a corpus published again since (with overlap.drop, say): their
            # report would describe a corpus that no longer exists
            raise StageError(f"overlap: the tasks read another corpus than {self.corpus.root} holds "
                             f"now (it was published again since). Delete {self.paths.root} and run "
                             "again")
        documents.sort(key=lambda d: (d["id"], d["url"]))
        sets = set_figures(table, found, [path for _, path in self.sets])
        for name, figures in sets.items():
            figures["documents"] = sum(name in d["sets"] for d in documents)
        report = {"n": table.n, "text_field": self.conf.text_field, "table_bytes": table.nbytes,
                  "table_unique_ngrams": table.num_unique,
                  "documents_read": stats["counts"].get("documents", 0), "sets": sets, "documents": documents}
        atomic_write(self.paths.root / "report.json", dump_json(report))
        self._add_to_corpus(report)
        for name, figures in sets.items():
            log.info("overlap: %s: %s of %s %d-grams in the corpus (%.2f%%)", name, f"{figures['found']:,}",
                     f"{figures['ngrams']:,}", table.n, 100 * figures["ngram_share"])
        return {**stats, "sets": {name: {k: s[k] for k in ("ngrams", "found", "ngram_share")}
                                  for name, s in sets.items()}}

    def _add_to_corpus(self, report: dict[str, Any]) -> None:
        """The overlap table in the dataset card and the totals in the manifest, both rewritten whole:
        a rerun writes the same bytes."""
        card, manifest = self.corpus.root / "README.md", self.corpus.root / "manifest.json"
        if not manifest.exists() or not card.exists():
            log.warning("overlap: no manifest.json and README.md in %s (not made by publish?): the "
                        "report is in %s only", self.corpus.root, self.paths.root / "report.json")
            return
        totals = {**{k: v for k, v in report.items() if k not in ("documents", "sets")},
                  "report": (self.paths.root / "report.json").relative_to(self.workdir).as_posix(),
                  "sets": {name: {k: v for k, v in s.items() if k != "examples"}
                           for name, s in report["sets"].items()}}
        published = read_json(manifest)
        atomic_write(manifest, dump_json({**published, "overlap": totals}))
        text = card.read_text(encoding="utf-8")
        section = card_section(report, published.get("decontaminated"))
        atomic_write(card, with_card_section(text, CARD_SECTION, section))
