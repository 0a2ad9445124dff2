"""``train_after``: the training job the pipeline submits after tokenize (no cluster needed here;
tests/test_slurm_train.py runs the chain on the local SLURM cluster)."""

from __future__ import annotations

import pytest

from pipeline import train_after
from pipeline.runtime import StageError
from tests.conftest import run_cli
from tests.helpers import pipeline_config


def config(tmp_path, **fields):
    cfg = pipeline_config(tmp_path)
    for key, value in fields.items():
        setattr(cfg, key, value)
    return cfg


def test_the_job_trains_on_the_workdirs_tokens_after_the_tokenize_job(tmp_path):
    cfg = config(tmp_path, train_after="model=gpt2 out_dir=runs/124m 'eval.prompts=[a b]'",
                 train_sbatch="--nodes=2 --time=48:00:00")
    argv = train_after.command(cfg, after="812")
    script = argv.index(str(train_after.SCRIPT))
    assert argv[0] == "sbatch" and argv[script - 2:script] == ["--nodes=2", "--time=48:00:00"]
    assert "--dependency=afterok:812" in argv[:script] and "--kill-on-invalid-dep=yes" in argv[:script]
    assert f"--output={tmp_path.resolve()}/logs/slurm/train/%j.out" in argv[:script]
    assert argv[script + 1:] == [f"data.dir={tmp_path.resolve()}/tokens", "model=gpt2", "out_dir=runs/124m",
                                 "eval.prompts=[a b]"]
    assert not any(a.startswith("--dependency") for a in train_after.command(cfg, after=None))


def test_a_data_dir_of_the_users_own_wins(tmp_path):
    cfg = config(tmp_path, train_after="data.dir=/data/owt/tokens model=gpt2")
    argv = train_after.command(cfg, after=None)
    assert [a for a in argv if a.startswith("data.dir=")] == ["data.dir=/data/owt/tokens"]


def test_without_sbatch_or_tokens_it_stops_before_any_work(tmp_path, monkeypatch):
    cfg = config(tmp_path, train_after="model=gpt2", stages=["publish"])
    monkeypatch.setattr(train_after.shutil, "which", lambda name: None)
    with pytest.raises(StageError, match="sbatch, which is not on PATH"):
        train_after.check(cfg)
    monkeypatch.setattr(train_after.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(StageError, match="add tokenize to stages"):
        train_after.check(cfg)
    cfg.stages = ["publish", "tokenize"]
    train_after.check(cfg)  # tokenize runs first: nothing to check yet


def test_the_cli_names_the_problem(tmp_path):
    run = run_cli("pipeline", f"workdir={tmp_path}", "stages=[publish]", 'train_after="model=gpt2"',
                  "executor=local")
    assert run.returncode != 0
    assert "add tokenize to stages" in run.stderr or "sbatch, which is not on PATH" in run.stderr, run.stderr
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "logs" / "slurm" / "train").exists()


def test_a_bad_training_config_stops_the_pipeline_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(train_after.shutil, "which", lambda name: "/usr/bin/" + name)
    cfg = config(tmp_path, train_after="model=gpt2-tiny max_steps=20", stages=["publish", "tokenize"])
    # (gpt2-tiny keeps the default warmup of 700 steps)
    with pytest.raises(StageError, match="optim.warmup_steps: 700 exceeds max_steps=20"):
        train_after.check(cfg)
    cfg.train_after = "model=gpt2-tny"
    with pytest.raises(StageError, match="Could not find 'model/gpt2-tny'"):
        train_after.check(cfg)
    cfg.train_after = "model=gpt2-tiny max_steps=20 optim.warmup_steps=2"
    train_after.check(cfg)
