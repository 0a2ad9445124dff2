"""GPU training benchmark: the trainer's tokens/s, MFU, peak memory beside its estimate, compile time.

For the GPT-2 sizes on one CUDA device; ``--smoke`` runs the same code on the CPU for the tests.

    python bench/gpu.py [--models gpt2,gpt2-medium,gpt2-xl] [--compile both|on|off] [--steps 30]
                        [--warmup 3] [--micro-batch N] [--parallel both|ddp|fsdp] [--json gpu_bench.json]
                        [--smoke]

What runs: for each model, each parallelism (``ddp``, then ``fsdp``) and each compile setting (off,
then on), one ``train.loop.build(cfg, Ranks()).train_step()`` loop in this process, nothing else on
the device. ``ddp`` on one device is the plain model; ``fsdp`` is FSDP2 over a process group of one
(this process), so its all-gathers, bf16 parameter casts and fp32 reduce-scatters all run, on the
whole state (one rank shards nothing): its cost in time beside ``ddp``'s, and its peak beside
``model/memory.py``'s estimate for ``parallel=fsdp``. The config is the recipe
``python -m train model=NAME`` composes (conf/train.yaml and conf/model/NAME.yaml, through
``train.preflight.recipe``), with the benchmark's fields replaced and validated again: ``device=cuda``,
``dtype=bfloat16`` (bf16 autocast, fp32 weights and AdamW state), block size 1,024, ``deterministic=false``,
one micro-batch per step (``total_batch_tokens = micro_batch x block``: no accumulation), ``max_steps``
100,000 and 1 warmup step so the learning-rate schedule is practically constant, no evaluation,
checkpoint or log during the run. Data: llm.c shards of random GPT-2 token ids in a temporary folder
(``bench.train.make_data``; header from ``model.base.shards.header``), loaded by the trainer's own
loader inside each step (pinned, asynchronous copies), as in training.

Which models: by default ``gpt2``, ``gpt2-medium`` and the largest GPT-2 size whose estimate fits
(``gpt2-xl`` on an 80 GB H100). Micro-batch: the recipe's (16; 8 for ``gpt2-xl``), or the largest
below it whose estimate ``model.memory.step_memory(model, micro_batch, half_precision=True,
world_size=1).total`` is at most 90% of the device's memory (the estimate leaves out the CUDA
context and the allocator's slack, about 0.5 to 1 GiB); ``--micro-batch`` overrides it for every model.

Per run, each step is timed alone, with ``torch.cuda.synchronize`` before each clock reading:

- ``--warmup`` untimed steps (default 3), the first of which compiles the model when compile is on;
  then ``--steps`` timed steps (default 30);
- tokens/s = timed steps x tokens per step / their seconds; MFU = tokens/s x
  ``model.flops.flops_per_token`` / ``model.flops.peak_flops(device_name, "bfloat16")`` (989 TFLOP/s
  dense on an H100 SXM; "unknown" for a device not in that table);
- peak memory: ``torch.cuda.reset_peak_memory_stats`` before the trainer is built,
  ``max_memory_allocated`` (the tensors: what the estimate counts) and ``max_memory_reserved`` (the
  allocator's blocks, what ``nvidia-smi`` shows less the context) after the last step; measured /
  estimate compares the allocated peak with the estimate (compile keeps fewer activations: below 1);
- first step s: the first warm-up step (with compile on it holds dynamo's trace and inductor's
  compilation of the forward and backward); compile s = first step - the median timed step.

Between runs: the trainer deleted, ``gc.collect``, ``torch._dynamo.reset()`` after a compiled run,
``torch.cuda.empty_cache``. A run that runs out of memory, or a compiled run that fails (a missing
toolchain), is reported as failed and the others go on.

Output: a table on stdout (model, compile, micro-batch, tokens/s, MFU %, measured peak GiB, reserved
GiB, estimate GiB, measured/estimate, first step s, compile s) and ``--json`` (default
``gpu_bench.json`` in the working directory): the same rows plus the device's name and memory, torch's
and CUDA's versions, the peak FLOP/s used, the settings and the whole command's seconds. Progress goes
to stderr through logging.

Budget, one H100 SXM 80 GB, default settings, per parallelism (``--parallel both`` runs twice the
steps and compilations: about 11 minutes; ``--parallel fsdp --compile off`` adds the fsdp rows in
about 2) (estimates; the JSON's ``wall_s`` and the last log line
give the real figure): FLOPs per step = tokens per step x FLOPs per token: gpt2 16,384 x 0.855 G =
14.0 T, gpt2-medium 16,384 x 2.425 G = 39.7 T, gpt2-xl 8,192 x 10.28 G = 84.2 T; at 30% MFU eager
and 40% compiled of 989 TFLOP/s a step takes 0.047 / 0.035 s, 0.134 / 0.100 s and 0.284 / 0.213 s,
and 3 + 30 steps of all six runs 33 x 0.81 s = 27 s (54 s at half those MFUs). Compilation grows
with the layers (12, 24, 48): about 45 + 70 + 130 s = 245 s. Building the models (fp32 init on the
CPU, measured at about 14 ns a parameter on a slow 2-core machine, then copied over) about 2, 4 and
15 s per run, twice: 42 s; start-up, imports and data 15 s. Total about 27 + 245 + 42 + 15 = 329 s =
5.5 minutes, leaving 2.5 of the 8 for slower compilation (1.6 times the guess still fits). The timed
steps are under a tenth of the whole: more ``--steps`` cost little (each 10 more: about 8 s).

``--smoke``: the same code paths on the CPU, for the test suite (tests/test_bench_gpu.py), so the
script cannot rot: ``gpt2-tiny`` at block size 64, float32 (no bf16 claim on a CPU), compile off
unless asked, 1 warm-up and 2 timed steps, the recipe's micro-batch; the estimate in float32
(``half_precision=False``); measured memory "n/a" (null in the JSON: CUDA's counters are all there
is) and MFU "unknown" (no peak for a CPU in model/flops.py). Without CUDA and without ``--smoke``
the script exits with a message saying so.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import dataclasses
import gc
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from model.base.schema import validate
from model.config import GPTConfig
from model.flops import device_name, flops_per_token, mfu, peak_flops
from model.memory import GIB, step_memory
from train.config import DataConfig, TrainConfig
from train.distributed import Ranks
from train.loop import build
from train.preflight import recipe as train_recipe

log = logging.getLogger("webtext.bench.gpu")

SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # the published GPT-2 sizes, smallest first
FIT_SHARE = 0.9  # an estimate fits at up to this share of the device's memory (context and slack aside)
GPU_BLOCK, SMOKE_BLOCK = 1024, 64
SMOKE_MODEL = "gpt2-tiny"


@dataclass
class Planned:
    """One model to benchmark: its validated recipe (block size set) and the micro-batch to run."""

    recipe: TrainConfig
    micro_batch: int
    estimate: int  # bytes, model/memory.py


@dataclass
class Row:
    """One run's figures; None where not measured (a CPU's memory, a failed run, compile off's compile s)."""

    model: str
    parallel: str
    compile: bool
    micro_batch: int
    block_size: int
    tokens_per_step: int
    estimate_gib: float
    tokens_per_s: float | None = None
    mfu: float | None = None  # a share in [0, 1]
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    measured_over_estimate: float | None = None  # peak allocated / estimate
    first_step_s: float | None = None
    median_step_s: float | None = None
    compile_s: float | None = None
    final_loss: float | None = None
    run_s: float | None = None  # the whole run: build, steps, free
    error: str | None = None


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated configs of conf/model/ (default: gpt2, gpt2-medium "
                        f"and the largest size that fits; {SMOKE_MODEL} with --smoke)")
    parser.add_argument("--compile", choices=("both", "on", "off"),
                        help="torch.compile the model: off, on, or a run of each (default both; off with "
                        "--smoke)")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 30; 2 with --smoke)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, the compiling one among them "
                        "(default 3; 1 with --smoke)")
    parser.add_argument("--micro-batch", type=int, help="sequences per step for every model (default: the "
                        "recipe's, or the largest below it whose memory estimate fits)")
    parser.add_argument("--parallel", choices=("both", "ddp", "fsdp"), default="both",
                        help="ddp (the plain model on one device), fsdp (FSDP2 over a group of one), or both")
    parser.add_argument("--json", type=Path, default=Path("gpu_bench.json"), help="where the results go")
    parser.add_argument("--smoke", action="store_true", help=f"CPU smoke run: {SMOKE_MODEL}, block "
                        f"{SMOKE_BLOCK}, float32, for the tests; no GPU needed")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.compile = args.compile or ("off" if smoke else "both")
    args.steps = args.steps if args.steps is not None else (2 if smoke else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1 (the first step is never timed)")
    if args.micro_batch is not None and args.micro_batch < 1:
        parser.error("--micro-batch must be at least 1")
    return args


def recipe(name: str, block_size: int) -> TrainConfig:
    """What ``python -m train model=NAME`` runs (its micro-batch, optimizer), at ``block_size``."""
    cfg = train_recipe(name)
    cfg.model = dataclasses.replace(cfg.model, block_size=block_size)
    return cfg


def fitting_micro_batch(model: GPTConfig, largest: int, budget: int | None, half: bool) -> int | None:
    """The largest micro-batch up to ``largest`` whose estimate is within ``budget`` bytes (None: none
    fits); ``largest`` itself when there is no budget (a CPU)."""
    for micro_batch in range(largest, 0, -1):
        if budget is None or step_memory(model, micro_batch, half, world_size=1).total <= budget:
            return micro_batch
    return None


def plan(args: argparse.Namespace, budget: int | None) -> list[Planned]:
    """The models to run, each with its micro-batch and memory estimate."""
    block = SMOKE_BLOCK if args.smoke else GPU_BLOCK
    half = not args.smoke
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
    elif args.smoke:
        names = [SMOKE_MODEL]
    else:
        recipes = [recipe(n, block) for n in SIZES]
        fits = [r.model.name for r in recipes
                if fitting_micro_batch(r.model, r.micro_batch_size, budget, half) is not None]
        names = list(dict.fromkeys(["gpt2", "gpt2-medium", *fits[-1:]]))
    planned = []
    for name in names:
        cfg = recipe(name, block)
        micro_batch = args.micro_batch or fitting_micro_batch(cfg.model, cfg.micro_batch_size, budget, half)
        if micro_batch is None:
            micro_batch = 1
            log.warning("%s: the estimate exceeds %.1f GiB even at micro-batch 1; running it anyway", name,
                        budget / GIB)
        memory = step_memory(cfg.model, micro_batch, half, world_size=1)
        log.info("%s: %s parameters, micro-batch %d (recipe %d) x %d tokens; estimate %s", name,
                 f"{cfg.model.num_params():,}", micro_batch, cfg.micro_batch_size, block, memory.describe())
        planned.append(Planned(cfg, micro_batch, memory.total))
    return planned


def bench_config(planned: Planned, data: Path, out: Path, device: str, compile_: bool,
                 parallel: str = "ddp") -> TrainConfig:
    """The recipe with the benchmark's fields: one micro-batch per step, a flat schedule, no evaluation."""
    from bench.train import RUN_STEPS  # (imported here: see write_data)

    block = planned.recipe.model.block_size
    cfg = dataclasses.replace(
        planned.recipe, data=DataConfig(dir=str(data)), out_dir=str(out),
        optim=dataclasses.replace(planned.recipe.optim, warmup_steps=1),
        micro_batch_size=planned.micro_batch, total_batch_tokens=planned.micro_batch * block,
        max_steps=RUN_STEPS, eval_every_steps=RUN_STEPS, checkpoint_every_steps=RUN_STEPS,
        log_every_steps=RUN_STEPS, eval_tokens=block, deterministic=False, device=device,
        dtype="float32" if device == "cpu" else "bfloat16", compile=compile_, parallel=parallel,
    )
    validate(cfg)
    return cfg


def write_data(folder: Path, min_tokens: int) -> None:
    """Shards of random token ids, as bench/train.py writes them. Imported here, not at the top:
    bench.train's imports take seconds (transformers, through tests/), which a machine without a
    GPU should not wait for to hear that it has none."""
    from bench.train import make_data

    folder.mkdir()
    make_data(folder, min_tokens)


def timed_run(cfg: TrainConfig, warmup: int, steps: int, sync: Callable[[], None]) -> dict[str, float]:
    """Build the trainer, run ``warmup`` then ``steps`` steps, each timed alone; the trainer is gone on
    return (nothing here outlives the call, so the caller can free the device)."""
    trainer = build(cfg, Ranks())
    try:
        seconds, loss = [], float("nan")
        for _ in range(warmup + steps):
            sync()
            start = time.perf_counter()
            loss = trainer.train_step()["loss"]
            sync()
            seconds.append(time.perf_counter() - start)
    finally:
        del trainer  # its model, optimizer and compiled graph: free() collects them once this returns
    timed = seconds[warmup:]
    return {"first": seconds[0], "timed": sum(timed), "median": statistics.median(timed), "loss": loss}


def run_one(planned: Planned, parallel: str, compile_: bool, args: argparse.Namespace, data: Path, out: Path,
            device: torch.device, peak: float | None) -> Row:
    """One run, measured and reported as a row; its memory freed after it, whatever happened."""
    cfg = bench_config(planned, data, out, device.type, compile_, parallel)
    cuda = device.type == "cuda"
    estimate = step_memory(cfg.model, cfg.micro_batch_size, not args.smoke, world_size=1, parallel=parallel)
    row = Row(cfg.model.name, parallel, compile_, cfg.micro_batch_size, cfg.model.block_size,
              cfg.total_batch_tokens, estimate.total / GIB)
    log.info("%s, %s, compile %s: %d untimed + %d timed steps", row.model, parallel,
             "on" if compile_ else "off", args.warmup, args.steps)
    started = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        result = timed_run(cfg, args.warmup, args.steps, (lambda: torch.cuda.synchronize(device)) if cuda
                           else (lambda: None))
    except torch.OutOfMemoryError as err:
        row.error = f"out of memory: {(str(err).strip().splitlines() or [''])[0][:200]}"
    except Exception as err:  # torch.compile needs a working toolchain: report and go on without it
        if not compile_:
            raise
        row.error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
    else:
        row.tokens_per_s = args.steps * cfg.total_batch_tokens / result["timed"]
        row.mfu = mfu(row.tokens_per_s, flops_per_token(cfg.model), peak)
        row.first_step_s, row.median_step_s = result["first"], result["median"]
        row.compile_s = result["first"] - result["median"] if compile_ else None
        row.final_loss = result["loss"]
        if cuda:
            row.peak_allocated_gib = torch.cuda.max_memory_allocated(device) / GIB
            row.peak_reserved_gib = torch.cuda.max_memory_reserved(device) / GIB
            row.measured_over_estimate = row.peak_allocated_gib / row.estimate_gib
    free(compile_, cuda)
    row.run_s = time.perf_counter() - started
    log.info("%s, %s, compile %s: %s in %.1f s", row.model, parallel, "on" if compile_ else "off",
             row.error or f"{row.tokens_per_s:,.0f} tokens/s", row.run_s)
    return row


def group_of_one(device: torch.device) -> None:
    """A process group of this process alone, for FSDP2 to shard over (one rank: nothing divided)."""
    import torch.distributed as dist

    from train.preflight import free_port

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)


def free(compiled: bool, cuda: bool) -> None:
    """Give back what a finished run held: its objects, dynamo's caches, the allocator's blocks."""
    gc.collect()
    if compiled:
        torch._dynamo.reset()
        gc.collect()
    if cuda:
        torch.cuda.empty_cache()


COLUMNS = ("model", "parallel", "compile", "micro-batch", "tokens/s", "MFU %", "peak GiB", "reserved GiB",
           "estimate GiB", "measured/estimate", "first step s", "compile s")


def cells(row: Row) -> list[str]:
    def number(value: float | None, spec: str, missing: str = "n/a") -> str:
        return missing if value is None else format(value, spec)

    head = [row.model, row.parallel, "on" if row.compile else "off", str(row.micro_batch)]
    if row.error is not None:
        return [*head, f"failed: {row.error}"]
    return [*head, number(row.tokens_per_s, ",.0f"), number(None if row.mfu is None else 100 * row.mfu,
                                                                 ".1f", "unknown"),
            number(row.peak_allocated_gib, ".2f"), number(row.peak_reserved_gib, ".2f"),
            number(row.estimate_gib, ".2f"), number(row.measured_over_estimate, ".2f"),
            number(row.first_step_s, ".2f"), number(row.compile_s, ".1f", "-")]


def table(rows: list[Row]) -> str:
    """Right-aligned columns; a failed run's reason takes the place of its figures."""
    lines = [list(COLUMNS), *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines if len(line) == len(COLUMNS)) for i in range(len(COLUMNS))]

    def text(line: list[str]) -> str:
        if len(line) < len(COLUMNS):  # failed: the reason follows the run's name, settings and micro-batch
            return "  ".join([*(c.rjust(w) for c, w in zip(line[:-1], widths, strict=False)), line[-1]])
        return "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))

    return "\n".join(text(line) for line in lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = arguments()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("bench/gpu.py measures training on a CUDA GPU, and torch "
                 f"{torch.__version__} sees none here; `python bench/gpu.py --smoke` runs the same code on "
                 "the CPU with a tiny model (a check that the script works, not a benchmark)")
    started = time.perf_counter()
    device = torch.device("cpu") if args.smoke else torch.device("cuda", 0)
    name = device_name(device)
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    budget = None if memory is None else int(FIT_SHARE * memory)
    peak = peak_flops(name, "float32" if args.smoke else "bfloat16")
    log.info("%s%s, torch %s, CUDA %s; peak for MFU %s", name,
             "" if memory is None else f" ({memory / GIB:.1f} GiB)", torch.__version__, torch.version.cuda,
             "unknown" if peak is None else f"{peak / 1e12:.0f} TFLOP/s")
    planned = plan(args, budget)
    settings = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]
    parallels = ("ddp", "fsdp") if args.parallel == "both" else (args.parallel,)
    if "fsdp" in parallels:
        group_of_one(device)
    if device.type == "cuda":  # CUDA's and cuBLAS's own start-up, out of the first run's first step
        (torch.ones(64, 64, device=device) @ torch.ones(64, 64, device=device)).sum().item()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        data = Path(tmp) / "data"
        write_data(data, (args.warmup + args.steps) * max(p.micro_batch * p.recipe.model.block_size
                                                          for p in planned))
        for i, p in enumerate(planned):
            for parallel in parallels:
                for compile_ in settings:
                    rows.append(run_one(p, parallel, compile_, args, data,
                                        Path(tmp) / f"out-{i}-{parallel}-{int(compile_)}", device, peak))
    print(table(rows))
    wall = time.perf_counter() - started
    report = {"device": name, "device_memory_gib": None if memory is None else memory / GIB,
              "torch": torch.__version__, "cuda": torch.version.cuda, "peak_flops": peak,
              "dtype": "float32" if args.smoke else "bfloat16", "smoke": args.smoke, "warmup": args.warmup,
              "steps": args.steps, "parallel": list(parallels), "fit_share": FIT_SHARE, "wall_s": wall,
              "rows": [dataclasses.asdict(r) for r in rows]}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    log.info("%d run(s), %.0f s (%.1f min) in all; results in %s", len(rows), wall, wall / 60, args.json)


if __name__ == "__main__":
    main()
