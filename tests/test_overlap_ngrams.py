"""The exact n-gram table of ``pipeline/overlap/ngrams.py`` against plain Python sets of word tuples.

Planted passages (whole, partial, in other case and punctuation, split over two documents) give
the counts worked out by hand; random texts over a small vocabulary (so that n-grams repeat and
nearly match) give the same answers as the obvious computation, document by document.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.overlap.ngrams import EvalSet, NgramTable, parse_sets, read_set, words

PASSAGE = ("The quick brown fox jumps over the lazy dog while the farmer's wife, holding a basket "
           "of eggs, watches from the kitchen window in silence.")


def grams(text: str, n: int) -> list[tuple[str, ...]]:
    w = words(text)
    return [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]


Gram = tuple[str, ...]


def reference(sets: list[EvalSet], docs: list[str], n: int) -> tuple[list[set[Gram]], list[list[int]]]:
    """Per document, the set of evaluation n-grams it holds; per set and example, the positions found
    in any document."""
    evaluation = {g for s in sets for text in s.examples for g in grams(text, n)}
    per_doc = [set(grams(d, n)) & evaluation for d in docs]
    anywhere = set().union(*per_doc) if per_doc else set()
    found = [[sum(g in anywhere for g in grams(text, n)) for text in s.examples] for s in sets]
    return per_doc, found


def decoded(table: NgramTable, ids: np.ndarray) -> set[tuple[str, ...]]:
    names = {i: w for w, i in table.vocab.items()}
    return {tuple(names[int(i)] for i in table.grams[row]) for row in ids}


def test_words_are_the_papers_normalisation() -> None:
    assert words("Don't STOP -- the 3rd café, über!") == ["don", "t", "stop", "the", "3rd", "caf", "ber"]


def test_planted_passages_give_the_counts_worked_out_by_hand() -> None:
    passage = words(PASSAGE)  # 26 words ("farmer's" is two): 19 8-grams
    assert len(passage) == 26
    sets = [EvalSet("paper", "p", [PASSAGE, "nothing of this occurs anywhere in the corpus at all"])]
    table = NgramTable.build(sets, 8)
    docs = [
        "Intro. " + PASSAGE.upper().replace(",", " ;; ") + " Outro.",  # whole, other case, punctuation
        " ".join(passage[:10]) + " and something else entirely",      # partial: the first 3 8-grams
        " ".join(passage[12:19]),                                      # 7 words: shorter than n
        " ".join(passage[19:]),                                        # 7 more, in another document
    ]
    found = table.find_many(docs)
    assert [len(f) for f in found] == [19, 3, 0, 0]
    # the last two documents joined in ONE: 14 consecutive words of the passage, 7 8-grams
    assert len(table.find(docs[2] + " " + docs[3])) == 7
    assert table.sets_of(found[0]) == {"paper": 19}
    assert [len(p) for p in table.positions(0)] == [19, 3]


def test_split_passage_across_two_documents_does_not_count() -> None:
    passage = words(PASSAGE)
    table = NgramTable.build([EvalSet("s", "p", [PASSAGE])], 8)
    first, second = " ".join(passage[:13]), " ".join(passage[13:])
    found = table.find_many([first, second])
    assert [len(f) for f in found] == [6, 6]  # 13-8+1 each: the 7 n-grams across the cut are in neither
    assert len(table.find(first + " " + second)) == 19


@pytest.mark.parametrize("n", [1, 3, 8, 13])
def test_random_texts_match_the_plain_computation(n: int) -> None:
    rng = random.Random(n)
    vocab = [f"w{i}" for i in range(12)] + ["The", "AND", "of", "Café", "ÜBER", "naïve", "İstanbul", "K"]

    def text(length: int) -> str:
        return " ".join(rng.choice(vocab) + rng.choice(["", ",", ".", "!"]) for _ in range(length))

    sets = [EvalSet(f"set{k}", "p", [text(rng.randint(0, 40)) for _ in range(15)]) for k in range(3)]
    docs = [text(rng.randint(0, 80)) for _ in range(60)]
    # plant exact copies of some examples, and new words the sets never use
    docs += [s.examples[3] + " zzz " + s.examples[4] for s in sets]
    table = NgramTable.build(sets, n)
    per_doc, _ = reference(sets, docs, n)
    found = table.find_many(docs)
    for mine, theirs in zip(found, per_doc, strict=True):
        assert decoded(table, mine) == theirs
        assert list(mine) == sorted(set(mine.tolist()))
    # per set: the distinct n-grams of a document that the set holds
    for doc, mine in zip(docs, found, strict=True):
        expected = {s.name: len({g for t in s.examples for g in grams(t, n)} & set(grams(doc, n)))
                    for s in sets}
        assert table.sets_of(mine) == {k: v for k, v in expected.items() if v}
    # positions: each example's n-grams in order, as table rows
    names = {i: w for w, i in table.vocab.items()}
    for index, s in enumerate(sets):
        for example, rows in zip(s.examples, table.positions(index), strict=True):
            assert [tuple(names[int(i)] for i in table.grams[r]) for r in rows] == grams(example, n)


def test_a_word_hash_collision_never_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Corpus words are looked up by a 64-bit hash of their bytes, then compared byte for byte: with
    a hash that sends every other corpus word to the hash of an evaluation word of its length, the
    counts stay those of the plain computation."""
    rng = random.Random(7)
    vocab = ["ab", "cd", "efg", "hij", "klmn", "opqr"]
    sets = [EvalSet("s", "p", [" ".join(rng.choice(vocab) for _ in range(30)) for _ in range(10)])]
    table = NgramTable.build(sets, 3)
    real = table._bytes.words
    by_length = {len(w): table.vocab_keys[np.flatnonzero(table.vocab_ids == i)[0]]
                 for w, i in table.vocab.items()}

    def colliding(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts, ends, hashes = real(data)
        fake = [h if data[s:e].decode() in table.vocab else by_length.get(int(e - s), h)
                for s, e, h in zip(starts, ends, hashes, strict=True)]
        return starts, ends, np.array(fake, dtype=np.uint64)

    monkeypatch.setattr(table._bytes, "words", colliding)
    docs = [" ".join(rng.choice(vocab + ["xy", "zzz", "wxyz"]) for _ in range(40)) for _ in range(20)]
    assert table.find_many(docs) != []
    per_doc, _ = reference(sets, docs, 3)
    found = table.find_many(docs)
    assert sum(len(f) for f in found) > 0
    for mine, theirs in zip(found, per_doc, strict=True):
        assert decoded(table, mine) == theirs


def test_one_document_at_a_time_equals_batches() -> None:
    sets = [EvalSet("s", "p", [PASSAGE])]
    table = NgramTable.build(sets, 4)
    docs = [PASSAGE[:60], "", "x", PASSAGE[40:], PASSAGE]
    batch = table.find_many(docs)
    for doc, ids in zip(docs, batch, strict=True):
        assert np.array_equal(table.find(doc), ids)


def test_an_empty_table_finds_nothing() -> None:
    table = NgramTable.build([EvalSet("s", "p", ["too short"])], 8)
    assert table.num_unique == 0
    assert [len(f) for f in table.find_many([PASSAGE, ""])] == [0, 0]
    assert table.positions(0)[0].size == 0


def test_digest_follows_the_sets_and_n() -> None:
    a = NgramTable.build([EvalSet("s", "p", [PASSAGE])], 8)
    assert a.digest() == NgramTable.build([EvalSet("s", "other/path", [PASSAGE])], 8).digest()
    assert a.digest() != NgramTable.build([EvalSet("s", "p", [PASSAGE])], 13).digest()
    assert a.digest() != NgramTable.build([EvalSet("t", "p", [PASSAGE])], 8).digest()
    assert a.digest() != NgramTable.build([EvalSet("s", "p", [PASSAGE + "!"])], 8).digest()


def test_memory_is_the_tables(tmp_path) -> None:
    rng = random.Random(0)
    examples = [" ".join(f"w{rng.randrange(50_000)}" for _ in range(60)) for _ in range(2000)]
    table = NgramTable.build([EvalSet("s", "p", examples)], 8)
    assert table.num_unique == 2000 * 53
    fixed = 1 << 24  # the bitmap
    per_gram = (table.nbytes - fixed) / table.num_unique
    assert 52 <= per_gram < 200, per_gram  # ids, hash, order, membership, positions, the vocabulary


def test_read_set_formats_and_errors(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n"
                                      + json.dumps({"text": "two"}) + "\n")
    assert read_set("a", tmp_path / "a.jsonl").examples == ["one", "two"]
    (tmp_path / "p.jsonl").write_text(json.dumps({"page": "a page"}) + "\n")
    assert read_set("p", tmp_path / "p.jsonl", text_field="page").examples == ["a page"]
    with pytest.raises(ValueError, match=r"p.jsonl:1: no string field 'text'"):
        read_set("p", tmp_path / "p.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        read_set("bad", tmp_path / "bad.jsonl")
    pq.write_table(pa.table({"text": ["x y", None], "id": [1, 2]}), tmp_path / "t.parquet")
    assert read_set("t", tmp_path / "t.parquet").examples == ["x y", ""]
    with pytest.raises(ValueError, match="no column 'body'"):
        read_set("t", tmp_path / "t.parquet", text_field="body")
    (tmp_path / "ptb.test.txt").write_text(" no it was n't black monday \n\n but while the new york \n")
    assert read_set("ptb", tmp_path / "ptb.test.txt").examples == [" no it was n't black monday ",
                                                                   " but while the new york "]
    with pytest.raises(ValueError, match="no such file"):
        read_set("x", tmp_path / "missing.jsonl")


def test_parse_sets() -> None:
    assert parse_sets(["wt2=data/wt2.jsonl", " ptb = a=b.txt"]) == [("wt2", "data/wt2.jsonl"),
                                                                    ("ptb", "a=b.txt")]
    for bad in (["nopath"], ["=x"], ["a b=x"], ["a="]):
        with pytest.raises(ValueError, match="NAME=PATH"):
            parse_sets(bad)
    with pytest.raises(ValueError, match="given twice"):
        parse_sets(["a=x", "a=y"])
