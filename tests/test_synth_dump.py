"""The synthetic Reddit dumps (bench/synth/dump.py) against the real links stage, and the NUL-prefixed
line of RS_2011-01 that the stage now reads."""

from __future__ import annotations

import bz2
import json
import logging
import lzma
import random
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from bench.synth.dump import (
    FILES,
    NUL_MONTH,
    VARIANTS,
    DumpTruth,
    month_start,
    schedule,
    url_variant,
    write_dumps,
)
from bench.synth.plan import Plan
from pipeline.config import LinksConfig, PipelineConfig, PushshiftSourceConfig
from pipeline.links.dumps import iter_blocks, iter_lines
from pipeline.links.rules import Link, Rules, normalize_url
from pipeline.links.stage import LinksMapStage
from pipeline.runtime import TaskContext
from tests.test_links import read_links, run_links

WEBTEXT = {"min_score": 3, "drop_over_18": True, "created_before_utc": 1514764800,
           "drop_wikipedia": True}  # conf/links/webtext.yaml
SMALL = Plan(seed=1, links=300, port=18400)


def one_line(line: bytes, tmp_path: Path) -> tuple[Link | None, TaskContext]:
    """The links map's handling of one dump line, with the context it counted into."""
    cfg = PipelineConfig(workdir=str(tmp_path), source=PushshiftSourceConfig(files=[]),
                         links=LinksConfig(**WEBTEXT))
    stage = LinksMapStage(cfg)
    ctx = TaskContext(index=0, tasks=1, paths=stage.paths, logger=logging.getLogger("test"))
    return stage._one_line(line, Rules(cfg.links), Counter(), {}, ctx), ctx


def test_a_nul_prefixed_line_is_read_and_its_link_kept(tmp_path):
    body = json.dumps({"id": "c3c2a", "url": "http://news.example/a?b=1&amp;utm_source=x", "score": 12,
                       "created_utc": 1294000000, "subreddit": "news", "over_18": False,
                       "is_self": False}).encode()
    link, ctx = one_line(b"\x00\x00\x00" + body, tmp_path)
    assert link is not None and link.url == "http://news.example/a?b=1"
    assert ctx.counts == {"kept": 1}
    assert ctx.metrics["repaired_nul_prefix"] == 1
    link, ctx = one_line(body, tmp_path)  # a clean line: no repair reported
    assert link is not None and "repaired_nul_prefix" not in ctx.metrics
    link, ctx = one_line(b"\x00\x00", tmp_path)  # nothing after the NULs
    assert link is None and ctx.counts == {"empty_line": 1} and not ctx.metrics


def test_every_url_variant_normalizes_to_the_plans_url():
    rng = random.Random(0)
    tracking = LinksConfig().tracking_params
    for link in SMALL.iter_links():
        for variant in VARIANTS:
            raw = url_variant(link.url, variant, rng)
            assert raw != link.url
            assert normalize_url(raw, tracking)[0] == link.url, (variant, raw)
            escaped = json.dumps({"url": raw}).replace("/", "\\/").encode()  # as the v2 files write
            assert msgspec.json.decode(escaped)["url"] == raw


def test_the_schedule_submits_every_link_before_2018():
    by_month, nul_link = schedule(SMALL)
    first = {packed >> 6 for entries in by_month[:-1] for packed in entries if packed >> 2 & 15 == 0}
    assert first == set(range(SMALL.links))
    repeated = Counter(packed >> 6 for entries in by_month for packed in entries)
    assert 0.12 < sum(n > 1 for n in repeated.values()) / SMALL.links < 0.3
    assert repeated[nul_link] == 1


def read_lines(path: Path) -> list[bytes]:
    return list(iter_lines(iter_blocks(path, 1 << 16)))


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> tuple[Path, DumpTruth]:
    folder = tmp_path_factory.mktemp("synth")
    return folder, write_dumps(SMALL, folder)


def test_the_dumps_are_deterministic_and_shaped_like_the_real_ones(dumps, tmp_path):
    folder, truth = dumps
    again = write_dumps(SMALL, tmp_path)
    for spec in FILES:
        assert (folder / spec.name).read_bytes() == (tmp_path / spec.name).read_bytes(), spec.name
    assert again == truth == DumpTruth.read(folder / "truth.json")
    assert not list(folder.glob("*.part"))

    v2 = lzma.decompress((folder / "RS_v2_2009-01.xz").read_bytes())
    assert b'"url":"http:\\/\\/' in v2 and v2.endswith(b"\n")
    first = json.loads(v2.split(b"\n", 1)[0])
    assert list(first) == sorted(first) and "ups" not in first  # keys sorted; no ups before 2011
    for name in ("RS_v2_2005-12.xz", "RS_2017-12.xz"):  # the last line without a newline
        assert not lzma.decompress((folder / name).read_bytes()).endswith(b"\n")
    nul = [line for line in read_lines(folder / f"RS_{NUL_MONTH}.bz2") if line.startswith(b"\x00")]
    assert len(nul) == truth.nul_prefixed == 1
    assert bz2.decompress((folder / "RS_2014-01.bz2").read_bytes()).count(b'"created_utc":"') > 0
    assert any(max(line) > 0x7F for line in read_lines(folder / "RS_2016-01.zst"))  # multibyte UTF-8
    promoted = [json.loads(line) for line in read_lines(folder / "RS_2016-01.zst") if b'"promoted"' in line]
    assert all("subreddit" not in p and p["promoted_url"] for p in promoted)
    assert set(truth.months) >= {"2008-01", "2012-01", "2016-01", "2017-12", "2018-11"}
    late, early = truth.months["2017-06"], truth.months["2009-06"]
    assert late > 3 * max(1, early)  # the volume grows over the years


def test_the_links_stage_counts_exactly_the_truth_and_gives_exactly_the_plans_urls(dumps, tmp_path):
    folder, truth = dumps
    files = [folder / spec.name for spec in FILES]
    read_bytes = next(n for n in range(1000, 3000) if splits_a_character(folder / "RS_2017-01.bz2", n))
    mapper, reducer = run_links(tmp_path, files, partitions=4, read_bytes=read_bytes, **WEBTEXT)
    mapped = json.loads(mapper.paths.stats.read_text())
    assert mapped["counts"] == dict(truth.reasons)
    assert sum(mapped["counts"].values()) == truth.lines
    assert mapped["metrics"]["repaired_nul_prefix"] == truth.nul_prefixed == 1
    months = {key.split(".")[1]: int(n) for key, n in mapped["metrics"].items()
              if key.startswith("month.") and key.endswith(".submissions")}
    assert months == dict(truth.months)
    assert all(month_start("2005-12") <= month_start(m) for m in months)

    rows = [row for part in read_links(reducer.paths.root).values() for row in part]
    assert {row["url"] for row in rows} == {link.url for link in SMALL.iter_links()}
    assert len(rows) == truth.links
    reduced = json.loads(reducer.paths.stats.read_text())
    assert reduced["counts"] == {"kept": truth.links, "duplicate_submission": truth.duplicate_submissions}
    assert reduced["metrics"]["submissions"] == truth.submissions


def splits_a_character(path: Path, read_bytes: int) -> bool:
    """Whether some read of ``read_bytes`` (decompressed, for bz2) ends inside a multibyte character."""
    return any(block[0] & 0xC0 == 0x80 for block in list(iter_blocks(path, read_bytes))[1:])
