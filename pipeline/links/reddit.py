"""The live-Reddit source of the links stage: praw listings -> an incremental archive of submissions.

``collect`` reads the ``new``, ``top`` and ``hot`` listings of each configured subreddit through praw
(read-only, application-only OAuth) and appends what it has not archived before, in Pushshift's field
names, so the links stage reads the archive with the same code as the Pushshift dumps::

    <archive>/state.json                                  what is archived, per subreddit (below)
    <archive>/<subreddit>/RS_reddit_<YYYYmmddTHHMMSS>_<n>.jsonl.zst   one file per run with news

Subreddit folders and state keys are lower-case (Reddit's names are case-insensitive); ``<n>`` numbers
a subreddit's files from 1, so two runs in one second never collide. ``state.json`` (one line) is::

    {"version": 1, "subreddits": {"<subreddit>": {
        "newest_created_utc": 1700000000,   # newest post seen by a completed read of `new`, or null
        "ids": ["abc12", ...],              # every submission id in the subreddit's files, sorted
        "files": ["RS_reddit_...zst", ...]  # the files those ids come from
    }}}

A data file is written (temporary name, then rename) before the state that accounts for it, so a
kill in between leaves a file the state does not list; the next run reads its ids back in before
collecting, so no post is archived twice and none is lost. Reddit's listings stop at 1,000 items:
posts that fall out of ``new`` between two runs are only caught if ``top``/``hot`` still list them, so
busy subreddits should be collected often.

Rate limits are praw's business: prawcore's ``RateLimiter`` reads ``X-Ratelimit-*`` of every
response and sleeps before the next request when needed. We use one client, one thread and no
retries of our own, so nothing bypasses it; a response saying the window is used up is logged.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import praw
import prawcore
import requests
import zstandard
from praw.config import Config
from praw.exceptions import MissingRequiredAttributeException, PRAWException
from prawcore.const import ACCESS_TOKEN_PATH

from model.base.files import atomic_write
from model.base.schema import ConfigError
from pipeline.config import RedditSourceConfig
from pipeline.runtime import StageError

DEFAULT_USER_AGENT = "webtext/0.1 (WebText-style corpus builder; set source.user_agent with your contact)"
LISTINGS = ("new", "top", "hot")
LISTING_CAP = 1000  # Reddit serves at most this many items of a listing, however it is paged
STATE_NAME = "state.json"
STATE_VERSION = 1
FILE_PREFIX = "RS_reddit_"
FILE_SUFFIX = ".jsonl.zst"
ZSTD_LEVEL = 10
# Reddit's subreddit names: 3-21 letters, digits or underscores (a few old ones have 2).
_SUBREDDIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$")
_FILE_NUMBER = re.compile(rf"^{FILE_PREFIX}\d{{8}}T\d{{6}}_(\d+){re.escape(FILE_SUFFIX)}$")
_CREDENTIALS_HELP = (
    "set the environment variables praw_client_id and praw_client_secret (an app of type 'script' "
    "or 'web' from https://www.reddit.com/prefs/apps), or set source.site to a praw.ini site that "
    "has client_id and client_secret"
)


class RedditAuthError(StageError):
    """Credentials are missing, or Reddit refused them: nothing can be collected until they are fixed."""


# --- the client -------------------------------------------------------------------------------------


def make_reddit(cfg: RedditSourceConfig) -> praw.Reddit:
    """A read-only praw client configured by ``cfg``; credentials come from praw's own mechanisms.

    With ``cfg.site`` set, praw reads that praw.ini site; otherwise its ``praw_client_id`` and
    ``praw_client_secret`` environment variables (and ``praw_user_agent``). We pass nothing that would
    override them: only the user agent (when ``cfg.user_agent`` is set or praw has none), the URL
    overrides when set, and the request timeout (praw 8 parses its own ``timeout`` setting but never
    hands it to prawcore, so it goes to the requestor). Makes no request.
    """
    return _build_reddit(cfg, requests.Session())


def _build_reddit(cfg: RedditSourceConfig, http: requests.Session) -> praw.Reddit:
    """``make_reddit`` on a given HTTP session (``collect`` hooks it to count requests)."""
    settings = _reddit_settings(cfg, _praw_config(cfg.site))
    try:
        reddit = praw.Reddit(site_name=cfg.site,
                             requestor_kwargs={"session": http, "timeout": cfg.timeout_s}, **settings)
    except (MissingRequiredAttributeException, configparser.Error) as err:
        raise RedditAuthError(f"cannot configure the Reddit client ({err}); {_CREDENTIALS_HELP}") from None
    # Application-only OAuth even where praw.ini also holds a username/password or refresh token.
    reddit.read_only = True
    return reddit


def _praw_config(site: str | None) -> Config:
    """praw's view of the settings of ``site`` (praw.ini section + praw_* env vars), checked for credentials.

    Only presence is checked; no value is ever put in a message or a log.
    """
    section = site or os.getenv("praw_site") or "DEFAULT"
    try:
        config = Config(section)
    except configparser.NoSectionError:
        raise RedditAuthError(
            f"praw.ini has no site [{section}] (source.site); {_CREDENTIALS_HELP}") from None
    missing = [name for name in ("client_id", "client_secret") if not getattr(config, name)]
    if missing:
        where = f"praw.ini site [{section}] or " if site else ""
        names = " and ".join(f"{where}praw_{name}" for name in missing)
        raise RedditAuthError(f"Reddit credentials missing: {names} not set; {_CREDENTIALS_HELP}")
    return config


def _reddit_settings(cfg: RedditSourceConfig, config: Config) -> dict[str, Any]:
    """Keyword settings for ``praw.Reddit``: what ``cfg`` sets, never the credentials."""
    # No network call to PyPI from a pipeline (praw's default checks for updates on first use).
    settings: dict[str, Any] = {"check_for_updates": False}
    if cfg.user_agent:
        settings["user_agent"] = cfg.user_agent
    elif not config.user_agent:
        settings["user_agent"] = DEFAULT_USER_AGENT
    if cfg.oauth_url:
        settings["oauth_url"] = cfg.oauth_url
    if cfg.reddit_url:
        settings["reddit_url"] = cfg.reddit_url
    return settings


class _RequestWatcher:
    """A ``requests`` response hook: counts API requests and logs when the rate-limit window is used up.

    prawcore sleeps before the next request by itself; this only makes the wait visible.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.requests = 0
        self.waits = 0

    def __call__(self, response: requests.Response, *_: Any, **__: Any) -> None:
        if urlsplit(response.url).path.endswith(ACCESS_TOKEN_PATH):
            return  # the token request is not an API request and carries no rate-limit budget
        self.requests += 1
        headers = response.headers
        try:
            remaining = float(headers["x-ratelimit-remaining"])
        except (KeyError, ValueError):
            return
        if remaining <= 0:
            self.waits += 1
            self.logger.info("Reddit rate limit used up (%s requests this window): praw waits %s s "
                                "for the window to reset", headers.get("x-ratelimit-used", "?"),
                                headers.get("x-ratelimit-reset", "?"))


# --- submissions ------------------------------------------------------------------------------------


def submission_record(submission: praw.models.Submission, retrieved_on: int) -> dict[str, Any]:
    """A praw Submission as a Pushshift-style dict (Pushshift's field names).

    Reads the attributes the listing delivered (``vars``), never praw's lazy attributes, which would
    fetch the submission again for a missing field. ``author`` is null for a deleted account.
    """
    data = vars(submission)
    post_id = str(data["id"])
    author, subreddit = data.get("author"), data.get("subreddit")
    return {
        "id": post_id,
        "name": data.get("name") or f"t3_{post_id}",
        "created_utc": int(data["created_utc"]),
        "score": data.get("score"),
        "url": data.get("url"),
        "is_self": bool(data.get("is_self")),
        "over_18": bool(data.get("over_18")),
        "subreddit": str(subreddit) if subreddit is not None else None,
        "title": data.get("title"),
        "domain": data.get("domain"),
        "permalink": data.get("permalink"),
        "author": str(author) if author is not None else None,
        "num_comments": data.get("num_comments"),
        "selftext": data.get("selftext", ""),
        "stickied": bool(data.get("stickied")),
        "retrieved_on": retrieved_on,
    }


# --- state ------------------------------------------------------------------------------------------


@dataclass
class SubredditState:
    """What the archive holds of one subreddit (see the module doc for the JSON)."""

    newest_created_utc: int | None = None
    ids: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)


def load_state(archive: Path) -> dict[str, SubredditState]:
    """``archive/state.json`` by subreddit; empty when there is none yet."""
    path = archive / STATE_NAME
    if not path.exists():
        return {}
    raw = orjson.loads(path.read_bytes())
    if raw.get("version") != STATE_VERSION:
        raise StageError(f"{path}: unknown state version {raw.get('version')!r} (expected {STATE_VERSION})")
    return {
        name: SubredditState(entry.get("newest_created_utc"), set(entry.get("ids", ())),
                             list(entry.get("files", ())))
        for name, entry in raw["subreddits"].items()
    }


def save_state(archive: Path, state: dict[str, SubredditState]) -> None:
    """Write ``archive/state.json`` atomically (the old or the new state, never a mix)."""
    body = {"version": STATE_VERSION, "subreddits": {
        name: {"newest_created_utc": sub.newest_created_utc, "ids": sorted(sub.ids), "files": sub.files}
        for name, sub in sorted(state.items())
    }}
    atomic_write(archive / STATE_NAME, orjson.dumps(body) + b"\n")  # one line: ids are many


def read_archive_file(path: Path) -> Iterator[dict[str, Any]]:
    """The submissions of one archive file."""
    with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        data = stream.read()
    for line in data.splitlines():
        if line.strip():
            yield orjson.loads(line)


def _recover(folder: Path, sub: SubredditState, logger: logging.Logger) -> None:
    """Account for data files the state does not list (a run killed between the file and the state)."""
    listed = set(sub.files)
    for path in sorted(folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        if path.name in listed:
            continue
        ids = {record["id"] for record in read_archive_file(path)}
        logger.warning("%s is not in %s (interrupted run?): taking its %d submissions as archived",
                       path, STATE_NAME, len(ids))
        sub.ids |= ids
        sub.files.append(path.name)


def _write_file(folder: Path, sub: SubredditState, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` (oldest first) as the subreddit's next archive file; returns its path."""
    numbers = [int(m[1]) for name in sub.files if (m := _FILE_NUMBER.match(name))]
    number = max(numbers, default=0) + 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = folder / f"{FILE_PREFIX}{stamp}_{number}{FILE_SUFFIX}"
    records = sorted(records, key=lambda r: (r["created_utc"], r["id"]))
    lines = b"".join(orjson.dumps(record) + b"\n" for record in records)
    atomic_write(path, zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(lines))
    return path


# --- collecting -------------------------------------------------------------------------------------


def check_source(cfg: RedditSourceConfig) -> list[str]:
    """The subreddits to collect (lower-case, duplicates dropped); ``ConfigError`` for a bad config."""
    if not cfg.subreddits:
        raise ConfigError("source.subreddits", "is empty: name the subreddits to collect")
    bad = [name for name in cfg.subreddits if not _SUBREDDIT_NAME.match(name)]
    if bad:
        raise ConfigError("source.subreddits", f"not subreddit names (give them without r/): {bad}")
    unknown = [name for name in cfg.listings if name not in LISTINGS]
    if not cfg.listings or unknown:
        raise ConfigError("source.listings",
                          f"must be a non-empty list of {list(LISTINGS)}, got {cfg.listings}")
    return list(dict.fromkeys(name.lower() for name in cfg.subreddits))


@dataclass
class _Harvest:
    """What one subreddit's listings gave in this run."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record, new to the archive
    seen: int = 0
    newest_in_new: int | None = None  # set once `new` was read to the end or to archived posts
    new_listed: int = 0  # posts `new` gave
    reached_archived: bool = False


def _listing(subreddit: praw.models.Subreddit, name: str, time_filter: str) -> Iterator[Any]:
    """praw's generator over a whole listing (``limit=None``: it follows ``after`` to the end)."""
    if name == "new":
        return subreddit.new(limit=None)
    if name == "top":
        return subreddit.top(time_filter=time_filter, limit=None)
    return subreddit.hot(limit=None)


def _read_listings(reddit: praw.Reddit, cfg: RedditSourceConfig, name: str, sub: SubredditState,
                   harvest: _Harvest) -> None:
    """Read ``cfg.listings`` of r/``name`` into ``harvest``, keeping only posts not archived yet.

    ``new`` is newest first, so it is read only down to the newest post of the last completed read
    (strictly older posts end it: a post of that same second may be one we lack).
    """
    subreddit = reddit.subreddit(name)
    for listing in cfg.listings:
        newest = None
        for submission in _listing(subreddit, listing, cfg.top_time_filter):
            record = submission_record(submission, int(time.time()))
            harvest.seen += 1
            created = record["created_utc"]
            if listing == "new":
                if sub.newest_created_utc is not None and created < sub.newest_created_utc:
                    harvest.reached_archived = True
                    break
                newest = created if newest is None else max(newest, created)
                harvest.new_listed += 1
            if record["id"] not in sub.ids:
                harvest.records.setdefault(record["id"], record)
        if listing == "new":
            harvest.newest_in_new = newest


def _failed_url(err: Exception) -> str:
    """The URL of the request behind a prawcore error ("" when unknown)."""
    response = getattr(err, "response", None)
    if response is not None:
        return str(response.url)
    args = getattr(err, "request_args", ())
    return str(args[1]) if len(args) > 1 else ""


def _is_token_request(err: Exception) -> bool:
    return urlsplit(_failed_url(err)).path.endswith(ACCESS_TOKEN_PATH)


def _is_auth_failure(err: Exception) -> bool:
    """Whether ``err`` means our credentials or token were refused (as opposed to one subreddit failing)."""
    if isinstance(err, (prawcore.OAuthException, prawcore.InvalidToken)):
        return True
    return isinstance(err, prawcore.ResponseException) and _is_token_request(err)


def _describe(err: Exception) -> str:
    """A short reason for a failed subreddit, with Reddit's own ``reason`` when it gave one."""
    response = getattr(err, "response", None)
    reason = None
    if response is not None:
        with contextlib.suppress(ValueError, AttributeError):
            reason = response.json().get("reason")
    text = f"{type(err).__name__}: {err}"
    return f"{text} (reason: {reason})" if reason else text


def _collect_subreddit(reddit: praw.Reddit, cfg: RedditSourceConfig, archive: Path, name: str,
                       state: dict[str, SubredditState], counts: Counter[str],
                       logger: logging.Logger) -> None:
    """Collect r/``name``: read its listings, write what is new as one file, then the state."""
    sub = state.setdefault(name, SubredditState())
    folder = archive / name
    if folder.is_dir():
        _recover(folder, sub, logger)
    harvest = _Harvest()
    try:
        _read_listings(reddit, cfg, name, sub, harvest)
    except (prawcore.PrawcoreException, PRAWException) as err:
        if _is_auth_failure(err):
            raise RedditAuthError(f"Reddit refused the credentials ({type(err).__name__}: {err}); "
                                  f"{_CREDENTIALS_HELP}") from err
        if _is_token_request(err):  # no token, no API: every subreddit would fail the same way
            raise StageError(f"cannot get an access token from Reddit ({err}); check the network and "
                             "source.reddit_url") from err
        counts["subreddit_error"] += 1
        logger.error("r/%s failed: %s; keeping what was read, going on with the next subreddit",
                     name, _describe(err))
    counts["submissions_seen"] += harvest.seen
    if harvest.newest_in_new is not None and sub.newest_created_utc is not None \
            and not harvest.reached_archived and harvest.new_listed >= LISTING_CAP:
        logger.warning("r/%s: `new` ended (Reddit lists %d posts) before reaching posts already "
                       "archived: posts in between are missing unless top/hot list them; collect "
                       "this subreddit more often", name, LISTING_CAP)
    if harvest.records:
        path = _write_file(folder, sub, list(harvest.records.values()))
        sub.files.append(path.name)
        sub.ids.update(harvest.records)
        counts["submissions_new"] += len(harvest.records)
        logger.info("r/%s: %d new of %d seen -> %s", name, len(harvest.records), harvest.seen, path.name)
    else:
        logger.info("r/%s: nothing new (%d seen)", name, harvest.seen)
    if harvest.newest_in_new is not None:
        sub.newest_created_utc = max(harvest.newest_in_new, sub.newest_created_utc or 0)
    save_state(archive, state)  # after the data file: a kill in between is repaired by _recover


@contextlib.contextmanager
def _archive_lock(archive: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``archive``: two collectors must not interleave their state writes."""
    archive.mkdir(parents=True, exist_ok=True)
    with open(archive / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StageError(f"{archive} is being collected by another process") from None
        yield


def collect(cfg: RedditSourceConfig, archive: Path, logger: logging.Logger) -> dict[str, int]:
    """Add the submissions of ``cfg.subreddits`` not yet in ``archive`` (see the module doc).

    Returns counts: ``requests`` (API requests, i.e. listing pages, the token request not included),
    ``submissions_new`` (archived by this run), ``submissions_seen`` (listed, including known ones),
    ``subreddit_error`` (subreddits that failed: private, banned, server errors after praw's retries;
    the others still run) and ``rate_limit_waits``. Raises ``RedditAuthError`` when credentials are
    missing or refused, ``ConfigError`` for a bad source config.
    """
    names = check_source(cfg)
    http = requests.Session()
    watcher = _RequestWatcher(logger)
    http.hooks["response"].append(watcher)
    reddit = _build_reddit(cfg, http)
    counts: Counter[str] = Counter(dict.fromkeys(
        ("requests", "submissions_new", "submissions_seen", "subreddit_error", "rate_limit_waits"), 0))
    try:
        with _archive_lock(archive):
            state = load_state(archive)
            for name in names:
                _collect_subreddit(reddit, cfg, archive, name, state, counts, logger)
    finally:
        http.close()
    counts["requests"] = watcher.requests
    counts["rate_limit_waits"] = watcher.waits
    logger.info("reddit: %d subreddits, %d requests, %d new submissions of %d seen, %d failed",
                len(names), watcher.requests, counts["submissions_new"], counts["submissions_seen"],
                counts["subreddit_error"])
    return dict(counts)
