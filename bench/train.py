"""Training throughput: our ``Trainer.train_step`` beside a plain loop over transformers' ``GPT2LMHeadModel``.

    python bench/train.py [--model gpt2-mini] [--block-size 256] [--micro-batch 4] [--accum 1] [--steps 10]
                          [--warmup 2] [--device cpu] [--compile both|on|off]

Data: llm.c shards made here in a temporary folder (header from ``model.base.shards.header``, uint16
tokens): a few hundred random "sentences" of GPT-2 token ids (the full 50,257-token vocabulary, so
the whole embedding is used), each ending in ``<|endoftext|>``, repeated in random order: learnable,
so the loss falls within a few steps.

Both sides train the same network (``--model`` with ``block_size`` set to ``--block-size``) from the
same initial weights: ours as ``Trainer`` draws them (GPT-2's N(0, 0.02) with the residual
projections scaled by 1/sqrt(2 n_layer), which is also what transformers' ``_init_weights`` draws),
copied into ``GPT2LMHeadModel`` through ``model.hf.to_hf_state_dict``. Both see the same batches in
the same order (each from its own ``train.data.TrainLoader`` with the same seed over the same
shards), ``--micro-batch`` sequences per forward, ``--accum`` micro-batches per optimizer step:

- ours: a validated ``TrainConfig`` (AdamW lr 6e-4, betas (0.9, 0.95), weight decay 0.1 on matrices,
  grad clip 1.0, linear lr warmup over the ``--warmup`` untimed steps, then cosine decay over a
  100,000-step run, i.e. practically constant; fp32 on CPU, bf16 autocast on CUDA; no checkpoint or
  log during timing) and ``train.loop.build(cfg, Ranks()).train_step()``; compile off, on, or both;
- transformers: ``GPT2LMHeadModel`` (``gelu_new``, dropout 0, SDPA attention where available),
  ``torch.optim.AdamW`` with the same settings (decay on 2-D parameters only, the lr of each step from
  ``train.optim.lr_at``) as a plain loop writes it: torch's default implementation, ``fused=True`` on
  CUDA (as nanoGPT); a hand-written loop: forward on inputs x (B, T), mean cross-entropy of the
  logits against our targets y (x shifted by one, so the same objective; not ``labels=``, which
  shifts again), loss divided by the accumulation, backward, clip 1.0, step,
  ``zero_grad(set_to_none=True)``; under ``torch.autocast`` bf16 on CUDA.

Each run does ``--warmup`` untimed steps (compilation, allocator warm-up), then ``--steps`` timed steps,
data loading included on both sides; tokens/s = steps x tokens per step / seconds. All runs live in
this one process and their timed steps are interleaved (one step of each in turn, the order rotating
every round), so load from other processes on a shared machine slows them alike. MFU uses
``model.flops.flops_per_token`` at ``--block-size``; the peak is, on CPU, this machine's own fp32
matmul rate (best of ten 2048 x 2048 x 2048 products, measured here with the same threads), on
CUDA ``model.flops.peak_flops`` for bf16. The loss is the mean training loss of the last step
(step ``warmup + steps``), the same step on both sides.

Prints a header, one line per run, then ours (the best of compile on/off) as a multiple of the
transformers loop's tokens/s and the two losses. In the table of ``bench/run.py``: ours with compile
off (and on, with ``--full``) beside the transformers loop at the defaults, on CPU, 3 timed steps a
run (10 with ``--full``); issue 12's goal: >= 1.1x.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.measure import Measure
from model.base.schema import validate
from model.base.shards import header
from model.config import GPTConfig
from model.flops import device_name, flops_per_token, mfu, peak_flops
from model.gpt2 import GPT
from model.hf import hf_config, to_hf_state_dict
from tests.test_model_config import model_config
from train.config import DataConfig, OptimConfig, TrainConfig
from train.data import TrainLoader, Windows, shard_paths
from train.distributed import Ranks
from train.loop import build
from train.optim import lr_at

SEED = 1337
EOT = 50256
RUN_STEPS = 100_000  # max_steps: the cosine decay barely moves over a benchmark's steps


def write_shard(path: Path, tokens: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(header(len(tokens)).tobytes())
        f.write(tokens.astype(np.uint16).tobytes())


def make_data(folder: Path, min_tokens: int, seed: int = 0) -> None:
    """Train and val shards of random sentences (8 to 64 tokens and ``<|endoftext|>``), repeated."""
    rng = np.random.default_rng(seed)
    sentences = [np.append(rng.integers(0, EOT, rng.integers(8, 65)), EOT) for _ in range(300)]
    for name, tokens in (("train_000.bin", max(min_tokens, 200_000)), ("val_000.bin", 20_000)):
        parts, n = [], 0
        while n < tokens:
            s = sentences[rng.integers(len(sentences))]
            parts.append(s)
            n += len(s)
        write_shard(folder / name, np.concatenate(parts)[:tokens])


def train_config(args: argparse.Namespace, model: GPTConfig, data: Path, out: Path,
                 compile_: bool) -> TrainConfig:
    cfg = TrainConfig(
        model=model, data=DataConfig(dir=str(data)),
        optim=OptimConfig(max_lr=6e-4, warmup_steps=args.warmup, weight_decay=0.1, beta1=0.9, beta2=0.95,
                          grad_clip=1.0),
        out_dir=str(out), seed=SEED, micro_batch_size=args.micro_batch,
        total_batch_tokens=args.micro_batch * args.block_size * args.accum, max_steps=RUN_STEPS,
        eval_every_steps=RUN_STEPS, checkpoint_every_steps=RUN_STEPS, log_every_steps=RUN_STEPS,
        device=args.device, dtype="bfloat16" if args.device.startswith("cuda") else "float32",
        compile=compile_,
    )
    validate(cfg)
    return cfg


Step = Callable[[], float]  # one optimizer step; returns its mean training loss


@dataclass
class Run:
    name: str
    step: Step
    seconds: float = 0.0
    loss: float = float("nan")
    error: str | None = None


def ours(cfg: TrainConfig) -> Step:
    trainer = build(cfg, Ranks())
    return lambda: trainer.train_step()["loss"]


def transformers_loop(cfg: TrainConfig) -> tuple[Step, str]:
    """A plain training step over ``GPT2LMHeadModel`` with our initial weights; and its attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    device = torch.device(cfg.device)
    try:
        model = GPT2LMHeadModel(GPT2Config(**hf_config(cfg.model), attn_implementation="sdpa"))
    except (ValueError, ImportError):  # SDPA not supported here: transformers' default attention
        model = GPT2LMHeadModel(GPT2Config(**hf_config(cfg.model)))
    torch.manual_seed(cfg.seed)  # as Trainer: the same draw gives the same initial weights
    missing, unexpected = model.load_state_dict(to_hf_state_dict(GPT(cfg.model)), strict=False)
    if unexpected or any(k != "lm_head.weight" and not k.endswith((".attn.bias", ".attn.masked_bias"))
                         for k in missing):
        raise RuntimeError(f"weights do not map onto GPT2LMHeadModel: missing {missing}, "
                           f"unexpected {unexpected}")
    assert model.lm_head.weight is model.transformer.wte.weight, "embeddings not tied"
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.optim.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.max_lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                                  eps=1e-8, fused=device.type == "cuda")
    block = cfg.model.block_size
    loader = TrainLoader(Windows.open(shard_paths(cfg.data.dir, cfg.data.train_pattern), block), cfg.seed,
                         cfg.total_batch_tokens // block, cfg.micro_batch_size)
    cuda = device.type == "cuda"
    step_no = 0

    def step() -> float:
        nonlocal step_no
        micro = loader.next_batch()
        total = torch.zeros((), device=device)
        for x, y in micro:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(input_ids=x, use_cache=False).logits  # (B, T, V): x's next tokens
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()) / len(micro)
            total += loss.detach()
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step_no, cfg)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_no += 1
        return total.item()

    return step, model.config._attn_implementation


def call(run: Run, fallible: bool) -> float:
    """One step of ``run``, in seconds; a fallible run (compile on) that raises is marked failed."""
    start = time.perf_counter()
    try:
        run.loss = run.step()
    except Exception as err:  # torch.compile needs a working toolchain: report and go on without it
        if not fallible:
            raise
        run.error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
    return time.perf_counter() - start


def measure(runs: list[Run], warmup: int, steps: int, sync: Callable[[], None]) -> None:
    """``warmup`` untimed steps of each run, then ``steps`` timed ones, interleaved round by round
    (the order rotating), so that load from other processes falls on every run alike."""
    for run in runs:
        for _ in range(warmup):
            if run.error is None:
                call(run, run.name.endswith("compile on"))
    for i in range(steps):
        for run in runs[i % len(runs):] + runs[: i % len(runs)]:
            if run.error is None:
                sync()
                run.seconds += call(run, run.name.endswith("compile on"))
                sync()


def cpu_peak_flops(n: int = 2048, repeat: int = 10) -> float:
    """This machine's fp32 matmul rate with torch's current threads: the best of ``repeat`` products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-mini")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", choices=("both", "on", "off"), default="both")
    return parser.parse_args(argv)


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    """Ours beside the transformers loop at the defaults (``gpt2-mini``, block 256, micro-batch 4, CPU),
    ``--warmup`` untimed steps each, then each run ``steps`` timed steps; compile off, and with
    ``full`` compile on as well (issue 12's goal, on the better of the two: >= 1.1x)."""
    args = arguments([])
    steps = 10 if full else 3
    model = model_config(args.model)
    model.block_size = args.block_size
    tokens_per_step = args.micro_batch * args.block_size * args.accum
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        make_data(data, 0)  # the loader goes round epochs: any size will do
        runs = [Run(f"ours, compile {'on' if on else 'off'}",
                    ours(train_config(args, model, data, Path(tmp) / f"out-{int(on)}", on)))
                for on in ((False, True) if full else (False,))]
        step, attention = transformers_loop(train_config(args, model, data, Path(tmp) / "out-hf", False))
        theirs = Run(f"transformers loop ({attention})", step)
        measure(runs + [theirs], args.warmup, 0, lambda: None)  # the untimed steps (and compilation)

        def rate(run: Run) -> Callable[[], float]:
            def timed() -> float:
                seconds = sum(call(run, fallible=False) for _ in range(steps))
                return steps * tokens_per_step / seconds
            return timed

        yield [Measure(f"train {args.model}, {run.name}", "tokens/s", rate(run), rate(theirs), theirs.name,
                       goal=1.1, issue=12) for run in runs if run.error is None]


def main() -> None:
    args = arguments()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    model = model_config(args.model)
    model.block_size = args.block_size
    tokens_per_step = args.micro_batch * args.block_size * args.accum
    fpt = flops_per_token(model, args.block_size)
    if cuda:
        peak, peak_what = peak_flops(device_name(device), "bfloat16"), "bf16 datasheet peak"
    else:
        peak = cpu_peak_flops()
        peak_what = f"measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s"
    print(f"{args.model} ({model.num_params():,} parameters), block {args.block_size}, micro-batch "
          f"{args.micro_batch}, accum {args.accum}, {tokens_per_step:,} tokens/step, {device_name(device)}, "
          f"{torch.get_num_threads()} threads, {'bf16 autocast' if cuda else 'fp32'}; "
          f"{args.warmup} untimed + {args.steps} timed steps; MFU vs {peak_what} and "
          f"{fpt / 1e6:.1f} MFLOP/token")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        make_data(data, 2 * (args.warmup + args.steps) * tokens_per_step)
        runs = []
        for compile_ in {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]:
            cfg = train_config(args, model, data, Path(tmp) / f"out-{int(compile_)}", compile_)
            runs.append(Run(f"ours, compile {'on' if compile_ else 'off'}", ours(cfg)))
        cfg = train_config(args, model, data, Path(tmp) / "out-hf", False)
        step, attention = transformers_loop(cfg)
        runs.append(Run(f"transformers loop ({attention})", step))
        measure(runs, args.warmup, args.steps, sync)
        if runs[0].error is not None and args.compile == "on":  # compile failed: ours without it
            cfg = train_config(args, model, data, Path(tmp) / "out-0", False)
            runs.insert(1, Run("ours, compile off", ours(cfg)))
            measure(runs[1:2], args.warmup, args.steps, sync)

    n = args.warmup + args.steps
    rates = {}
    for run in runs:
        if run.error is not None:
            print(f"  {run.name:<28} failed: {run.error}")
            continue
        rates[run.name] = rate = args.steps * tokens_per_step / run.seconds
        util = mfu(rate, fpt, peak)
        shown = "unknown" if util is None else f"{100 * util:5.1f}%"
        print(f"  {run.name:<28} {rate:9.1f} tokens/s  MFU {shown}  loss after {n} steps {run.loss:.4f}")
    theirs = runs[-1]
    best = max((r for r in runs[:-1] if r.error is None), key=lambda r: rates[r.name])
    print(f"ours (best: {best.name.removeprefix('ours, ')}) / transformers loop: "
          f"{rates[best.name] / rates[theirs.name]:.2f}x tokens/s; loss after {n} steps: "
          f"ours {best.loss:.4f}, transformers {theirs.loss:.4f} "
          f"(diff {100 * (best.loss - theirs.loss) / theirs.loss:+.2f}%)")


if __name__ == "__main__":
    main()
