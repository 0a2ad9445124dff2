"""MinHash signatures from text, vectorized: no Python call per shingle.

``normalize`` folds a text to lowercase words (punctuation and whitespace folded to one space,
digits to ``0``) as UTF-8 bytes. ``shingle_hashes`` gives the distinct 64-bit hashes of its word
n-grams, computed with numpy from one pass over the bytes: a polynomial hash of every word from
prefix sums, then of every n-gram from its words, each finished with the MurmurHash3 mixer.
``MinHasher`` applies datasketch's permutations (its ``affine32`` or ``affine64`` scheme, the same
``a`` and ``b`` for the same ``num_perm`` and ``seed``) to a whole document's shingle hashes at once,
in chunks that stay in cache: the signature equals
``datasketch.MinHash(num_perm, seed, scheme, hashfunc=<the shingle hash>)`` fed the same shingles,
which the tests check. ``band_hashes`` cuts signatures into LSH bands, ``lsh_params`` takes bands and
rows from datasketch's false-positive/false-negative weighted optimum.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from datasketch import MinHash, MinHashLSH

SCHEMES = {"affine32": (np.uint32, 32), "affine64": (np.uint64, 64)}
_U64 = np.uint64
_BASE = 0x100000001B3  # an odd base for the word polynomial (FNV-1a's 64-bit prime)
_CHUNK = 256  # shingles per step of the permutation matrix: 128 x 256 x 8 bytes stay in cache

# Bytes -> a space (punctuation, controls, whitespace) or "0" (digits); letters and UTF-8 stay.
_FOLD = bytearray(range(256))
for _c in range(256):
    if _c < 0x80 and not chr(_c).isalnum():
        _FOLD[_c] = 0x20
    elif 0x30 <= _c <= 0x39:
        _FOLD[_c] = 0x30
_FOLD_TABLE = bytes(_FOLD)
# Punctuation outside ASCII that real text uses: quotes, dashes, ellipsis, guillemets, spaces.
_UNICODE_PUNCT = ("\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014", "\u2026", "\u00ab",
                  "\u00bb", "\u00a0", "\u2022", "\u00b7")


def normalize(text: str) -> bytes:
    """Lowercase words separated by single spaces, digits as ``0``, as UTF-8."""
    text = text.lower()
    for mark in _UNICODE_PUNCT:
        if mark in text:
            text = text.replace(mark, " ")
    return b" ".join(text.encode("utf-8", "replace").translate(_FOLD_TABLE).split())


# MurmurHash3's finalizer constants per width: shift, multiplier, shift, multiplier, shift.
_FMIX = {np.dtype(np.uint64): (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33),
         np.dtype(np.uint32): (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)}


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer (an avalanching bijection) of h's width, in place on a fresh array."""
    kind = h.dtype.type
    s1, m1, s2, m2, s3 = (kind(c) for c in _FMIX[h.dtype])
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


class _Powers:
    """BASE^i and BASE^-i mod 2^64 for i < n, grown on demand."""

    def __init__(self) -> None:
        self.up = np.ones(0, dtype=_U64)
        self.down = np.ones(0, dtype=_U64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < n:
            size = max(n, 2 * len(self.up), 1 << 16)
            with np.errstate(over="ignore"):
                self.up = np.ones(size, dtype=_U64)
                self.up[1:] = np.cumprod(np.full(size - 1, _BASE, dtype=_U64))
                inverse = pow(_BASE, -1, 1 << 64)
                self.down = np.ones(size, dtype=_U64)
                self.down[1:] = np.cumprod(np.full(size - 1, inverse, dtype=_U64))
        return self.up[:n], self.down[:n]


_POWERS = _Powers()


def word_hashes(norm: bytes) -> np.ndarray:
    """A 64-bit hash per word of a ``normalize``d text, in order."""
    if not norm:
        return np.zeros(0, dtype=_U64)
    codes = np.frombuffer(norm, dtype=np.uint8)
    n = len(codes)
    up, down = _POWERS.get(n)
    with np.errstate(over="ignore"):
        prefix = np.zeros(n + 1, dtype=_U64)
        np.cumsum(codes.astype(_U64) * up, out=prefix[1:])
        spaces = np.flatnonzero(codes == 0x20)
        starts = np.concatenate(([0], spaces + 1))
        ends = np.concatenate((spaces, [n]))
        # sum of code[j] * BASE^(j - start) over the word, then its length folded in
        h = (prefix[ends] - prefix[starts]) * down[starts]
        h ^= (ends - starts).astype(_U64) * _U64(0x9E3779B97F4A7C15)
        return _fmix(h)


@lru_cache(maxsize=16)
def _ngram_weights(ngram: int) -> tuple[np.uint64, ...]:
    rng = np.random.default_rng(0x5EED)
    return tuple(_U64(w) | _U64(1) for w in rng.integers(0, 1 << 63, ngram, dtype=np.uint64))


def shingle_hashes(text: str | bytes, ngram: int = 5) -> np.ndarray:
    """The distinct 64-bit hashes of the word ``ngram``-grams of ``text`` (the whole text as one
    shingle when it has fewer words; none when it has no word). Bytes are taken as already
    ``normalize``d."""
    words = word_hashes(text if isinstance(text, bytes) else normalize(text))
    if len(words) == 0:
        return words
    n = min(ngram, len(words))
    count = len(words) - n + 1
    weights = _ngram_weights(n)
    with np.errstate(over="ignore"):
        h = words[:count] * weights[0]
        for k in range(1, n):
            h += words[k:k + count] * weights[k]
        return np.unique(_fmix(h))


def shingle_strings(text: str, ngram: int = 5) -> list[bytes]:
    """The same shingles as ``shingle_hashes``, as the bytes of their words (for datasketch's own
    hashing, in tests and the benchmark)."""
    words = normalize(text).split()
    if not words:
        return []
    n = min(ngram, len(words))
    return [b" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


class MinHasher:
    """Signatures with datasketch's permutations of ``scheme``, for ``num_perm`` and ``seed``."""

    def __init__(self, num_perm: int = 128, seed: int = 1, scheme: str = "affine32",
                 ngram: int = 5) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {scheme!r}")
        self.num_perm, self.seed, self.scheme, self.ngram = num_perm, seed, scheme, ngram
        self.dtype, width = SCHEMES[scheme]
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations
        self.a = np.ascontiguousarray(a, dtype=self.dtype)[:, None]
        self.b = np.ascontiguousarray(b, dtype=self.dtype)[:, None]
        self.empty = np.full(num_perm, np.iinfo(self.dtype).max, dtype=self.dtype)
        self._work = np.empty((num_perm, _CHUNK), dtype=self.dtype)

    def hashes(self, shingles: np.ndarray) -> np.ndarray:
        """Shingle hashes as the scheme's input values, mixed as datasketch mixes them."""
        if self.dtype == np.uint32:
            return _fmix(shingles.astype(np.uint32))  # the low 32 bits, as a 32-bit hashfunc gives
        return _fmix(shingles.copy())

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """The signature of a set of 64-bit shingle hashes."""
        values = self.hashes(shingles)
        out = self.empty.copy()
        with np.errstate(over="ignore"):
            for start in range(0, len(values), _CHUNK):
                chunk = values[start:start + _CHUNK]
                work = self._work[:, :len(chunk)]
                np.multiply(self.a, chunk, out=work)
                work += self.b
                np.minimum(out, work.min(axis=1), out=out)
        return out

    def __call__(self, text: str) -> np.ndarray:
        return self.signature(shingle_hashes(text, self.ngram))


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) minimizing datasketch's weighted false-positive and false-negative areas (an
    integration: computed once per setting)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents, bands) 64-bit hashes of each band's ``rows`` signature values."""
    docs = signatures.shape[0]
    cut = signatures[:, :bands * rows].astype(_U64).reshape(docs, bands, rows)
    weights = np.array(_ngram_weights(rows), dtype=_U64)
    with np.errstate(over="ignore"):
        return _fmix((cut * weights).sum(axis=2, dtype=_U64))
