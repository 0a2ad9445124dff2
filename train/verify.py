"""``python -m train.verify RUN``: the state of every checkpoint of a run folder.

    python -m train.verify runs/124m
    python -m train.verify runs/124m/checkpoints/step_0001000

Each checkpoint is checked against its ``COMPLETE`` marker (every file there, at the size and the
xxh3-128 checksum it was written with) and read: the safetensors header, every ``.pt`` with
``weights_only=True``. Checkpoints moved aside by a resume (``checkpoints/damaged/``) and unfinished
ones are listed too. Exit status 0 when the newest checkpoint verifies, 1 when it does not (or there
is none), 2 for a path that is not a run or checkpoint folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors import safe_open

from model.base.folders import CheckpointFolder, Damaged, RunFolder, readable
from train.checkpoint import size


def check(folder: CheckpointFolder) -> list[str]:
    """What is wrong with a checkpoint: the marker's record, then whether each file can be read."""
    problems = folder.problems()
    if problems:
        return problems
    readers = {folder.weights: lambda p: safe_open(str(p), framework="pt").keys()}
    readers.update({p: lambda p: torch.load(p, map_location="cpu", weights_only=True)
                    for p in sorted(folder.path.glob("*.pt"))})
    for path, read in readers.items():
        try:
            readable(path, read)
        except Damaged as err:
            problems.append(str(err).removeprefix(f"{folder.path}/"))
    return problems


def describe(folder: CheckpointFolder) -> tuple[bool, str]:
    """Whether ``folder`` verifies, and one line saying so."""
    total = size(sum(p.stat().st_size for p in folder.path.iterdir() if p.is_file()))
    problems = check(folder)
    if problems:
        return False, f"{folder.path.name}  DAMAGED  {total}: " + "; ".join(problems)
    how = "sizes and checksums match" if folder.is_sealed() else "readable (an older marker: no checksums)"
    return True, f"{folder.path.name}  ok       {total}: {how}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = Path(argv[0])
    if CheckpointFolder(path).is_complete():
        ok, line = describe(CheckpointFolder(path))
        print(line)
        return 0 if ok else 1
    run = RunFolder(path)
    if not RunFolder.is_run(path):
        print(f"{path}: not a run folder (no checkpoints/) nor a complete checkpoint", file=sys.stderr)
        return 2
    newest_ok = False
    for step in run.complete_steps():
        newest_ok, line = describe(run.checkpoint(step))
        print(line)
    for partial in run.partial_checkpoints():
        print(f"{partial.name}  unfinished (removed at the next start)")
    for aside in sorted(run.damaged.glob("step_*")) if run.damaged.is_dir() else []:
        print(f"damaged/{aside.name}  moved aside by a resume")
    if not run.complete_steps():
        print(f"{run.checkpoints}: no complete checkpoint")
    return 0 if newest_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
