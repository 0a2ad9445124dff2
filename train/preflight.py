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

``micro_batch_size=auto`` is resolved here too, after the process group forms (``resolve_micro_batch``):
the largest micro-batch that divides each rank's sequences per step and whose memory estimate
(model/memory.py) fits the GPU with a margin; the batch script's plan checks early that micro-batch 1
fits at all. ``--job-lines`` prints the sbatch lines per size and which parallelism and micro-batch
each size needs on GPUs of 24, 40 and 80 GB (``fit_table``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from model.memory import GIB, StepMemory, step_memory
from train.config import TrainConfig, compose

if TYPE_CHECKING:
    import torch

    from train.distributed import Ranks

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


# The margin micro_batch_size=auto leaves beside the estimate, which counts tensors only. A fixed part
# for what no estimate of ours sees: the CUDA context (about 0.5 GiB), NCCL's communicators and
# buffers (a few hundred MiB), cuBLAS's workspaces and the allocator's partly used blocks (0.5 to 1
# GiB). Then a share of the rest for fragmentation: a long run's caching allocator holds blocks split
# to sizes the next request cannot reuse, and an estimate within 2% of MemTracker is not one within
# 2% of what the allocator reserves.
RESERVED_BYTES = 2 * GIB
FRAGMENTATION = 0.10


def usable_bytes(device_bytes: int) -> int:
    """What the estimate may take of a device's ``device_bytes``: the margin off."""
    return max(0, int((device_bytes - RESERVED_BYTES) * (1 - FRAGMENTATION)))


def half_precision(cfg: TrainConfig, device_type: str) -> bool:
    """Whether the step computes in 2-byte floats, as ``train.config.autocast_dtype`` decides (without
    asking a GPU): ``dtype=auto`` is bf16 (fp16 on GPUs without it) on a GPU, float32 on a CPU."""
    return cfg.dtype in ("bfloat16", "float16") or (cfg.dtype == "auto" and device_type == "cuda")


def micro_batch_memory(cfg: TrainConfig, world_size: int, micro_batch: int,
                       device_type: str = "cuda") -> StepMemory:
    """The estimate of a step of ``cfg`` at ``micro_batch`` on one of ``world_size`` ranks; one process
    trains unsharded whatever ``parallel`` says (train/loop.py)."""
    parallel = cfg.parallel if world_size > 1 else "ddp"
    return step_memory(cfg.model, micro_batch, half_precision=half_precision(cfg, device_type),
                       world_size=world_size, parallel=parallel, optimizer=cfg.optim.name)


def choose_micro_batch(cfg: TrainConfig, world_size: int, device_bytes: int,
                       device_type: str = "cuda") -> int:
    """The largest micro-batch whose step fits ``device_bytes`` with the margin, among those that divide
    the sequences each rank takes per step (the accumulation must be whole). ``device_type`` decides
    what ``dtype=auto`` computes in: a GPU's half precision unless it is ``cpu``."""
    block = cfg.model.block_size
    sequences = cfg.total_batch_tokens // block
    if sequences % world_size:
        raise PreflightError(
            f"total_batch_tokens={cfg.total_batch_tokens} is {sequences} sequences of {block} tokens, which "
            f"{world_size} ranks cannot share evenly: make it a multiple of {world_size * block}")
    per_rank, usable = sequences // world_size, usable_bytes(device_bytes)
    for micro_batch in sorted((m for m in range(1, per_rank + 1) if per_rank % m == 0), reverse=True):
        if micro_batch_memory(cfg, world_size, micro_batch, device_type).total <= usable:
            return micro_batch
    need = micro_batch_memory(cfg, world_size, 1, device_type)
    if cfg.parallel == "fsdp":
        ways = f"use more GPUs (parallel=fsdp's state shrinks with the ranks: {world_size} now)"
    elif world_size == 1:
        ways = "train on several GPUs with parallel=fsdp (one process has nothing to shard over)"
    else:
        ways = "shard the model over the ranks with parallel=fsdp"
    raise PreflightError(
        f"model={cfg.model.name} under parallel={cfg.parallel} on {world_size} rank(s) needs "
        f"{need.total / GIB:.1f} GiB per rank at micro-batch 1 ({need.describe()}), more than the "
        f"{usable / GIB:.1f} GiB usable of {device_bytes / GIB:.1f} GiB ({RESERVED_BYTES / GIB:.0f} GiB "
        f"reserved for the CUDA context, NCCL and the allocator, then {FRAGMENTATION:.0%} for "
        f"fragmentation): {ways}, or train a smaller model")


def device_memory(cfg: TrainConfig, device: torch.device) -> tuple[int, str]:
    """The bytes ``micro_batch_size=auto`` plans with on ``device``, and where the figure came from:
    ``device_memory_gb`` when set; else a GPU's free memory; else the host's available memory."""
    if cfg.device_memory_gb is not None:
        return int(cfg.device_memory_gb * 1e9), f"device_memory_gb={cfg.device_memory_gb:g}"
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0], f"free on {device}"
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # the node's ranks share the host
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // max(1, ranks_here)
    return available, f"the host's available memory over {ranks_here} rank(s)"


def resolve_micro_batch(cfg: TrainConfig, ranks: Ranks, device: torch.device) -> int:
    """``cfg.micro_batch_size``, with ``auto`` chosen for this device; every rank calls it, and all take
    the smallest rank's choice (one whose GPU has less free takes the others down with it, not out)."""
    from train.distributed import max_over_ranks

    if cfg.micro_batch_size != "auto":
        return cfg.micro_batch_size
    memory, source = device_memory(cfg, device)
    failure = None
    try:
        choice = choose_micro_batch(cfg, ranks.world_size, memory, device.type)
    except PreflightError as err:
        choice, failure = 0, err  # said after the all-reduce, which the other ranks wait in
    agreed = -max_over_ranks(-choice, ranks, device)
    if failure is not None:
        raise failure
    if agreed == 0:
        raise PreflightError("micro_batch_size=auto: another rank's GPU cannot fit micro-batch 1 (its "
                             "message says why)")
    if ranks.main:
        estimate = micro_batch_memory(cfg, ranks.world_size, agreed, device.type)
        log.info("micro_batch_size=auto: %d (estimate %.1f GiB per rank; planned with %.1f GiB, %s, "
                 "less %.0f GiB reserved and %.0f%% for fragmentation: %.1f GiB usable)", agreed,
                 estimate.total / GIB, memory / GIB, source, RESERVED_BYTES / GIB, FRAGMENTATION * 100,
                 usable_bytes(memory) / GIB)
    return agreed


def early_fit(cfg: TrainConfig, world_size: int) -> str | None:
    """The batch script's check of ``micro_batch_size=auto`` on the job's first node, before any rank
    starts: what it would choose, or a ``PreflightError`` when micro-batch 1 cannot fit. None when there
    is nothing to check against (a fixed micro-batch; no GPU seen and no ``device_memory_gb``)."""
    import torch

    if cfg.micro_batch_size != "auto":
        return None
    gpu = cfg.device != "cpu" and torch.cuda.is_available()
    if cfg.device_memory_gb is None and not gpu:
        return None
    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    memory, source = device_memory(cfg, device)
    choice = choose_micro_batch(cfg, world_size, memory, device.type)
    return (f"micro_batch_size=auto: {choice} on {world_size} rank(s), planned with {memory / GIB:.1f} GiB "
            f"({source})")


def free_port() -> int:
    """A TCP port nothing listens on now, on this host: the rendezvous of a job whose first node is
    this one. (Ports derived from the job id collide: jobs 1234 and 2234 on one node would meet.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# Nodes of 8 GPUs per recipe: 10 B tokens in well under a day on A100s at 40% MFU (docs/training.md).
RECIPE_NODES = {"gpt2": 1, "gpt2-medium": 1, "gpt2-large": 2, "gpt2-xl": 4}
GPUS_PER_NODE, CPUS_PER_GPU = 8, 8
# GPU memory as torch reports it (total_memory), for the sizes GPUs are sold by: an "80 GB" H100
# reports 79.1 GiB, a "40 GB" A100 39.4 GiB, a "24 GB" card (RTX 3090 or 4090 class) 23.6 GiB.
REPORTED_GIB = {24: 23.6, 40: 39.4, 80: 79.1}
# The table's rule: DDP where a micro-batch of 4 or more fits (its whole per-rank state then leaves
# the activations room enough); else FSDP at its largest fitting micro-batch; else "does not fit".
DDP_MIN_MICRO_BATCH = 4


def recipe(model: str) -> TrainConfig:
    """What ``python -m train model=MODEL`` runs (conf/model/MODEL.yaml's micro-batch, tokens per step,
    optimizer), with the data folder the job lines name."""
    return compose([f"model={model}", "data.dir=/data/owt/tokens"])


def job_line(model: str, gres: bool = False) -> str:
    """The sbatch line for a recipe of conf/model/ on nodes of 8 GPUs of 80 GB: the memory model's
    figures (model/memory.py) for the GPU (the recipe's micro-batch fits, with the margin) and the host
    (``--mem``, per node, rounded up to 32 GiB)."""
    from model.memory import host_memory_per_rank

    cfg = recipe(model)
    fits = choose_micro_batch(cfg, GPUS_PER_NODE * RECIPE_NODES[model], int(REPORTED_GIB[80] * GIB))
    assert fits >= cfg.micro_batch_size, f"{model}'s recipe does not fit an 80 GB GPU"
    mem_gib = -(-GPUS_PER_NODE * host_memory_per_rank(cfg.model) // (32 * GIB)) * 32
    gpus = f"--gres=gpu:{GPUS_PER_NODE}" if gres else f"--gpus-per-node={GPUS_PER_NODE}"
    return (f"sbatch --nodes={RECIPE_NODES[model]} {gpus} --cpus-per-task={GPUS_PER_NODE * CPUS_PER_GPU} "
            f"--mem={mem_gib}G --time=24:00:00 slurm/train.sbatch model={model} data.dir=/data/owt/tokens "
            f"out_dir=runs/{model} compile=true")


def fit(cfg: TrainConfig, world_size: int, gpu_gb: int) -> str:
    """Which parallelism and micro-batch ``cfg`` needs on ``world_size`` GPUs of ``gpu_gb`` GB, by the
    table's rule (``DDP_MIN_MICRO_BATCH``)."""
    device_bytes = int(REPORTED_GIB[gpu_gb] * GIB)
    for parallel in ("ddp", "fsdp"):
        try:
            micro_batch = choose_micro_batch(replace(cfg, parallel=parallel), world_size, device_bytes)
        except PreflightError:
            continue
        if parallel == "fsdp" or micro_batch >= DDP_MIN_MICRO_BATCH:
            return f"{parallel}, micro-batch {micro_batch}"
    return "does not fit"


def fit_table() -> str:
    """Markdown: for each recipe on its nodes of 8 GPUs (its model and tokens per step), what each GPU
    memory needs. docs/training.md shows it as printed."""
    head = " | ".join(f"{gb} GB ({gib} GiB)" for gb, gib in REPORTED_GIB.items())
    rows = [f"| model | nodes x GPUs | {head} |", "| --- | --- |" + " --- |" * len(REPORTED_GIB)]
    for model, nodes in RECIPE_NODES.items():
        cfg = recipe(model)
        cells = " | ".join(fit(cfg, nodes * GPUS_PER_NODE, gb) for gb in REPORTED_GIB)
        rows.append(f"| `{model}` | {nodes} x {GPUS_PER_NODE} | {cells} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    """The batch script's plan: checks, then shell assignments on stdout (messages on stderr)."""
    if argv == ["--free-port"]:
        print(free_port())
        return 0
    if argv == ["--job-lines"]:  # the header of slurm/train.sbatch and docs/training.md show these
        print("\n".join(job_line(model) for model in RECIPE_NODES))
        print()
        print(fit_table())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        cfg = compose(argv)
        where = Allocation.here(ranks_per_node(slurm_gpus_on_node()))
        warnings = check(cfg, where)
        nodes = os.environ.get("SLURM_NNODES", "1")
        planned = early_fit(cfg, where.ranks_per_node * (int(nodes) if nodes.isdigit() else 1))
    except Exception as err:  # PreflightError, ConfigError, or Hydra's own for a bad override
        print(f"preflight: {err}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"preflight: warning: {warning}", file=sys.stderr)
    if planned:
        print(f"preflight: {planned}", file=sys.stderr)
    print(f"ranks_per_node={where.ranks_per_node} gpus_on_node={where.slurm_gpus} "
          f"threads_per_rank={where.threads_per_rank} port={free_port()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
