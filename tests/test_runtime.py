"""The stage runtime: resume after a kill, skip finished tasks, refuse mixed configs, report failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import runtime
from pipeline.executor import LocalExecutor
from pipeline.paths import StagePaths
from pipeline.runtime import StageError, _ranges, completed_tasks
from pipeline.tokenize import TokenizeStage
from tests.conftest import REPO, make_corpus, stage_outputs
from tests.helpers import TaskGate, kill_part_way, pipeline_config, run_tokenize, start, wait_for


def task_starts(paths: StagePaths, task: int) -> int:
    log = paths.log(task)
    return log.read_text().count(" started on ") if log.exists() else 0


def test_rerun_skips_finished_tasks(tmp_path):
    make_corpus(tmp_path / "corpus", docs=200, row_group_size=25)
    stage = run_tokenize(tmp_path, tasks=4)
    markers = {p.name: p.read_bytes() for p in stage.paths.done_dir.iterdir()}
    outputs = stage_outputs(stage.paths.root)
    again = run_tokenize(tmp_path, tasks=4)
    assert {p.name: p.read_bytes() for p in again.paths.done_dir.iterdir()} == markers
    assert stage_outputs(again.paths.root) == outputs
    assert [task_starts(stage.paths, t) for t in range(4)] == [1, 1, 1, 1]
    assert not (stage.paths.state / "tmp").exists()
    assert (stage.paths.config).read_text().startswith("workdir:")


def test_a_finished_task_leaves_the_shared_temporary_folder_to_the_others(tmp_path):
    """Tasks run in parallel processes: one that finishes while another is making its own folder
    under ``_state/tmp`` must not remove their shared parent (a dedup run in CI failed so: the
    other task's mkdir raised FileNotFoundError). The stage's end removes it, once, in one process."""
    make_corpus(tmp_path / "corpus", docs=100, row_group_size=25)
    cfg = pipeline_config(tmp_path, 1, tasks=2)
    stage = TokenizeStage(cfg)
    runtime.prepare(stage)
    stage.paths.tmp_dir.mkdir(parents=True)  # task 1 has made the parent, not yet its folder
    runtime.run_task(stage, 0)
    assert stage.paths.tmp_dir.is_dir()
    runtime.run_task(stage, 1)
    runtime.finalize(stage)
    assert not (stage.paths.state / "tmp").exists()


def test_changed_stage_config_is_refused(tmp_path):
    make_corpus(tmp_path / "corpus", docs=100, row_group_size=25)
    run_tokenize(tmp_path, tasks=4)
    with pytest.raises(StageError, match=r"tasks: 4 -> 3.*val_fraction: 0.005 -> 0.1"):
        run_tokenize(tmp_path, tasks=3, val_fraction=0.1)


def test_a_setting_added_since_the_outputs_were_made_counts_at_its_default(tmp_path):
    """Outputs made before a setting existed were made with its default: kept when the setting is
    left at it, refused when it is not."""
    make_corpus(tmp_path / "corpus", docs=100, row_group_size=25)
    stage = run_tokenize(tmp_path, tasks=2)
    meta = json.loads(stage.paths.meta.read_text())
    del meta["config"]["batch_docs"], meta["config"]["split_salt"]  # as an older version wrote it
    stage.paths.meta.write_text(json.dumps(meta))
    run_tokenize(tmp_path, tasks=2)  # the defaults: the same outputs, nothing redone
    assert [task_starts(stage.paths, t) for t in range(2)] == [1, 1]
    stage.paths.meta.write_text(json.dumps(meta))
    with pytest.raises(StageError, match=r"split_salt: 'webtext' -> 'other'"):
        run_tokenize(tmp_path, tasks=2, split_salt="other")


def test_failed_tasks_are_reported_and_retried(tmp_path):
    make_corpus(tmp_path / "corpus", docs=100, row_group_size=25, name="part-00000.parquet")
    broken = tmp_path / "corpus" / "part-00001.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "body": ["no text column", "here"]}), broken)
    cfg = pipeline_config(tmp_path, tasks=5)
    stage = TokenizeStage(cfg)
    with pytest.raises(StageError) as caught:
        LocalExecutor(cfg.executor).run([stage])
    message = str(caught.value)
    assert "tokenize: 1 task(s) failed" in message and "has no column 'text'" in message
    assert str(stage.paths.log(4)) in message
    assert completed_tasks(stage.paths) == {0, 1, 2, 3}
    assert not list(stage.paths.root.glob("*_00004_*.bin")), "a failed task leaves no output"

    make_corpus(tmp_path / "corpus", docs=2, row_group_size=25, name="part-00001.parquet", seed=9)
    LocalExecutor(cfg.executor).run([stage])
    assert [task_starts(stage.paths, t) for t in range(5)] == [1, 1, 1, 1, 2]


def test_missing_input_names_the_pattern(tmp_path):
    cfg = pipeline_config(tmp_path, tasks=2)
    with pytest.raises(StageError, match=r"no input matches 'corpus/\*.parquet'"):
        LocalExecutor(cfg.executor).run([TokenizeStage(cfg)])


def test_incomplete_upstream_stage_is_refused(tmp_path):
    make_corpus(tmp_path / "corpus", docs=20, row_group_size=10)
    upstream = StagePaths(tmp_path, "publish")
    upstream.state.mkdir(parents=True)
    upstream.meta.write_text(json.dumps({"stage": "publish", "tasks": 3, "config": {}}))
    upstream.done_dir.mkdir()
    (upstream.done_dir / "00001.json").write_text("{}")
    expected = r"input stage publish \(.*corpus\) is incomplete: tasks 0, 2 of 3 have not finished"
    with pytest.raises(StageError, match=expected):
        run_tokenize(tmp_path, tasks=2)


def test_ranges():
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert _ranges([3]) == "3"


def pipeline_cmd(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[tokenize]", "tokenize.tasks=8",
            "executor.workers=1", "tokenize.val_fraction=0.05"]


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_resumes(tmp_path):
    for name in ("killed", "clean"):
        make_corpus(tmp_path / name / "corpus", docs=800, row_group_size=50, seed=5)
    clean = subprocess.run(pipeline_cmd(tmp_path / "clean"), cwd=REPO, capture_output=True,
                           text=True, timeout=240)
    assert clean.returncode == 0, clean.stderr

    workdir = tmp_path / "killed"
    paths = StagePaths(workdir, "tokenize")
    gate = TaskGate(tmp_path / "gate", hold=("tokenize",))
    gate.release("tokenize", 0, 1)  # tasks 0 and 1 finish; task 2 is held running when the kill comes
    kill_part_way(pipeline_cmd(workdir),
                  lambda: completed_tasks(paths) == {0, 1} and 2 in gate.started("tokenize"), gate)
    finished = completed_tasks(paths)
    assert finished == {0, 1}
    before = {t: paths.done(t).read_bytes() for t in finished}
    for shard in paths.root.glob("*.bin"):  # nothing of an unfinished task is in place
        assert int(shard.name.split("_")[1]) in finished

    rerun = subprocess.run(pipeline_cmd(workdir), cwd=REPO, capture_output=True, text=True,
                           timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert "6 of 8 tasks to run" in rerun.stdout + rerun.stderr
    assert {t: paths.done(t).read_bytes() for t in finished} == before, "finished tasks ran again"
    for task in finished:
        assert task_starts(paths, task) == 1
    assert task_starts(paths, 2) == 2  # the killed attempt, then the one that finished
    assert stage_outputs(paths.root) == stage_outputs(tmp_path / "clean" / "tokens")
    stats = [json.loads((w / "tokens" / "stats.json").read_text()) for w in (workdir, tmp_path / "clean")]
    assert stats[0]["counts"] == stats[1]["counts"] and stats[0]["metrics"] == stats[1]["metrics"]


def test_a_task_runs_in_one_process_at_a_time(tmp_path):
    import fcntl

    make_corpus(tmp_path / "corpus", docs=40, row_group_size=10)
    cfg = pipeline_config(tmp_path, tasks=2)
    stage = TokenizeStage(cfg)
    runtime.prepare(stage)
    lock = stage.paths.lock(1)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        held.write("host other pid 42")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StageError, match=r"task 1 of tokenize is running in another process "
                                             r"\(host other pid 42"):
            runtime.run_task(stage, 1)
    assert runtime.run_task(stage, 1)["counts"]["kept"] > 0


def test_kill_between_commit_and_marker_leaves_no_stale_shard(tmp_path, monkeypatch):
    make_corpus(tmp_path / "corpus", docs=200, row_group_size=50)
    small = TokenizeStage(pipeline_config(tmp_path, tasks=1, shard_tokens=2000, val_fraction=0.0))
    runtime.prepare(small)

    def killed(*args):
        raise KeyboardInterrupt("killed after the renames, before the marker")

    monkeypatch.setattr(runtime, "_write_marker", killed)
    with pytest.raises(KeyboardInterrupt):
        runtime.run_task(small, 0)
    monkeypatch.undo()
    assert len(list(small.paths.root.glob("train_*.bin"))) > 5  # renamed into place, no marker

    # Nothing finished, so a changed config is allowed; the old attempt's shards must go.
    run_tokenize(tmp_path, tasks=1, val_fraction=0.0)
    assert sorted(p.name for p in small.paths.root.glob("*.bin")) == ["train_00000_000.bin"]
    assert not small.paths.commit(0).exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_and_starts_no_queued_task_and_rerun_finishes(tmp_path, workers):
    make_corpus(tmp_path / "corpus", docs=400, row_group_size=50, seed=5)
    paths = StagePaths(tmp_path, "tokenize")
    gate = TaskGate(tmp_path / "gate", hold=("tokenize",))
    gate.release("tokenize", 0)
    command = [*pipeline_cmd(tmp_path), f"executor.workers={workers}"]
    proc = start(command, gate)
    held = {1} if workers == 1 else {1, 2}  # each worker is in a task when the interrupt comes
    wait_for(proc, lambda: completed_tasks(paths) == {0} and held <= gate.started("tokenize"))
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    gate.open("tokenize")  # a task started after the interrupt would now run, and be seen
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "rerun the same command to resume" in output, output
    assert gate.started("tokenize") == {0} | held, "a queued task started after the interrupt"
    assert completed_tasks(paths) == {0}, "the held tasks were interrupted, not finished"
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{8 - 1} of 8 tasks to run" in rerun.stdout + rerun.stderr
    assert completed_tasks(paths) == set(range(8))


@pytest.mark.slow
def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(tmp_path):
    """``nohup`` or ``&`` in a script starts a command with SIGINT ignored: workers ignore it too."""
    make_corpus(tmp_path / "corpus", docs=400, row_group_size=50, seed=5)
    paths = StagePaths(tmp_path, "tokenize")
    gate = TaskGate(tmp_path / "gate", hold=("tokenize",))
    gate.release("tokenize", 0)
    proc = subprocess.Popen(pipeline_cmd(tmp_path), cwd=REPO, start_new_session=True, env=gate.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for(proc, lambda: completed_tasks(paths) == {0} and 1 in gate.started("tokenize"))
    os.killpg(proc.pid, signal.SIGINT)  # delivered (and discarded) before the gate opens
    gate.open("tokenize")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert completed_tasks(paths) == set(range(8))


def test_tasks_report_progress_and_the_driver_sums_it_into_a_line(tmp_path, monkeypatch):
    """A task's progress (items done of items to do, rate) reaches its progress file at most every
    reporting period and at the end; the driver's line sums the running and finished tasks and
    estimates the time left, with unstarted tasks at the mean size of the others."""
    import logging

    paths = StagePaths(tmp_path, "fetch")
    clock = [1000.0]
    monkeypatch.setattr(runtime.time, "monotonic", lambda: clock[0])

    def context(index: int) -> runtime.TaskContext:
        return runtime.TaskContext(index=index, tasks=4, paths=paths, logger=logging.getLogger("t"))

    first, second = context(0), context(1)
    first.report(0, 1000, "URLs")  # the clock starts; written at once
    assert json.loads(paths.progress(0).read_text())["done"] == 0
    clock[0] += 5
    first.report(50, 1000, "URLs")  # within the period: not written
    assert json.loads(paths.progress(0).read_text())["done"] == 0
    clock[0] += 5
    first.report(100, 1000, "URLs")
    assert json.loads(paths.progress(0).read_text())["rate"] == 10.0
    second.report(0, 3000, "URLs")
    clock[0] += 20
    second.report(600, 3000, "URLs")
    line = runtime.stage_progress(paths, 4)
    # done 700 of 1000 + 3000 + two unstarted tasks at 2000 each; rates 10/s and 30/s
    assert (line.done, line.total, line.running, line.finished, line.rate) == (700, 8000, 2, 0, 40.0)
    assert line.left_s == pytest.approx((8000 - 700) / 40)
    assert line.line("fetch").startswith("fetch: 0/4 tasks done, 2 running; 700/8,000 URLs, 40.0/s")

    # a finished task counts in what is done, not in the rate; a stale report not in the rate either
    runtime.atomic_write(paths.done(1), "{}")
    line = runtime.stage_progress(paths, 4, now=json.loads(paths.progress(0).read_text())["at"] + 31)
    assert (line.finished, line.running, line.rate) == (1, 1, 0.0)
    assert line.left_s is None


def test_a_task_whose_items_are_all_handed_out_is_not_counted_running(tmp_path):
    """Extract's last pages are still in the extraction process after its reader's final report:
    the task is finishing, not running beside the next task of its worker."""
    import logging

    paths = StagePaths(tmp_path, "extract")
    ctx = runtime.TaskContext(index=0, tasks=2, paths=paths, logger=logging.getLogger("t"))
    ctx.report(0, 10, "pages")
    assert runtime.stage_progress(paths, 2).running == 1
    ctx.report(10, 10, "pages", final=True)
    line = runtime.stage_progress(paths, 2)
    assert (line.running, line.done, line.total) == (0, 10, 20)


def test_the_time_left_is_never_under_a_tasks_own_floor(tmp_path):
    """A fetch task that has done most of its URLs fast but still holds its largest host's: at the
    per-host delay, those take what they take, whatever the rate over the small hosts said."""
    import logging

    from pipeline.fetch.crawler import Outcome
    from pipeline.fetch.stage import _Progress

    paths = StagePaths(tmp_path, "fetch")
    ctx = runtime.TaskContext(index=0, tasks=1, paths=paths, logger=logging.getLogger("t"))
    progress = _Progress(ctx, 0, 1000, largest=set(range(600)), delay_s=1.0)
    for ord_ in range(600, 1000):  # the small hosts, at once
        progress.update(Outcome(ord=ord_, url=f"http://s{ord_}.test/"))
    progress.update(Outcome(ord=0, url="http://big.test/0"))
    report = json.loads(paths.progress(0).read_text())
    assert report["at_least_s"] == 600.0  # the first report, written at once (the next in 10 s)
    line = runtime.stage_progress(paths, 1, now=report["at"] + 10)
    assert 589 <= line.left_s <= 590  # counted down from the report; the rate alone said ~0 s
    ctx.report(1000, 1000, "URLs", final=True)
    assert not runtime.stage_progress(paths, 1).left_s  # every URL handed out: no floor left
