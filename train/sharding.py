"""``parallel=fsdp``: FSDP2 shards the parameters, gradients and optimizer state over the ranks.

Under DDP every rank holds the whole model, its gradients and AdamW's two moments: 16 bytes per
parameter, 25 GB for ``gpt2-xl`` before any activation. ``fully_shard`` on each block and on the root
leaves each rank 1/world_size of all three (``model/memory.py`` counts it); a block's parameters are
all-gathered just before its forward and backward and its gradients reduce-scattered right after, in
every micro-step (gradients stay sharded between micro-steps: the memory is the point).

What stays as under DDP: the step (``train/loop.py``), the schedule, the loss and its accumulation,
gradient clipping on the global norm, autocast around the forward and what it computes in fp32. On
top, with bf16 (or fp16) autocast, FSDP's mixed-precision policy all-gathers the blocks' matrices in
that dtype and reduces gradients in fp32 (``shard``).

What needs care, here:

- checkpoints keep the one format every tool reads (``model.safetensors`` of the whole model, the
  optimizer's state in torch's layout with each group's parameter names): ``gathered`` collects each
  sharded tensor whole, one at a time, onto rank 0's host at save; ``load_model_sharded`` and
  ``optimizer_sharded`` cut the whole
  tensors every rank reads back into this rank's shards at load. So a run resumes across ``ddp`` and
  ``fsdp`` and across world sizes, and export, sampling and ``train.verify`` read it unchanged;
- Muon orthogonalizes whole matrices: ``ShardedMuon`` gathers each update matrix whole (in bf16,
  which Newton-Schulz starts by casting to anyway), runs the same iteration as ``torch.optim.Muon``
  on it, and keeps this rank's rows of the result; a shard is never orthogonalized on its own;
- evaluation: every rank takes part in every forward (a sharded model all-gathers), so the
  evaluations run in lockstep (``train/evaluate.py``) and rank 0's own work (text samples, the
  lm-evaluation-harness tasks) runs on a whole fp32 copy (``whole_copy``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, distribute_tensor
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz

from model import weights
from model.gpt2 import GPT


def shard(model: GPT, device: torch.device, compute_dtype: torch.dtype | None) -> None:
    """``fully_shard`` each block, then the root (the embeddings, the final LayerNorm), over all ranks;
    parameters move to ``device`` as they are sharded. ``compute_dtype``: autocast's, which the blocks'
    parameters are all-gathered in (what autocast would cast their matrices to anyway; gradients
    reduced in fp32); None keeps fp32 throughout. The rest stays as DDP computes it: the residual
    stream in fp32 (the blocks' inputs are not cast), and in fp32 the parameters autocast would not
    cast, the root's (embeddings, final LayerNorm) and each block's two LayerNorms, sharded as a
    group of their own (one small all-gather more per block)."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    whole = MixedPrecisionPolicy()  # fp32 all-gathers and reductions: nothing cast
    if compute_dtype is None:
        blocks = whole
    else:
        blocks = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32,
                                      cast_forward_inputs=False)
    for block in model.transformer.h:
        if compute_dtype is not None:
            fully_shard([block.ln_1, block.ln_2], mesh=mesh, mp_policy=whole)
        fully_shard(block, mesh=mesh, mp_policy=blocks)
    fully_shard(model, mesh=mesh, mp_policy=whole)


def is_sharded(model: torch.nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


# --- whole tensors from shards and back -------------------------------------------------------------


def gathered(tree: Any, keep: bool, host: bool = True) -> Any:
    """``tree`` (a state dict: dicts, lists, tensors, numbers) with every sharded tensor whole, on the
    host (``host``; else on its device) where ``keep`` (rank 0), None elsewhere. Every rank calls it,
    in the same order: each sharded tensor is one all-gather, so at most one whole tensor at a time
    is on a device that does not keep them."""
    if isinstance(tree, torch.Tensor):
        whole = tree.full_tensor() if isinstance(tree, DTensor) else tree.detach()
        return (whole.cpu() if host else whole) if keep else None
    if isinstance(tree, dict):
        return {k: gathered(v, keep, host) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(gathered(v, keep, host) for v in tree)
    return tree


def like(whole: torch.Tensor, shape_of: torch.Tensor) -> torch.Tensor:
    """``whole`` laid out as ``shape_of`` is: this rank's shard of it where ``shape_of`` is sharded
    (cut locally: every rank holds ``whole``, nothing is sent), else ``whole`` on its device."""
    if isinstance(shape_of, DTensor):
        return distribute_tensor(whole.to(shape_of.device, shape_of.dtype), shape_of.device_mesh,
                                 shape_of.placements, src_data_rank=None)
    return whole.to(shape_of.device)


@torch.no_grad()
def load_model_sharded(model: torch.nn.Module, whole: dict[str, torch.Tensor]) -> None:
    """Copy a whole model's state (``model/weights.py``'s, every rank's copy) into ``model``'s shards."""
    for name, tensor in weights.tied_once(model.state_dict()).items():
        tensor.copy_(like(whole[name], tensor))


def optimizer_sharded(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """A whole optimizer state (torch's layout) with each parameter's tensors cut to its shards."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param = {}
    for index, values in state["state"].items():
        param = params[index]
        per_param[index] = {k: like(v, param) if torch.is_tensor(v) and v.shape == param.shape else v
                            for k, v in values.items()}
    return {**state, "state": per_param}


# --- the step ---------------------------------------------------------------------------------------


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` over sharded gradients: the norm is the whole model's (each rank's sum of
    squares, all-reduced), then every shard is scaled alike."""
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


class ShardedMuon(torch.optim.Muon):
    """``torch.optim.Muon`` for sharded matrices: momentum on the shards (elementwise), Newton-Schulz
    on the whole update matrix, all-gathered in bf16 (the dtype the iteration casts to first, so
    the result is the one a whole matrix gets under DDP), and this rank's rows of it applied. Every
    rank orthogonalizes every matrix: the same arithmetic per rank as DDP's Muon, one all-gather of
    each update more. The state (``momentum_buffer``) is torch's Muon's, so checkpoints move between
    the two."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if closure is not None:
            raise ValueError("ShardedMuon takes no closure")
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(param.grad, 1 - momentum)
                update = param.grad.lerp(buf, momentum) if group["nesterov"] else buf
                whole = update.to(torch.bfloat16).full_tensor() if isinstance(update, DTensor) else update
                ortho = _zeropower_via_newtonschulz(whole, group["ns_coefficients"], group["ns_steps"],
                                                    group["eps"])
                if isinstance(param, DTensor):  # this rank's rows: a local cut, nothing sent
                    ortho = DTensor.from_local(ortho, param.device_mesh, [Replicate()], run_check=False
                                               ).redistribute(param.device_mesh, param.placements)
                param.mul_(1 - lr * decay)
                param.add_(ortho.to(param.dtype), alpha=-_adjust_lr(lr, group["adjust_lr_fn"], param.shape))
        return None


# --- what a rank holds ------------------------------------------------------------------------------


def local_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of this rank's part of ``tensors`` (a shard's, for a sharded one), each counted once."""
    seen: dict[int, int] = {}
    for t in tensors:
        if torch.is_tensor(t):
            local = t.to_local() if isinstance(t, DTensor) else t
            seen[id(t)] = local.numel() * local.element_size()
    return sum(seen.values())


def whole_copy(model: GPT, keep: bool) -> GPT | None:
    """An unsharded copy of a sharded ``model``, in fp32 on its device (what DDP's rank 0 evaluates:
    the same figures), on the rank where ``keep``; every rank calls it (each tensor an all-gather)."""
    state = gathered(weights.tied_once(model.state_dict()), keep, host=False)
    return weights.assemble(model.config, state, source="the sharded model") if keep else None
