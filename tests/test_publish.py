"""The publish stage: dedup -> corpus/ with shards, manifest, dataset card and plots, loadable."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from pipeline.config import (
    DedupConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PublishConfig,
    PushshiftSourceConfig,
)
from pipeline.executor import LocalExecutor
from pipeline.registry import build
from pipeline.schema import validate
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
    assert len(names) > SHARDS  # 20 KB shards: the tasks' documents are split
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
