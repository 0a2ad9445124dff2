"""Device memory of one training step, per rank: the figure the trainer's plan prints, and what
``micro_batch_size=auto`` plans with (train/preflight.py).

The peak comes at the start of the backward pass, with every activation saved for it still held.
Per token (h = n_embd, V = vocab_size, Vp = its padded size), what our GPT-2 keeps, as counted by
torch's ``MemTracker`` (tests/test_memory.py holds the formula to it):

- each block: 36h bytes under bf16/fp16 autocast (LayerNorm inputs in fp32, the bf16 copies the
  matmuls read, q/k/v and the attention output, the MLP's 4h-wide input and GELU output; flash
  attention keeps no T x T scores), 64h in float32; plus 32 bytes of norm statistics;
- the head: 6h (8h in float32) and the fp32 log-probabilities of the loss, 4V;
- the loss's gradient, made at the start of the backward pass: 8V (two fp32 (tokens, V) tensors).

At 50,257 entries the vocabulary costs as much as all twelve blocks of ``gpt2``. Beside them, the
state one rank keeps between steps (``state_bytes_per_rank``): fp32 weights and fp32 gradients (held
between micro-batches), 4 bytes each per parameter, and the optimizer's state: AdamW's two moments,
8 bytes; under ``optim.name=muon`` the blocks' matrices (``BLOCK_MATRICES``) have Muon's one momentum
buffer instead, 4 bytes. Then, by parallelism:

- ``ddp``: every rank holds all of that state; autocast's half-precision copies of the matrices, 2
  bytes each; DDP's gradient buckets, 4 bytes per parameter on more than one rank;
- ``fsdp``: FSDP2 shards each parameter on its first dimension, padded to equal chunks: a (d0, ...)
  parameter takes ceil(d0 / ranks) rows of storage on every rank, and its gradient and optimizer
  state as many (rank 0's chunk is always the full one: the figure given). Unsharded for compute:
  the root's parameters in fp32 (token embedding, positions, final LayerNorm, kept fp32 as under
  DDP; FSDP2 does not reshard the root after the forward, so they stay through the backward), with
  autocast's half-precision copy of the output matrix under half precision; and two blocks' at a
  time (the one computing and the one prefetched) in the compute dtype (2 bytes under half
  precision: the mixed-precision policy all-gathers them in bf16, so there are no autocast copies
  of theirs; 4 in float32). The gradients being
  reduce-scattered, unsharded in fp32: one block's, and the root's (the embedding's gradient lives
  until the end of the backward).

Not counted: the CUDA context, NCCL's buffers and the allocator's slack (about 0.5 to 2 GiB: the
margin of train/preflight.py), evaluation (no gradients: less; but under ``fsdp`` rank 0 evaluates
text samples and harness tasks on a whole fp32 copy, 4 bytes per parameter for its duration),
``torch.compile``, whose fused kernels keep less, and the optimizer's few-byte ``step`` counters.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from model.config import GPTConfig

GIB = 2**30
PARALLEL = ("ddp", "fsdp")
OPTIMIZERS = ("adamw", "muon")


@dataclass(frozen=True)
class StateBytes:
    """What one rank keeps between steps, in bytes: its (share of the) fp32 weights, their fp32
    gradients and the optimizer's state."""

    params: int
    grads: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer


@dataclass(frozen=True)
class StepMemory:
    """Bytes per rank, by kind; ``parallel``, ``optimizer`` and ``ranks`` name them in ``describe``."""

    weights_and_optimizer: int  # fp32 weights, gradients, optimizer state (sharded under fsdp)
    weight_copies: int  # ddp: autocast's half-precision matrices; fsdp: the unsharded parameters
    communication: int  # ddp: the gradient buckets; fsdp: the unsharded gradients being reduce-scattered
    activations: int  # saved for the backward pass
    loss_gradient: int  # the (tokens, V) gradients at the start of the backward pass
    parallel: str = "ddp"
    optimizer: str = "adamw"
    ranks: int = 1

    @property
    def total(self) -> int:
        return (self.weights_and_optimizer + self.weight_copies + self.communication + self.activations
                + self.loss_gradient)

    def describe(self) -> str:
        state = "AdamW" if self.optimizer == "adamw" else "Muon and AdamW"
        fsdp = self.parallel == "fsdp"
        share = f" (1/{self.ranks} each)" if fsdp and self.ranks > 1 else ""
        parts = [f"{self.weights_and_optimizer / GIB:.2f} GiB weights, gradients and {state} state{share}"]
        if self.weight_copies:
            what = "unsharded weights (the root's, two blocks')" if fsdp else "half-precision weight copies"
            parts.append(f"{self.weight_copies / GIB:.2f} GiB {what}")
        if self.communication:
            what = "gradients being reduce-scattered" if fsdp else "DDP buckets"
            parts.append(f"{self.communication / GIB:.2f} GiB {what}")
        parts.append(f"{self.activations / GIB:.2f} GiB activations")
        parts.append(f"{self.loss_gradient / GIB:.2f} GiB loss gradient")
        return " + ".join(parts) + f" = {self.total / GIB:.1f} GiB"


def param_shapes(cfg: GPTConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of each stored parameter: the padded token embedding once (``lm_head`` is the
    same tensor, which ``named_parameters`` yields once), the positions, every block's."""
    return _param_shapes(cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.vocab_size, cfg.bias)


@functools.cache  # a meta gpt2-xl takes a while to build, and the preflight asks for many micro-batches
def _param_shapes(n_layer: int, n_head: int, n_embd: int, block_size: int, vocab_size: int,
                  bias: bool) -> tuple[tuple[str, tuple[int, ...]], ...]:
    import torch

    from model.gpt2 import GPT

    cfg = GPTConfig(name="shapes", n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                    vocab_size=vocab_size, bias=bias)
    with torch.device("meta"):  # shapes only: no memory, no time
        model = GPT(cfg)
    return tuple((name, tuple(p.shape)) for name, p in model.named_parameters())


def stored_params(cfg: GPTConfig) -> int:
    """Parameters as stored: the padded token embedding (tied to the output) and the positions."""
    return sum(math.prod(shape) for _, shape in param_shapes(cfg))


def shard_numel(shape: tuple[int, ...], ranks: int) -> int:
    """Elements one rank stores of a parameter FSDP2 shards over ``ranks``: dim 0 is cut into equal,
    padded chunks (``torch.chunk``'s), ceil(d0 / ranks) rows each."""
    return -(-shape[0] // ranks) * math.prod(shape[1:])


def _check(parallel: str, optimizer: str) -> None:
    if parallel not in PARALLEL or optimizer not in OPTIMIZERS:
        raise ValueError(f"parallel={parallel!r}, optimizer={optimizer!r}: expected one of {PARALLEL} and "
                         f"one of {OPTIMIZERS}")


def state_bytes_per_rank(cfg: GPTConfig, world_size: int = 1, parallel: str = "ddp",
                         optimizer: str = "adamw") -> StateBytes:
    """fp32 weights, fp32 gradients and optimizer state that one rank holds (under fsdp, rank 0,
    whose chunks are the full ones): 4 + 4 bytes per parameter stored, plus AdamW's 8, or Muon's 4
    for the blocks' matrices."""
    from model.gpt2 import BLOCK_MATRICES

    _check(parallel, optimizer)
    shards = world_size if parallel == "fsdp" else 1
    elements = state = 0
    for name, shape in param_shapes(cfg):
        n = shard_numel(shape, shards)
        elements += n
        state += (4 if optimizer == "muon" and name.endswith(BLOCK_MATRICES) else 8) * n
    return StateBytes(params=4 * elements, grads=4 * elements, optimizer=state)


def _unsharded(cfg: GPTConfig, ranks: int) -> tuple[int, int]:
    """Elements FSDP2 all-gathers for (the root, one block): every rank's padded chunk."""
    root = block = 0
    for name, shape in param_shapes(cfg):
        n = ranks * shard_numel(shape, ranks)
        if not name.startswith("transformer.h."):
            root += n
        elif name.startswith("transformer.h.0."):
            block += n
    return root, block


def step_memory(cfg: GPTConfig, micro_batch_size: int, half_precision: bool = True, world_size: int = 1,
                seq_len: int | None = None, parallel: str = "ddp", optimizer: str = "adamw") -> StepMemory:
    """The peak memory of a training step on one rank, eager mode (no ``torch.compile``)."""
    from model.gpt2 import padded_vocab_size

    h, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    tokens = micro_batch_size * (cfg.block_size if seq_len is None else seq_len)
    per_token = L * ((36 if half_precision else 64) * h + 32) + (6 if half_precision else 8) * h + 4 * V
    state = state_bytes_per_rank(cfg, world_size, parallel, optimizer)
    if parallel == "fsdp":
        root, block = _unsharded(cfg, world_size)
        # the root stays fp32 (train/sharding.py); autocast casts its output matrix for the logits
        copies = 4 * root + (2 * padded_vocab_size(cfg) * h if half_precision else 0) \
            + (2 if half_precision else 4) * min(2, L) * block
        communication = 4 * (root + block)
    else:
        matrices = L * 12 * h * h + padded_vocab_size(cfg) * h
        copies = 2 * matrices if half_precision else 0
        communication = 4 * stored_params(cfg) if world_size > 1 else 0
    return StepMemory(weights_and_optimizer=state.total, weight_copies=copies, communication=communication,
                      activations=tokens * per_token, loss_gradient=tokens * 8 * V, parallel=parallel,
                      optimizer=optimizer, ranks=world_size)


# One rank's process on a GPU node before any model: torch with the CUDA, cuDNN and NCCL libraries
# loaded, the data loader's pages, and torch.compile's worker processes (a few hundred MiB each).
HOST_PROCESS_BYTES = 6 * GIB


def host_memory_per_rank(cfg: GPTConfig) -> int:
    """Host (CPU) memory of one training rank at its peak: the process, plus 12 bytes per parameter
    of the whole model. On a resume, the checkpoint read into host memory on its way to the GPU:
    AdamW's two moments (``optimizer.pt``, 8 bytes per parameter) and the fp32 weights
    (``model.safetensors``, 4). Under ``parallel=fsdp`` each save gathers the same onto rank 0's host
    (every sharded tensor whole: fp32 weights and AdamW's moments), so rank 0 peaks there too."""
    return HOST_PROCESS_BYTES + 12 * stored_params(cfg)
