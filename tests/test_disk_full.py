"""A full disk stops a stage with the stage, task, path and free space named; nothing half-written
counts as done; once space is freed, the same command resumes to the uninterrupted run's result.

The disk is a real one, a size-limited tmpfs (``small_disk``), sized so that it fills in the middle
of the stage; growing it stands for the user freeing space.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline import runtime
from pipeline.fetch.stage import read_journal
from pipeline.paths import StagePaths
from pipeline.runtime import DiskFull, Stage, TaskContext, completed_tasks
from tests.conftest import REPO, make_corpus, stage_outputs
from tests.dumps import lines
from tests.helpers import loopback_site, pipeline_config, run_tokenize


def pipeline(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *overrides], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def assert_stopped_cleanly(run: subprocess.CompletedProcess, paths: StagePaths, disk: Path) -> set[int]:
    """The run stopped on the full disk, each failed task saying where, with nothing half-written
    committed. Returns the tasks that failed."""
    assert run.returncode == 1, run.stderr[-3000:]
    lines = re.findall(r"^  task (\d+) \((.*)\); log: (\S+)$", run.stderr, re.MULTILINE)
    assert lines, run.stderr[-3000:]
    full = re.compile(rf"DiskFull: {paths.stage}\S* task (\d+): no space left on device writing (\S+) "
                      rf"\(\d+(\.\d)? \S+ free of \S+ \S+ on {re.escape(str(disk))}\); free space, "
                      "then rerun the same command")
    for task, reason, log in lines:
        said = full.fullmatch(reason)
        assert said and said[1] == task, reason
        assert Path(said[2]).is_relative_to(disk), reason
        text = Path(log).read_text() if Path(log).exists() else None
        if text:
            assert reason.removeprefix("DiskFull: ") in text, "the log says it too"
        elif text is None:  # the disk had no room for the log, or for the lock taken before it
            assert said[2] in (log, str(paths.lock(int(task)))), reason
        # else: the log was made but the full disk had no page even for its first line; its lines
        # are dropped (not reported as logging errors) and the failure reached stderr above
    assert not list(paths.root.rglob("_state/commit/*.json")), "a commit left half done"
    return {int(task) for task, _, _ in lines}


def committed_outputs(paths: StagePaths) -> set[str]:
    """What the completion markers say their tasks committed."""
    return {name for task in completed_tasks(paths)
            for name in json.loads(paths.done(task).read_text())["outputs"]}


@pytest.mark.slow
def test_tokenize_on_a_full_disk_stops_then_resumes_to_the_same_shards(tmp_path, small_disk):
    for seed in range(2):
        make_corpus(tmp_path / "corpus", docs=300, row_group_size=20, seed=seed,
                    name=f"part-{seed:05d}.parquet")

    def command(workdir: Path) -> list[str]:
        return [f"workdir={workdir}", "stages=[tokenize]", f"tokenize.input={tmp_path}/corpus/*.parquet",
                "tokenize.tasks=12", "tokenize.shard_tokens=8000", "tokenize.val_fraction=0.1",
                "executor.workers=2"]

    run_tokenize(tmp_path / "clean", tasks=12, shard_tokens=8000, val_fraction=0.1,
                 input=f"{tmp_path}/corpus/*.parquet")
    expected = stage_outputs(tmp_path / "clean" / "tokens")

    # The whole workdir (shards, state, logs) on a disk that holds about half the shards.
    disk = small_disk(tmp_path / "full", "200k")
    paths = StagePaths(tmp_path / "full", "tokenize")
    full = pipeline(*command(disk.path))
    failed = assert_stopped_cleanly(full, paths, disk.path)
    done = completed_tasks(paths)
    assert done and len(done) < 12 and not failed & done, (done, failed)
    # Only finished tasks' shards are in the stage folder; failed tasks left no temporary files.
    assert set(stage_outputs(paths.root)) == committed_outputs(paths)
    assert not [p for task in failed for p in paths.tmp(task).rglob("*")]

    disk.grow("16m")
    rerun = pipeline(*command(disk.path))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert stage_outputs(paths.root) == expected  # byte for byte


@pytest.mark.slow
def test_dedup_on_a_full_disk_stops_then_resumes_to_the_same_parts(tmp_path, small_disk):
    from tests.test_dedup_stage import SHARDS, planted_docs, run_dedup, write_docs

    docs, _ = planted_docs()
    command = ["stages=[dedup]", f"links.partitions={SHARDS}", "dedup.components_partitions=3",
               "dedup.max_rounds=4", "executor.workers=2"]
    clean_disk = small_disk(tmp_path / "clean" / "dedup", "64m")  # to measure what the stage takes
    write_docs(tmp_path / "clean", docs)
    run_dedup(tmp_path / "clean", components_partitions=3, max_rounds=4)
    expected = stage_outputs(clean_disk.path)
    parts = sum(len(v) for k, v in expected.items() if k.startswith("part-"))
    used = (64 << 20) - clean_disk.free()

    # The stage folder on a disk that runs out while the last pass writes the deduplicated parts.
    disk = small_disk(tmp_path / "full" / "dedup", f"{(used - parts * 2 // 3) >> 10}k")
    write_docs(tmp_path / "full", docs)
    paths = StagePaths(tmp_path / "full", "dedup")
    full = pipeline(f"workdir={tmp_path / 'full'}", *command)
    failed = assert_stopped_cleanly(full, paths, disk.path)
    # (in the last pass: writing a part, or committing one, as the two tasks at work fill the disk)
    assert re.findall(r"\(DiskFull: (\S+) task", full.stderr) == ["dedup"] * len(failed), full.stderr
    assert set(stage_outputs(paths.root)) - committed_outputs(paths) <= {
        k for k in expected if not k.startswith(("part-", "removed/"))}, "only earlier passes' outputs"
    assert not [p for task in failed for p in paths.tmp(task).rglob("*")]

    disk.grow("64m")
    rerun = pipeline(f"workdir={tmp_path / 'full'}", *command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert stage_outputs(paths.root) == expected  # byte for byte


HOSTS = [f"site{i}.test" for i in range(6)]


def page(path: str, host: str) -> tuple[int, str, bytes]:
    """Pages of 8 KB that gzip does not shrink much (the WARC grows ~5 KB a page); /gone/* is 404."""
    if path == "/robots.txt":
        return 200, "text/plain", b"User-agent: *\nAllow: /\n"
    if path.startswith("/gone/"):
        return 404, "text/html", b"<html>gone</html>"
    noise = b"".join(hashlib.sha256(f"{host}{path}{i}".encode()).digest() for i in range(128)).hex()
    return 200, "text/html; charset=utf-8", b"<!DOCTYPE html><p>" + noise[:8000].encode() + b"</p>"


def fetched(workdir: Path) -> dict[str, tuple]:
    """Each URL's outcome, and the payload of its response records (each WARC read to its end)."""
    payloads: dict[str, list[bytes]] = {}
    for path in sorted((workdir / "fetch" / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    payloads.setdefault(uri, []).append(record.content_stream().read())
    return {r["url"]: (r["reason"], r["status"], r["bytes"], payloads.pop(r["url"], []))
            for r in pq.read_table(workdir / "fetch" / "index").to_pylist()} | {"unindexed": payloads}


@pytest.mark.slow
def test_fetch_on_a_full_disk_stops_then_resumes_without_refetching(tmp_path, small_disk):
    with loopback_site(page) as port:
        items = [{"id": f"f{i}", "url": f"http://{HOSTS[i % 6]}:{port}/{'story' if i % 9 else 'gone'}/{i}",
                  "score": 10, "created_utc": 1400000000 + i, "subreddit": "news"} for i in range(120)]
        (tmp_path / "RS_fetch.json").write_bytes(lines(items))
        hosts = ",".join(f"'{h}=127.0.0.1'" for h in HOSTS)
        command = ["stages=[links,fetch]", f"source.files=[{tmp_path / 'RS_fetch.json'}]",
                   "links.partitions=2", "executor.workers=2", "fetch.allow_private=true",
                   f"fetch.hosts=[{hosts}]", "fetch.per_host_delay_s=0", "fetch.concurrency=4",
                   "fetch.flush_every=5"]
        clean = pipeline(f"workdir={tmp_path / 'clean'}", *command)
        assert clean.returncode == 0, clean.stderr[-3000:]
        expected = fetched(tmp_path / "clean")
        assert len(expected) == 121 and not expected["unindexed"]

        # The fetch folder (WARC files, journals, index) on a disk that fills mid-crawl.
        disk = small_disk(tmp_path / "full" / "fetch", "240k")
        paths = StagePaths(tmp_path / "full", "fetch")
        full = pipeline(f"workdir={tmp_path / 'full'}", *command)
        failed = assert_stopped_cleanly(full, paths, disk.path)
        assert not list((disk.path / "warc").glob("*")) and not list((disk.path / "index").glob("*"))
        # The journals never point past what is on disk, and the next attempt continues from them.
        journaled = {}
        for task in failed:  # (a task that started on the full disk failed at its lock file)
            sizes = {p.name: p.stat().st_size for p in (paths.tmp(task) / "warc").glob("*.warc.gz")}
            rows = read_journal(paths.state / "journal" / f"{task:05d}.jsonl")
            for row in rows.values():
                assert row["warc_file"] is None or row["warc_end"] <= sizes[row["warc_file"]]
                journaled[row["url"]] = row["fetched_at"]
        assert 0 < len(journaled) < 120, "the disk filled mid-crawl"

        disk.grow("16m")
        rerun = pipeline(f"workdir={tmp_path / 'full'}", *command)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert fetched(tmp_path / "full") == expected  # outcomes, and each page once in the WARC
    for row in pq.read_table(paths.root / "index").to_pylist():
        assert journaled.get(row["url"], row["fetched_at"]) == row["fetched_at"], "fetched again"


class Toy(Stage):
    """One task: writes ``part.bin``, then (while ``Toy.fill``) fills the disk but ``Toy.leave``
    bytes, so that the runtime's own writes, committing the task, meet the full disk."""

    name = "toy"
    fill = True
    leave = 0
    committed: list[int] = []

    @property
    def num_tasks(self) -> int:
        return 1

    def stage_config(self) -> dict:
        return {}

    def run_task(self, ctx: TaskContext) -> None:
        part = ctx.output("part.bin")
        ctx.count("resumed" if part.exists() else "written")  # a stage that resumes finds it again
        if not part.exists():
            part.write_bytes(bytes(range(256)) * 40)
        if self.fill:
            fill_but(self.paths.root.parent / "filler", self.leave)

    def task_committed(self, index: int) -> None:
        Toy.committed.append(index)


class ResumingToy(Toy):
    resumes_within_task = True


def fill_but(path: Path, leave: int) -> None:
    """Fill the disk that holds ``path``, then free ``leave`` bytes (whole pages) again."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        f.truncate(f.tell() - leave)


@pytest.mark.parametrize("stage", [Toy, ResumingToy])
@pytest.mark.parametrize(("leave", "failing"), [(0, "_state/commit/00000.json"),  # its list of outputs
                                               (4096, "_state/done/00000.json")])  # its marker
def test_a_commit_that_meets_a_full_disk_is_undone(tmp_path, small_disk, stage, leave, failing):
    disk = small_disk(tmp_path / "disk", "256k")
    toy = stage(pipeline_config(disk.path))
    Toy.fill, Toy.leave, Toy.committed = True, leave, []
    runtime.prepare(toy)
    said = rf"^toy task 0: no space left on device writing {re.escape(str(toy.paths.root / failing))} "
    with pytest.raises(DiskFull, match=said + r"\(0 B free of 256.0 KiB on "):
        runtime.run_task(toy, 0)
    # No marker, no output in the stage folder, no commit left half done; the stage's hook did not run.
    assert not completed_tasks(toy.paths) and not Toy.committed
    assert sorted(p.name for p in toy.paths.root.iterdir()) == ["_state"]
    assert not list(toy.paths.commit_dir.iterdir())
    # A stage that resumes within a task finds its outputs back in its temporary folder.
    assert (toy.paths.tmp(0) / "part.bin").exists() == toy.resumes_within_task

    (disk.path / "filler").unlink()  # space freed
    Toy.fill = False
    stats = runtime.run_task(toy, 0)
    assert stats["counts"] == {"resumed" if toy.resumes_within_task else "written": 1}
    assert (toy.paths.root / "part.bin").read_bytes() == bytes(range(256)) * 40
    assert Toy.committed == [0] and not toy.paths.tmp(0).exists()


def test_a_journal_line_cut_by_a_full_disk_is_cut_back(tmp_path, small_disk):
    from pipeline.fetch.crawler import Outcome
    from pipeline.fetch.stage import Journal, cut_journal

    class Flushed:  # the WARC files, all on disk
        def flush(self) -> None:
            pass

    disk = small_disk(tmp_path / "disk", "64k")
    path = disk.path / "journal.jsonl"
    journal = Journal(path, Flushed(), flush_every=1000)
    for i in range(10):
        journal.add(Outcome(ord=i, url=f"http://site.test/{i}"))
    journal.flush()
    fill_but(disk.path / "filler", 0)  # the journal's last page has room for part of the next batch
    for i in range(10, 100):
        journal.add(Outcome(ord=i, url=f"http://site.test/{i}"))
    with pytest.raises(OSError, match="No space left on device") as failed:
        journal.flush()
    assert failed.value.filename == str(path)
    written = path.read_bytes()
    assert not written.endswith(b"\n"), "part of a line"
    journal.close()  # writes nothing more
    assert path.read_bytes() == written

    cut_journal(path)
    rows = read_journal(path)
    assert path.read_bytes().endswith(b"\n")
    assert 10 < len(rows) < 100 and sorted(rows) == list(range(len(rows))), "whole lines are kept"
