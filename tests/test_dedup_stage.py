"""The dedup stage end to end: planted exact and near duplicates across docs shards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.base.schema import validate
from pipeline.config import (
    DedupConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
)
from pipeline.dedup.stage import ranks
from pipeline.executor import LocalExecutor
from pipeline.extract.stage import DOCS_SCHEMA, doc_id
from pipeline.registry import build
from pipeline.runtime import StageError

SHARDS = 3


def _words(rng: random.Random, vocabulary: list[str], n: int) -> list[str]:
    return [rng.choice(vocabulary) for _ in range(n)]


def planted_docs(seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    """Documents and, for each that must go, the id of the one that must stay.

    Clusters: exact copies (case and punctuation changed), near copies (a few words replaced),
    a chain a~b~c where a and c are further apart, and unrelated documents. The survivor of each
    cluster is its earliest submission; documents are spread over the shards at random.
    """
    rng = random.Random(seed)
    vocabulary = [f"{rng.getrandbits(36):x}" for _ in range(30000)]
    docs: list[dict] = []
    expected: dict[str, str] = {}

    def add(words: list[str], created: int, transform=lambda t: t) -> str:
        url = f"http://site{len(docs) % 7}.example/{len(docs)}"
        text = transform(" ".join(words))
        docs.append({"id": doc_id(url), "url": url, "domain": f"site{len(docs) % 7}.example",
                     "title": "t", "date": None, "author": None, "text": text, "lang": "en",
                     "lang_score": 0.99, "n_chars": len(text), "n_tokens": len(words),
                     "subreddits": ["news"], "score": 10, "n_submissions": 1, "created_utc": created,
                     "fetched_at": 0.0, "final_url": url, "encoding": "utf-8", "warc_file": "x",
                     "warc_offset": 0, "warc_length": 0})
        return docs[-1]["id"]

    def varied(words: list[str], replaced: int) -> list[str]:
        out = list(words)
        for i in rng.sample(range(len(out)), replaced):
            out[i] = rng.choice(vocabulary)
        return out

    for c in range(12):  # exact copies: 1 original + 2 copies
        words = _words(rng, vocabulary, 300)
        keep = add(words, 1000 + c)
        expected[add(words, 2000 + c, str.upper)] = keep
        expected[add(words, 3000 + c, lambda t: t.replace(" ", ", ", 10))] = keep
    for c in range(12):  # near copies: J around 0.9
        words = _words(rng, vocabulary, 400)
        later = add(varied(words, 4), 5000 + c)
        keep = add(words, 4000 + c)
        expected[later] = keep
    for c in range(4):  # chains: a ~ b ~ c, survivor a
        a = _words(rng, vocabulary, 400)
        b = varied(a, 5)
        keep = add(a, 6000 + c)
        expected[add(b, 6100 + c)] = keep
        expected[add(varied(b, 5), 6200 + c)] = keep
    for c in range(30):  # unrelated
        add(_words(rng, vocabulary, 300), 7000 + c)
    rng.shuffle(docs)
    return docs, expected


def write_docs(workdir: Path, docs: list[dict]) -> None:
    folder = workdir / "docs"
    folder.mkdir(parents=True)
    for s in range(SHARDS):
        rows = docs[s::SHARDS]
        pq.write_table(pa.Table.from_pylist(rows, schema=DOCS_SCHEMA), folder / f"part-{s:05d}.parquet",
                       row_group_size=7)


def run_dedup(workdir: Path, workers: int = 2, **dedup: object) -> None:
    dedup = {"components_partitions": 3, "max_rounds": 4, **dedup}
    cfg = PipelineConfig(workdir=str(workdir), stages=["dedup"],
                         executor=LocalExecutorConfig(workers=workers), source=PushshiftSourceConfig(),
                         links=LinksConfig(partitions=SHARDS), dedup=DedupConfig(**dedup))
    validate(cfg)
    LocalExecutor(cfg.executor).run(build(cfg.stages, cfg))


def outcome(workdir: Path) -> tuple[set[str], dict[str, tuple[str, str]]]:
    kept = set()
    for path in sorted((workdir / "dedup").glob("part-*.parquet")):
        kept |= set(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    removed = {}
    for path in sorted((workdir / "dedup" / "removed").glob("part-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            removed[row["id"]] = (row["reason"], row["duplicate_of"])
    return kept, removed


@pytest.fixture(scope="module")
def planted() -> tuple[list[dict], dict[str, str]]:
    return planted_docs()


def test_planted_duplicates_are_removed(tmp_path: Path, planted) -> None:
    docs, expected = planted
    write_docs(tmp_path, docs)
    run_dedup(tmp_path)
    kept, removed = outcome(tmp_path)
    assert kept == {d["id"] for d in docs} - set(expected)
    assert {i: survivor for i, (_, survivor) in removed.items()} == expected
    exact = {i for i, (reason, _) in removed.items() if reason == "exact_duplicate"}
    assert len(exact) == 24  # every exact copy, whatever its case and punctuation
    stats = json.loads((tmp_path / "dedup" / "stats.json").read_text())
    assert stats["counts"] == {"kept": len(kept), "exact_duplicate": 24, "near_duplicate": len(expected) - 24}
    assert stats["metrics"]["clusters"] == 12 + 12 + 4


def test_survivors_do_not_depend_on_task_counts(tmp_path: Path, planted) -> None:
    docs, _ = planted
    results = []
    for n, (workers, parts, ranges) in enumerate(((1, 1, 1), (2, 5, 3))):  # and 3 x 4 above
        workdir = tmp_path / str(n)
        write_docs(workdir, docs)
        run_dedup(workdir, workers=workers, components_partitions=parts, bucket_ranges=ranges)
        results.append(outcome(workdir))
    assert results[0] == results[1]


def test_a_run_that_stops_short_says_so_and_resumes_with_more_rounds(tmp_path: Path, planted) -> None:
    docs, expected = planted
    write_docs(tmp_path, docs)
    with pytest.raises(StageError, match="not converged in dedup.max_rounds=1 rounds; raise it"):
        run_dedup(tmp_path, max_rounds=1)
    run_dedup(tmp_path, max_rounds=4)  # rounds 2-4 and the filter run; the earlier passes are kept
    kept, removed = outcome(tmp_path)
    assert kept == {d["id"] for d in docs} - set(expected)


def test_ranks_order_close_values() -> None:
    table = pa.table({"created_utc": [1_700_000_001, 1_700_000_000, None, -5],
                      "score": [3, 10, None, 10**6], "n_chars": [10, 5000, 7, None]})
    earliest, best, longest = (ranks(table, keep).tolist() for keep in ("earliest", "score", "longest"))
    assert earliest[3] < earliest[1] < earliest[0] < earliest[2]  # a missing value ranks last
    assert best[3] < best[1] < best[0] < best[2]
    assert longest[1] < longest[0] < longest[2] < longest[3]


def test_verify_keeps_true_duplicates_and_drops_lsh_false_positives(tmp_path: Path, planted) -> None:
    docs, expected = planted
    write_docs(tmp_path / "planted", docs)
    run_dedup(tmp_path / "planted", verify=True)
    kept, removed = outcome(tmp_path / "planted")
    assert kept == {d["id"] for d in docs} - set(expected)  # J >= 0.85 everywhere: all verified

    # Pairs at J ~ 0.5, with bands weighted to catch everything: LSH flags many, verify none.
    rng = random.Random(1)
    vocabulary = [f"{rng.getrandbits(36):x}" for _ in range(30000)]
    loose: list[dict] = []
    for c in range(30):
        words = _words(rng, vocabulary, 300)
        other = list(words)
        for i in rng.sample(range(300), 20):
            other[i] = rng.choice(vocabulary)
        for n, w in enumerate((words, other)):
            url = f"http://loose{c}.example/{n}"
            loose.append({**docs[0], "id": doc_id(url), "url": url, "text": " ".join(w), "created_utc": c})
    loose_flags = {}
    for verify in (False, True):
        workdir = tmp_path / f"loose-{verify}"
        write_docs(workdir, loose)
        run_dedup(workdir, verify=verify, false_positive_weight=0.05, false_negative_weight=0.95)
        stats = json.loads((workdir / "dedup" / "stats.json").read_text())
        loose_flags[verify] = stats["counts"].get("near_duplicate", 0)
        if verify:
            checked = json.loads((workdir / "dedup" / "_verified" / "stats.json").read_text())["counts"]
            assert checked.get("verified", 0) == 0 and checked["false_positive"] >= loose_flags[False]
    assert loose_flags[False] >= 10 and loose_flags[True] == 0


def test_pairs_pass_refuses_an_unsorted_band_file(tmp_path: Path) -> None:
    from pipeline.dedup.stage import BAND_SCHEMA, _bucket_range

    path = tmp_path / "band.parquet"
    rows = {"bucket": [5, 3, 9], "rank": [0, 0, 0], "id64": [1, 2, 3], "key": [1, 2, 3], "exact": [0, 0, 0]}
    pq.write_table(pa.table(rows, schema=BAND_SCHEMA), path)
    with pytest.raises(StageError, match="not sorted by bucket"):
        _bucket_range(path, 0, 1 << 64)
    rows["bucket"] = [3, 5, 9]
    pq.write_table(pa.table(rows, schema=BAND_SCHEMA), path)
    assert _bucket_range(path, 4, 9).column("bucket").to_pylist() == [5]


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_gives_identical_corpus(tmp_path: Path, planted) -> None:
    import subprocess
    import sys

    from pipeline.paths import StagePaths
    from pipeline.runtime import completed_tasks
    from tests.conftest import REPO, stage_outputs
    from tests.helpers import TaskGate, kill_part_way

    docs, _ = planted

    def command(workdir: Path) -> list[str]:
        return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[dedup,publish]",
                f"links.partitions={SHARDS}", "dedup.components_partitions=3", "dedup.max_rounds=4",
                "executor.workers=2"]

    for name in ("clean", "killed"):
        write_docs(tmp_path / name, docs)
    clean = subprocess.run(command(tmp_path / "clean"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    round1, round2 = (StagePaths(tmp_path / "killed", f"dedup_cc0{n}") for n in (1, 2))
    gate = TaskGate(tmp_path / "gate", hold=("dedup_cc02",))
    gate.release("dedup_cc02", 0)  # the kill lands in the second round, with its task 1 held running
    kill_part_way(command(tmp_path / "killed"),
                  lambda: len(completed_tasks(round1)) == 3 and 1 in gate.started("dedup_cc02"), gate)
    assert completed_tasks(round2) <= {0}
    assert not completed_tasks(StagePaths(tmp_path / "killed", "dedup")), "the filter ran before round 2"
    rerun = subprocess.run(command(tmp_path / "killed"), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    def outputs(workdir: Path, folder: str) -> dict[str, bytes]:  # the card and plots name the workdir
        return {k: v for k, v in stage_outputs(workdir / folder).items()
                if not k.endswith((".png", "manifest.json", "README.md"))}

    for folder in ("dedup", "corpus"):
        assert outputs(tmp_path / "killed", folder) == outputs(tmp_path / "clean", folder), folder
