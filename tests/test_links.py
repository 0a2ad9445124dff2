"""The links stage: rules, URL identity, long-window dumps, schema drift, the global dedup."""

from __future__ import annotations

import base64
import bz2
import lzma
import os
import random
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.config import TRACKING_PARAMS, LinksConfig
from pipeline.links.dumps import Submission, decode_line, iter_blocks, iter_lines
from pipeline.links.rules import Link, Rules, UrlError, normalize_url, partition_of
from pipeline.links.stage import month_report
from tests.dumps import arctic_shift, lines, submission, write_zst, write_zst_blocks

WINDOW = {"created_after_utc": 1262304000, "created_before_utc": 1514764800}  # 2010 to 2018


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM:80/a/b?utm_source=x&b=2&a=1#frag", "http://example.com/a/b?a=1&b=2"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/x?fbclid=1&gclid=2&utm_medium=m", "https://example.com/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com/p?q=a%20b&q=a+b", "https://example.com/p?q=a%20b&q=a+b"),
        ("https://example.com/p?b=1&amp;a=2", "https://example.com/p?a=2&b=1"),
        ("https://münchen.example/café", "https://xn--mnchen-3ya.example/caf%C3%A9"),
        ("http://[2001:db8::1]:80/v6", "http://[2001:db8::1]/v6"),
        ("  https://example.com./trailing-dot-host  ", "https://example.com/trailing-dot-host"),
    ],
)
def test_normalize_url(raw, expected):
    assert normalize_url(raw, TRACKING_PARAMS)[0] == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("ftp://example.com/f", "bad_scheme"), ("javascript:alert(1)", "bad_scheme"),
     ("http://user:secret@example.com/", "credentials_in_url"), ("http://[::1/x", "unparseable_url"),
     ("http:///no-host", "unparseable_url"), ("https://exa mple.com/", "unparseable_url"),
     ("   ", "no_url")],
)
def test_unusable_urls(raw, reason):
    with pytest.raises(UrlError) as caught:
        normalize_url(raw, TRACKING_PARAMS)
    assert caught.value.reason == reason


def sub(**fields) -> Submission:
    base = {"id": "x1", "url": "https://news.example/a", "score": 10, "created_utc": 1500000000,
            "subreddit": "news", "over_18": False, "is_self": False}
    return Submission(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"url": None}, "no_url"), ({"url": ""}, "no_url"), ({"url": 7}, "no_url"),
        ({"is_self": True, "url": "https://www.reddit.com/r/x/comments/1/"}, "self_post"),
        ({"url": "mailto:a@b.c"}, "bad_scheme"),
        ({"over_18": True}, "over_18"),
        ({"created_utc": "not a time"}, "bad_created_utc"), ({"created_utc": None}, "bad_created_utc"),
        ({"created_utc": 1200000000}, "before_window"), ({"created_utc": 1514764800}, "after_window"),
        ({"score": None}, "score_missing"), ({"score": 2}, "score_below_min"),
        ({"score": "2"}, "score_below_min"),
        ({"url": "https://en.wikipedia.org/wiki/Bee"}, "wikipedia"),
        ({"url": "https://i.imgur.com/abc"}, "blocked_domain"),
        ({"url": "https://www.reddit.com/r/x/comments/1/"}, "blocked_domain"),
        ({"url": "https://youtu.be/abc"}, "blocked_domain"),
        ({"url": "https://cdn.example/photo.JPG?size=large"}, "blocked_extension"),
        ({"url": "https://papers.example/paper.pdf"}, "blocked_extension"),
    ],
)
def test_rules_give_the_first_failing_reason(fields, reason):
    assert Rules(LinksConfig(**WINDOW)).link_or_reason(sub(**fields)) == reason


def test_rules_keep_and_coerce_drifting_fields():
    rules = Rules(LinksConfig(**WINDOW))
    link = rules.link_or_reason(sub(created_utc="1500000000.0", score="5", subreddit=None))
    assert link == Link(url="https://news.example/a", raw_url="https://news.example/a",
                        host="news.example", submission_id="x1", subreddit="", score=5,
                        created_utc=1500000000)
    assert isinstance(rules.link_or_reason(sub(over_18=True)), str)
    assert isinstance(Rules(LinksConfig(drop_over_18=False)).link_or_reason(sub(over_18=True)), Link)
    assert isinstance(Rules(LinksConfig(drop_wikipedia=False)).link_or_reason(
        sub(url="https://de.wikipedia.org/wiki/Biene")), Link)
    summed = Rules(LinksConfig(score_rule="sum_per_url")).link_or_reason(sub(score=1))
    assert isinstance(summed, Link) and summed.score == 1  # judged per URL in the reduce


def test_partition_is_stable_and_ignores_www():
    assert partition_of("www.example.com", 64) == partition_of("example.com", 64)
    assert partition_of("example.com", 64) == partition_of("example.com", 64)
    assert len({partition_of(f"host{i}.example", 16) for i in range(200)}) == 16


def test_decode_line_reasons():
    assert decode_line(b'{"id": "a", "url": "https://x.example/"}').url == "https://x.example/"
    assert decode_line(b'{"id": "a", "url": "https://x.exa') == "broken_json"
    assert decode_line(b"[1, 2, 3]") == "not_an_object"
    assert decode_line(b"null") == "not_an_object"
    repaired = decode_line(b'{"id": "a", "title": "caf\xe9", "url": "https://x.example/"}')
    assert repaired.url == "https://x.example/"


@pytest.mark.parametrize("read_bytes", [1, 7, 64, 4093, 1 << 20])
@pytest.mark.parametrize("suffix", ["zst", "xz", "json"])
def test_lines_survive_any_block_boundary(read_bytes, suffix, tmp_path):
    texts = [f"line {i} ünïcödé 東京 🙂 {'x' * (i % 37)}".encode() for i in range(500)]
    data = b"\n".join(texts) + b"\n"
    path = tmp_path / f"RS_x.{suffix}"
    if suffix == "zst":
        write_zst(path, data, window_log=27)
    else:
        path.write_bytes(lzma.compress(data) if suffix == "xz" else data)
    blocks = list(iter_blocks(path, read_bytes))
    assert b"".join(blocks) == data
    assert list(iter_lines(blocks)) == texts
    if suffix != "zst":  # decompressed reads of read_bytes: boundaries fall inside characters
        assert len(blocks) == -(-len(data) // read_bytes)


def test_compressed_formats(tmp_path):
    data = lines([{"id": str(i), "url": f"https://h.example/{i}"} for i in range(100)])
    (tmp_path / "RS_a.xz").write_bytes(lzma.compress(data))
    (tmp_path / "RS_a.bz2").write_bytes(bz2.compress(data))
    (tmp_path / "RS_a.json").write_bytes(data)
    for name in ("RS_a.xz", "RS_a.bz2", "RS_a.json"):
        assert b"\n".join(iter_lines(iter_blocks(tmp_path / name, 1000))) + b"\n" == data


def test_the_current_sources_formats_are_read(tmp_path):
    """The dumps as the sources docs/links.md names ship them: a monthly Pushshift dump
    (``reddit/submissions/RS_YYYY-MM.zst``, 2 GiB window), a per-subreddit file of every month
    (``<subreddit>_submissions.zst``), Arctic Shift's ``.zst_blocks`` months (sorted keys, ``_meta``)
    and its download tool's ``.jsonl``. Each gives its links, and a cut ``.zst_blocks`` file is
    counted as ``dump_read_error`` with the rows before the damage kept."""
    import json

    rng = random.Random(11)
    made = {"monthly": [submission(rng, i, score=5, created_utc=1491004800 + i) for i in range(40)],
            "subreddit": [submission(rng, 100 + i, score=5, subreddit="news",
                                     created_utc=1136073600 + i * 3 * 10**6) for i in range(40)],
            "blocks": [arctic_shift(submission(rng, 200 + i, score=5, created_utc=1682899200 + i))
                       for i in range(600)],
            "jsonl": [arctic_shift(submission(rng, 900 + i, score=5, subreddit="science"))
                      for i in range(40)]}
    for item in made["blocks"][::10]:
        item["score"] = 1  # one in ten below min_score
    folder = tmp_path / "reddit" / "submissions"
    folder.mkdir(parents=True)
    files = [write_zst(folder / "RS_2017-04.zst", lines(made["monthly"])),
             write_zst(tmp_path / "news_submissions.zst", lines(made["subreddit"])),
             write_zst_blocks(tmp_path / "RS_2023-05.zst_blocks",
                              (orjson.dumps(item) for item in made["blocks"]), rows_per_block=64)]
    (tmp_path / "r_science_posts.jsonl").write_bytes(lines(made["jsonl"]))
    files.append(tmp_path / "r_science_posts.jsonl")
    assert list(iter_lines(iter_blocks(files[2], 1 << 16))) == [orjson.dumps(i) for i in made["blocks"]]

    mapper, reducer = run_links(tmp_path / "w", files, partitions=3)
    expected = {normalize_url(item["url"])[0] for part in made.values() for item in part
                if item["score"] >= 3}
    rows = [r for part in read_links(reducer.paths.root).values() for r in part]
    assert {r["url"] for r in rows} == expected
    counts = json.loads(mapper.paths.stats.read_text())["counts"]
    assert counts == {"kept": len(expected), "score_below_min": 60}

    whole = files[2].read_bytes()
    cut = tmp_path / "cut" / "RS_2023-06.zst_blocks"
    cut.parent.mkdir()
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    mapper, _ = run_links(tmp_path / "w2", [cut], partitions=3)
    counts = json.loads(mapper.paths.stats.read_text())["counts"]
    assert counts["dump_read_error"] == 1 and 0 < counts["kept"] + counts.get("score_below_min", 0) < 600


def test_month_report_flags_a_collapse():
    metrics = {}
    for month, share in [("2016-01", 0.40), ("2016-02", 0.42), ("2016-03", 0.05), ("2016-04", 0.38)]:
        metrics.update({f"month.{month}.submissions": 3000, f"month.{month}.link_posts": 2000,
                        f"month.{month}.score_ge_min": int(2000 * share), f"month.{month}.kept": 10})
    metrics.update({"month.2016-05.link_posts": 10, "month.2016-05.score_ge_min": 0})
    report = month_report(metrics, LinksConfig())
    assert [m for m, row in report.items() if row["flagged"]] == ["2016-03"]
    assert report["2016-05"]["flagged"] is False  # too few posts to judge
    assert report["2016-01"]["share_score_ge_min"] == 0.4


# --- the whole stage on a planted long-window dump -------------------------------------------------


class Plan:
    """Submissions with known fates: the links they must give and the reasons they must be counted."""

    def __init__(self) -> None:
        self.rng = random.Random(7)
        self.items: list[dict | bytes] = []
        self.reasons: Counter[str] = Counter()
        self.urls: dict[str, set[str]] = {}  # normalized URL -> submission ids
        self.counter = 0

    def keep(self, url: str, normalized: str, **fields) -> dict:
        self.counter += 1
        item = submission(self.rng, self.counter, url=url, score=fields.pop("score", 3 + self.counter % 50),
                          created_utc=fields.pop("created_utc", 1400000000 + self.counter), **fields)
        self.items.append(item)
        self.reasons["kept"] += 1
        self.urls.setdefault(normalized, set()).add(item["id"])
        return item

    def drop(self, reason: str, **fields) -> None:
        self.counter += 1
        self.items.append(submission(self.rng, self.counter,
                                     **{"created_utc": 1400000000, "score": 50, **fields}))
        self.reasons[reason] += 1

    def raw(self, line: bytes, reason: str) -> None:
        self.items.append(line)
        self.reasons[reason] += 1


def plant_every_case(plan: Plan) -> None:
    for i in range(300):  # plain links, with case and tracking noise that normalization removes
        plan.keep(f"HTTPS://Site{i % 30}.Example/story/{i}?utm_source=rss&id={i}#top",
                  f"https://site{i % 30}.example/story/{i}?id={i}")
    first = plan.keep("https://dup.example/same?b=2&a=1", "https://dup.example/same?a=1&b=2",
                      subreddit="science")
    plan.keep("https://DUP.example:443/same?a=1&b=2&fbclid=zz", "https://dup.example/same?a=1&b=2",
              subreddit="news")
    plan.items.append(dict(first))  # the same submission again, as overlapping dumps have it
    plan.reasons["kept"] += 1
    plan.keep("https://drift.example/str-time", "https://drift.example/str-time",
              created_utc="1400000123", score="7")
    plan.keep("https://drift.example/float-time", "https://drift.example/float-time",
              created_utc=1400000123.0, extra_field={"nested": [1, 2]})
    drifted = plan.keep("https://drift.example/no-subreddit", "https://drift.example/no-subreddit")
    del drifted["subreddit"], drifted["over_18"], drifted["is_self"]
    plan.keep("https://bad-utf8.example/title", "https://bad-utf8.example/title")
    plan.items[-1] = orjson.dumps(plan.items[-1]).replace(b'"title":"', b'"title":"\xff\xfe', 1)
    for reason, fields in [
        ("no_url", {"url": None}), ("no_url", {"url": ""}), ("self_post", {"is_self": True}),
        ("bad_scheme", {"url": "ftp://files.example/x"}),
        ("credentials_in_url", {"url": "https://me:pw@login.example/"}),
        ("unparseable_url", {"url": "http://[::1/broken"}), ("over_18", {"over_18": True}),
        ("bad_created_utc", {"created_utc": "yesterday"}), ("before_window", {"created_utc": 1000}),
        ("after_window", {"created_utc": 1600000000}), ("score_missing", {"score": None}),
        ("score_below_min", {"score": 2}), ("score_below_min", {"score": -5}),
        ("wikipedia", {"url": "https://en.wikipedia.org/wiki/Honey_bee"}),
        ("blocked_domain", {"url": "https://i.imgur.com/a.png"}),
        ("blocked_domain", {"url": "https://www.youtube.com/watch?v=1"}),
        ("blocked_extension", {"url": "https://cdn.example/pic.JPEG?w=1"}),
        ("blocked_extension", {"url": "https://files.example/setup.exe"}),
    ]:
        plan.drop(reason, **fields)
    plan.raw(b'{"id": "trunc", "url": "https://trunc', "broken_json")
    plan.raw(b'["an", "array"]', "not_an_object")
    plan.raw(b"", "empty_line")


def plant_multibyte_line(plan: Plan) -> None:
    """A link line with 3 MB of random two-byte characters (barely compressible, so it spans
    several compressed reads): read boundaries fall inside its characters."""
    rng = random.Random(11)
    title = "".join(chr(rng.randrange(0x100, 0x800)) for _ in range(1_500_000))
    plan.raw(orjson.dumps({"id": "mb1", "created_utc": 1400000000, "score": 9, "title": title,
                           "url": "https://multibyte.example/café"}), "kept")
    plan.urls["https://multibyte.example/caf%C3%A9"] = {"mb1"}


BIG_READ = 256 << 10


def big_dump_lines(plan: Plan) -> list[bytes]:
    """Incompressible self posts (> 128 MiB compressed) around the planted cases."""
    rng = random.Random(1)
    chunks: list[bytes] = []
    size = 0

    def add(items: list[dict | bytes]) -> None:
        nonlocal size
        data = lines(items)
        chunks.append(data)
        size += len(data)

    for block in range(140):
        selftext = base64.b64encode(os.urandom(1 << 20)).decode()
        add([submission(rng, 10**6 + block, is_self=True, selftext=selftext, score=100)])
        plan.reasons["self_post"] += 1
        if block == 70:
            start = len(plan.items)
            plant_every_case(plan)
            add(plan.items[start:])
            start = len(plan.items)
            plant_multibyte_line(plan)
            add(plan.items[start:])
    return chunks


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dumps")
    plan = Plan()
    big = write_zst(folder / "RS_2014-05.zst", big_dump_lines(plan), level=1)
    assert big.stat().st_size > 128 << 20
    with pytest.raises(zstandard.ZstdError, match="Frame requires too much memory"):
        zstandard.ZstdDecompressor().stream_reader(open(big, "rb")).read(100)
    # Two more dumps in the other formats, sharing a URL with the big one.
    for name, pack in (("RS_v2_2014-06.xz", lzma.compress), ("RS_2014-07.bz2", bz2.compress)):
        start = len(plan.items)
        for i in range(40):
            plan.keep(f"https://{name[:5].lower()}.example/{i}", f"https://{name[:5].lower()}.example/{i}")
        plan.keep("https://dup.example/same?a=1&b=2", "https://dup.example/same?a=1&b=2", subreddit="books")
        (folder / name).write_bytes(pack(lines(plan.items[start:])))
    return folder, plan


def run_links(workdir: Path, files: list[Path], **links) -> list:
    from model.base.schema import validate
    from pipeline.config import LocalExecutorConfig, PipelineConfig, PushshiftSourceConfig
    from pipeline.executor import LocalExecutor
    from pipeline.registry import build

    cfg = PipelineConfig(workdir=str(workdir), stages=["links"], executor=LocalExecutorConfig(workers=2),
                         source=PushshiftSourceConfig(files=[str(f) for f in files]),
                         links=LinksConfig(**links))
    validate(cfg)
    stages = build(cfg.stages, cfg)
    LocalExecutor(cfg.executor).run(stages)
    return stages


def read_links(root: Path) -> dict[str, list[dict]]:
    return {p.name: pq.read_table(p).to_pylist() for p in sorted(root.glob("part-*.parquet"))}


@pytest.mark.slow
def test_planted_dumps_give_exactly_the_expected_links(planted, tmp_path):
    folder, plan = planted
    split_chars = 0  # read boundaries that cut a UTF-8 character in two
    previous = b""
    for block in iter_blocks(folder / "RS_2014-05.zst", BIG_READ):
        split_chars += bool(previous) and (block[0] & 0xC0) == 0x80
        previous = block
    assert split_chars >= 1

    files = sorted(folder.iterdir())
    mapper, reducer = run_links(tmp_path, files, partitions=8, read_bytes=BIG_READ, **WINDOW)
    parts = read_links(reducer.paths.root)
    assert len(parts) == 8
    rows = [row for part in parts.values() for row in part]
    assert {r["url"]: set(r["submission_ids"]) for r in rows} == plan.urls

    import json

    mapped = json.loads(mapper.paths.stats.read_text())
    assert mapped["counts"] == dict(plan.reasons)
    reduced = json.loads(reducer.paths.stats.read_text())
    assert reduced["counts"] == {"kept": len(plan.urls), "duplicate_submission": 1}
    assert reduced["submissions"] == mapped["counts"]
    assert reduced["metrics"]["submissions"] == sum(len(ids) for ids in plan.urls.values())
    assert reduced["months"]["2014-05"]["kept"] > 300

    dup = next(r for r in rows if r["url"] == "https://dup.example/same?a=1&b=2")
    assert dup["n_submissions"] == 4 and dup["subreddits"] == ["books", "news", "science"]
    assert dup["raw_url"] == "https://dup.example/same?b=2&a=1"  # the earliest submission's
    assert dup["score_sum"] == sum(dup_scores(plan, dup["submission_ids"]))

    owner: dict[str, str] = {}
    for name, part in parts.items():  # grouped by host, and each host in one part only
        keys = [(r["host"], r["url"]) for r in part]
        assert keys == sorted(keys)
        for host in {r["host"] for r in part}:
            assert owner.setdefault(host, name) == name


def dup_scores(plan: Plan, ids: list[str]) -> list[int]:
    scores = {}
    for item in plan.items:
        if isinstance(item, dict) and item["id"] in ids:
            scores[item["id"]] = int(item["score"])
    return [scores[i] for i in ids]


def test_sum_per_url_rule(tmp_path):
    items = [{"id": f"s{i}", "url": "https://sum.example/a", "score": 1, "created_utc": 1400000000 + i,
              "subreddit": "news"} for i in range(3)]
    items += [{"id": "t1", "url": "https://sum.example/b", "score": 2, "created_utc": 1400000000}]
    dump = tmp_path / "RS_2014-01.json"
    dump.write_bytes(lines(items))
    _, reducer = run_links(tmp_path / "w", [dump], partitions=2, score_rule="sum_per_url")
    rows = [r for part in read_links(reducer.paths.root).values() for r in part]
    assert [(r["url"], r["score_sum"]) for r in rows] == [("https://sum.example/a", 3)]
    import json

    assert json.loads(reducer.paths.stats.read_text())["counts"] == {"kept": 1, "url_score_below_min": 1}


def test_truncated_dump_is_counted_and_the_rest_kept(tmp_path):
    good = lines([{"id": f"g{i}", "url": f"https://t.example/{i}", "score": 5, "created_utc": 1400000000}
                  for i in range(20000)])
    whole = write_zst(tmp_path / "whole.zst", good, window_log=27)
    cut = tmp_path / "RS_2014-02.zst"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    mapper, reducer = run_links(tmp_path / "w", [cut], partitions=2, read_bytes=4096)
    import json

    counts = json.loads(mapper.paths.stats.read_text())["counts"]
    assert counts["dump_read_error"] == 1
    assert 0 < counts["kept"] < 20000
    rows = [r for part in read_links(reducer.paths.root).values() for r in part]
    assert len(rows) == counts["kept"]


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_gives_identical_links(tmp_path):
    import subprocess
    import sys

    from pipeline.paths import StagePaths
    from pipeline.runtime import completed_tasks
    from tests.conftest import REPO, stage_outputs
    from tests.helpers import TaskGate, kill_part_way

    rng = random.Random(3)
    for month in range(1, 7):
        items = [submission(rng, month * 10**5 + i) for i in range(2000)]
        write_zst(tmp_path / f"RS_2017-{month:02d}.zst", lines(items), level=1)

    def command(workdir: Path) -> list[str]:
        return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[links]",
                f"source.files=[{tmp_path}/RS_2017-*.zst]", "links.partitions=6",
                "links.map_buffer_rows=700", "executor.workers=1"]

    clean = subprocess.run(command(tmp_path / "clean"), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert clean.returncode == 0, clean.stderr
    killed = tmp_path / "killed"
    mapped = StagePaths(killed, "links_map")
    gate = TaskGate(tmp_path / "gate", hold=("links_map",))
    gate.release("links_map", 0, 1)  # two map tasks finish; the third is held running when killed
    kill_part_way(command(killed),
                  lambda: completed_tasks(mapped) == {0, 1} and 2 in gate.started("links_map"), gate)
    assert completed_tasks(mapped) == {0, 1}
    rerun = subprocess.run(command(killed), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for stage in ("links_map", "links"):
        assert stage_outputs(StagePaths(killed, stage).root) == \
            stage_outputs(StagePaths(tmp_path / "clean", stage).root)
    assert read_links(StagePaths(killed, "links").root)


def test_the_demo_sample_gives_the_sample_documents(tmp_path):
    import json

    from pipeline.sample import ARCHIVED, DROPS, documents, write_dump

    dump = write_dump(tmp_path / "dumps")
    mapper, reducer = run_links(tmp_path / "w", [dump], partitions=2)
    rows = [r for part in read_links(reducer.paths.root).values() for r in part]
    links = sorted([d["url"] for d in documents()] + [url for url, _, _ in DROPS] + [ARCHIVED["url"]])
    assert sorted(r["url"] for r in rows) == links  # the drops are for later stages
    counts = json.loads(mapper.paths.stats.read_text())["counts"]
    assert counts["kept"] == len(links) and sum(counts.values()) == 2 * len(documents()) + len(DROPS) + 1


def test_the_largest_hosts_and_the_crawls_time_floor_are_reported(tmp_path):
    import json
    import random

    import pyarrow.parquet as pq

    from tests.dumps import lines, submission, write_zst

    rng = random.Random(11)
    rows = [submission(rng, i, score=10) for i in range(2000)]
    dump = tmp_path / "RS_2017-01.zst"
    write_zst(dump, lines(rows))
    _, reducer = run_links(tmp_path / "w", [dump], partitions=4)
    stats = json.loads(reducer.paths.stats.read_text())
    per_host: dict[str, int] = {}
    for part in sorted(reducer.paths.root.glob("part-*.parquet")):
        for host in pq.read_table(part, columns=["host"]).column("host").to_pylist():
            per_host[host] = per_host.get(host, 0) + 1
    expected = sorted(per_host.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert [tuple(h) for h in stats["top_hosts"]] == expected  # merged over the four partitions, ranked
    assert stats["crawl_floor_s"] == expected[0][1] * 1.0  # fetch.per_host_delay_s's default
