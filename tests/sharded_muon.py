"""Run under torchrun (tests/test_fsdp.py): ``ShardedMuon`` on matrices FSDP2 sharded unevenly over
the ranks, against ``torch.optim.Muon`` on whole copies given the same gradients; each rank prints
whether every parameter came out equal to the bit."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import distribute_tensor

from train.sharding import ShardedMuon

SHAPES = [(6, 4), (5, 8), (16, 3)]  # rows that do not divide 2 or 4 evenly; wide and tall


def matrices() -> torch.nn.ParameterList:
    torch.manual_seed(0)
    return torch.nn.ParameterList(torch.nn.Parameter(torch.randn(shape)) for shape in SHAPES)


def main() -> None:
    dist.init_process_group("gloo")
    whole, sharded = matrices(), matrices()
    fully_shard(sharded)
    ours = ShardedMuon(list(sharded), lr=0.02, momentum=0.95, weight_decay=0.1)
    theirs = torch.optim.Muon(list(whole), lr=0.02, momentum=0.95, weight_decay=0.1)
    for step in range(3):
        torch.manual_seed(100 + step)  # the same gradients on every rank and for both
        grads = [torch.randn(shape) for shape in SHAPES]
        for p, g in zip(whole, grads, strict=True):
            p.grad = g.clone()
        for p, g in zip(sharded, grads, strict=True):
            p.grad = distribute_tensor(g.clone(), p.device_mesh, p.placements, src_data_rank=None)
        theirs.step()
        ours.step()
    same = all(torch.equal(p.full_tensor(), q) for p, q in zip(sharded, whole, strict=True))
    moved = all(not torch.equal(p, q) for p, q in zip(whole, matrices(), strict=True))
    print(f"rank {dist.get_rank()}: " + ("same as torch.optim.Muon" if same and moved else "DIFFERENT"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
