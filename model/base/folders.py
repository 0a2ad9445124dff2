"""Every folder of a training run, and every file in it, named here and nowhere else.

    <out_dir>/                      a run folder (``RunFolder``)
        metrics.jsonl               one JSON record per logged step and per evaluation
        samples.jsonl               the text samples of each evaluation
        loss.png                    training and validation loss, redrawn at each evaluation
        checkpoints/
            step_0001000/           a checkpoint (``CheckpointFolder``), complete once COMPLETE exists
                model.safetensors   the model (a model folder: weights + model.json, as export writes)
                model.json
                optimizer.pt        the optimizer's state
                trainer.pt          the trainer's resumable state (``Trainer.state_dict``)
                rng_rank_0.pt       every RNG of rank 0, one file per rank
                config.yaml         the run's resolved config
                COMPLETE            written last
            .step_0002000.tmp       a checkpoint being written (``model.base.files.temporary``)

Pure paths, no I/O beyond listing: the trainer, evaluation, the weights loader, export, sampling and
the demo all find a run's files through these two classes.
"""

from __future__ import annotations

import re
from pathlib import Path

from model.base.files import is_temporary, temporary

WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model.json"
COMPLETE = "COMPLETE"
_STEP = re.compile(r"step_(\d{7,})$")


class CheckpointFolder:
    """One checkpoint: a model folder plus what a run needs to continue exactly."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"CheckpointFolder({str(self.path)!r})"

    weights = property(lambda self: self.path / WEIGHTS)
    model_config = property(lambda self: self.path / MODEL_CONFIG)
    optimizer = property(lambda self: self.path / "optimizer.pt")
    trainer = property(lambda self: self.path / "trainer.pt")
    config = property(lambda self: self.path / "config.yaml")
    marker = property(lambda self: self.path / COMPLETE)

    def rng(self, rank: int) -> Path:
        return self.path / f"rng_rank_{rank}.pt"

    def is_complete(self) -> bool:
        return self.marker.exists()


class RunFolder:
    """A training run's ``out_dir``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    metrics = property(lambda self: self.root / "metrics.jsonl")
    samples = property(lambda self: self.root / "samples.jsonl")
    loss_plot = property(lambda self: self.root / "loss.png")
    checkpoints = property(lambda self: self.root / "checkpoints")

    @staticmethod
    def is_run(path: Path) -> bool:
        """Whether ``path`` looks like a run folder (it has ``checkpoints/``)."""
        return RunFolder(path).checkpoints.is_dir()

    def checkpoint(self, step: int) -> CheckpointFolder:
        return CheckpointFolder(self.checkpoints / f"step_{step:07d}")

    def partial_checkpoint(self, step: int) -> CheckpointFolder:
        """Where every rank writes checkpoint ``step`` before it is renamed into place."""
        return CheckpointFolder(temporary(self.checkpoint(step).path, shared=True))

    def partial_checkpoints(self) -> list[Path]:
        """Checkpoints that never completed their rename (a process died while writing)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if is_temporary(p))

    def complete_steps(self) -> list[int]:
        """The steps of the complete checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        steps = (int(m.group(1)) for p in self.checkpoints.iterdir() if (m := _STEP.match(p.name)))
        return sorted(s for s in steps if self.checkpoint(s).is_complete())

    def newest_checkpoint(self) -> CheckpointFolder | None:
        steps = self.complete_steps()
        return self.checkpoint(steps[-1]) if steps else None
