"""Complete, atomic checkpoints and auto-resume: the whole protocol behind ``Checkpointer.save`` and
``Checkpointer.load``.

A checkpoint (``model/base/folders.py`` names its files) holds everything a run needs to continue
exactly: the unwrapped model in ``model/weights.py``'s format (so export and sampling read a
checkpoint directly; never a compiled or DDP wrapper's names), the optimizer's state, the trainer's
resumable state (``Trainer.state_dict``: step, tokens seen, the loader's position, the GradScaler,
bad-step counts, the wandb run id), every RNG of every rank, and the resolved config.

Saving: every rank writes its RNG state into a temporary folder, rank 0 the rest; after a barrier
rank 0 writes the ``COMPLETE`` marker, fsyncs and renames the folder into place, then prunes old
checkpoints. A checkpoint being written when the process dies is never loaded and never replaces a
good one. ``.pt`` files hold tensors and plain containers only and load with ``weights_only=True``:
loading never runs pickled code.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import yaml

from model import weights
from model.base.files import publish, remove
from model.base.folders import CheckpointFolder, RunFolder
from model.base.gate import hold_at_gate
from model.base.schema import diff
from model.gpt2 import GPT
from train.distributed import Ranks
from train.errors import TrainingError

log = logging.getLogger("webtext.train")

# What a resumed run must share with its checkpoint: the network, the data and its order.
MUST_MATCH = ("model", "data", "seed", "total_batch_tokens")


class Resumable(Protocol):
    """What the checkpointer saves and restores: the trainer (``train/loop.py``)."""

    model: GPT
    optimizer: torch.optim.Optimizer
    device: torch.device
    step: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Checkpointer:
    """Saves a run's checkpoints into its run folder and resumes from the newest complete one."""

    def __init__(self, run: RunFolder, ranks: Ranks, config: dict[str, Any], keep_last: int,
                 keep_every: int | None) -> None:
        self.run, self.ranks, self.config = run, ranks, config
        self.keep_last, self.keep_every = keep_last, keep_every

    def save(self, trainer: Resumable) -> Path:
        """Checkpoint ``trainer`` at its step (every rank calls it)."""
        tmp, final = self.run.partial_checkpoint(trainer.step), self.run.checkpoint(trainer.step)
        if self.ranks.main:
            remove(tmp.path)
            tmp.path.mkdir(parents=True)
        self._barrier()
        torch.save(rng_state(), tmp.rng(self.ranks.rank))
        if self.ranks.main:
            weights.write_files(trainer.model, tmp.path)
            torch.save(trainer.optimizer.state_dict(), tmp.optimizer)
            torch.save(trainer.state_dict(), tmp.trainer)
            tmp.config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._barrier()
        if self.ranks.main:
            hold_at_gate("checkpoint", trainer.step)
            tmp.marker.write_text("")
            publish(tmp.path, final.path)
            prune(self.run, self.keep_last, self.keep_every)
        self._barrier()
        return final.path

    def load(self, trainer: Resumable) -> Path | None:
        """Restore ``trainer`` (model, optimizer, state, this rank's RNGs) from the newest complete
        checkpoint, after removing unfinished ones; None where there is none (every rank calls it)."""
        if self.ranks.main:
            for partial in self.run.partial_checkpoints():
                remove(partial)
        self._barrier()
        found = self.run.newest_checkpoint()
        if found is None:
            return None
        changed = diff({k: saved_config(found).get(k) for k in MUST_MATCH},
                       {k: self.config.get(k) for k in MUST_MATCH})
        if changed:
            raise TrainingError(f"{found.path} was made by another run ({'; '.join(changed)}); use "
                                  "another out_dir, or the old values")
        trainer.model.load_state_dict(weights.load(found.path, device=trainer.device).state_dict())
        trainer.optimizer.load_state_dict(_load(found.optimizer))
        trainer.load_state_dict(_load(found.trainer))
        if found.rng(self.ranks.rank).exists():  # a rank the checkpoint lacks keeps its fresh state
            set_rng_state(_load(found.rng(self.ranks.rank)))
        return found.path

    def _barrier(self) -> None:
        if self.ranks.world_size > 1:
            dist.barrier()


def prune(run: RunFolder | Path, keep_last: int, keep_every: int | None) -> None:
    """Delete complete checkpoints beyond the ``keep_last`` newest, except every ``keep_every``."""
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    for step in run.complete_steps()[:-keep_last]:
        if keep_every is None or step % keep_every:
            shutil.rmtree(run.checkpoint(step).path, ignore_errors=True)


def saved_config(folder: CheckpointFolder) -> dict[str, Any]:
    return yaml.safe_load(folder.config.read_text())


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
