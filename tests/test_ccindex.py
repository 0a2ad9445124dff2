"""The join of the links with Common Crawl's columnar index (pipeline/fetch/ccindex.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.base.schema import validate
from pipeline import runtime
from pipeline.fetch import ccindex
from pipeline.fetch.ccindex import (
    CAPTURE_SCHEMA,
    Capture,
    CCIndexMapStage,
    CCIndexReduceStage,
    HostFilter,
    ccindex_stages,
    choose_capture,
    match_key,
    normalize_host,
    read_captures,
)
from pipeline.links.rules import partition_of
from pipeline.paths import StagePaths
from pipeline.runtime import StageError
from pipeline.sample.archive import FakeArchives
from tests.cc_index import (
    CRAWLS,
    DAY,
    INDEX_TABLE,
    Synthetic,
    index_row,
    join_config,
    link_row,
    publish_listing,
    run_join,
    run_stage,
    write_index,
    write_links,
)
from tests.conftest import REPO, stage_outputs

T0 = 1_490_000_000  # a submission time (March 2017)


# --- pure functions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "host", "key"), [
    ("https://example.com/a?b=1", "example.com", ("example.com", "/a?b=1")),
    ("http://www.example.com/a?b=1", "www.example.com", ("example.com", "/a?b=1")),
    ("https://www.example.com:8443/a", "www.example.com", ("example.com", ":8443/a")),
    ("http://[2001:db8::1]:8080/x", "2001:db8::1", ("2001:db8::1", ":8080/x")),
    ("https://www.www.example.com/", "www.www.example.com", ("www.example.com", "/")),
])
def test_match_key_ignores_the_scheme_and_www(url, host, key):
    assert match_key(url, host) == key


def test_normalize_host_as_the_links_hold_hosts():
    assert normalize_host("WWW.Example.COM.") == "www.example.com"
    assert normalize_host("bücher.example") == "xn--bcher-kva.example"
    assert normalize_host("") is None and normalize_host(None) is None


def capture(fetch_s: int, filename: str = "a.warc.gz", offset: int = 0) -> Capture:
    return Capture("example.com", "/a", fetch_s, filename, offset, 10, CRAWLS[0])


def test_the_nearest_capture_in_the_window_wins():
    window = 365 * DAY
    before, after, far = capture(T0 - 10 * DAY), capture(T0 + 3 * DAY), capture(T0 + 400 * DAY)
    assert choose_capture(T0, [before, after, far], window) == (after, "matched")
    assert choose_capture(T0, [far], window) == (None, "outside_window")
    assert choose_capture(T0, [], window) == (None, "no_capture")
    # ties: the earlier capture, then the file name, then the offset
    assert choose_capture(T0, [capture(T0 + 5), capture(T0 - 5)], window)[0] == capture(T0 - 5)
    same = [capture(T0, "b.warc.gz"), capture(T0, "a.warc.gz", 7), capture(T0, "a.warc.gz", 3)]
    assert choose_capture(T0, same, window)[0] == capture(T0, "a.warc.gz", 3)
    # no submission time: the earliest capture, whatever the window
    assert choose_capture(None, [after, far, before], window) == (before, "matched")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_fetch_time_of_any_unit_and_int96_reads_as_unix_seconds(unit, tmp_path):
    times = pa.array([T0 * 10**9 + 999_999_999, None], pa.timestamp("ns", tz="UTC")).cast(
        pa.timestamp(unit, tz="UTC"), safe=False)
    assert ccindex.epoch_seconds(times).to_pylist() == [T0, None]
    pq.write_table(pa.table({"fetch_time": times}), tmp_path / "old.parquet",
                   use_deprecated_int96_timestamps=True)
    read = pq.read_table(tmp_path / "old.parquet").column("fetch_time").combine_chunks()
    assert ccindex.epoch_seconds(read).to_pylist() == [T0, None]


def test_host_filter_never_misses_a_host_and_rarely_passes_another():
    hosts = [f"host{i}.example" for i in range(20_000)]
    bloom = HostFilter(64 << 10, len(hosts))
    bloom.add(hosts)
    assert bloom.contains(hosts).all()
    others = bloom.contains([f"other{i}.example" for i in range(20_000)]).mean()
    assert others < 3 * bloom.false_positive_rate() + 1e-3 and others < 0.01


# --- the passes on a synthetic index ---------------------------------------------------------------


def make_links(cfg, rows) -> None:
    validate(cfg)
    write_links(cfg, rows)


def captures_by_url(workdir: Path, partitions: int) -> dict[str, tuple]:
    """Every capture the reduce wrote, by link URL, after checking each part against its links."""
    found = {}
    for p in range(partitions):
        urls = pq.read_table(StagePaths(workdir, "links").root / f"part-{p:05d}.parquet").column("url")
        table = pq.read_table(ccindex.captures_path(workdir, p))
        assert table.schema == CAPTURE_SCHEMA
        rows = read_captures(workdir, p)
        assert list(rows) == sorted(rows), "sorted by ord"
        for ord_, row in rows.items():
            assert row["url"] == urls[ord_].as_py()
            found[row["url"]] = (row["captured_at"], row["crawl"], row["warc_filename"],
                                 row["warc_offset"], row["warc_length"])
    return found


SYNTHETIC = Synthetic(hosts=96)


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """The synthetic index (two crawls, several files each) joined with its links."""
    root = tmp_path_factory.mktemp("ccindex")
    for crawl in CRAWLS:
        write_index(root / "index", crawl, SYNTHETIC.rows(crawl), rows_per_file=300, row_group_rows=100)
    cfg = join_config(root / "work", root / "index", commoncrawl_join_buffer_rows=40,
                      commoncrawl_join_batch_rows=64)
    make_links(cfg, SYNTHETIC.links())
    mapped, reduced = run_join(cfg)
    return cfg, mapped, reduced


def test_each_link_gets_its_nearest_capture_across_crawls_and_url_variants(joined):
    cfg, _, reduced = joined
    expected = SYNTHETIC.expected()
    assert {crawl for _, crawl, *_ in expected.values()} == set(CRAWLS)
    assert captures_by_url(Path(cfg.workdir), cfg.links.partitions) == expected
    assert {k: reduced["counts"][k] for k in ("matched", "no_capture", "outside_window")} \
        == SYNTHETIC.reasons()


def test_the_map_counts_what_each_filter_drops(joined):
    _, mapped, _ = joined
    captures = [c for h in range(SYNTHETIC.hosts) for j in range(SYNTHETIC.pages)
                for c in SYNTHETIC.captures(h, j)]
    bad_status = sum(c[4] != 200 for c in captures)
    not_html = sum(c[4] == 200 and c[5] != "text/html" for c in captures)
    of_links = sum(c[4] == 200 and c[5] == "text/html"
                   for h in range(0, SYNTHETIC.hosts, SYNTHETIC.link_host_every)
                   for j in range(SYNTHETIC.pages) for c in SYNTHETIC.captures(h, j))
    counts, metrics = mapped["counts"], mapped["metrics"]
    assert metrics["index_rows"] == len(captures)
    assert counts["status_not_200"] == bad_status and counts["not_html"] == not_html
    assert counts["kept"] == metrics["passed_hosts"] == of_links
    assert counts["host_not_in_links"] == len(captures) - bad_status - not_html - of_links
    assert metrics["runs"] >= 4, "the small buffer was written as several runs"


def test_every_index_row_goes_to_the_partition_of_its_host(joined):
    cfg, mapped, _ = joined
    workdir, partitions = Path(cfg.workdir), cfg.links.partitions
    rows = 0
    for p in range(partitions):
        for run in ccindex.run_files(workdir, p):
            table = pq.read_table(run)
            rows += table.num_rows
            assert {partition_of(h, partitions) for h in table.column("host_key").to_pylist()} == {p}
            keys = list(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
            assert keys == sorted(keys), f"{run} is a sorted run"
    assert rows == mapped["counts"]["kept"]


def test_a_finished_join_reruns_as_nothing(joined):
    cfg, _, _ = joined
    for stage in (CCIndexMapStage(cfg), CCIndexReduceStage(cfg)):
        before = stage_outputs(stage.paths.root)
        runtime.prepare(stage)
        assert all(runtime.run_task(stage, i).get("skipped") for i in range(stage.num_tasks))
        assert stage_outputs(stage.paths.root) == before


def test_merging_in_rounds_gives_the_same_captures(tmp_path, monkeypatch):
    monkeypatch.setattr(ccindex, "MERGE_FAN_IN", 2)
    syn = Synthetic(hosts=24)
    for crawl in CRAWLS:
        write_index(tmp_path / "index", crawl, syn.rows(crawl), rows_per_file=100, row_group_rows=50)
    cfg = join_config(tmp_path / "work", tmp_path / "index", partitions=2,
                      commoncrawl_join_buffer_rows=10, commoncrawl_join_batch_rows=16)
    make_links(cfg, syn.links())
    mapped, _ = run_join(cfg)
    assert mapped["metrics"]["runs"] > 4
    assert captures_by_url(tmp_path / "work", 2) == syn.expected()
    assert not list((tmp_path / "work").rglob("_scratch")), "scratch runs are removed"


# --- edge cases, written out -----------------------------------------------------------------------


def test_hosts_types_columns_and_bad_urls_of_real_index_rows(tmp_path):
    """A crawl whose files carry a ``crawl`` column; IDN hosts; detected vs declared media types;
    a link without a submission time; URLs that do not normalize."""
    a, b = CRAWLS
    links = [
        link_row("https://news.example/story", "news.example", T0),
        link_row("https://xn--bcher-kva.example/buch", "xn--bcher-kva.example", T0),
        link_row("https://undated.example/x", "undated.example", None),
        link_row("https://typed.example/x", "typed.example", T0),
    ]
    index_a = [
        index_row("https://news.example/story", T0 - 100 * DAY, a, offset=1),
        index_row("https://bücher.example/buch", T0 + 7 * DAY, a, offset=2),
        index_row("https://undated.example/x", T0 + 50 * DAY, a, offset=3),
        index_row("https://typed.example/x", T0, a, mime="text/html", detected="application/pdf"),
        index_row("https://typed.example/x", T0 + 1, a, status=301),
        index_row("https://typed.example/x", T0 + 9, a, mime="text/html; charset=UTF-8", detected=None,
                  offset=4),
        index_row("ftp://news.example/story", T0, a),
    ]
    index_b = [
        index_row("https://NEWS.example/story#top", T0 + 20 * DAY, b, offset=5),
        index_row("https://undated.example/x", T0 + 10 * DAY, b, offset=6),
        index_row("https://typed.example/x", T0 + 2, b, mime="application/octet-stream",
                  detected="TEXT/HTML", offset=7),
        index_row("https://user:pw@news.example/story", T0, b),
    ]
    write_index(tmp_path / "index", a, index_a, rows_per_file=3, row_group_rows=2)
    write_index(tmp_path / "index", b, index_b, rows_per_file=10, row_group_rows=10, crawl_column=True)
    cfg = join_config(tmp_path / "work", tmp_path / "index", partitions=3)
    make_links(cfg, links)
    mapped, reduced = run_join(cfg)
    got = captures_by_url(tmp_path / "work", 3)
    assert {url: (t - T0, crawl, offset) for url, (t, crawl, _, offset, _) in got.items()} == {
        "https://news.example/story": (20 * DAY, b, 5),  # nearer than the other crawl's
        "https://xn--bcher-kva.example/buch": (7 * DAY, a, 2),
        "https://undated.example/x": (10 * DAY, b, 6),  # the earliest
        "https://typed.example/x": (2, b, 7),  # detected HTML wins over the declared type
    }
    assert mapped["counts"]["bad_scheme"] == 1 and mapped["counts"]["credentials_in_url"] == 1
    assert mapped["counts"]["not_html"] == 1 and mapped["counts"]["status_not_200"] == 1
    assert reduced["counts"] == {"matched": 4}


def test_inputs_and_config_are_checked(tmp_path):
    write_index(tmp_path / "index", CRAWLS[0], [index_row("https://a.example/", T0, CRAWLS[0])],
                rows_per_file=10, row_group_rows=10)
    cfg = join_config(tmp_path / "work", tmp_path / "index")
    validate(cfg)
    with pytest.raises(StageError, match="no links in .*run the links stage first"):
        CCIndexMapStage(cfg).check_inputs()
    make_links(cfg, [link_row("https://a.example/", "a.example", T0)])
    with pytest.raises(StageError, match="has 4 partitions but links.partitions=2"):
        CCIndexMapStage(join_config(tmp_path / "work", tmp_path / "index", partitions=2)).check_inputs()
    with pytest.raises(StageError, match="the map pass has not run"):
        CCIndexReduceStage(cfg).check_inputs()
    with pytest.raises(StageError, match=f"no index of crawl {CRAWLS[1]} .*crawl={CRAWLS[1]}"):
        run_stage(CCIndexMapStage(cfg))
    one = join_config(tmp_path / "work", tmp_path / "index", commoncrawl_crawls=[CRAWLS[0]])
    run_stage(CCIndexMapStage(one))
    with pytest.raises(StageError, match="made with another config .*content_types"):
        CCIndexReduceStage(join_config(tmp_path / "work", tmp_path / "index", commoncrawl_crawls=[CRAWLS[0]],
                                       content_types=["text/plain"])).check_inputs()
    assert read_captures(tmp_path / "work", 0) == {}, "no file: no captures"
    run_stage(CCIndexReduceStage(one))
    assert [r["url"] for p in range(4) for r in read_captures(tmp_path / "work", p).values()] \
        == ["https://a.example/"]


def test_the_join_is_a_fetch_pass_only_with_commoncrawl_and_an_index(tmp_path):
    cfg = join_config(tmp_path, "remote")
    assert [s.name for s in ccindex_stages(cfg)] == ["fetch_ccindex_map", "fetch_ccindex"]
    cfg.fetch.commoncrawl_index = ""
    assert ccindex_stages(cfg) == []
    cfg.fetch.commoncrawl_index, cfg.fetch.archive = "remote", "wayback"
    assert ccindex_stages(cfg) == []


# --- the index read over HTTP ----------------------------------------------------------------------


def test_remote_index_is_read_with_range_requests(tmp_path, monkeypatch):
    monkeypatch.setattr(ccindex, "READ_BUFFER_BYTES", 4096)  # several ranges per (small) file
    syn = Synthetic(hosts=40)
    site = tmp_path / "site"
    for crawl in CRAWLS:
        write_index(site / INDEX_TABLE, crawl, syn.rows(crawl), rows_per_file=200, row_group_rows=50)
        publish_listing(site, crawl)
    with FakeArchives() as fa:  # Common Crawl's data server: files, read whole or by range
        for path in (p for p in site.rglob("*") if p.is_file()):
            fa.add_file(path.relative_to(site).as_posix(), path.read_bytes())
        url, served = fa.commoncrawl_data_url, fa.answered
        cfg = join_config(tmp_path / "work", "remote", commoncrawl_data_url=url)
        make_links(cfg, syn.links())
        mapped, _ = run_join(cfg)
        assert captures_by_url(tmp_path / "work", 4) == syn.expected()
        assert mapped["metrics"]["index_files"] == len(list(site.rglob("*.parquet")))
        # whole files only for the listings (each map task reads them); the Parquet files by ranges
        assert served["200"] == len(CRAWLS) * cfg.fetch.commoncrawl_join_tasks and served["404"] == 0
        assert served["206"] >= 2 * mapped["metrics"]["index_files"]
        missing = join_config(tmp_path / "other", "remote", commoncrawl_data_url=url,
                              commoncrawl_crawls=["CC-MAIN-2099-01"])
        with pytest.raises(StageError, match="crawl CC-MAIN-2099-01 has no index listing at "
                                             f"{url}/crawl-data/CC-MAIN-2099-01/cc-index-table.paths.gz"):
            ccindex.index_files(missing.fetch)


# --- memory -------------------------------------------------------------------------------------------


def join_in_child(root: Path, scale: int) -> dict:
    """Index and links at ``scale``, joined in a child process; its stats and peak RSS."""
    syn = Synthetic(hosts=19_500 * scale)  # about 250,000 index rows and 19,500 links per scale unit
    index_bytes = 0
    for crawl in CRAWLS:
        paths = write_index(root / "index", crawl, syn.rows(crawl), rows_per_file=100_000,
                            row_group_rows=10_000)
        index_bytes += sum(p.stat().st_size for p in paths)
    fetch = {"commoncrawl_join_buffer_rows": 20_000, "commoncrawl_join_batch_rows": 4096}
    make_links(join_config(root / "work", root / "index", **fetch), syn.links())
    spec = {"workdir": str(root / "work"), "index": str(root / "index"), "fetch": fetch}
    started = time.monotonic()
    child = subprocess.run([sys.executable, "-m", "tests.cc_index", json.dumps(spec)], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.splitlines()[-1])
    assert result["reduce"]["counts"] == syn.reasons()
    return {**result, "index_bytes": index_bytes, "join_s": time.monotonic() - started}


@pytest.mark.slow
def test_memory_stays_flat_when_the_index_and_links_grow_4x(tmp_path):
    small = join_in_child(tmp_path / "small", 1)
    large = join_in_child(tmp_path / "large", 4)
    mib = 1 << 20
    for name, run in (("1x", small), ("4x", large)):
        print(f"\nccindex join {name}: {run['map']['metrics']['index_rows']:,} index rows "
              f"({run['index_bytes'] / mib:.1f} MiB of Parquet), "
              f"{sum(run['reduce']['counts'].values()):,} links, "
              f"{run['map']['counts']['kept']:,} rows shuffled in {run['map']['metrics']['runs']:.0f} runs, "
              f"{run['reduce']['counts']['matched']:,} matched; "
              f"peak RSS {run['peak_rss_bytes'] / mib:.1f} MiB (VmHWM; ru_maxrss "
              f"{run['ru_maxrss_bytes'] / mib:.1f} MiB, the parent's included); join {run['join_s']:.1f} s")
    assert large["map"]["metrics"]["index_rows"] >= 3.9 * small["map"]["metrics"]["index_rows"]
    assert large["peak_rss_bytes"] <= small["peak_rss_bytes"] * 1.15 + 25 * mib
