"""Device memory of one training step, per rank: the figure the trainer's plan prints.

The peak comes at the start of the backward pass, with every activation saved for it still held.
Per token (h = n_embd, V = vocab_size, Vp = its padded size), what our GPT-2 keeps, as counted by
torch's ``MemTracker`` (tests/test_memory.py holds the formula to it):

- each block: 36h bytes under bf16/fp16 autocast (LayerNorm inputs in fp32, the bf16 copies the
  matmuls read, q/k/v and the attention output, the MLP's 4h-wide input and GELU output; flash
  attention keeps no T x T scores), 64h in float32; plus 32 bytes of norm statistics;
- the head: 6h (8h in float32) and the fp32 log-probabilities of the loss, 4V;
- the loss's gradient, made at the start of the backward pass: 8V (two fp32 (tokens, V) tensors).

At 50,257 entries the vocabulary costs as much as all twelve blocks of ``gpt2``. Beside them:
fp32 weights, gradients (held between micro-batches) and AdamW's two moments, 16 bytes per stored
parameter; autocast's half-precision copies of the matrices, 2 bytes; DDP's gradient buckets, 4 more
on more than one rank. Not counted: the CUDA context and the allocator's slack (about 0.5 to 1 GiB),
evaluation (no gradients: less), and ``torch.compile``, whose fused kernels keep less.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import GPTConfig

GIB = 2**30


@dataclass(frozen=True)
class StepMemory:
    """Bytes per rank, by kind."""

    weights_and_optimizer: int  # fp32 weights, gradients, AdamW moments
    weight_copies: int  # autocast's half-precision copies of the matrices
    ddp_buckets: int
    activations: int  # saved for the backward pass
    loss_gradient: int  # the (tokens, V) gradients at the start of the backward pass

    @property
    def total(self) -> int:
        return (self.weights_and_optimizer + self.weight_copies + self.ddp_buckets + self.activations
                + self.loss_gradient)

    def describe(self) -> str:
        parts = [f"{self.weights_and_optimizer / GIB:.2f} GiB weights, gradients and AdamW state"]
        if self.weight_copies:
            parts.append(f"{self.weight_copies / GIB:.2f} GiB half-precision weight copies")
        if self.ddp_buckets:
            parts.append(f"{self.ddp_buckets / GIB:.2f} GiB DDP buckets")
        parts.append(f"{self.activations / GIB:.2f} GiB activations")
        parts.append(f"{self.loss_gradient / GIB:.2f} GiB loss gradient")
        return " + ".join(parts) + f" = {self.total / GIB:.1f} GiB"


def stored_params(cfg: GPTConfig) -> int:
    """Parameters as stored: the padded token embedding (tied to the output) and the positions."""
    import torch

    from model.gpt2 import GPT

    with torch.device("meta"):  # shapes only: no memory, no time
        model = GPT(cfg)
    return sum({id(p): p.numel() for p in model.parameters()}.values())


def step_memory(cfg: GPTConfig, micro_batch_size: int, half_precision: bool = True,
                world_size: int = 1, seq_len: int | None = None) -> StepMemory:
    """The peak memory of a training step on one rank, eager mode (no ``torch.compile``)."""
    from model.gpt2 import padded_vocab_size

    h, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    tokens = micro_batch_size * (cfg.block_size if seq_len is None else seq_len)
    params = stored_params(cfg)
    matrices = L * 12 * h * h + padded_vocab_size(cfg) * h
    per_token = L * ((36 if half_precision else 64) * h + 32) + (6 if half_precision else 8) * h + 4 * V
    return StepMemory(
        weights_and_optimizer=16 * params,
        weight_copies=2 * matrices if half_precision else 0,
        ddp_buckets=4 * params if world_size > 1 else 0,
        activations=tokens * per_token,
        loss_gradient=tokens * 8 * V,
    )


# One rank's process on a GPU node before any model: torch with the CUDA, cuDNN and NCCL libraries
# loaded, the data loader's pages, and torch.compile's worker processes (a few hundred MiB each).
HOST_PROCESS_BYTES = 6 * GIB


def host_memory_per_rank(cfg: GPTConfig) -> int:
    """Host (CPU) memory of one training rank at its peak, a resume: the process, plus the checkpoint
    read into host memory on its way to the GPU: AdamW's two moments (``optimizer.pt``, 8 bytes per
    parameter) and the fp32 weights (``model.safetensors``, 4)."""
    return HOST_PROCESS_BYTES + 12 * stored_params(cfg)
