"""The stage runtime: what every stage gets for free, whichever executor runs it.

A stage is a function of (config, task index, task count) -> output shards. Around a stage's
``run_task`` the runtime

- skips a task whose completion marker exists (an interrupted run resumes by rerunning it);
- hands the task a private temporary folder; outputs are written there and renamed into the stage
  folder only when the task has finished, then the completion marker is written: a task that died
  leaves no half-written shard behind;
- logs each attempt to ``logs/<stage>/task_NNNNN.log``;
- counts every kept item and every drop or failure by reason, into the marker, then ``stats.json``;
- saves the resolved config beside the outputs and refuses to mix outputs made with another
  stage config or task count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from model.base.files import atomic_write
from model.base.gate import hold_at_gate
from model.base.schema import diff, to_dict, to_yaml
from pipeline.config import PipelineConfig
from pipeline.paths import StagePaths

log = logging.getLogger("webtext.pipeline")
T = TypeVar("T")


class StageError(RuntimeError):
    """A stage cannot run: missing inputs, a changed config, failed tasks. The message says why."""


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


@dataclass
class TaskContext:
    """What a task sees: its index, a place for outputs, counters and a logger."""

    index: int
    tasks: int
    paths: StagePaths
    logger: logging.Logger
    counts: Counter[str] = field(default_factory=Counter)
    metrics: Counter[str] = field(default_factory=Counter)

    @property
    def tmp(self) -> Path:
        return self.paths.tmp(self.index)

    def output(self, relpath: str) -> Path:
        """Path to write the output ``relpath`` (relative to the stage folder) to.

        The file is written in the task's temporary folder and moved into the stage folder when
        the task finishes.
        """
        path = self.tmp / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def count(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items under ``reason`` (``kept`` or a snake_case drop/failure reason)."""
        if n:
            self.counts[reason] += n

    def add(self, metric: str, value: float) -> None:
        """Add to a summed metric (tokens, bytes, ...) reported beside the counts."""
        self.metrics[metric] += value

    def progress(self, items: Iterable[T], total: int | None, unit: str) -> Iterator[T]:
        """Iterate ``items``, logging progress and rate at most every 10 seconds."""
        start = last = time.monotonic()
        for done, item in enumerate(items, 1):
            yield item
            now = time.monotonic()
            if now - last >= 10:
                last = now
                rate = done / (now - start)
                of = f"/{total:,}" if total is not None else ""
                self.logger.info("%s%s %s (%.1f %s/s)", f"{done:,}", of, unit, rate, unit)


class Stage(ABC):
    """One step of the data flow. Subclasses set ``name`` and implement ``run_task``.

    The heuristics a stage applies belong in pure functions its ``run_task`` calls; the stage itself
    does I/O, sharding and counting.
    """

    name: ClassVar[str]
    # True: a killed attempt's temporary folder is kept for the next attempt, which continues from
    # it (the stage then owns its consistency); False: the next attempt starts from scratch.
    resumes_within_task: ClassVar[bool] = False

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.workdir = Path(cfg.workdir).resolve()
        self.paths = StagePaths(self.workdir, self.name)

    @property
    @abstractmethod
    def num_tasks(self) -> int:
        """How many tasks the stage is split into."""

    @abstractmethod
    def stage_config(self) -> Any:
        """What determines this stage's outputs (a config dataclass or a dict; compared on resume)."""

    def setup(self) -> None:
        """Driver-side work before the stage is prepared (runs once per run, not per task)."""

    def check_inputs(self) -> None:
        """Raise ``StageError`` when the stage's inputs are missing or incomplete."""

    def warm_up(self) -> None:
        """Worker-side: load what every task of the stage needs (a tokenizer, a model) once, when
        a local worker process starts, rather than in its first task."""

    def summarize(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The stage's ``stats.json`` from the summed task stats; stages may add reports."""
        return stats

    @abstractmethod
    def run_task(self, ctx: TaskContext) -> None:
        """Process this task's slice of the input, writing outputs through ``ctx.output``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workdir={str(self.workdir)!r}, tasks={self.num_tasks})"


# --- the stage lifecycle: prepare, run tasks, finalize ---------------------------------------------


def completed_tasks(paths: StagePaths) -> set[int]:
    if not paths.done_dir.is_dir():
        return set()
    return {int(p.stem) for p in paths.done_dir.glob("*.json")}


def pending_tasks(stage: Stage) -> list[int]:
    done = completed_tasks(stage.paths)
    return [i for i in range(stage.num_tasks) if i not in done]


def prepare(stage: Stage) -> None:
    """Before any task runs: refuse to mix configs, then save the resolved config."""
    config = stage.stage_config()
    meta = {"stage": stage.name, "tasks": stage.num_tasks,
            "config": config if isinstance(config, dict) else to_dict(config)}
    if stage.paths.meta.exists() and completed_tasks(stage.paths):
        old = read_json(stage.paths.meta)
        made_with = dict(old["config"])
        if dataclasses.is_dataclass(config):  # settings added since: the outputs had their defaults
            for key, default in to_dict(type(config)()).items():
                made_with.setdefault(key, default)
        changes = diff({"tasks": old["tasks"], **made_with},
                       {"tasks": meta["tasks"], **meta["config"]})
        if changes:
            raise StageError(
                f"{stage.paths.root} holds outputs of {stage.name} made with another config "
                f"({'; '.join(changes)}). Rerun with the old values, or use a new workdir "
                f"(or delete {stage.paths.root}) to start over."
            )
    # Outputs half-committed by tasks that no longer exist (the task count changed, nothing done).
    for manifest in stage.paths.commit_dir.glob("*.json") if stage.paths.commit_dir.is_dir() else ():
        if int(manifest.stem) >= stage.num_tasks:
            _undo_commit(stage.paths, int(manifest.stem))
    atomic_write(stage.paths.meta, dump_json(meta))
    atomic_write(stage.paths.config, to_yaml(stage.cfg))


def run_task(stage: Stage, index: int) -> dict[str, Any]:
    """Run one task of ``stage`` in this process, unless it already finished. Returns its stats."""
    paths = stage.paths
    if paths.done(index).exists():
        return {**read_json(paths.done(index)), "skipped": True}
    with _task_lock(paths, index), _task_logger(stage, index) as logger:
        try:
            stage.check_inputs()
            _undo_commit(paths, index)  # a killed attempt's outputs, renamed before its marker
            if not stage.resumes_within_task:
                shutil.rmtree(paths.tmp(index), ignore_errors=True)  # and its unfinished ones
            paths.tmp(index).mkdir(parents=True, exist_ok=True)
            ctx = TaskContext(index=index, tasks=stage.num_tasks, paths=paths, logger=logger)
            started = time.time()
            logger.info("task %d/%d started on %s (pid %d)", index, stage.num_tasks,
                        socket.gethostname(), os.getpid())
            hold_at_gate(stage.name, index)
            stage.run_task(ctx)
            outputs = _commit_outputs(ctx)
            stats = {
                "stage": stage.name, "task": index, "tasks": stage.num_tasks,
                "counts": dict(sorted(ctx.counts.items())),
                "metrics": dict(sorted(ctx.metrics.items())),
                "outputs": outputs, "host": socket.gethostname(), "pid": os.getpid(),
                "started_at": started, "elapsed_s": round(time.time() - started, 3),
            }
            _write_marker(paths, index, stats)
            paths.commit(index).unlink()
            logger.info("task %d finished in %.1fs: %s", index, stats["elapsed_s"], stats["counts"])
            return stats
        except BaseException:
            logger.exception("task %d failed", index)
            raise


@contextlib.contextmanager
def _task_lock(paths: StagePaths, index: int) -> Iterator[None]:
    """Hold an exclusive lock on task ``index``: two runs of one workdir must not share a task."""
    path = paths.lock(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise StageError(f"task {index} of {paths.stage} is running in another process "
                             f"({f.read().strip() or 'unknown'}; lock {path})") from None
        except OSError as err:  # a filesystem without locks: go on, but say so
            log.warning("cannot lock %s (%s); make sure no other run uses this workdir", path, err)
        f.seek(0)
        f.truncate()
        f.write(f"host {socket.gethostname()} pid {os.getpid()}")
        f.flush()
        yield


@contextlib.contextmanager
def _task_logger(stage: Stage, index: int) -> Iterator[logging.Logger]:
    """A logger whose records (and everything else logged meanwhile) go to the task's log file."""
    path = stage.paths.log(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(stage.cfg.log_level)
    try:
        yield logging.getLogger(f"webtext.{stage.name}.{index:05d}")
    finally:
        root.removeHandler(handler)
        handler.close()


def _commit_outputs(ctx: TaskContext) -> list[str]:
    """Move a finished task's outputs from its temporary folder into the stage folder.

    The list of outputs is written first, so that a kill between the renames and the marker
    leaves a record of what to remove before the task runs again (``_undo_commit``).
    """
    outputs = sorted(p for p in ctx.tmp.rglob("*") if p.is_file())
    names = [p.relative_to(ctx.tmp).as_posix() for p in outputs]
    atomic_write(ctx.paths.commit(ctx.index), dump_json({"outputs": names}))
    for src, name in zip(outputs, names, strict=True):
        dst = ctx.paths.root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    with contextlib.suppress(OSError):  # the parent of every task's tmp folder, once it is empty
        ctx.tmp.parent.rmdir()
    return names


def _undo_commit(paths: StagePaths, index: int) -> None:
    """Remove the outputs of an attempt of task ``index`` that was killed while committing."""
    manifest = paths.commit(index)
    if not manifest.exists():
        return
    for name in read_json(manifest)["outputs"]:
        (paths.root / name).unlink(missing_ok=True)
    manifest.unlink()


def _write_marker(paths: StagePaths, index: int, stats: dict[str, Any]) -> None:
    atomic_write(paths.done(index), dump_json(stats))


def finalize(stage: Stage) -> dict[str, Any]:
    """Sum the tasks' markers into ``stats.json``; the stage must be complete."""
    missing = pending_tasks(stage)
    if missing:
        raise StageError(f"{stage.name}: tasks {_ranges(missing)} have not finished")
    counts: Counter[str] = Counter()
    metrics: Counter[str] = Counter()
    elapsed = 0.0
    for index in range(stage.num_tasks):
        marker = read_json(stage.paths.done(index))
        counts.update(marker["counts"])
        metrics.update(marker["metrics"])
        elapsed += marker["elapsed_s"]
    stats = {
        "stage": stage.name, "tasks": stage.num_tasks,
        "counts": dict(sorted(counts.items())), "metrics": dict(sorted(metrics.items())),
        "task_seconds": round(elapsed, 3),
    }
    stats = stage.summarize(stats)
    atomic_write(stage.paths.stats, dump_json(stats))
    return stats


def require_complete(upstream: StagePaths) -> None:
    """Raise unless the stage at ``upstream`` (if this project made it) finished every task."""
    if not upstream.meta.exists():
        return  # made by another tool, or by hand: nothing to check against
    tasks = read_json(upstream.meta)["tasks"]
    missing = sorted(set(range(tasks)) - completed_tasks(upstream))
    if missing:
        raise StageError(
            f"input stage {upstream.stage} ({upstream.root}) is incomplete: tasks "
            f"{_ranges(missing)} of {tasks} have not finished; run it to completion first"
        )


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``, for messages."""
    spans: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if start is not None and (n is None or n != prev + 1):
            spans.append(f"{start}-{prev}" if prev != start else str(start))
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(spans)
