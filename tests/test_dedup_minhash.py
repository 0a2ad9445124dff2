"""MinHash signatures (pipeline/dedup/minhash.py): exactly datasketch's, and LSH finds what it should."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from pipeline.dedup.minhash import (
    MinHasher,
    band_hashes,
    lsh_params,
    normalize,
    shingle_hashes,
    shingle_strings,
    word_hashes,
)

TEXTS = [
    "The council voted on Tuesday to restore the evening ferry route as a trial.",
    "Hello, World! The 2024 ferry \u2014 returns; \u201cquoted\u201d text\u2026 and it\u2019s back.",
    "Die Stadtbibliothek verleiht seit diesem Fr\u00fchjahr nicht nur B\u00fccher, sondern auch Saatgut.",
    "one two three",
    "word " * 40,
    "",
    "   \n\t ...!!! ",
]


def test_normalize() -> None:
    assert normalize("Hello,   World!\nIt's 2024.") == b"hello world it s 0000"
    assert normalize("\u201cQuoted\u201d \u2014 and\u00a0spaced\u2026") == b"quoted and spaced"
    assert normalize("Stra\u00dfe \u00dcBER") == "stra\u00dfe \u00fcber".encode()
    assert normalize("  ...  ") == b""


def test_word_hashes_follow_the_words() -> None:
    norm = normalize("the cat saw the dog and the cat ran")
    hashes = word_hashes(norm)
    words = norm.split()
    assert len(hashes) == len(words)
    by_word: dict[bytes, int] = {}
    for word, h in zip(words, hashes.tolist(), strict=True):
        assert by_word.setdefault(word, h) == h  # equal words, equal hashes
    assert len(set(by_word.values())) == len(by_word)  # distinct words, distinct hashes
    assert word_hashes(b"").size == 0
    # a word's hash does not depend on where it is or what surrounds it
    assert word_hashes(b"cat")[0] == word_hashes(b"a b cat")[2] == hashes[1]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_shingle_hashes_are_the_shingles(text: str, ngram: int) -> None:
    strings = shingle_strings(text, ngram)
    hashes = shingle_hashes(text, ngram)
    assert len(hashes) == len(set(strings))
    assert hashes.dtype == np.uint64 and np.all(np.diff(hashes.astype(np.float64)) >= 0)


def test_normalized_bytes_give_the_same_shingles() -> None:
    for text in TEXTS:
        assert np.array_equal(shingle_hashes(normalize(text)), shingle_hashes(text))


def test_the_same_shingles_give_the_same_hashes_in_other_texts() -> None:
    a = shingle_hashes("alpha beta gamma delta epsilon zeta eta")
    b = shingle_hashes("omega alpha beta gamma delta epsilon")
    assert len(np.intersect1d(a, b)) == 1  # "alpha beta gamma delta epsilon"


@pytest.mark.parametrize("scheme", ["affine32", "affine64"])
@pytest.mark.parametrize("num_perm", [64, 128])
def test_signature_equals_datasketch(scheme: str, num_perm: int) -> None:
    hasher = MinHasher(num_perm=num_perm, seed=7, scheme=scheme)
    mask = (1 << 32) - 1 if scheme == "affine32" else (1 << 64) - 1
    long_text = " ".join(random.Random(3).choice(TEXTS[0].split()) + str(i % 7) for i in range(700))
    for text in [*TEXTS, long_text]:
        shingles = shingle_hashes(text)
        theirs = MinHash(num_perm=num_perm, seed=7, scheme=scheme, hashfunc=lambda h: int(h) & mask)
        for h in shingles.tolist():  # datasketch's own per-value path
            theirs.update(h)
        ours = hasher(text)
        assert ours.dtype == theirs.hashvalues.dtype
        assert np.array_equal(ours, theirs.hashvalues), text[:40]


def test_signature_estimates_jaccard() -> None:
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(3000)]
    base = [rng.choice(vocabulary) for _ in range(600)]
    other = list(base)
    for i in rng.sample(range(600), 40):
        other[i] = rng.choice(vocabulary)
    a, b = set(shingle_strings(" ".join(base))), set(shingle_strings(" ".join(other)))
    true = len(a & b) / len(a | b)
    hasher = MinHasher(num_perm=256)
    estimate = float(np.mean(hasher(" ".join(base)) == hasher(" ".join(other))))
    assert abs(estimate - true) < 0.08, (estimate, true)


def test_lsh_params_are_datasketchs() -> None:
    for threshold, num_perm in ((0.7, 128), (0.5, 256), (0.9, 64)):
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert lsh_params(threshold, num_perm) == (lsh.b, lsh.r)
    assert lsh_params(0.7, 128) == (14, 9)


def test_band_hashes() -> None:
    hasher = MinHasher()
    sigs = np.stack([hasher(t) for t in TEXTS[:3]] + [hasher(TEXTS[0])])
    bands = band_hashes(sigs, 14, 9)
    assert bands.shape == (4, 14) and bands.dtype == np.uint64
    assert np.array_equal(bands[0], bands[3])
    assert not np.any(bands[0] == bands[1])
    changed = sigs[3].copy()
    changed[9] ^= 1  # one value of the second band
    again = band_hashes(np.stack([sigs[0], changed]), 14, 9)
    assert list(again[0] == again[1]) == [True] + [False] + [True] * 12


def planted_pairs(count: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """(a, b, exact Jaccard of their 5-gram sets) for pairs of 400-word documents where b is a with
    a random share of words replaced, spread so that the Jaccard covers 0.3-1.0."""
    rng = random.Random(seed)
    vocabulary = [f"{rng.getrandbits(40):x}" for _ in range(20000)]
    pairs = []
    for _ in range(count):
        a = [rng.choice(vocabulary) for _ in range(400)]
        b = list(a)
        for i in rng.sample(range(400), rng.randint(0, 60)):
            b[i] = rng.choice(vocabulary)
        sa, sb = set(shingle_strings(" ".join(a))), set(shingle_strings(" ".join(b)))
        pairs.append((" ".join(a), " ".join(b), len(sa & sb) / len(sa | sb)))
    return pairs


def test_lsh_finds_planted_near_duplicates() -> None:
    """Acceptance: >= 95% of pairs with J >= threshold + 0.1 are candidates, <= 5% of pairs with
    J <= threshold - 0.1 are (default num_perm, threshold and weights)."""
    threshold = 0.7
    bands, rows = lsh_params(threshold, 128)
    hasher = MinHasher(num_perm=128)
    pairs = planted_pairs(600)
    high = [p for p in pairs if p[2] >= threshold + 0.1]
    low = [p for p in pairs if p[2] <= threshold - 0.1]
    assert len(high) >= 100 and len(low) >= 100, (len(high), len(low))

    def candidate(a: str, b: str) -> bool:
        ha, hb = band_hashes(np.stack([hasher(a), hasher(b)]), bands, rows)
        return bool(np.any(ha == hb))

    found = sum(candidate(a, b) for a, b, _ in high) / len(high)
    flagged = sum(candidate(a, b) for a, b, _ in low) / len(low)
    print(f"\nLSH ({bands} bands x {rows} rows): {found:.3f} of {len(high)} pairs with J >= 0.8 found, "
          f"{flagged:.3f} of {len(low)} pairs with J <= 0.6 flagged")
    assert found >= 0.95
    assert flagged <= 0.05
