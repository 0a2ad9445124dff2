"""The training loader: every window once per epoch, the same global order for any world size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.base.shards import header
from train.data import TrainLoader, Windows, shard_paths, val_indices

BLOCK = 8


def write_shard(path: Path, tokens: np.ndarray) -> Path:
    with open(path, "wb") as f:
        f.write(header(len(tokens)).tobytes())
        f.write(tokens.astype(np.uint16).tobytes())
    return path


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    """Three shards whose tokens are their global positions (mod 50000), of uneven lengths."""
    paths, start = [], 0
    for i, n in enumerate((81, 65, 100)):
        paths.append(write_shard(tmp_path / f"train_{i:03d}.bin", np.arange(start, start + n) % 50000))
        start += n
    return paths


def test_windows_tile_each_shard(shards):
    windows = Windows.open(shards, BLOCK)
    assert len(windows) == 80 // 8 + 64 // 8 + 99 // 8 == 30
    first = windows.window(0)
    assert len(first) == BLOCK + 1 and first.tolist() == list(range(9))
    assert windows.window(1)[0] == first[-1]  # consecutive windows share one token
    assert windows.window(10).tolist() == list(range(81, 90))  # the second shard starts afresh
    assert windows.window(17).tolist() == list(range(81 + 56, 81 + 65))  # its last window ends it
    x, y = windows.batch(np.array([0, 10]))
    assert x.shape == y.shape == (2, BLOCK) and (y[:, :-1] == x[:, 1:]).all()


@pytest.mark.parametrize("world_size", [1, 2, 3, 6])
def test_an_epoch_visits_every_window_once_for_any_world_size(shards, world_size):
    windows = Windows.open(shards, BLOCK)
    loaders = [TrainLoader(windows, seed=5, global_batch=6, micro_batch=1, rank=r, world_size=world_size)
               for r in range(world_size)]
    seen: list[int] = []
    for _ in range(5):  # 5 global batches of 6: exactly the 30 windows of one epoch
        for loader in loaders:
            for x, _ in loader.next_batch():
                seen.extend(x[:, 0].tolist())
    starts = [int(windows.window(i)[0]) for i in range(len(windows))]
    assert sorted(seen) == sorted(starts), "a window repeated or missed"
    assert all(loader.state_dict() == {"epoch": 1, "index": 0} for loader in loaders)


def test_global_order_is_the_same_for_any_world_size(shards):
    windows = Windows.open(shards, BLOCK)
    reference = TrainLoader(windows, seed=5, global_batch=6, micro_batch=6)
    expected = [reference.next_global_indices().tolist() for _ in range(12)]  # 2 epochs and more
    for world_size, micro in ((2, 3), (3, 1), (6, 1)):
        loaders = [TrainLoader(windows, 5, 6, micro, rank=r, world_size=world_size)
                   for r in range(world_size)]
        for step in range(12):
            parts = [loader.next_batch() for loader in loaders]
            firsts = [int(x[i, 0]) for rank in parts for x, _ in rank for i in range(len(x))]
            assert firsts == [int(windows.window(i)[0]) for i in expected[step]], (world_size, step)


def test_epochs_are_permutations_drawn_from_seed_and_epoch(shards):
    windows = Windows.open(shards, BLOCK)
    loader = TrainLoader(windows, seed=5, global_batch=30, micro_batch=30)
    first, second = loader.next_global_indices(), loader.next_global_indices()
    assert sorted(first) == sorted(second) == list(range(30)) and not np.array_equal(first, second)
    assert loader.state_dict() == {"epoch": 2, "index": 0}
    again = TrainLoader(windows, seed=5, global_batch=30, micro_batch=30)
    assert np.array_equal(again.next_global_indices(), first)
    other = TrainLoader(windows, seed=6, global_batch=30, micro_batch=30)
    assert not np.array_equal(other.next_global_indices(), first)


def test_resume_from_state_continues_the_same_order(shards):
    windows = Windows.open(shards, BLOCK)
    straight = TrainLoader(windows, seed=1, global_batch=4, micro_batch=2)
    expected = [straight.next_global_indices().tolist() for _ in range(20)]
    first = TrainLoader(windows, seed=1, global_batch=4, micro_batch=2, rank=0, world_size=2)
    for _ in range(9):
        first.next_batch()
    state = first.state_dict()
    resumed = TrainLoader(windows, seed=1, global_batch=4, micro_batch=4)  # one rank now
    resumed.load_state_dict(state)
    assert [resumed.next_global_indices().tolist() for _ in range(11)] == expected[9:]


def test_impossible_split_and_bad_state_are_errors(shards):
    windows = Windows.open(shards, BLOCK)
    with pytest.raises(ValueError, match="does not split into micro-batches of 4 on 2 rank"):
        TrainLoader(windows, seed=1, global_batch=6, micro_batch=4, world_size=2)
    loader = TrainLoader(windows, seed=1, global_batch=6, micro_batch=2)
    with pytest.raises(ValueError, match="another data folder"):
        loader.load_state_dict({"epoch": 0, "index": 500})


def test_bad_header_names_the_file(tmp_path):
    good = write_shard(tmp_path / "train_000.bin", np.arange(100))
    bad = tmp_path / "train_001.bin"
    data = bytearray(good.read_bytes())
    data[0] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="train_001.bin: not an llm.c token shard"):
        Windows.open(shard_paths(tmp_path, "train_*.bin"), BLOCK)
    short = tmp_path / "short" / "train_000.bin"
    short.parent.mkdir()
    short.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ValueError, match="header promises"):
        Windows.open([short], BLOCK)
    with pytest.raises(FileNotFoundError, match="no shards match 'val_\\*.bin'"):
        shard_paths(tmp_path, "val_*.bin")


def test_validation_windows_are_fixed(shards):
    windows = Windows.open(shards, BLOCK)
    assert val_indices(windows, tokens=40, block_size=BLOCK).tolist() == [0, 1, 2, 3, 4]
    assert len(val_indices(windows, tokens=10_000, block_size=BLOCK)) == len(windows)
