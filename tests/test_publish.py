"""The publish stage: dedup -> corpus/ with shards, manifest, dataset card and plots, loadable."""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
from collections import Counter
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from string import Template

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from model.base.schema import validate
from pipeline.config import (
    DedupConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PublishConfig,
    PushshiftSourceConfig,
)
from pipeline.executor import LocalExecutor
from pipeline.extract.stage import DOCS_SCHEMA, doc_id
from pipeline.links.rules import partition_of
from pipeline.paths import StagePaths
from pipeline.publish import Piece, card_values, plan_shards, task_shards
from pipeline.registry import build
from pipeline.runtime import StageError, completed_tasks
from tests.conftest import REPO, WORDS, stage_outputs
from tests.helpers import TaskGate, kill_part_way
from tests.test_dedup_stage import SHARDS, planted_docs, write_docs

CONTRACT_COLUMNS = {"id", "url", "domain", "title", "text", "subreddit", "score", "created_utc"}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict[str, str]]:
    workdir = tmp_path_factory.mktemp("publish")
    docs, expected = planted_docs()
    write_docs(workdir, docs)
    cfg = PipelineConfig(workdir=str(workdir), stages=["dedup", "publish"],
                         executor=LocalExecutorConfig(workers=2), source=PushshiftSourceConfig(),
                         links=LinksConfig(partitions=SHARDS),
                         dedup=DedupConfig(components_partitions=2, max_rounds=4),
                         publish=PublishConfig(shard_mib=0.02, row_group_rows=5, jsonl=True))
    validate(cfg)
    LocalExecutor(cfg.executor).run(build(cfg.stages, cfg))
    return workdir, docs, expected


def test_corpus_loads_with_datasets(published) -> None:
    workdir, docs, expected = published
    import datasets

    corpus = workdir / "corpus"
    by_files = datasets.load_dataset("parquet", data_files=str(corpus / "part-*.parquet"), split="train")
    assert CONTRACT_COLUMNS <= set(by_files.column_names)
    assert sorted(by_files["id"]) == sorted({d["id"] for d in docs} - set(expected))
    by_folder = datasets.load_dataset(str(corpus), split="train")  # the card's configs say where
    assert by_folder.num_rows == by_files.num_rows


def test_shards_are_split_ordered_and_checksummed(published) -> None:
    workdir, _, _ = published
    corpus = workdir / "corpus"
    manifest = json.loads((corpus / "manifest.json").read_text())
    names = [s["name"] for s in manifest["shards"]]
    assert names == sorted(p.name for p in corpus.glob("part-*.parquet"))
    assert len(names) > SHARDS  # 20 KB shards: the corpus's size, not the partitions, sets how many
    inputs = [(i["file"], *i["rows"]) for shard in manifest["shards"] for i in shard["inputs"]]
    dedup = sorted((workdir / "dedup").glob("part-*.parquet"))
    rows = [(f.name, r) for f in dedup for r in range(pq.read_metadata(f).num_rows)]
    assert [(name, r) for name, start, stop in inputs for r in range(start, stop)] == rows  # each once
    assert corpus_ids(corpus) == corpus_ids(workdir / "dedup")  # in document order
    for shard in manifest["shards"]:
        data = (corpus / shard["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        assert pq.ParquetFile(corpus / shard["name"]).metadata.num_rows == shard["documents"]
        # lm_dataformat twin: the same documents, {"text", "meta"} per line
        lines = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((corpus / shard["jsonl"]).read_bytes()))
        records = [json.loads(line) for line in io.TextIOWrapper(lines, encoding="utf-8")]
        assert len(records) == shard["documents"] and set(records[0]) == {"text", "meta"}
        assert records[0]["meta"]["id"] == pq.read_table(corpus / shard["name"]).column("id")[0].as_py()


def test_manifest_adds_up(published) -> None:
    workdir, docs, expected = published
    corpus = workdir / "corpus"
    manifest = json.loads((corpus / "manifest.json").read_text())
    dedup = json.loads((workdir / "dedup" / "stats.json").read_text())
    publish = json.loads((corpus / "stats.json").read_text())
    kept = len(docs) - len(expected)
    assert manifest["documents"] == sum(s["documents"] for s in manifest["shards"]) == kept
    assert dedup["counts"]["kept"] == publish["counts"]["kept"] == kept
    assert sum(dedup["counts"].values()) == len(docs)
    assert manifest["tokens"] == sum(s["tokens"] for s in manifest["shards"]) == publish["metrics"]["tokens"]
    assert sum(manifest["months"].values()) == kept
    assert sum(manifest["length_histogram"]["documents"]) == kept
    assert sum(manifest["top_domains"].values()) == kept  # 7 domains, all listed
    assert manifest["config"]["dedup"]["threshold"] == 0.7
    funnel = {row["stage"]: row for row in manifest["funnel"]}
    assert funnel["dedup"]["kept"] == kept
    assert funnel["dedup"]["dropped"] == {"exact_duplicate": 24, "near_duplicate": len(expected) - 24}


def test_dataset_card_and_plots(published) -> None:
    workdir, _, _ = published
    corpus = workdir / "corpus"
    card = (corpus / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "part-*.parquet"
    assert header["language"] == ["en"] and header["license"] == "other"
    assert "exact_duplicate: 24" in card and "belong to their authors" in card
    for name in ("documents_per_month.png", "top_domains.png", "length_histogram.png", "funnel.png"):
        assert (corpus / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_card_template_ships_and_fills_every_placeholder(published) -> None:
    workdir, _, _ = published
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch("templates/dataset_card.md", glob) for glob in package_data["pipeline"])
    text = (resources.files("pipeline") / "templates" / "dataset_card.md").read_text(encoding="utf-8")
    matches = list(Template.pattern.finditer(text))
    assert not [m.group() for m in matches if m.group("invalid") is not None]
    names = {m.group("named") or m.group("braced") for m in matches if m.group("escaped") is None}
    values = card_values(json.loads((workdir / "corpus" / "manifest.json").read_text()), PipelineConfig())
    assert names == set(values)  # every placeholder has a value, every value a placeholder
    assert "$" not in Template(text).substitute(values)
    with pytest.raises(KeyError, match="funnel"):
        Template(text).substitute({k: v for k, v in values.items() if k != "funnel"})


# --- shard sizes follow the corpus, not the partitions --------------------------------------------


def test_plan_cuts_equal_estimated_bytes_over_partitions() -> None:
    # (rows, bytes) per row group: a partition of one group, an empty one, one of two groups, a big one
    groups = [[(10, 1000)], [], [(5, 500), (5, 500)], [(200, 20_000)]]  # 100 bytes a row
    shards = plan_shards(groups, target_bytes=5000)
    assert len(shards) == 4  # 22,000 bytes / 5,000 -> 4 shards of 5,500
    rows = [(p.partition, r) for pieces in shards for p in pieces for r in range(p.start, p.stop)]
    assert rows == [(p, r) for p, n in ((0, 10), (2, 10), (3, 200)) for r in range(n)]  # each once, in order
    weights = [sum((p.stop - p.start) * 100 for p in pieces) for pieces in shards]
    assert weights == [5500, 5500, 5500, 5500]
    assert shards[0] == [Piece(0, 0, 10), Piece(2, 0, 10), Piece(3, 0, 35)]  # grouped, then split
    assert plan_shards(groups, target_bytes=10**9) == [[Piece(0, 0, 10), Piece(2, 0, 10), Piece(3, 0, 200)]]
    assert plan_shards([[], [(0, 0)]], target_bytes=5000) == []
    # One document heavier than several shards: it ends its shard, and no empty shard follows it.
    heavy = plan_shards([[(1, 100), (1, 30_000), (2, 200)]], target_bytes=5000)
    assert [[(p.start, p.stop) for p in pieces] for pieces in heavy] == [[(0, 2)], [(2, 4)]]
    assert [list(task_shards(i, 4, 6)) for i in range(4)] == [[0], [1, 2], [3], [4, 5]]
    assert [list(task_shards(i, 5, 2)) for i in range(5)] == [[], [], [0], [], [1]]


def site_docs(n: int, seed: int = 0, hosts: int = 60) -> list[dict]:
    """``n`` documents as the dedup stage writes them, from ``hosts`` sites, over 30 months."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        host = f"site{rng.randrange(hosts)}.example"
        url = f"https://{host}/{seed}/{i}"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 700)))
        docs.append({"id": doc_id(url), "url": url, "domain": host, "title": f"story {i}", "date": None,
                     "author": None, "text": text, "lang": "en", "lang_score": 0.99, "n_chars": len(text),
                     "n_tokens": len(text.split()), "subreddits": ["news", "science"], "score": 3 + i % 40,
                     "n_submissions": 1, "created_utc": 1_420_000_000 + i * 30 * 86400 * 30 // n,
                     "fetched_at": 0.0, "final_url": url, "encoding": "utf-8", "warc_file": "x.warc.gz",
                     "warc_offset": 0, "warc_length": 0})
    return docs


def write_partitions(workdir: Path, docs: list[dict], partitions: int) -> list[str]:
    """``dedup/part-*.parquet``, hosts partitioned as the links stage does (100-row groups, zstd).

    Returns the ids in document order: partition by partition, each in the order given.
    """
    by_partition: list[list[dict]] = [[] for _ in range(partitions)]
    for doc in docs:
        by_partition[partition_of(doc["domain"], partitions)].append(doc)
    folder = workdir / "dedup"
    folder.mkdir(parents=True)
    for p, rows in enumerate(by_partition):
        pq.write_table(pa.Table.from_pylist(rows, schema=DOCS_SCHEMA), folder / f"part-{p:05d}.parquet",
                       row_group_size=100, compression="zstd")
    return [doc["id"] for rows in by_partition for doc in rows]


def publish_config(workdir: Path, partitions: int, workers: int = 2, **publish: object) -> PipelineConfig:
    publish = {"shard_mib": SHARD_MIB, "row_group_rows": 100, **publish}
    cfg = PipelineConfig(workdir=str(workdir), stages=["publish"], source=PushshiftSourceConfig(),
                         executor=LocalExecutorConfig(workers=workers),
                         links=LinksConfig(partitions=partitions), publish=PublishConfig(**publish))
    validate(cfg)
    return cfg


def run_publish(workdir: Path, partitions: int, workers: int = 2, **publish: object) -> dict:
    cfg = publish_config(workdir, partitions, workers, **publish)
    LocalExecutor(cfg.executor).run(build(cfg.stages, cfg))
    return json.loads((workdir / "corpus" / "manifest.json").read_text())


def corpus_ids(corpus: Path) -> list[str]:
    return [i for p in sorted(corpus.glob("part-*.parquet")) for i in pq.read_table(p, columns=["id"])["id"]
            .to_pylist()]


def shard_outputs(corpus: Path) -> dict[str, bytes]:
    """The shards, their jsonl twins and the tasks' summaries (the card and plots name the workdir)."""
    return {k: v for k, v in stage_outputs(corpus).items()
            if not k.endswith((".png", "manifest.json", "README.md"))}


SHARD_MIB = 0.25  # the corpora below weigh 0.8 and 3.3 MiB in shards


@pytest.fixture(scope="module")
def demo_sized() -> list[dict]:
    return site_docs(856)  # as many documents as the demo's sample gives


@pytest.fixture(scope="module")
def larger() -> list[dict]:
    return site_docs(4000, seed=1)


def test_a_small_corpus_in_many_partitions_makes_few_shards(tmp_path: Path, demo_sized) -> None:
    order = write_partitions(tmp_path, demo_sized, partitions=32)
    manifest = run_publish(tmp_path, partitions=32, top_domains=10)
    corpus = tmp_path / "corpus"
    shards = manifest["shards"]
    assert 1 <= len(shards) <= 4, [s["bytes"] for s in shards]  # not 32 or more, one per partition
    assert [s["name"] for s in shards] == [f"part-{k:05d}.parquet" for k in range(len(shards))]
    for shard in shards:
        assert 0.6 <= shard["bytes"] / (SHARD_MIB * 2**20) <= 1.5, shard
        meta = pq.read_metadata(corpus / shard["name"])
        groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert groups[:-1] == [100] * (len(groups) - 1) and 0 < groups[-1] <= 100
    assert corpus_ids(corpus) == order  # every document once, in document order
    assert len({i["file"] for s in shards for i in s["inputs"]}) > 20  # a shard groups many partitions
    # Domain counts: exact, although tasks now read parts of several partitions
    domains = Counter(d["domain"] for d in demo_sized)
    assert manifest["domains"] == len(domains) == 60
    assert manifest["top_domains"] == dict(sorted(domains.items(), key=lambda kv: (-kv[1], kv[0]))[:10])
    assert sum(manifest["months"].values()) == manifest["documents"] == 856
    writers = [m for m in (json.loads(p.read_text()) for p in (corpus / "_state" / "done").glob("*.json"))
               if m["counts"]]
    assert len(writers) == len(shards)  # 32 tasks; those without a shard finish at once


def test_a_larger_corpus_makes_shards_of_about_shard_mib_in_several_tasks(tmp_path: Path, larger) -> None:
    order = write_partitions(tmp_path, larger, partitions=6)
    manifest = run_publish(tmp_path, partitions=6)
    corpus = tmp_path / "corpus"
    shards = manifest["shards"]
    assert 8 <= len(shards) <= 20
    sizes = [s["bytes"] for s in shards]
    assert all(0.6 <= b / (SHARD_MIB * 2**20) <= 1.5 for b in sizes) and max(sizes) < 1.2 * min(sizes)
    assert corpus_ids(corpus) == order
    files = [i["file"] for s in shards for i in s["inputs"]]
    assert any(len(s["inputs"]) > 1 for s in shards) and len(files) > len(set(files))  # grouped, split
    markers = [json.loads(p.read_text()) for p in sorted((corpus / "_state" / "done").glob("*.json"))]
    assert len(markers) == 6 and all(m["counts"]["kept"] > 0 for m in markers)  # every task wrote shards
    assert sum(m["counts"]["kept"] for m in markers) == manifest["documents"] == 4000
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["metrics"]["bytes"] == sum(sizes) == manifest["bytes"]


def test_shards_do_not_depend_on_the_worker_count(tmp_path: Path, larger) -> None:
    for workers in (1, 2):
        write_partitions(tmp_path / str(workers), larger, partitions=6)
        run_publish(tmp_path / str(workers), partitions=6, workers=workers, jsonl=True)
    one, two = (shard_outputs(tmp_path / str(w) / "corpus") for w in (1, 2))
    assert one == two and sum(k.endswith(".jsonl.zst") for k in one) >= 8


def test_inputs_changed_under_a_finished_task_are_refused(tmp_path: Path, larger) -> None:
    write_partitions(tmp_path, larger, partitions=6)
    run_publish(tmp_path, partitions=6)
    part = tmp_path / "dedup" / "part-00002.parquet"
    table = pq.read_table(part)
    pq.write_table(table.slice(0, table.num_rows // 2), part, row_group_size=100)  # a new dedup run, say
    (tmp_path / "corpus" / "_state" / "done" / "00004.json").unlink()  # task 4 reruns on the new inputs
    with pytest.raises(StageError, match="cut the corpus differently: the inputs in .*dedup changed"):
        run_publish(tmp_path, partitions=6)


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_gives_identical_shards(tmp_path: Path, larger) -> None:
    def command(workdir: Path) -> list[str]:
        return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[publish]",
                "links.partitions=6", f"publish.shard_mib={SHARD_MIB}", "publish.row_group_rows=100",
                "publish.jsonl=true", "executor.workers=2"]

    for name in ("clean", "killed"):
        write_partitions(tmp_path / name, larger, partitions=6)
    clean = subprocess.run(command(tmp_path / "clean"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    paths = StagePaths(tmp_path / "killed", "publish")
    gate = TaskGate(tmp_path / "gate", hold=("publish",))
    gate.release("publish", 0)  # the kill lands with task 0 done and task 1 held running
    kill_part_way(command(tmp_path / "killed"),
                  lambda: completed_tasks(paths) == {0} and 1 in gate.started("publish"), gate)
    assert completed_tasks(paths) == {0}
    shards = len(list((tmp_path / "clean" / "corpus").glob("part-*.parquet")))
    assert {p.name for p in paths.root.glob("part-*.parquet")} == {
        f"part-{k:05d}.parquet" for k in task_shards(0, 6, shards)}  # task 0's, and only those
    rerun = subprocess.run(command(tmp_path / "killed"), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "publish: 5 of 6 tasks to run" in rerun.stdout
    assert shard_outputs(paths.root) == shard_outputs(tmp_path / "clean" / "corpus")
