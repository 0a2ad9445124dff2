"""What a checkpoint costs under ``parallel=fsdp``: gathering the sharded model and AdamW state whole
onto rank 0's host, ours (``train.sharding.gathered``, the trainer's save) beside torch's own full
state dict (``torch.distributed.checkpoint.state_dict``: ``get_model_state_dict`` and
``get_optimizer_state_dict`` with ``full_state_dict=True, cpu_offload=True``, torchtitan's export).

    python bench/gather.py [--models gpt2] [--ranks 2] [--repeat 2]

It starts itself under torchrun (``--ranks`` processes, gloo on CPU, NCCL where each rank has a GPU).
Per model: built, sharded (``train.sharding.shard``), AdamW's state made by one step on zero
gradients, then each gather ``--repeat`` times in turns, every rank timed between barriers. Both
give rank 0 the same tensors (checked). Prints per model the bytes gathered, our seconds and
torch's, ours as a multiple of torch's, and rank 0's host memory peak (ru_maxrss) over the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

GB = 1e9


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gpt2"], help="configs of conf/model/")
    parser.add_argument("--ranks", type=int, default=2, help="processes to shard over")
    parser.add_argument("--repeat", type=int, default=2, help="timed gathers of each kind")
    return parser.parse_args()


def timed(fn) -> tuple[float, object]:
    import torch.distributed as dist

    dist.barrier()
    start = time.perf_counter()
    result = fn()
    dist.barrier()
    return time.perf_counter() - start, result


def bench(name: str, repeat: int) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    from model.gpt2 import GPT
    from model.weights import tied_once
    from train.preflight import recipe
    from train.sharding import gathered, shard

    rank = dist.get_rank()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    cfg = recipe(name)
    torch.manual_seed(0)
    model = GPT(cfg.model)
    shard(model, device, None)
    optimizer = torch.optim.AdamW(list(model.named_parameters()), lr=1e-4, fused=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # AdamW's two moments exist now
    keep = rank == 0

    def ours():
        state = tied_once(model.state_dict())
        return gathered(state, keep), gathered(optimizer.state_dict(), keep)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)

    def theirs():
        return (get_model_state_dict(model, options=options),
                get_optimizer_state_dict(model, optimizer, options=options))

    times: dict[str, list[float]] = {"ours": [], "torch": []}
    for _ in range(repeat):
        seconds, mine = timed(ours)
        times["ours"].append(seconds)
        seconds, torch_ = timed(theirs)
        times["torch"].append(seconds)
    if keep:
        weights, _ = mine
        assert all(torch.equal(weights[k], torch_[0][k]) for k in weights), "the gathers differ"
        size = sum(t.numel() * t.element_size() for t in weights.values())
        size += sum(t.numel() * t.element_size() for s in mine[1]["state"].values() for t in s.values()
                    if torch.is_tensor(t))
        best = {k: min(v) for k, v in times.items()}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"{name}: {size / GB:.2f} GB gathered onto rank 0 over {dist.get_world_size()} ranks "
              f"({'cuda' if cuda else 'cpu'}): ours {best['ours']:.2f} s "
              f"({size / GB / best['ours']:.2f} GB/s), torch's full state dict {best['torch']:.2f} s; "
              f"ours / torch = {best['ours'] / best['torch']:.2f}x; rank 0's host peak {peak / GB:.1f} GB",
              flush=True)


def main() -> None:
    args = arguments()
    if "LOCAL_RANK" not in os.environ:  # start under torchrun, this script again
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={args.ranks}", __file__, *sys.argv[1:]]
        sys.exit(subprocess.run(command, cwd=ROOT).returncode)
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        for name in args.models:
            bench(name, args.repeat)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
