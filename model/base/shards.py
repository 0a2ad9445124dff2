"""The token-shard format: llm.c's ``.bin`` (``dev/data/data_common.py``), written by the pipeline's
tokenize stage, read by training and the benchmarks.

A header of 256 int32 (magic 20240520, version 1, token count, zeros), then the tokens as uint16.
Every document is preceded by ``<|endoftext|>`` (50256), as llm.c and modded-nanogpt write them, so
shards made there train here and vice versa.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.uint16


def header(num_tokens: int) -> np.ndarray:
    """The 256-int32 header of a shard holding ``num_tokens`` tokens."""
    head = np.zeros(HEADER_INTS, dtype=np.int32)
    head[:3] = (MAGIC, VERSION, num_tokens)
    return head


def read_shard(path: str | Path) -> np.ndarray:
    """The tokens of one llm.c shard, memory-mapped; raises ``ValueError`` naming what is wrong."""
    path = Path(path)
    head = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if len(head) < HEADER_INTS or head[0] != MAGIC:
        raise ValueError(f"{path}: not an llm.c token shard (magic {head[:1]} != {MAGIC})")
    if head[1] != VERSION:
        raise ValueError(f"{path}: shard version {head[1]}, expected {VERSION}")
    num_tokens = int(head[2])
    expected, size = HEADER_BYTES + 2 * num_tokens, path.stat().st_size
    if size != expected:
        held = (size - HEADER_BYTES) / 2
        raise ValueError(f"{path}: {held:,g} tokens ({size:,} bytes), the header promises {num_tokens:,} "
                         f"({expected:,} bytes): cut short or padded; write it again (the tokenize stage) "
                         "or remove it")
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(num_tokens,))
