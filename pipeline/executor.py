"""Executors run the pending tasks of a list of stages: a local process pool, or SLURM arrays.

Both call the same ``runtime.run_task`` for every task, so a stage gives the same outputs under
either. SLURM is the distributed engine (through submitit); there is no home-made scheduler.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from model.base.schema import to_yaml
from pipeline import runtime
from pipeline.config import ExecutorConfig, LocalExecutorConfig, SlurmExecutorConfig
from pipeline.runtime import DiskFull, Stage, StageError

log = logging.getLogger("webtext.pipeline")


# Called once the stages' work is submitted, with the job it must wait for (None: nothing to wait
# for); returns the job it submitted, cancelled if a stage fails (pipeline/train_after.py).
Then = Callable[[str | None], str]


class Executor(ABC):
    @abstractmethod
    def run(self, stages: list[Stage], then: Then | None = None) -> None:
        """Run every pending task of ``stages`` in order; raise ``StageError`` if any fails.
        ``then`` follows the stages: after they succeed, or as a job that depends on them."""


def make_executor(cfg: ExecutorConfig) -> Executor:
    if isinstance(cfg, LocalExecutorConfig):
        return LocalExecutor(cfg)
    if isinstance(cfg, SlurmExecutorConfig):
        return SlurmExecutor(cfg)
    raise TypeError(f"no executor for {type(cfg).__name__}")


def _failure(stage: Stage, index: int, err: BaseException) -> str:
    """One line per failed task: the error (the last line of a remote traceback) and its log."""
    text = str(err)
    if "\n----------------------\n" in text:  # submitit's: a header, the remote traceback, a footer
        text = text.split("\n----------------------\n")[-2]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:  # a traceback: its last line says why
        reason = lines[-1]
    else:
        reason = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return f"task {index} ({reason}); log: {stage.paths.log(index)}"


# A full disk in the text of submitit's errors, which carry a job's failure as its log, not as the
# exception: "[Errno 28] No space left on device", "[Errno 122] Disk quota exceeded: '/data/x'".
_REMOTE_OS_ERROR = re.compile(r"\[Errno (\d+)\] [^:\n]*(?:: '([^'\n]+)')?")


def _remote_disk_full(err: BaseException) -> OSError | None:
    """The OSError for lack of space or quota that a job's error text reports, if any (one that
    names its file first)."""
    found = [OSError(int(code), os.strerror(int(code)), name or None)
             for code, name in _REMOTE_OS_ERROR.findall(str(err)) if int(code) in runtime._FULL]
    return next((e for e in found if e.filename), found[0] if found else None)


def _job_failure(stage: Stage, index: int, job: Any, err: BaseException) -> str:
    """One line for a SLURM task whose job failed. A full disk met outside the task's own code
    (submitit saving the task's result, or its error, in the job folder) is reported as every full
    disk is; the task's own ``DiskFull`` already says it. A task that finished is said to be kept."""
    line = _failure(stage, index, err)
    if "DiskFull: " not in line:
        where, saved = f"{stage.name} task {index}", job.paths.result_pickle
        full = runtime.disk_full(where, err, saved)
        if full is None and (remote := _remote_disk_full(err)) is not None:
            full = runtime.disk_full(where, remote, saved)
        if full is not None:
            line = _failure(stage, index, full)
    line += f"; job {job.job_id}, stderr: {job.paths.stderr}"
    if stage.paths.done(index).exists():  # its marker was written before submitit saved its result
        line += "; the task itself finished (its completion marker is written): a rerun skips it"
    return line


def _stage_failed(stage: Stage, failures: list[str], not_started: list[int] | None = None) -> StageError:
    lines = failures + ([f"not started, the disk being full: tasks {runtime._ranges(sorted(not_started))}"]
                        if not_started else [])
    return StageError(f"{stage.name}: {len(failures)} task(s) failed:\n  " + "\n  ".join(lines)
                      + "\nfinished tasks are kept; rerun the same command to retry the rest")


# Ctrl-C in a worker: the task it runs gets KeyboardInterrupt, and the worker refuses every task
# still in the pool's call queue, which cancel_futures cannot reach (a worker that finished or lost
# its task would otherwise start the next one, and the interrupted run would linger for it).
_interrupted = False


def _on_sigint(signum: int, frame: object) -> None:
    global _interrupted
    if _interrupted:  # the terminal's and the parent's: one interrupt is enough
        return
    _interrupted = True
    raise KeyboardInterrupt


def _init_worker(stages: tuple[Stage, ...] = ()) -> None:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # nohup or `&` in a script: keep ignoring
        signal.signal(signal.SIGINT, _on_sigint)
    for stage in stages:
        stage.warm_up()


def _run_in_worker(stage: Stage, index: int) -> dict[str, Any]:
    if _interrupted:
        raise KeyboardInterrupt(f"task {index} not started: the run was interrupted")
    return runtime.run_task(stage, index)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Drop the queued tasks and pass a Ctrl-C on to the workers (a terminal sends it to them too;
    ``kill -INT`` of the driver does not)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # (3.14: terminate_workers)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)


class LocalExecutor(Executor):
    """A process pool on this machine; stages run one after another, in the same workers (started
    once per run: a multi-pass stage such as dedup does not pay the interpreter start-up per pass)."""

    def __init__(self, cfg: LocalExecutorConfig) -> None:
        self.cfg = cfg

    def run(self, stages: list[Stage], then: Then | None = None) -> None:
        pool: ProcessPoolExecutor | None = None
        try:
            for stage in stages:
                stage.setup()
                stage.check_inputs()
                runtime.prepare(stage)
                pending = runtime.pending_tasks(stage)
                log.info("%s: %d of %d tasks to run", stage.name, len(pending), stage.num_tasks)
                if pending:
                    pool = pool or self._pool(stages)
                    self._run_tasks(pool, stage, pending)
                stats = runtime.finalize(stage)
                log.info("%s: done; %s", stage.name, stats["counts"])
        except KeyboardInterrupt:  # Ctrl-C: drop queued tasks instead of running them all first
            if pool is not None:
                _stop_pool(pool)
                pool = None
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if then is not None:
            then(None)

    def _pool(self, stages: list[Stage]) -> ProcessPoolExecutor:
        # Workers start as tasks need them (spawn and forkserver), up to this many; each warms up
        # for the run's stages as it starts.
        workers = self.cfg.workers or os.cpu_count() or 1
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(self.cfg.start_method),
                                   initializer=_init_worker, initargs=(tuple(stages),))

    def _run_tasks(self, pool: ProcessPoolExecutor, stage: Stage, pending: list[int]) -> None:
        failures: list[str] = []
        not_started: list[int] = []
        futures = {pool.submit(_run_in_worker, stage, i): i for i in pending}
        with tqdm(total=len(pending), desc=stage.name, unit="task", disable=None) as bar:
            for future in _as_completed_saying_progress(futures, stage):
                if future.cancelled():
                    not_started.append(futures[future])
                    continue
                err = future.exception()
                if err is None:
                    bar.update()
                    continue
                failures.append(_failure(stage, futures[future], err))
                if isinstance(err, BrokenProcessPool):  # a worker was killed: stop here
                    break
                if isinstance(err, DiskFull):  # queued tasks would fail too: they do not start
                    for queued in futures:
                        queued.cancel()
        if failures:
            raise _stage_failed(stage, failures, not_started)


PROGRESS_LINE_EVERY_S = 30.0


def _as_completed_saying_progress(futures: dict[Future[Any], int], stage: Stage) -> Iterator[Future[Any]]:
    """``as_completed(futures)``, logging the stage's progress line (items done of items to do, the
    rate, the time left: ``runtime.stage_progress``) every ``PROGRESS_LINE_EVERY_S`` meanwhile."""
    waiting = set(futures)
    last = time.monotonic()
    while waiting:
        finished, waiting = wait(waiting, timeout=PROGRESS_LINE_EVERY_S, return_when=FIRST_COMPLETED)
        yield from finished
        if waiting and time.monotonic() - last >= PROGRESS_LINE_EVERY_S:
            last = time.monotonic()
            log.info("%s", runtime.stage_progress(stage.paths, stage.num_tasks).line(stage.name))


def _wait_saying_progress(job: Any, stage: Stage, last: list[float]) -> None:
    """Wait for a submitit job, logging the stage's progress line every ``PROGRESS_LINE_EVERY_S``
    (``last[0]``: when the last line was logged, shared by the stage's jobs)."""
    while not job.done():
        time.sleep(1.0)  # submitit caches squeue between its own polls
        if time.monotonic() - last[0] >= PROGRESS_LINE_EVERY_S:
            last[0] = time.monotonic()
            log.info("%s", runtime.stage_progress(stage.paths, stage.num_tasks).line(stage.name))


class _SacctOnce(logging.Filter):
    """submitit warns at every poll when the cluster keeps no accounting (``sacct`` fails, as on
    the one-node test cluster); results still arrive, so say it once."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if _SacctOnce.seen:
            return False
        _SacctOnce.seen = True
        record.msg, record.args = "sacct is unavailable (no SLURM accounting); polling squeue", ()
        return True


class SlurmExecutor(Executor):
    """One SLURM job array per stage through submitit, chained with ``afterok`` dependencies."""

    def __init__(self, cfg: SlurmExecutorConfig) -> None:
        self.cfg = cfg

    def run(self, stages: list[Stage], then: Then | None = None) -> None:
        import submitit

        submitit_log = logging.getLogger("submitit")
        submitit_log.propagate = False  # it has its own handler; the root one would repeat it
        if not any(isinstance(f, _SacctOnce) for f in submitit_log.filters):
            submitit_log.addFilter(_SacctOnce())
        stages[0].setup()
        stages[0].check_inputs()  # later stages check theirs when their tasks start
        submitted: list[tuple[Stage, list[tuple[int, Any]]]] = []
        previous: str | None = None
        try:
            for stage in stages:
                runtime.prepare(stage)
                pending = runtime.pending_tasks(stage)
                if not pending:
                    log.info("%s: all %d tasks already done", stage.name, stage.num_tasks)
                    submitted.append((stage, []))
                    continue
                jobs = self._submit(submitit, stage, pending, previous)
                previous = jobs[0].job_id.split("_")[0]
                log.info("%s: submitted %d task(s) as array job %s (logs: %s)",
                         stage.name, len(jobs), previous, stage.paths.slurm_logs)
                submitted.append((stage, list(zip(pending, jobs, strict=True))))
        except DiskFull:  # left queued, the jobs would race the rerun's copies of their tasks
            _cancel(submitted)
            raise
        follower = then(previous) if then is not None else None
        if not self.cfg.wait:
            log.info("not waiting (executor.wait=false); rerun the same command when the jobs end "
                     "to collect stats")
            return
        self._wait(submitted, follower)

    def _submit(self, submitit: Any, stage: Stage, pending: list[int], after: str | None) -> list[Any]:
        """``pending`` as one array job. submitit writes the job's pickles and sbatch script in the
        job folder first: a full disk there raises ``DiskFull`` (before sbatch, for two tasks or more)."""
        with runtime._disk_full_says_so(stage.name, stage.paths.slurm_logs):
            executor = self._executor(submitit, stage, after)
            return executor.map_array(functools.partial(runtime.run_task, stage), pending)

    def _executor(self, submitit: Any, stage: Stage, after: str | None) -> Any:
        folder = stage.paths.slurm_logs
        with runtime._disk_full_says_so(stage.name, folder):
            folder.mkdir(parents=True, exist_ok=True)
            runtime._write(folder / "config.yaml", to_yaml(stage.cfg))
        additional = {"kill-on-invalid-dep": "yes", **self.cfg.additional}
        if after is not None:
            additional["dependency"] = f"afterok:{after}"
        params: dict[str, Any] = {
            "name": f"{self.cfg.job_name_prefix}-{stage.name}",
            "timeout_min": self.cfg.time_min,
            "cpus_per_task": self.cfg.cpus_per_task,
            "mem_gb": self.cfg.mem_gb,
            "slurm_array_parallelism": self.cfg.array_parallelism,
            "slurm_additional_parameters": additional,
            "slurm_setup": list(self.cfg.setup),
        }
        for key in ("partition", "account", "qos"):
            if getattr(self.cfg, key) is not None:
                params[f"slurm_{key}"] = getattr(self.cfg, key)
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        executor.update_parameters(**params)
        return executor

    def _wait(self, submitted: list[tuple[Stage, list[tuple[int, Any]]]], follower: str | None) -> None:
        for position, (stage, jobs) in enumerate(submitted):
            failures = []
            last = [time.monotonic()]
            for index, job in tqdm(jobs, desc=stage.name, unit="task", disable=None):
                try:
                    _wait_saying_progress(job, stage, last)
                    job.result()
                except Exception as err:
                    failures.append(_job_failure(stage, index, job, err))
            if failures:
                _cancel(submitted[position + 1:])
                if follower is not None:  # a plain SLURM job (sbatch), not one of submitit's
                    subprocess.run(["scancel", follower], capture_output=True, timeout=60)
                raise _stage_failed(stage, failures)
            stats = runtime.finalize(stage)
            log.info("%s: done; %s", stage.name, stats["counts"])


def _cancel(submitted: list[tuple[Stage, list[tuple[int, Any]]]]) -> None:
    """Cancel the jobs of ``submitted`` (those that ended are left as they are)."""
    for _, jobs in submitted:
        for _, job in jobs:
            job.cancel(check=False)
