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
                COMPLETE            written last: every other file's size and checksum (``seal``)
            .step_0002000.tmp       a checkpoint being written (``model.base.files.temporary``)
            damaged/step_0003000/   a checkpoint that failed verification, moved aside (never deleted)

The trainer, evaluation, the weights loader, export, sampling and the demo all find a run's files
through these two classes; ``CheckpointFolder.seal`` and ``problems`` write and check the marker.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from model.base.files import CHECKSUM, checksum, is_temporary, temporary

WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model.json"
COMPLETE = "COMPLETE"
_STEP = re.compile(r"step_(\d{7,})$")
T = TypeVar("T")


class Damaged(ValueError):
    """A checkpoint or model file that cannot be used: the message names the file and what is wrong."""


def readable(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)``, with any failure to read the file (torch's, safetensors', json's) turned into
    ``Damaged`` naming the file."""
    try:
        return read(path)
    except Damaged:
        raise
    except Exception as err:  # a damaged file fails in whatever way its reader does
        raise Damaged(f"{path}: cannot be read ({type(err).__name__}: {err})") from err


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

    def is_sealed(self) -> bool:
        """Whether the marker records the files (an older version's marker is empty)."""
        return self.marker.exists() and bool(self.marker.read_text().strip())

    def seal(self) -> None:
        """Write the marker, last: every other file with its size and checksum."""
        files = sorted(p for p in self.path.iterdir() if p.is_file() and p.name != COMPLETE)
        record = {"format": 1, "checksum": CHECKSUM,
                  "files": {p.name: {"bytes": p.stat().st_size, CHECKSUM: checksum(p)} for p in files}}
        self.marker.write_text(json.dumps(record, indent=1) + "\n")

    def problems(self, checksums: bool = True) -> list[str]:
        """What is wrong with this checkpoint, one line per damaged file; [] when it verifies (or,
        for an older version's empty marker, when nothing was recorded to check)."""
        if not self.marker.exists():
            return [f"no {COMPLETE} marker: it was never finished"]
        try:
            text = self.marker.read_text()
            files = json.loads(text)["files"] if text.strip() else {}
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return [f"{COMPLETE}: not a readable record of the files"]
        found = []
        for name, want in files.items():
            path = self.path / name
            if not path.is_file():
                found.append(f"{name}: missing")
            elif (size := path.stat().st_size) != want["bytes"]:
                found.append(f"{name}: {size:,} bytes, {want['bytes']:,} when it was written")
            elif checksums and checksum(path) != want[CHECKSUM]:
                found.append(f"{name}: its {CHECKSUM} differs from when it was written (bytes changed)")
        return found


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

    @property
    def damaged(self) -> Path:
        return self.checkpoints / "damaged"

    def move_aside(self, checkpoint: CheckpointFolder) -> Path:
        """Move a checkpoint that failed verification to ``checkpoints/damaged/`` (kept for a look)."""
        self.damaged.mkdir(parents=True, exist_ok=True)
        target, n = self.damaged / checkpoint.path.name, 1
        while target.exists():
            target, n = self.damaged / f"{checkpoint.path.name}.{n}", n + 1
        os.replace(checkpoint.path, target)
        return target
