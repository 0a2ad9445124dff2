"""Decontamination at publish (``overlap.drop``): passages of two fixture sets planted in a corpus
(whole, in part, shared by both sets, in other case and punctuation, shorter than 13 words); the
documents publish leaves out are exactly those a plain-Python count of 13-grams names, each counted
once under the right set, listed by id, and absent from the shards and the tokens; the manifest,
the card and the overlap report say so; drop=false publishes what publish did before; the config
errors; changed sets or drop settings under a published corpus are refused."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.base.schema import ConfigError, to_dict, validate
from model.base.shards import read_shard
from model.base.tokenizer import EOT_ID, gpt2_encoding
from pipeline.config import (
    LocalExecutorConfig,
    OverlapConfig,
    PipelineConfig,
    PublishConfig,
    PushshiftSourceConfig,
    TokenizeConfig,
)
from pipeline.links.rules import partition_of
from pipeline.overlap.decontaminate import Decontamination, contamination
from pipeline.runtime import StageError, read_json
from tests.test_overlap_stage import PARTITIONS, N, config, expected_report, ngrams, passage, run, write_sets
from tests.test_publish import shard_outputs, site_docs, write_partitions

DROP_N = 13
SHARD_MIB = 0.02  # 7 shards


def drop_sets(rng: random.Random) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Two sets, and the passages to plant, by what they share with the sets at n = 13."""
    p1, p2, shared, r = (passage(rng, k) for k in (30, 20, 20, 25))
    sets = {"alpha": [" ".join(p1), " ".join(p2), " ".join(shared)],
            "beta": [" ".join(shared + passage(rng, 5)), " ".join(r)]}
    plants = {
        "whole": p1,                           # alpha: 18
        "part": p2[:14],                       # alpha: 2 (kept when min_ngrams is 3)
        "tie": shared,                         # alpha 8, beta 8: counted under alpha, the first
        "beta": r,                             # beta: 13
        "mostly_beta": shared[:14] + r[:14],   # alpha 2, beta 2 + 2: counted under beta
        "shouted": [w.upper() + ("," if k % 3 == 0 else "") for k, w in enumerate(r)],  # beta: 13
        "short": p1[:12],                      # no 13-gram: kept; 5 of alpha's 8-grams remain
    }
    return sets, plants


def expected_drops(rows: list[dict], sets: dict[str, list[str]], least: int) -> list[dict]:
    """The documents to leave out, in document order, counted with Python sets of 13-grams."""
    grams = {name: set().union(*(ngrams(t, DROP_N) for t in examples)) for name, examples in sets.items()}
    every = set().union(*grams.values())
    out = []
    for row in rows:
        mine = set(ngrams(row["text"], DROP_N))
        shared = {name: len(mine & g) for name, g in grams.items() if mine & g}
        if shared and max(shared.values()) >= least:
            top = max(shared.values())
            worst = next(name for name in sets if shared.get(name) == top)  # first of equals
            out.append({"id": row["id"], "url": row["url"], "set": worst, "ngrams": len(mine & every),
                        "sets": shared})
    return out


def input_rows(workdir: Path) -> list[dict]:
    """The documents publish reads, in document order."""
    files = sorted((workdir / "dedup").glob("part-*.parquet"))
    return [r for p in files for r in pq.read_table(p).to_pylist()]


def drop_config(workdir: Path, specs: list[str], stages: list[str], **overlap: object) -> PipelineConfig:
    cfg = config(workdir, specs, stages)  # test_overlap_stage's: 3 partitions, 2 workers
    cfg.publish = PublishConfig(shard_mib=SHARD_MIB, row_group_rows=10)  # several shards in each task
    cfg.overlap = OverlapConfig(sets=specs, n=N, **overlap)
    cfg.tokenize = TokenizeConfig(tasks=2)
    validate(cfg)
    return cfg


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict, dict]:
    """Sets and documents with the passages planted (``dedup/``), not yet published."""
    root = tmp_path_factory.mktemp("drop")
    sets, plants = drop_sets(random.Random(11))
    specs = write_sets(root / "sets", sets)
    docs = site_docs(150, seed=5, hosts=12)
    placed = {}
    hosts = [d for d in docs if partition_of(d["domain"], PARTITIONS) < 2]  # partition 2's shards: clean
    for doc, (name, words) in zip(hosts[7::12], plants.items(), strict=False):
        doc["text"] = f"{doc['text'][:200]} {' '.join(words)}. {doc['text'][200:]}"
        doc["n_chars"] = len(doc["text"])
        placed[name] = doc["id"]
    write_partitions(root / "work", docs, PARTITIONS)
    return root, specs, sets, placed


@pytest.fixture(scope="module")
def dropped(corpus) -> Path:
    """The corpus published with drop=true, then measured and tokenized."""
    root, specs, _, _ = corpus
    workdir = root / "dropped"
    shutil.copytree(root / "work", workdir)
    run(drop_config(workdir, specs, ["publish", "overlap", "tokenize"], drop=True))
    return workdir


def test_the_documents_left_out_are_exactly_those_sharing_13_grams(corpus, dropped) -> None:
    _, _, sets, placed = corpus
    expected = expected_drops(input_rows(dropped), sets, least=1)
    by_plant = {name: next((d for d in expected if d["id"] == i), None) for name, i in placed.items()}
    # what was planted, so the comparison below is not vacuous
    assert {name: d and (d["set"], d["sets"]) for name, d in by_plant.items()} == {
        "whole": ("alpha", {"alpha": 18}), "part": ("alpha", {"alpha": 2}),
        "tie": ("alpha", {"alpha": 8, "beta": 8}), "beta": ("beta", {"beta": 13}),
        "mostly_beta": ("beta", {"alpha": 2, "beta": 4}), "shouted": ("beta", {"beta": 13}),
        "short": None}
    listed = [json.loads(line) for p in sorted((dropped / "corpus" / "_contaminated").glob("*.jsonl"))
              for line in p.read_text().splitlines()]
    assert listed == expected  # every task's file, in task order: document order
    assert len(list((dropped / "corpus" / "_contaminated").glob("*.jsonl"))) == PARTITIONS
    published = [r["id"] for p in sorted((dropped / "corpus").glob("part-*.parquet"))
                 for r in pq.read_table(p, columns=["id"]).to_pylist()]
    gone = {d["id"] for d in expected}
    assert published == [r["id"] for r in input_rows(dropped) if r["id"] not in gone]


def test_counts_funnel_manifest_and_card(corpus, dropped) -> None:
    root, specs, _, _ = corpus
    stats = read_json(dropped / "corpus" / "stats.json")
    assert stats["counts"] == {"kept": 144, "contaminated_alpha": 3, "contaminated_beta": 3}
    manifest = read_json(dropped / "corpus" / "manifest.json")
    assert manifest["documents"] == 144 == sum(s["documents"] for s in manifest["shards"])
    assert manifest["funnel"][-1] == {"stage": "publish", "kept": 144,
                                      "dropped": {"contaminated_alpha": 3, "contaminated_beta": 3}}
    drop = Decontamination.of(OverlapConfig(sets=specs, drop=True))
    assert drop is not None
    files = [root / "sets" / f"{name}.jsonl" for name in ("alpha", "beta")]
    assert manifest["decontaminated"] == {
        "sets": [{"name": f.stem, "path": str(f), "digest": hashlib.sha256(f.read_bytes()).hexdigest()}
                 for f in files],
        "table": drop.table().digest(), "text_field": "text", "drop_n": 13, "min_ngrams": 1, "documents": 6,
        "by_set": {"alpha": 3, "beta": 3}, "ids": "_contaminated/*.jsonl"}
    card = (dropped / "corpus" / "README.md").read_text()
    assert "| publish | 144 | contaminated_alpha: 3, contaminated_beta: 3 |" in card
    assert "**Decontaminated** against alpha (`alpha.jsonl`, sha256 " in card
    assert "6 documents were left out, each sharing at least 1 distinct 13-gram with one of" in card
    assert "alpha 3, beta 3" in card and "`_contaminated/*.jsonl`" in card
    assert card.index("**Decontaminated**") < card.index("## Top domains")


def test_the_overlap_report_measures_what_remains(corpus, dropped) -> None:
    _, _, sets, placed = corpus
    report = json.loads((dropped / "overlap" / "report.json").read_text())
    per_set, documents = expected_report(dropped / "corpus", sets)  # 8-grams, in plain Python
    assert {name: s["examples"] for name, s in report["sets"].items()} == per_set
    assert report["documents"] == documents
    assert [d["id"] for d in documents] == [placed["short"]]  # under 13 words: still there at n = 8
    assert per_set["alpha"][0] == {"ngrams": 23, "found": 5}
    card = (dropped / "corpus" / "README.md").read_text()
    section = card[card.index("<!-- overlap -->"):card.index("<!-- /overlap -->")]
    assert "decontaminated at publish against alpha, beta: the 6 documents" in section


def test_tokens_hold_none_of_the_dropped_documents(corpus, dropped) -> None:
    _, _, sets, _ = corpus
    tokens = [read_shard(p) for p in sorted((dropped / "tokens").glob("*.bin"))]
    assert sum(int((t == EOT_ID).sum()) for t in tokens) == 144  # one <|endoftext|> per document
    text = "".join(gpt2_encoding().decode(t.tolist()) for t in tokens).lower()
    words = sets["alpha"][0].split()
    assert " ".join(words[:12]) in text and " ".join(words[:13]) not in text  # "short" stays
    for example in (*sets["alpha"], *sets["beta"]):
        assert not any(" ".join(g) in text for g in ngrams(example, DROP_N))


def test_drop_false_publishes_what_publish_did_before(corpus, dropped, tmp_path: Path) -> None:
    root, specs, _, _ = corpus
    for name, overlap in (("plain", {}), ("off", {"sets": specs, "drop": False})):
        shutil.copytree(root / "work", tmp_path / name)
        cfg = drop_config(tmp_path / name, specs, ["publish"])
        cfg.overlap = OverlapConfig(**overlap)
        run(cfg)
    plain, off = (tmp_path / name / "corpus" for name in ("plain", "off"))
    assert shard_outputs(off) == shard_outputs(plain) and not (off / "_contaminated").exists()
    assert read_json(off / "_state" / "stage.json")["config"] == read_json(plain / "_state" / "stage.json")[
        "config"] == {"publish": to_dict(PublishConfig(shard_mib=SHARD_MIB, row_group_rows=10)),
                      "shards": PARTITIONS, "plan": "by_size"}
    manifest = read_json(off / "manifest.json")
    assert "decontaminated" not in manifest
    assert manifest["funnel"] == read_json(plain / "manifest.json")["funnel"]
    assert "Decontaminated" not in (off / "README.md").read_text()
    # With drop=true the plan is the same: a shard without a dropped document has the same bytes
    gone = {json.loads(line)["id"] for p in (dropped / "corpus" / "_contaminated").glob("*.jsonl")
            for line in p.read_text().splitlines()}
    shards = read_json(dropped / "corpus" / "manifest.json")["shards"]
    before = {s["name"]: s for s in read_json(off / "manifest.json")["shards"]}
    assert [s["name"] for s in shards] == list(before)
    for shard in shards:
        ids = pq.read_table(off / shard["name"], columns=["id"])["id"].to_pylist()
        assert pq.read_table(dropped / "corpus" / shard["name"], columns=["id"])["id"].to_pylist() == [
            i for i in ids if i not in gone]
        assert (shard["sha256"] == before[shard["name"]]["sha256"]) == gone.isdisjoint(ids)
        assert shard["inputs"] == before[shard["name"]]["inputs"]
    assert any(not gone.isdisjoint(pq.read_table(off / s["name"], columns=["id"])["id"].to_pylist())
               for s in shards) and any(s["sha256"] == before[s["name"]]["sha256"] for s in shards)


def test_a_task_run_again_writes_the_same_bytes(corpus, dropped, tmp_path: Path) -> None:
    _, specs, _, _ = corpus
    shutil.copytree(dropped / "dedup", tmp_path / "dedup")
    shutil.copytree(dropped / "corpus", tmp_path / "corpus")
    task = next(int(p.stem) for p in sorted((tmp_path / "corpus" / "_contaminated").glob("*.jsonl"))
                if p.read_text())
    (tmp_path / "corpus" / "_state" / "done" / f"{task:05d}.json").unlink()
    run(drop_config(tmp_path, specs, ["publish"], drop=True))
    assert shard_outputs(tmp_path / "corpus") == shard_outputs(dropped / "corpus")


def test_min_ngrams_is_per_set_and_a_threshold(corpus) -> None:
    root, specs, sets, placed = corpus
    drop = Decontamination.of(OverlapConfig(sets=specs, drop=True, min_ngrams=3))
    assert drop is not None
    rows = input_rows(root / "work")
    found = contamination(drop.table(), [r["text"] for r in rows], 3)
    records = [{"id": r["id"], "url": r["url"], "set": f.worst, "ngrams": f.ngrams, "sets": f.sets}
               for r, f in zip(rows, found, strict=True) if f is not None]
    assert records == expected_drops(rows, sets, least=3)
    ids = {r["id"] for r in records}
    assert placed["part"] not in ids and placed["mostly_beta"] in ids and len(ids) == 5


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "one two three"}\n')

    def check(**overlap: object) -> None:
        validate(PipelineConfig(executor=LocalExecutorConfig(), source=PushshiftSourceConfig(),
                                overlap=OverlapConfig(**overlap)))

    check(sets=[f"good={good}"], drop=True)
    assert OverlapConfig().drop is False and (OverlapConfig().drop_n, OverlapConfig().min_ngrams) == (13, 1)
    with pytest.raises(ConfigError, match=r"^overlap\.drop: is true but overlap\.sets is empty"):
        check(drop=True)
    with pytest.raises(ConfigError, match=r"^overlap\.drop_n: must be >= 1, got 0$"):
        check(sets=[f"good={good}"], drop=True, drop_n=0)
    with pytest.raises(ConfigError, match=r"^overlap\.min_ngrams: must be >= 1, got 0$"):
        check(sets=[f"good={good}"], drop=True, min_ngrams=0)


def test_changed_sets_or_settings_under_a_published_corpus_are_refused(corpus, dropped) -> None:
    root, specs, _, _ = corpus
    meta = (dropped / "corpus" / "_state" / "stage.json").read_bytes()

    def refused(match: str, **overlap: object) -> None:
        with pytest.raises(StageError, match=r"holds outputs of publish made with another config \(.*"
                           + match):
            run(drop_config(dropped, specs, ["publish"], **overlap))

    alpha = root / "sets" / "alpha.jsonl"
    text = alpha.read_bytes()
    try:
        alpha.write_bytes(text + b'{"text": "one more example"}\n')
        refused(r"decontaminate\.table: '[0-9a-f]+' -> '[0-9a-f]+'", drop=True)
    finally:
        alpha.write_bytes(text)
    refused(r"decontaminate\.min_ngrams: 1 -> 2", drop=True, min_ngrams=2)
    refused(r"decontaminate\.n: 13 -> 10", drop=True, drop_n=10)
    refused(r"decontaminate: \{.*\} -> None", drop=False)
    assert (dropped / "corpus" / "_state" / "stage.json").read_bytes() == meta
