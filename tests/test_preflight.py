"""The preflight (train/preflight.py): what a job was given against what its config needs, before any
step; and the job lines per size that the sbatch header and the docs show."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from train import preflight
from train.config import compose
from train.preflight import Allocation, PreflightError, check

SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def config(model: str, *overrides: str):
    return compose([f"model={model}", "data.dir=/data/owt/tokens", *overrides])


def no_gpu(ranks: int = 1, cpus: int = 8, slurm_gpus: int = 0) -> Allocation:
    return Allocation(cuda_devices=0, slurm_gpus=slurm_gpus, ranks_per_node=ranks, cpus=cpus)


@pytest.mark.parametrize("model", SIZES)
def test_a_gpu_sized_model_with_no_gpu_visible_stops_naming_both_fixes(model):
    with pytest.raises(PreflightError, match="would train on the CPU") as err:
        check(config(model), no_gpu())
    assert "--gpus-per-node" in str(err.value) and "device=cpu" in str(err.value)
    for ranks in (1, 2, 8):  # on every rank count
        with pytest.raises(PreflightError):
            check(config(model), no_gpu(ranks=ranks, cpus=64))


def test_small_models_and_device_cpu_train_on_the_cpu():
    assert check(config("gpt2-mini"), no_gpu()) == []
    assert check(config("gpt2-tiny"), no_gpu()) == []
    assert check(config("gpt2", "device=cpu"), no_gpu()) == [], "said on purpose"


def test_gpus_slurm_gave_but_torch_cannot_see_name_the_cuda_build():
    with pytest.raises(PreflightError, match="sees none: install torch's CUDA build") as err:
        check(config("gpt2-tiny"), no_gpu(slurm_gpus=2))
    assert "--index-url https://download.pytorch.org/whl/cu126" in str(err.value)
    assert check(config("gpt2-tiny", "device=cpu"), no_gpu(slurm_gpus=2)) == []


def test_device_cuda_without_a_gpu_and_more_ranks_than_gpus_stop():
    with pytest.raises(PreflightError, match="device=cuda but no GPU is visible"):
        check(config("gpt2-tiny", "device=cuda"), no_gpu())
    with pytest.raises(PreflightError, match="4 ranks per node but 2 GPU"):
        check(config("gpt2"), Allocation(cuda_devices=2, slurm_gpus=2, ranks_per_node=4, cpus=32))
    assert check(config("gpt2"), Allocation(cuda_devices=8, slurm_gpus=8, ranks_per_node=8, cpus=64)) == []


def test_more_ranks_than_cpus_is_a_warning_naming_cpus_per_task():
    [warning] = check(config("gpt2", "device=cpu"), no_gpu(ranks=8, cpus=1))
    assert "8 ranks per node share 1 CPU(s)" in warning and "--cpus-per-task=8" in warning
    assert Allocation(cuda_devices=8, slurm_gpus=8, ranks_per_node=8, cpus=64).threads_per_rank == 8
    assert no_gpu(ranks=8, cpus=1).threads_per_rank == 1


def test_the_allocation_from_slurms_variables(monkeypatch):
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "SLURM_CPUS_PER_TASK",
                "SLURM_CPUS_ON_NODE", "SLURM_NTASKS_PER_NODE", "GPUS_PER_NODE"):
        monkeypatch.delenv(key, raising=False)
    assert preflight.slurm_gpus_on_node() == 0 and preflight.ranks_per_node(0) == 1
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert preflight.slurm_gpus_on_node() == 3  # only the device list: an older SLURM
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "4")
    assert preflight.slurm_gpus_on_node() == 4 and preflight.ranks_per_node(4) == 4
    monkeypatch.setenv("GPUS_PER_NODE", "2")
    assert preflight.ranks_per_node(4) == 2
    monkeypatch.setenv("GPUS_PER_NODE", "two")
    with pytest.raises(PreflightError, match="GPUS_PER_NODE='two'"):
        preflight.ranks_per_node(4)
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "16")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    assert preflight.allocated_cpus() == 8
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "12")
    assert preflight.allocated_cpus() == 12


def test_python_m_train_stops_a_gpu_sized_model_on_a_cpu_machine_at_once(tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "train", "model=gpt2", f"data.dir={tmp_path}",
                           f"out_dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert "would train on the CPU" in done.stdout + done.stderr and "device=cpu" in done.stdout + done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_batch_scripts_plan_and_a_free_port():
    plan = subprocess.run([sys.executable, "-m", "train.preflight", "model=gpt2-tiny", "data.dir=/x"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    fields = dict(item.split("=") for item in plan.stdout.split())
    assert set(fields) == {"ranks_per_node", "gpus_on_node", "threads_per_rank", "port"}
    port = subprocess.run([sys.executable, "-m", "train.preflight", "--free-port"], cwd=REPO,
                          capture_output=True, text=True, timeout=120).stdout
    with socket.socket() as s:
        s.bind(("", int(port)))  # free: it binds
    bad = subprocess.run([sys.executable, "-m", "train.preflight", "model=gpt2", "data.dir=/x"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == "" and "--gpus-per-node" in bad.stderr


def test_the_job_lines_shown_are_the_memory_models():
    header = (REPO / "slurm" / "train.sbatch").read_text()
    docs = (REPO / "docs" / "training.md").read_text()
    for model in SIZES:
        line = preflight.job_line(model)
        assert f"#   {line}\n" in header, line
        assert line in docs, line
        assert preflight.job_line(model, gres=True) in docs, "the --gres form"
