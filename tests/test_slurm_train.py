"""Training on the local SLURM cluster: slurm/train.sbatch with two torchrun "nodes"."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import TaskGate
from tests.test_train import clean, command, data, final_weights, losses  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def test_two_torchrun_nodes_train_like_one_process(data, clean, tmp_path):  # noqa: F811
    out = tmp_path / "sbatch"
    overrides = command(data, out)[3:]
    job = subprocess.run(["sbatch", "--parsable", "--wait", "--ntasks-per-node=2", "--cpus-per-task=1",
                          "--mem=2G", f"--output={tmp_path}/job.log", "slurm/train.sbatch", *overrides],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    log = (tmp_path / "job.log").read_text() if (tmp_path / "job.log").exists() else ""
    assert job.returncode == 0, job.stderr + log
    assert "2 node(s) x 1 rank(s)" in log and "training finished" in log
    assert "requeuing" not in log, "a job that ends normally does not requeue"
    expected = losses(clean)
    got = losses(out)
    assert sorted(got) == list(range(1, 13))
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], abs=1e-5), step
    assert (out / "checkpoints" / "step_0000012" / "rng_rank_1.pt").exists()


def job_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def node_state() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def until(condition: Callable[[], bool], log: Path, limit_s: float = 300) -> None:
    """Wait for an event of the job; the limit only keeps a broken job from hanging the suite."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            text = log.read_text() if log.exists() else ""
            raise AssertionError(f"the awaited state never came; job log:\n{text}")
        time.sleep(0.1)


def preempt(job: str, gate: TaskGate, log: Path, held: int, times: int) -> None:
    """With step ``held`` held at the gate, send what SLURM sends the batch shell 120 s before the
    time limit (``--signal=B:USR1@120``), then let steps go one at a time until the job requeues:
    the run cannot get past the signal unseen. Then start the requeued job at once (slurmctld would
    wait about 120 s), with the steps held again."""
    until(lambda: held in gate.started("train_step"), log)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True, timeout=60)
    until(lambda: log.read_text().count("SIGUSR1: the ranks finish") == times, log)
    step = held
    while log.read_text().count("requeuing") < times:
        gate.release("train_step", step)
        until(lambda s=step: s + 1 in gate.started("train_step")
              or log.read_text().count("requeuing") == times, log)
        step += 1
    until(lambda: job_state(job) == "PENDING" and node_state() == "idle", log)
    # slurmd refuses ("Job credential revoked") a start whose credential is not at least a whole
    # second newer than the revocation of the job's previous run: a rule on the clock, not a race
    requeued = time.time()
    until(lambda: time.time() >= requeued + 2, log)
    for mark in [*gate.folder.glob("train_step.*.started"), *gate.folder.glob("train_step.*.go")]:
        mark.unlink()  # the requeued run announces its steps afresh, and is held at its first
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True, timeout=60)


def test_preempted_twice_checkpoints_requeues_and_resumes_exactly(data, clean, tmp_path):  # noqa: F811
    out, log = tmp_path / "preempted", tmp_path / "job.log"
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(6))
    submitted = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=2G", f"--output={log}",
                                "slurm/train.sbatch", *command(data, out)[3:]],
                               cwd=REPO, capture_output=True, text=True, timeout=120, env=gate.env())
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        preempt(job, gate, log, held=6, times=1)
        # the requeued run resumes; held at its first step, before any new checkpoint, it is preempted again
        newest = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
        preempt(job, gate, log, held=newest, times=2)
        gate.open("train_step")
        until(lambda: job_state(job) == "" and "training finished" in log.read_text(), log, limit_s=600)
    finally:
        subprocess.run(["scancel", job], timeout=60)
    text = log.read_text()
    assert "start 2 (requeued 1 time(s)" in text and "start 3 (requeued 2 time(s)" in text, text
    assert text.count("; requeuing (requeue") == 2 and text.count("checkpoint written; rerun") == 2
    assert losses(out) == losses(clean), "bit-identical at the same world size, no step missing or repeated"
    ours, theirs = final_weights(out), final_weights(clean)
    assert all((ours[k] == theirs[k]).all() for k in ours)


def test_a_submitit_sweep_runs_one_job_per_combination_each_in_its_own_out_dir(data, tmp_path):  # noqa: F811
    import yaml

    out = tmp_path / "runs"
    overrides = [o for o in command(data, out)[3:] if not o.startswith(("optim.max_lr", "max_steps"))]
    sweep = subprocess.run([sys.executable, "-m", "train", "-m", "hydra/launcher=slurm",
                            f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.launcher.mem_gb=1", *overrides,
                            "max_steps=4", "optim.max_lr=3e-3,1e-2"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["0", "1"]
    rates = set()
    for job in ("0", "1"):
        assert sorted(losses(out / job)) == [1, 2, 3, 4]
        saved = yaml.safe_load((out / job / "checkpoints" / "step_0000004" / "config.yaml").read_text())
        assert saved["out_dir"] == str(out / job)
        rates.add(saved["optim"]["max_lr"])
    assert rates == {3e-3, 1e-2}
