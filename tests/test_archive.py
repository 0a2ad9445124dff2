"""Dead links recovered from web archives (``fetch.archive``), against loopback fakes of the Wayback
Machine and Common Crawl (``pipeline.sample.archive``: their CDX APIs, raw captures, WARC files read
with range requests).

The address guard stays on: only 127.0.0.0/8, where the fakes and the test sites listen, is exempt,
so an archived page or redirect naming another private address (10/8, the metadata address) must be
refused by the guard itself.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.config import FetchConfig
from pipeline.fetch import fetch_urls
from pipeline.fetch.archive import ArchiveRate, Found, crawl_time, parse_record, timestamp14, unix_of
from pipeline.fetch.crawler import Refused
from pipeline.sample.archive import Capture, FakeArchives, timestamp_of, warc_records
from tests.conftest import REPO
from tests.helpers import loopback_site
from tests.web_server import refused_url

DAY = 86400
CREATED = 1_400_000_000  # 2014-05-13: the submission time of every link here
CRAWL_A, CRAWL_B = "CC-MAIN-2014-15", "CC-MAIN-2014-23"  # early April, early June 2014


DEAD = urlsplit(refused_url("127.0.0.1")).port  # nothing listens: connecting is refused at once


def dead(path: str, host: str = "gone.test") -> str:
    return f"http://{host}:{DEAD}{path}"


def page(text: str) -> bytes:
    html = f"<!DOCTYPE html><html><head><title>{text}</title></head><body><p>{text}</p></body></html>"
    return html.encode()


def at(days: float) -> str:
    return timestamp_of(CREATED + days * DAY)


def config(fa: FakeArchives, archive: object, **kw: object) -> FetchConfig:
    base = dict(archive=archive, allowed_networks=["127.0.0.0/8"],
                hosts=["gone.test=127.0.0.1", "short.test=127.0.0.1", "live.test=127.0.0.1"],
                wayback_cdx_url=fa.wayback_cdx_url, wayback_replay_url=fa.wayback_replay_url,
                commoncrawl_cdx_url=fa.commoncrawl_cdx_url, commoncrawl_data_url=fa.commoncrawl_data_url,
                commoncrawl_crawls=[CRAWL_A, CRAWL_B], archive_rate_per_s=100.0, retry_backoff_s=0.05,
                robots=False, timeout_s=60.0, per_host_delay_s=0.0)
    base.update(kw)
    return FetchConfig(**base)  # type: ignore[arg-type]


def responses(folder: Path) -> list[tuple[str, bytes, dict[str, str]]]:
    """(target URI, payload, WARC headers) of every response record, in file order."""
    found = []
    for path in sorted(folder.glob("*.warc.gz")):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    found.append((record.rec_headers.get_header("WARC-Target-URI"),
                                  record.content_stream().read(), dict(record.rec_headers.headers)))
    return found


def requests_to(fa: FakeArchives, prefix: str) -> list[float]:
    return [t for t, path in fa.requests if path.startswith(prefix)]


# --- recovery from each archive ------------------------------------------------------------------


def test_wayback_recovers_a_dead_link_as_the_raw_capture_with_its_provenance(tmp_path: Path) -> None:
    url = dead("/story/1")
    with FakeArchives(wayback=[Capture(url, at(1), body=page("as submitted"))]) as fa:
        [row] = fetch_urls([url], config(fa, "wayback"), tmp_path, created=CREATED)
    assert row["reason"] is None and row["source"] == "wayback"
    assert row["live_reason"] == "connection_error"  # why it went to the archive
    assert row["archived_at"] == CREATED + DAY
    assert row["archive_url"] == f"{fa.wayback_replay_url}/{at(1)}id_/{url}" and row["archive_id"] == at(1)
    [(target, body, headers)] = responses(tmp_path)
    assert target == url and body == page("as submitted")  # id_: no toolbar, no rewritten links
    assert headers["WARC-Date"] == "2014-05-14T16:53:20Z"  # when it was captured
    assert headers["WARC-Archive-Source"] == "wayback" and headers["WARC-Archive-URI"] == row["archive_url"]


def test_commoncrawl_recovers_a_dead_link_by_a_range_request(tmp_path: Path) -> None:
    url = dead("/story/2")
    with FakeArchives(commoncrawl={CRAWL_B: [Capture(url, at(20), body=page("crawled"))]}) as fa:
        [row] = fetch_urls([url], config(fa, "commoncrawl"), tmp_path, created=CREATED)
        filename = fa.warc_filename(CRAWL_B)
    assert row["reason"] is None and row["source"] == "commoncrawl"
    assert row["archived_at"] == CREATED + 20 * DAY
    assert row["archive_url"] == f"{fa.commoncrawl_data_url}/{filename}"
    assert row["archive_id"].startswith("<urn:uuid:")
    [(target, body, headers)] = responses(tmp_path)
    assert target == url and body == page("crawled")
    assert headers["WARC-Archive-Record-ID"] == row["archive_id"]
    assert headers["WARC-Archive-Range"].startswith("bytes=")


def test_a_data_server_ignoring_range_is_refused_not_read_whole(tmp_path: Path) -> None:
    url = dead("/story/3")
    with FakeArchives(commoncrawl={CRAWL_B: [Capture(url, at(20), body=page("crawled"))]}) as fa:
        fa.ignore_range = True
        [row] = fetch_urls([url], config(fa, "commoncrawl"), tmp_path, created=CREATED)
    assert row["reason"] == "commoncrawl_range_ignored"


def test_archives_are_tried_in_order(tmp_path: Path) -> None:
    only_cc, both = dead("/only-cc"), dead("/both")
    with FakeArchives(wayback=[Capture(both, at(2), body=page("wayback"))],
                      commoncrawl={CRAWL_B: [Capture(both, at(20), body=page("cc")),
                                             Capture(only_cc, at(20), body=page("cc only"))]}) as fa:
        rows = fetch_urls([both, only_cc], config(fa, ["wayback", "commoncrawl"]), tmp_path, created=CREATED)
    assert [(r["source"], r["reason"]) for r in rows] == [("wayback", None), ("commoncrawl", None)]


# --- which snapshot ------------------------------------------------------------------------------


def test_prefer_archive_takes_the_snapshot_nearest_the_submission_not_the_live_page(tmp_path: Path) -> None:
    served: list[str] = []

    def live(path: str, host: str) -> tuple[int, str, bytes]:
        served.append(path)
        return 200, "text/html", page("as it is today")

    with loopback_site(live) as port:
        url, fresh = f"http://live.test:{port}/story", f"http://live.test:{port}/never-archived"
        captures = [Capture(url, at(-100), body=page("100 days before")),
                    Capture(url, at(3), body=page("3 days after")),
                    Capture(url, at(40), body=page("40 days after"))]
        with FakeArchives(wayback=captures) as fa:
            cfg = config(fa, "wayback", prefer="archive")
            rows = fetch_urls([url, fresh], cfg, tmp_path, created=CREATED)
    assert rows[0]["source"] == "wayback" and rows[0]["archived_at"] == CREATED + 3 * DAY
    assert rows[0]["live_reason"] is None
    assert rows[1]["source"] == "live" and rows[1]["reason"] is None  # no snapshot: live
    assert served == ["/never-archived"], "the archived link is never fetched live"
    assert [body for _, body, _ in responses(tmp_path)] == [page("3 days after"), page("as it is today")]


def test_commoncrawl_nearest_capture_over_crawls_wins(tmp_path: Path) -> None:
    url = dead("/story/4")
    crawls = {CRAWL_A: [Capture(url, at(-35), body=page("april"))],
              CRAWL_B: [Capture(url, at(21), body=page("june"))]}
    with FakeArchives(commoncrawl=crawls) as fa:
        [row] = fetch_urls([url], config(fa, "commoncrawl"), tmp_path, created=CREATED)
        late = fetch_urls([url], config(fa, "commoncrawl"), tmp_path / "late", created=CREATED + 40 * DAY)[0]
    assert row["archived_at"] == CREATED + 21 * DAY and late["archived_at"] == CREATED + 21 * DAY
    with FakeArchives(commoncrawl=crawls) as fa:
        early = fetch_urls([url], config(fa, "commoncrawl"), tmp_path / "early",
                           created=CREATED - 30 * DAY)[0]
    assert early["archived_at"] == CREATED - 35 * DAY


def test_no_snapshot_in_the_window_is_a_reason(tmp_path: Path) -> None:
    url = dead("/story/5")
    with FakeArchives(wayback=[Capture(url, at(400), body=page("much later"))]) as fa:
        [row] = fetch_urls([url], config(fa, "wayback", archive_window_days=180), tmp_path, created=CREATED)
    assert row["reason"] == "no_snapshot" and row["live_reason"] == "connection_error"
    assert row["source"] is None and row["warc_file"] is None


def test_a_live_page_or_a_refusal_never_goes_to_the_archives(tmp_path: Path) -> None:
    def live(path: str, host: str) -> tuple[int, str, bytes]:
        return (403, "text/html", b"no") if path == "/forbidden" else (200, "text/html", page("live"))

    with loopback_site(live) as port:
        urls = [f"http://live.test:{port}/ok", f"http://live.test:{port}/forbidden"]
        with FakeArchives(wayback=[Capture(u, at(1), body=page("archived")) for u in urls]) as fa:
            rows = fetch_urls(urls, config(fa, "wayback"), tmp_path, created=CREATED)
    assert [(r["source"], r["reason"]) for r in rows] == [("live", None), ("live", "http_403")]
    assert fa.requests == []


# --- politeness ----------------------------------------------------------------------------------


def test_an_archive_answering_429_then_503_slows_down_and_recovers(tmp_path: Path) -> None:
    url = dead("/story/6")
    with FakeArchives(wayback=[Capture(url, at(1), body=page("patience"))]) as fa:
        fa.fail_next("/cdx", 429, 1, retry_after="0.6")
        fa.fail_next("/web/", 503, 1)  # no Retry-After: the backoff (0.3 s)
        [row] = fetch_urls([url], config(fa, "wayback", retry_backoff_s=0.3), tmp_path, created=CREATED)
    assert row["reason"] is None and row["source"] == "wayback"
    cdx, web = requests_to(fa, "/cdx"), requests_to(fa, "/web/")
    assert len(cdx) == 2 and cdx[1] - cdx[0] >= 0.6
    assert len(web) == 2 and web[1] - web[0] >= 0.3


def test_requests_to_an_archive_keep_its_rate(tmp_path: Path) -> None:
    urls = [dead(f"/rate/{i}") for i in range(6)]
    with FakeArchives(wayback=[Capture(u, at(1), body=page(u)) for u in urls]) as fa:
        rows = fetch_urls(urls, config(fa, "wayback", archive_rate_per_s=8.0), tmp_path, created=CREATED)
    assert all(r["reason"] is None for r in rows)
    starts = sorted(t for t, _ in fa.requests)
    assert len(starts) == 12  # a lookup and a capture each
    # 8 per second: 11 intervals of 125 ms. A request reaches the server a little after its start,
    # later still on a busy machine, so single gaps are bounded loosely and the span firmly.
    assert starts[-1] - starts[0] >= 11 * 0.125 * 0.8, starts
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.125 * 0.3, starts


RATE_CHILD = """
import asyncio, sys, time
from pathlib import Path
from pipeline.fetch.archive import ArchiveRate
rate = ArchiveRate(Path(sys.argv[1]), 20.0)
async def main():
    for _ in range(8):
        await rate.wait()
        print(time.time(), flush=True)
asyncio.run(main())
"""


def test_the_rate_is_shared_by_every_process_of_a_run(tmp_path: Path) -> None:
    state = tmp_path / "state" / "wayback"
    children = [subprocess.Popen([sys.executable, "-c", RATE_CHILD, str(state)], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    starts = sorted(float(line) for child in children for line in child.communicate(timeout=60)[0].split())
    assert len(starts) == 16
    # 20 per second over both processes, not each: 15 intervals of 50 ms, where each process on its
    # own would take 7 (a start may wake late on a busy machine: the span is bounded with a margin).
    assert starts[-1] - starts[0] >= 15 * 0.05 * 0.8, starts


def test_a_pause_holds_back_every_later_request(tmp_path: Path) -> None:
    async def run() -> list[float]:
        rate = ArchiveRate(tmp_path / "rate", 100.0)
        await rate.wait()
        await rate.pause(0.5)
        before = time.time()
        await rate.wait()
        rate.close()
        return [time.time() - before]

    assert asyncio.run(run())[0] >= 0.45


# --- redirects and the guard ---------------------------------------------------------------------


@pytest.mark.parametrize("archive", ["wayback", "commoncrawl"])
def test_a_redirect_inside_the_archive_is_followed(tmp_path: Path, archive: str) -> None:
    short, target = dead("/s/abc", host="short.test"), dead("/2014/05/the-story")
    captures = [Capture(short, at(1), status=301, location=target),
                Capture(target, at(1.01), body=page("the story"))]
    with FakeArchives(wayback=captures, commoncrawl={CRAWL_B: captures}) as fa:
        [row] = fetch_urls([short], config(fa, archive), tmp_path, created=CREATED)
    assert row["reason"] is None and row["source"] == archive
    assert row["final_url"] == target and row["redirects"] == [target]
    records = responses(tmp_path)
    assert [uri for uri, _, _ in records] == [short, target]  # each hop under its original URI
    assert records[1][1] == page("the story")


@pytest.mark.parametrize("archive", ["wayback", "commoncrawl"])
def test_an_archived_redirect_to_a_private_address_is_refused(tmp_path: Path, archive: str) -> None:
    url = dead("/admin-link")
    inside = "http://10.0.0.7/admin"
    captures = [Capture(url, at(1), status=302, location=inside),
                Capture(inside, at(1.01), body=page("router admin"))]
    with FakeArchives(wayback=captures, commoncrawl={CRAWL_B: captures}) as fa:
        [row] = fetch_urls([url], config(fa, archive), tmp_path, created=CREATED)
        asked = [path for _, path in fa.requests]
    assert row["reason"] == "blocked_address" and row["warc_file"] is None
    assert not any("10.0.0.7" in path for path in asked), "the private page is never asked for"


def test_a_link_to_a_private_address_is_not_looked_up_either(tmp_path: Path) -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    with FakeArchives(wayback=[Capture(url, at(1), body=page("secrets"))]) as fa:
        [row] = fetch_urls([url], config(fa, "wayback", prefer="archive"), tmp_path, created=CREATED)
    assert row["reason"] == "blocked_address" and fa.requests == []


# --- small parts ---------------------------------------------------------------------------------


def test_timestamps_and_crawl_dates() -> None:
    assert timestamp14(CREATED) == "20140513165320" and unix_of("20140513165320") == CREATED
    assert unix_of("2014") == unix_of("20140101000000")
    assert time.gmtime(crawl_time("CC-MAIN-2017-13"))[:3] == (2017, 3, 27)  # Monday of ISO week 13
    assert time.gmtime(crawl_time("CC-MAIN-2012"))[:2] == (2012, 7)
    assert time.gmtime(crawl_time("CC-MAIN-2009-2010"))[0] == 2010


# --- the stage: resumable like the rest ----------------------------------------------------------


def archive_command(workdir: Path, dump: Path, fa: FakeArchives, hosts: list[str]) -> list[str]:
    mapped = ",".join(f"'{h}=127.0.0.1'" for h in hosts)
    return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[links,fetch]",
            f"source.files=[{dump}]", "links.partitions=2", "executor.workers=2",
            "fetch.allowed_networks=[127.0.0.0/8]", f"fetch.hosts=[{mapped}]", "fetch.robots=false",
            "fetch.per_host_delay_s=0", "fetch.retry_backoff_s=0.01", "fetch.flush_every=4",
            "fetch.archive=[wayback,commoncrawl]", f"fetch.commoncrawl_crawls=[{CRAWL_A},{CRAWL_B}]",
            f"fetch.wayback_cdx_url={fa.wayback_cdx_url}",
            f"fetch.wayback_replay_url={fa.wayback_replay_url}",
            f"fetch.commoncrawl_cdx_url={fa.commoncrawl_cdx_url}",
            f"fetch.commoncrawl_data_url={fa.commoncrawl_data_url}", "fetch.archive_rate_per_s=30"]


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_gives_the_same_outcomes(tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq

    from pipeline.fetch.stage import read_journal
    from tests.dumps import lines
    from tests.helpers import kill_part_way

    hosts = [f"dead{k}.test" for k in range(6)]
    urls = [dead(f"/story/{i}", host=hosts[i % len(hosts)]) for i in range(60)]
    wayback = [Capture(u, at(1), body=page(f"wayback {u}")) for u in urls[0::3]]
    cc = [Capture(u, at(20), body=page(f"cc {u}")) for u in urls[1::3]]  # urls[2::3]: in no archive
    dump = tmp_path / "RS_dead.json"
    dump.write_bytes(lines([{"id": f"x{i}", "url": u, "score": 10, "created_utc": CREATED,
                             "subreddit": "news"} for i, u in enumerate(urls)]))

    def outcomes(workdir: Path) -> dict[str, tuple]:
        rows = pq.read_table(workdir / "fetch" / "index").to_pylist()
        return {r["url"]: (r["reason"], r["source"], r["live_reason"], r["archived_at"], r["archive_id"])
                for r in rows}

    with FakeArchives(wayback=wayback, commoncrawl={CRAWL_B: cc}) as fa:
        clean = subprocess.run(archive_command(tmp_path / "clean", dump, fa, hosts), cwd=REPO,
                               capture_output=True, text=True, timeout=300)
        assert clean.returncode == 0, clean.stderr[-3000:]
        expected = outcomes(tmp_path / "clean")
        stats = json.loads((tmp_path / "clean" / "fetch" / "stats.json").read_text())
        assert stats["counts"] == {"kept": 40, "no_snapshot": 20}
        assert {k: v for k, v in stats["metrics"].items() if k.startswith(("pages_", "dead_"))} == {
            "pages_wayback": 20, "pages_commoncrawl": 20, "dead_connection_error": 60}

        workdir = tmp_path / "killed"
        journals = workdir / "fetch" / "_state" / "journal"

        def journaled() -> int:
            return sum(len(read_journal(p)) for p in journals.glob("*.jsonl")) if journals.is_dir() else 0

        kill_part_way(archive_command(workdir, dump, fa, hosts), lambda: journaled() >= 16)
        done = {r["url"] for p in journals.glob("*.jsonl") for r in read_journal(p).values()}
        asked = len(fa.requests)
        rerun = subprocess.run(archive_command(workdir, dump, fa, hosts), cwd=REPO, capture_output=True,
                               text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert 16 <= len(done) < 60
    assert outcomes(workdir) == expected
    # what the journal held was not asked of the archives again
    again = [path for _, path in fa.requests[asked:]
             if any(f"{u}&" in unquote(path) or unquote(path).endswith(u) for u in done)]
    assert again == [] and len(fa.requests) > asked
    kept = [u for u, r in expected.items() if r[0] is None]
    assert sorted(uri for uri, _, _ in responses(workdir / "fetch" / "warc")) == sorted(kept)


@pytest.mark.parametrize("where", ["local", "remote"])
def test_columnar_join_then_range_requests_recover_dead_links_without_lookups(tmp_path: Path,
                                                                             where: str) -> None:
    """fetch.commoncrawl_index: the links joined with Common Crawl's columnar index (a local copy, or
    the data server's, read by range requests), then each record fetched by a range request."""
    import gzip
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sample.archive import CC_INDEX_SCHEMA
    from tests.dumps import lines

    hosts = ["dead0.test", "dead1.test", "www.dead2.test"]
    urls = [dead(f"/story/{i}", host=hosts[i % 3]) for i in range(12)]
    crawls = {CRAWL_A: [Capture(u, at(-35), body=page(f"april {u}")) for u in urls[:8]],
              CRAWL_B: [Capture(u, at(21), body=page(f"june {u}")) for u in urls[4:10]]}
    dump = tmp_path / "RS_dead.json"
    dump.write_bytes(lines([{"id": f"x{i}", "url": u, "score": 10, "created_utc": CREATED,
                             "subreddit": "news"} for i, u in enumerate(urls)]))
    with FakeArchives(commoncrawl=crawls) as fa:
        index = tmp_path / "cc-index"
        for crawl in crawls:
            table = pa.Table.from_pylist(fa.cc_index_rows(crawl), schema=CC_INDEX_SCHEMA)
            path = f"cc-index/table/cc-main/warc/crawl={crawl}/subset=warc/part-00000.c000.gz.parquet"
            buffer = io.BytesIO()
            pq.write_table(table, buffer, row_group_size=4)
            if where == "local":
                (index / path).parent.mkdir(parents=True)
                (index / path).write_bytes(buffer.getvalue())
            else:
                fa.add_file(path, buffer.getvalue())
                listing = gzip.compress(f"{path}\n".encode())
                fa.add_file(f"crawl-data/{crawl}/cc-index-table.paths.gz", listing)
        command = archive_command(tmp_path / "work", dump, fa, [h.removeprefix("www.") for h in hosts]
                                  + ["www.dead2.test"])
        location = index / "cc-index/table/cc-main/warc" if where == "local" else "remote"
        command += ["fetch.archive=commoncrawl", "fetch.commoncrawl_join_tasks=2",
                    f"fetch.commoncrawl_index={location}"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        asked = [path for _, path in fa.requests]
    rows = {r["url"]: r for r in pq.read_table(tmp_path / "work" / "fetch" / "index").to_pylist()}
    got = {u: (r["source"], r["archived_at"]) for u, r in rows.items()}
    assert got == {**{u: ("commoncrawl", CREATED - 35 * DAY) for u in urls[:4]},
                   **{u: ("commoncrawl", CREATED + 21 * DAY) for u in urls[4:10]},  # the nearer crawl
                   **{u: (None, None) for u in urls[10:]}}
    assert all(rows[u]["reason"] == "no_snapshot" for u in urls[10:])
    assert not any("-index?" in path for path in asked), "no CDX lookups: the join found the captures"
    assert sum(path.startswith("/crawl-data/CC-MAIN") and path.endswith(".warc.gz") for path in asked) == 10


def test_an_unreachable_archive_is_counted_under_its_name(tmp_path: Path) -> None:
    url = dead("/story/7")
    with FakeArchives() as fa:
        cfg = config(fa, "wayback", wayback_cdx_url=f"http://gone.test:{DEAD}/cdx", retries=0)
        [row] = fetch_urls([url], cfg, tmp_path, created=CREATED)
    assert row["reason"] == "wayback_connection_error" and row["live_reason"] == "connection_error"


# --- an archive answering nonsense ----------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"<!DOCTYPE html><html><body><h1>Wayback Machine is down for maintenance</h1></body></html>",
    b'{"error": "Too many requests"}',  # JSON, not the rows
    b"7", b"[1, 2]", b'["urlkey", "timestamp"]',  # not a list of rows
    b'[["urlkey", "timestamp", "original"], ["x", "not-a-time", "http://a.example/"], [null], 5]',
    b"[[[]], [1]]",  # a header that cannot name fields
])
def test_a_wayback_cdx_answering_nonsense_is_counted_under_its_name(tmp_path: Path, body: bytes) -> None:
    url = dead("/nonsense")
    with FakeArchives(wayback=[Capture(url, at(1), body=page("never asked for"))]) as fa:
        fa.fail_next("/cdx", 200, 1, body=body, content_type="text/html")
        [row] = fetch_urls([url], config(fa, "wayback"), tmp_path, created=CREATED)
        assert not requests_to(fa, "/web/")
    assert row["reason"] == "wayback_bad_answer" and row["live_reason"] == "connection_error"


def test_wayback_rows_that_make_no_sense_are_skipped_beside_good_ones(tmp_path: Path) -> None:
    url = dead("/mixed")
    good = ["gone,test)/mixed", at(2), url]
    rows = f'[["urlkey", "timestamp", "original"], ["x", "soon"], 5, {json.dumps(good)}]'.encode()
    with FakeArchives(wayback=[Capture(url, at(2), body=page("the good row"))]) as fa:
        fa.fail_next("/cdx", 200, 1, body=rows, content_type="application/json")
        [row] = fetch_urls([url], config(fa, "wayback"), tmp_path, created=CREATED)
    assert row["reason"] is None and row["archive_id"] == at(2)


def test_a_commoncrawl_index_answering_nonsense_is_counted_under_its_name(tmp_path: Path) -> None:
    url = dead("/nonsense")
    page_ = b"<html><body>Please slow down</body></html>\n<p>and try again</p>\n"
    with FakeArchives(commoncrawl={CRAWL_B: [Capture(url, at(20), body=page("never asked for"))]}) as fa:
        fa.fail_next(f"/{CRAWL_B}-index", 200, 1, body=page_, content_type="text/html")
        cfg = config(fa, "commoncrawl", commoncrawl_crawls=[CRAWL_B])
        [row] = fetch_urls([url], cfg, tmp_path, created=CREATED)
    assert row["reason"] == "commoncrawl_bad_answer"


def record_of(capture: Capture) -> tuple[bytes, Found]:
    """A capture's WARC response record (one gzip member) and what the index says of it."""
    member = warc_records(capture)[1]
    return member, Found(capture.url, unix_of(capture.timestamp), "crawl-data/x.warc.gz", 0, len(member))


def test_a_warc_record_that_is_not_one_is_a_broken_response() -> None:
    member, found = record_of(Capture("https://a.example/", at(0), body=page("fine")))
    exchange, record_id = parse_record(member, 1 << 20, "u", found)
    assert exchange.status == 200 and exchange.body == page("fine") and record_id.startswith("<urn:uuid:")
    request = warc_records(Capture("https://a.example/", at(0)))[0]
    for garbage, detail in [(b"<html>not gzip</html>", "not a gzip member"),
                            (gzip.compress(b"HTTP/1.1 200 OK\r\n\r\nhello"), ""),
                            (gzip.compress(b""), "no WARC record"),
                            (request, "a request record, not a response"),
                            (member[: len(member) // 2], "")]:
        with pytest.raises(Refused) as refused:
            parse_record(garbage, 1 << 20, "u", found)
        assert refused.value.reason == "broken_response" and detail in str(refused.value)


def test_a_warc_record_past_the_byte_cap_is_too_large() -> None:
    body = b"<html><body>" + b"a" * 300_000 + b"</body></html>"
    member, found = record_of(Capture("https://a.example/", at(0), body=body))
    assert len(member) < 5_000, "it compresses"  # a bomb: small on the wire, large inflated
    for cap in (100_000, 280_000):  # the record inflates past the cap; its body does
        with pytest.raises(Refused) as refused:
            parse_record(member, cap, "u", found)
        assert refused.value.reason == "too_large"
    assert parse_record(member, 400_000, "u", found)[0].body == body


def test_a_host_whose_robots_txt_never_answers_is_dead_and_recovered(tmp_path: Path) -> None:
    def silent(path: str, host: str) -> tuple[int, str, bytes]:
        time.sleep(1.0)  # past the read timeout: a host that accepts and never answers
        return 200, "text/plain", b""

    with loopback_site(silent) as port:
        url = f"http://live.test:{port}/story"
        with FakeArchives(wayback=[Capture(url, at(1), body=page("recovered"))]) as fa:
            cfg = config(fa, "wayback", robots=True, read_timeout_s=0.2, retries=0)
            [row] = fetch_urls([url], cfg, tmp_path, created=CREATED)
    assert row["live_reason"] == "timeout" and row["source"] == "wayback" and row["reason"] is None
