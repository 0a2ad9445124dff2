"""A components round after the graph has converged takes the previous round's labels as they are;
a damaged labels file is then reported against the round that wrote it, not passed on as the next
round's own (whose task would then be the one named to redo, and redoing it would copy the damage
again)."""

from __future__ import annotations

import re
from pathlib import Path

from model.base.schema import validate
from pipeline import runtime
from pipeline.config import (
    DedupConfig,
    LinksConfig,
    LocalExecutorConfig,
    PipelineConfig,
    PushshiftSourceConfig,
)
from pipeline.dedup.stage import DedupRoundStage, sent_messages
from pipeline.paths import StagePaths
from tests.test_dedup_stage import SHARDS, outcome, planted_docs, run_dedup, write_docs
from tests.test_unreadable_parts import damage, expected

ROUNDS = 5


def config(workdir: Path) -> PipelineConfig:
    cfg = PipelineConfig(workdir=str(workdir), stages=["dedup"], executor=LocalExecutorConfig(workers=1),
                         source=PushshiftSourceConfig(), links=LinksConfig(partitions=SHARDS),
                         dedup=DedupConfig(components_partitions=3, max_rounds=ROUNDS))
    validate(cfg)
    return cfg


def test_a_damaged_labels_file_is_named_by_the_round_that_wrote_it(tmp_path: Path) -> None:
    docs, duplicates = planted_docs()
    write_docs(tmp_path, docs)
    run_dedup(tmp_path, workers=1, max_rounds=ROUNDS)
    cfg = config(tmp_path)
    rounds = [DedupRoundStage(cfg, r) for r in range(1, ROUNDS + 1)]
    quiet = next(r for r in range(1, ROUNDS + 1) if sent_messages(rounds[r - 1].paths) == 0)
    assert quiet < ROUNDS, "a round after the quiet one takes its labels as they are"
    writer, taker = rounds[quiet - 1], rounds[quiet]
    part = writer.paths.root / "labels" / "part-00001.parquet"
    damage(part, "flipped_byte")

    taker.paths.done(1).unlink()  # the next round's task 1 runs again, on the damaged labels
    try:
        runtime.run_task(taker, 1)
    except runtime.StageError as err:
        message = str(err)
    else:
        raise AssertionError(f"{taker.name} task 1 took the damaged {part} without a word")
    said = re.fullmatch(rf"{re.escape(str(part))} cannot be read \((OSError|ArrowInvalid|ArrowException): "
                        r"[^\n]*\)(\. It was written by .*)", message)
    assert said, message
    of = f"{writer.name}, a pass of the dedup stage"
    assert said[2] == expected(part, "", writer.paths, 1, of, "dedup")[len(f"{part} cannot be read ()"):]
    assert not taker.paths.done(1).exists()

    # As the message says: the writer's task alone runs again, and the taker's after it.
    StagePaths(tmp_path, writer.name).done(1).unlink()
    run_dedup(tmp_path, workers=1, max_rounds=ROUNDS)
    kept, removed = outcome(tmp_path)
    assert kept == {d["id"] for d in docs} - set(duplicates)
    assert {i: survivor for i, (_, survivor) in removed.items()} == duplicates
