"""The trainer end to end on CPU: it learns, it checkpoints, and a SIGKILLed run resumes exactly."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from model.base.folders import COMPLETE
from model.base.shards import header
from tests.conftest import REPO
from tests.helpers import TaskGate, kill_part_way

VOCAB = 512  # a small vocabulary keeps CPU steps fast; the network is GPT-2's


def write_shard(path: Path, tokens: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(header(len(tokens)).tobytes())
        f.write(tokens.astype(np.uint16).tobytes())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token shards a model can learn from: 8 short "sentences" repeated in random order."""
    folder = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    sentences = [rng.integers(1, VOCAB, size=rng.integers(5, 12)) for _ in range(8)]

    def stream(n: int) -> np.ndarray:
        parts = [np.concatenate([[0], sentences[rng.integers(0, 8)]]) for _ in range(n // 5)]
        return np.concatenate(parts)[:n]

    for name, n in (("train_000.bin", 12000), ("train_001.bin", 8000), ("val_000.bin", 3000)):
        write_shard(folder / name, stream(n))
    return folder


def command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "model=gpt2-tiny", f"data.dir={data}", f"out_dir={out}",
            "model.block_size=32", f"model.vocab_size={VOCAB}", "micro_batch_size=4",
            "total_batch_tokens=256",
            "max_steps=12", "optim.warmup_steps=2", "optim.max_lr=1e-2", "log_every_steps=1",
            "checkpoint_every_steps=4", "eval_tokens=256", "deterministic=true", *extra]


def losses(out: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def final_weights(out: Path) -> dict:
    return load_file(str(out / "checkpoints" / "step_0000012" / "model.safetensors"))


@pytest.fixture(scope="module")
def clean(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    run = subprocess.run(command(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return out


@pytest.mark.slow
def test_a_short_run_learns_and_checkpoints(clean):
    curve = losses(clean)
    assert sorted(curve) == list(range(1, 13))
    assert curve[1] == pytest.approx(np.log(VOCAB), rel=0.05)  # a fresh model guesses uniformly
    assert curve[12] < curve[1] - 1.0
    assert sorted(p.name for p in (clean / "checkpoints").iterdir()) == [
        "step_0000004", "step_0000008", "step_0000012"]  # keep_last=3
    for step in (4, 8, 12):
        folder = clean / "checkpoints" / f"step_{step:07d}"
        assert {p.name for p in folder.iterdir()} == {
            "model.safetensors", "model.json", "optimizer.pt", "trainer.pt", "rng_rank_0.pt", "config.yaml",
            "COMPLETE"}


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_rerun_is_exact(data, clean, tmp_path):
    out = tmp_path / "killed"
    step = random.Random().randint(5, 11)  # any step: the gate makes it land there for sure
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(step))
    kill_part_way(command(data, out), lambda: step in gate.started("train_step"), gate)
    assert not (out / "checkpoints" / "step_0000012").exists()
    rerun = subprocess.run(command(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from" in rerun.stdout + rerun.stderr
    assert losses(out) == losses(clean), f"killed at step {step}"
    ours, theirs = final_weights(out), final_weights(clean)
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_keeps_the_last_good_one(data, clean, tmp_path):
    out = tmp_path / "killed"
    gate = TaskGate(tmp_path / "gate", hold=("checkpoint",))
    gate.release("checkpoint", 4)  # step 4's checkpoint completes; step 8's is held half-made
    kill_part_way(command(data, out), lambda: 8 in gate.started("checkpoint"), gate)
    folders = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert folders == [".step_0000008.tmp", "step_0000004"], folders
    rerun = subprocess.run(command(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from" in rerun.stdout + rerun.stderr and "step 4" in rerun.stdout + rerun.stderr
    assert losses(out) == losses(clean)
    ours, theirs = final_weights(out), final_weights(clean)
    assert all((ours[k] == theirs[k]).all() for k in ours)
    assert not (out / "checkpoints" / ".step_0000008.tmp").exists()


def test_a_checkpoint_of_another_shape_is_refused(data, clean, tmp_path):
    import dataclasses
    import shutil

    from train.distributed import Ranks
    from train.loop import TrainingError, run

    shutil.copytree(clean, tmp_path / "other")
    cfg = in_process_config(data, tmp_path / "other", max_steps=12, seed=1337)
    cfg.model = dataclasses.replace(cfg.model, name="gpt2-tiny", n_layer=3)
    with pytest.raises(TrainingError, match=r"was made by another run \(model.n_layer: 2 -> 3\)"):
        run(cfg, Ranks())


@pytest.mark.slow
def test_gpt2_tiny_on_real_text_then_export_and_sample(tmp_path):
    """The acceptance a user runs first: train gpt2-tiny on text, export it, sample from it."""
    from model.base.tokenizer import EOT_ID, gpt2_encoding
    from pipeline.sample import documents

    enc = gpt2_encoding()
    stream = np.concatenate([[EOT_ID, *enc.encode_ordinary(d["text"])] for d in documents()])
    folder = tmp_path / "tokens"
    folder.mkdir()
    write_shard(folder / "train_000.bin", np.tile(stream, 1 + 20_000 // len(stream)))
    write_shard(folder / "val_000.bin", stream[:2000])
    out = tmp_path / "run"
    train = [sys.executable, "-m", "train", "model=gpt2-tiny", f"data.dir={folder}", f"out_dir={out}",
             "model.block_size=64", "micro_batch_size=4", "total_batch_tokens=256", "max_steps=12",
             "optim.warmup_steps=2", "optim.max_lr=1e-2", "log_every_steps=1", "eval_every_steps=12",
             "eval_tokens=512", "eval.sample_tokens=12", "checkpoint_every_steps=12",
             f"eval.hellaswag={REPO / 'tests' / 'data' / 'hellaswag_fixture.jsonl'}"]
    run = subprocess.run(train, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    curve = losses(out)
    assert curve[1] == pytest.approx(np.log(50257), rel=0.05)
    assert curve[12] < curve[1] - 2.5, curve
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    [evaluation] = [r for r in records if "val_loss" in r]
    assert evaluation["step"] == 12 and 0.0 <= evaluation["hellaswag_acc_norm"] <= 1.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {(s["kind"], s["step"]) for s in samples} == {("greedy", 12), ("sampled", 12)}
    assert (out / "loss.png").stat().st_size > 1000

    export = subprocess.run([sys.executable, "-m", "model.export", f"checkpoint={out}",
                             f"out={tmp_path / 'hf'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0 and "step_0000012" in export.stdout, export.stderr
    sample = subprocess.run([sys.executable, "-m", "train.sample", f"checkpoint={tmp_path / 'hf'}",
                             "prompt=The library", "max_new_tokens=20", "top_k=1"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("The library") and len(sample.stdout) > len("The library") + 5


@pytest.mark.slow
def test_two_ranks_equal_one_with_twice_the_accumulation_and_resume_on_one(data, clean, tmp_path):
    """torchrun with 2 gloo ranks (1 micro-batch each) against 1 process (2 micro-batches); killed
    after its step-8 checkpoint and resumed by a single process, on the same global sample order."""
    out = tmp_path / "ddp"
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(8))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two_ranks = [*torchrun, *command(data, out)[1:]]
    kill_part_way(two_ranks, lambda: 8 in gate.started("train_step"), gate)
    folder = out / "checkpoints" / "step_0000008"
    assert {"rng_rank_0.pt", "rng_rank_1.pt", "COMPLETE"} <= {p.name for p in folder.iterdir()}
    expected = losses(clean)
    before = losses(out)
    assert sorted(before) == list(range(1, 9))
    for step, loss in before.items():
        assert loss == pytest.approx(expected[step], abs=1e-5), step
    resumed = subprocess.run(command(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    after = losses(out)
    assert sorted(after) == list(range(1, 13))
    for step, loss in after.items():
        assert loss == pytest.approx(expected[step], abs=1e-5), step
    import torch

    for step in (8, 12):  # the same global sample positions consumed, on 2 ranks and on 1
        states = [torch.load(o / "checkpoints" / f"step_{step:07d}" / "trainer.pt", weights_only=True)
                  for o in (out, clean)]
        assert states[0]["loader"] == states[1]["loader"] and states[0]["tokens"] == states[1]["tokens"]
    assert states[0]["world_size"] == 1 and torch.load(
        out / "checkpoints" / "step_0000008" / "trainer.pt", weights_only=True)["world_size"] == 2


@pytest.mark.slow
def test_sigterm_finishes_the_step_checkpoints_and_exits_with_its_status(data, clean, tmp_path):
    import signal

    from tests.helpers import start, wait_for

    out = tmp_path / "stopped"
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(5))
    offline = ["wandb.enabled=true", "wandb.mode=offline"]
    proc = start(command(data, out, *offline), gate)
    wait_for(proc, lambda: 5 in gate.started("train_step"))
    proc.send_signal(signal.SIGTERM)  # during step 6 (index 5), held at its start
    gate.open("train_step")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM after step 6" in output
    assert (out / "checkpoints" / "step_0000006" / "COMPLETE").exists()
    run_id = torch_load(out / "checkpoints" / "step_0000006" / "trainer.pt")["wandb_id"]
    rerun = subprocess.run(command(data, out, *offline), cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert losses(out) == losses(clean)
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(run_id) for p in runs), runs  # one wandb run, resumed
    for folder in runs:  # each part of the run holds its metrics
        [records] = folder.glob("run-*.wandb")
        assert b"grad_norm" in records.read_bytes() and b"tokens_per_s" in records.read_bytes()
    assert torch_load(out / "checkpoints" / "step_0000012" / "trainer.pt")["wandb_id"] == run_id


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def in_process_config(data: Path, out: Path, **overrides):
    from model.base.schema import validate
    from model.config import GPTConfig
    from train.config import DataConfig, OptimConfig, TrainConfig

    model = GPTConfig(name="t", n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=VOCAB)
    settings = dict(model=model, data=DataConfig(dir=str(data)), out_dir=str(out), micro_batch_size=4,
                    total_batch_tokens=256, max_steps=8, checkpoint_every_steps=4, eval_tokens=256,
                    log_every_steps=1, optim=OptimConfig(warmup_steps=2, max_lr=1e-2))
    cfg = TrainConfig(**{**settings, **overrides})
    validate(cfg)
    return cfg


def scale_loss_at(monkeypatch: pytest.MonkeyPatch, factor: float) -> set[int]:
    """Multiply the loss of the step indices put in the returned set by ``factor``."""
    from model.gpt2 import GPT
    from train.loop import Trainer

    steps: set[int] = set()
    now = {"step": -1}
    forward, train_step = GPT.forward, Trainer.train_step

    def scaled_forward(self, idx, targets=None, **kw):
        logits, loss = forward(self, idx, targets, **kw)
        return logits, (loss * factor if loss is not None and now["step"] in steps else loss)

    def tracked_step(self):
        now["step"] = self.step
        return train_step(self)

    monkeypatch.setattr(GPT, "forward", scaled_forward)
    monkeypatch.setattr(Trainer, "train_step", tracked_step)
    return steps


@pytest.fixture
def poisoned(monkeypatch):
    """Make the loss of the listed step indices NaN, as a bad batch or an overflow would."""
    return scale_loss_at(monkeypatch, float("nan"))


def test_non_finite_steps_are_skipped_and_counted(data, tmp_path, poisoned):
    from train.distributed import Ranks
    from train.loop import run

    poisoned.update({2, 3})
    cfg = in_process_config(data, tmp_path / "run")
    assert run(cfg, Ranks()) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = {r["step"]: r["skipped_steps"] for r in records if "loss" in r}
    assert skipped[2] == 0 and skipped[3] == 1 and skipped[8] == 2
    assert torch_load(tmp_path / "run" / "checkpoints" / "step_0000008" / "trainer.pt")["bad_total"] == 2
    # the optimizer did not move on a skipped step: its step count is the good steps'
    optimizer = torch_load(tmp_path / "run" / "checkpoints" / "step_0000008" / "optimizer.pt")
    assert int(optimizer["state"][0]["step"]) == 6


def test_a_run_of_non_finite_steps_stops_and_the_last_checkpoint_loads(data, tmp_path, poisoned):
    from model import hf, weights
    from train.distributed import Ranks
    from train.loop import TrainingError, run

    poisoned.update(range(5, 100))
    cfg = in_process_config(data, tmp_path / "run", max_bad_steps=2)
    with pytest.raises(TrainingError, match=r"3 steps in a row had a non-finite loss.*is intact"):
        run(cfg, Ranks())
    assert weights.resolve(tmp_path / "run") == ("ours", tmp_path / "run" / "checkpoints" / "step_0000004")
    assert hf.load_any(tmp_path / "run").config.vocab_size == VOCAB


def test_init_from_a_hugging_face_folder(data, tmp_path):
    from model import hf
    from model.gpt2 import GPT
    from train.distributed import Ranks
    from train.loop import build

    cfg = in_process_config(data, tmp_path / "run")
    import torch

    torch.manual_seed(9)
    source = GPT(cfg.model)
    hf.export(source, tmp_path / "hf")
    cfg.init_from = f"hf:{tmp_path / 'hf'}"
    trainer = build(cfg, Ranks())
    for name, tensor in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    cfg.model = type(cfg.model)(**{**cfg.model.__dict__, "dropout": 0.1})  # fine-tuning with dropout
    tuned = build(cfg, Ranks())
    assert tuned.model.transformer.drop.p == 0.1 and tuned.model.transformer.h[0].attn.dropout == 0.1
    cfg.model = type(cfg.model)(**{**cfg.model.__dict__, "n_layer": 3})
    from train.loop import TrainingError

    with pytest.raises(TrainingError, match=r"another shape \(n_layer: 2 there, 3 here\); pick the matching"):
        build(cfg, Ranks())


def test_old_checkpoints_are_pruned_but_every_kth_is_kept(tmp_path):
    from model.base.folders import RunFolder
    from train import checkpoint

    for step in (100, 200, 300, 400, 500, 600):
        folder = RunFolder(tmp_path).checkpoint(step).path
        folder.mkdir(parents=True)
        (folder / COMPLETE).touch()
    half = RunFolder(tmp_path).checkpoint(700).path
    half.mkdir()  # no marker: being written, never counted, never deleted by pruning
    checkpoint.prune(tmp_path, keep_last=2, keep_every=300)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_0000300", "step_0000500", "step_0000600", "step_0000700"]


def test_tokens_per_s_counts_training_steps_not_evaluation_or_checkpoints(data, tmp_path, monkeypatch):
    import time
    import types

    from train import loop, metrics
    from train.checkpoint import Checkpointer
    from train.distributed import Ranks
    from train.loop import run

    # The loop's clock runs a thousand seconds ahead in each evaluation and checkpoint at step 2, as a
    # long evaluation or a slow disk would take; the steps take their real time. A clock, not a sleep:
    # a busy CI machine can make a tiny step take a second, never a thousand.
    pause = 1000.0
    ahead = [0.0]
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + ahead[0])
    monkeypatch.setattr(metrics, "time", clock)

    def slowed(real):
        def slow(*args, **kwargs):
            trainer = next(a for a in args if isinstance(a, loop.Trainer))
            if trainer.step == 2:
                ahead[0] += pause
            return real(*args, **kwargs)
        return slow

    monkeypatch.setattr(loop, "evaluate", slowed(loop.evaluate))
    monkeypatch.setattr(Checkpointer, "save", slowed(Checkpointer.save))
    cfg = in_process_config(data, tmp_path / "run", max_steps=4, eval_every_steps=2, checkpoint_every_steps=2)
    assert run(cfg, Ranks()) == 0
    assert ahead[0] == 2 * pause  # both ran at step 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    seconds = {r["step"]: cfg.total_batch_tokens / r["tokens_per_s"] for r in records if "loss" in r}
    assert sorted(seconds) == [1, 2, 3, 4]
    assert seconds[3] < pause / 2, seconds  # the step after them: its own seconds, not the pauses'
