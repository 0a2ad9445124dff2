"""HellaSwag evaluation, completion style, as llm.c and nanoGPT do it.

HellaSwag (Zellers et al., 2019) gives a context and four endings, one of them right. A base model
that cannot follow a multiple-choice prompt is scored the "completion" way instead: each ending is
appended to the context (GPT-2 BPE, with the space that separates it from the context: tokens of
``ctx`` followed by tokens of ``" " + ending``), the model reads the four candidates, and each
ending is scored by the cross-entropy of its own tokens given everything before them. The context's
tokens are not scored: they are the same in all four candidates.

Two accuracies, as in llm.c:

* ``acc_norm``: the ending with the lowest MEAN loss per token wins. This is the headline figure;
  averaging keeps long endings from being penalized for their length.
* ``acc``: the ending with the lowest SUM of losses wins.

Reference figures of this project (completion style, the full validation set ``hellaswag_val.jsonl``
of 10,042 examples): OpenAI's GPT-2 124M scores 0.2955 acc_norm and GPT-2 1.5B scores 0.4893.
Chance is 0.25.

Contexts longer than the model allows (``block_size`` minus the longest ending) are cut from the
LEFT: the end of the context, which the endings continue, is what matters for choosing among them.
HellaSwag's examples are a few hundred tokens at most, far from GPT-2's 1,024 positions: cutting is
for small test and debugging models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from model.base.tokenizer import gpt2_encoding

NUM_ENDINGS = 4
PAD_ID = 0  # any id would do: padding is masked out and, the model being causal, never read


@dataclass(frozen=True)
class Example:
    """One line of the official ``hellaswag_{train,val}.jsonl``. ``ctx`` is ``ctx_a`` followed by
    ``ctx_b``; only ``ctx``, ``endings`` and ``label`` are used for scoring."""

    ind: int
    activity_label: str
    ctx: str
    ctx_a: str
    ctx_b: str
    endings: tuple[str, ...]
    label: int
    split: str
    split_type: str
    source_id: str


# Key -> expected JSON type. bool is excluded from int separately (True is an int in Python).
_FIELDS: dict[str, type] = {
    "ind": int, "activity_label": str, "ctx": str, "ctx_a": str, "ctx_b": str, "endings": list,
    "label": int, "split": str, "split_type": str, "source_id": str,
}


def _parse(line: str) -> Example:
    """One example from a JSON line; ValueError says what is wrong (the caller adds where)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for key, kind in _FIELDS.items():
        if key not in obj:
            raise ValueError(f"missing key {key!r}")
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{key!r} should be {kind.__name__}, got {type(value).__name__}")
    endings = obj["endings"]
    if len(endings) != NUM_ENDINGS:
        raise ValueError(f"expected {NUM_ENDINGS} endings, got {len(endings)}")
    if not all(isinstance(e, str) for e in endings):
        raise ValueError("endings should all be strings")
    if not 0 <= obj["label"] < NUM_ENDINGS:
        raise ValueError(f"label {obj['label']} out of range 0..{NUM_ENDINGS - 1}")
    return Example(**{key: obj[key] for key in _FIELDS if key != "endings"}, endings=tuple(endings))


def read_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """The examples of a HellaSwag jsonl file, in file order; the first ``limit`` when given.

    Every line is checked (JSON object, all keys with their types, 4 endings, label 0-3): a bad line
    raises ValueError naming the file and the line number. Blank lines are skipped.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    examples: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            try:
                examples.append(_parse(line))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
    return examples


def render(example: Example, enc: tiktoken.Encoding, block_size: int | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The four candidates of ``example`` as ``(tokens, mask, label)``.

    ``tokens`` (4, T) holds row i = tokens of ``ctx`` + tokens of ``" " + endings[i]``, padded with
    ``PAD_ID`` to the longest row T; ``mask`` (4, T) is 1 exactly on row i's ending tokens. The two are
    encoded separately, as llm.c does, so the context's tokens are identical in all four rows.

    With ``block_size``, a context too long for every row to fit is cut from the LEFT, by the same
    amount in all rows (keeping them identical): at most ``block_size - longest ending`` of its last
    tokens stay. An ending that leaves no room for one context token raises ValueError, since its
    first token could not be scored.
    """
    ctx = enc.encode_ordinary(example.ctx)
    ends = [enc.encode_ordinary(" " + ending) for ending in example.endings]
    if block_size is not None:
        room = block_size - max(len(e) for e in ends)
        if room < 1:
            raise ValueError(f"example {example.ind}: an ending of {block_size - room} tokens leaves no "
                             f"room for context in {block_size} positions")
        ctx = ctx[max(0, len(ctx) - room):]
    if not ctx:
        # The first ending token is predicted from the position before it: there must be one.
        raise ValueError(f"example {example.ind}: empty context")
    width = len(ctx) + max(len(e) for e in ends)
    tokens = torch.full((NUM_ENDINGS, width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((NUM_ENDINGS, width), dtype=torch.long)
    for i, end in enumerate(ends):
        row = ctx + end
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, len(ctx): len(row)] = 1
    return tokens, mask, example.label


def _logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    out = model(tokens)
    # GPT returns (logits, loss); accept a bare tensor too, so any causal LM can be evaluated.
    return out[0] if isinstance(out, tuple) else out


def score_candidates(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_loss, mean_loss)``, each (4,) float32: the cross-entropy of each row's ending tokens.

    The logits at position t predict token t + 1, so the loss of position t counts when token t + 1
    is an ending token. Computed in float32 whatever dtype the model (or the caller's autocast)
    produces the logits in.
    """
    logits = _logits(model, tokens).float()  # (4, T, V)
    targets = tokens[:, 1:]
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), reduction="none")
    losses = losses.view_as(targets)  # (4, T - 1)
    shift_mask = mask[:, 1:].to(losses.dtype)
    sum_loss = (losses * shift_mask).sum(dim=1)
    return sum_loss, sum_loss / shift_mask.sum(dim=1)


@torch.no_grad()
def evaluate(model: nn.Module, examples: Sequence[Example], device: torch.device | str,
             rank: int = 0, world_size: int = 1, lockstep: bool = False) -> dict[str, Any]:
    """HellaSwag accuracy of ``model`` on ``examples``.

    ``model(tokens)`` with tokens (B, T) on ``device`` must return logits (B, T, V) or a tuple whose
    first element they are; ``model.config.block_size`` is its context length. Example i is scored
    on rank ``i % world_size``, one example (4 rows) per forward pass. When torch.distributed is
    initialized and ``world_size > 1``, the counts are summed over ranks with all_reduce, so every
    rank returns the same totals (every rank must call this).

    Returns ``acc_norm`` and ``acc`` (fractions, NaN when no example was scored), and the counts
    ``correct_norm``, ``correct`` and ``examples``. With ``lockstep`` (a sharded model: each forward
    pass all-gathers) every rank runs as many passes as rank 0, a rank out of examples rescoring its
    first, uncounted. The model is put in eval mode for the duration
    (dropout would make scores random) and back in its previous mode after. No autocast here: wrap
    the call in one to evaluate in reduced precision; losses are taken in float32 either way.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    enc = gpt2_encoding()
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    correct_norm = correct = count = 0
    mine = list(examples[rank::world_size])
    extra = len(examples[0::world_size]) - len(mine) if lockstep and examples else 0
    try:
        for i, example in enumerate(mine + [examples[0]] * extra):
            tokens, mask, label = render(example, enc, block_size)
            sum_loss, mean_loss = score_candidates(model, tokens.to(device), mask.to(device))
            if i >= len(mine):
                continue  # a lockstep pass, not scored
            correct_norm += int(mean_loss.argmin().item() == label)
            correct += int(sum_loss.argmin().item() == label)
            count += 1
    finally:
        model.train(was_training)
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        totals = torch.tensor([correct_norm, correct, count], dtype=torch.long, device=device)
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        correct_norm, correct, count = (int(v) for v in totals.tolist())
    return {
        "acc_norm": correct_norm / count if count else float("nan"),
        "acc": correct / count if count else float("nan"),
        "correct_norm": correct_norm,
        "correct": correct,
        "examples": count,
    }
