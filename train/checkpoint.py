"""Complete, atomic checkpoints and auto-resume: the whole protocol behind ``Checkpointer.save`` and
``Checkpointer.load``.

A checkpoint (``model/base/folders.py`` names its files) holds everything a run needs to continue
exactly: the unwrapped model in ``model/weights.py``'s format (so export and sampling read a
checkpoint directly; never a compiled or DDP wrapper's names; under ``parallel=fsdp`` gathered whole
onto rank 0, ``train/sharding.py``), the optimizer's state (torch's layout, with each group's
parameter names), the trainer's resumable state (``Trainer.state_dict``: step, tokens seen, the
loader's position, the GradScaler, bad-step counts, the wandb run id), every RNG of every rank, and
the resolved config. The format is one for ``ddp`` and ``fsdp`` and any number of ranks: a run
resumes across them.

Saving: every rank writes its RNG state into a temporary folder, rank 0 the rest; after a barrier
rank 0 writes the ``COMPLETE`` marker, fsyncs and renames the folder into place, then prunes old
checkpoints. A checkpoint being written when the process dies is never loaded and never replaces a
good one. ``.pt`` files hold tensors and plain containers only and load with ``weights_only=True``:
loading never runs pickled code.
"""

from __future__ import annotations

import errno
import logging
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import yaml

from model import weights
from model.base.files import publish, remove
from model.base.folders import CheckpointFolder, Damaged, RunFolder, readable
from model.base.gate import hold_at_gate
from model.base.schema import diff
from model.gpt2 import GPT
from train.distributed import Ranks, max_over_ranks
from train.errors import TrainingError

log = logging.getLogger("webtext.train")

# What a resumed run must share with its checkpoint: the network, the data and its order, and the
# optimizer (whose state another cannot load).
MUST_MATCH = ("model", "data", "seed", "total_batch_tokens", "optim.name")


def must_match(config: dict[str, Any]) -> dict[str, Any]:
    """The values of ``MUST_MATCH`` in a config (dotted keys; a checkpoint made before a key existed
    has its default: ``optim.name`` adamw)."""
    defaults = {"optim.name": "adamw"}
    found = {}
    for key in MUST_MATCH:
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[key] = defaults.get(key) if value is None else value
    return found


class Resumable(Protocol):
    """What the checkpointer saves and restores: the trainer (``train/loop.py``)."""

    model: GPT
    optimizer: Any  # train.optim.Optimizers: state_dict, load_state_dict, state
    device: torch.device
    step: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def whole_states(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]: ...

    def load_whole(self, folder: Path, optimizer_state: dict[str, Any]) -> None: ...


class Checkpointer:
    """Saves a run's checkpoints into its run folder and resumes from the newest one that verifies."""

    def __init__(self, run: RunFolder, ranks: Ranks, config: dict[str, Any], keep_last: int,
                 keep_every: int | None) -> None:
        self.run, self.ranks, self.config = run, ranks, config
        self.keep_last, self.keep_every = keep_last, keep_every

    # --- saving -------------------------------------------------------------------------------------

    def save(self, trainer: Resumable) -> Path:
        """Checkpoint ``trainer`` at its step (every rank calls it). A write that fails on any rank
        (a full disk, an I/O error) removes the partial folder and stops the run on every rank; the
        previous checkpoint is untouched."""
        tmp, final = self.run.partial_checkpoint(trainer.step), self.run.checkpoint(trainer.step)
        main = self.ranks.main
        fresh = lambda: (remove(tmp.path), tmp.path.mkdir(parents=True))  # noqa: E731
        self._together(trainer, tmp, fresh if main else None)
        # every rank, outside _together: a gather that fails on one rank (out of memory) must crash the
        # job, not send that rank to _together's all-reduce while the others still gather
        states = trainer.whole_states()  # a sharded model gathered onto rank 0's host
        self._together(trainer, tmp, lambda: self._write(trainer, tmp, *states))  # every rank: its RNGs
        if main:
            hold_at_gate("checkpoint", trainer.step)
        self._together(trainer, tmp, (lambda: (tmp.seal(), publish(tmp.path, final.path))) if main else None)
        problems = final.problems(checksums=False) if main else []  # as sealed: the sizes suffice
        if _any_rank(bool(problems), self.ranks, trainer.device):
            aside = self.run.move_aside(final) if main else None
            raise TrainingError(
                f"checkpoint step {trainer.step} does not verify right after writing "
                f"({'; '.join(problems) or 'see rank 0'}): moved to {aside}; the disk under {self.run.root} "
                f"loses writes; {self._previous(trainer.step)} and nothing was pruned; rerun the same "
                "command to resume from it")
        if main:  # only now that the new checkpoint verifies may older ones go
            prune(self.run, self.keep_last, self.keep_every)
        self._barrier()
        return final.path

    def _write(self, trainer: Resumable, tmp: CheckpointFolder, model: dict[str, Any] | None,
               optimizer: dict[str, Any] | None) -> None:
        torch.save(rng_state(), tmp.rng(self.ranks.rank))
        if self.ranks.main:
            weights.write_state(model, trainer.model.config, tmp.path)
            torch.save(optimizer, tmp.optimizer)
            torch.save(trainer.state_dict(), tmp.trainer)
            tmp.config.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def _together(self, trainer: Resumable, tmp: CheckpointFolder, work: Callable[[], Any] | None) -> None:
        """Run this rank's part of a save; if any rank's part failed, every rank stops."""
        error: Exception | None = None
        try:
            if work is not None:
                work()
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
            error = err
        if not _any_rank(error is not None, self.ranks, trainer.device):
            return
        if self.ranks.main:
            remove(tmp.path)
        needed, usage = checkpoint_bytes(trainer), shutil.disk_usage(self.run.root)
        cause = _cause(error, needed, usage.free)
        raise TrainingError(
            f"checkpoint step {trainer.step} could not be written to {tmp.path} ({cause}); it needs about "
            f"{size(needed)}, {size(usage.free)} are free of {size(usage.total)}; the "
            f"partial folder is removed and {self._previous(trainer.step)}; free space and rerun the same "
            "command to resume") from error

    def _previous(self, step: int) -> str:
        older = [s for s in self.run.complete_steps() if s < step]
        return f"checkpoint step {older[-1]} is intact" if older else "no earlier checkpoint exists"

    # --- resuming -----------------------------------------------------------------------------------

    def load(self, trainer: Resumable) -> Path | None:
        """Restore ``trainer`` (model, optimizer, state, this rank's RNGs) from the newest checkpoint
        that verifies, after removing unfinished ones; None where there is none (every rank calls it).

        Rank 0 verifies (sizes and checksums) and every rank loads the checkpoint it chose; one that
        fails either way is moved to ``checkpoints/damaged/`` and the next older one is tried."""
        if self.ranks.main:
            for partial in self.run.partial_checkpoints():
                remove(partial)
        self._barrier()
        newest = (self.run.complete_steps() or [None])[-1]
        while True:
            step = self._choose(trainer)
            if step is None:
                break
            found = self.run.checkpoint(step)
            self._check_config(found)
            error = self._restore(found, trainer)
            if not _any_rank(error is not None, self.ranks, trainer.device):
                if self.ranks.main and step != newest:
                    log.warning("resuming from step %d: steps %d to %d are trained again", step, step + 1,
                                newest)
                return found.path
            if self.ranks.main:
                self._set_aside(found, [str(error) if error else "another rank could not read it"])
        self._barrier()
        if newest is not None and not self.run.complete_steps():
            raise TrainingError(f"no checkpoint in {self.run.checkpoints} verifies (each was moved to "
                                f"{self.run.damaged}); nothing to resume from: use another out_dir to start "
                                "afresh, or move a checkpoint back if you know it is good")
        return None

    def _choose(self, trainer: Resumable) -> int | None:
        """The newest complete checkpoint that verifies, by rank 0; the damaged ones go aside. Every
        rank gets rank 0's choice."""
        choice = -1
        if self.ranks.main:
            for step in reversed(self.run.complete_steps()):
                problems = self.run.checkpoint(step).problems()
                if not problems:
                    choice = step
                    break
                self._set_aside(self.run.checkpoint(step), problems)
        if self.ranks.world_size > 1:
            flag = torch.tensor(choice, device=trainer.device)
            dist.broadcast(flag, src=0)
            choice = int(flag.item())
        return None if choice < 0 else choice

    def _set_aside(self, found: CheckpointFolder, problems: list[str]) -> None:
        aside = self.run.move_aside(found)
        log.error("checkpoint %s is damaged: %s; moved to %s", found.path, "; ".join(problems), aside)

    def _check_config(self, found: CheckpointFolder) -> None:
        changed = diff(must_match(saved_config(found)), must_match(self.config))
        if changed:
            raise TrainingError(f"{found.path} was made by another run ({'; '.join(changed)}); use "
                                "another out_dir, or the old values")

    def _restore(self, found: CheckpointFolder, trainer: Resumable) -> Damaged | None:
        """Load ``found`` into ``trainer``; the damage that stopped it, if any."""
        try:
            trainer.load_whole(found.path, readable(found.optimizer, _load))
            trainer.load_state_dict(readable(found.trainer, _load))
            if found.rng(self.ranks.rank).exists():  # a rank the checkpoint lacks keeps its fresh state
                set_rng_state(readable(found.rng(self.ranks.rank), _load))
        except Damaged as err:
            return err
        return None

    def _barrier(self) -> None:
        if self.ranks.world_size > 1:
            dist.barrier()


def _any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (every rank calls it)."""
    return bool(max_over_ranks(int(flag), ranks, device))


def checkpoint_bytes(trainer: Resumable) -> int:
    """About what one checkpoint of ``trainer`` takes on disk: weights and optimizer state."""
    tensors = list(weights.tied_once(trainer.model.state_dict()).values())
    tensors += [t for state in trainer.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    if not trainer.optimizer.state:  # before the first step: AdamW's two moments, not made yet
        tensors += [p for p in trainer.model.parameters()] * 2
    return sum(t.numel() * t.element_size() for t in tensors)


def _cause(error: Exception | None, needed: int, free: int) -> str:
    if error is None:
        return "another rank could not write its part"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if not isinstance(error, OSError) and free < needed:  # torch.save's own words for it are not these
        said = (str(error).splitlines() or [""])[0][:80]
        return f"no space left on device; torch said {type(error).__name__}: {said}"
    return f"{type(error).__name__}: {error}"


def size(n: float) -> str:
    """Bytes for people: ``1.49 GB``, ``1.6 MB``, ``812 KB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{n / 1e3:.0f} KB"


def prune(run: RunFolder | Path, keep_last: int, keep_every: int | None) -> None:
    """Delete complete checkpoints beyond the ``keep_last`` newest, except every ``keep_every``."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    for step in run.complete_steps()[:-keep_last]:
        if keep_every is None or step % keep_every:
            shutil.rmtree(run.checkpoint(step).path, ignore_errors=True)


def saved_config(folder: CheckpointFolder) -> dict[str, Any]:
    return readable(folder.config, lambda p: yaml.safe_load(p.read_text()))


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
