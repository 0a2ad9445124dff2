"""Before the first step: does the job have what this run needs, and how should its ranks be laid out?

A GPU cluster job that asked SLURM for no GPU, or a CUDA job on torch's CPU build, would otherwise
train ``gpt2`` on one CPU core, silently, for the whole allocation. The checks here stop it with a
message that names the fix, on every rank count, before any model is built:

- a GPU-sized model (more than ``GPU_SIZED_PARAMS``: anything above ``gpt2-mini``) under
  ``device=auto`` with no GPU visible stops, naming ``--gpus-per-node`` and ``device=cpu``;
- GPUs that SLURM allocated but torch cannot see (the CPU build of torch, a broken driver) stop any
  run that does not say ``device=cpu``;
- more GPU ranks on a node than GPUs visible stops (a rank would find no device of its own);
- more ranks on a node than CPUs allocated is a warning naming the ``--cpus-per-task`` to ask for.

``python -m train.preflight OVERRIDES...`` is what ``slurm/train.sbatch`` runs in the batch shell on
the job's first node: the checks (a failure exits 1 with the message, so the job ends within
seconds), then the layout it prints as shell assignments (ranks per node, CPU threads per rank, a
free rendezvous port on this node). ``python -m train.preflight --free-port`` prints a free port
alone (the sweep launcher's setup line, conf/hydra/launcher/slurm.yaml).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass

from train.config import TrainConfig

log = logging.getLogger("webtext.train")

# Between gpt2-mini (30 M parameters, trains on a CPU in hours) and gpt2 (124 M: weeks on a CPU).
GPU_SIZED_PARAMS = 50_000_000


class PreflightError(RuntimeError):
    """The job as allocated cannot run this config: the message says what to change."""


@dataclass(frozen=True)
class Allocation:
    """What this node gives the run, from SLURM's variables where there are some."""

    cuda_devices: int  # GPUs torch sees
    slurm_gpus: int  # GPUs SLURM allocated on this node (0 outside SLURM or without GPUs)
    ranks_per_node: int
    cpus: int  # CPUs the node's ranks share

    @classmethod
    def here(cls, ranks_per_node: int | None = None) -> Allocation:
        import torch

        return cls(cuda_devices=torch.cuda.device_count(), slurm_gpus=slurm_gpus_on_node(),
                   ranks_per_node=ranks_per_node or int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                   cpus=allocated_cpus())

    @property
    def threads_per_rank(self) -> int:
        return max(1, self.cpus // self.ranks_per_node)


def slurm_gpus_on_node() -> int:
    """GPUs SLURM gave this job on this node, however they were asked for (``--gpus-per-node``,
    ``--gres=gpu:N``, ``--gpus=N``): all three set ``SLURM_GPUS_ON_NODE``; the list SLURM put in
    ``CUDA_VISIBLE_DEVICES`` is the fallback."""
    if os.environ.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(os.environ["SLURM_GPUS_ON_NODE"])
    if "SLURM_JOB_ID" in os.environ and os.environ.get("CUDA_VISIBLE_DEVICES"):
        return len(os.environ["CUDA_VISIBLE_DEVICES"].split(","))
    return 0


def allocated_cpus() -> int:
    """CPUs of one SLURM task (``--cpus-per-task``, else the node's CPUs over its tasks), or the CPUs
    this process may run on outside SLURM."""
    env = os.environ
    if env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(env["SLURM_CPUS_PER_TASK"])
    if env.get("SLURM_CPUS_ON_NODE", "").isdigit():
        tasks = env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0]
        return max(1, int(env["SLURM_CPUS_ON_NODE"]) // max(1, int(tasks) if tasks.isdigit() else 1))
    return len(os.sched_getaffinity(0))


def ranks_per_node(slurm_gpus: int) -> int:
    """One rank per GPU SLURM gave the node (``GPUS_PER_NODE`` overrides), one on CPU nodes."""
    override = os.environ.get("GPUS_PER_NODE", "")
    if override:
        if not override.isdigit() or int(override) < 1:
            raise PreflightError(f"GPUS_PER_NODE={override!r}: give a whole number of ranks per node")
        return int(override)
    return max(1, slurm_gpus)


def check(cfg: TrainConfig, where: Allocation) -> list[str]:
    """Raise ``PreflightError`` when the run cannot go as allocated; return warnings otherwise."""
    params = cfg.model.num_params()
    size = f"model={cfg.model.name} ({params / 1e6:,.0f} M parameters)"
    if cfg.device != "cpu" and where.cuda_devices == 0:
        if where.slurm_gpus:
            import torch

            raise PreflightError(
                f"SLURM gave this job {where.slurm_gpus} GPU(s) (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')}), but torch {torch.__version__} sees none: "
                "install torch's CUDA build (make setup TORCH='torch==2.13.0 --index-url "
                "https://download.pytorch.org/whl/cu126', docs/training.md), or set device=cpu to train "
                "on the CPU on purpose")
        if cfg.device.startswith("cuda"):
            raise PreflightError(
                f"device={cfg.device} but no GPU is visible: on SLURM, ask for GPUs (sbatch "
                "--gpus-per-node=N, or --gres=gpu:N), or set device=cpu")
        if cfg.device == "auto" and params > GPU_SIZED_PARAMS:
            raise PreflightError(
                f"{size} would train on the CPU: no GPU is visible and device=auto. On SLURM, ask for "
                "GPUs (sbatch --gpus-per-node=N, or --gres=gpu:N); to train on the CPU on purpose, set "
                "device=cpu")
    if cfg.device != "cpu" and 0 < where.cuda_devices < where.ranks_per_node:
        raise PreflightError(
            f"{where.ranks_per_node} ranks per node but {where.cuda_devices} GPU(s) visible: one rank per "
            "GPU (lower GPUS_PER_NODE or --nproc_per_node, or ask SLURM for more GPUs)")
    warnings = []
    if where.ranks_per_node > where.cpus:
        warnings.append(
            f"{where.ranks_per_node} ranks per node share {where.cpus} CPU(s): each rank's kernel launches "
            f"and data loading wait for a core; ask for --cpus-per-task={where.ranks_per_node} or more "
            "(a few per GPU rank is usual)")
    return warnings


def verify(cfg: TrainConfig) -> None:
    """The checks at the start of ``python -m train`` (every rank, before the process group forms, so
    all stop alike); the first rank of each node logs the warnings."""
    for warning in check(cfg, Allocation.here()):
        if os.environ.get("LOCAL_RANK", "0") == "0":
            log.warning("%s", warning)


def free_port() -> int:
    """A TCP port nothing listens on now, on this host: the rendezvous of a job whose first node is
    this one. (Ports derived from the job id collide: jobs 1234 and 2234 on one node would meet.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# Nodes of 8 GPUs per recipe: 10 B tokens in well under a day on A100s at 40% MFU (docs/training.md).
RECIPE_NODES = {"gpt2": 1, "gpt2-medium": 1, "gpt2-large": 2, "gpt2-xl": 4}
GPUS_PER_NODE, CPUS_PER_GPU = 8, 8


def job_line(model: str, gres: bool = False) -> str:
    """The sbatch line for a recipe of conf/model/ on nodes of 8 GPUs of 80 GB: the memory model's
    figures (model/memory.py) for the GPU (the recipe's micro-batch fits) and the host (``--mem``,
    per node, rounded up to 32 GiB)."""
    from model.memory import GIB, host_memory_per_rank, step_memory
    from train.config import compose

    cfg = compose([f"model={model}", "data.dir=/data/owt/tokens"])
    gpu = step_memory(cfg.model, cfg.micro_batch_size, world_size=GPUS_PER_NODE * RECIPE_NODES[model])
    assert gpu.total < 80e9, f"{model}'s recipe does not fit an 80 GB GPU"
    mem_gib = -(-GPUS_PER_NODE * host_memory_per_rank(cfg.model) // (32 * GIB)) * 32
    gpus = f"--gres=gpu:{GPUS_PER_NODE}" if gres else f"--gpus-per-node={GPUS_PER_NODE}"
    return (f"sbatch --nodes={RECIPE_NODES[model]} {gpus} --cpus-per-task={GPUS_PER_NODE * CPUS_PER_GPU} "
            f"--mem={mem_gib}G --time=24:00:00 slurm/train.sbatch model={model} data.dir=/data/owt/tokens "
            f"out_dir=runs/{model} compile=true")


def main(argv: list[str]) -> int:
    """The batch script's plan: checks, then shell assignments on stdout (messages on stderr)."""
    if argv == ["--free-port"]:
        print(free_port())
        return 0
    if argv == ["--job-lines"]:  # the header of slurm/train.sbatch and docs/training.md show these
        print("\n".join(job_line(model) for model in RECIPE_NODES))
        return 0
    from train.config import compose

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        cfg = compose(argv)
        where = Allocation.here(ranks_per_node(slurm_gpus_on_node()))
        warnings = check(cfg, where)
    except Exception as err:  # PreflightError, ConfigError, or Hydra's own for a bad override
        print(f"preflight: {err}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"preflight: warning: {warning}", file=sys.stderr)
    print(f"ranks_per_node={where.ranks_per_node} gpus_on_node={where.slurm_gpus} "
          f"threads_per_rank={where.threads_per_rank} port={free_port()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
