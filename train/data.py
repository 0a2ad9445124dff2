"""llm.c token shards -> training batches, in an order that depends on (seed, epoch) alone.

A sample is a window of ``block_size + 1`` tokens (inputs and the targets shifted by one): window
``w`` of a shard starts at token ``w * block_size``, so consecutive windows share one token, as in
llm.c and nanoGPT. Windows never cross a shard boundary. Each epoch visits every window of every
training shard once, in a permutation drawn from (seed, epoch): sampling without replacement.

Global batch ``s`` is the slice ``[s * B, (s + 1) * B)`` of that endless order (epoch after epoch),
``B = total_batch_tokens / block_size`` samples; rank ``r`` of ``W`` takes the ``r``-th of ``W`` equal
parts of it, micro-batch after micro-batch. So the global order does not depend on the number of
ranks, and the loader's whole state is the position of the next global batch: ``(epoch, index)``.
A run resumed from that state, on any number of ranks, sees exactly the batches an uninterrupted
run would have seen.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.base.shards import read_shard
from train.config import TrainConfig


def shard_paths(folder: str | Path, pattern: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(str(Path(folder) / pattern)))
    if not paths:
        raise FileNotFoundError(f"no shards match {pattern!r} in {folder}")
    return paths


class Windows:
    """The windows of ``block_size + 1`` tokens of a list of shards, addressed by one global index."""

    def __init__(self, shards: list[np.ndarray], block_size: int, source: str) -> None:
        self.shards, self.block_size = shards, block_size
        counts = [max(0, (len(s) - 1) // block_size) for s in shards]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self.starts[-1] == 0:
            raise ValueError(f"{source}: shards too small for one window of {block_size + 1} tokens")

    @classmethod
    def open(cls, paths: list[Path], block_size: int) -> Windows:
        """The shards at ``paths``, memory-mapped (headers checked, names in errors)."""
        return cls([read_shard(p) for p in paths], block_size, str(paths[0].parent))

    def __len__(self) -> int:
        return int(self.starts[-1])

    def window(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        offset = (index - int(self.starts[shard])) * self.block_size
        return self.shards[shard][offset: offset + self.block_size + 1]

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (len(indices), block_size), int64."""
        rows = np.stack([self.window(int(i)) for i in indices]).astype(np.int64)
        data = torch.from_numpy(rows)
        return data[:, :-1], data[:, 1:]


@dataclass
class LoaderState:
    epoch: int = 0
    index: int = 0  # position of the next global batch in this epoch's order


class TrainLoader:
    """This rank's micro-batches of each global batch, in the (seed, epoch) order of all windows."""

    def __init__(self, windows: Windows, seed: int, global_batch: int, micro_batch: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if global_batch % (micro_batch * world_size):
            raise ValueError(f"a global batch of {global_batch} samples does not split into micro-batches "
                             f"of {micro_batch} on {world_size} rank(s)")
        self.windows, self.seed = windows, seed
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.rank, self.world_size = rank, world_size
        self.accumulation = global_batch // (micro_batch * world_size)
        self.state = LoaderState()
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of all windows for ``epoch``: a function of (seed, epoch) alone."""
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = (epoch, rng.permutation(len(self.windows)))
        return self._order[1]

    def next_global_indices(self) -> np.ndarray:
        """The window indices of the next global batch (all ranks), advancing the state."""
        taken: list[np.ndarray] = []
        need = self.global_batch
        while need:
            order = self.order(self.state.epoch)
            part = order[self.state.index: self.state.index + need]
            taken.append(part)
            need -= len(part)
            self.state.index += len(part)
            if self.state.index == len(order):
                self.state = LoaderState(self.state.epoch + 1, 0)
        return np.concatenate(taken)

    def next_batch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``accumulation`` micro-batches of the next global batch."""
        indices = self.next_global_indices()
        per_rank = self.global_batch // self.world_size
        mine = indices[self.rank * per_rank: (self.rank + 1) * per_rank]
        return [self.windows.batch(mine[m * self.micro_batch: (m + 1) * self.micro_batch])
                for m in range(self.accumulation)]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "index": self.state.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if not 0 <= state["index"] < len(self.windows):
            raise ValueError(f"loader state {state} does not fit {len(self.windows)} windows: "
                             "another data folder?")
        self.state = LoaderState(int(state["epoch"]), int(state["index"]))


def val_indices(windows: Windows, tokens: int, block_size: int) -> np.ndarray:
    """The fixed validation windows: the first ``tokens / block_size`` (at most all), in order."""
    return np.arange(min(len(windows), max(1, tokens // block_size)))


@dataclass
class TrainData:
    """A run's data on one rank: the training windows and this rank's loader over them, the fixed
    validation windows."""

    train: Windows
    val: Windows
    loader: TrainLoader
    val_indices: np.ndarray

    @classmethod
    def open(cls, cfg: TrainConfig, rank: int, world_size: int) -> TrainData:
        block = cfg.model.block_size
        train = Windows.open(shard_paths(cfg.data.dir, cfg.data.train_pattern), block)
        val = Windows.open(shard_paths(cfg.data.dir, cfg.data.val_pattern), block)
        loader = TrainLoader(train, cfg.seed, cfg.total_batch_tokens // block, cfg.micro_batch_size, rank,
                             world_size)
        return cls(train, val, loader, val_indices(val, cfg.eval_tokens, block))
