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
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
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


class DiskFull(StageError):
    """A write failed for lack of space (or quota): the message names the stage, the task, the path
    and the free space on its filesystem."""


_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name ``path`` in an OSError of the block that names no file (a failed write names none)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


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
    outputs: dict[Path, None] = field(default_factory=dict)  # handed out, in order (a full disk)
    _progress_start: float | None = field(default=None, repr=False)
    _progress_last: float = field(default=0.0, repr=False)

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
        self.outputs.pop(path, None)
        self.outputs[path] = None
        return path

    def count(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items under ``reason`` (``kept`` or a snake_case drop/failure reason)."""
        if n:
            self.counts[reason] += n

    def add(self, metric: str, value: float) -> None:
        """Add to a summed metric (tokens, bytes, ...) reported beside the counts."""
        self.metrics[metric] += value

    def progress(self, items: Iterable[T], total: int | None, unit: str) -> Iterator[T]:
        """Iterate ``items``, reporting progress (``report``) at most every 10 seconds and at the end."""
        done = 0
        for done, item in enumerate(items, 1):
            yield item
            self.report(done, total, unit)
        self.report(done, total, unit, final=True)

    def report(self, done: int, total: int | None, unit: str, final: bool = False,
               at_least_s: float | None = None) -> None:
        """Say how far the task is: ``done`` of ``total`` (None: not known) ``unit``. At most every
        10 seconds (and when ``final``) it logs the count, rate and time left, and writes them to the
        task's progress file, which the driver sums into the stage's progress line (``stage_progress``).
        ``at_least_s``: what the task knows it still needs whatever its rate (fetch: its largest
        host's URLs to go x the per-host delay); the time left is never less.
        """
        now = time.monotonic()
        first = self._progress_start is None
        if first:  # written at once: the driver counts the task as running from its start
            self._progress_start = self._progress_last = now
        elif not final and now - self._progress_last < PROGRESS_EVERY_S:
            return
        self._progress_last = now
        elapsed = max(now - self._progress_start, 1e-9)
        rate = done / elapsed
        left = (total - done) / rate if total is not None and rate > 0 else None
        if at_least_s:
            left = max(left or 0.0, at_least_s)
        of = f"/{total:,}" if total is not None else ""
        eta = f", {_duration(left)} left" if left is not None and not final else ""
        self.logger.info("%s%s %s (%.1f %s/s%s)", f"{done:,}", of, unit, rate, unit, eta)
        record = {"done": done, "total": total, "unit": unit, "rate": round(rate, 3),
                  "elapsed_s": round(elapsed, 3), "final": final, "at": time.time(),
                  "at_least_s": round(at_least_s, 1) if at_least_s else None}
        with contextlib.suppress(OSError):  # progress is a courtesy: never fail a task over it
            atomic_write(self.paths.progress(self.index), json.dumps(record))


PROGRESS_EVERY_S = 10.0


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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

    def task_committed(self, index: int) -> None:
        """After task ``index``'s marker is written: drop what only its unfinished attempts needed
        (fetch's journal)."""

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
    with _disk_full_says_so(stage.name, stage.paths.state):
        _write(stage.paths.meta, dump_json(meta))
        _write(stage.paths.config, to_yaml(stage.cfg))


def run_task(stage: Stage, index: int) -> dict[str, Any]:
    """Run one task of ``stage`` in this process, unless it already finished. Returns its stats.

    A write that fails for lack of space raises ``DiskFull`` (the stage, task, path and free space).
    """
    paths = stage.paths
    if paths.done(index).exists():
        return {**read_json(paths.done(index)), "skipped": True}
    with _disk_full_says_so(f"{stage.name} task {index}", paths.state):  # the lock and the log too
        with _task_lock(paths, index), _task_logger(stage, index) as logger:
            ctx = TaskContext(index=index, tasks=stage.num_tasks, paths=paths, logger=logger)
            try:
                return _attempt(stage, ctx)
            except Exception as err:
                full = _after_failure(stage, ctx, err)
                if full is not None:
                    raise full from err
                raise
            except BaseException:  # interrupted: the next attempt cleans up, as after a kill
                logger.exception("task %d failed", index)
                raise


def _attempt(stage: Stage, ctx: TaskContext) -> dict[str, Any]:
    """One attempt of a task: start clean (or from a killed attempt's folder), run, commit."""
    paths, index = ctx.paths, ctx.index
    stage.check_inputs()
    _undo_commit(paths, index, keep=True)  # a killed attempt's outputs, renamed before its marker
    if not stage.resumes_within_task:
        shutil.rmtree(paths.tmp(index), ignore_errors=True)  # and its unfinished ones
    paths.tmp(index).mkdir(parents=True, exist_ok=True)
    started = time.time()
    ctx.logger.info("task %d/%d started on %s (pid %d)", index, stage.num_tasks,
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
    _remove_tmp(ctx)
    stage.task_committed(index)
    ctx.logger.info("task %d finished in %.1fs: %s", index, stats["elapsed_s"], stats["counts"])
    return stats


def _after_failure(stage: Stage, ctx: TaskContext, err: BaseException) -> DiskFull | None:
    """Clean up after a failed attempt and log why; a full disk is returned as ``DiskFull``.

    A commit begun is undone (its outputs go back to the temporary folder), and the temporary
    folder is removed, freeing its space, unless the stage resumes within a task (fetch).
    """
    full = None
    if _no_space_error(err) is not None:  # named before the folder goes
        full = disk_full(f"{stage.name} task {ctx.index}", err, _written_last(ctx))
    try:
        if not ctx.paths.done(ctx.index).exists():  # (once the marker is written, the task is done)
            _undo_commit(ctx.paths, ctx.index, keep=True)
    except OSError as undo:  # the next attempt undoes it before it starts
        ctx.logger.warning("could not undo the commit of task %d now (%s)", ctx.index, undo)
    finally:
        if not stage.resumes_within_task:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    if full is None:
        ctx.logger.exception("task %d failed", ctx.index)
    else:
        ctx.logger.error("%s", full, exc_info=err)
    return full


def disk_full(where: str, err: BaseException, fallback: Path | None = None) -> DiskFull | None:
    """``err`` as a ``DiskFull`` naming ``where``, when a write in it (or in its causes) failed for
    lack of space; None otherwise. ``fallback``: the path to name when the error names none."""
    found = _no_space_error(err)
    if found is None:
        return None
    path = Path(found.filename).absolute() if found.filename else fallback
    what = os.strerror(found.errno).lower()
    target = f"in {path}" if path is not None and path.is_dir() else str(path)
    return DiskFull(f"{where}: {what} writing {target} ({_free_space(path)}); free space, then rerun "
                    "the same command")


def _no_space_error(err: BaseException) -> OSError | None:
    """The OSError for lack of space or quota in ``err`` or in what caused it, if any (one that
    names its file first: a failed close after a failed write names none)."""
    found = [e for e in _chain(err) if isinstance(e, OSError) and e.errno in _FULL]
    return next((e for e in found if e.filename), found[0] if found else None)


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then what caused it or was being handled when it was raised, and so on."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop(0)
        if e is not None and id(e) not in seen:
            seen.add(id(e))
            yield e
            todo += [e.__cause__, e.__context__]


def _written_last(ctx: TaskContext) -> Path:
    """The output a task was most likely writing when a failed write named no file: the last one it
    asked for if that is gone (pyarrow removes a file it failed to write), else the one changed
    last; the task's temporary folder when it asked for none."""
    outputs = list(ctx.outputs)
    if outputs and not outputs[-1].exists():
        return outputs[-1]
    times = {}
    for path in outputs:
        with contextlib.suppress(OSError):
            times[path] = path.stat().st_mtime_ns
    return max(times, key=times.__getitem__) if times else ctx.tmp


def _free_space(path: Path | None) -> str:
    """``1.5 MiB free of 2.0 GiB on /data``: the filesystem that holds ``path``."""
    if path is None:
        return "free space unknown"
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    disk = os.statvfs(existing)
    mount, device = existing, existing.stat().st_dev
    while mount.parent != mount and mount.parent.stat().st_dev == device:
        mount = mount.parent
    return (f"{_bytes(disk.f_bavail * disk.f_frsize)} free of {_bytes(disk.f_blocks * disk.f_frsize)} "
            f"on {mount}")


def _bytes(n: float) -> str:
    """``0 B``, ``4.0 KiB``, ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _disk_full_says_so(where: str, fallback: Path) -> Iterator[None]:
    """Raise an OSError for lack of space in the block as a ``DiskFull`` naming ``where`` (or the
    ``DiskFull`` it interrupted)."""
    try:
        yield
    except OSError as err:
        full = next((e for e in _chain(err) if isinstance(e, DiskFull)), None)
        full = full or disk_full(where, err, fallback)
        if full is None:
            raise
        raise full from err


def _write(path: Path, data: str) -> None:
    """``atomic_write``, naming ``path`` in its errors."""
    with writing(path):
        atomic_write(path, data)


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
        with writing(path):  # unbuffered: a failed write leaves nothing for close to retry
            os.write(f.fileno(), f"host {socket.gethostname()} pid {os.getpid()}".encode())
        yield


class _TaskLog(logging.FileHandler):
    """A task's log file. On a full disk its lines are dropped, not reported as logging errors:
    the failure reaches the terminal through the executor."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's naming)
        err = sys.exc_info()[1]
        if not (isinstance(err, OSError) and err.errno in _FULL):
            super().handleError(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # flushing what did not fit
            super().close()


@contextlib.contextmanager
def _task_logger(stage: Stage, index: int) -> Iterator[logging.Logger]:
    """A logger whose records (and everything else logged meanwhile) go to the task's log file."""
    path = stage.paths.log(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _TaskLog(path)
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
    leaves a record of what to remove before the task runs again (``_undo_commit``). The temporary
    folders stay until the marker is written: undoing a commit on a full disk creates none.
    """
    outputs = sorted(p for p in ctx.tmp.rglob("*") if p.is_file())
    names = [p.relative_to(ctx.tmp).as_posix() for p in outputs]
    _write(ctx.paths.commit(ctx.index), dump_json({"outputs": names}))
    for src, name in zip(outputs, names, strict=True):
        dst = ctx.paths.root / name
        with writing(dst.parent):
            dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    return names


def _remove_tmp(ctx: TaskContext) -> None:
    """Remove a committed task's temporary folder. Their shared parent stays: another task may be
    making its own folder in it at this moment; ``finalize`` removes it."""
    shutil.rmtree(ctx.tmp, ignore_errors=True)


def _undo_commit(paths: StagePaths, index: int, keep: bool = False) -> None:
    """Undo a commit of task ``index`` that a kill or a failure stopped before its marker: its
    outputs go back to the task's temporary folder (``keep``; a stage that resumes within a task
    goes on from them) or are removed."""
    manifest = paths.commit(index)
    if not manifest.exists():
        return
    for name in read_json(manifest)["outputs"]:
        committed, tmp = paths.root / name, paths.tmp(index) / name
        if keep and committed.exists():
            tmp.parent.mkdir(parents=True, exist_ok=True)
            os.replace(committed, tmp)
        else:
            committed.unlink(missing_ok=True)
    manifest.unlink()


def _write_marker(paths: StagePaths, index: int, stats: dict[str, Any]) -> None:
    _write(paths.done(index), dump_json(stats))


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
    with contextlib.suppress(OSError):  # every task is done: their shared temporary folder goes
        stage.paths.tmp_dir.rmdir()
    with _disk_full_says_so(stage.name, stage.paths.stats):
        _write(stage.paths.stats, dump_json(stats))
    return stats


@dataclass(frozen=True)
class StageProgress:
    """Where a stage stands, summed from its tasks' progress files and completion markers."""

    tasks: int
    finished: int
    running: int
    done: int  # items done, over every task that reported
    total: int | None  # items to do: reported totals, unstarted tasks at the mean of those (None: unknown)
    unit: str
    rate: float  # items per second, summed over the running tasks
    left_s: float | None

    def line(self, name: str) -> str:
        """``fetch: 5/16 tasks done, 3 running; 123,456/400,000 URLs, 812.0/s, about 5 min left``"""
        of = f"/{self.total:,}" if self.total is not None else ""
        left = f", about {_duration(self.left_s)} left" if self.left_s is not None else ""
        return (f"{name}: {self.finished}/{self.tasks} tasks done, {self.running} running; "
                f"{self.done:,}{of} {self.unit}, {self.rate:,.1f}/s{left}")


def stage_progress(paths: StagePaths, tasks: int, now: float | None = None) -> StageProgress:
    """The stage's progress line from ``_state/progress/`` (what each task last reported) and its
    completion markers. A running task whose report is older than three reporting periods (killed,
    or stuck) does not count in the rate."""
    now = time.time() if now is None else now
    finished = completed_tasks(paths)
    reports: dict[int, dict[str, Any]] = {}
    for path in sorted(paths.progress_dir.glob("*.json")) if paths.progress_dir.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            reports[int(path.stem)] = json.loads(path.read_text())
    # a final report is a task whose items are all handed out, finishing what is in flight
    running = {i: r for i, r in reports.items() if i not in finished and not r["final"]}
    fresh = [r for r in running.values() if now - r["at"] <= 3 * PROGRESS_EVERY_S]
    rate = sum(r["rate"] for r in fresh)
    done = sum(r["done"] for r in reports.values())
    sized = [r for r in reports.values() if r["total"] is not None]
    total = left = None
    if sized and len(sized) == len(reports):
        unstarted = tasks - len(finished | set(reports))
        reported = sum(r["total"] for r in sized)
        total = reported + round(unstarted * reported / len(sized))
        left = (total - done) / rate if rate > 0 else None
    # a task's own floor (fetch: its largest host's URLs x the delay), counted down since its report
    floors = [r["at_least_s"] - (now - r["at"]) for r in fresh if r.get("at_least_s")]
    if floors and max(floors) > 0:
        left = max(left or 0.0, max(floors))
    unit = next((r["unit"] for r in reports.values()), "items")
    return StageProgress(tasks=tasks, finished=len(finished), running=len(running), done=done,
                         total=total, unit=unit, rate=rate, left_s=left)


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
