"""The live-Reddit source (pipeline.links.reddit) with the real praw client against a loopback fake.

Credentials travel the way praw reads them (praw_client_id / praw_client_secret environment
variables, or a praw.ini site); praw's config is isolated from the user's own praw.ini.

No test waits on the wall clock: the request timeout is a safety net far above any answer of the
fake, and the rate-limit test runs prawcore's limiter on a virtual clock (``VirtualClock``) that
records each wait instead of sleeping it.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import prawcore.rate_limit
import pytest
import zstandard
from praw.config import Config
from prawcore.sessions import FiniteRetryStrategy

from pipeline.config import RedditSourceConfig
from pipeline.links.reddit import (
    DEFAULT_USER_AGENT,
    RedditAuthError,
    collect,
    make_reddit,
)
from pipeline.runtime import StageError
from tests.fake_reddit import FakeReddit

LOG = logging.getLogger("webtext.test.reddit")
FIELDS = {"id", "name", "created_utc", "score", "url", "is_self", "over_18", "subreddit", "title",
          "domain", "permalink", "author", "num_comments", "selftext", "stickied", "retrieved_on"}
FILE_NAME = re.compile(r"^RS_reddit_\d{8}T\d{6}_(\d+)\.jsonl\.zst$")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeReddit]:
    """A running fake Reddit, its credentials in praw's env vars, praw blind to any real praw.ini."""
    for name in list(os.environ):
        if name.lower().startswith("praw"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(Config, "CONFIG", None)  # praw caches praw.ini once per process
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)  # praw also reads ./praw.ini
    with FakeReddit(client_id="test-client-id", client_secret="test-client-secret") as server:
        monkeypatch.setenv("praw_client_id", server.client_id)
        monkeypatch.setenv("praw_client_secret", server.client_secret)
        yield server


class VirtualClock:
    """The clock of prawcore's ``RateLimiter`` (its ``time.monotonic_ns`` and ``time.sleep``): time
    stands still except by sleeping, which returns at once. Each sleep is recorded with the number
    of listing requests the fake had received by then, so a test sees when and how long praw waited,
    exactly, without waiting."""

    def __init__(self, fake: FakeReddit) -> None:
        self.fake = fake
        self.now_ns = 0
        self.sleeps: list[tuple[float, int]] = []  # (seconds, listing requests received before)

    def monotonic_ns(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append((seconds, len(self.fake.listing_requests())))
        self.now_ns += round(seconds * 1e9)


def source(fake: FakeReddit, subreddits: list[str], listings: list[str] | None = None,
           **overrides: Any) -> RedditSourceConfig:
    # timeout_s: a safety net; the fake answers in milliseconds
    settings: dict[str, Any] = {"timeout_s": 30, "oauth_url": fake.url, "reddit_url": fake.url, **overrides}
    return RedditSourceConfig(subreddits=subreddits, listings=listings or ["new"], **settings)


def read_file(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        text = stream.read()
    assert text.endswith(b"\n")
    return [orjson.loads(line) for line in text.splitlines()]


def archived(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """File name -> its submissions, for every archive file of one subreddit."""
    return {p.name: read_file(p) for p in sorted(folder.iterdir()) if FILE_NAME.match(p.name)}


def state(archive: Path) -> dict[str, Any]:
    return orjson.loads((archive / "state.json").read_bytes())["subreddits"]


def test_collects_every_listed_submission_once_with_pushshift_fields(fake: FakeReddit, tmp_path: Path):
    alpha = fake.add_posts("alpha", 140)
    alpha += fake.add_posts("alpha", 5, newest_utc=1_600_000_000, is_self=True, author=None)
    beta = fake.add_posts("Beta", 30, newest_utc=1_650_000_000)
    archive = tmp_path / "archive"

    counts = collect(source(fake, ["alpha", "Beta"], ["new", "top", "hot"]), archive, LOG)

    # alpha: 145 posts = 2 pages in each listing; beta: 1 page each.
    assert counts == {"requests": 9, "submissions_new": 175, "submissions_seen": 3 * 175,
                      "subreddit_error": 0, "rate_limit_waits": 0}
    assert len(fake.listing_requests()) == 9 and len(fake.token_requests()) == 1
    top = fake.listing_requests("alpha")[2]
    assert top.path == "/r/alpha/top" and top.query["t"] == "all"
    for name, posts in (("alpha", alpha), ("beta", beta)):
        files = archived(archive / name)
        assert len(files) == 1 and FILE_NAME.match(next(iter(files)))[1] == "1"
        records = next(iter(files.values()))
        assert sorted(r["id"] for r in records) == sorted(p["id"] for p in posts)  # each exactly once
        assert [r["created_utc"] for r in records] == sorted(r["created_utc"] for r in records)
        by_id = {p["id"]: p for p in posts}
        for record in records:
            assert set(record) == FIELDS
            post = by_id[record["id"]]
            for key in FIELDS - {"created_utc", "author", "retrieved_on"}:
                assert record[key] == post[key], key
            assert isinstance(record["created_utc"], int)
            assert record["created_utc"] == int(post["created_utc"])
            assert record["author"] == (None if post["author"] == "[deleted]" else post["author"])
            assert isinstance(record["retrieved_on"], int) and record["retrieved_on"] > 1_700_000_000
        entry = state(archive)[name]
        assert entry["ids"] == sorted(by_id) and entry["files"] == list(files)
        assert entry["newest_created_utc"] == max(int(p["created_utc"]) for p in posts)
    deleted = [r for r in read_file(next((archive / "alpha").glob("*.zst"))) if r["is_self"]]
    assert len(deleted) == 5 and all(r["author"] is None and r["selftext"] for r in deleted)
    assert not [p for p in archive.rglob("*") if ".tmp" in p.name]
    assert {r.user_agent.split(" PRAW/")[0] for r in fake.requests} == {DEFAULT_USER_AGENT}


def test_listing_cap_of_1000(fake: FakeReddit, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    posts = fake.add_posts("big", 1500)

    counts = collect(source(fake, ["big"]), tmp_path / "archive", LOG)

    assert counts["submissions_new"] == 1000 and counts["requests"] == 10
    assert len(fake.listing_requests("big")) == 10
    records = next(iter(archived(tmp_path / "archive" / "big").values()))
    assert {r["id"] for r in records} == {p["id"] for p in posts[:1000]}  # the newest 1,000

    fake.add_posts("big", 1200, newest_utc=1_800_000_000)  # more news than `new` can list
    with caplog.at_level(logging.INFO):
        again = collect(source(fake, ["big"]), tmp_path / "archive", LOG)
    assert again["submissions_new"] == 1000 and "before reaching posts already archived" in caplog.text


def test_rate_limit_wait_is_honoured(fake: FakeReddit, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch):
    clock = VirtualClock(fake)
    monkeypatch.setattr(prawcore.rate_limit, "time", clock)
    fake.add_posts("alpha", 250)
    fake.throttle_once(reset_s=2)  # the first listing page says: window used up, resets in 2 s

    with caplog.at_level(logging.INFO):
        counts = collect(source(fake, ["alpha"]), tmp_path / "archive", LOG)

    assert counts["submissions_new"] == 250 and counts["rate_limit_waits"] == 1
    assert len(fake.listing_requests("alpha")) == 3
    # prawcore slept until the reset after the first page, before asking again, and never after an
    # ordinary response
    assert clock.sleeps == [(2.0, 1)]
    assert "rate limit used up" in caplog.text and "waits 2 s" in caplog.text


def test_incremental_rerun_reads_new_only_down_to_archived_posts(fake: FakeReddit, tmp_path: Path):
    fake.add_posts("alpha", 150, newest_utc=1_700_000_000)
    archive = tmp_path / "archive"
    cfg = source(fake, ["alpha"], ["new", "top"])
    first = collect(cfg, archive, LOG)
    assert first["submissions_new"] == 150 and first["requests"] == 4
    newer = fake.add_posts("alpha", 5, newest_utc=1_700_000_600)
    before = len(fake.listing_requests())

    second = collect(cfg, archive, LOG)

    rerun = fake.listing_requests()[before:]
    assert [r.path for r in rerun].count("/r/alpha/new") == 1  # stopped on the first page, at old posts
    assert second["submissions_new"] == 5 and second["requests"] == len(rerun)
    files = archived(archive / "alpha")
    assert len(files) == 2
    latest = files[max(files, key=lambda name: int(FILE_NAME.match(name)[1]))]
    assert sorted(r["id"] for r in latest) == sorted(p["id"] for p in newer)
    assert state(archive)["alpha"]["newest_created_utc"] == 1_700_000_600

    third = collect(cfg, archive, LOG)  # nothing new: nothing written
    assert third["submissions_new"] == 0 and len(archived(archive / "alpha")) == 2


def test_file_written_before_a_killed_state_update_is_not_archived_twice(fake: FakeReddit, tmp_path: Path):
    fake.add_posts("alpha", 20)
    archive = tmp_path / "archive"
    cfg = source(fake, ["alpha"], ["new", "hot"])
    collect(cfg, archive, LOG)
    old_state = (archive / "state.json").read_bytes()
    fake.add_posts("alpha", 3, newest_utc=1_700_001_000)
    collect(cfg, archive, LOG)
    (archive / "state.json").write_bytes(old_state)  # as if killed after the data file, before the state

    counts = collect(cfg, archive, LOG)

    assert counts["submissions_new"] == 0
    assert len(archived(archive / "alpha")) == 2
    assert len(state(archive)["alpha"]["files"]) == 2 and len(state(archive)["alpha"]["ids"]) == 23


def test_forbidden_and_missing_subreddits_are_counted_and_skipped(
        fake: FakeReddit, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    fake.add_posts("alpha", 10)
    fake.add_posts("beta", 10)
    fake.add_posts("secret", 10)
    fake.errors.update({"secret": 403, "gone": 404})
    archive = tmp_path / "archive"

    with caplog.at_level(logging.INFO):
        counts = collect(source(fake, ["alpha", "secret", "gone", "beta"], ["new", "top"]), archive, LOG)

    assert counts["subreddit_error"] == 2 and counts["submissions_new"] == 20
    assert len(fake.listing_requests("secret")) == 1  # its other listing is not tried
    assert sorted(p.name for p in archive.iterdir() if p.is_dir()) == ["alpha", "beta"]
    assert "r/secret failed: Forbidden" in caplog.text and "reason: private" in caplog.text
    assert "r/gone failed: NotFound" in caplog.text


def test_server_errors_after_praws_retries_are_counted(
        fake: FakeReddit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(FiniteRetryStrategy, "_sleep_seconds", lambda self: None)  # no back-off sleeps
    fake.add_posts("alpha", 10)
    fake.errors["flaky"] = 503

    counts = collect(source(fake, ["flaky", "alpha"]), tmp_path / "archive", LOG)

    assert counts["subreddit_error"] == 1 and counts["submissions_new"] == 10
    assert len(fake.listing_requests("flaky")) == 3  # praw's own attempt + 2 retries; none of ours


def test_unreachable_token_endpoint_stops_everything(
        fake: FakeReddit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(FiniteRetryStrategy, "_sleep_seconds", lambda self: None)
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"

    with pytest.raises(StageError, match="cannot get an access token") as err:
        collect(source(fake, ["alpha", "beta"], reddit_url=closed), tmp_path / "archive", LOG)
    assert fake.client_secret not in str(err.value)
    assert fake.requests == []


def test_bad_credentials_stop_with_a_clear_error_that_hides_the_secret(
        fake: FakeReddit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    secret = "wrong-secret-8f3a1c"
    monkeypatch.setenv("praw_client_secret", secret)
    fake.add_posts("alpha", 10)
    archive = tmp_path / "archive"

    with caplog.at_level(logging.DEBUG), pytest.raises(RedditAuthError) as err:
        collect(source(fake, ["alpha", "beta"]), archive, LOG)

    message = str(err.value)
    assert "refused the credentials" in message and "praw_client_secret" in message
    basic = base64.b64encode(f"{fake.client_id}:{secret}".encode()).decode()
    for text in (message, caplog.text):
        assert secret not in text and basic not in text
    assert fake.listing_requests() == []  # the token was refused: no API request, no second subreddit
    assert not list(archive.rglob("*.zst")) and not (archive / "state.json").exists()


def test_missing_credentials_name_the_environment_variables(
        fake: FakeReddit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("praw_client_secret")

    with pytest.raises(RedditAuthError, match="praw_client_secret not set"):
        collect(source(fake, ["alpha"]), tmp_path / "archive", LOG)
    with pytest.raises(RedditAuthError, match="praw.ini has no site \\[nowhere\\]"):
        make_reddit(source(fake, ["alpha"], site="nowhere"))
    assert fake.requests == []


def test_praw_ini_site_user_agent_and_timeout(
        fake: FakeReddit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("praw_client_id")
    monkeypatch.delenv("praw_client_secret")
    (tmp_path / "praw.ini").write_text(f"[webtext_test]\nclient_id={fake.client_id}\n"
                                       f"client_secret={fake.client_secret}\nuser_agent=ini agent/1.0\n")
    fake.add_posts("alpha", 3)
    cfg = source(fake, ["alpha"], site="webtext_test", timeout_s=7.5)

    reddit = make_reddit(cfg)
    assert reddit.read_only and reddit._core.requestor.timeout == 7.5
    assert collect(cfg, tmp_path / "archive", LOG)["submissions_new"] == 3
    assert {r.user_agent.split(" PRAW/")[0] for r in fake.requests} == {"ini agent/1.0"}

    collect(source(fake, ["alpha"], site="webtext_test", user_agent="cfg agent/2.0"), tmp_path / "a2", LOG)
    assert fake.requests[-1].user_agent.startswith("cfg agent/2.0 PRAW/")


def test_pipeline_links_from_the_live_api_end_to_end(fake: FakeReddit, tmp_path: Path):
    """``python -m pipeline source=reddit``: collect, then links; a rerun adds only what is new."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from tests.conftest import REPO

    posts = fake.add_posts("news", 60) + fake.add_posts("science", 40, newest_utc=1_650_000_000)
    workdir = tmp_path / "live"
    command = [sys.executable, "-m", "pipeline", f"workdir={workdir}", "stages=[links]", "source=reddit",
               "source.subreddits=[news,science]", "source.listings=[new]", "links.partitions=3",
               f"source.oauth_url={fake.url}", f"source.reddit_url={fake.url}", "executor.workers=1"]

    def links() -> set[str]:
        return {row["url"] for part in sorted((workdir / "links").glob("part-*.parquet"))
                for row in pq.read_table(part).to_pylist()}

    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert links() == {p["url"] for p in posts if p["score"] >= 3}
    assert "test-client-secret" not in first.stdout + first.stderr

    newer = fake.add_posts("news", 5, newest_utc=1_700_100_000, score=10)
    requests_before = len(fake.listing_requests("news"))
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert len(fake.listing_requests("news")) - requests_before == 1
    assert links() == {p["url"] for p in posts + newer if p["score"] >= 3}
    assert "rebuilding links/" in second.stdout + second.stderr


def test_bad_subreddit_names_fail_before_any_request(tmp_path: Path):
    from tests.conftest import run_cli

    result = run_cli("pipeline", f"workdir={tmp_path / 'w'}", "source=reddit",
                     "source.subreddits=[r/news]")
    assert result.returncode != 0
    assert "source.subreddits: not subreddit names (give them without r/): ['r/news']" in result.stderr
    assert not (tmp_path / "w").exists()
