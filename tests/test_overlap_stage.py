"""The overlap stage: exact n-gram counts of evaluation passages planted in a published corpus (whole,
in part, in other case and punctuation, split over two documents), per set, per example and per
document, against counts made here with plain Python sets; the same report after a rerun and after a
kill; the dataset card's table and the manifest; config errors."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.base.schema import ConfigError, validate
from pipeline.config import (
    LinksConfig,
    LocalExecutorConfig,
    OverlapConfig,
    PipelineConfig,
    PublishConfig,
    PushshiftSourceConfig,
)
from pipeline.executor import LocalExecutor
from pipeline.links.rules import partition_of
from pipeline.paths import StagePaths
from pipeline.registry import build
from pipeline.runtime import StageError, completed_tasks
from tests.conftest import REPO, run_cli
from tests.helpers import TaskGate, kill_part_way
from tests.test_publish import site_docs, write_partitions

N = 8
PARTITIONS = 3


def passage(rng: random.Random, words: int) -> list[str]:
    """Words no filler document has (the filler is tests.conftest.WORDS)."""
    return [f"ev{rng.randrange(10**6)}" for _ in range(words)]


def eval_sets(rng: random.Random) -> dict[str, list[str]]:
    """Two sets' examples; the comments say what is planted in the corpus (``plant``)."""
    a = [passage(rng, k) for k in (30, 30, 25, 30, 20, 5)]
    loop = passage(rng, 10)
    b = [loop + loop[:5] + loop, a[0][:12] + passage(rng, 8), passage(rng, 15)]
    return {
        "alpha": [
            " ".join(a[0]),                                   # whole: 23 of 23
            " ".join(a[1]),                                   # words 5-20 only: 9 of 23
            " ".join(a[2]),                                   # other case and punctuation: 18 of 18
            " ".join(a[3]),                                   # split over two documents: 16 of 23
            " ".join(a[4]),                                   # nowhere: 0 of 13
            " ".join(a[5]),                                   # shorter than n: no n-gram
        ],
        "beta": [
            " ".join(b[0]),     # the loop's 3 n-grams, each at 2 of the 18 positions: 6 of 18
            " ".join(b[1]),     # starts with alpha's first passage: 5 of 13 (n-grams in both sets)
            " ".join(b[2]),     # nowhere
        ],
    }


def plant(docs: list[dict], sets: dict[str, list[str]]) -> None:
    """The passages into the documents' texts, as ``eval_sets`` says."""
    alpha, beta = ([s.split() for s in sets[name]] for name in ("alpha", "beta"))
    first = [i for i, d in enumerate(docs) if partition_of(d["domain"], PARTITIONS) == 0][:2]
    others = [i for i in range(len(docs)) if i not in first]

    def put(i: int, words: list[str], at_end: bool = False) -> None:
        text = docs[i]["text"]
        docs[i]["text"] = f"{text} {' '.join(words)}" if at_end else f"{' '.join(words)}. {text}"

    put(others[0], alpha[0])
    put(others[1], alpha[1][5:21])
    shouted = (w.upper() + ("," if k % 3 == 0 else "") for k, w in enumerate(alpha[2]))
    docs[others[2]]["text"] += "\n\n" + " ".join(shouted) + "!"
    # the first two documents of partition 0: adjacent in the corpus, in one row group
    put(first[0], alpha[3][:15], at_end=True)
    put(first[1], alpha[3][15:])
    put(others[3], beta[0][:10])  # the loop once: its n-grams, wherever they stand in the example
    for doc in docs:
        doc["n_chars"] = len(doc["text"])


def ngrams(text: str, n: int = N) -> list[tuple[str, ...]]:
    """The paper's normalisation, written out again: lower-case alphanumeric words, n at a time."""
    w = re.findall(r"[a-z0-9]+", text.lower())
    return [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]


def expected_report(corpus: Path, sets: dict[str, list[str]]) -> tuple[dict, list[dict]]:
    """Per set and per example the n-grams and those found, and the overlapping documents, counted
    with Python sets over the published corpus."""
    rows = [r for p in sorted(corpus.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    in_corpus = set().union(*(ngrams(r["text"]) for r in rows))
    per_set = {}
    for name, examples in sets.items():
        counts = [{"ngrams": len(g), "found": sum(x in in_corpus for x in g)} for g in map(ngrams, examples)]
        per_set[name] = counts
    grams = {name: set().union(*map(ngrams, examples)) for name, examples in sets.items()}
    every = set().union(*grams.values())
    documents = []
    for r in rows:
        mine = set(ngrams(r["text"]))
        hits = {name: len(mine & g) for name, g in grams.items() if mine & g}
        if hits:
            documents.append({"id": r["id"], "url": r["url"], "ngrams": len(mine & every), "sets": hits})
    return per_set, sorted(documents, key=lambda d: d["id"])


def write_sets(folder: Path, sets: dict[str, list[str]]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, examples in sets.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": i}) + "\n" for i, t in enumerate(examples)))
        specs.append(f"{name}={path}")
    return specs


def config(workdir: Path, specs: list[str], stages: list[str]) -> PipelineConfig:
    cfg = PipelineConfig(workdir=str(workdir), stages=stages, source=PushshiftSourceConfig(),
                         executor=LocalExecutorConfig(workers=2), links=LinksConfig(partitions=PARTITIONS),
                         publish=PublishConfig(shard_mib=0.05, row_group_rows=10),
                         overlap=OverlapConfig(sets=specs, n=N))
    validate(cfg)
    return cfg


def run(cfg: PipelineConfig) -> None:
    LocalExecutor(cfg.executor).run(build(cfg.stages, cfg))


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A corpus published with the passages planted, and the overlap stage run on it."""
    root = tmp_path_factory.mktemp("overlap")
    sets = eval_sets(random.Random(7))
    specs = write_sets(root / "sets", sets)
    docs = site_docs(150, seed=3, hosts=12)
    plant(docs, sets)
    write_partitions(root / "work", docs, PARTITIONS)
    run(config(root / "work", specs, ["publish", "overlap"]))
    return root / "work", specs, sets


def report_of(workdir: Path) -> dict:
    return json.loads((workdir / "overlap" / "report.json").read_text())


def test_counts_per_set_example_and_document_are_exact(measured) -> None:
    workdir, _, sets = measured
    report = report_of(workdir)
    per_set, documents = expected_report(workdir / "corpus", sets)
    # what was planted, so the counts below are not vacuous
    assert per_set["alpha"] == [{"ngrams": 23, "found": 23}, {"ngrams": 23, "found": 9},
                                {"ngrams": 18, "found": 18}, {"ngrams": 23, "found": 16},
                                {"ngrams": 13, "found": 0}, {"ngrams": 0, "found": 0}]
    assert per_set["beta"] == [{"ngrams": 18, "found": 6}, {"ngrams": 13, "found": 5},
                               {"ngrams": 8, "found": 0}]
    assert report["n"] == N and report["text_field"] == "text" and report["documents_read"] == 150
    assert list(report["sets"]) == ["alpha", "beta"]
    for name, examples in per_set.items():
        figures = report["sets"][name]
        assert figures["examples"] == examples
        total, found = sum(e["ngrams"] for e in examples), sum(e["found"] for e in examples)
        assert (figures["ngrams"], figures["found"]) == (total, found)
        assert figures["ngram_share"] == found / total
        assert figures["examples_overlapping"] == sum(e["found"] > 0 for e in examples)
        assert figures["documents"] == sum(name in d["sets"] for d in documents)
        assert figures["path"] == str(workdir.parent / "sets" / f"{name}.jsonl")
    assert report["documents"] == documents and len(documents) == 6
    unique = len(set().union(*(ngrams(t) for examples in sets.values() for t in examples)))
    assert report["table_unique_ngrams"] == unique and report["table_bytes"] > 0
    stats = json.loads((workdir / "overlap" / "stats.json").read_text())
    assert stats["counts"] == {"documents": 150, "overlapping": 6}
    assert stats["sets"]["beta"] == {"ngrams": 39, "found": 11, "ngram_share": 11 / 39}


def test_a_passage_split_over_two_documents_counts_only_within_each(measured) -> None:
    workdir, _, sets = measured
    rows = pq.read_table(sorted((workdir / "corpus").glob("part-*.parquet"))[0]).to_pylist()
    words = sets["alpha"][3].split()
    first, second = rows[0]["text"], rows[1]["text"]  # adjacent, in one row group and one task
    assert first.endswith(" ".join(words[:15])) and second.startswith(" ".join(words[15:]))
    assert report_of(workdir)["sets"]["alpha"]["examples"][3] == {"ngrams": 23, "found": 16}


def test_card_and_manifest_carry_the_table(measured) -> None:
    workdir, _, _ = measured
    report = report_of(workdir)
    card = (workdir / "corpus" / "README.md").read_text()
    alpha = report["sets"]["alpha"]
    assert "| Set | n-grams | found | share |" in card
    assert f"| alpha | {alpha['ngrams']} | {alpha['found']} | {100 * alpha['ngram_share']:.2f}% |" in card
    assert "| beta | 39 | 11 | 28.21% |" in card
    assert "WikiText-2 1.63%" in card and card.count("<!-- overlap -->") == 1
    assert card.index("<!-- /overlap -->") < card.index("## Caveats")
    manifest = json.loads((workdir / "corpus" / "manifest.json").read_text())
    assert manifest["overlap"]["report"] == "overlap/report.json"
    assert manifest["overlap"]["sets"]["beta"] == {k: v for k, v in report["sets"]["beta"].items()
                                                   if k != "examples"}
    assert manifest["documents"] == 150 and "documents" not in manifest["overlap"]


def test_rerun_of_a_task_gives_the_same_bytes(measured) -> None:
    workdir, specs, _ = measured
    files = {name: (workdir / name).read_bytes()
             for name in ("overlap/report.json", "corpus/README.md", "corpus/manifest.json")}
    (workdir / "overlap" / "_state" / "done" / "00001.json").unlink()
    run(config(workdir, specs, ["overlap"]))
    assert completed_tasks(StagePaths(workdir, "overlap")) == {0, 1, 2}
    assert {name: (workdir / name).read_bytes() for name in files} == files


def test_no_sets_measure_nothing_and_the_card_says_so(measured, tmp_path: Path) -> None:
    workdir, _, _ = measured
    shutil.copytree(workdir / "corpus", tmp_path / "corpus")
    run(config(tmp_path, [], ["overlap"]))
    report = report_of(tmp_path)
    assert report["sets"] == {} and report["documents"] == [] and report["documents_read"] == 0
    card = (tmp_path / "corpus" / "README.md").read_text()
    assert "No evaluation set was given" in card and "| Set |" not in card
    assert card.count("<!-- overlap -->") == 1  # the section replaced, not added


def test_sigkill_part_way_then_rerun_gives_the_same_report(measured, tmp_path: Path) -> None:
    workdir, specs, _ = measured
    shutil.copytree(workdir / "corpus", tmp_path / "corpus")
    command = [sys.executable, "-m", "pipeline", f"workdir={tmp_path}", "stages=[overlap]",
               f"links.partitions={PARTITIONS}", f"overlap.sets=[{','.join(repr(s) for s in specs)}]",
               f"overlap.n={N}", "executor.workers=2"]
    paths = StagePaths(tmp_path, "overlap")
    gate = TaskGate(tmp_path / "gate", hold=("overlap",))
    gate.release("overlap", 0)  # the kill lands with task 0 done and task 1 held running
    kill_part_way(command, lambda: completed_tasks(paths) == {0} and 1 in gate.started("overlap"), gate)
    assert completed_tasks(paths) == {0} and not (paths.root / "report.json").exists()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "overlap: 2 of 3 tasks to run" in rerun.stdout
    assert (paths.root / "report.json").read_bytes() == (workdir / "overlap" / "report.json").read_bytes()


def test_bad_sets_fail_at_config_time_naming_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "one two three"}\n')

    def check(**overlap: object) -> None:
        validate(PipelineConfig(executor=LocalExecutorConfig(), source=PushshiftSourceConfig(),
                                overlap=OverlapConfig(**overlap)))

    check(sets=[f"good={good}"])
    with pytest.raises(ConfigError, match=r"^overlap\.sets: 'good .*': expected NAME=PATH"):
        check(sets=[f"good {good}"])
    with pytest.raises(ConfigError, match=r"^overlap\.sets\[1\]: no such file: .*missing.jsonl \(set b\)$"):
        check(sets=[f"a={good}", f"b={tmp_path / 'missing.jsonl'}"])
    with pytest.raises(ConfigError, match=r"^overlap\.sets: .*given twice"):
        check(sets=[f"a={good}", f"a={good}"])
    with pytest.raises(ConfigError, match=r"^overlap\.n: must be >= 1, got 0$"):
        check(n=0)


def test_a_set_file_that_cannot_be_read_stops_the_run_naming_it(measured, tmp_path: Path) -> None:
    workdir, _, _ = measured
    shutil.copytree(workdir / "corpus", tmp_path / "corpus")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"question": "no text field"}\n')
    with pytest.raises(StageError, match=r"^overlap\.sets: .*bad\.jsonl:2: no string field 'text'"):
        run(config(tmp_path, [f"bad={bad}"], ["overlap"]))
    assert not (tmp_path / "overlap" / "_state" / "done").exists()


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_the_same_report_as_a_slurm_array(measured, tmp_path: Path) -> None:
    workdir, specs, _ = measured
    shutil.copytree(workdir / "corpus", tmp_path / "corpus")
    result = run_cli("pipeline", f"workdir={tmp_path}", "stages=[overlap]", "executor=slurm",
                     "executor.mem_gb=1", "executor.time_min=10", f"links.partitions={PARTITIONS}",
                     f"overlap.sets=[{','.join(repr(s) for s in specs)}]", f"overlap.n={N}")
    assert result.returncode == 0, result.stderr
    assert f"submitted {PARTITIONS} task(s) as array job" in result.stdout + result.stderr
    report = (tmp_path / "overlap" / "report.json").read_bytes()
    assert report == (workdir / "overlap" / "report.json").read_bytes()
    assert "| beta | 39 | 11 | 28.21% |" in (tmp_path / "corpus" / "README.md").read_text()
