"""A fake Reddit API on loopback, for driving the real praw client in tests.

``FakeReddit`` serves what praw's read-only (application-only OAuth) client asks for:

- ``POST /api/v1/access_token``: checks HTTP basic auth against the client id/secret it was given
  (401 otherwise) and hands out a bearer token;
- ``GET /r/<sub>/new``, ``/r/<sub>/top`` (``t=``), ``/r/<sub>/hot``: Reddit's listing JSON, paged with
  ``limit`` (at most 100 a page, as Reddit) and ``after``, each listing capped at 1,000 items.

Every response carries ``X-Ratelimit-Remaining/Used/Reset`` as Reddit sends them; ``throttle_once``
makes the next API response report Remaining=0 so the client must wait for the reset. Every request
is recorded (method, path, query, arrival time) so tests can count what the client asked for.

Use it as a context manager: the server runs on 127.0.0.1, port 0, in a daemon thread, and is shut
down on exit.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LISTING_CAP = 1000  # Reddit serves at most this many items of one listing
PAGE_MAX = 100  # and at most this many per request
PAGE_DEFAULT = 25
WINDOW_REQUESTS = 1000  # requests allowed per rate-limit window (what X-Ratelimit-* count down)
RESET_S = 60  # seconds to the window's reset that the fake reports; small enough that praw never waits
_LISTING_PATH = re.compile(r"^/r/(?P<sub>[A-Za-z0-9_]+)/(?P<sort>new|top|hot)(?:\.json)?/?$")


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    at: float  # time.monotonic() when it arrived
    status: int
    user_agent: str


def make_post(subreddit: str, post_id: str, created_utc: int, *, score: int = 1, stickied: bool = False,
              is_self: bool = False, author: str | None = "someone",
              url: str | None = None) -> dict[str, Any]:
    """The ``data`` of a t3 (submission) thing, with the fields Reddit's listings carry."""
    permalink = f"/r/{subreddit}/comments/{post_id}/post_{post_id}/"
    link = url or (f"https://www.reddit.com{permalink}" if is_self else f"https://example.com/{post_id}")
    domain = f"self.{subreddit}" if is_self else urlsplit(link).hostname
    return {
        "id": post_id, "name": f"t3_{post_id}", "created_utc": float(created_utc),
        "created": float(created_utc), "score": score, "ups": score, "downs": 0, "upvote_ratio": 1.0,
        "url": link, "is_self": is_self, "over_18": False, "subreddit": subreddit,
        "subreddit_id": "t5_fake", "subreddit_name_prefixed": f"r/{subreddit}",
        "title": f"Post {post_id} in r/{subreddit}", "domain": domain, "permalink": permalink,
        "author": author if author is not None else "[deleted]",
        "num_comments": 0, "selftext": f"text of {post_id}" if is_self else "", "stickied": stickied,
        "thumbnail": "default", "link_flair_text": None, "locked": False, "archived": False,
    }


@dataclass
class FakeReddit:
    """In-memory subreddits behind a loopback HTTP server speaking Reddit's API (see module doc)."""

    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    # lower-case subreddit name -> its posts
    posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    # lower-case subreddit name -> the HTTP status its listings answer (403 private, 404 banned, 5xx)
    errors: dict[str, int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list, repr=False)
    _tokens: set[str] = field(default_factory=set, repr=False)
    _used: int = 0
    _throttle_reset: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    # --- set-up -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the server, for both praw's ``oauth_url`` and ``reddit_url``."""
        assert self._server is not None, "the fake is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_posts(self, subreddit: str, count: int, *, newest_utc: int = 1_700_000_000,
                  step_s: int = 60, **fields: Any) -> list[dict[str, Any]]:
        """Add ``count`` posts to ``subreddit``, the newest created at ``newest_utc``, then every ``step_s``.

        Ids are unique across the fake (base 36, like Reddit's); scores vary so top differs from new.
        """
        added = []
        with self._lock:
            for i in range(count):
                n = next(self._ids)
                post_id, score = _base36(n + 36**4), (n * 7919) % 5000
                added.append(make_post(subreddit, post_id, newest_utc - i * step_s,
                                       **{"score": score, **fields}))
            self.posts.setdefault(subreddit.lower(), []).extend(added)
        return added

    def throttle_once(self, reset_s: int) -> None:
        """Make the next API response say the rate limit is used up until ``reset_s`` seconds from now."""
        with self._lock:
            self._throttle_reset = reset_s

    def listing_requests(self, subreddit: str | None = None) -> list[Recorded]:
        """The listing requests received (of ``subreddit`` if given), in arrival order."""
        with self._lock:
            found = [r for r in self.requests if _LISTING_PATH.match(r.path)]
        if subreddit is not None:
            found = [r for r in found if r.path.lower().startswith(f"/r/{subreddit.lower()}/")]
        return found

    def token_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/api/v1/access_token"]

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeReddit:
        fake = self

        class Handler(_Handler):
            reddit = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # poll_interval: how long stop() waits for serve_forever to notice the shutdown
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-reddit", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeReddit:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- request handling (called from the server's threads) ----------------------------------------

    def _record(self, method: str, path: str, query: dict[str, str], status: int, user_agent: str) -> None:
        with self._lock:
            self.requests.append(Recorded(method, path, query, time.monotonic(), status, user_agent))

    def _rate_headers(self, count: bool) -> dict[str, str]:
        """X-Ratelimit-* for one response; ``count`` charges the request to the window."""
        with self._lock:
            if count:
                self._used += 1
            if count and self._throttle_reset is not None:
                reset, self._throttle_reset = self._throttle_reset, None
                remaining = 0.0
            else:
                reset, remaining = RESET_S, float(max(WINDOW_REQUESTS - self._used, 1))
            return {"X-Ratelimit-Remaining": f"{remaining:.1f}", "X-Ratelimit-Used": str(self._used),
                    "X-Ratelimit-Reset": str(reset)}

    def _token(self, authorization: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {"message": "Unauthorized", "error": 401}, {}
        with self._lock:
            token = f"fake-token-{len(self._tokens) + 1}"
            self._tokens.add(token)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": 3600, "scope": "*"}, {}

    def _listing(self, sub: str, sort: str, query: dict[str, str], authorization: str | None,
                 ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            authorized = authorization is not None and authorization.removeprefix("bearer ") in self._tokens
            error = self.errors.get(sub.lower())
            posts = list(self.posts.get(sub.lower(), []))
        if not authorized:
            return 401, {"message": "Unauthorized", "error": 401}, {
                "www-authenticate": 'Bearer realm="reddit", error="invalid_token"'}
        if error == 403:
            return 403, {"reason": "private", "message": "Forbidden", "error": 403}, {}
        if error == 404:
            return 404, {"reason": "banned", "message": "Not Found", "error": 404}, {}
        if error is not None:
            return error, {"message": "Server Error", "error": error}, {}
        ordered = _sorted(posts, sort)[:LISTING_CAP]
        start = 0
        if "after" in query:
            names = [p["name"] for p in ordered]
            start = names.index(query["after"]) + 1 if query["after"] in names else len(ordered)
        limit = min(max(int(query.get("limit", PAGE_DEFAULT)), 1), PAGE_MAX)
        page = ordered[start:start + limit]
        after = page[-1]["name"] if page and start + limit < len(ordered) else None
        body = {"kind": "Listing", "data": {
            "after": after, "before": None, "dist": len(page), "modhash": None, "geo_filter": "",
            "children": [{"kind": "t3", "data": p} for p in page]}}
        return 200, body, {}


def _sorted(posts: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """``posts`` in the order of Reddit's ``sort`` listing (hot: stickied first, then score by age)."""
    if sort == "new":
        return sorted(posts, key=lambda p: (-p["created_utc"], p["id"]))
    if sort == "top":
        return sorted(posts, key=lambda p: (-p["score"], p["id"]))
    newest = max((p["created_utc"] for p in posts), default=0.0)

    def hotness(post: dict[str, Any]) -> float:
        return post["score"] / (2 + (newest - post["created_utc"]) / 3600) ** 1.5

    return sorted(posts, key=lambda p: (not p["stickied"], -hotness(p), p["id"]))


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the ``FakeReddit`` it belongs to and writes its JSON answer."""

    reddit: FakeReddit

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path, query = self._target()
        if path == "/api/v1/access_token":
            self._answer("POST", path, query, *self.reddit._token(self.headers.get("Authorization")),
                         count=False)
        else:
            self._answer("POST", path, query, 404, {"message": "Not Found", "error": 404}, {}, count=True)

    def do_GET(self) -> None:  # noqa: N802
        path, query = self._target()
        match = _LISTING_PATH.match(path)
        if match:
            answer = self.reddit._listing(match["sub"], match["sort"], query,
                                          self.headers.get("Authorization"))
        else:
            answer = 404, {"message": "Not Found", "error": 404}, {}
        self._answer("GET", path, query, *answer, count=True)

    def _target(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def _answer(self, method: str, path: str, query: dict[str, str], status: int, body: dict[str, Any],
                headers: dict[str, str], *, count: bool) -> None:
        self.reddit._record(method, path, query, status, self.headers.get("User-Agent", ""))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in {**self.reddit._rate_headers(count), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """Keep the test output quiet."""
