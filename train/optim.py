"""The optimizers and their learning-rate schedule.

``optim.name=adamw`` (the default): AdamW on every parameter, weight decay on matrices only.
``optim.name=muon``: ``torch.optim.Muon`` on the 2-D weights inside the transformer blocks
(``c_attn``, ``c_proj``, ``c_fc``), whose updates it orthogonalizes (Newton-Schulz), and AdamW with
the same settings as above on the rest: the tied embedding and output head, positions, biases and
LayerNorms. One schedule (linear warmup, cosine decay to ``min_lr_ratio``) drives both: each group
follows it from its own peak (``max_lr``, ``muon.lr``) over its own warmup.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from model.gpt2 import BLOCK_MATRICES as HIDDEN_MATRICES
from model.gpt2 import GPT
from train.config import OptimConfig, TrainConfig, autocast_dtype


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * max_lr``."""
    return schedule(step, cfg.optim.max_lr, cfg.optim.warmup_steps, cfg.optim, cfg.max_steps)


def schedule(step: int, peak: float, warmup: int, o: OptimConfig, max_steps: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, max_steps - warmup)
    floor = peak * o.min_lr_ratio
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


class Optimizers:
    """The run's optimizers as one: ``zero_grad``, ``state_dict``, ``state`` and the learning rates of
    every group; ``parts`` for what takes one optimizer at a time (the gradient scaler steps each)."""

    def __init__(self, parts: dict[str, torch.optim.Optimizer], cfg: TrainConfig) -> None:
        self.parts, self.cfg = parts, cfg

    @property
    def state(self) -> dict[Any, Any]:
        return {k: v for part in self.parts.values() for k, v in part.state.items()}

    def set_lr(self, step: int) -> None:
        """Set each group's learning rate for ``step``, from its own peak and warmup."""
        lr = lr_at(step, self.cfg)
        for group in self.parts["adamw"].param_groups:
            group["lr"] = lr
        if "muon" in self.parts:
            m = self.cfg.optim.muon
            warmup = self.cfg.optim.warmup_steps if m.warmup_steps is None else m.warmup_steps
            muon_lr = schedule(step, m.lr, warmup, self.cfg.optim, self.cfg.max_steps)
            for group in self.parts["muon"].param_groups:
                group["lr"] = muon_lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """AdamW alone: its own state dict, as before Muon existed; both: one per name."""
        if list(self.parts) == ["adamw"]:
            return self.parts["adamw"].state_dict()
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any], cut: Callable[[torch.optim.Optimizer, dict[str, Any]],
                                                                 dict[str, Any]] | None = None) -> None:
        """``state`` as ``state_dict`` wrote it; ``cut(part, its state)``, where given, first lays each
        part's whole tensors out as its parameters are (their shards, ``train/sharding.py``)."""
        cut = cut or (lambda _, whole: whole)
        if list(self.parts) == ["adamw"]:
            self.parts["adamw"].load_state_dict(cut(self.parts["adamw"], state))
            return
        for name, part in self.parts.items():
            part.load_state_dict(cut(part, state[name]))


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> Optimizers:
    """AdamW with weight decay on matrices only (not biases, LayerNorms); fused kernels (on CPU too:
    the plain loop's temporaries cost several times more). With ``optim.name=muon``, the blocks'
    matrices go to Muon instead (``ShardedMuon`` where they are sharded: it orthogonalizes each whole).
    Parameters are given with their names, which each group's state dict keeps (``param_names``)."""
    from train.sharding import ShardedMuon, is_sharded

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hidden = [(n, p) for n, p in named if cfg.optim.name == "muon" and n.endswith(HIDDEN_MATRICES)]
    chosen = {id(p) for _, p in hidden}
    rest = [(n, p) for n, p in named if id(p) not in chosen]
    o = cfg.optim
    groups = [{"params": [(n, p) for n, p in rest if p.dim() >= 2], "weight_decay": o.weight_decay},
              {"params": [(n, p) for n, p in rest if p.dim() < 2], "weight_decay": 0.0}]
    # fused kernels take the float16 gradient scaler's inverse scale as a (1,) tensor, which sharded
    # parameters' steps cannot broadcast (torch 2.13): there the scaler unscales first, as for foreach
    fused = device.type in ("cuda", "cpu") and not (
        is_sharded(model) and autocast_dtype(cfg.dtype, device) == torch.float16)
    parts: dict[str, torch.optim.Optimizer] = {
        "adamw": torch.optim.AdamW(groups, lr=o.max_lr, betas=(o.beta1, o.beta2), eps=1e-8, fused=fused)}
    if hidden:
        muon = ShardedMuon if is_sharded(model) else torch.optim.Muon
        parts["muon"] = muon(hidden, lr=o.muon.lr, momentum=o.muon.momentum,
                             weight_decay=o.muon.weight_decay, ns_steps=o.muon.ns_steps)
    return Optimizers(parts, cfg)


def muon_flops_per_step(model: GPT, cfg: TrainConfig) -> float:
    """The Newton-Schulz iterations' FLOPs per optimizer step (0 for AdamW): per iteration on an
    m x n matrix (m <= n), X X^T, its square and the product back: 4 m^2 n + 2 m^3."""
    if cfg.optim.name != "muon":
        return 0.0
    total = 0.0
    for name, p in model.named_parameters():
        if name.endswith(HIDDEN_MATRICES):
            m, n = sorted(p.shape)
            total += cfg.optim.muon.ns_steps * (4 * m * m * n + 2 * m ** 3)
    return total
