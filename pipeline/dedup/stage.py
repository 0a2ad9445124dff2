"""The dedup stage: documents -> documents without exact and near duplicates, as map/reduce passes.

Every pass runs through the stage runtime (resumable, parallel, local or SLURM), and no task holds
more than its slice, whose size the config sets (``links.partitions``, ``dedup.bucket_ranges``,
``dedup.components_partitions``):

1. ``dedup_sig`` (one task per docs shard): each document gets a key (shard << 32 | row), its rank
   (``dedup.keep``: earliest submission, best score or longest text; ties by id), the hash of its
   normalized text and its MinHash band hashes. Per band, the shard's (bucket, key, rank, ...) rows
   are written sorted by bucket; the exact text hash is one more band.
2. ``dedup_pairs`` (one task per band and bucket range): the band's rows of every shard in the range,
   sorted; each bucket of two or more documents gives edges from its first document to the others.
   Edges are written by the graph partition of their source (both directions).
   With ``dedup.verify``, ``dedup_vreq`` (per docs shard) sends the shingle sets of documents in
   pairs to the verification partitions of their pairs, and ``dedup_verify`` (per partition) keeps
   the pairs whose true Jaccard reaches the threshold as the graph's edges.
3. ``dedup_ccNN`` (``dedup.max_rounds`` rounds, one task per graph partition): min-label
   propagation. A node's label is the best-ranked document it is connected to; each round a task
   takes its nodes' labels and the labels its neighbours sent, keeps the best, and sends changed
   labels along its edges to their partitions. A round after the one that sent nothing passes its
   labels on as they are (read, so that a damaged file is named with the round that wrote it).
4. ``dedup`` (one task per docs shard): a document whose component label is another document is
   dropped (``exact_duplicate`` when its normalized text is the survivor's, else ``near_duplicate``);
   the rest are written to ``dedup/part-NNNNN.parquet``, the dropped to ``dedup/removed/``. The
   last round must have sent nothing (converged), or the pass stops and says to raise max_rounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from model.base.schema import to_dict
from pipeline.config import DedupConfig
from pipeline.dedup.minhash import MinHasher, band_hashes, lsh_params, normalize, shingle_hashes
from pipeline.parquet_io import (
    iter_batches,
    open_file,
    parquet_writer,
    read_table,
    reading,
    release_unused_memory,
    write_table,
)
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, read_json, require_complete

U64 = np.uint64
NONE = (1 << 63)  # the rank of a document without the field the rank is made of
BATCH_ROWS = 4096
ROW_GROUP_ROWS = 65536
# A graph node's label: the best-ranked document it is connected to (rank, then id, then key).
LABEL = ("rank", "id64", "key", "exact")
KEY = LABEL.index("key")
NODE_SCHEMA = pa.schema([(name, pa.uint64()) for name in ("node", *LABEL)])
BAND_SCHEMA = pa.schema([("bucket", pa.uint64()), *[(name, pa.uint64()) for name in LABEL]])
EDGE_SCHEMA = pa.schema([(f"{side}_{name}", pa.uint64()) for side in ("src", "dst") for name in LABEL])
LABELS_SCHEMA = pa.schema([("shard", pa.uint32()), ("node", pa.uint64()),
                           *[(name, pa.uint64()) for name in LABEL]])
REMOVED_SCHEMA = pa.schema([("id", pa.string()), ("url", pa.string()), ("reason", pa.string()),
                            ("duplicate_of", pa.string())])


# --- shared helpers ----------------------------------------------------------------------------------


def docs_files(workdir: Path, shards: int) -> list[Path]:
    """The docs shards, one per links partition (the extract stage's task count)."""
    root = StagePaths(workdir, "extract").root
    return [root / f"part-{s:05d}.parquet" for s in range(shards)]


def shard_of(keys: np.ndarray) -> np.ndarray:
    """The docs shard of each document key (shard << 32 | row)."""
    return keys >> U64(32)


def id64(ids: list[str | None]) -> np.ndarray:
    """64 bits that order documents as their ids do: the first 16 hex digits of our ids (blake2b
    hex), a hash of any other id."""
    out = np.empty(len(ids), dtype=U64)
    for i, value in enumerate(ids):
        value = value or ""
        try:
            out[i] = int(value[:16], 16) if len(value) >= 16 else _hash64(value.encode())
        except ValueError:
            out[i] = _hash64(value.encode())
    return out


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def ranks(table: pa.Table, keep: str) -> np.ndarray:
    """Smaller is better: the survivor of a cluster is its smallest (rank, id). Integer arithmetic
    (a float would round 2**62 + t to 2**62 and tie every document)."""
    column = {"earliest": "created_utc", "score": "score", "longest": "n_chars"}[keep]
    values = table.column(column)
    known = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    numbers = np.clip(values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64),
                      -(1 << 61), 1 << 61)
    if keep != "earliest":
        numbers = -numbers  # the best score, the longest text first
    out = np.full(len(numbers), NONE, dtype=U64)
    out[known] = (numbers[known] + (1 << 62)).astype(U64)
    return out


def partition_of(nodes: np.ndarray, partitions: int) -> np.ndarray:
    """The graph partition of each node key (a mixed hash, so shards spread over partitions)."""
    with np.errstate(over="ignore"):
        h = nodes * U64(0x9E3779B97F4A7C15)
        h ^= h >> U64(29)
    return (h % U64(partitions)).astype(np.int64)


def _read(paths: list[Path], schema: pa.Schema, filters: list | None = None) -> pa.Table:
    tables = [read_table(p, filters=filters, schema=schema) for p in paths]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _bucket_range(path: Path, low: int, high: int) -> pa.Table:
    """The rows of a bucket-sorted band file with low <= bucket < high.

    Only the row groups that can hold them are read, found by a binary search on the buckets of the
    groups (read from pages their CRCs check), not on the footer's min/max statistics: no checksum
    covers those, and a flipped byte there would skip a row group and its pairs silently.
    """
    source = open_file(path)
    with reading(path):
        first, end = 0, source.num_row_groups  # first: the first group whose last bucket >= low
        while first < end:
            middle = (first + end) // 2
            probe = source.read_row_group(middle, columns=["bucket"], use_threads=False).column(0)
            if len(probe) == 0 or probe[-1].as_py() < low:
                first = middle + 1
            else:
                end = middle
        groups = []
        for g in range(first, source.num_row_groups):  # until a group ends at or past high
            groups.append(source.read_row_group(g, use_threads=False))
            if groups[-1].num_rows and groups[-1].column("bucket")[-1].as_py() >= high:
                break
    table = pa.concat_tables(groups) if groups else BAND_SCHEMA.empty_table()
    bucket = table.column("bucket").to_numpy(zero_copy_only=False).astype(U64)
    if np.any(bucket[1:] < bucket[:-1]):
        raise StageError(f"{path}: band rows are not sorted by bucket (not written by dedup_sig?); "
                         f"delete {path.parent.parent} and run dedup again")
    inside = (bucket >= U64(low)) & ((bucket < U64(high)) if high < (1 << 64) else True)
    return table.filter(pa.array(np.asarray(inside, dtype=bool)))


def _columns(table: pa.Table, names: tuple[str, ...], prefix: str = "") -> list[np.ndarray]:
    return [table.column(prefix + n).to_numpy(zero_copy_only=False).astype(U64, copy=False) for n in names]


def _best_per_node(node: np.ndarray, label: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """For each distinct node, the smallest label (rank, id64, key) offered; nodes sorted."""
    order = np.lexsort((label[KEY], label[1], label[0], node))
    node = node[order]
    first = np.ones(len(node), dtype=bool)
    first[1:] = node[1:] != node[:-1]
    picked = order[first]
    return node[first], [column[picked] for column in label]


class _DedupPass(Stage):
    @property
    def conf(self) -> DedupConfig:
        return self.cfg.dedup

    @property
    def shards(self) -> int:
        return self.cfg.links.partitions

    @property
    def bands(self) -> tuple[int, int]:
        return lsh_params(self.conf.threshold, self.conf.num_perm,
                          (self.conf.false_positive_weight, self.conf.false_negative_weight))

    def stage_config(self) -> dict[str, Any]:
        """The dedup config (but max_rounds, which can be raised to finish a run that stopped short),
        the shard count and the LSH shape."""
        bands, rows = self.bands
        conf = {k: v for k, v in to_dict(self.conf).items() if k != "max_rounds"}
        return {"dedup": conf, "shards": self.shards, "bands": bands, "rows": rows}

    def _require(self, upstream: Stage, what: str) -> None:
        """``upstream`` (another dedup pass under this config) ran to completion with the task count
        this config gives it."""
        if not upstream.paths.meta.exists():
            raise StageError(f"{self.name}: {what} has not run in {upstream.paths.root}; run the dedup "
                             f"stage from its start")
        require_complete(upstream.paths)
        made = read_json(upstream.paths.meta)["tasks"]
        if made != upstream.num_tasks:
            raise StageError(f"{self.name}: {upstream.paths.root} was made with {made} tasks, this config "
                             f"needs {upstream.num_tasks}; rerun dedup in a fresh workdir or with the "
                             f"config it was made with")


# --- 1. signatures -----------------------------------------------------------------------------------


class DedupSignatureStage(_DedupPass):
    name = "dedup_sig"

    @property
    def num_tasks(self) -> int:
        return self.shards

    def check_inputs(self) -> None:
        docs = StagePaths(self.workdir, "extract")
        if not docs.root.is_dir():
            raise StageError(f"dedup: no documents in {docs.root}; run the extract stage first")
        require_complete(docs)
        missing = [str(p) for p in docs_files(self.workdir, self.shards) if not p.exists()]
        if missing:
            raise StageError(f"dedup: {len(missing)} docs shard(s) missing (links.partitions="
                             f"{self.shards}), first {missing[0]}")

    def run_task(self, ctx: TaskContext) -> None:
        bands, rows = self.bands
        hasher = MinHasher(self.conf.num_perm, self.conf.seed, self.conf.scheme, self.conf.ngram)
        source = docs_files(self.workdir, self.shards)[ctx.index]
        parts: list[list[np.ndarray]] = []  # per batch: bucket columns of each band, then labels
        row = 0
        for batch in iter_batches(source, batch_size=BATCH_ROWS,
                                  columns=["id", "text", "created_utc", "score", "n_chars"]):
            table = pa.Table.from_batches([batch])
            texts = table.column("text").to_pylist()
            keys = (U64(ctx.index) << U64(32)) | np.arange(row, row + len(texts), dtype=U64)
            row += len(texts)
            signatures = np.empty((len(texts), self.conf.num_perm), dtype=hasher.dtype)
            exact = np.empty(len(texts), dtype=U64)
            has_shingles = np.ones(len(texts), dtype=bool)
            for i, text in enumerate(texts):
                norm = normalize(text or "")
                exact[i] = _hash64(norm)
                shingles = shingle_hashes(norm, self.conf.ngram)
                has_shingles[i] = len(shingles) > 0
                signatures[i] = hasher.signature(shingles)
            buckets = band_hashes(signatures, bands, rows)
            parts.append([buckets, exact, has_shingles, ranks(table, self.conf.keep),
                          id64(table.column("id").to_pylist()), keys])
        ctx.add("documents", row)
        if parts:
            joined = (np.concatenate(c) for c in zip(*parts, strict=True))
            buckets, exact, has_shingles, rank, ids, keys = joined
        else:
            buckets = np.zeros((0, bands), dtype=U64)
            exact = rank = ids = keys = np.zeros(0, dtype=U64)
            has_shingles = np.zeros(0, dtype=bool)
        for band in range(bands + 1):  # the last band is the exact text hash
            if band < bands:
                bucket, keep = buckets[:, band], has_shingles
            else:
                bucket, keep = exact, np.ones_like(has_shingles)
            order = np.argsort(bucket[keep], kind="stable")
            columns = [pa.array(c[keep][order], pa.uint64()) for c in (bucket, rank, ids, keys, exact)]
            write_table(pa.table(columns, schema=BAND_SCHEMA),
                        ctx.output(f"band-{band:03d}/{ctx.index:05d}.parquet"),
                        row_group_size=ROW_GROUP_ROWS, compression="zstd")


# --- 2. candidate pairs -------------------------------------------------------------------------------


class DedupPairsStage(_DedupPass):
    name = "dedup_pairs"

    @property
    def num_tasks(self) -> int:
        return (self.bands[0] + 1) * self.conf.bucket_ranges

    def check_inputs(self) -> None:
        self._require(DedupSignatureStage(self.cfg), "the signature pass")

    def run_task(self, ctx: TaskContext) -> None:
        band, part = divmod(ctx.index, self.conf.bucket_ranges)
        width = (1 << 64) // self.conf.bucket_ranges
        low = part * width
        high = (1 << 64) if part == self.conf.bucket_ranges - 1 else low + width
        sig = StagePaths(self.workdir, "dedup_sig").root / f"band-{band:03d}"
        tables = [_bucket_range(path, low, high) for path in sorted(sig.glob("*.parquet"))]
        table = pa.concat_tables(tables) if tables else BAND_SCHEMA.empty_table()
        bucket = table.column("bucket").to_numpy().astype(U64)
        label = _columns(table, LABEL)
        order = np.lexsort((label[KEY], bucket))  # by bucket, then key
        bucket = bucket[order]
        label = [c[order] for c in label]
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        sizes = np.diff(np.r_[starts, len(bucket)])
        # each member after a bucket's first is joined to the first
        member = np.ones(len(bucket), dtype=bool)
        member[starts] = False
        first = np.repeat(starts, sizes)[member]
        center = [c[first] for c in label]
        other = [c[member] for c in label]
        ctx.count("buckets_with_duplicates", int((sizes > 1).sum()))
        ctx.add("candidate_pairs", int(member.sum()))
        if self.conf.verify:  # to the verification pass: each pair, by the shards of its ends
            ends = np.unique(np.concatenate([shard_of(center[KEY]), shard_of(other[KEY])]))
            for shard in ends:
                mask = (shard_of(center[KEY]) == shard) | (shard_of(other[KEY]) == shard)
                _write_edges(center, other, mask, ctx.output(f"s{int(shard):05d}/{ctx.index:05d}.parquet"))
        else:
            write_graph_edges(ctx, center, other, self.conf.components_partitions)


def _write_edges(src: list[np.ndarray], dst: list[np.ndarray], mask: np.ndarray, path: Path) -> None:
    columns = [pa.array(c[mask], pa.uint64()) for c in (*src, *dst)]
    write_table(pa.table(columns, schema=EDGE_SCHEMA), path, compression="zstd")


def write_graph_edges(ctx: TaskContext, a: list[np.ndarray], b: list[np.ndarray], parts: int) -> None:
    """Undirected edges a-b as directed edges both ways, in the folder of their source's partition."""
    for direction, (src, dst) in enumerate(((a, b), (b, a))):
        where = partition_of(src[KEY], parts)
        for p in np.unique(where):
            path = ctx.output(f"p{int(p):03d}/{ctx.index:05d}-{direction}.parquet")
            _write_edges(src, dst, where == p, path)


# --- 2b. verification (dedup.verify) ---------------------------------------------------------------------


class DedupVerifyRequestStage(_DedupPass):
    """Per docs shard: the shingles of its documents that are in candidate pairs, sent to the
    verification partition of each of their pairs (a pair's partition is its first end's)."""

    name = "dedup_vreq"

    @property
    def num_tasks(self) -> int:
        return self.shards

    def check_inputs(self) -> None:
        self._require(DedupPairsStage(self.cfg), "the pairs pass")

    def run_task(self, ctx: TaskContext) -> None:
        parts = self.conf.components_partitions
        folder = StagePaths(self.workdir, "dedup_pairs").root / f"s{ctx.index:05d}"
        pairs = _read(sorted(folder.glob("*.parquet")), EDGE_SCHEMA)
        a, b = _columns(pairs, ("src_key",))[0], _columns(pairs, ("dst_key",))[0]
        where = partition_of(a, parts)
        mine = shard_of(a) == U64(ctx.index)
        for q in np.unique(where[mine]):  # each pair is sent once, by the shard of its first end
            write_table(pairs.filter(pa.array(mine & (where == q))),
                        ctx.output(f"q{int(q):03d}/pairs-{ctx.index:05d}.parquet"), compression="zstd")
        wanted: dict[int, set[int]] = {}  # row of this shard -> partitions that need its shingles
        for key, q in ((a, where), (b, where)):
            inside = shard_of(key) == U64(ctx.index)
            for row, part in zip((key[inside] & U64(0xFFFFFFFF)).tolist(), q[inside].tolist(), strict=True):
                wanted.setdefault(row, set()).add(part)
        out: dict[int, list[tuple[int, np.ndarray]]] = {}
        row = 0
        source = docs_files(self.workdir, self.shards)[ctx.index]
        for batch in iter_batches(source, batch_size=BATCH_ROWS, columns=["text"]):
            for i, text in enumerate(batch.column(0).to_pylist()):
                parts_needing = wanted.get(row + i)
                if parts_needing:
                    shingles = shingle_hashes(text or "", self.conf.ngram)
                    for q in parts_needing:
                        out.setdefault(q, []).append(((ctx.index << 32) | (row + i), shingles))
            row += batch.num_rows
        ctx.count("documents_sent", sum(len(v) for v in out.values()))
        for q, docs in out.items():
            table = pa.table({"key": pa.array([k for k, _ in docs], pa.uint64()),
                              "shingles": pa.array([s for _, s in docs], pa.list_(pa.uint64()))})
            write_table(table, ctx.output(f"q{q:03d}/docs-{ctx.index:05d}.parquet"), compression="zstd")


class DedupVerifyStage(_DedupPass):
    """Per verification partition: the true Jaccard of each candidate pair; pairs below
    ``dedup.threshold`` (LSH false positives) are dropped, the rest become graph edges."""

    name = "dedup_verify"

    @property
    def num_tasks(self) -> int:
        return self.conf.components_partitions

    def check_inputs(self) -> None:
        self._require(DedupVerifyRequestStage(self.cfg), "the verification request pass")

    def run_task(self, ctx: TaskContext) -> None:
        folder = StagePaths(self.workdir, "dedup_vreq").root / f"q{ctx.index:03d}"
        pairs = _read(sorted(folder.glob("pairs-*.parquet")), EDGE_SCHEMA)
        shingles: dict[int, np.ndarray] = {}
        for path in sorted(folder.glob("docs-*.parquet")):
            table = read_table(path)
            for key, values in zip(table.column("key").to_pylist(), table.column("shingles").to_pylist(),
                                   strict=True):
                shingles[key] = np.asarray(values, dtype=U64)
        a_key, b_key = _columns(pairs, ("src_key",))[0], _columns(pairs, ("dst_key",))[0]
        keep = np.zeros(len(a_key), dtype=bool)
        for i, (a, b) in enumerate(zip(a_key.tolist(), b_key.tolist(), strict=True)):
            keep[i] = jaccard(shingles[a], shingles[b]) >= self.conf.threshold
        ctx.count("verified", int(keep.sum()))
        ctx.count("false_positive", int((~keep).sum()))
        write_graph_edges(ctx, [c[keep] for c in _columns(pairs, LABEL, "src_")],
                          [c[keep] for c in _columns(pairs, LABEL, "dst_")], self.conf.components_partitions)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two sorted sets of shingle hashes (1 for two empty sets)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


# --- 3. connected components ---------------------------------------------------------------------------


class DedupRoundStage(_DedupPass):
    """Round ``round`` of min-label propagation over the duplicate graph."""

    def __init__(self, cfg: Any, round: int) -> None:  # noqa: A002 (the algorithm's word)
        self.round = round
        self.name = f"dedup_cc{round:02d}"  # type: ignore[misc]
        super().__init__(cfg)

    @property
    def num_tasks(self) -> int:
        return self.conf.components_partitions

    @property
    def edges(self) -> StagePaths:
        return StagePaths(self.workdir, "dedup_verify" if self.conf.verify else "dedup_pairs")

    def check_inputs(self) -> None:
        if self.conf.verify:
            self._require(DedupVerifyStage(self.cfg), "the verification pass")
        else:
            self._require(DedupPairsStage(self.cfg), "the pairs pass")
        if self.round > 1:
            self._require(DedupRoundStage(self.cfg, self.round - 1), f"round {self.round - 1}")

    def _edges(self, index: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        folder = self.edges.root / f"p{index:03d}"
        table = _read(sorted(folder.glob("*.parquet")), EDGE_SCHEMA)
        return _columns(table, LABEL, "src_"), _columns(table, LABEL, "dst_")

    def run_task(self, ctx: TaskContext) -> None:
        parts = self.conf.components_partitions
        src, dst = self._edges(ctx.index)
        if self.round == 1:
            # every node starts with its own label, and hears its neighbours' own labels
            old_node, old = _best_per_node(src[KEY], src)
            offered_node = np.concatenate([src[KEY], old_node])
            offered = [np.concatenate([d, o]) for d, o in zip(dst, old, strict=True)]
        else:
            previous_paths = StagePaths(self.workdir, f"dedup_cc{self.round - 1:02d}")
            previous = previous_paths.root
            labels = read_table(previous / "labels" / f"part-{ctx.index:05d}.parquet")
            if sent_messages(previous_paths) == 0:  # converged: nothing can change any more
                # What was read (its pages checked) is written, not the file copied: a damaged one
                # is named with the round that wrote it, not passed on as this round's.
                write_table(labels, ctx.output(f"labels/part-{ctx.index:05d}.parquet"), compression="zstd")
                return
            old_node = labels.column("node").to_numpy().astype(U64)
            old = _columns(labels, LABEL)
            inbox = _read(sorted((previous / "messages" / f"p{ctx.index:03d}").glob("*.parquet")),
                          NODE_SCHEMA)
            offered_node = np.concatenate([old_node, _columns(inbox, ("node",))[0]])
            offered = [np.concatenate([o, i]) for o, i in zip(old, _columns(inbox, LABEL), strict=True)]
        node, best = _best_per_node(offered_node, offered)
        assert np.array_equal(node, old_node), "a message reached a node this partition does not hold"
        changed = best[KEY] != old[KEY]
        ctx.count("nodes", len(node))
        ctx.count("changed", int(changed.sum()))
        order = np.argsort(shard_of(node), kind="stable")  # by shard, for the filter pass
        columns = [pa.array(shard_of(node[order]).astype(np.uint32)), pa.array(node[order], pa.uint64()),
                   *[pa.array(c[order], pa.uint64()) for c in best]]
        write_table(pa.table(columns, schema=LABELS_SCHEMA),
                    ctx.output(f"labels/part-{ctx.index:05d}.parquet"), compression="zstd")
        # changed labels travel along every edge leaving a changed node
        position = np.searchsorted(node, src[KEY])
        leaving = changed[position]
        targets = dst[KEY][leaving]
        sent = [c[position[leaving]] for c in best]
        ctx.add("messages", len(targets))
        where = partition_of(targets, parts)
        for p in np.unique(where):
            mask = where == p
            columns = [pa.array(targets[mask], pa.uint64()), *[pa.array(c[mask], pa.uint64()) for c in sent]]
            write_table(pa.table(columns, schema=NODE_SCHEMA),
                        ctx.output(f"messages/p{int(p):03d}/{ctx.index:05d}.parquet"), compression="zstd")


# --- 4. the filter -----------------------------------------------------------------------------------


class DedupFilterStage(_DedupPass):
    name = "dedup"

    @property
    def num_tasks(self) -> int:
        return self.shards

    @property
    def last_round(self) -> StagePaths:
        return StagePaths(self.workdir, f"dedup_cc{self.conf.max_rounds:02d}")

    def check_inputs(self) -> None:
        self._require(DedupRoundStage(self.cfg, self.conf.max_rounds), "the last components round")

    def _labels(self, shard: int) -> dict[int, tuple[int, int]]:
        """node -> (key of its label, exact hash of its label) for the graph nodes of ``shard``."""
        folder = self.last_round.root / "labels"
        table = _read(sorted(folder.glob("*.parquet")), LABELS_SCHEMA, [("shard", "=", shard)])
        node, key, exact = _columns(table, ("node", "key", "exact"))
        return {int(n): (int(k), int(e)) for n, k, e in zip(node, key, exact, strict=True)}

    def run_task(self, ctx: TaskContext) -> None:
        if sent_messages(self.last_round):
            raise StageError(f"dedup: connected components have not converged in dedup.max_rounds="
                             f"{self.conf.max_rounds} rounds; raise it and run again")
        labels = self._labels(ctx.index)
        files = docs_files(self.workdir, self.shards)
        schema = open_file(files[ctx.index]).schema_arrow
        removed: list[dict[str, Any]] = []
        row = 0
        with parquet_writer(ctx.output(f"part-{ctx.index:05d}.parquet"), schema,
                            compression="zstd") as writer:
            for batch in iter_batches(files[ctx.index], batch_size=BATCH_ROWS):
                table = pa.Table.from_batches([batch])
                keep = np.ones(table.num_rows, dtype=bool)
                for i in range(table.num_rows):
                    key = (ctx.index << 32) | (row + i)
                    label = labels.get(key)
                    if label is None:
                        continue
                    if label[0] == key:
                        ctx.add("clusters", 1)
                        continue
                    keep[i] = False
                    text = table.column("text")[i].as_py() or ""
                    reason = "exact_duplicate" if _hash64(normalize(text)) == label[1] else "near_duplicate"
                    ctx.count(reason)
                    removed.append({"id": table.column("id")[i].as_py(),
                                    "url": table.column("url")[i].as_py(),
                                    "reason": reason, "duplicate_of": label[0]})
                row += table.num_rows
                ctx.count("kept", int(keep.sum()))
                writer.write_table(table.filter(pa.array(keep)))
                del table, batch
                release_unused_memory()  # one row group at a time, in a worker that runs every pass
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for entry in removed:
            by_shard.setdefault(entry["duplicate_of"] >> 32, []).append(entry)
        for shard, entries in sorted(by_shard.items()):  # the survivors' ids, one shard at a time
            ids = read_table(files[shard], columns=["id"]).column("id")
            for entry in entries:
                entry["duplicate_of"] = ids[entry["duplicate_of"] & 0xFFFFFFFF].as_py()
        write_table(pa.Table.from_pylist(removed, schema=REMOVED_SCHEMA),
                    ctx.output(f"removed/part-{ctx.index:05d}.parquet"), compression="zstd")


def sent_messages(round_paths: StagePaths) -> int:
    """Messages a components round sent, summed over its tasks' completion markers."""
    return sum(read_json(p)["metrics"].get("messages", 0) for p in round_paths.done_dir.glob("*.json"))


def dedup_stages(cfg: Any) -> Iterator[Stage]:
    """The dedup passes in order, for ``cfg``."""
    yield DedupSignatureStage(cfg)
    yield DedupPairsStage(cfg)
    if cfg.dedup.verify:
        yield DedupVerifyRequestStage(cfg)
        yield DedupVerifyStage(cfg)
    for r in range(1, cfg.dedup.max_rounds + 1):
        yield DedupRoundStage(cfg, r)
    yield DedupFilterStage(cfg)
