"""The tokenize stage: llm.c shard format, exact round trip, a split independent of task count."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from model.base.shards import HEADER_BYTES, MAGIC, header, read_shard
from pipeline.tokenize import in_val_split
from tests.conftest import make_corpus
from tests.helpers import documents, run_tokenize, token_stream


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("corpus")
    make_corpus(workdir / "corpus", docs=300, row_group_size=20, seed=1, name="part-00000.parquet")
    make_corpus(workdir / "corpus", docs=150, row_group_size=40, seed=2, name="part-00001.parquet")
    return workdir


def corpus_rows(workdir):
    table = pq.read_table(sorted((workdir / "corpus").glob("*.parquet")))
    return table.to_pylist()


def fresh(tmp_path, corpus):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "corpus").symlink_to(corpus / "corpus")
    return tmp_path


def test_documents_round_trip_in_input_order(tmp_path, corpus):
    workdir = fresh(tmp_path, corpus)
    stage = run_tokenize(workdir, tasks=3, val_fraction=0.0)
    texts = [r["text"] for r in corpus_rows(corpus) if r["text"]]
    assert documents(token_stream(stage.paths.root, "train")) == texts
    assert not list(stage.paths.root.glob("val_*.bin"))
    stats = json.loads(stage.paths.stats.read_text())
    assert stats["counts"] == {"kept": len(texts), "empty_text": 450 - len(texts)}
    assert stats["metrics"]["train_tokens"] == len(token_stream(stage.paths.root, "train"))


def test_llmc_header(tmp_path, corpus):
    stage = run_tokenize(fresh(tmp_path, corpus), tasks=2, val_fraction=0.0)
    for shard in sorted(stage.paths.root.glob("train_*.bin")):
        head = np.fromfile(shard, dtype=np.int32, count=256)
        assert head[0] == MAGIC == 20240520 and head[1] == 1
        assert not head[3:].any()
        assert shard.stat().st_size == HEADER_BYTES + 2 * int(head[2])


def test_split_does_not_depend_on_task_count(tmp_path, corpus):
    one = run_tokenize(fresh(tmp_path / "one", corpus), tasks=1, val_fraction=0.2)
    seven = run_tokenize(fresh(tmp_path / "seven", corpus), tasks=7, val_fraction=0.2)
    for split in ("train", "val"):
        assert np.array_equal(token_stream(one.paths.root, split), token_stream(seven.paths.root, split))
    val = [r["text"] for r in corpus_rows(corpus)
           if r["text"] and in_val_split(r["id"], 0.2, "webtext")]
    assert 40 < len(val) < 140
    assert documents(token_stream(one.paths.root, "val")) == val


def test_shards_rotate_at_the_token_limit(tmp_path, corpus):
    whole = run_tokenize(fresh(tmp_path / "whole", corpus), tasks=2, val_fraction=0.0)
    small = run_tokenize(fresh(tmp_path / "small", corpus), tasks=2, val_fraction=0.0,
                         shard_tokens=5000)
    for task in (0, 1):
        sizes = [len(read_shard(p)) for p in sorted(small.paths.root.glob(f"train_{task:05d}_*.bin"))]
        assert len(sizes) > 3 and set(sizes[:-1]) == {5000} and 0 < sizes[-1] <= 5000
    assert np.array_equal(token_stream(whole.paths.root, "train"), token_stream(small.paths.root, "train"))


def test_read_shard_rejects_damage(tmp_path):
    good = tmp_path / "good.bin"
    good.write_bytes(header(3).tobytes() + np.array([1, 2, 3], dtype=np.uint16).tobytes())
    assert read_shard(good).tolist() == [1, 2, 3]
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:-2])
    with pytest.raises(ValueError, match="header promises"):
        read_shard(truncated)
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"\0" * 2048)
    with pytest.raises(ValueError, match="not an llm.c token shard"):
        read_shard(wrong)


def test_tokens_are_tiktokens_encode_ordinary_with_special_text_as_plain_text(tmp_path):
    import pyarrow as pa

    from model.base.tokenizer import EOT_ID, gpt2_encoding

    texts = ["Plain English, with numbers 1,024 and punctuation!", "a <|endoftext|> inside the text",
             "Ünïcödé — “quotes”, emoji 🙂, 中文 and a tab\there", "  leading and trailing spaces  "]
    (tmp_path / "corpus").mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}),
                   tmp_path / "corpus" / "part-00000.parquet")
    stage = run_tokenize(tmp_path, tasks=1, val_fraction=0.0)
    enc = gpt2_encoding()
    expected = [t for text in texts for t in [EOT_ID, *enc.encode_ordinary(text)]]
    assert token_stream(stage.paths.root, "train").tolist() == expected
