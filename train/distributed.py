"""One process per device: which device, which rank, and the process group (torchrun's variables,
or SLURM's for a submitit job whose tasks are the ranks)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from model.base.schema import ConfigError


@dataclass
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_type: str) -> Ranks:
    """One process per device; torchrun's variables say which (none: a single process)."""
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 \
            and "SUBMITIT_EXECUTOR" in os.environ:  # tasks of a submitit job: SLURM says who is who
        from_slurm_tasks()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return ranks


def from_slurm_tasks() -> None:
    """torchrun's variables from SLURM's, for jobs whose tasks are the ranks (a submitit sweep)."""
    import subprocess

    first = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                           capture_output=True, text=True, check=True).stdout.split()[0]
    # The port: the one the launcher's setup line found free on the first node (conf/hydra/launcher/
    # slurm.yaml); one derived from the job id only where a launcher config has no such line.
    port = os.environ.get("MASTER_PORT") or str(30500 + int(os.environ["SLURM_JOB_ID"]) % 1000)
    os.environ.update(RANK=os.environ["SLURM_PROCID"], WORLD_SIZE=os.environ["SLURM_NTASKS"],
                      LOCAL_RANK=os.environ.get("SLURM_LOCALID", "0"), MASTER_ADDR=first, MASTER_PORT=port)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``device=``'s value as a device: auto is CUDA when there is one; plain cuda is this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"{name} asked for, but no CUDA device is available")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def max_over_ranks(value: int, ranks: Ranks, device: torch.device) -> int:
    """The largest of ``value`` over all ranks (every rank calls it)."""
    if ranks.world_size == 1:
        return value
    tensor = torch.tensor(value, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())
