"""Restart cost of checkpoint verification: our ``CheckpointFolder.problems()`` (sizes and xxh3-128
of every file against the marker) beside the baseline every restart pays anyway, reading the same
bytes once (``cat`` into /dev/null: what loading them costs at the least).

    python bench/checkpoint.py [--models gpt2 gpt2-xl] [--folder DIR] [--cold]

For each model, a checkpoint of its real sizes is written into ``--folder`` (default: a temporary
folder on this machine's disk): ``model.safetensors`` 4 bytes per stored parameter, ``optimizer.pt``
8 (AdamW's two fp32 moments), ``trainer.pt``, one ``rng_rank_0.pt``, ``config.yaml``; synthetic
bytes (random, so no filesystem compresses them). It is sealed as the trainer seals one
(``CheckpointFolder.seal``: the checksums of what was just written), then read by the baseline and
verified by ours, in turns, twice. ``--cold`` drops the page cache before each read (root only:
``/proc/sys/vm/drop_caches``), so both read from the disk, as the first restart on a fresh node does;
without it both read from memory, as a restart on the same node does.

Prints, per model: the checkpoint's size, seal seconds, and for each pass the baseline's and our
seconds, seconds per GB, and ours as a multiple of the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from model.base.folders import CheckpointFolder  # noqa: E402
from model.config import GPTConfig  # noqa: E402
from model.memory import stored_params  # noqa: E402
from train.config import compose  # noqa: E402

CHUNK = 64 << 20


def write_random(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, CHUNK)])
            block = block[1:] + block[:1]  # each chunk differs from the last
            left -= CHUNK
        f.flush()
        os.fsync(f.fileno())


def make_checkpoint(folder: Path, cfg: GPTConfig) -> CheckpointFolder:
    params = stored_params(cfg)
    ckpt = CheckpointFolder(folder)
    folder.mkdir(parents=True)
    for name, size in (("model.safetensors", 4 * params), ("optimizer.pt", 8 * params), ("trainer.pt", 2_000),
                       ("rng_rank_0.pt", 16_000), ("config.yaml", 3_000), ("model.json", 300)):
        write_random(folder / name, size)
    return ckpt


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(fn, cold: bool) -> float:
    if cold:
        drop_caches()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, folder: Path, cold: bool) -> None:
    ckpt = make_checkpoint(folder, compose([f"model={name}", "data.dir=unused"]).model)
    gb = sum(p.stat().st_size for p in ckpt.path.iterdir()) / 1e9
    seal = timed(ckpt.seal, cold=False)
    print(f"{name}: checkpoint {gb:.2f} GB, sealed in {seal:.1f} s ({seal / gb:.2f} s/GB, from the page "
          "cache, as right after writing)")
    files = [str(p) for p in sorted(ckpt.path.iterdir())]
    for n in range(2):
        base = timed(lambda: subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True), cold)
        problems: list[str] = []
        ours = timed(lambda: problems.extend(ckpt.problems()), cold)  # noqa: B023 (called at once)
        assert not problems, problems
        print(f"  pass {n + 1} ({'cold' if cold else 'warm'}): read only (cat) {base:.1f} s ({base / gb:.2f} "
              f"s/GB); verify {ours:.1f} s ({ours / gb:.2f} s/GB); ours / read {ours / base:.2f}x")
    shutil.rmtree(ckpt.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gpt2", "gpt2-xl"])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=args.folder))
    try:
        for name in args.models:
            measure(name, root / name, args.cold)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
