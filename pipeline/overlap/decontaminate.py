"""Decontamination at publish (``overlap.drop``): documents that share at least ``overlap.min_ngrams``
distinct ``overlap.drop_n``-grams (13 by default, as GPT-3 and lm-evaluation-harness) with one of
the evaluation sets (``overlap.sets``) are left out of the corpus, so out of the tokens too.

Publish's tasks pass each batch of rows through :meth:`Decontamination.split` before writing it to
its shard: a shard's bytes stay a function of the rows it keeps and the config, and the plan of
shards (made from the inputs' footers, before any row is read) is the same whatever is dropped; a
shard can only come out smaller, or empty. Each dropped document is counted once, as
``contaminated_<set>`` (:func:`reason`) under the set it shares the most drop_n-grams with (on a
tie, the first set in config order), and listed in the task's ``corpus/_contaminated/NNNNN.jsonl``
(:func:`ids_file`), in document order, as ``{"id", "url", "set", "ngrams", "sets"}``: the set it is
counted under, its distinct drop_n-grams shared with any set, and those shared with each set.

The table (``NgramTable`` over the sets with ``n = drop_n``) is built once per process
(``tables.ngram_table``). Its digest goes into publish's stage config, so changing the sets' texts,
``drop_n`` or ``min_ngrams`` under a published corpus stops with publish's "made with another
config" message instead of mixing shards decontaminated two ways.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import OverlapConfig
from pipeline.overlap.ngrams import NgramTable
from pipeline.overlap.tables import ngram_table, resolved_sets

CONTAMINATED = "_contaminated"  # the corpus's folder of dropped documents, one file per publish task


def reason(name: str) -> str:
    """The funnel's reason for a document dropped for set ``name``."""
    return f"contaminated_{name}"


def ids_file(index: int) -> str:
    """The dropped documents of publish task ``index``, relative to the corpus folder."""
    return f"{CONTAMINATED}/{index:05d}.jsonl"


@dataclass(frozen=True)
class Contaminated:
    """What one document shares with the evaluation sets."""

    ngrams: int  # distinct drop_n-grams it shares with the sets, all together
    sets: dict[str, int]  # per set, in config order; the sets it shares none with left out

    @property
    def worst(self) -> str:
        """The set it is counted under: the one it shares most with, the first of equals."""
        return max(self.sets, key=self.sets.__getitem__)  # max keeps the first maximum


def contamination(table: NgramTable, texts: list[str], min_ngrams: int) -> list[Contaminated | None]:
    """Per text, what it shares with the sets of ``table``, or None when it shares fewer than
    ``min_ngrams`` distinct n-grams with every set (so it stays in the corpus)."""
    out: list[Contaminated | None] = []
    for hits in table.find_many(texts):
        shared = table.sets_of(hits) if len(hits) >= min_ngrams else {}
        out.append(Contaminated(len(hits), shared) if shared and max(shared.values()) >= min_ngrams
                   else None)
    return out


@dataclass
class Decontamination:
    """``overlap.drop``'s settings, as the publish stage applies them (``of`` gives None when off)."""

    sets: list[tuple[str, str]]  # (name, absolute path), in config order
    text_field: str
    n: int
    min_ngrams: int
    _digest: str = field(default="", repr=False)  # the table's, once the driver has built it

    @classmethod
    def of(cls, conf: OverlapConfig) -> Decontamination | None:
        if not conf.drop:
            return None
        return cls(resolved_sets(conf.sets), conf.text_field, conf.drop_n, conf.min_ngrams)

    def table(self) -> NgramTable:
        return ngram_table(self.sets, self.text_field, self.n)

    def digest(self) -> str:
        """The table's digest (sha256 of ``n`` and the sets' names and texts), kept once computed: the
        driver needs it before the tasks run and after, and the overlap stage's table may have
        taken this one's place in the process's cache in between."""
        if not self._digest:
            self._digest = self.table().digest()
        return self._digest

    def stage_config(self) -> dict[str, Any]:
        """What publish's outputs depend on besides ``publish.*``: compared on resume."""
        return {"sets": [f"{name}={path}" for name, path in self.sets], "text_field": self.text_field,
                "n": self.n, "min_ngrams": self.min_ngrams, "table": self.digest()}

    def split(self, table: NgramTable, rows: list[dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``rows`` (corpus rows, in order) as those kept and the records of those dropped; ``table``
        is ``self.table()``, taken once by the task so that all its rows meet the same one."""
        kept, dropped = [], []
        texts = [r["text"] or "" for r in rows]
        for row, found in zip(rows, contamination(table, texts, self.min_ngrams), strict=True):
            if found is None:
                kept.append(row)
            else:
                dropped.append({"id": row["id"], "url": row["url"], "set": found.worst,
                                "ngrams": found.ngrams, "sets": found.sets})
        return kept, dropped

    def manifest_entry(self, counts: dict[str, int]) -> dict[str, Any]:
        """The manifest's ``decontaminated``: the sets (each with its file's sha256), the settings, and
        the documents left out, from publish's counts."""
        by_set = {name: counts.get(reason(name), 0) for name, _ in self.sets}
        return {"sets": [{"name": name, "path": path, "digest": _file_sha256(Path(path))}
                         for name, path in self.sets],
                "table": self.digest(), "text_field": self.text_field, "drop_n": self.n,
                "min_ngrams": self.min_ngrams, "documents": sum(by_set.values()), "by_set": by_set,
                "ids": f"{CONTAMINATED}/*.jsonl"}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_note(entry: dict[str, Any] | None) -> str:
    """The dataset card's paragraph under the funnel (empty for a corpus not decontaminated)."""
    if not entry:
        return ""
    documents, n, least = entry["documents"], entry["drop_n"], entry["min_ngrams"]
    sets = ", ".join(f"{s['name']} (`{Path(s['path']).name}`, sha256 `{s['digest'][:12]}`)"
                     for s in entry["sets"])
    by_set = ", ".join(f"{name} {count:,}" for name, count in entry["by_set"].items())
    return (f"\n\n**Decontaminated** against {sets}: {documents:,} "
            f"{'document was' if documents == 1 else 'documents were'} left out, each sharing at least "
            f"{least:,} distinct {n}-gram{'' if least == 1 else 's'} with one of these sets. The funnel's "
            f"`publish` row counts each under the set it shares the most with (`contaminated_<set>`): "
            f"{by_set}. Their ids, URLs and shared {n}-grams per set are in `{entry['ids']}`.")
