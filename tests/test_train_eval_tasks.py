"""lm-evaluation-harness tasks at each evaluation of a training run (``eval.tasks``, train/eval_tasks.py).

The tasks are tests/test_harness.py's, in the harness's own formats over local JSON lines (a
LAMBADA-style task, a multiple choice, a rolling perplexity, a greedy generation), read through
``eval.include_path``. The model has dropout, so its training draws from torch's generator: a
harness that reseeded it (``simple_evaluate`` does) would change every later loss. The losses
and weights must be bit-identical with the tasks and without them, in one process and across a
SIGKILL and a rerun.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("lm_eval", reason="lm-eval is the eval extra's (make setup installs it)")

from model.base.schema import ConfigError, validate  # noqa: E402
from model.base.tokenizer import VOCAB_SIZE  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.helpers import TaskGate, kill_part_way  # noqa: E402
from tests.test_harness import task_files  # noqa: E402
from tests.test_train import data, in_process_config, losses  # noqa: E402,F401
from train import eval_tasks, loop  # noqa: E402
from train.config import EvalConfig, TrainConfig, compose  # noqa: E402
from train.distributed import Ranks  # noqa: E402

TASKS = ["t_lambada", "t_choice", "t_wikitext", "t_generate"]
KEYS = {"eval/t_lambada/acc", "eval/t_choice/acc_norm", "eval/t_wikitext/word_perplexity",
        "eval/t_generate/exact_match"}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    assert task_files(folder) == TASKS
    return folder


def config(shards: Path, out: Path, tasks: Path | None = None) -> TrainConfig:
    """Four steps of 64 tokens, evaluated at 2 and 4, of a tiny GPT-2 with dropout and GPT-2's
    vocabulary (the harness's text is GPT-2 BPE); with ``tasks``, every task on 2 examples."""
    cfg = in_process_config(shards, out, max_steps=4, eval_every_steps=2, micro_batch_size=2,
                            total_batch_tokens=64, eval_tokens=64)
    cfg.model = dataclasses.replace(cfg.model, vocab_size=VOCAB_SIZE, dropout=0.1)
    cfg.eval = EvalConfig(sample_tokens=2)
    if tasks is not None:
        cfg.eval = EvalConfig(sample_tokens=2, tasks=TASKS, task_limit=2, include_path=str(tasks))
    validate(cfg)
    return cfg


def evaluation_records(out: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_loss" in r]


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def assert_figures(record: dict[str, Any]) -> None:
    assert {k for k in record if k.startswith("eval/")} == KEYS, record
    for key in KEYS - {"eval/t_wikitext/word_perplexity"}:
        assert 0.0 <= record[key] <= 1.0, (key, record[key])
    assert record["eval/t_wikitext/word_perplexity"] > 1.0


def test_an_unknown_task_or_a_small_vocabulary_stops_at_config_validation(tasks):
    base = ["model=gpt2-tiny", "data.dir=/data/tokens", f"eval.include_path={tasks}"]
    with pytest.raises(ConfigError, match=r"^eval\.tasks: unknown to lm-evaluation-harness: t_nope \("):
        compose([*base, "eval.tasks=[t_lambada,t_nope]"])
    with pytest.raises(ConfigError, match=r"^eval\.tasks: the tasks are GPT-2 text, which model\.vocab"):
        compose([*base, "eval.tasks=[t_lambada]", "model.vocab_size=512"])
    cfg = compose([*base, "eval.tasks=[t_*]", "eval.task_limit=200"])  # a pattern, as the harness takes
    assert cfg.eval.tasks == ["t_*"] and cfg.eval.task_limit == 200


def test_the_trainer_needs_the_harness_only_for_tasks(data, tmp_path):  # noqa: F811
    """Without lm-eval installed, training runs; asking for tasks says what to install."""
    program = f"""
import sys
sys.modules["lm_eval"] = None  # as if the eval extra were not installed: importing it fails
from train.config import compose
from train.distributed import Ranks
from train.loop import run
common = ["model=gpt2-tiny", "data.dir={data}", "out_dir={tmp_path / 'run'}", "model.block_size=32",
          "micro_batch_size=4", "total_batch_tokens=128", "max_steps=2", "eval_every_steps=2",
          "eval_tokens=64", "eval.sample_tokens=2", "optim.warmup_steps=1"]
assert run(compose(common), Ranks()) == 0
try:
    compose([*common, "eval.tasks=[lambada_openai]"])
except ValueError as err:
    print(err)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == ("eval.tasks: lm-evaluation-harness is not installed: "
                                                    "pip install -e '.[eval]' (make setup installs it)")


def test_the_harness_leaves_the_generators_the_mode_and_the_loader_as_they_were(data, tasks, tmp_path):  # noqa: F811
    trainer = loop.build(config(data, tmp_path / "run", tasks), Ranks())
    trainer.model.train()
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state(),
              trainer.data.loader.state_dict())
    figures = eval_tasks.scores(trainer)
    assert set(figures) == KEYS
    assert random.getstate() == before[0]
    assert (np.random.get_state()[1] == before[1]).all()
    assert torch.equal(torch.get_rng_state(), before[2])
    assert trainer.data.loader.state_dict() == before[3]
    assert trainer.model.training


class Tracker:
    """wandb's place: what the run logs."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    def log(self, record: dict[str, Any], step: int) -> None:
        self.logged.append({**record, "step": step})

    def finish(self) -> None:
        pass


def test_the_tasks_are_reported_and_the_training_is_bit_identical(data, tasks, tmp_path, monkeypatch):  # noqa: F811
    tracker = Tracker()
    monkeypatch.setattr(loop, "open_wandb", lambda cfg, run, ranks, run_id: (tracker, run_id))
    without, with_tasks = tmp_path / "without", tmp_path / "with"
    assert loop.run(config(data, without), Ranks()) == 0
    assert loop.run(config(data, with_tasks, tasks), Ranks()) == 0
    assert losses(with_tasks) == losses(without)
    ours, theirs = weights(with_tasks, 4), weights(without, 4)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    evaluations, plain = evaluation_records(with_tasks), evaluation_records(without)
    assert [r["step"] for r in evaluations] == [2, 4]
    for record in evaluations:
        assert_figures(record)
    assert [r["val_loss"] for r in evaluations] == [r["val_loss"] for r in plain]
    assert not any(k.startswith("eval/") for r in plain for k in r)
    to_wandb = [r for r in tracker.logged if any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in to_wandb] == [2, 4]  # beside the validation loss, in the same record
    assert all("val_loss" in r for r in to_wandb)


def tiny_command(shards: Path, out: Path, *extra: str) -> list[str]:
    """``python -m train``: six steps of 64 tokens (deterministic algorithms), a checkpoint every 2,
    an evaluation every 3, of the tiny GPT-2 with dropout and GPT-2's vocabulary."""
    return [sys.executable, "-m", "train", "model=gpt2-tiny", f"data.dir={shards}", f"out_dir={out}",
            "model.block_size=32", "model.dropout=0.1", "micro_batch_size=2", "total_batch_tokens=64",
            "max_steps=6", "optim.warmup_steps=2", "optim.max_lr=1e-2", "log_every_steps=1",
            "checkpoint_every_steps=2", "eval_every_steps=3", "eval_tokens=64", "eval.sample_tokens=2",
            "deterministic=true", *extra]


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The run without tasks."""
    out = tmp_path_factory.mktemp("reference")
    done = subprocess.run(tiny_command(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_sigkill_with_tasks_on_then_rerun_equals_the_run_without_them(data, tasks, reference, tmp_path):  # noqa: F811
    out = tmp_path / "killed"
    step = random.Random().randint(3, 5)  # any step: the gate makes it land there for sure
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(step))
    with_tasks = tiny_command(data, out, f"eval.tasks=[{','.join(TASKS)}]", f"eval.include_path={tasks}",
                              "eval.task_limit=2")
    kill_part_way(with_tasks, lambda: step in gate.started("train_step"), gate)
    assert not (out / "checkpoints" / "step_0000006").exists()
    rerun = subprocess.run(with_tasks, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stdout + rerun.stderr
    assert losses(out) == losses(reference), f"killed at step {step}"
    ours, theirs = weights(out, 6), weights(reference, 6)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs), f"killed at step {step}"
    evaluations = evaluation_records(out)
    assert [r["step"] for r in evaluations] == [3, 6]
    for record in evaluations:
        assert_figures(record)


def test_one_headline_figure_per_task_or_group():
    results = {
        "results": {
            "lambada_openai": {"alias": "lambada_openai", "perplexity,none": 40.1,
                               "perplexity_stderr,none": 1.5, "acc,none": 0.33, "acc_stderr,none": 0.01},
            "hellaswag": {"acc,none": 0.29, "acc_stderr,none": "N/A", "acc_norm,none": 0.31},
            "wikitext": {"word_perplexity,none": 37.4, "byte_perplexity,none": 1.9,
                         "bits_per_byte,none": 0.9},
            "gsm8k": {"exact_match,strict-match": 0.02, "exact_match,flexible-extract": 0.03},
            "mmlu": {"acc,none": 0.25, "sample_count": {"acc,none": 14042}},
            "mmlu_stem": {"acc,none": 0.24},
            "mmlu_anatomy": {"acc,none": 0.2},
            "my_tag_group": {"alias": "my_tag_group"},  # a group without an aggregate: its tasks
            "task_a": {"bleu,none": 3.5},
            "task_b": {"f1,none": 0.5, "exact_match,none": 0.4},
        },
        "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy"],
                           "my_tag_group": ["task_a", "task_b"]},
    }
    assert eval_tasks.headline(results) == {
        "eval/lambada_openai/acc": 0.33, "eval/hellaswag/acc_norm": 0.31,
        "eval/wikitext/word_perplexity": 37.4, "eval/gsm8k/exact_match,strict-match": 0.02,
        "eval/mmlu/acc": 0.25, "eval/task_a/bleu": 3.5, "eval/task_b/exact_match": 0.4}


@pytest.mark.slow
def test_fsdp_ranks_evaluate_in_lockstep_with_tasks_and_hellaswag(data, tasks, tmp_path):  # noqa: F811
    """Two FSDP ranks: the validation windows (3) and HellaSwag's examples (7) split unevenly, so a
    rank runs forward passes it does not count (each all-gathers; a missing one would hang the other),
    and the harness runs on rank 0's whole copy of the model. Everything as one process has it."""
    from tests.test_hellaswag import FIXTURE

    extra = ["model.dropout=0.0", "model.block_size=64", "micro_batch_size=1", "total_batch_tokens=128",
             "eval_tokens=192", "optim.max_lr=3e-3", f"eval.hellaswag={FIXTURE}"]  # 64: HellaSwag's endings
    extra += [f"eval.tasks=[{','.join(TASKS)}]", f"eval.include_path={tasks}", "eval.task_limit=2"]
    one, two = tmp_path / "one", tmp_path / "fsdp"
    single = subprocess.run(tiny_command(data, one, *extra), cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    sharded = tiny_command(data, two, *extra, "parallel=fsdp")
    done = subprocess.run([*torchrun, *sharded[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fsdp: parameters, gradients and optimizer state sharded" in done.stdout + done.stderr
    expected, got = losses(one), losses(two)
    assert sorted(got) == sorted(expected), got
    assert all(abs(got[s] - expected[s]) < 1e-5 for s in got), (got, expected)
    theirs, ours = evaluation_records(one), evaluation_records(two)
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [3, 6]
    for mine, single_record in zip(ours, theirs, strict=True):
        assert mine["val_loss"] == pytest.approx(single_record["val_loss"], abs=1e-5)
        assert mine["hellaswag_acc_norm"] == single_record["hellaswag_acc_norm"]
        assert_figures(mine)
        for key in KEYS:  # the harness on rank 0's whole copy: the single process's figures
            assert mine[key] == pytest.approx(single_record[key], rel=1e-4), key
    samples = [json.loads(line) for line in (two / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["text"] for s in samples)  # rank 0's copy wrote text samples
