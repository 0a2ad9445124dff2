"""What a run reports: training records at their cadence, evaluation records, the progress bar,
``metrics.jsonl`` and ``loss.png`` (rank 0), and wandb (rank 0, where enabled).

Tokens/s and MFU of a record cover the training steps since the previous record, their own seconds
only: evaluation and checkpoints are not counted. A resumed run redoes the steps after its
checkpoint, so their old records are dropped when the logger starts.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model.base.files import atomic_path, atomic_write
from model.base.folders import RunFolder
from model.base.schema import to_dict
from model.flops import mfu
from train.config import TrainConfig
from train.distributed import Ranks

log = logging.getLogger("webtext.train")


class NoWandb:
    """Where wandb is off (or on ranks other than 0): records go nowhere."""

    def log(self, record: dict[str, Any], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


def open_wandb(cfg: TrainConfig, run: RunFolder, ranks: Ranks, run_id: str | None) -> tuple[Any, str | None]:
    """wandb's run (resuming ``run_id``, kept in checkpoints) or a ``NoWandb``, and the id to keep."""
    if not (cfg.wandb.enabled and ranks.main):
        return NoWandb(), run_id
    import wandb

    run_id = run_id or uuid.uuid4().hex[:12]
    tracker = wandb.init(project=cfg.wandb.project, mode=cfg.wandb.mode, dir=str(run.root), id=run_id,
                         resume="allow", config=to_dict(cfg))
    return tracker, run_id


class MetricsLogger:
    """Rank 0 writes; every rank keeps time, so any rank can be asked."""

    def __init__(self, run: RunFolder, cfg: TrainConfig, ranks: Ranks, flops_per_token: float,
                 peak: float | None, tracker: Any) -> None:
        self.run, self.cfg, self.ranks, self.tracker = run, cfg, ranks, tracker
        self.flops_per_token, self.peak = flops_per_token, peak
        self.bar: tqdm | None = None
        self.busy, self.timed_from, self.logged = 0.0, 0, False

    def start(self, step: int) -> None:
        """Begin at ``step`` (0, or the checkpoint's): records after it go, the bar starts there."""
        if self.ranks.main and self.run.metrics.exists():
            lines = self.run.metrics.read_text().splitlines()
            kept = [line for line in lines if json.loads(line)["step"] <= step]
            atomic_write(self.run.metrics, "".join(line + "\n" for line in kept))
        self.bar = tqdm(total=self.cfg.max_steps, initial=step, unit="step", dynamic_ncols=True,
                        disable=None if self.ranks.main else True)
        self.timed_from = step

    def timed(self, train_step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one training step, counting its seconds."""
        started = time.perf_counter()
        result = train_step()  # it reads its loss back: the device keeps no step for later
        self.busy += time.perf_counter() - started
        if self.bar is not None:
            self.bar.update()
        return result

    def training(self, step: int, tokens: int, skipped_steps: int, result: dict[str, Any],
                 last: bool) -> None:
        """The record of step ``step``, when due: every ``log_every_steps``, the last step, and the
        first step of a run (or of a resumed one: the loss it starts from)."""
        if not (step % self.cfg.log_every_steps == 0 or last or not self.logged):
            return
        self.logged = True
        rate = (step - self.timed_from) * self.cfg.total_batch_tokens / max(self.busy, 1e-9)
        util = mfu(rate, self.flops_per_token, self.peak, self.ranks.world_size)
        self.busy, self.timed_from = 0.0, step
        record = {"step": step, "loss": result["loss"], "lr": result["lr"], "grad_norm": result["grad_norm"],
                  "tokens_per_s": rate, "mfu": util, "tokens": tokens, "skipped_steps": skipped_steps,
                  "loss_scale": result["loss_scale"], "optimizer": self.cfg.optim.name}
        self._write(record)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{result['loss']:.4f}", tok_s=f"{rate:,.0f}")
        if self.ranks.main:
            log.info("step %d/%d: loss %.4f, lr %.2e, grad norm %.3f, %s tokens/s, MFU %s", step,
                     self.cfg.max_steps, result["loss"], result["lr"], result["grad_norm"], f"{rate:,.0f}",
                     "unknown" if util is None else f"{100 * util:.1f}%")

    def evaluation(self, record: dict[str, Any]) -> None:
        """An evaluation's record; the loss plot is redrawn with it."""
        self._write(record)
        if self.ranks.main:
            plot_losses(self.run)
            log.info("step %d: val loss %.4f%s", record["step"], record["val_loss"],
                     f", HellaSwag acc_norm {record['hellaswag_acc_norm']:.4f}"
                     if "hellaswag_acc_norm" in record else "")

    def samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """An evaluation's text samples, into ``samples.jsonl`` and the log."""
        if not self.ranks.main:
            return
        with open(self.run.samples, "a") as f:
            for sample in samples:
                f.write(json.dumps({"step": step, **sample}) + "\n")
                log.info("sample (%s) %r -> %r", sample["kind"], sample["prompt"], sample["text"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.tracker.finish()

    def _write(self, record: dict[str, Any]) -> None:
        if self.ranks.main:
            with open(self.run.metrics, "a") as f:
                f.write(json.dumps(record) + "\n")
        self.tracker.log(record, step=record["step"])


def plot_losses(run: RunFolder | Path) -> Path | None:
    """``loss.png`` from ``metrics.jsonl``: training loss per logged step and validation loss.

    The legend sits outside the axes, to their right, so it never covers a curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = run if isinstance(run, RunFolder) else RunFolder(run)
    if not run.metrics.exists():
        return None
    records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val, strict=True), label="validation", marker="o")
    ax.set_title(f"Training and validation loss: {run.root.name}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    with atomic_path(run.loss_plot) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return run.loss_plot
