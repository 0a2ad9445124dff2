"""Training on the local SLURM cluster: slurm/train.sbatch with two torchrun "nodes"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import TaskGate, job_state, run_batch_job, until
from tests.test_train import clean, command, data, final_weights, losses  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def threads_as_clean(env: dict[str, str]) -> dict[str, str]:
    """The CPU threads of the ``clean`` run (this process's environment, or torch's default of one
    per core), which train.sbatch keeps when the environment sets them: bit-identical comparisons
    need the same reduction order, so the same thread count."""
    return {**env, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))}


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_torchrun_nodes_train_like_one_process(parallel, data, clean, tmp_path):  # noqa: F811
    """Two SLURM tasks, each a torchrun "node" of one rank, under DDP or FSDP2 (sharded over the two)."""
    out = tmp_path / "sbatch"
    overrides = [*command(data, out)[3:], f"parallel={parallel}"]
    _, status = run_batch_job(["--ntasks-per-node=2", "--cpus-per-task=1", "--mem=2G",
                               f"--output={tmp_path}/job.log", "slurm/train.sbatch", *overrides],
                              tmp_path / "job.log", cwd=REPO)
    log = (tmp_path / "job.log").read_text() if (tmp_path / "job.log").exists() else ""
    assert status == 0, log
    assert "2 node(s) x 1 rank(s) (0 GPU(s) per node)" in log and "training finished" in log
    assert "requeuing" not in log, "a job that ends normally does not requeue"
    assert f"the most of 2 rank(s), {parallel})" in log  # the state held per rank, measured
    expected = losses(clean)
    got = losses(out)
    assert sorted(got) == list(range(1, 13))
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], abs=1e-5), step
    assert (out / "checkpoints" / "step_0000012" / "rng_rank_1.pt").exists()


@pytest.mark.parametrize("gpus", ["--gpus-per-node=2", "--gres=gpu:2", "--gpus=2"])
def test_ranks_follow_the_gpus_slurm_gave_however_asked(gpus, data, clean, tmp_path):  # noqa: F811
    """The local cluster's two generic GPUs (slurm/local-cluster.sh; no GPU behind them, so
    device=cpu): one rank per GPU on the node, CPU threads per rank from the CPUs per task, and the
    two ranks train like one process with the matching accumulation."""
    out, log = tmp_path / "run", tmp_path / "job.log"
    cpus = 1 if gpus.startswith("--gres") else 2  # one CPU for two ranks: the preflight's warning
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # threads from the CPUs
    _, status = run_batch_job([gpus, f"--cpus-per-task={cpus}", "--mem=2G", f"--output={log}",
                               "slurm/train.sbatch", *command(data, out, "device=cpu")[3:]], log, cwd=REPO,
                              env=env)
    text = log.read_text() if log.exists() else ""
    assert status == 0, text
    threads = f"{max(1, cpus // 2)} CPU thread(s) per rank"
    assert f"1 node(s) x 2 rank(s) (2 GPU(s) per node), {threads} (CPUs per task / ranks)" in text, text
    assert f"2 rank(s) on cpu (cpu), {threads}" in text, "the ranks compute with those threads"
    warned = "2 ranks per node share 1 CPU(s)" in text and "--cpus-per-task=2" in text
    assert warned == (cpus == 1), text
    for step, loss in losses(out).items():
        assert loss == pytest.approx(losses(clean)[step], abs=1e-5), step
    assert sorted(losses(out)) == list(range(1, 13))
    assert (out / "checkpoints" / "step_0000012" / "rng_rank_1.pt").exists(), "a run of two ranks"


def test_a_gpu_sized_model_without_a_gpu_stops_at_the_preflight(data, tmp_path):  # noqa: F811
    """README's line as a new user types it, with no GPU asked for: the job ends within a minute,
    saying what to ask for, instead of training gpt2 on one CPU core for the whole allocation.
    Submitted from another folder: the script finds its checkout's .venv."""
    out, log = tmp_path / "run", tmp_path / "job.log"
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    _, status = run_batch_job(["--mem=2G", f"--output={log}", str(REPO / "slurm" / "train.sbatch"),
                               "model=gpt2", f"data.dir={data}", f"out_dir={out}"], log, limit_s=120,
                              cwd=tmp_path, env=env)
    took = time.monotonic() - started
    text = log.read_text()
    assert status == 1 and took < 60, (took, text)
    assert "would train on the CPU" in text and "--gpus-per-node" in text and "device=cpu" in text, text
    assert "preflight failed (above): not starting" in text and "requeuing" not in text
    assert not out.exists(), "nothing was trained or written"


def burn_job_ids(until_id: int) -> None:
    """Submit (held) and cancel throwaway jobs until the next job id is ``until_id``."""
    while True:
        got = subprocess.run(["sbatch", "--parsable", "--hold", "--mem=10M", "--wrap", "true"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        subprocess.run(["scancel", got], timeout=60, check=True)
        if int(got) >= until_id - 1:
            return


def test_two_jobs_sharing_a_node_whose_ids_collide_mod_1000_rendezvous_apart(data, clean, tmp_path):  # noqa: F811
    """Jobs N and N + 1000 on one node, both running at once: the old port, 29500 + id mod 1000, was
    the same for both. Each now takes a port free on its first node, and both train exactly."""
    gates, logs, outs, jobs = [], [], [], []
    try:
        for k in range(2):
            if k:
                burn_job_ids(int(jobs[0]) + 1000)
            gate = TaskGate(tmp_path / f"gate{k}", hold=("train_step",))
            log, out = tmp_path / f"job{k}.log", tmp_path / f"run{k}"
            submitted = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=2G",
                                        f"--output={log}", "slurm/train.sbatch", *command(data, out)[3:]],
                                       cwd=REPO, capture_output=True, text=True, timeout=120,
                                       env=threads_as_clean(gate.env()))
            assert submitted.returncode == 0, submitted.stderr
            gates.append(gate), logs.append(log), outs.append(out), jobs.append(submitted.stdout.strip())
        assert int(jobs[1]) - int(jobs[0]) == 1000, jobs
        for gate, log in zip(gates, logs, strict=True):  # both at their first step: running together
            until(lambda g=gate: 0 in g.started("train_step"), log)
        for gate in gates:
            gate.open("train_step")
        for job, log in zip(jobs, logs, strict=True):
            until(lambda j=job: job_state(j) == "", log)
    finally:
        subprocess.run(["scancel", *jobs], timeout=60)
    ports = []
    for log, out in zip(logs, outs, strict=True):
        text = log.read_text()
        assert "training finished" in text, text
        ports.append(text.split("rendezvous ")[1].split()[0].rsplit(":", 1)[1])
        assert losses(out) == losses(clean)
    assert ports[0] != ports[1], ports


def node_state() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


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
                               cwd=REPO, capture_output=True, text=True, timeout=120,
                               env=threads_as_clean(gate.env()))
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


def test_a_submitit_sweep_runs_one_ddp_job_per_combination_each_in_its_own_out_dir(data, tmp_path):  # noqa: F811
    """Two combinations, each a job of two tasks: the tasks are the DDP ranks (the process group set
    up from SLURM's variables), and each job trains like one process with the matching accumulation."""
    import yaml

    out = tmp_path / "runs"
    overrides = [o for o in command(data, out)[3:] if not o.startswith(("optim.max_lr", "max_steps"))]
    sweep = subprocess.run([*sweep_command(tmp_path / "sweep"), *overrides, "device=cpu",
                            "max_steps=4", "optim.max_lr=3e-3,1e-2"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["0", "1"]
    rates = {}
    for job in ("0", "1"):
        assert sorted(losses(out / job)) == [1, 2, 3, 4]
        final = out / job / "checkpoints" / "step_0000004"
        saved = yaml.safe_load((final / "config.yaml").read_text())
        assert saved["out_dir"] == str(out / job)
        assert (final / "rng_rank_1.pt").exists(), "a job of two tasks is one run of two ranks"
        rates[saved["optim"]["max_lr"]] = losses(out / job)
    assert sorted(rates) == [3e-3, 1e-2]
    single = [o for o in command(data, tmp_path / "alone") if not o.startswith(("optim.max_lr", "max_steps"))]
    alone = subprocess.run([*single, "max_steps=4", "optim.max_lr=1e-2"], cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr
    for step, loss in losses(tmp_path / "alone").items():
        assert rates[1e-2][step] == pytest.approx(loss, abs=1e-5), step


def sweep_command(folder: Path) -> list[str]:
    """The README's sweep line on the local cluster: the launcher's GPU defaults (one task per GPU)
    with the cluster's two generic GPUs, sized to its two CPUs and memory."""
    return [sys.executable, "-m", "train", "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={folder}",
            "hydra.launcher.gpus_per_node=2", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def test_a_sweep_job_signalled_before_its_time_limit_checkpoints_requeues_and_resumes(data, clean,  # noqa: F811
                                                                                     tmp_path):
    """What SLURM does to a sweep's job 120 s before its time limit: USR2 to every task (submitit's
    ``--signal=USR2@120``). The trainer finishes the step, checkpoints, and submitit requeues the job
    through the launcher; the requeued job resumes from that step. Its two ranks' losses equal the
    uninterrupted single process's (1e-5), no step missing or repeated."""
    out, gate = tmp_path / "runs", TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(6))
    sweep = subprocess.Popen([*sweep_command(tmp_path / "sweep"), *command(data, out)[3:], "device=cpu"],
                             cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=threads_as_clean(gate.env()))
    log = tmp_path / "sweep" / "job.log"  # (until() shows it on a failure: the jobs' logs, gathered)
    try:
        until(lambda: 6 in gate.started("train_step"), log)
        job = next((tmp_path / "sweep" / ".submitit").glob("[0-9]*")).name
        subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=60)
        step = 6
        while job_state(job) not in ("PENDING", "REQUEUED"):
            gate.release("train_step", step)  # steps one at a time: the stop cannot slip by unseen
            until(lambda s=step: s + 1 in gate.started("train_step") or job_state(job) != "RUNNING", log)
            step += 1
        until(lambda: job_state(job) == "PENDING" and node_state() == "idle", log)
        requeued = time.time()  # slurmd's rule on a requeued job's credential: a whole second newer
        until(lambda: time.time() >= requeued + 2, log)
        gate.open("train_step")
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True, timeout=60)
        printed = sweep.communicate(timeout=600)[0]
    finally:
        sweep.kill()
    logs = "".join(p.read_text() for p in sorted((tmp_path / "sweep" / ".submitit").rglob("*_0_log.*")))
    assert sweep.returncode == 0, printed[-3000:] + logs[-3000:]
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, logs[-3000:]
    checkpointed = int(logs.split("stopped by SIGUSR2 after step ")[1].split(";")[0])
    assert 6 <= checkpointed < 12 and f"resumed from {out / '0' / 'checkpoints'}" in logs, logs[-3000:]
    got, expected = losses(out / "0"), losses(clean)
    assert sorted(got) == list(range(1, 13)), "no step missing or repeated"
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], abs=1e-5), step


def test_pipeline_then_training_from_a_sample_dump_to_a_checkpoint(tmp_path):
    """README's chain on the cluster: the corpus stages as job arrays, then slurm/train.sbatch with
    two torchrun "nodes", submitted by the pipeline with an afterok dependency on the tokenize job."""
    from pipeline.sample import domains, write_dump
    from pipeline.sample.server import serve

    server = serve(0)  # the sample's pages; the SLURM tasks run on this machine
    try:
        port = server.server_address[1]
        dump = write_dump(tmp_path / "dumps", port)
        hosts = ",".join(f"'{d}=127.0.0.1'" for d in domains())
        work, out = tmp_path / "work", tmp_path / "run"
        train = (f"model=gpt2-tiny out_dir={out} model.block_size=32 micro_batch_size=2 "
                 "total_batch_tokens=128 max_steps=6 optim.warmup_steps=1 checkpoint_every_steps=3 "
                 "eval_every_steps=3 eval_tokens=64 eval.sample_tokens=4 log_every_steps=1")
        run = subprocess.run(
            [sys.executable, "-m", "pipeline", f"workdir={work}", f"source.files=[{dump}]",
             "stages=[links,fetch,extract,dedup,publish,tokenize]", "links.partitions=2",
             "fetch.allow_private=true", f"fetch.hosts=[{hosts}]", "dedup.components_partitions=1",
             "dedup.bucket_ranges=1", "dedup.max_rounds=2", "tokenize.tasks=2", "tokenize.val_fraction=0.25",
             "executor=slurm", "executor.mem_gb=1", "executor.time_min=10",
             f'train_after="{train}"', 'train_sbatch="--ntasks-per-node=2 --mem=2G"'],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)  # anywhere, not only the checkout
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        printed = run.stdout + run.stderr
        job = (work / "logs" / "slurm" / "train" / "job_id").read_text().strip()
        token_job = next((work / "logs" / "slurm" / "tokenize").glob("*_0")).name.split("_")[0]
        assert f"train: submitted job {job} to start after job {token_job} succeeds" in printed, printed
        log = work / "logs" / "slurm" / "train" / f"{job}.out"
        until(lambda: job_state(job) == "" and log.exists(), log, limit_s=600)
    finally:
        server.shutdown()
    text = log.read_text()
    assert "2 node(s) x 1 rank(s)" in text and "training finished" in text, text
    assert sorted(losses(out)) == list(range(1, 7))
    final = out / "checkpoints" / "step_0000006"
    assert (final / "COMPLETE").exists() and (final / "rng_rank_1.pt").exists()
    assert json.loads((work / "tokens" / "stats.json").read_text())["counts"]["kept"] >= 6

    again = subprocess.run(  # the same command again: every stage is done; one more (resuming) job
        [sys.executable, "-m", "pipeline", *run.args[3:]], cwd=tmp_path, capture_output=True, text=True,
        timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tokenize: all 2 tasks already done" in again.stdout + again.stderr
    second = (work / "logs" / "slurm" / "train" / "job_id").read_text().strip()
    assert second != job and "to start after" not in again.stdout + again.stderr
    until(lambda: job_state(second) == "", log, limit_s=300)
    assert "training finished" in (work / "logs" / "slurm" / "train" / f"{second}.out").read_text()
    assert sorted(losses(out)) == list(range(1, 7)), "the finished run was not trained again"


def test_requeues_stop_at_max_requeues(data, tmp_path):  # noqa: F811
    """MAX_REQUEUES=0: the signal still gets its checkpoint, but the job ends instead of requeuing."""
    out, log = tmp_path / "bounded", tmp_path / "job.log"
    gate = TaskGate(tmp_path / "gate", hold=("train_step",))
    gate.release("train_step", *range(3))
    submitted = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=2G", f"--output={log}",
                                "slurm/train.sbatch", *command(data, out)[3:]],
                               cwd=REPO, capture_output=True, text=True, timeout=120,
                               env={**gate.env(), "MAX_REQUEUES": "0"})
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        until(lambda: 3 in gate.started("train_step"), log)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True, timeout=60)
        until(lambda: "SIGUSR1: the ranks finish" in log.read_text(), log)
        gate.open("train_step")
        until(lambda: job_state(job) == "", log)
    finally:
        subprocess.run(["scancel", job], timeout=60)
    text = log.read_text()
    assert "MAX_REQUEUES reached, not requeuing" in text and "; requeuing" not in text, text
    assert "start 2" not in text and "checkpoint written; rerun" in text
    steps = sorted(losses(out))
    assert steps == list(range(1, steps[-1] + 1)) and 3 <= steps[-1] < 12
    assert (out / "checkpoints" / f"step_{steps[-1]:07d}" / "COMPLETE").exists()
