"""A stage's Parquet output that a later stage cannot read (cut short, a flipped byte, not Parquet):
the reading task stops with an error naming the file, the task that wrote it and how to have that
task write it again; done as it says, the same run completes."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.base.schema import validate
from pipeline import runtime
from pipeline.config import (
    FetchConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
)
from pipeline.fetch.stage import FetchStage
from pipeline.links.stage import LinksReduceStage
from pipeline.paths import StagePaths
from pipeline.registry import build
from pipeline.tokenize import TokenizeStage
from tests.conftest import REPO, make_corpus
from tests.dumps import lines


def closed_port() -> int:
    """A loopback port nothing listens on: every fetch is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_dump(folder: Path, port: int) -> Path:
    items = [{"id": f"d{i}", "url": f"http://{'ab'[i % 2]}.test:{port}/story/{i}", "score": 5,
              "created_utc": 1400000000 + i, "subreddit": "news"} for i in range(30)]
    folder.mkdir(parents=True, exist_ok=True)
    dump = folder / "RS_2014-05.json"
    dump.write_bytes(lines(items))
    return dump


def overrides(workdir: Path, dump: Path) -> list[str]:
    return [f"workdir={workdir}", f"source.files=[{dump}]", "links.partitions=2", "executor.workers=1",
            "fetch.allow_private=true", "fetch.hosts=['a.test=127.0.0.1','b.test=127.0.0.1']",
            "fetch.per_host_delay_s=0", "fetch.retries=0"]


def config(workdir: Path, dump: Path) -> PipelineConfig:
    cfg = PipelineConfig(workdir=str(workdir), stages=["links", "fetch"],
                         executor=LocalExecutorConfig(workers=1),
                         source=PushshiftSourceConfig(files=[str(dump)]), links=LinksConfig(partitions=2),
                         fetch=FetchConfig(allow_private=True, hosts=["a.test=127.0.0.1", "b.test=127.0.0.1"],
                                           per_host_delay_s=0, retries=0))
    validate(cfg)
    return cfg


def run_here(stages: list[runtime.Stage]) -> None:
    """The stages' pending tasks, through the runtime, in this process."""
    for stage in stages:
        stage.check_inputs()
        runtime.prepare(stage)
        for index in runtime.pending_tasks(stage):
            runtime.run_task(stage, index)
        runtime.finalize(stage)


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> tuple[Path, Path]:
    """A workdir with the links stage done, and its dump."""
    folder = tmp_path_factory.mktemp("linked")
    dump = write_dump(folder, closed_port())
    cfg = config(folder / "w", dump)
    run_here(build(["links"], cfg))
    return folder / "w", dump


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "cut_short":
        path.write_bytes(data[:len(data) // 2])
    elif how == "flipped_byte":  # inside the first column's pages
        column = pq.read_metadata(path).row_group(0).column(0)
        at = (column.dictionary_page_offset or column.data_page_offset) + column.total_compressed_size // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])
    else:
        path.write_text("<html><body>502 Bad Gateway</body></html>\n")


def expected(path: Path, why: str, writer: StagePaths, task: int, of: str, stage: str) -> str:
    return (f"{path} cannot be read ({why}). It was written by task {task} of {of}: delete that task's "
            f"completion marker {writer.done(task)} and run again with {stage} added to stages "
            f"(python -m pipeline stages=[{stage},...] workdir={writer.workdir}, your other settings as "
            f"before): that task alone runs again, and the stages after it go on where they stopped")


WHY = {  # pyarrow's words, after the error's type
    "cut_short": "ArrowInvalid: Could not open Parquet input source '{path}': Parquet magic bytes not found "
                 "in footer. Either the file is corrupted or this is not a parquet file.",
    "flipped_byte": "OSError: could not verify page integrity, CRC checksum verification failed for "
                    "page_ordinal 0",
}
WHY["not_parquet"] = WHY["cut_short"]


@pytest.mark.parametrize("how", ["cut_short", "flipped_byte", "not_parquet"])
def test_a_damaged_links_part_stops_fetch_with_the_task_to_redo(linked, tmp_path, how):
    source, dump = linked
    workdir = tmp_path / "w"
    shutil.copytree(source, workdir)
    links = StagePaths(workdir, "links")
    part = links.root / "part-00001.parquet"
    damage(part, how)
    stage = FetchStage(config(workdir, dump))
    with pytest.raises(runtime.StageError) as caught:
        runtime.run_task(stage, 1)
    message = str(caught.value)
    assert message == expected(part, WHY[how].format(path=part), links, 1, "links", "links")
    assert "\n" not in message  # the executors report a failed task by the last line of its error
    assert links.done(1).exists() and message in stage.paths.log(1).read_text()
    assert not stage.paths.done(1).exists()


def test_a_pass_inside_a_stage_is_named_with_its_stage(linked, tmp_path):
    source, dump = linked
    workdir = tmp_path / "w"
    shutil.copytree(source, workdir)
    mapped = StagePaths(workdir, "links_map")
    run = sorted((mapped.root / "p00000").glob("*.parquet"))[0]
    damage(run, "not_parquet")
    StagePaths(workdir, "links").done(0).unlink()  # the reduce of partition 0 still to do
    with pytest.raises(runtime.StageError) as caught:
        runtime.run_task(LinksReduceStage(config(workdir, dump)), 0)
    assert str(caught.value).startswith(f"{run} cannot be read (ArrowInvalid: ")
    assert str(caught.value).endswith(expected(run, "", mapped, 0, "links_map, a pass of the links stage",
                                               "links")[len(f"{run} cannot be read ()"):])


def test_a_damaged_file_no_stage_wrote_is_named_alone(tmp_path):
    part = make_corpus(tmp_path / "w" / "corpus", docs=50, row_group_size=10)
    damage(part, "not_parquet")
    cfg = PipelineConfig(workdir=str(tmp_path / "w"), source=PushshiftSourceConfig())
    validate(cfg)
    with pytest.raises(runtime.StageError) as caught:
        runtime.run_task(TokenizeStage(cfg), 0)
    assert re.fullmatch(rf"{re.escape(str(part))} cannot be read \(ArrowInvalid: [^\n]*\)", str(caught.value))


@pytest.mark.slow
def test_the_command_says_what_to_redo_and_then_completes(tmp_path):
    dump = write_dump(tmp_path, closed_port())
    workdir = tmp_path / "w"

    def pipeline(stages: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pipeline", f"stages={stages}", *overrides(workdir, dump)]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)

    first = pipeline("[links,fetch]")
    assert first.returncode == 0, first.stderr
    links, fetch = StagePaths(workdir, "links"), StagePaths(workdir, "fetch")
    part = links.root / "part-00000.parquet"
    original = part.read_bytes()
    shutil.rmtree(fetch.root)  # fetch to do again, on a links part that went bad meanwhile
    damage(part, "flipped_byte")

    failed = pipeline("[fetch]")
    assert failed.returncode == 1
    # The URLs hold a port drawn at random, so the flip lands in a page's data (its checksum fails)
    # or in a page header (it does not parse) from one run to the next: pyarrow's words are taken
    # from the damaged file itself.
    with pytest.raises(OSError) as caught:
        pq.read_table(part, page_checksum_verification=True)
    why = " ".join(f"{type(caught.value).__name__}: {caught.value}".split())
    message = expected(part, why, links, 0, "links", "links")
    assert (f"pipeline stopped: fetch: 1 task(s) failed:\n  task 0 (StageError: {message}); "
            f"log: {fetch.log(0)}\n") in failed.stderr
    assert message in fetch.log(0).read_text()
    assert runtime.completed_tasks(fetch) == {1}

    marker = Path(re.search(r"completion marker (\S+) ", failed.stderr).group(1))
    assert marker == links.done(0)
    marker.unlink()  # as the message says
    resumed = pipeline("[links,fetch]")
    assert resumed.returncode == 0, resumed.stderr
    assert part.read_bytes() == original  # written again, as it was
    assert runtime.completed_tasks(fetch) == {0, 1}
    assert sum(runtime.read_json(fetch.stats)["counts"].values()) == 30
