"""The training loop: one process per device, DDP across them, exact resume from checkpoints.

A step: this rank's micro-batches of the global batch (``train/data.py``), forward under autocast,
loss scaled by the accumulation, backward with DDP's gradient all-reduce only on the last micro-step
(``no_sync`` before), the gradient norm clipped, the learning rate set from the step (linear warmup,
cosine decay to ``min_lr_ratio``), the optimizer stepped. A step whose loss or gradient norm is not
finite is skipped: the optimizer does not move and the step is counted; ``max_bad_steps`` of them in
a row stop the run with the last good checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model import weights
from model.base.gate import hold_at_gate
from model.base.schema import to_dict
from model.flops import device_name, flops_per_token, mfu, peak_flops
from model.gpt2 import GPT
from model.memory import GIB, step_memory
from train import checkpoint as ckpt
from train.config import TrainConfig
from train.data import TrainLoader, Windows, shard_paths, val_indices
from train.distributed import Ranks, pick_device

log = logging.getLogger("webtext.train")


class TrainingError(RuntimeError):
    """The run cannot go on: the message says why and what is kept."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * max_lr``."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.max_lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, cfg.max_steps - o.warmup_steps)
    floor = o.max_lr * o.min_lr_ratio
    return floor + 0.5 * (o.max_lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, LayerNorms); fused kernels (on CPU too:
    the plain loop's temporaries cost several times more)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.max_lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                             eps=1e-8, fused=device.type in ("cuda", "cpu"))


class StopRequested:
    """SIGUSR1, SIGUSR2 or SIGTERM: finish the step, checkpoint, exit with 128 + the signal's number.

    USR1 is what slurm/train.sbatch forwards before the time limit; USR2 is what submitit (the sweep
    launcher) asks SLURM to send; TERM comes with preemption and scancel. The trainer takes them all
    while it trains, so no launcher's own handler ends the process with the steps since the last
    periodic checkpoint lost.
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def hand_over(self, signum: int) -> None:
        """After the checkpoint: in a submitit job (a sweep's), requeue it the way submitit would have
        (its handler calls the launcher's ``checkpoint`` and ``scontrol requeue``, then exits on the
        first task; the others exit here), so the requeued job resumes from this step's checkpoint.
        TERM is SLURM's own preemption or cancel: SLURM requeues or ends the job, nothing to ask."""
        requeue = next((h for h in self.previous.values()
                        if getattr(h, "__name__", "") == "checkpoint_and_try_requeue"), None)
        if requeue is None or signum == signal.SIGTERM:
            return
        requeue(signum, None)  # the first task exits in there once the job is requeued
        raise SystemExit(128 + signum)  # the other tasks: no result for the sweep, the job goes on

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum


class Trainer:
    def __init__(self, cfg: TrainConfig, ranks: Ranks) -> None:
        self.cfg, self.ranks = cfg, ranks
        self.out_dir = Path(cfg.out_dir)
        self.device = pick_device(cfg.device, ranks.local_rank)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        self.model = self._build_model().to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        block = cfg.model.block_size
        self.train = Windows(shard_paths(cfg.data.dir, cfg.data.train_pattern), block)
        self.val = Windows(shard_paths(cfg.data.dir, cfg.data.val_pattern), block)
        self.loader = TrainLoader(self.train, cfg.seed, cfg.total_batch_tokens // block, cfg.micro_batch_size,
                                  ranks.rank, ranks.world_size)
        self.val_indices = val_indices(self.val, cfg.eval_tokens, block)
        self.autocast = self._autocast()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.step, self.tokens, self.bad_in_a_row, self.bad_total = 0, 0, 0, 0
        self.wandb_id: str | None = None
        torch.manual_seed(cfg.seed * 1000 + ranks.rank)  # dropout's stream: per (seed, rank)
        self._resume()  # (restores every RNG as the checkpoint left it)
        compiled = torch.compile(self.model) if cfg.compile else self.model
        ddp_ids = [ranks.local_rank] if self.device.type == "cuda" else None
        self.net = DDP(compiled, device_ids=ddp_ids) if ranks.world_size > 1 else compiled
        self.flops_per_token = flops_per_token(cfg.model)
        precision = str(self.autocast_dtype or torch.float32).removeprefix("torch.")
        peak = cfg.peak_tflops * 1e12 if cfg.peak_tflops else peak_flops(device_name(self.device), precision)
        self.peak = peak if self.device.type == "cuda" or cfg.peak_tflops else None
        self.stop = StopRequested()  # last: a constructor that failed leaves no handler behind

    # --- building and resuming ------------------------------------------------------------------

    def _build_model(self) -> GPT:
        if self.cfg.init_from.startswith("hf:"):
            from model.hf import load_hf

            model = load_hf(self.cfg.init_from[3:], dropout=self.cfg.model.dropout)
            shape = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias")  # not name or dropout
            there, here = model.config, self.cfg.model
            differ = [f"{k}: {getattr(there, k)} there, {getattr(here, k)} here" for k in shape
                      if getattr(there, k) != getattr(here, k)]
            if differ:
                raise TrainingError(f"init_from={self.cfg.init_from} is another shape ({'; '.join(differ)}); "
                                    "pick the matching model config")
            return model.train()
        torch.manual_seed(self.cfg.seed)  # the same initial weights on every rank
        return GPT(self.cfg.model)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The forward passes' autocast dtype (None: float32). ``dtype=auto`` is bf16 on a GPU and
        float32 on a CPU, whose matmuls are fastest in float32 unless it has bf16 units (AMX,
        AVX512-BF16): ``dtype=bfloat16`` asks for autocast there too."""
        name = self.cfg.dtype
        if name == "auto":
            name = "bfloat16" if self.device.type == "cuda" else "float32"
        if name == "float32":
            return None
        if name == "bfloat16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16  # with a GradScaler
        return getattr(torch, name)

    def _autocast(self) -> Any:
        dtype, kind = self.autocast_dtype, self.device.type
        return (lambda: torch.autocast(kind, dtype=dtype)) if dtype else nullcontext

    def _resume(self) -> None:
        if self.ranks.main:
            ckpt.clean_partial(self.out_dir)
        self._barrier()
        folder = weights.newest_checkpoint(self.out_dir)
        if folder is None:
            return
        changed = ckpt.differences(ckpt.saved_config(folder), to_dict(self.cfg))
        if changed:
            raise TrainingError(f"{folder} was made by another run ({'; '.join(changed)}); use another "
                                f"out_dir, or the old values")
        state = weights.load(folder, device=self.device)
        self.model.load_state_dict(state.state_dict())
        self.optimizer.load_state_dict(ckpt.load_optimizer(folder))
        trainer = ckpt.load_trainer(folder)
        self.step, self.tokens = trainer["step"], trainer["tokens"]
        self.bad_in_a_row, self.bad_total = trainer["bad_in_a_row"], trainer["bad_total"]
        self.loader.load_state_dict(trainer["loader"])
        if trainer.get("scaler"):
            self.scaler.load_state_dict(trainer["scaler"])
        self.wandb_id = trainer.get("wandb_id")
        rng = ckpt.load_rank_state(folder, self.ranks.rank)
        if rng is not None:  # a rank the checkpoint did not have keeps its fresh (seed, rank) state
            ckpt.set_rng_state(rng)
        if self.ranks.main:
            log.info("resumed from %s: step %d, %s tokens seen", folder, self.step, f"{self.tokens:,}")

    # --- a step -----------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns the step's mean loss, grad norm, lr and whether it was skipped."""
        hold_at_gate("train_step", self.step)
        self.net.train()
        micro = self.loader.next_batch()
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
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        lr = lr_at(self.step, self.cfg)
        finite = bool(torch.isfinite(total)) and bool(torch.isfinite(norm))
        # float16 gradients past 65,504 with a finite loss: the scaler's scale was too high. The step
        # is skipped and the scale halves (scaler.update); not a bad step unless the scale is below 1.
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        overflow = not finite and bool(torch.isfinite(total)) and scale is not None and scale >= 1.0
        if finite:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.scaler.step(self.optimizer)
            self.bad_in_a_row = 0
        else:
            self.bad_in_a_row += 0 if overflow else 1
            self.bad_total += 1
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += self.cfg.total_batch_tokens
        return {"loss": total.item(), "grad_norm": norm.item(), "lr": lr, "skipped": not finite,
                "overflow": overflow, "loss_scale": scale}

    def _barrier(self) -> None:
        if self.ranks.world_size > 1:
            dist.barrier()

    # --- checkpoints ------------------------------------------------------------------------------

    def save(self) -> Path:
        tmp, final = ckpt.tmp_dir(self.out_dir, self.step), ckpt.step_dir(self.out_dir, self.step)
        if self.ranks.main:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self._barrier()
        ckpt.write_rank_state(tmp, self.ranks.rank)
        if self.ranks.main:
            trainer = {"step": self.step, "tokens": self.tokens, "loader": self.loader.state_dict(),
                       "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                       "bad_in_a_row": self.bad_in_a_row, "bad_total": self.bad_total,
                       "wandb_id": self.wandb_id, "world_size": self.ranks.world_size}
            ckpt.write(tmp, self.model, self.optimizer, trainer, to_dict(self.cfg))
        self._barrier()
        if self.ranks.main:
            hold_at_gate("checkpoint", self.step)
            ckpt.commit(tmp, final)
            ckpt.prune(self.out_dir, self.cfg.keep_last, self.cfg.keep_every_steps)
        self._barrier()
        return final

    def stop_signal(self) -> int:
        """The stop signal any rank got (0: none), agreed on by all ranks."""
        flag = torch.tensor(self.stop.signum)
        if self.ranks.world_size > 1:
            flag = flag.to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    # --- logging ---------------------------------------------------------------------------------

    def metrics(self, record: dict[str, Any]) -> None:
        if self.ranks.main:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def forget_metrics_after(self, step: int) -> None:
        """A resumed run redoes the steps after its checkpoint: their old records go."""
        path = self.out_dir / "metrics.jsonl"
        if self.ranks.main and path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)

    def tokens_per_s(self, seconds: float, steps: int) -> tuple[float, float | None]:
        rate = steps * self.cfg.total_batch_tokens / max(seconds, 1e-9)
        return rate, mfu(rate, self.flops_per_token, self.peak, self.ranks.world_size)


    # --- the plan, evaluation, wandb ------------------------------------------------------------------

    def plan(self) -> None:
        cfg, n = self.cfg, self.model.num_params()
        total = cfg.max_steps * cfg.total_batch_tokens
        data = len(self.train) * cfg.model.block_size
        log.info("model %s: %s parameters, %.3f GFLOP per token; %d rank(s) on %s (%s), %d CPU thread(s) "
                 "per rank", cfg.model.name, f"{n:,}", self.flops_per_token / 1e9, self.ranks.world_size,
                 self.device, device_name(self.device), torch.get_num_threads())
        log.info("%s tokens per step = %d rank(s) x %d micro-batch(es) of %d x %d tokens; %d steps = %s "
                 "tokens (%.2f epochs of %s training tokens)", f"{cfg.total_batch_tokens:,}",
                 self.ranks.world_size, self.loader.accumulation, cfg.micro_batch_size, cfg.model.block_size,
                 cfg.max_steps, f"{total:,}", total / data, f"{data:,}")
        memory = step_memory(cfg.model, cfg.micro_batch_size, half_precision=self.autocast_dtype is not None,
                             world_size=self.ranks.world_size)
        log.info("memory per rank (estimate, model/memory.py): %s%s; peak for MFU: %s", memory.describe(),
                 ", torch.compile needs less" if cfg.compile else "",
                 "unknown" if self.peak is None else f"{self.peak / 1e12:.0f} TFLOP/s")
        if self.device.type == "cuda":
            have = torch.cuda.get_device_properties(self.device).total_memory
            if memory.total > 0.95 * have:
                log.warning("the estimate exceeds the %.1f GiB of %s: if the run runs out of memory, lower "
                            "micro_batch_size (gradient accumulation keeps the batch of total_batch_tokens)",
                            have / GIB, device_name(self.device))

    def evaluate(self) -> dict[str, Any]:
        from train import evaluate

        record: dict[str, Any] = {"step": self.step}
        record["val_loss"] = evaluate.val_loss(self.model, self.val, self.val_indices,
                                               self.cfg.micro_batch_size, self.device, self.autocast,
                                               self.ranks.rank, self.ranks.world_size)
        if self.cfg.eval.hellaswag:
            from train import hellaswag

            examples = hellaswag.read_examples(self.cfg.eval.hellaswag, self.cfg.eval.hellaswag_examples)
            with self.autocast():
                scores = hellaswag.evaluate(self.model, examples, self.device, self.ranks.rank,
                                            self.ranks.world_size)
            record["hellaswag_acc_norm"] = scores["acc_norm"]
        if self.ranks.main:
            samples = evaluate.text_samples(self.model, self.cfg.eval.prompts, self.cfg.eval.sample_tokens,
                                            self.cfg.seed)
            with open(self.out_dir / "samples.jsonl", "a") as f:
                for sample in samples:
                    f.write(json.dumps({"step": self.step, **sample}) + "\n")
                    log.info("sample (%s) %r -> %r", sample["kind"], sample["prompt"], sample["text"])
            self.metrics(record)
            evaluate.plot_losses(self.out_dir)
            log.info("step %d: val loss %.4f%s", self.step, record["val_loss"],
                     f", HellaSwag acc_norm {record['hellaswag_acc_norm']:.4f}"
                     if "hellaswag_acc_norm" in record else "")
        return record

    def start_wandb(self) -> Any:
        if not (self.cfg.wandb.enabled and self.ranks.main):
            return None
        import wandb

        self.wandb_id = self.wandb_id or uuid.uuid4().hex[:12]  # kept in checkpoints: a resume continues it
        return wandb.init(project=self.cfg.wandb.project, mode=self.cfg.wandb.mode, dir=str(self.out_dir),
                          id=self.wandb_id, resume="allow", config=to_dict(self.cfg))


def run(cfg: TrainConfig, ranks: Ranks) -> int:
    """Train to ``max_steps`` (or a stop signal); returns the process exit status."""
    out = Path(cfg.out_dir)
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, ranks)
    trainer.forget_metrics_after(trainer.step)
    if ranks.main:
        trainer.plan()
    wandb_run = trainer.start_wandb()
    bar = tqdm(total=cfg.max_steps, initial=trainer.step, unit="step", disable=None if ranks.main else True,
               dynamic_ncols=True)
    busy, timed_from = 0.0, trainer.step  # seconds in steps: evaluation and checkpoints are not counted
    logged = False
    try:
        while trainer.step < cfg.max_steps:
            started = time.perf_counter()
            result = trainer.train_step()  # it reads its loss back: the device keeps no step for later
            busy += time.perf_counter() - started
            bar.update()
            if result["skipped"]:
                check_bad_steps(trainer, result)
            # the first step of a run (or of a resumed one) too: the loss it starts from
            if trainer.step % cfg.log_every_steps == 0 or trainer.step == cfg.max_steps or not logged:
                logged = True
                rate, util = trainer.tokens_per_s(busy, trainer.step - timed_from)
                busy, timed_from = 0.0, trainer.step
                record = {"step": trainer.step, "loss": result["loss"], "lr": result["lr"],
                          "grad_norm": result["grad_norm"], "tokens_per_s": rate, "mfu": util,
                          "tokens": trainer.tokens, "skipped_steps": trainer.bad_total,
                          "loss_scale": result["loss_scale"]}
                trainer.metrics(record)
                bar.set_postfix(loss=f"{result['loss']:.4f}", tok_s=f"{rate:,.0f}")
                if wandb_run is not None:
                    wandb_run.log(record, step=trainer.step)
                if ranks.main:
                    log.info("step %d/%d: loss %.4f, lr %.2e, grad norm %.3f, %s tokens/s, MFU %s",
                             trainer.step, cfg.max_steps, result["loss"], result["lr"], result["grad_norm"],
                             f"{rate:,.0f}", "unknown" if util is None else f"{100 * util:.1f}%")
            if trainer.step % cfg.eval_every_steps == 0 or trainer.step == cfg.max_steps:
                record = trainer.evaluate()
                if wandb_run is not None:
                    wandb_run.log(record, step=trainer.step)
            signum = trainer.stop_signal()
            if trainer.step % cfg.checkpoint_every_steps == 0 or trainer.step == cfg.max_steps or signum:
                trainer.save()
            if signum:
                if ranks.main:
                    log.warning("stopped by %s after step %d; checkpoint written; rerun the same command "
                                "to resume", signal.Signals(signum).name, trainer.step)
                trainer.stop.hand_over(signum)
                return 128 + signum
    finally:
        trainer.stop.restore()
        bar.close()
        if wandb_run is not None:
            wandb_run.finish()
    return 0


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
                            f"{trainer.out_dir / 'checkpoints'} is intact")
