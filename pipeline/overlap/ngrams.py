"""Exact n-gram overlap between evaluation sets and corpus documents.

The GPT-2 paper (section 4, Table 6) measured how many of each test set's 8-grams occur in WebText,
after normalising text to lower-case alphanumeric words: :func:`words` is that normalisation
(``re.findall(r"[a-z0-9]+", text.lower())``). The paper used Bloom filters; here the evaluation
sets, which are small, become an exact table (:class:`NgramTable`) that the corpus streams against.

The table holds every distinct n-gram of the sets as a row of word ids (words numbered over the
sets' vocabulary). The corpus side does no Python work per word: a chunk of documents (about
``CHUNK_BYTES`` of lower-cased UTF-8, joined by a byte that is no word's) is cut into words and
each word hashed with numpy (:class:`_Bytes`); the hash finds the word's id among the sets'
vocabulary (-1 for a word in no set); each window of n ids is hashed, a bitmap of the table's
hashes rejects almost every window at once, the few left are looked up among the sorted hashes and
compared id by id with the table's row and checked to lie in one document; last, every word of a
matching window is compared byte for byte with the evaluation word its hash named. So the counts
are exact: neither a window's hash nor a word's can make a match that is not there.

Memory is the table's (:attr:`NgramTable.nbytes`), set by the evaluation sets, never by the corpus:
per distinct n-gram 4 n bytes of ids, 8 of hash, 8 of order and 8 of set membership (52 bytes at
n = 8), per n-gram position of the sets 4 bytes, the vocabulary (its dictionary and bytes, about
150 bytes a word), and a fixed 16 MiB bitmap; ``bench/overlap.py`` measured 58 MiB per million
distinct 8-grams of English text beside the bitmap. A chunk's working memory is about 40 bytes per
byte of text (measured with tracemalloc: 78 MB at the 2 MiB ``CHUNK_BYTES``).
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

WORD = re.compile(r"[a-z0-9]+")
BITMAP_BITS = 27  # 2**27 bits: 16 MiB, about 1 false candidate per 40 windows at 3 M distinct n-grams
MAX_SETS = 64  # set membership is one bit per set in a uint64
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def words(text: str) -> list[str]:
    """The paper's normalisation: lower-case alphanumeric words (punctuation and spaces dropped)."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: str
    examples: list[str]


def parse_sets(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``["NAME=PATH", ...]`` as (name, path) pairs; ValueError on a malformed entry or a name twice."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not path:
            raise ValueError(f"{spec!r}: expected NAME=PATH, NAME made of letters, digits, _ . -")
        if name in {n for n, _ in out}:
            raise ValueError(f"{spec!r}: the set name {name!r} is given twice")
        out.append((name, path))
    if len(out) > MAX_SETS:
        raise ValueError(f"{len(out)} sets: at most {MAX_SETS}")
    return out


def read_set(name: str, path: str | Path, text_field: str = "text") -> EvalSet:
    """An evaluation set's examples, in the file's order: JSON lines (``.jsonl``, ``.json``) or
    Parquet (``.parquet``), the text in ``text_field``; any other file is plain text, one example a
    non-empty line (PTB's and One Billion Word's test files)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (set {name})")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        examples = []
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not JSON ({err})") from None
                text = row.get(text_field) if isinstance(row, dict) else None
                if not isinstance(text, str):
                    raise ValueError(f"{path}:{number}: no string field {text_field!r} "
                                     f"(overlap.text_field names it)")
                examples.append(text)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        if text_field not in schema.names:
            raise ValueError(f"{path}: no column {text_field!r}; it has {', '.join(schema.names)}")
        examples = [t or "" for t in pq.read_table(path, columns=[text_field]).column(text_field).to_pylist()]
    else:
        examples = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if line.strip()]
    return EvalSet(name=name, path=str(path), examples=examples)


_ALNUM = np.zeros(256, dtype=np.bool_)  # the bytes of [a-z0-9]: no byte of a multi-byte UTF-8
_ALNUM[ord("a"):ord("z") + 1] = True   # character is below 0x80, so in the UTF-8 of lowered text
_ALNUM[ord("0"):ord("9") + 1] = True   # these bytes are exactly the characters words() keeps
_BASE = 0x9E3779B97F4A7C15  # odd: invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)
CHUNK_BYTES = 1 << 21  # documents are read in chunks of about this much UTF-8 (working memory ~40 B a byte)


def _powers(base: int, count: int) -> np.ndarray:
    out = np.full(count, base, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(out, dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(31)
        h *= _MIX1
        h ^= h >> np.uint64(29)
        h *= _MIX2
        h ^= h >> np.uint64(32)
    return h


class _Bytes:
    """Powers of the word hash's base, grown on demand (the longest chunk read so far)."""

    def __init__(self) -> None:
        self.up = np.zeros(0, dtype=np.uint64)
        self.down = np.zeros(0, dtype=np.uint64)

    def words(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The words of ``data`` (lower-cased UTF-8): their start and end offsets and a 64-bit hash of
        each word's bytes, all with numpy (no Python step per word)."""
        b = np.frombuffer(data, dtype=np.uint8)
        edges = np.flatnonzero(np.diff(_ALNUM[b].astype(np.int8), prepend=0, append=0))
        starts, ends = edges[0::2], edges[1::2]
        if len(self.up) < len(b) + 1:
            size = max(len(b) + 1, 2 * len(self.up))
            self.up, self.down = _powers(_BASE, size), _powers(_BASE_INV, size)
        with np.errstate(over="ignore"):
            prefix = np.zeros(len(b) + 1, dtype=np.uint64)
            np.cumsum((b.astype(np.uint64) + np.uint64(1)) * self.up[:len(b)], out=prefix[1:])
            # sum over the word of (byte + 1) * BASE**(offset in the word): the same wherever it is
            h = (prefix[ends] - prefix[starts]) * self.down[starts]
        return starts, ends, _mix(h)


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-D array (a sort: numpy's hashing ``unique`` is slower)."""
    values = np.sort(values)
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=np.bool_)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _shifted(ids: np.ndarray) -> np.ndarray:
    """Ids as the hash reads them: plus 2, so that -1 (a word in no set) hashes too; a row holding
    it never matches a table row."""
    return (ids.astype(np.int64) + 2).astype(np.uint64)


def _polynomial(columns: Sequence[np.ndarray]) -> np.ndarray:
    """The mixed polynomial hash of rows whose k-th shifted ids are ``columns[k]``."""
    prime = np.uint64(0x100000001B3)
    h = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            h = h * prime + column
    return _mix(h)


def _hash(ids: np.ndarray, n: int) -> np.ndarray:
    """The hash of each window of ``n`` consecutive ids of ``ids`` (1-D)."""
    count = len(ids) - n + 1
    shifted = _shifted(ids)
    return _polynomial([shifted[k:k + count] for k in range(n)])


class NgramTable:
    """Every distinct n-gram of the evaluation sets, and where each set has them."""

    def __init__(self, n: int, sets: list[EvalSet], vocab: dict[str, int], grams: np.ndarray,
                 positions: list[list[np.ndarray]]) -> None:
        self.n = n
        self.sets = [s.name for s in sets]
        self.vocab = vocab
        self.grams = grams  # (U, n) int32, distinct rows, sorted
        self._positions = positions
        self.num_unique = len(grams)
        hashes = self._row_hashes(grams)
        self.order = np.argsort(hashes, kind="stable")
        self.keys = hashes[self.order]
        if len(self.keys) > 1 and bool((self.keys[1:] == self.keys[:-1]).any()):
            # two distinct n-grams with one 64-bit hash: rows are compared anyway, so a lookup
            # would still be right for one of them; keep the rule simple and refuse (never seen)
            raise RuntimeError("two evaluation n-grams share a 64-bit hash")
        self.bitmap = np.zeros(1 << (BITMAP_BITS - 3), dtype=np.uint8)  # one bit per slot
        slots = self.keys >> np.uint64(64 - BITMAP_BITS)
        bits = np.left_shift(1, slots & np.uint64(7)).astype(np.uint8)
        np.bitwise_or.at(self.bitmap, slots >> np.uint64(3), bits)
        self.membership = np.zeros(self.num_unique, dtype=np.uint64)
        for index, per_example in enumerate(positions):
            for ids in per_example:
                self.membership[ids] |= np.uint64(1 << index)
        # corpus words are found by a hash of their bytes, then checked byte for byte (find_many)
        self.word_bytes = [w.encode("ascii") for w in vocab]  # in id order: the dict keeps it
        self._bytes = _Bytes()
        _, _, hashes = self._bytes.words(b" ".join(self.word_bytes))
        if len(hashes) != len(vocab):
            raise RuntimeError("the evaluation vocabulary does not split back into its words")
        self.word_length = np.fromiter(map(len, self.word_bytes), dtype=np.int64, count=len(vocab))
        self.word_offset = np.zeros(len(vocab), dtype=np.int64)
        np.cumsum(self.word_length[:-1], out=self.word_offset[1:])
        self.word_flat = np.frombuffer(b"".join(self.word_bytes), dtype=np.uint8)
        self.vocab_ids = np.argsort(hashes, kind="stable").astype(np.int64)
        self.vocab_keys = hashes[self.vocab_ids]
        if len(self.vocab_keys) > 1 and bool((self.vocab_keys[1:] == self.vocab_keys[:-1]).any()):
            raise RuntimeError("two evaluation words share a 64-bit hash")
        vocab_bytes = (sys.getsizeof(vocab) + sum(sys.getsizeof(w) for w in vocab)
                       + sum(sys.getsizeof(w) for w in self.word_bytes) + 16 * len(vocab))
        self.nbytes = int(grams.nbytes + self.keys.nbytes + self.order.nbytes + self.bitmap.nbytes
                          + self.membership.nbytes + sum(a.nbytes for p in positions for a in p)
                          + vocab_bytes)
        self._digest = ""

    @staticmethod
    def _row_hashes(grams: np.ndarray) -> np.ndarray:
        """The hash of each row of ``grams``: the corpus windows' hash, row by row."""
        if not len(grams):
            return np.zeros(0, dtype=np.uint64)
        shifted = _shifted(grams)
        return _polynomial([shifted[:, k] for k in range(grams.shape[1])])

    @classmethod
    def build(cls, sets: Sequence[EvalSet], n: int) -> NgramTable:
        if n < 1:
            raise ValueError(f"n={n}: at least 1")
        if len(sets) > MAX_SETS:
            raise ValueError(f"{len(sets)} sets: at most {MAX_SETS}")
        vocab: dict[str, int] = {}
        windows: list[np.ndarray] = []
        lengths: list[list[int]] = []
        for evalset in sets:
            per_set = []
            for text in evalset.examples:
                ids = np.array([vocab.setdefault(w, len(vocab)) for w in words(text)], dtype=np.int32)
                count = max(0, len(ids) - n + 1)
                per_set.append(count)
                if count:
                    windows.append(np.lib.stride_tricks.sliding_window_view(ids, n))
            lengths.append(per_set)
        if len(vocab) >= 2**31 - 2:
            raise ValueError("the evaluation sets have more than 2**31 distinct words")
        every = np.concatenate(windows) if windows else np.zeros((0, n), dtype=np.int32)
        grams, inverse = np.unique(every, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1).astype(np.int32)
        positions: list[list[np.ndarray]] = []
        start = 0
        for per_set in lengths:
            mine = []
            for count in per_set:
                mine.append(inverse[start:start + count])
                start += count
            positions.append(mine)
        table = cls(n, list(sets), vocab, grams.astype(np.int32), positions)
        digest = hashlib.sha256(f"n={n}\n".encode())
        for evalset in sets:
            digest.update(f"{evalset.name}\n{len(evalset.examples)}\n".encode())
            for text in evalset.examples:
                digest.update(text.encode("utf-8", errors="surrogatepass") + b"\x00")
        table._digest = digest.hexdigest()
        return table

    def digest(self) -> str:
        """sha256 of ``n`` and the sets' names and texts: what the table depends on."""
        return self._digest

    def positions(self, set_index: int) -> list[np.ndarray]:
        """Per example of set ``set_index``, the table id of the n-gram at each of its positions."""
        return self._positions[set_index]

    def find_many(self, texts: Iterable[str]) -> list[np.ndarray]:
        """For each document, the sorted distinct table ids of the n-grams it contains."""
        texts = list(texts)
        out = [np.zeros(0, dtype=np.int64) for _ in texts]
        if not self.num_unique:
            return out
        parts: list[bytes] = []
        first = size = 0
        for index, text in enumerate(texts):
            parts.append(text.lower().encode("utf-8", errors="surrogatepass"))
            size += len(parts[-1]) + 1
            if size >= CHUNK_BYTES:
                self._find_chunk(parts, out, first)
                parts, first, size = [], index + 1, 0
        if parts:
            self._find_chunk(parts, out, first)
        return out

    def _find_chunk(self, parts: list[bytes], out: list[np.ndarray], first: int) -> None:
        """``out[first + i]`` for each document ``parts[i]`` (lower-cased UTF-8)."""
        n = self.n
        data = b"\x00".join(parts)  # not a word byte: no word spans two documents
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        doc_start = np.zeros(len(parts), dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=doc_start[1:])
        starts, ends, word_hash = self._bytes.words(data)
        if len(starts) < n:
            return
        at = np.minimum(np.searchsorted(self.vocab_keys, word_hash), len(self.vocab_keys) - 1)
        ids = np.where(self.vocab_keys[at] == word_hash, self.vocab_ids[at], -1)
        h = _hash(ids, n)
        slots = h >> np.uint64(64 - BITMAP_BITS)
        bits = (self.bitmap[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)) & 1
        maybe = np.flatnonzero(bits)
        if not len(maybe):
            return
        at = np.minimum(np.searchsorted(self.keys, h[maybe]), len(self.keys) - 1)
        hit = self.keys[at] == h[maybe]
        maybe, rows = maybe[hit], self.order[at[hit]]
        window = np.lib.stride_tricks.sliding_window_view(ids, n)[maybe]
        word_doc = np.searchsorted(doc_start, starts, side="right") - 1
        same = (window == self.grams[rows]).all(axis=1) & (word_doc[maybe] == word_doc[maybe + n - 1])
        maybe, rows = maybe[same], rows[same]
        if not len(maybe):
            return
        # byte for byte: a corpus word whose 64-bit hash equals an evaluation word's never counts
        span = maybe[:, None] + np.arange(n)
        wrong = self._wrong_words(data, starts, ends, ids, distinct(span.ravel()))
        if len(wrong):
            keep = ~np.isin(span, wrong).any(axis=1)
            maybe, rows = maybe[keep], rows[keep]
        # distinct (document, row) pairs, sorted by document then row, cut per document
        pairs = distinct(word_doc[maybe] * np.int64(self.num_unique) + rows)
        doc, rows = pairs // self.num_unique, pairs % self.num_unique
        cuts = np.searchsorted(doc, np.arange(len(parts) + 1))
        for i in range(len(parts)):
            if cuts[i + 1] > cuts[i]:
                out[first + i] = rows[cuts[i]:cuts[i + 1]]

    def _wrong_words(self, data: bytes, starts: np.ndarray, ends: np.ndarray, ids: np.ndarray,
                     positions: np.ndarray) -> np.ndarray:
        """The word positions among ``positions`` whose bytes differ from those of the evaluation
        word their hash named (all compared at once: one gather of every byte involved)."""
        b = np.frombuffer(data, dtype=np.uint8)
        word = ids[positions]
        begin, length = starts[positions], ends[positions] - starts[positions]
        wrong = length != self.word_length[word]
        check = np.flatnonzero(~wrong)
        length_c = length[check]
        owner = np.repeat(np.arange(len(check)), length_c)
        within = np.arange(int(length_c.sum())) - np.repeat(np.cumsum(length_c) - length_c, length_c)
        theirs = self.word_flat[self.word_offset[word[check]][owner] + within]
        differs = b[begin[check][owner] + within] != theirs
        wrong[check[np.bincount(owner, weights=differs, minlength=len(check)) > 0]] = True
        return positions[wrong]

    def find(self, text: str) -> np.ndarray:
        """The sorted distinct table ids of the n-grams in one document."""
        return self.find_many([text])[0]

    def sets_of(self, ids: np.ndarray) -> dict[str, int]:
        """How many of the distinct ``ids`` occur in each set (sets with none left out)."""
        masks = self.membership[np.asarray(ids, dtype=np.int64)]
        out = {}
        for index, name in enumerate(self.sets):
            count = int(((masks >> np.uint64(index)) & np.uint64(1)).sum())
            if count:
                out[name] = count
        return out
