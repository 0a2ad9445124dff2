"""Muon beside AdamW: validation loss against steps, the same model, data, batch and schedule.

    python bench/optim.py [--steps 150] [--eval-every 15] [--adamw-lrs 6e-4 1e-3 3e-3] [--muon-lrs 0.02]
                          [--model gpt2-mini] [--block-size 128] [--batch 8] [--time-batch 32]
                          [--plot FILE.png] [--data DIR]

Data: real English text made offline from what every install of this project has: the docstrings
of the Python standard library and of ``transformers`` (a dev dependency), read from their source
files with ``ast`` (no import), at least 300 characters each, doctest lines dropped, deduplicated,
shuffled with a fixed seed, tokenized with the GPT-2 BPE, ``<|endoftext|>`` between documents: about
1.8 M tokens here (at most 2 M are kept), 5% of the documents for validation. Cached in
``--data`` (default ``~/.cache/webtext/bench-optim``): made once, in about a minute.

Runs, all with the project's trainer (``train.loop.build``, ``train_step``): AdamW (``optim.name=adamw``)
at each of ``--adamw-lrs``, and Muon (``optim.name=muon``: Muon at each of ``--muon-lrs`` on the
blocks' matrices, AdamW at ``--muon-adamw-lr`` on the rest), each from the same initial weights, on the
same batches in the same order, ``--steps`` steps of ``--batch`` x ``--block-size`` tokens, warmup
10% then cosine to 10%. Their steps are interleaved (one of each in turn), so machine load falls on
all alike. Every ``--eval-every`` steps, the validation loss on a fixed ``--eval-tokens`` (16 K)
tokens of the validation split.

Prints each run's curve, then: the best AdamW (lowest final validation loss), the first evaluated step
at which the best Muon's validation loss is at or below it and that step as a share of ``--steps``
(issue 23's goal: <= 0.7), and Muon's seconds per step beside the best AdamW's (goal: <= 1.1x). Then
times a step of each at ``--time-batch`` (32) sequences: Newton-Schulz's cost is fixed per step
(``ns_steps (4 m^2 n + 2 m^3)`` FLOPs per m x n matrix, m <= n), so its share shrinks as tokens per step
grow; GPT-2's recipes take 524,288 tokens a step.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse  # noqa: E402
import ast  # noqa: E402
import contextlib  # noqa: E402
import random  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

from bench.measure import Measure  # noqa: E402
from model.base.files import atomic_path, atomic_write  # noqa: E402
from model.base.shards import header  # noqa: E402
from model.base.tokenizer import EOT_ID, gpt2_encoding  # noqa: E402
from train.config import compose  # noqa: E402
from train.distributed import Ranks  # noqa: E402
from train.evaluate import val_loss  # noqa: E402
from train.loop import Trainer, build  # noqa: E402

MAX_TOKENS = 2_000_000
VAL_SHARE = 0.05
SEED = 1337


def docstrings() -> list[str]:
    """The long docstrings of the standard library and transformers, in a fixed order."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(stdlib.rglob("*.py")) if not {"site-packages", "test", "tests"} & set(p.parts)]
    files += sorted((purelib / "transformers").rglob("*.py"))
    found: dict[str, None] = {}
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node) or ""
                text = "\n".join(line for line in text.splitlines()
                                 if not line.lstrip().startswith((">>>", "...")))
                if len(text) >= 300:
                    found.setdefault(text, None)
    return list(found)


def make_data(folder: Path) -> Path:
    """Train and val shards of English docstrings in ``folder`` (kept: made once)."""
    if (folder / "val_000.bin").exists():
        return folder
    texts = docstrings()
    random.Random(SEED).shuffle(texts)
    enc = gpt2_encoding()
    train: list[int] = []
    val: list[int] = []
    for i, text in enumerate(texts):
        ids = [EOT_ID, *enc.encode_ordinary(text)]
        (val if i % round(1 / VAL_SHARE) == 0 else train).extend(ids)
        if len(train) + len(val) >= MAX_TOKENS:
            break
    for name, tokens in (("train_000.bin", train), ("val_000.bin", val)):
        data = np.asarray(tokens, dtype=np.uint16)
        atomic_write(folder / name, header(len(data)).tobytes() + data.tobytes())
    return folder


@dataclass
class Run:
    name: str
    trainer: Trainer
    seconds: float = 0.0
    steps: int = 0
    curve: dict[int, float] = field(default_factory=dict)


def trainer(args: argparse.Namespace, data: Path, out: Path, name: str, lr: float) -> Trainer:
    """The trainer of one run; ``lr``: AdamW's (``name`` adamw) or Muon's on the matrices (muon)."""
    overrides = [f"model={args.model}", f"data.dir={data}", f"out_dir={out}", "device=cpu",
                 f"model.block_size={args.block_size}", f"micro_batch_size={args.batch}",
                 f"total_batch_tokens={args.batch * args.block_size}", f"max_steps={args.steps}",
                 f"optim.warmup_steps={max(1, args.steps // 10)}", f"optim.name={name}",
                 f"optim.max_lr={lr if name == 'adamw' else args.muon_adamw_lr}", "model.dropout=0.0",
                 f"eval_tokens={args.eval_tokens}", f"seed={SEED}"]
    if name == "muon":
        overrides.append(f"optim.muon.lr={lr}")
    return build(compose(overrides), Ranks())


def evaluate(run: Run) -> float:
    t = run.trainer
    return val_loss(t.model, t.data.val, t.data.val_indices, t.cfg.micro_batch_size, t.device, t.autocast)


def train(runs: list[Run], steps: int, eval_every: int | None) -> None:
    """``steps`` steps of every run, interleaved; the validation loss every ``eval_every`` (None:
    never), printed as it comes."""
    for step in range(0, steps + 1):
        if step:
            for run in runs[step % len(runs):] + runs[: step % len(runs)]:  # the order rotates
                started = time.perf_counter()
                run.trainer.train_step()
                run.seconds += time.perf_counter() - started
                run.steps += 1
        if eval_every and (step % eval_every == 0 or step == steps):
            for run in runs:
                run.curve[step] = evaluate(run)
            print(f"step {step:4d}  " + "  ".join(f"{r.name} {r.curve[step]:.4f}" for r in runs), flush=True)


def time_per_step(args: argparse.Namespace, data: Path, adamw_lr: float, muon_lr: float) -> float:
    """Muon's seconds per step over AdamW's at ``--time-batch`` sequences a step (the same model,
    ``--time-steps`` interleaved steps each after one not timed): Newton-Schulz costs the same per
    step whatever the batch, so its share falls as the tokens per step grow."""
    timing = argparse.Namespace(**{**vars(args), "batch": args.time_batch})
    with tempfile.TemporaryDirectory() as tmp:
        runs = [Run(f"adamw lr {adamw_lr:g}", trainer(timing, data, Path(tmp) / "adamw", "adamw", adamw_lr)),
                Run(f"muon lr {muon_lr:g}", trainer(timing, data, Path(tmp) / "muon", "muon", muon_lr))]
        for run in runs:
            run.trainer.train_step()
        train(runs, args.time_steps, None)
    adamw, muon = (run.seconds / run.steps for run in runs)
    tokens = args.time_batch * args.block_size
    print(f"at {tokens:,} tokens a step: AdamW {adamw:.3f} s/step, Muon {muon:.3f} s/step, "
          f"{muon / adamw:.2f}x (goal <= 1.1)")
    return muon / adamw


def plot(runs: list[Run], path: Path, title: str) -> None:
    """The validation curves, one line per run, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for run in runs:
        steps, values = zip(*sorted(run.curve.items()), strict=True)
        ax.plot(steps, values, marker="o", markersize=3, label=run.name,
                linewidth=2 if run.name.startswith("muon") else 1)
    best = min(run.curve[max(run.curve)] for run in runs if run.name.startswith("adamw"))
    ax.axhline(best, color="gray", linestyle="--", linewidth=1, label=f"best AdamW's final: {best:.3f}")
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss (nats per token)")
    ax.set_ylim(top=min(run.curve[0] for run in runs) + 0.2)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def report(runs: list[Run], steps: int) -> dict[str, float]:
    for run in runs:
        curve = "  ".join(f"{s}:{v:.3f}" for s, v in sorted(run.curve.items()))
        print(f"{run.name:<22} {run.seconds / run.steps:6.3f} s/step  val loss  {curve}")
    adamw = min((r for r in runs if r.name.startswith("adamw")), key=lambda r: r.curve[steps])
    muon = min((r for r in runs if r.name.startswith("muon")), key=lambda r: r.curve[steps])
    target = adamw.curve[steps]
    reached = next((s for s, v in sorted(muon.curve.items()) if v <= target), None)
    share = reached / steps if reached else float("inf")
    time_ratio = (muon.seconds / muon.steps) / (adamw.seconds / adamw.steps)
    print(f"best AdamW: {adamw.name}, final val loss {target:.4f}; {muon.name}'s final "
          f"{muon.curve[steps]:.4f}; "
          f"Muon reaches {target:.4f} at step {reached} of {steps} ({share:.2f}x the steps; goal <= 0.7); "
          f"time per step {time_ratio:.2f}x AdamW's (goal <= 1.1)", flush=True)
    return {"share": share, "time_ratio": time_ratio, "adamw_lr": adamw.trainer.cfg.optim.max_lr,
            "muon_lr": muon.trainer.cfg.optim.muon.lr}


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=15)
    parser.add_argument("--adamw-lrs", type=float, nargs="+", default=[6e-4, 1e-3, 3e-3])
    parser.add_argument("--muon-lrs", type=float, nargs="+", default=[0.02])
    parser.add_argument("--muon-adamw-lr", type=float, default=3e-3)
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--model", default="gpt2-mini")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time-batch", type=int, default=32, help="then time a step at this batch (0: not)")
    parser.add_argument("--time-steps", type=int, default=4)
    parser.add_argument("--plot", type=Path, help="also draw the validation curves into this PNG")
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache" / "webtext" / "bench-optim")
    return parser.parse_args(argv)


def compare_optimizers(args: argparse.Namespace) -> dict[str, float]:
    args.data.mkdir(parents=True, exist_ok=True)
    data = make_data(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [Run(f"adamw lr {lr:g}", trainer(args, data, Path(tmp) / f"adamw-{lr}", "adamw", lr))
                for lr in args.adamw_lrs]
        runs += [Run(f"muon lr {lr:g}", trainer(args, data, Path(tmp) / f"muon-{lr}", "muon", lr))
                 for lr in args.muon_lrs]
        train(runs, args.steps, args.eval_every)
        found = report(runs, args.steps)
        if args.plot:
            plot(runs, args.plot, f"{args.model}, {args.batch * args.block_size:,} tokens a step, "
                                  f"warmup then cosine over {args.steps} steps")
    if args.time_batch:
        found["time_ratio_large"] = time_per_step(args, data, found["adamw_lr"], found["muon_lr"])
    return found


@contextlib.contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    """The comparison once (``--steps 150`` with ``full``, 40 otherwise), its three figures as rows."""
    args = arguments(["--steps", "150" if full else "40", "--eval-every", "15" if full else "10"])
    found = compare_optimizers(args)
    best = "best of 3 AdamW lrs"
    tokens, large = args.batch * args.block_size, args.time_batch * args.block_size
    yield [Measure("optim: steps to AdamW's final val loss (gpt2-mini)", "share of the run",
                   lambda: found["share"], lambda: 1.0, best, 0.7, higher_is_better=False, issue=23),
           Measure(f"optim: time per step (gpt2-mini, CPU, {tokens:,} tokens)", "x AdamW",
                   lambda: found["time_ratio"], lambda: 1.0, best, 1.1, higher_is_better=False, issue=23),
           Measure(f"optim: time per step (gpt2-mini, CPU, {large:,} tokens)", "x AdamW",
                   lambda: found["time_ratio_large"], lambda: 1.0, "the best AdamW lr", 1.1,
                   higher_is_better=False, issue=23)]


if __name__ == "__main__":
    compare_optimizers(arguments(sys.argv[1:]))
