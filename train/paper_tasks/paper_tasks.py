"""The GPT-2 paper's datasets for lm-evaluation-harness: loaders, detokenizers and metrics.

The task files beside this module name these functions (``!function paper_tasks.NAME``). Each
loader reads the dataset in its original format from the evaluation data folder
(``train.paper.data_folder()``, which ``python -m train.eval_data`` fills), so the tasks run
without network:

- ``ptb/ptb.test.txt``: Mikolov's PTB test set, one sentence a line (no punctuation, ``<unk>``,
  ``N`` for numbers);
- ``1bw/news.en.heldout-00000-of-00050``: One Billion Word's test set, one tokenised sentence a line;
- ``enwik8/enwik8``, ``text8/text8``: the 100 MB files; the test set is their last 5,000,000 bytes
  (the usual 90/5/5 split);
- ``cbt/{CN,NE}_validation.jsonl``: the Children's Book Test rows as ``datasets`` gives them
  (``sentences``: 20 strings, ``question`` with ``XXXXX`` for the blank, ``options``: 10 strings,
  ``answer``);
- ``wikitext/{wikitext-2-raw-v1,wikitext-103-raw-v1}_test.jsonl``: WikiText's test documents as
  ``EleutherAI/wikitext_document_level`` gives them (``page``).

Long texts become documents of whole lines (a chunk of ``CHUNK_LINES`` sentences, or about
``CHUNK_BYTES`` bytes) so that ``limit`` and the progress bar mean something; each document records
its count of original tokens (whitespace-separated words plus one end-of-line per line) and of
original bytes, which the metrics divide by.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

from train.paper import TEST_BYTES, data_folder

CHUNK_LINES = 100
CHUNK_BYTES = 50_000
BLANK = "XXXXX"


def _path(*parts: str) -> Path:
    path = data_folder().joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not there; python -m train.eval_data data={data_folder()} "
                                "downloads the GPT-2 paper's datasets (see docs/eval.md)")
    return path


def _dataset(split: str, rows: list[dict[str, Any]]) -> datasets.DatasetDict:
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})


# --- detokenizers -----------------------------------------------------------------------------------

def ptb_detokenize(text: str) -> str:
    """Undo PTB-style tokenisation (as in PTB, One Billion Word and the Children's Book Test):
    split contractions and possessives, spaces before punctuation and inside brackets, ``` and
    '' quotes."""
    text = text.replace("``", '"').replace("''", '"')
    text = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m|') ", r"\1 ", text + " ")[:-1]
    text = re.sub(r" ([.,;:!?%)\]}])", r"\1", text)
    text = re.sub(r"([(\[{$]) ", r"\1", text)
    text = re.sub(r'" ([^"\n]*?) "', r'"\1"', text)  # a quoted span: no spaces inside its quotes
    text = text.replace(" -- ", " - ").replace(" \n", "\n").replace("\n ", "\n")
    return text


def _tokens(lines: list[str]) -> int:
    """Original tokens of ``lines``: their words and one end-of-line each."""
    return sum(len(line.split()) + 1 for line in lines)


def _line_documents(lines: list[str], joiner: str) -> list[dict[str, Any]]:
    docs = []
    for start in range(0, len(lines), CHUNK_LINES):
        chunk = lines[start:start + CHUNK_LINES]
        original = "\n".join(chunk)
        docs.append({"text": ptb_detokenize(joiner.join(line.strip() for line in chunk)),
                     "original": original, "tokens": _tokens(chunk),
                     "bytes": len(original.encode("utf-8"))})
    return docs


def _nonblank_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


# --- loaders (custom_dataset) ---------------------------------------------------------------------

def load_ptb(**_: Any) -> datasets.DatasetDict:
    # the sentences of PTB's test set follow each other in their articles: one running text
    return _dataset("test", _line_documents(_nonblank_lines(_path("ptb", "ptb.test.txt")), " "))


def load_1bw(**_: Any) -> datasets.DatasetDict:
    # One Billion Word's sentences are shuffled: one a line
    path = _path("1bw", "news.en.heldout-00000-of-00050")
    return _dataset("test", _line_documents(_nonblank_lines(path), "\n"))


def _byte_documents(data: bytes, separator: bytes) -> list[dict[str, Any]]:
    """The last TEST_BYTES bytes of ``data`` in documents of about CHUNK_BYTES, cut after a
    ``separator``; every byte lands in exactly one document."""
    test = data[-TEST_BYTES:]
    docs, start = [], 0
    while start < len(test):
        cut = test.find(separator, start + CHUNK_BYTES)
        end = len(test) if cut < 0 else cut + 1
        piece = test[start:end]
        # the split point may fall inside a UTF-8 character: its stray bytes read as U+FFFD
        docs.append({"text": piece.decode("utf-8", errors="replace"), "bytes": len(piece)})
        start = end
    return docs


def load_enwik8(**_: Any) -> datasets.DatasetDict:
    return _dataset("test", _byte_documents(_path("enwik8", "enwik8").read_bytes(), b"\n"))


def load_text8(**_: Any) -> datasets.DatasetDict:
    return _dataset("test", _byte_documents(_path("text8", "text8").read_bytes(), b" "))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_cbt_cn(**_: Any) -> datasets.DatasetDict:
    return _dataset("validation", [_cbt_row(r) for r in _jsonl(_path("cbt", "CN_validation.jsonl"))])


def load_cbt_ne(**_: Any) -> datasets.DatasetDict:
    return _dataset("validation", [_cbt_row(r) for r in _jsonl(_path("cbt", "NE_validation.jsonl"))])


def _wikitext(name: str) -> datasets.DatasetDict:
    docs = []
    for row in _jsonl(_path("wikitext", f"{name}_test.jsonl")):
        lines = row["page"].split("\n")
        if lines[-1] == "":  # the page's last line ends with its end-of-line
            lines.pop()
        docs.append({"page": row["page"], "text": wikitext_detokenizer(row), "tokens": _tokens(lines),
                     "bytes": len(row["page"].encode("utf-8"))})
    return _dataset("test", docs)


def load_wikitext2(**_: Any) -> datasets.DatasetDict:
    return _wikitext("wikitext-2-raw-v1")


def load_wikitext103(**_: Any) -> datasets.DatasetDict:
    return _wikitext("wikitext-103-raw-v1")


# --- the Children's Book Test -------------------------------------------------------------------

def _cbt_row(row: dict[str, Any]) -> dict[str, Any]:
    """The prompt and the ten continuations of one CBT question, as the paper scores them: each
    option followed by the rest of its sentence, conditioned on the 20 sentences and the
    question up to the blank."""
    question = ptb_detokenize(row["question"])
    if question.count(BLANK) != 1 or row["answer"] not in row["options"]:
        raise ValueError(f"CBT row without one {BLANK} or with its answer not among the options: {row}")
    before, after = question.split(BLANK)
    context = ptb_detokenize(" ".join(s.strip() for s in row["sentences"]))
    return {**row, "prompt": f"{context} {before}",
            "choices": [option + after for option in row["options"]],
            "label": row["options"].index(row["answer"])}


# --- metrics --------------------------------------------------------------------------------------

def token_results(doc: dict[str, Any], results: list[float]) -> dict[str, Any]:
    (loglikelihood,) = results
    return {"token_perplexity": (loglikelihood, doc["tokens"]),
            "bits_per_byte": (loglikelihood, doc["bytes"])}


def byte_results(doc: dict[str, Any], results: list[float]) -> dict[str, Any]:
    (loglikelihood,) = results
    return {"bits_per_byte": (loglikelihood, doc["bytes"])}
