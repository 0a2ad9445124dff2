"""optim.name=muon: Muon on the blocks' matrices, AdamW on the rest. Everything that holds for AdamW
holds for it: exact resume after SIGKILL (its momentum buffers in the checkpoint), DDP parity with
one process and resume on another world size, the non-finite-step skip, fp16 with the scaler, a
compiled model; a checkpoint of one optimizer is refused by the other, by name; the model files and
export unchanged."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import TaskGate, kill_part_way
from tests.test_train import command, data, final_weights, in_process_config, losses, scale_loss_at  # noqa: F401

MUON = "optim.name=muon"


@pytest.fixture(scope="module")
def clean_muon(data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("muon")
    done = subprocess.run(command(data, out, MUON), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


def test_muon_trains_the_block_matrices_and_adamw_the_rest(data, tmp_path):  # noqa: F811
    from train.distributed import Ranks
    from train.loop import build

    cfg = in_process_config(data, tmp_path / "run")
    cfg.optim.name = "muon"
    trainer = build(cfg, Ranks())
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    muon = sorted(names[id(p)] for g in trainer.optimizer.parts["muon"].param_groups for p in g["params"])
    adamw = sorted(names[id(p)] for g in trainer.optimizer.parts["adamw"].param_groups for p in g["params"])
    assert muon == sorted(f"transformer.h.{i}.{m}.weight" for i in range(2)
                          for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))
    assert "transformer.wte.weight" in adamw and "transformer.wpe.weight" in adamw  # wte is lm_head's too
    assert all(".ln_" in n or n.endswith(".bias") or ".w" in n for n in adamw)
    assert set(muon).isdisjoint(adamw)


def test_a_muon_run_learns_checkpoints_its_momentum_and_exports_the_same_folder(clean_muon, tmp_path):
    from model import hf

    steps = losses(clean_muon)
    assert steps[12] < steps[1] - 1.0, "it learns"
    state = torch.load(clean_muon / "checkpoints" / "step_0000012" / "optimizer.pt", weights_only=True)
    assert set(state) == {"adamw", "muon"}
    assert all("momentum_buffer" in s for s in state["muon"]["state"].values())
    model = hf.load_any(clean_muon)
    hf.export(model, tmp_path / "hf")
    assert torch.equal(hf.load_hf(tmp_path / "hf").transformer.h[0].attn.c_attn.weight,
                       model.transformer.h[0].attn.c_attn.weight)


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_rerun_is_exact_with_muon(data, clean_muon, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    step = random.Random().randint(5, 11)
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(step))
    kill_part_way(command(data, out, MUON), lambda: step in gate.started("train_step"), gate)
    rerun = subprocess.run(command(data, out, MUON), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert losses(out) == losses(clean_muon), f"killed at step {step}"
    ours, theirs = final_weights(out), final_weights(clean_muon)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
def test_two_ranks_equal_one_with_muon_and_resume_on_one(data, clean_muon, tmp_path):  # noqa: F811
    """Every rank orthogonalizes the same all-reduced gradient: 2 gloo ranks give one process's losses;
    killed after step 8 and resumed by one process, the same again. Within 1e-3 relative, not AdamW's
    1e-5: torch's Muon orthogonalizes in bfloat16, which turns the last-bit differences of summing the
    micro-batches in another order into ~1e-5 of loss at first, growing with the steps."""
    out = tmp_path / "ddp"
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(8))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    kill_part_way([*torchrun, *command(data, out, MUON)[1:]], lambda: 8 in gate.started("train_step"), gate)
    resumed = subprocess.run(command(data, out, MUON), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    expected, after = losses(clean_muon), losses(out)
    assert sorted(after) == list(range(1, 13))
    drift = {step: abs(loss - expected[step]) / expected[step] for step, loss in after.items()}
    assert max(drift.values()) < 1e-3, drift


def test_a_checkpoint_of_one_optimizer_is_refused_by_the_other(data, tmp_path):  # noqa: F811
    from train.distributed import Ranks
    from train.loop import TrainingError, run

    out = tmp_path / "run"
    assert run(in_process_config(data, out, max_steps=4), Ranks()) == 0
    cfg = in_process_config(data, out, max_steps=8)
    cfg.optim.name = "muon"
    with pytest.raises(TrainingError, match=r"was made by another run \(optim\.name: 'adamw' -> 'muon'\)"):
        run(cfg, Ranks())


def test_muon_skips_non_finite_steps_and_trains_fp16_with_the_scaler(data, tmp_path, monkeypatch):  # noqa: F811
    from train.distributed import Ranks
    from train.loop import run

    poisoned = scale_loss_at(monkeypatch, float("nan"))
    poisoned.add(2)
    cfg = in_process_config(data, tmp_path / "nan")
    cfg.optim.name = "muon"
    assert run(cfg, Ranks()) == 0
    state = torch.load(tmp_path / "nan" / "checkpoints" / "step_0000008" / "optimizer.pt", weights_only=True)
    assert int(state["adamw"]["state"][0]["step"]) == 7, "the skipped step moved neither optimizer"
    assert torch.load(tmp_path / "nan" / "checkpoints" / "step_0000008" / "trainer.pt",
                      weights_only=True)["bad_total"] == 1
    poisoned.clear()
    fp16 = in_process_config(data, tmp_path / "fp16", dtype="float16", device="cpu")
    fp16.optim.name = "muon"
    assert run(fp16, Ranks()) == 0
    scaled = losses(tmp_path / "fp16")
    assert scaled[8] < scaled[1] - 1.0, "fp16 with the scaler learns with Muon too"


@pytest.mark.slow
def test_muon_with_a_compiled_model_equals_eager(data, tmp_path):  # noqa: F811
    """``compile=true`` compiles the model, not the optimizers: Muon steps the compiled model's
    parameters (the same tensors) as it does the eager one's."""
    curves = {}
    for mode in ("false", "true"):
        out = tmp_path / f"compile_{mode}"
        kept = [a for a in command(data, out, MUON) if not a.startswith(("max_steps=", "deterministic="))]
        done = subprocess.run([*kept, f"compile={mode}", "max_steps=4", "device=cpu"], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        curves[mode] = losses(out)
    assert sorted(curves["true"]) == [1, 2, 3, 4]
    for step, loss in curves["true"].items():
        assert loss == pytest.approx(curves["false"][step], rel=1e-3), step
