"""The extract stage in the pipeline: links -> fetch -> extract on pages served on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import ExtractConfig
from pipeline.extract.stage import DamagedRecord, WarcReader, charset_of, doc_id
from pipeline.extract.worker import IsolatedExtractor
from pipeline.fetch.warc import HttpExchange, WarcFiles
from pipeline.paths import StagePaths
from pipeline.runtime import StageError, completed_tasks
from pipeline.sample import article_page, documents
from tests.conftest import REPO, stage_outputs
from tests.dumps import lines
from tests.helpers import TaskGate, kill_part_way, loopback_site

GERMAN = (
    "Die Stadtbibliothek verleiht seit diesem Frühjahr nicht nur Bücher, sondern auch Saatgut. "
    "Wer Tomaten, Bohnen oder Kräuter anbauen möchte, kann sich bis zu fünf Tütchen ausleihen und "
    "bringt im Herbst einen Teil der eigenen Ernte als Samen zurück. Die Idee stammt von einer "
    "Bibliothekarin, die auf einem Bauernhof aufgewachsen ist und bemerkt hat, dass viele alte Sorten "
    "aus den Gartencentern verschwunden sind. Ehrenamtliche sortieren die zurückgegebenen Samen im "
    "Keller, beschriften sie und prüfen vor der nächsten Saison, ob sie noch keimen. Im ersten Jahr "
    "wurden fast neunhundert Tütchen verliehen, und etwa ein Drittel kam zurück. "
) * 3


def spinning_page() -> bytes:
    """A 6 MB table: trafilatura needs over ten seconds for it (measured), far past the deadline."""
    row = "<tr>" + "".join(f"<td>cell {i}</td>" for i in range(20)) + "</tr>"
    return f"<html><body><p>Totals</p><table>{row * 20000}</table></body></html>".encode()


def site() -> dict[str, tuple[str, bytes]]:
    pages = {f"/doc/{i}": ("text/html; charset=utf-8", article_page(d)) for i, d in enumerate(documents())}
    german = {"title": "Saatgut aus der Bibliothek", "domain": "x", "text": GERMAN}
    pages["/german"] = ("text/html; charset=utf-8", article_page(german))
    short = {"title": "Short", "domain": "x", "text": "A short note. Nothing more to say."}
    pages["/short"] = ("text/html; charset=utf-8", article_page(short))
    pages["/spin"] = ("text/html", spinning_page())
    pages["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\n")
    return pages


@pytest.fixture(scope="module")
def server():
    pages = site()

    def respond(path: str, host: str) -> tuple[int, str, bytes]:
        kind, body = pages.get(path, ("text/html", b"<html>missing</html>"))
        return (200 if path in pages else 404), kind, body

    with loopback_site(respond) as port:
        yield port, pages


def command(workdir: Path, dump: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[links,fetch,extract]",
            f"source.files=[{dump}]", "links.partitions=2", "executor.workers=1",
            "fetch.allow_private=true", "fetch.hosts=['a.test=127.0.0.1','b.test=127.0.0.1']",
            "fetch.per_host_delay_s=0", "fetch.max_bytes=16000000", "extract.timeout_s=1"]


def make_dump(folder: Path, port: int, pages: dict) -> Path:
    paths = sorted(p for p in pages if p != "/robots.txt")
    items = [{"id": f"e{i}", "url": f"http://{'ab'[i % 2]}.test:{port}{path}", "score": 5 + i,
              "created_utc": 1400000000 + i, "subreddit": "news"} for i, path in enumerate(paths)]
    folder.mkdir(parents=True, exist_ok=True)
    dump = folder / "RS_extract.json"
    dump.write_bytes(lines(items))
    return dump


def test_charset_of():
    assert charset_of("text/html; charset=ISO-8859-1") == "ISO-8859-1"
    assert charset_of('text/html;charset="utf-8"') == "utf-8"
    assert charset_of("text/html") is None and charset_of(None) is None


@pytest.mark.slow
def test_links_fetch_extract_end_to_end(server, tmp_path):
    port, pages = server
    dump = make_dump(tmp_path, port, pages)
    run = subprocess.run(command(tmp_path / "w", dump), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    stats = json.loads((tmp_path / "w" / "docs" / "stats.json").read_text())
    assert stats["counts"] == {"kept": len(documents()), "language": 1, "too_short": 1,
                               "extract_timeout": 1}
    docs = pq.read_table(sorted((tmp_path / "w" / "docs").glob("part-*.parquet"))).to_pylist()
    assert len(docs) == len(documents())
    for doc in docs:
        assert doc["id"] == doc_id(doc["url"]) and doc["lang"] == "en" and doc["n_tokens"] >= 128
        assert doc["subreddits"] == ["news"] and doc["score"] >= 5 and doc["created_utc"] >= 1400000000
        assert doc["domain"] in ("a.test", "b.test") and doc["warc_file"].endswith(".warc.gz")
    texts = {d["text"] for d in docs}
    for sample in documents():  # the article survives, the page's boilerplate does not
        first = sample["text"].split("\n\n")[0]
        assert any(first in text for text in texts)
    assert not any("We use cookies" in text or "Most read this week" in text for text in texts)
    # each task's progress ends at its pages to do: the line's time left never goes negative
    progress = tmp_path / "w" / "docs" / "_state" / "progress"
    reports = [json.loads(p.read_text()) for p in progress.glob("*.json")]
    assert reports and all(r["final"] and r["done"] == r["total"] for r in reports), reports
    assert sum(r["done"] for r in reports) == len(docs) + 3  # the kept and the three dropped


def write_warc(folder: Path, bodies: list[bytes]) -> list[tuple[str, int, int]]:
    """One WARC file as fetch writes it (a response and its request per page); the pointers."""
    warc = WarcFiles(folder, "00000", 1 << 30)
    pointers = []
    for i, body in enumerate(bodies):
        exchange = HttpExchange(f"http://a.test/{i}", "GET", f"/{i}", [], "HTTP/1.1", 200, "OK",
                                [("Content-Type", "text/html; charset=cp1252")], body)
        pointers.append(warc.write([exchange])[:3])
    warc.close()
    return pointers


def overwrite(path: Path, start: int, stop: int) -> None:
    with path.open("r+b") as f:
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in f.read(stop - start)))


def cut(path: Path, start: int, stop: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:start] + data[stop:])


def test_warc_reader_payloads_and_a_damaged_record(tmp_path):
    bodies = [article_page(d) for d in documents()[:2]]
    pointers = write_warc(tmp_path, bodies)
    reader = WarcReader(tmp_path)
    for i, ((name, offset, length), body) in enumerate(zip(pointers, bodies, strict=True)):
        got = reader.payload(name, offset, length, f"http://a.test/{i}")
        assert got == (body, "text/html; charset=cp1252", offset)
    name, offset, length = pointers[1]
    request_at = pointers[0][1] + pointers[0][2]  # the request record written before the response
    with pytest.raises(DamagedRecord, match="is a request record of http://a.test/0, not the response"):
        reader.payload(name, request_at, offset - request_at, "http://a.test/0")
    with pytest.raises(DamagedRecord, match="not the response of http://a.test/9"):
        reader.payload(name, offset, length, "http://a.test/9")  # another page's record
    reader.close()
    middle = offset + length // 2
    overwrite(tmp_path / name, middle, middle + 1)  # a damaged byte inside the compressed payload
    with pytest.raises(DamagedRecord, match=f"{name}@{offset}"):
        WarcReader(tmp_path).payload(name, offset, length, "http://a.test/1")
    (tmp_path / name).unlink()
    with pytest.raises(StageError, match=f"{name} cannot be read \\(FileNotFoundError"):
        WarcReader(tmp_path).payload(name, offset, length, "http://a.test/1")


@pytest.mark.parametrize("damage", ["overwritten", "cut"])
def test_a_record_damaged_mid_file_leaves_the_others_readable(tmp_path, damage):
    bodies = [article_page(d) for d in documents()[:7]]
    pointers = write_warc(tmp_path, bodies)
    name, offset, length = pointers[3]
    if damage == "overwritten":
        overwrite(tmp_path / name, offset + 100, offset + 100 + length // 3)
    else:  # a chunk out of the record's middle: every later record moves
        cut(tmp_path / name, offset + 100, offset + 100 + length // 3)
    reader = WarcReader(tmp_path)
    for i, ((_, at, size), body) in enumerate(zip(pointers, bodies, strict=True)):
        if i == 3:
            with pytest.raises(DamagedRecord):
                reader.payload(name, at, size, f"http://a.test/{i}")
            continue
        got = reader.payload(name, at, size, f"http://a.test/{i}")
        moved = length // 3 if damage == "cut" and i > 3 else 0
        assert got == (body, "text/html; charset=cp1252", at - moved)
    assert reader.moved == (3 if damage == "cut" else 0)
    reader.close()


def test_a_spinning_page_is_abandoned_and_the_worker_replaced():
    cfg = ExtractConfig(timeout_s=1, min_tokens=0, min_chars=0)
    page = article_page(documents()[0])
    with IsolatedExtractor(cfg) as extract:
        assert isinstance(extract(page, "http://a.test/1", "utf-8"), dict)
        assert extract(spinning_page(), "http://a.test/spin", None) == "extract_timeout"
        assert isinstance(extract(page, "http://a.test/2", "utf-8"), dict)
        assert extract.restarts == 1


def test_start_up_does_not_count_against_the_first_page():
    # A fresh interpreter: the fork server starts (about a second) before the first page is sent.
    code = ("from pipeline.config import ExtractConfig\n"
            "from pipeline.extract.worker import IsolatedExtractor\n"
            "from pipeline.sample import documents\n"
            "from pipeline.sample import article_page\n"
            "if __name__ == '__main__':\n"
            "    with IsolatedExtractor(ExtractConfig(timeout_s=0.5, min_tokens=0)) as extract:\n"
            "        print(type(extract(article_page(documents()[0]), 'http://a.test/1', None)).__name__)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "dict"


def test_map_keeps_order_and_survives_a_timeout():
    cfg = ExtractConfig(timeout_s=1, min_tokens=0, min_chars=0)
    pages = [(i, article_page(d), f"http://a.test/{i}", "utf-8") for i, d in enumerate(documents()[:3])]
    pages.insert(1, ("spin", spinning_page(), "http://a.test/spin", None))
    with IsolatedExtractor(cfg) as extract:
        results = list(extract.map(pages))
    assert [key for key, _ in results] == [0, "spin", 1, 2]
    assert results[1][1] == "extract_timeout"
    assert all(isinstance(doc, dict) for key, doc in results if key != "spin")
    assert extract.restarts == 1


def test_a_map_left_part_way_leaves_no_stale_answer():
    cfg = ExtractConfig(min_tokens=0, min_chars=0)
    pages = [(i, article_page(d), f"http://a.test/{i}", "utf-8") for i, d in enumerate(documents()[:3])]
    with IsolatedExtractor(cfg) as extract:
        expected = extract(pages[2][1], "http://a.test/2", "utf-8")
        results = extract.map(pages)
        assert next(results)[0] == 0  # page 1 is in flight now
        results.close()
        assert extract(pages[2][1], "http://a.test/2", "utf-8") == expected


def test_workers_are_recycled():
    cfg = ExtractConfig(recycle_docs=2, min_tokens=0, min_chars=0)
    page = article_page(documents()[1])
    with IsolatedExtractor(cfg) as extract:
        pids = []
        for i in range(5):
            assert isinstance(extract(page, f"http://a.test/{i}", "utf-8"), dict)
            pids.append(extract.process.pid)
    assert len(set(pids)) == 3  # 2 pages per process


@pytest.mark.slow
def test_sigkill_part_way_then_rerun_gives_identical_docs(server, tmp_path):
    port, pages = server
    dump = make_dump(tmp_path, port, pages)
    clean = subprocess.run(command(tmp_path / "clean", dump), cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    killed = tmp_path / "killed"  # the same links and fetch outputs; extract killed and rerun
    for folder in ("links", "fetch"):
        shutil.copytree(tmp_path / "clean" / folder, killed / folder)
    docs = StagePaths(killed, "extract")
    extract_only = [*command(killed, dump), "stages=[extract]"]
    gate = TaskGate(tmp_path / "gate", hold=("extract",))
    gate.release("extract", 0)  # task 0 finishes; task 1 is held running when the kill comes
    kill_part_way(extract_only, lambda: completed_tasks(docs) == {0} and 1 in gate.started("extract"), gate)
    assert completed_tasks(docs) == {0}
    rerun = subprocess.run(extract_only, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert stage_outputs(docs.root) == stage_outputs(StagePaths(tmp_path / "clean", "extract").root)


@pytest.mark.slow
def test_damaged_warc_records_are_counted_and_the_rest_extracted(server, tmp_path):
    port, pages = server
    dump = make_dump(tmp_path, port, pages)
    workdir = tmp_path / "w"
    fetched = subprocess.run([*command(workdir, dump), "stages=[links,fetch]"], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert fetched.returncode == 0, fetched.stderr
    fetch = StagePaths(workdir, "fetch")
    damaged = []
    for task, damage in ((0, overwrite), (1, cut)):  # in each task's fuller WARC file, a middle page
        rows = [r for r in pq.read_table(fetch.root / "index" / f"{task:05d}.parquet").to_pylist()
                if r["reason"] is None]
        fullest = max({r["warc_file"] for r in rows}, key=lambda f: sum(r["warc_file"] == f for r in rows))
        in_file = sorted((r for r in rows if r["warc_file"] == fullest), key=lambda r: r["warc_offset"])
        page = next(r for r in in_file[len(in_file) // 2:-1] if "/doc/" in r["url"])
        at, length = page["warc_offset"], page["warc_length"]
        damage(fetch.root / "warc" / fullest, at + 100, at + 100 + length // 3)
        damaged.append(page["url"])
    extracted = subprocess.run([*command(workdir, dump), "stages=[extract]"], cwd=REPO,
                               capture_output=True, text=True, timeout=300)
    assert extracted.returncode == 0, extracted.stderr
    stats = json.loads((workdir / "docs" / "stats.json").read_text())
    assert stats["counts"] == {"kept": len(documents()) - 2, "warc_damaged": 2, "language": 1,
                               "too_short": 1, "extract_timeout": 1}
    assert stats["metrics"]["warc_records_moved"] >= 1  # the pages after the cut, found again
    docs = pq.read_table(sorted((workdir / "docs").glob("part-*.parquet"))).to_pylist()
    wanted = {f"http://{'ab'[i % 2]}.test:{port}{path}" for i, path in
              enumerate(sorted(p for p in pages if p != "/robots.txt")) if path.startswith("/doc/")}
    assert {d["url"] for d in docs} == wanted - set(damaged)
    texts = {d["text"] for d in docs}
    survivors = [s for i, s in enumerate(documents()) if not any(u.endswith(f"/doc/{i}") for u in damaged)]
    assert all(any(s["text"].split("\n\n")[0] in text for text in texts) for s in survivors)
    reader = WarcReader(fetch.root / "warc")  # each document's pointer is where its record is now
    for doc in docs:
        assert reader.payload(doc["warc_file"], doc["warc_offset"], doc["warc_length"], doc["url"])
    reader.close()
