"""The GPT-2 paper's zero-shot table (Radford et al. 2019, Table 3) beside ours.

``python -m train.eval checkpoint=RUN preset=gpt2_paper`` runs the tasks below: LAMBADA is the
harness's own ``lambada_openai``; the others are harness task files in ``train/paper_tasks/``
(CBT-CN and CBT-NE on the validation set, WikiText-2 and WikiText-103, PTB and One Billion Word
as perplexity per original token after an invertible detokenizer, enwik8 in bits per byte and
text8 in bits per character). Their data are read from the evaluation data folder that
``python -m train.eval_data`` fills (``data=``, default ``data/eval``), so they run offline.

After the harness's own table, ``train.eval`` prints :func:`table`: each figure beside the paper's
for the same model size (the size is recognised from the model's shape), with every way our
scoring differs from the paper's named in :data:`DIFFERENCES`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the folder train.eval_data fills; the paper's task files read it through this variable
DATA_ENV = "WEBTEXT_EVAL_DATA"
DEFAULT_DATA = "data/eval"
TEST_BYTES = 5_000_000  # enwik8's and text8's test sets: their last 5 MB (the usual 90/5/5 split)
TASK_DIR = Path(__file__).parent / "paper_tasks"

# (n_layer, n_embd) of the four released models, as the paper names them
SIZES = {(12, 768): "117M", (24, 1024): "345M", (36, 1280): "762M", (48, 1600): "1542M"}


@dataclass(frozen=True)
class Row:
    label: str
    task: str
    metric: str  # the harness's metric name in the results ("<metric>,none")
    unit: str
    higher_is_better: bool
    paper: dict[str, float]  # size -> Table 3's figure


ROWS = (
    Row("LAMBADA", "lambada_openai", "perplexity", "ppl", False,
        {"117M": 35.13, "345M": 15.60, "762M": 10.87, "1542M": 8.63}),
    Row("LAMBADA", "lambada_openai", "acc", "acc %", True,
        {"117M": 45.99, "345M": 55.48, "762M": 60.12, "1542M": 63.24}),
    Row("CBT-CN", "gpt2_cbt_cn", "acc", "acc %", True,
        {"117M": 87.65, "345M": 92.35, "762M": 93.45, "1542M": 93.30}),
    Row("CBT-NE", "gpt2_cbt_ne", "acc", "acc %", True,
        {"117M": 83.4, "345M": 87.1, "762M": 88.0, "1542M": 89.05}),
    Row("WikiText-2", "gpt2_wikitext2", "token_perplexity", "ppl", False,
        {"117M": 29.41, "345M": 22.76, "762M": 19.93, "1542M": 18.34}),
    Row("PTB", "gpt2_ptb", "token_perplexity", "ppl", False,
        {"117M": 65.85, "345M": 47.33, "762M": 40.31, "1542M": 35.76}),
    Row("enwik8", "gpt2_enwik8", "bits_per_byte", "bpb", False,
        {"117M": 1.16, "345M": 1.01, "762M": 0.97, "1542M": 0.93}),
    Row("text8", "gpt2_text8", "bits_per_byte", "bpc", False,
        {"117M": 1.17, "345M": 1.06, "762M": 1.02, "1542M": 0.98}),
    Row("WikiText-103", "gpt2_wikitext103", "token_perplexity", "ppl", False,
        {"117M": 37.50, "345M": 26.37, "762M": 22.05, "1542M": 17.48}),
    Row("1BW", "gpt2_1bw", "token_perplexity", "ppl", False,
        {"117M": 75.20, "345M": 55.72, "762M": 44.575, "1542M": 42.16}),
)

PRESETS = {"gpt2_paper": list(dict.fromkeys(row.task for row in ROWS))}

# How our figures are computed differently from the paper's; printed under the table.
DIFFERENCES = (
    "LAMBADA: the harness's lambada_openai (OpenAI's detokenised test set), accuracy is the greedy "
    "match of the whole last word with no stop-word filter; the paper's 45.99/55.48/60.12/63.24 "
    "used a filter (63.24 -> 52.66 without it for 1542M), so expect ours lower (OpenAI's 117M "
    "weights give 32.56 here, ppl 40.06).",
    "Perplexities and bits: the harness's disjoint windows of the model's context (GPT-2's 1,024 "
    "tokens), each window conditioned on the token before it only; the paper's windowing is not "
    "published. Each document (WikiText) or chunk (PTB: 100 lines, 1BW: 100 sentences, "
    "enwik8/text8: about 50 kB) starts without context.",
    "Perplexity per original token: the dataset's whitespace-separated tokens plus one "
    "end-of-line per line, the <eos> the standard counts include (the paper does not say whether "
    "it counted them).",
    "Detokenizers: the harness's WikiText detokenizer; for PTB, 1BW and CBT a PTB-style one "
    "(train/paper_tasks/paper_tasks.py). The paper's own were not released.",
    "CBT: validation set, each option scored with the rest of its sentence conditioned on the "
    "20 context sentences and the question up to the blank (the paper's method); the "
    "question is not detokenised differently from the context.",
)


def data_folder() -> Path:
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)


def size_of(n_layer: int, n_embd: int) -> str | None:
    """The paper's name of the model with this shape, or None for other shapes."""
    return SIZES.get((n_layer, n_embd))


def figure(results: dict[str, Any], row: Row) -> float | None:
    """Our figure for ``row`` in a harness results dict, in the paper's unit (accuracy in %)."""
    value = results.get(row.task, {}).get(f"{row.metric},none")
    if not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value) * 100 if row.unit == "acc %" else float(value)


def table(results: dict[str, Any], size: str | None) -> str:
    """Markdown table: each of the paper's rows that ``results`` has, ours beside the paper's."""
    paper_name = f"GPT-2 paper, {size}" if size else "GPT-2 paper (no model of this shape)"
    lines = [f"| Task | Metric | Ours | {paper_name} |", "|---|---|---:|---:|"]
    for row in ROWS:
        ours = figure(results, row)
        if ours is None:
            continue
        theirs = f"{row.paper[size]:.2f}" if size else "-"
        lines.append(f"| {row.label} | {row.unit} | {ours:.2f} | {theirs} |")
    if len(lines) == 2:
        return ""
    notes = "\n".join(f"- {note}" for note in DIFFERENCES)
    return "\n".join(lines) + "\n\nHow our scoring differs from the paper's:\n" + notes


def records(results: dict[str, Any], size: str | None) -> list[dict[str, Any]]:
    """The table's rows as JSON records (for eval/<checkpoint>.json)."""
    out = []
    for row in ROWS:
        ours = figure(results, row)
        if ours is not None:
            out.append({"task": row.label, "harness_task": row.task, "metric": row.metric,
                        "unit": row.unit, "ours": ours,
                        "paper": row.paper[size] if size else None, "paper_size": size})
    return out
