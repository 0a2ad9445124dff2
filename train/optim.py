"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import math

import torch

from model.gpt2 import GPT
from train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * max_lr``."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.max_lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, cfg.max_steps - o.warmup_steps)
    floor = o.max_lr * o.min_lr_ratio
    return floor + 0.5 * (o.max_lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, LayerNorms); fused kernels (on CPU too:
    the plain loop's temporaries cost several times more)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.max_lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                             eps=1e-8, fused=device.type in ("cuda", "cpu"))
