"""Evaluation during training: validation loss, text samples, HellaSwag, the loss-curve plot.

The validation set is fixed (the first ``eval_tokens / block_size`` windows of the val shards), the
same at every evaluation and for any number of ranks: each rank takes every ``world_size``-th
window and the sums are all-reduced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from model.base.tokenizer import VOCAB_SIZE, gpt2_encoding
from model.gpt2 import GPT
from train.data import Windows
from train.sample import encode_prompt, generate


@torch.no_grad()
def val_loss(model: torch.nn.Module, windows: Windows, indices: np.ndarray, micro_batch: int,
             device: torch.device, autocast: Any, rank: int = 0, world_size: int = 1) -> float:
    """Mean cross-entropy over the fixed validation windows (every token counted once)."""
    mine = indices[rank::world_size]
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, tokens)
    was_training = model.training
    model.eval()
    for start in range(0, len(mine), micro_batch):
        x, y = windows.batch(mine[start: start + micro_batch])
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            _, loss = model(x, y)
        total += torch.stack([loss.double() * y.numel(), torch.tensor(y.numel(), device=device).double()])
    if world_size > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return (total[0] / total[1]).item()


def text_samples(model: GPT, prompts: list[str], tokens: int, seed: int) -> list[dict[str, Any]]:
    """A greedy and a sampled continuation (temperature 1, top-k 50) of each prompt."""
    if model.config.vocab_size < VOCAB_SIZE:
        return []  # a model on another vocabulary cannot read GPT-2 text
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


def plot_losses(out_dir: Path) -> Path | None:
    """``loss.png`` from ``metrics.jsonl``: training loss per logged step and validation loss.

    The legend sits outside the axes, to their right, so it never covers a curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), label="validation", marker="o")
    ax.set_title(f"Training and validation loss: {out_dir.name}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    target = out_dir / "loss.png"
    tmp = out_dir / ".loss.png.tmp"
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(target)
    return target
