"""Evaluation during training: validation loss, HellaSwag, text samples.

The validation set is fixed (the first ``eval_tokens / block_size`` windows of the val shards), the
same at every evaluation and for any number of ranks: each rank takes every ``world_size``-th
window and the sums are all-reduced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from model.base.tokenizer import VOCAB_SIZE, gpt2_encoding
from model.config import GPTConfig
from model.generate import encode_prompt, generate
from model.gpt2 import GPT
from train.data import Windows


@torch.no_grad()
def val_loss(model: torch.nn.Module, windows: Windows, indices: np.ndarray, micro_batch: int,
             device: torch.device, autocast: Any, rank: int = 0, world_size: int = 1,
             lockstep: bool = False) -> float:
    """Mean cross-entropy over the fixed validation windows (every token counted once). With
    ``lockstep`` (a sharded model: each forward pass all-gathers) every rank runs as many passes as
    rank 0, which has the most windows; a rank out of windows reruns its first, uncounted."""
    mine = indices[rank::world_size]
    passes = -(-len(indices[0::world_size]) // micro_batch) if lockstep else -(-len(mine) // micro_batch)
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, tokens)
    was_training = model.training
    model.eval()
    for start in range(0, passes * micro_batch, micro_batch):
        chunk, counted = mine[start: start + micro_batch], 1.0
        if len(chunk) == 0:
            chunk, counted = indices[:1], 0.0
        x, y = windows.batch(chunk)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            _, loss = model(x, y)
        total += counted * torch.stack([loss.double() * y.numel(),
                                        torch.tensor(y.numel(), device=device).double()])
    if world_size > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return (total[0] / total[1]).item()


def samples_readable(cfg: GPTConfig) -> bool:
    """Whether text samples of a model of ``cfg`` are GPT-2 text: another vocabulary cannot read it."""
    return cfg.vocab_size >= VOCAB_SIZE


def text_samples(model: GPT, prompts: list[str], tokens: int, seed: int) -> list[dict[str, Any]]:
    """A greedy and a sampled continuation (temperature 1, top-k 50) of each prompt."""
    if not samples_readable(model.config):
        return []
    enc = gpt2_encoding()
    out = []
    was_training = model.training
    model.eval()
    for prompt in prompts:
        ids = encode_prompt(prompt, model.config.block_size)
        for kind, options in (("greedy", {"top_k": 1}), ("sampled", {"top_k": 50, "seed": seed})):
            [new] = generate(model, ids, tokens, **options)
            out.append({"prompt": prompt, "kind": kind, "text": enc.decode(new)})
    model.train(was_training)
    return out

