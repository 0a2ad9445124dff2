"""The training loop: one process per device, DDP or FSDP2 across them, exact resume from checkpoints.

A step: this rank's micro-batches of the global batch (``train/data.py``), forward under autocast,
loss scaled by the accumulation, backward with DDP's gradient all-reduce only on the last micro-step
(``no_sync`` before; under ``parallel=fsdp`` each micro-step's gradients are reduce-scattered to
their shards, ``train/sharding.py``), the gradient norm clipped, the learning rate set from the step
(linear warmup, cosine decay to ``min_lr_ratio``), the optimizer stepped. A step whose loss or
gradient norm is not finite is skipped: the optimizer does not move and the step is counted;
``max_bad_steps`` of them in a row stop the run with the last good checkpoint intact.

The parts: ``build`` makes a rank's ``Trainer`` (model, optimizer, data; resumed by the
``Checkpointer``, ``train/checkpoint.py``; compiled and wrapped in DDP, or sharded), ``MetricsLogger`` reports
(``train/metrics.py``), ``evaluate`` evaluates (the measures are ``train/evaluate.py``'s, the
lm-evaluation-harness tasks ``train/eval_tasks.py``'s),
``StopRequested`` catches stop signals (``train/signals.py``); ``run`` is the plan of a step.
"""

from __future__ import annotations

import logging
import shutil
import signal
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from model import weights
from model.base.folders import RunFolder
from model.base.gate import hold_at_gate
from model.base.schema import to_dict
from model.flops import device_name, flops_per_token, peak_flops
from model.gpt2 import GPT
from model.memory import GIB, state_bytes_per_rank, step_memory
from train import eval_tasks, hellaswag, sharding
from train.checkpoint import Checkpointer, checkpoint_bytes, size
from train.config import TrainConfig, autocast_dtype
from train.data import TrainData
from train.distributed import Ranks, max_over_ranks, pick_device
from train.errors import TrainingError
from train.evaluate import samples_readable, text_samples, val_loss
from train.metrics import MetricsLogger, open_wandb
from train.optim import Optimizers, lr_at, make_optimizer, muon_flops_per_step
from train.signals import StopRequested

__all__ = ["Trainer", "TrainingError", "build", "lr_at", "run"]
log = logging.getLogger("webtext.train")


class Trainer:
    """One rank's training: the step, and the state a checkpoint keeps (``state_dict``)."""

    def __init__(self, cfg: TrainConfig, ranks: Ranks, device: torch.device, model: GPT,
                 optimizer: Optimizers, data: TrainData) -> None:
        self.cfg, self.ranks, self.device = cfg, ranks, device
        self.model, self.optimizer, self.data = model, optimizer, data
        self.net: torch.nn.Module = model  # what the step runs: compiled, DDP-wrapped by ``build``
        self.sharded = sharding.is_sharded(model)  # parallel=fsdp on more than one rank
        self.parallel = "fsdp" if self.sharded else "ddp"  # what runs: one process is never sharded
        self.autocast_dtype = autocast_dtype(cfg.dtype, device)
        fp16 = self.autocast_dtype == torch.float16
        if self.sharded:  # the scaler's inf checks see every shard: one verdict for all ranks
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            self.scaler: torch.amp.GradScaler = ShardedGradScaler(device.type, enabled=fp16)
        else:
            self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.step, self.tokens, self.bad_in_a_row, self.bad_total = 0, 0, 0, 0
        self.wandb_id: str | None = None
        self.held: dict[str, int] | None = None  # bytes of state this rank holds, after its first step

    def autocast(self) -> Any:
        """The forward passes' autocast context (none in float32)."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def state_dict(self) -> dict[str, Any]:
        """Everything of the trainer's own a resumed run needs (the model and optimizer aside)."""
        return {"step": self.step, "tokens": self.tokens, "loader": self.data.loader.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "bad_in_a_row": self.bad_in_a_row, "bad_total": self.bad_total, "wandb_id": self.wandb_id,
                "world_size": self.ranks.world_size, "parallel": self.parallel}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.tokens = state["step"], state["tokens"]
        self.bad_in_a_row, self.bad_total = state["bad_in_a_row"], state["bad_total"]
        self.data.loader.load_state_dict(state["loader"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.wandb_id = state.get("wandb_id")

    def whole_states(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The model's weights (``model/weights.py``'s keys) and the optimizer's state, whole, on rank
        0 (None on the others). Every rank calls it: a sharded model is gathered tensor by tensor."""
        if not self.sharded:
            if not self.ranks.main:
                return None, None
            return weights.state_dict(self.model), self.optimizer.state_dict()
        keep = self.ranks.main
        model = sharding.gathered(weights.tied_once(self.model.state_dict()), keep)
        return model, sharding.gathered(self.optimizer.state_dict(), keep)

    def load_whole(self, folder: Path, optimizer_state: dict[str, Any]) -> None:
        """Weights from a model folder (a checkpoint) and a whole optimizer state, into this rank's
        model and optimizer: cut to its shards where it is sharded."""
        if not self.sharded:
            self.model.load_state_dict(weights.load(folder, device=self.device).state_dict())
            self.optimizer.load_state_dict(optimizer_state)
            return
        whole = weights.load(folder, device="cpu")  # on the host: only the shards go to the device
        sharding.load_model_sharded(self.model, whole.state_dict())
        self.optimizer.load_state_dict(optimizer_state, cut=sharding.optimizer_sharded)

    def measure_held(self) -> None:
        """The bytes of parameters, gradients and optimizer state this rank holds now."""
        params = list(self.model.parameters())
        self.held = {"params": sharding.local_bytes(params),
                     "grads": sharding.local_bytes(p.grad for p in params),
                     "optimizer": sharding.local_bytes(v for state in self.optimizer.state.values()
                                                       for v in state.values())}

    def train_step(self) -> dict[str, Any]:
        """One optimizer step; returns the step's mean loss, grad norm, lr and whether it was skipped."""
        hold_at_gate("train_step", self.step)
        self.net.train()
        loss = self._accumulate_gradients()
        for part in self.optimizer.parts.values():  # the scaler takes one optimizer at a time
            self.scaler.unscale_(part)
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        clip_grad_norm = sharding.clip_grad_norm if self.sharded else torch.nn.utils.clip_grad_norm_
        norm = clip_grad_norm(self.model.parameters(), clip)
        lr = lr_at(self.step, self.cfg)
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(norm))
        # float16 gradients past 65,504 with a finite loss: the scaler's scale was too high. The step
        # is skipped and the scale halves (scaler.update); not a bad step unless the scale is below 1.
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        overflow = not finite and bool(torch.isfinite(loss)) and scale is not None and scale >= 1.0
        if finite:
            self.optimizer.set_lr(self.step)
            for part in self.optimizer.parts.values():
                self.scaler.step(part)
            self.bad_in_a_row = 0
        else:
            self.bad_in_a_row += 0 if overflow else 1
            self.bad_total += 1
        self.scaler.update()
        if self.held is None and finite:
            self.measure_held()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += self.cfg.total_batch_tokens
        return {"loss": loss.item(), "grad_norm": norm.item(), "lr": lr, "skipped": not finite,
                "overflow": overflow, "loss_scale": scale}

    def _accumulate_gradients(self) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches; the step's mean loss over all ranks."""
        micro = self.data.loader.next_batch()
        total = torch.zeros((), device=self.device)
        for m, (x, y) in enumerate(micro):
            if self.device.type == "cuda":  # pinned pages copy asynchronously: loading overlaps compute
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            last = m == len(micro) - 1
            no_sync = self.net.no_sync if isinstance(self.net, DDP) and not last else nullcontext
            with no_sync():  # gradients are all-reduced once, in the last micro-step's backward
                with self.autocast():
                    loss = self.net(x, y)[1]  # the logits go at once, not held through backward
                loss = loss / len(micro)
                total += loss.detach()
                self.scaler.scale(loss).backward()
        if self.ranks.world_size > 1:
            dist.all_reduce(total, op=dist.ReduceOp.AVG)
        return total


def build(cfg: TrainConfig, ranks: Ranks, checkpointer: Checkpointer | None = None) -> Trainer:
    """This rank's trainer for ``cfg``: resumed by ``checkpointer`` where it finds a checkpoint, then
    compiled (``compile``) and wrapped in DDP (several ranks), ready to step. Under ``parallel=fsdp``
    the model is sharded first (the optimizer is made over the shards) and compiled block by block."""
    device = pick_device(cfg.device, ranks.local_rank)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = build_model(cfg)  # the same initial weights on every rank, on the host
    # one process alone has no group to shard over (and nothing to gain); a group of one (bench/gpu.py)
    # runs FSDP's all-gathers, casts and reduce-scatters on the whole state
    fsdp = cfg.parallel == "fsdp" and dist.is_initialized()
    if fsdp:
        sharding.shard(model, device, autocast_dtype(cfg.dtype, device))  # each rank keeps its shards
    else:
        model = model.to(device)
    trainer = Trainer(cfg, ranks, device, model, make_optimizer(model, cfg, device),
                      TrainData.open(cfg, ranks.rank, ranks.world_size))
    torch.manual_seed(cfg.seed * 1000 + ranks.rank)  # dropout's stream: per (seed, rank)
    resumed = checkpointer.load(trainer) if checkpointer else None  # (restores every RNG as it was)
    if resumed and ranks.main:
        log.info("resumed from %s: step %d, %s tokens seen", resumed, trainer.step, f"{trainer.tokens:,}")
    if fsdp:
        if cfg.compile:  # in place, block by block: FSDP's hooks stay outside the compiled graphs
            for block in model.transformer.h:
                block.compile()
        trainer.net = model
        return trainer
    compiled = torch.compile(model) if cfg.compile else model
    ddp_ids = [ranks.local_rank] if device.type == "cuda" else None
    trainer.net = DDP(compiled, device_ids=ddp_ids) if ranks.world_size > 1 else compiled
    return trainer


def build_model(cfg: TrainConfig) -> GPT:
    """A fresh GPT of ``cfg.model`` (the same initial weights on every rank), or ``init_from``'s."""
    if not cfg.init_from.startswith("hf:"):
        torch.manual_seed(cfg.seed)
        return GPT(cfg.model)
    from model.hf import load_hf

    model = load_hf(cfg.init_from[3:], dropout=cfg.model.dropout)
    shape = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias")  # not name or dropout
    there, here = model.config, cfg.model
    differ = [f"{k}: {getattr(there, k)} there, {getattr(here, k)} here" for k in shape
              if getattr(there, k) != getattr(here, k)]
    if differ:
        raise TrainingError(f"init_from={cfg.init_from} is another shape ({'; '.join(differ)}); "
                            "pick the matching model config")
    return model.train()


def run(cfg: TrainConfig, ranks: Ranks) -> int:
    """Train to ``max_steps`` (or a stop signal); returns the process exit status."""
    folder = RunFolder(cfg.out_dir)
    if ranks.main:
        folder.root.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(folder, ranks, to_dict(cfg), cfg.keep_last, cfg.keep_every_steps)
    eval_tasks.preload(cfg, ranks)
    trainer = build(cfg, ranks, checkpointer)
    stop = StopRequested()
    logger, held_logged = None, False
    try:
        logger = start_logging(trainer, folder)
        while trainer.step < cfg.max_steps:
            result = logger.timed(trainer.train_step)
            if trainer.held is not None and not held_logged:  # the same step on every rank
                log_held(trainer)
                held_logged = True
            last = trainer.step == cfg.max_steps
            if result["skipped"]:
                check_bad_steps(trainer, result)
            logger.training(trainer.step, trainer.tokens, trainer.bad_total, result, last)
            if last or trainer.step % cfg.eval_every_steps == 0:
                evaluate(trainer, logger)
            signum = stop_signal(stop, trainer)
            if last or signum or trainer.step % cfg.checkpoint_every_steps == 0:
                checkpointer.save(trainer)
            if signum:
                if ranks.main:
                    log.warning("stopped by %s after step %d; checkpoint written; rerun the same command "
                                "to resume", signal.Signals(signum).name, trainer.step)
                stop.hand_over(signum)
                return 128 + signum
    finally:
        stop.restore()
        if logger is not None:
            logger.close()
    return 0


def evaluate(trainer: Trainer, logger: MetricsLogger) -> dict[str, Any]:
    """Validation loss and HellaSwag (every rank takes part), text samples and lm-evaluation-harness
    tasks (rank 0), reported. A sharded model evaluates in lockstep (each rank runs as many forward
    passes as the others: each all-gathers) and rank 0's part runs on a whole copy of it."""
    cfg, ranks = trainer.cfg, trainer.ranks
    record: dict[str, Any] = {"step": trainer.step}
    data = trainer.data
    record["val_loss"] = val_loss(trainer.model, data.val, data.val_indices, cfg.micro_batch_size,
                                  trainer.device, trainer.autocast, ranks.rank, ranks.world_size,
                                  lockstep=trainer.sharded)
    if cfg.eval.hellaswag:
        examples = hellaswag.read_examples(cfg.eval.hellaswag, cfg.eval.hellaswag_examples)
        with trainer.autocast():
            scores = hellaswag.evaluate(trainer.model, examples, trainer.device, ranks.rank, ranks.world_size,
                                        lockstep=trainer.sharded)
        record["hellaswag_acc_norm"] = scores["acc_norm"]
    model: GPT | None = trainer.model
    samples = bool(cfg.eval.prompts) and samples_readable(cfg.model)
    if trainer.sharded and (samples or cfg.eval.tasks):  # every rank gathers; rank 0 keeps the copy
        model = sharding.whole_copy(trainer.model, ranks.main)
    if ranks.main and model is not None:
        logger.samples(trainer.step, text_samples(model, cfg.eval.prompts, cfg.eval.sample_tokens, cfg.seed))
    if cfg.eval.tasks:
        record.update(eval_tasks.scores(trainer, model))
    del model
    logger.evaluation(record)
    return record


def start_logging(trainer: Trainer, folder: RunFolder) -> MetricsLogger:
    """The plan in the log, wandb (continuing the checkpoint's run), the logger at the trainer's step."""
    cfg = trainer.cfg
    flops = flops_per_token(cfg.model)
    precision = str(trainer.autocast_dtype or torch.float32).removeprefix("torch.")
    peak = cfg.peak_tflops * 1e12 if cfg.peak_tflops else peak_flops(device_name(trainer.device), precision)
    peak = peak if trainer.device.type == "cuda" or cfg.peak_tflops else None
    if trainer.ranks.main:
        log_plan(trainer, flops, peak)
    tracker, trainer.wandb_id = open_wandb(cfg, folder, trainer.ranks, trainer.wandb_id)
    logger = MetricsLogger(folder, cfg, trainer.ranks, flops, peak, tracker)
    logger.start(trainer.step)
    return logger


def log_held(trainer: Trainer) -> None:
    """What one rank holds after its first step (parameters, gradients, optimizer state; the most of
    any rank), beside the memory model's figure: how ``parallel=fsdp`` divides them, measured."""
    cfg, ranks = trainer.cfg, trainer.ranks
    held = trainer.held or {}
    most = {k: max_over_ranks(v, ranks, trainer.device) for k, v in held.items()}
    expected = state_bytes_per_rank(cfg.model, ranks.world_size, trainer.parallel, cfg.optim.name)
    if ranks.main:
        log.info("state held per rank (measured after the first step, the most of %d rank(s), %s): "
                 "parameters %d, gradients %d, optimizer %d = %d bytes; model/memory.py: %d bytes",
                 ranks.world_size, trainer.parallel, most["params"], most["grads"], most["optimizer"],
                 sum(most.values()), expected.total)


def stop_signal(stop: StopRequested, trainer: Trainer) -> int:
    """The stop signal any rank got (0: none), agreed on by all ranks."""
    return max_over_ranks(stop.signum, trainer.ranks, trainer.device)


def check_bad_steps(trainer: Trainer, result: dict[str, Any]) -> None:
    if result["overflow"]:
        log.warning("step %d: float16 gradients overflowed at loss scale %g: step skipped, the scale "
                    "halves", trainer.step, result["loss_scale"])
        return
    log.warning("step %d: loss %s, grad norm %s: not finite, step skipped (%d in a row)", trainer.step,
                result["loss"], result["grad_norm"], trainer.bad_in_a_row)
    if trainer.bad_in_a_row > trainer.cfg.max_bad_steps:
        raise TrainingError(f"{trainer.bad_in_a_row} steps in a row had a non-finite loss or gradient "
                            f"(max_bad_steps={trainer.cfg.max_bad_steps}); the last checkpoint in "
                            f"{RunFolder(trainer.cfg.out_dir).checkpoints} is intact")


def log_plan(trainer: Trainer, flops: float, peak: float | None) -> None:
    """The model, the batch, the data and the memory the run will use, before its first step."""
    cfg, ranks, device = trainer.cfg, trainer.ranks, trainer.device
    total, data = cfg.max_steps * cfg.total_batch_tokens, len(trainer.data.train) * cfg.model.block_size
    how = ("fsdp: parameters, gradients and optimizer state sharded over the ranks" if trainer.sharded
           else "ddp" if ranks.world_size > 1 else "one process")
    log.info("model %s: %s parameters, %.3f GFLOP per token; %d rank(s) on %s (%s), %d CPU thread(s) "
             "per rank (%s)", cfg.model.name, f"{trainer.model.num_params():,}", flops / 1e9,
             ranks.world_size, device, device_name(device), torch.get_num_threads(), how)
    if cfg.parallel == "fsdp" and not trainer.sharded:
        log.warning("parallel=fsdp on one process: there is nothing to shard over; the whole model trains "
                    "here (start several ranks with torchrun or slurm/train.sbatch to shard it)")
    log.info("%s tokens per step = %d rank(s) x %d micro-batch(es) of %d x %d tokens; %d steps = %s "
             "tokens (%.2f epochs of %s training tokens)", f"{cfg.total_batch_tokens:,}", ranks.world_size,
             trainer.data.loader.accumulation, cfg.micro_batch_size, cfg.model.block_size, cfg.max_steps,
             f"{total:,}", total / data, f"{data:,}")
    memory = step_memory(cfg.model, cfg.micro_batch_size, half_precision=trainer.autocast_dtype is not None,
                         world_size=ranks.world_size, parallel=trainer.parallel,
                         optimizer=cfg.optim.name)
    log_optimizer(trainer, flops)
    log.info("memory per rank (estimate, model/memory.py): %s%s; peak for MFU: %s", memory.describe(),
             ", torch.compile needs less" if cfg.compile else "",
             "unknown" if peak is None else f"{peak / 1e12:.0f} TFLOP/s")
    warn_if_disk_is_short(trainer)
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
        if memory.total > 0.95 * have:
            log.warning("the estimate exceeds the %.1f GiB of %s: if the run runs out of memory, lower "
                        "micro_batch_size (gradient accumulation keeps the batch of total_batch_tokens)",
                        have / GIB, device_name(device))


def warn_if_disk_is_short(trainer: Trainer) -> None:
    """Checkpoints need room for ``keep_last + 1`` of them (the new one is complete before the oldest
    goes): say so at the start when the run folder's filesystem has less free."""
    cfg = trainer.cfg
    each, usage = checkpoint_bytes(trainer), shutil.disk_usage(cfg.out_dir)
    log.info("checkpoints: about %s each, %d kept (+1 while the next is written); %s free in %s",
             size(each), cfg.keep_last, size(usage.free), cfg.out_dir)
    if usage.free < (cfg.keep_last + 1) * each:
        log.warning("%s has %s free, less than the %s of keep_last + 1 = %d checkpoints: a checkpoint may "
                    "not fit (the run then stops, keeping the last good one); free space or lower keep_last",
                    cfg.out_dir, size(usage.free), size((cfg.keep_last + 1) * each), cfg.keep_last + 1)


def log_optimizer(trainer: Trainer, flops: float) -> None:
    """Which optimizer runs, on what, and what Muon's orthogonalization adds per step."""
    o, parts = trainer.cfg.optim, trainer.optimizer.parts
    count = {name: sum(p.numel() for g in part.param_groups for p in g["params"])
             for name, part in parts.items()}
    if o.name == "adamw":
        log.info("optimizer adamw: %s parameters, max_lr %g, weight decay %g on matrices",
                 f"{count['adamw']:,}", o.max_lr, o.weight_decay)
        return
    extra = muon_flops_per_step(trainer.model, trainer.cfg)
    step_flops = flops * trainer.cfg.total_batch_tokens
    log.info("optimizer muon: Muon on the blocks' matrices (%s parameters, lr %g, momentum %g, weight decay "
             "%g), AdamW on the rest (%s, max_lr %g); Newton-Schulz adds %.3f GFLOP per step (%.2f%% of the "
             "step's model FLOPs; MFU counts the model's alone)", f"{count['muon']:,}", o.muon.lr,
             o.muon.momentum, o.muon.weight_decay, f"{count['adamw']:,}", o.max_lr, extra / 1e9,
             100 * extra / step_flops)
