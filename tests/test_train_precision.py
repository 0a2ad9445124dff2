"""The code paths a GPU run takes, driven on CPU with real torch: autocast in bf16 and fp16, the
gradient scaler of fp16 (an overflowed step skipped, its state through a resume), and
``compile=true`` with two DDP ranks, and two FSDP2 ranks.

Tolerances, and why (the first step: same weights, same batch, only rounding differs; the loss of
a fresh model is a mean over 128 tokens of near-uniform log-probabilities, so per-value rounding
mostly averages out):
- bf16 keeps 8 significant bits (relative rounding 2^-9 per value): measured 3e-6 to 9e-6 relative
  to float32 over three seeds. Bound: 1e-3 relative.
- fp16 keeps 11 bits: measured 5e-7 to 9e-7. Bound: 1e-4 relative.
- compiled against eager (both two gloo ranks, float32): inductor fuses and reorders float32
  reductions, about 1e-7 relative per operation, which training amplifies step by step; over 4
  steps at lr 1e-2 the losses differ by up to 6e-6 (measured). Bound: 1e-4 absolute.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.test_train import (  # noqa: F401 (data: a fixture)
    command,
    data,
    in_process_config,
    losses,
    scale_loss_at,
    torch_load,
)
from train.distributed import Ranks
from train.loop import Trainer, build, run


@pytest.fixture(scope="module")
def float32_run(data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("fp32")
    assert run(in_process_config(data, out, device="cpu"), Ranks()) == 0
    return out


@pytest.mark.parametrize(("dtype", "rel"), [("bfloat16", 1e-3), ("float16", 1e-4)])
def test_autocast_on_cpu_trains_close_to_float32(dtype, rel, data, float32_run, tmp_path):  # noqa: F811
    cfg = in_process_config(data, tmp_path / dtype, device="cpu", dtype=dtype)
    trainer = build(cfg, Ranks())
    assert trainer.autocast_dtype == getattr(torch, dtype)
    assert trainer.scaler.is_enabled() == (dtype == "float16"), "fp16 trains with a gradient scaler"
    x = torch.zeros((1, 8), dtype=torch.long)
    with trainer.autocast():
        assert trainer.net(x)[0].dtype == getattr(torch, dtype), "the forward pass runs in autocast"
    assert run(cfg, Ranks()) == 0
    ours, reference = losses(tmp_path / dtype), losses(float32_run)
    assert sorted(ours) == sorted(reference) == list(range(1, 9))
    assert ours[1] == pytest.approx(reference[1], rel=rel)
    assert ours[8] < ours[1] - 1.0, "it learns"


def test_float32_is_autos_choice_on_cpu(data, tmp_path):  # noqa: F811
    trainer = build(in_process_config(data, tmp_path, device="cpu"), Ranks())
    assert trainer.cfg.dtype == "auto" and trainer.autocast_dtype is None and not trainer.scaler.is_enabled()


@pytest.fixture
def overflow_at(monkeypatch):
    """Multiply the loss of the listed steps by 1e30: finite in float32, but its gradients overflow
    float16 once scaled, as an fp16 run's first steps do when the loss scale starts too high."""
    return scale_loss_at(monkeypatch, 1e30)


def test_fp16_overflow_skips_the_step_halves_the_scale_and_resumes_exactly(data, tmp_path, overflow_at,  # noqa: F811
                                                                          monkeypatch):
    overflow_at.add(1)  # the second step
    cfg = in_process_config(data, tmp_path / "whole", device="cpu", dtype="float16")
    assert run(cfg, Ranks()) == 0
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["step"]: r for r in records if "loss" in r}
    assert by_step[1]["skipped_steps"] == 0 and by_step[2]["skipped_steps"] == 1
    assert by_step[1]["loss_scale"] == 2.0**16 and by_step[3]["loss_scale"] == 2.0**15
    final = tmp_path / "whole" / "checkpoints" / "step_0000008"
    assert torch_load(final / "trainer.pt")["scaler"]["scale"] == 2.0**15
    assert torch_load(final / "trainer.pt")["bad_in_a_row"] == 0, "an overflow is not a bad step"
    assert int(torch_load(final / "optimizer.pt")["state"][0]["step"]) == 7, "the optimizer skipped one"

    # the same run, lost after step 6 (its step-4 checkpoint holds the halved scale), then rerun
    crash = {"at": 6}
    step = Trainer.train_step

    def dies(self):
        if self.step == crash["at"]:
            raise KeyboardInterrupt("the process is lost")
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", dies)
    again = in_process_config(data, tmp_path / "resumed", device="cpu", dtype="float16")
    with pytest.raises(KeyboardInterrupt):
        run(again, Ranks())
    assert torch_load(tmp_path / "resumed" / "checkpoints" / "step_0000004" / "trainer.pt")["scaler"][
        "scale"] == 2.0**15
    crash["at"] = -1
    assert run(again, Ranks()) == 0
    assert losses(tmp_path / "resumed") == losses(tmp_path / "whole")
    ours = torch_load(tmp_path / "resumed" / "checkpoints" / "step_0000008" / "optimizer.pt")
    theirs = torch_load(final / "optimizer.pt")
    assert all(torch.equal(ours["state"][k]["exp_avg"], theirs["state"][k]["exp_avg"]) for k in ours["state"])


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_compile_with_two_ranks_equals_eager(parallel, data, tmp_path):  # noqa: F811
    """DDP wraps the compiled model; under FSDP2 each block is compiled in place, its hooks outside."""
    import subprocess

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    curves = {}
    for mode in ("false", "true"):
        out = tmp_path / f"compile_{mode}"
        kept = [a for a in command(data, out)[1:] if not a.startswith(("max_steps=", "deterministic="))]
        argv = [*torchrun, *kept, f"compile={mode}", "max_steps=4", "device=cpu", f"parallel={parallel}"]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        curves[mode] = losses(out)
    assert sorted(curves["true"]) == [1, 2, 3, 4]
    for step, loss in curves["true"].items():
        assert loss == pytest.approx(curves["false"][step], abs=1e-4), step
