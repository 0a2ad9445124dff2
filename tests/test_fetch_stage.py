"""The fetch stage in the pipeline: links partitions -> WARC + index, resumable after SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.fetch.stage import read_journal
from tests.conftest import REPO
from tests.dumps import lines
from tests.helpers import kill_part_way, loopback_site

HOSTS = [f"site{i}.test" for i in range(24)]


class Valve:
    """Lets a set number of page requests through, then holds the rest until opened: a crawl can be
    killed with a known part of it done, however fast or slow the machine is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = threading.Event()
        self.opened.set()
        self.budget = 0

    def close_after(self, pages: int) -> None:
        with self.lock:
            self.budget = pages
            self.opened.clear()

    def open(self) -> None:
        self.opened.set()

    def pass_one(self) -> None:
        with self.lock:
            self.budget -= 1
            through = self.budget >= 0 or self.opened.is_set()
        if not through:
            self.opened.wait(timeout=300)


VALVE = Valve()


def slow_pages(path: str, host: str) -> tuple[int, str, bytes]:
    """Every path is a small HTML page, served after 20 ms; /gone/* is 404; robots allow all."""
    time.sleep(0.02)
    if path != "/robots.txt":
        VALVE.pass_one()
    if path == "/robots.txt":
        return 200, "text/plain", b"User-agent: *\nAllow: /\n"
    if path.startswith("/gone/"):
        return 404, "text/html", b"<html>gone</html>"
    page = f"<!DOCTYPE html><html><body><p>{host}{path}</p></body></html>"
    return 200, "text/html; charset=utf-8", page.encode()


@pytest.fixture(scope="module")
def server():
    with loopback_site(slow_pages) as port:
        yield port


def make_dump(folder: Path, port: int, pages: int) -> Path:
    items = []
    for i in range(pages):
        host = HOSTS[i % len(HOSTS)]
        path = f"/gone/{i}" if i % 17 == 0 else f"/story/{i}"
        items.append({"id": f"f{i}", "url": f"http://{host}:{port}{path}", "score": 10,
                      "created_utc": 1400000000 + i, "subreddit": "news"})
    folder.mkdir(parents=True, exist_ok=True)
    dump = folder / "RS_fetch.json"
    dump.write_bytes(lines(items))
    return dump


def command(workdir: Path, dump: Path) -> list[str]:
    hosts = ",".join(f"'{h}=127.0.0.1'" for h in HOSTS)
    return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[links,fetch]",
            f"source.files=[{dump}]", "links.partitions=3", "executor.workers=3",
            "fetch.allow_private=true", f"fetch.hosts=[{hosts}]", "fetch.per_host_delay_s=0.02",
            "fetch.concurrency=8", "fetch.flush_every=5", "fetch.timeout_s=300",
            "fetch.read_timeout_s=300"]  # held answers (see Valve) must not time out


def outcomes(workdir: Path) -> dict[str, tuple]:
    table = pq.read_table(workdir / "fetch" / "index").to_pylist()
    return {r["url"]: (r["reason"], r["status"], r["final_url"], r["bytes"]) for r in table}


def warc_responses(workdir: Path) -> Counter[str]:
    """Target URI of every response record, over all WARC files (each must read to its end)."""
    found: Counter[str] = Counter()
    for path in sorted((workdir / "fetch" / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    record.content_stream().read()
                    found[record.rec_headers.get_header("WARC-Target-URI")] += 1
    return found


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_fetches_only_the_rest(server, tmp_path):
    dump = make_dump(tmp_path, server, pages=480)
    clean = subprocess.run(command(tmp_path / "clean", dump), cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    expected = outcomes(tmp_path / "clean")
    assert len(expected) == 480
    assert Counter(r[0] for r in expected.values()) == {None: 480 - 29, "http_404": 29}

    workdir = tmp_path / "killed"
    journals = workdir / "fetch" / "_state" / "journal"
    def journaled() -> int:
        return sum(len(read_journal(p)) for p in journals.glob("*.jsonl")) if journals.is_dir() else 0

    # 200 pages are answered, the rest held (each task journals all but at most 4 of its answers).
    VALVE.close_after(200)
    try:
        kill_part_way(command(workdir, dump), lambda: journaled() >= 150)
    finally:
        VALVE.open()
    before = {int(p.stem): read_journal(p) for p in journals.glob("*.jsonl")}
    assert 150 <= sum(map(len, before.values())) <= 200

    rerun = subprocess.run(command(workdir, dump), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert outcomes(workdir) == expected
    responses = warc_responses(workdir)
    kept = {url for url, r in expected.items() if r[0] is None}
    assert set(responses) == kept and set(responses.values()) == {1}, "no record lost or duplicated"
    index = pq.read_table(workdir / "fetch" / "index").to_pylist()
    # What was journaled before the kill was kept as it was, not fetched again.
    journaled_urls = {r["url"]: r["fetched_at"] for rows in before.values() for r in rows.values()}
    for row in index:
        if row["url"] in journaled_urls:
            assert row["fetched_at"] == journaled_urls[row["url"]]


def test_a_task_starts_its_largest_host_first():
    """The host with the most URLs sets a task's floor (its URLs go one per delay): it must be busy
    from the task's start, not wait behind the small hosts that sort before it."""
    from pipeline.fetch.stage import host_order

    todo = [(0, "http://a.test/1", "a.test", None), (1, "http://b.test/1", "b.test", None),
            (2, "http://b.test/2", "b.test", None), (3, "http://c.test/1", "c.test", None),
            *((4 + i, f"http://z.test/{i}", "z.test", 7) for i in range(5))]
    groups = host_order(todo)
    assert [g[0][1].split("/")[2] for g in groups] == ["z.test", "b.test", "a.test", "c.test"]
    assert groups[0] == [(4 + i, f"http://z.test/{i}", 7) for i in range(5)]  # URLs in their order
    assert sorted(item for g in groups for item in g) == sorted((o, u, c) for o, u, _, c in todo)


def test_the_index_is_written_from_journal_offsets(tmp_path):
    """The index is written in the links' order from where each outcome starts in the journal (eight
    bytes per URL, not the outcomes): the last line of a position wins, a line cut by a kill is not
    one, and a position without an outcome is -1."""
    import orjson

    from pipeline.fetch.stage import journal_offsets

    lines = [orjson.dumps({"ord": o, "reason": r}) + b"\n" for o, r in [(2, "a"), (0, "b"), (2, "c")]]
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(lines) + b'{"ord": 1, "rea')  # the last line cut by a kill
    offsets = journal_offsets(path, 4)
    assert offsets.tolist() == [len(lines[0]), -1, len(lines[0]) + len(lines[1]), -1]
    with open(path, "rb") as f:
        f.seek(offsets[2])
        assert orjson.loads(f.readline())["reason"] == "c"
