"""A full disk met by the SLURM driver: the resolved config and submitit's pickles written when
submitting, and a task's result that submitit cannot save when the task is done. Each is reported as
every full disk is (the stage, the path, the free space; free space, then rerun the same command),
and nothing is lost: a finished task stays finished, and the rerun skips it.

No cluster is needed: the disk is a real one (``small_disk``); submitit's job-side code runs for real
through its local executor, and its SLURM executor fails on the full disk before it would call sbatch.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from pipeline import runtime
from pipeline.config import SlurmExecutorConfig
from pipeline.executor import SlurmExecutor
from pipeline.paths import StagePaths
from pipeline.runtime import DiskFull, Stage, StageError, TaskContext
from tests.helpers import pipeline_config

# The jobs run the stage below in another process: it travels by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fill(path: Path) -> None:
    """Fill the disk that holds ``path`` to its last page."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


class Parts(Stage):
    """``tasks`` tasks, each writing a small part; with ``fill_when_done``, a task fills the disk once
    its completion marker is written, so that submitit's saving of its result meets a full disk."""

    name = "parts"

    def __init__(self, cfg: object, tasks: int = 1, fill_when_done: bool = False) -> None:
        self.tasks, self.fill_when_done = tasks, fill_when_done
        super().__init__(cfg)

    @property
    def num_tasks(self) -> int:
        return self.tasks

    def stage_config(self) -> dict:
        return {}

    def run_task(self, ctx: TaskContext) -> None:
        ctx.output("part.bin").write_bytes(bytes(range(256)) * 4)
        ctx.count("written")

    def task_committed(self, index: int) -> None:
        if self.fill_when_done:
            fill(self.workdir / "filler")


def slurm() -> SlurmExecutorConfig:
    return SlurmExecutorConfig(mem_gb=1, time_min=10)


def said(where: str, path: Path, disk: Path, size: str) -> str:
    """The regular expression of a DiskFull's message."""
    return (rf"{re.escape(where)}: no space left on device writing {re.escape(str(path))} \(0 B free of "
            rf"{re.escape(size)} on {re.escape(str(disk))}\); free space, then rerun the same command")


def test_the_config_written_before_submitting_meets_a_full_disk(tmp_path, small_disk):
    disk = small_disk(tmp_path / "disk", "256k")
    stage = Parts(pipeline_config(disk.path))
    runtime.prepare(stage)
    fill(disk.path / "filler")
    with pytest.raises(DiskFull) as caught:
        SlurmExecutor(slurm())._executor(submitit, stage, None)
    config = stage.paths.slurm_logs / "config.yaml"
    assert re.fullmatch(said("parts", config, disk.path, "256.0 KiB"), str(caught.value))
    assert list(stage.paths.slurm_logs.iterdir()) == [], "no half-written config"


def test_submitits_pickles_meet_a_full_disk(tmp_path, small_disk, monkeypatch):
    disk = small_disk(tmp_path / "disk", "512k")
    stage = Parts(pipeline_config(disk.path), tasks=2)
    # submitit's SLURM executor wants srun on the PATH; it fails on the full disk before sbatch.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    build = SlurmExecutor._executor

    def then_fill(self: SlurmExecutor, module: object, stage: Stage, after: str | None) -> object:
        executor = build(self, module, stage, after)
        fill(disk.path / "filler")  # the config is written; submitit's pickles come next
        return executor

    monkeypatch.setattr(SlurmExecutor, "_executor", then_fill)
    with pytest.raises(DiskFull) as caught:
        SlurmExecutor(slurm()).run([stage])
    assert re.fullmatch(said("parts", stage.paths.slurm_logs, disk.path, "512.0 KiB").replace(
        "writing ", "writing in "), str(caught.value))
    assert runtime.pending_tasks(stage) == [0, 1]  # nothing counted as done; the rerun submits both


class FakeJob:
    """What ``_wait`` uses of a submitit job: its id, paths, result and cancel."""

    def __init__(self, folder: Path, error: BaseException | None) -> None:
        self.job_id = "42_0"
        self.paths = SimpleNamespace(stderr=folder / "42_0_0_log.err",
                                     result_pickle=folder / "42_0_0_result.pkl")
        self.error = error
        self.cancelled = False

    def done(self) -> bool:
        return True

    def result(self) -> object:
        if self.error is not None:
            raise self.error
        return {}

    def cancel(self, check: bool = True) -> None:
        self.cancelled = True


def remote(text: str) -> str:
    """submitit's UncompletedJobError text for a job that saved no result, its log ending ``text``."""
    return ("Job 42_0 (task: 0) with path /x/42_0_0_result.pkl\nhas not produced any output (state: FAILED)\n"
            "Error stream produced:\n" + "-" * 40 + "\nsubmitit INFO - Job completed successfully\n" + text)


SUBMITIT_SAYS = ("submitit ERROR - Could not dump error:\n[Errno 28] No space left on device\n\n"
                 "because of A temporary saved file already exists.\n")  # its result, then its error
QUOTA_SAYS = "OSError: [Errno 122] Disk quota exceeded: '{disk}/parts/out.tmp'\n"


@pytest.mark.parametrize(("error", "names"), [
    (OSError(errno.ENOSPC, "No space left on device"), "result"),  # raised where the driver reads it
    (UncompletedJobError(remote(SUBMITIT_SAYS)), "result"),
    (UncompletedJobError(remote(QUOTA_SAYS)), "named"),
])
def test_a_task_result_lost_to_a_full_disk_is_reported_as_such(tmp_path, small_disk, error, names):
    disk = small_disk(tmp_path / "disk", "256k")
    stage = Parts(pipeline_config(disk.path))
    runtime.prepare(stage)
    runtime.run_task(stage, 0)  # the task is done; only its result is lost
    if isinstance(error, UncompletedJobError):
        error = UncompletedJobError(str(error).replace("{disk}", str(disk.path)))
    fill(disk.path / "filler")
    job = FakeJob(stage.paths.slurm_logs, error)
    with pytest.raises(StageError) as caught:
        SlurmExecutor(slurm())._wait([(stage, [(0, job)])], None)
    path = job.paths.result_pickle if names == "result" else disk.path / "parts" / "out.tmp"
    what = "no space left on device" if names == "result" else "disk quota exceeded"
    reason = said("parts task 0", path, disk.path, "256.0 KiB").replace("no space left on device", what)
    message = str(caught.value)
    log, stderr = re.escape(str(stage.paths.log(0))), re.escape(str(job.paths.stderr))
    assert re.fullmatch(
        rf"parts: 1 task\(s\) failed:\n  task 0 \(DiskFull: {reason}\); log: {log}; job 42_0, stderr: "
        rf"{stderr}; the task itself finished \(its completion marker is written\): a rerun skips it\n"
        r"finished tasks are kept; rerun the same command to retry the rest", message), message


def test_a_tasks_own_full_disk_keeps_its_message(tmp_path):
    stage = Parts(pipeline_config(tmp_path))
    own = ("parts task 0: no space left on device writing /d/x (0 B free of 1.0 GiB on /d); free space, "
           "then rerun the same command")
    error = FailedJobError(f"Job failed\n----------------------\nTraceback (most recent call last):\n"
                           "  ...\nOSError: [Errno 28] No space left on device\n\nThe above exception was "
                           "the direct cause of the following exception:\n\n"
                           f"pipeline.runtime.DiskFull: {own}\n----------------------\nfooter")
    with pytest.raises(StageError) as caught:
        SlurmExecutor(slurm())._wait([(stage, [(0, FakeJob(tmp_path, error))])], None)
    assert f"task 0 (pipeline.runtime.DiskFull: {own}); log: " in str(caught.value)
    assert "the task itself finished" not in str(caught.value)


def test_a_result_submitit_cannot_save_then_the_rerun_skips_the_task(tmp_path, small_disk):
    """submitit's own job-side code (its local executor: the same code a SLURM job runs) saves the
    result after the task's marker is written; the disk is full by then."""
    disk = small_disk(tmp_path / "disk", "1m")
    cfg = pipeline_config(disk.path)
    stage = Parts(cfg, fill_when_done=True)
    runtime.prepare(stage)
    executor = submitit.AutoExecutor(folder=stage.paths.slurm_logs / "%j", cluster="local")
    executor.update_parameters(timeout_min=5)
    jobs = executor.map_array(functools.partial(runtime.run_task, stage), [0])
    jobs[0]._results_timeout_s = 1  # submitit waits this long for a result file that will not come
    with pytest.raises(StageError) as caught:
        SlurmExecutor(slurm())._wait([(stage, [(0, jobs[0])])], None)
    reason = said("parts task 0", jobs[0].paths.result_pickle, disk.path, "1.0 MiB")
    message = str(caught.value)
    assert re.search(rf"task 0 \(DiskFull: {reason}\); log: .*; the task itself finished", message), message
    assert runtime.completed_tasks(stage.paths) == {0}

    (disk.path / "filler").unlink()  # space freed; the same command again
    SlurmExecutor(slurm()).run([Parts(cfg)])  # nothing left to submit: no cluster needed
    assert runtime.read_json(stage.paths.stats)["counts"] == {"written": 1}


def test_jobs_submitted_before_a_full_disk_are_cancelled(tmp_path, monkeypatch):
    """A rerun submits them again: left queued, they would race the rerun's copies for their tasks."""
    cfg = pipeline_config(tmp_path)
    first, second = Parts(cfg), Parts(cfg)
    second.name = "parts2"  # type: ignore[misc]
    second.paths = StagePaths(first.workdir, "parts2")
    queued = FakeJob(tmp_path, None)

    class Submitter:
        def __init__(self, stage: Stage) -> None:
            self.stage = stage

        def map_array(self, fn: object, pending: list[int]) -> list[FakeJob]:
            if self.stage is second:
                raise OSError(errno.ENOSPC, "No space left on device")
            return [queued]

    monkeypatch.setattr(SlurmExecutor, "_executor", lambda self, module, stage, after: Submitter(stage))
    with pytest.raises(DiskFull, match=r"^parts2: no space left on device writing "):
        SlurmExecutor(slurm()).run([first, second])
    assert queued.cancelled
