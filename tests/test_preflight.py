"""The preflight (train/preflight.py): what a job was given against what its config needs, before any
step; ``micro_batch_size=auto``'s choice against the memory model; and the job lines and the table of
parallelism and micro-batch per GPU memory that the sbatch header and the docs show."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from model.memory import GIB, step_memory
from tests.conftest import REPO
from tests.test_train import VOCAB, command, data, losses  # noqa: F401 (data: the fixture)
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


# --- micro_batch_size=auto -------------------------------------------------------------------------


def fits(cfg, world: int, micro_batch: int, device_bytes: int) -> bool:
    need = step_memory(cfg.model, micro_batch, half_precision=True, world_size=world, parallel=cfg.parallel,
                       optimizer=cfg.optim.name).total
    margin = preflight.RESERVED_BYTES + preflight.FRAGMENTATION * (device_bytes - preflight.RESERVED_BYTES)
    return need + margin <= device_bytes


@pytest.mark.parametrize(("model", "parallel", "world", "gib"), [
    ("gpt2", "ddp", 8, 23.6), ("gpt2-medium", "ddp", 8, 39.4), ("gpt2-large", "fsdp", 16, 23.6),
    ("gpt2-xl", "fsdp", 32, 39.4), ("gpt2-xl", "ddp", 32, 79.1)])
def test_auto_takes_the_largest_dividing_micro_batch_that_fits(model, parallel, world, gib):
    cfg = config(model, f"parallel={parallel}")
    device_bytes = int(gib * GIB)
    chosen = preflight.choose_micro_batch(cfg, world, device_bytes)
    per_rank = cfg.total_batch_tokens // cfg.model.block_size // world
    larger = [m for m in range(chosen + 1, per_rank + 1) if per_rank % m == 0]
    assert per_rank % chosen == 0 and fits(cfg, world, chosen, device_bytes)
    assert larger and not fits(cfg, world, larger[0], device_bytes), "the next divisor does not fit"


def test_auto_refuses_what_cannot_fit_naming_the_ways_out():
    with pytest.raises(PreflightError, match="shard the model over the ranks with parallel=fsdp") as err:
        preflight.choose_micro_batch(config("gpt2-xl"), 32, int(23.6 * GIB))
    assert "GiB per rank at micro-batch 1" in str(err.value) and "smaller model" in str(err.value)
    assert "more GPUs" not in str(err.value)
    with pytest.raises(PreflightError, match="use more GPUs") as err:  # one rank: nothing to shard over
        preflight.choose_micro_batch(config("gpt2-xl", "parallel=fsdp"), 1, int(23.6 * GIB))
    assert "smaller model" in str(err.value) and "shard the model" not in str(err.value)
    assert preflight.choose_micro_batch(config("gpt2-xl", "parallel=fsdp"), 2, int(23.6 * GIB)) >= 1
    with pytest.raises(PreflightError, match="total_batch_tokens=524288"):
        preflight.choose_micro_batch(config("gpt2"), 3, int(79.1 * GIB))


def test_the_fit_table_shown_is_the_memory_models(capsys):
    assert preflight.main(["--job-lines"]) == 0
    lines, table = capsys.readouterr().out.split("\n\n")
    assert lines.splitlines() == [preflight.job_line(model) for model in SIZES]
    assert table.strip() == preflight.fit_table()
    assert table.strip() in (REPO / "docs" / "training.md").read_text()
    rows = {row.split(" | ")[0].strip("| `"): row.split(" | ")[2:] for row in table.splitlines()[2:]}
    assert [cell.split(",")[0] for cell in rows["gpt2-xl"]] == ["fsdp", "fsdp", "ddp"]
    assert all(cell.startswith("ddp") for cell in rows["gpt2"])


def test_the_batch_scripts_plan_stops_an_auto_micro_batch_that_cannot_fit(capsys, monkeypatch):
    for key in ("SLURM_NNODES", "SLURM_GPUS_ON_NODE", "SLURM_JOB_ID", "GPUS_PER_NODE"):
        monkeypatch.delenv(key, raising=False)
    tiny = ["model=gpt2-tiny", "data.dir=/x", "micro_batch_size=auto", "device=cpu"]
    assert preflight.main([*tiny, "device_memory_gb=1"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "at micro-batch 1" in out.err and "parallel=fsdp" in out.err
    assert preflight.main([*tiny, "device_memory_gb=8"]) == 0
    out = capsys.readouterr()
    chosen = preflight.choose_micro_batch(config("gpt2-tiny", "device=cpu"), 1, 8 * 10**9, "cpu")
    assert f"micro_batch_size=auto: {chosen} on 1 rank(s)" in out.err
    assert set(dict(item.split("=") for item in out.out.split())) == {
        "ranks_per_node", "gpus_on_node", "threads_per_rank", "port"}


def test_resolve_keeps_a_number_and_logs_the_auto_choice(caplog):
    import torch

    from train.distributed import Ranks

    cpu = torch.device("cpu")
    assert preflight.resolve_micro_batch(config("gpt2-xl", "micro_batch_size=2"), Ranks(), cpu) == 2
    cfg = config("gpt2-xl", "micro_batch_size=auto", "device_memory_gb=85", "dtype=bfloat16")
    with caplog.at_level("INFO", logger="webtext.train"):
        chosen = preflight.resolve_micro_batch(cfg, Ranks(), cpu)
    assert chosen == preflight.choose_micro_batch(cfg, 1, 85 * 10**9) == 8
    assert "micro_batch_size=auto: 8 (estimate" in caplog.text and "device_memory_gb=85" in caplog.text
    assert "2 GiB reserved and 10% for fragmentation" in caplog.text


def tiny_memory_gb(micro_batch: int, next_micro_batch: int) -> float:
    """A device size in GB between the need of ``micro_batch`` and that of the next, margin included."""
    cfg = compose(["model=gpt2-tiny", "data.dir=/x", "model.block_size=32", f"model.vocab_size={VOCAB}",
                   "total_batch_tokens=256", "device=cpu"])

    def device_bytes(m: int) -> float:
        need = preflight.micro_batch_memory(cfg, 1, m, "cpu").total
        return preflight.RESERVED_BYTES + need / (1 - preflight.FRAGMENTATION)

    return (device_bytes(micro_batch) + device_bytes(next_micro_batch)) / 2 / 1e9


@pytest.mark.slow
def test_python_m_train_with_an_auto_micro_batch_trains(data, tmp_path):  # noqa: F811
    auto = ["micro_batch_size=auto", f"device_memory_gb={tiny_memory_gb(4, 8):.6f}", "device=cpu",
            "max_steps=2"]
    run = subprocess.run(command(data, tmp_path, *auto), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "micro_batch_size=auto: 4 (estimate" in run.stdout + run.stderr
    assert sorted(losses(tmp_path)) == [1, 2]


def test_python_m_train_stops_an_auto_micro_batch_that_cannot_fit_before_any_step(data, tmp_path):  # noqa: F811
    too_small = ["micro_batch_size=auto", "device_memory_gb=2", "device=cpu", "max_steps=2"]
    run = subprocess.run(command(data, tmp_path, *too_small), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    assert "at micro-batch 1" in run.stdout + run.stderr and "parallel=fsdp" in run.stdout + run.stderr
    assert not (tmp_path / "metrics.jsonl").exists() or not losses(tmp_path)
