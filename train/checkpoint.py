"""Complete, atomic checkpoints and auto-resume.

``out_dir/checkpoints/step_NNNNNNN/`` holds everything a run needs to continue exactly:

- ``model.safetensors`` + ``model.json``: the unwrapped model (``model/weights.py``'s format, so
  export and sampling read a checkpoint directly; never a compiled or DDP wrapper's names);
- ``optimizer.pt``: the optimizer's state; ``trainer.pt``: step, tokens seen, the loader's
  (epoch, index), the GradScaler, bad-step counters, the wandb run id;
- ``rng_rank_R.pt``: every RNG of rank R (Python, numpy, torch, CUDA);
- ``config.yaml``: the resolved config; ``COMPLETE``: written last.

Everything is written to a temporary folder, fsynced, then renamed into place: a checkpoint being
written when the process dies is never loaded and never replaces a good one. ``.pt`` files hold
tensors and plain containers only and load with ``weights_only=True``: loading never runs pickled code.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from model import weights
from model.gpt2 import GPT

STEP_DIR = re.compile(r"step_(\d{7,})$")


def step_dir(out_dir: Path, step: int) -> Path:
    return out_dir / "checkpoints" / f"step_{step:07d}"


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


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.iterdir(), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tmp_dir(out_dir: Path, step: int) -> Path:
    """Where all ranks write checkpoint ``step`` before it is renamed into place."""
    return out_dir / "checkpoints" / f".step_{step:07d}.tmp"


def write_rank_state(folder: Path, rank: int) -> None:
    torch.save(rng_state(), folder / f"rng_rank_{rank}.pt")


def write(folder: Path, model: GPT, optimizer: torch.optim.Optimizer, trainer: dict[str, Any],
          config: dict[str, Any]) -> None:
    """Rank 0's part: model, optimizer, trainer state and config into the temporary ``folder``."""
    weights.write_files(model, folder)
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(trainer, folder / "trainer.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def commit(tmp: Path, final: Path) -> None:
    """Make the temporary folder the checkpoint: marker, fsync, rename (rank 0, after a barrier)."""
    (tmp / weights.COMPLETE).write_text("")
    _fsync_tree(tmp)
    if final.exists():  # an earlier attempt at the same step finished: the same contents
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_tree(final.parent)


def prune(out_dir: Path, keep_last: int, keep_every: int | None) -> None:
    """Delete complete checkpoints beyond the ``keep_last`` newest, except every ``keep_every``."""
    steps = sorted(int(m.group(1)) for p in (out_dir / "checkpoints").iterdir()
                   if (m := STEP_DIR.search(p.name)) and (p / weights.COMPLETE).exists())
    for step in steps[:-keep_last]:
        if keep_every is None or step % keep_every:
            shutil.rmtree(step_dir(out_dir, step), ignore_errors=True)


def clean_partial(out_dir: Path) -> None:
    """Remove temporary folders of checkpoints that never completed (rank 0, at start)."""
    folder = out_dir / "checkpoints"
    if folder.is_dir():
        for path in folder.glob(".step_*.tmp"):
            shutil.rmtree(path, ignore_errors=True)


def load_trainer(folder: Path) -> dict[str, Any]:
    return torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True)


def load_optimizer(folder: Path) -> dict[str, Any]:
    return torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)


def load_rank_state(folder: Path, rank: int) -> dict[str, Any] | None:
    path = folder / f"rng_rank_{rank}.pt"
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def saved_config(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "config.yaml").read_text())


# What a resumed run must share with its checkpoint: the network, the data and its order.
MUST_MATCH = ("model", "data", "seed", "total_batch_tokens")


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    from model.base.schema import diff

    return diff({k: saved.get(k) for k in MUST_MATCH}, {k: current.get(k) for k in MUST_MATCH})
