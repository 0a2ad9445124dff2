"""``parallel=fsdp`` on CPU with gloo: FSDP2 ranks train as one process does, hold their share of the
state, and resume exactly across kills, world sizes and ``ddp``."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.memory import state_bytes_per_rank
from tests.conftest import REPO
from tests.helpers import TaskGate, kill_part_way
from tests.test_train import command, data, final_weights, losses  # noqa: F401 (data: a fixture)

pytestmark = pytest.mark.slow
STEPS = 20


def run20(data: Path, out: Path, *extra: str, ranks: int = 1) -> list[str]:  # noqa: F811
    """The training command of tests/test_train.py over 20 steps, at a learning rate (3e-3) whose
    steps stay smooth: at 1e-2 a loss spike at step 10 turns reduction-order rounding into 5e-5 under
    DDP as under FSDP. ``ranks`` > 1: under torchrun."""
    base = command(data, out, f"max_steps={STEPS}", "optim.max_lr=3e-3", *extra)
    if ranks == 1:
        return base
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
            *base[1:]]


def micro(ranks: int) -> str:
    return f"micro_batch_size={8 // max(2, ranks)}"  # 8 sequences a step: 4 x 2 on one process


def train(cmd: list[str]) -> str:
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def held(output: str) -> tuple[int, dict[str, int]]:
    """The trainer's line on the state one rank holds: (ranks, bytes by kind)."""
    found = re.search(r"the most of (\d+) rank\(s\), \w+\): parameters (\d+), gradients (\d+), optimizer "
                      r"(\d+)", output)
    assert found, "no 'state held per rank' line"
    ranks, params, grads, optimizer = map(int, found.groups())
    return ranks, {"params": params, "grads": grads, "optimizer": optimizer}


def assert_same_steps(got: dict[int, float], expected: dict[int, float], tol: float, steps=None) -> None:
    assert sorted(got) == sorted(steps or expected)
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], abs=tol), step


@pytest.fixture(scope="module")
def one(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:  # noqa: F811
    out = tmp_path_factory.mktemp("one")
    return out, train(run20(data, out))


@pytest.fixture(scope="module")
def fsdp2(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:  # noqa: F811
    out = tmp_path_factory.mktemp("fsdp2")
    return out, train(run20(data, out, "parallel=fsdp", micro(2), ranks=2))


def test_one_process_holds_what_the_memory_model_says(one):
    out, output = one
    ranks, measured = held(output)
    expected = state_bytes_per_rank(tiny(), 1, "ddp", "adamw")
    assert ranks == 1
    for kind, n in measured.items():
        assert n == pytest.approx(getattr(expected, kind), rel=0.02), kind


def tiny():
    """The model of the runs above."""
    from train.config import compose

    return compose(command(Path("x"), Path("y"))[3:]).model


@pytest.mark.parametrize("ranks", [2, 4])
def test_fsdp_ranks_equal_one_process_and_each_holds_its_share(ranks, data, one, fsdp2, tmp_path):  # noqa: F811
    if ranks == 2:
        out, output = fsdp2
    else:
        out = tmp_path / "fsdp4"
        output = train(run20(data, out, "parallel=fsdp", micro(4), ranks=4))
    assert f"{ranks} rank(s)" in output
    assert_same_steps(losses(out), losses(one[0]), 1e-5)
    ours, theirs = final_weights_at(out, STEPS), final_weights_at(one[0], STEPS)
    assert ours.keys() == theirs.keys()  # the whole model, in the single process's names
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) < 1e-4
    got_ranks, measured = held(output)
    expected = state_bytes_per_rank(tiny(), ranks, "fsdp", "adamw")
    assert got_ranks == ranks
    for kind, n in measured.items():  # a 1/ranks share each, within 2% of the model's figure
        assert n == pytest.approx(getattr(expected, kind), rel=0.02), kind
    single = state_bytes_per_rank(tiny(), 1, "ddp", "adamw")
    assert sum(measured.values()) == pytest.approx(single.total / ranks, rel=0.02)


def final_weights_at(out: Path, step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def test_sigkill_under_fsdp_then_rerun_is_exact(data, fsdp2, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    step = random.Random().randint(5, STEPS - 1)
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(step))
    kill_part_way(run20(data, out, "parallel=fsdp", micro(2), ranks=2),
                  lambda: step in gate.started("train_step"), gate)
    assert not (out / "checkpoints" / f"step_{STEPS:07d}").exists()
    output = train(run20(data, out, "parallel=fsdp", micro(2), ranks=2))
    assert "resumed from" in output
    assert losses(out) == losses(fsdp2[0]), f"killed at step {step}"
    ours, theirs = final_weights_at(out, STEPS), final_weights_at(fsdp2[0], STEPS)
    assert all((ours[k] == theirs[k]).all() for k in ours), f"killed at step {step}"


def test_four_fsdp_ranks_then_two_then_one_ddp_process_resume_as_one_run(data, one, tmp_path):  # noqa: F811
    """Killed after the step-8 checkpoint on 4 FSDP ranks, resumed on 2 and killed after step 16's,
    finished by one process: every step as the uninterrupted single process's."""
    out = tmp_path / "moved"
    for ranks, checkpoint in ((4, 8), (2, 16)):
        gate = TaskGate(tmp_path / f"gate{ranks}", hold=("train_step",))
        gate.release("train_step", *range(checkpoint))
        kill_part_way(run20(data, out, "parallel=fsdp", micro(ranks), ranks=ranks),
                      lambda c=checkpoint, g=gate: c in g.started("train_step"), gate)
        assert (out / "checkpoints" / f"step_{checkpoint:07d}" / "COMPLETE").exists()
        assert not (out / "checkpoints" / f"step_{checkpoint + 4:07d}").exists()
    output = train(run20(data, out))  # parallel=ddp, one process
    assert "resumed from" in output and "step 16" in output
    assert_same_steps(losses(out), losses(one[0]), 1e-5)
    ours, theirs = final_weights_at(out, STEPS), final_weights_at(one[0], STEPS)
    assert max((ours[k] - theirs[k]).abs().max().item() for k in ours) < 1e-4


def test_a_ddp_checkpoint_resumes_under_fsdp(data, one, tmp_path):  # noqa: F811
    out = tmp_path / "to_fsdp"
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(8))
    kill_part_way(run20(data, out), lambda: 8 in gate.started("train_step"), gate)
    output = train(run20(data, out, "parallel=fsdp", micro(2), ranks=2))
    assert "resumed from" in output
    assert_same_steps(losses(out), losses(one[0]), 1e-5)


# Muon's Newton-Schulz runs in bf16 (torch.optim.Muon casts each update first): a gradient that differs
# in its last fp32 bit (another reduction order: 2 ranks against 1) can round to another bf16 value,
# and 20 steps carry it on. Two DDP ranks against one process differ by up to 6e-4 per step here;
# FSDP's Muon is held to 1e-3. That FSDP orthogonalizes whole matrices, not shards, is proven exactly
# by tests/sharded_muon.py (the same gradient: the same update as torch.optim.Muon, to the bit).
MUON_TOLERANCE = 1e-3


def test_muon_under_fsdp_equals_muon_under_ddp_within_bf16_rounding(data, tmp_path):  # noqa: F811
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    train(run20(data, ddp, "optim.name=muon", micro(2), ranks=2))
    output = train(run20(data, fsdp, "optim.name=muon", "parallel=fsdp", micro(2), ranks=2))
    assert_same_steps(losses(fsdp), losses(ddp), MUON_TOLERANCE)
    _, measured = held(output)
    expected = state_bytes_per_rank(tiny(), 2, "fsdp", "muon")
    assert measured["optimizer"] == pytest.approx(expected.optimizer, rel=0.02)
    assert expected.optimizer < state_bytes_per_rank(tiny(), 2, "fsdp", "adamw").optimizer


def test_sharded_muon_orthogonalizes_whole_matrices_to_the_bit(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*torchrun, "-m", "tests.sharded_muon"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("same as torch.optim.Muon") == 2


# --- lockstep evaluation: every rank runs as many forward passes as rank 0 -------------------------


def counting_model():
    from model.config import GPTConfig
    from model.gpt2 import GPT

    torch.manual_seed(0)
    model = GPT(GPTConfig(name="probe", n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=512))
    model.calls = 0

    def count(*_):
        model.calls += 1

    model.register_forward_pre_hook(count)
    return model


def test_lockstep_validation_runs_rank_0s_passes_and_counts_each_window_once(data, monkeypatch):  # noqa: F811
    from contextlib import nullcontext

    import numpy as np

    from train.data import Windows, shard_paths
    from train.evaluate import val_loss

    windows = Windows.open(shard_paths(str(data), "val_*.bin"), 32)
    indices, cpu = np.arange(9), torch.device("cpu")
    model = counting_model()
    whole = val_loss(model, windows, indices, 2, cpu, nullcontext)
    sums = []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, *a, **k: sums.append(tensor.clone()))
    for rank in (0, 1):  # 5 windows and 4: 3 passes of 2 each
        model.calls = 0
        val_loss(model, windows, indices, 2, cpu, nullcontext, rank, 2, lockstep=True)
        assert model.calls == 3, rank
    total = sums[0] + sums[1]
    assert total[1].item() == 9 * 32  # every window's tokens once
    assert (total[0] / total[1]).item() == pytest.approx(whole, rel=1e-6)  # other batches: fp32 sums


# Half precision against one process in the same dtype, 8 steps: two DDP ranks measure 1.3e-4 (bf16)
# and 1.6e-5 (fp16) from one process, FSDP 2.0e-4 and 1.5e-5: reduction order through 8 and 11 bits.
@pytest.mark.parametrize(("dtype", "tolerance"), [("bfloat16", 1e-3), ("float16", 1e-4)])
def test_half_precision_under_fsdp_computes_as_ddp_does(dtype, tolerance, data, tmp_path):  # noqa: F811
    """bf16 (GPUs) or fp16 (a V100: the sharded gradient scaler, whose inf checks span every shard):
    the blocks' matrices all-gathered in that dtype, the residual stream, the LayerNorms and the
    embeddings kept fp32 as autocast keeps them under DDP."""
    half = ["max_steps=8", f"dtype={dtype}", "device=cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    train(command(data, one, *half, "optim.max_lr=3e-3"))
    output = train(run20(data, two, *half, "parallel=fsdp", micro(2), ranks=2))
    assert "fsdp: parameters, gradients and optimizer state sharded" in output
    assert_same_steps(losses(two), losses(one), tolerance)
