"""Which Reddit submissions give a link, and the link's normalized identity. Pure functions.

``submission_drop_reason`` applies the selection rules in a fixed order and returns the first that
fails, as a snake_case reason the stage counts; ``normalize_url`` gives the URL's identity used by
the global dedup. Both are deterministic: the same submission always gets the same answer.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from pipeline.config import LinksConfig

DEFAULT_PORTS = {"http": 80, "https": 443}
WIKIPEDIA = frozenset({"wikipedia.org"})
PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 pchar and "/": everything else is percent-encoded


@dataclass(frozen=True, slots=True)
class Link:
    """A submission that passed the rules: the normalized URL and its Reddit provenance."""

    url: str
    raw_url: str
    host: str
    submission_id: str
    subreddit: str
    score: int
    created_utc: int


class UrlError(ValueError):
    """A URL we cannot use; ``reason`` is the counted drop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=16)
def _tracking(params: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Exact keys and prefixes (entries ending with ``*``) of tracking parameters, lowercased."""
    exact = frozenset(p.lower() for p in params if not p.endswith("*"))
    return exact, tuple(p[:-1].lower() for p in params if p.endswith("*"))


def _unescape(url: str) -> str:
    """Reddit's API HTML-escapes ``&``, ``<`` and ``>`` in URLs."""
    return url.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def normalize_url(raw: str, tracking_params: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """``(normalized_url, host)``, or ``UrlError`` with the drop reason.

    Lowercases scheme and host (IDNA hosts to punycode), drops default ports, the fragment and
    tracking parameters (``utm_*``-style entries end with ``*``), sorts the remaining query,
    percent-encodes a non-ASCII path as UTF-8 and turns an empty path into ``/``. Reddit's API
    escapes ``&`` as ``&amp;`` in URLs; it is undone. URLs with credentials are refused.
    """
    text = _unescape(raw.strip()) if "&" in raw else raw.strip()
    if not text:
        raise UrlError("no_url")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise UrlError("unparseable_url") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlError("bad_scheme")
    if parts.username is not None or parts.password is not None:
        raise UrlError("credentials_in_url")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c in host for c in " <>\"'\\{}|^`"):
        raise UrlError("unparseable_url")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UrlError("unparseable_url") from None
    bracketed = f"[{host}]" if ":" in host else host  # an IPv6 literal
    netloc = bracketed if port in (None, DEFAULT_PORTS[scheme]) else f"{bracketed}:{port}"
    query = _clean_query(parts.query, tuple(tracking_params)) if parts.query else ""
    path = quote(parts.path, safe=PATH_SAFE) if not parts.path.isascii() else parts.path
    if not query.isascii():
        query = quote(query, safe=PATH_SAFE + "?")
    url = urlunsplit((scheme, netloc, path or "/", query, ""))
    return url, host


def _clean_query(query: str, tracking_params: tuple[str, ...]) -> str:
    """The query without tracking parameters, pairs sorted and kept as written (decoding and
    re-encoding them would change what the server is asked for)."""
    exact, prefixes = _tracking(tracking_params)
    kept = []
    for pair in query.split("&"):
        key = unquote_plus(pair.split("=", 1)[0]).lower()
        if pair and key not in exact and not key.startswith(prefixes):
            kept.append(pair)
    return "&".join(sorted(kept))


def _domain_matches(host: str, domains: frozenset[str]) -> bool:
    """True if ``host`` is one of ``domains`` or a subdomain of one."""
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts) - 1))


def as_int(value: Any) -> int | None:
    """Scores and timestamps drift across dump years: int, float, numeric string, or null."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None
    return None


class Rules:
    """The selection rules of one config, prepared once (sets and tuples) for the hot loop."""

    def __init__(self, cfg: LinksConfig) -> None:
        self.cfg = cfg
        self.blocked = frozenset(d.lower().strip(".") for d in cfg.blocked_domains)
        self.extensions = tuple("." + e.lower().lstrip(".") for e in cfg.blocked_extensions)
        self.tracking = tuple(cfg.tracking_params)
        self.check_score = cfg.score_rule == "per_submission"

    def link_or_reason(self, sub: Any) -> Link | str:
        """The ``Link`` a submission gives, or the reason it gives none.

        ``sub`` has attributes ``id, url, score, created_utc, subreddit, over_18, is_self`` (missing
        ones are None). The rules, in order: a URL present; not a self post; not over_18 (if
        dropped); created_utc valid and inside the window; score present and >= min_score
        (per_submission rule); the URL parses, with an http(s) scheme and no credentials; not
        Wikipedia; domain and extension not blocked.
        """
        cfg = self.cfg
        if not isinstance(sub.url, str) or not sub.url.strip():
            return "no_url"
        if sub.is_self is True:
            return "self_post"
        if cfg.drop_over_18 and sub.over_18 is True:
            return "over_18"
        created = as_int(sub.created_utc)
        if created is None:
            return "bad_created_utc"
        if cfg.created_after_utc is not None and created < cfg.created_after_utc:
            return "before_window"
        if cfg.created_before_utc is not None and created >= cfg.created_before_utc:
            return "after_window"
        score = as_int(sub.score)
        if score is None:
            return "score_missing"
        if self.check_score and score < cfg.min_score:
            return "score_below_min"
        try:  # after the cheap checks: most submissions fail on score, and parsing costs most
            url, host = normalize_url(sub.url, self.tracking)
        except UrlError as err:
            return err.reason
        if cfg.drop_wikipedia and _domain_matches(host, WIKIPEDIA):
            return "wikipedia"
        if _domain_matches(host, self.blocked):
            return "blocked_domain"
        path = url.split("?", 1)[0].lower()
        if path.endswith(self.extensions):
            return "blocked_extension"
        subreddit = sub.subreddit if isinstance(sub.subreddit, str) else ""
        return Link(url=url, raw_url=sub.url, host=host, submission_id=str(sub.id or ""),
                    subreddit=subreddit, score=score, created_utc=created)


def partition_of(host: str, partitions: int) -> int:
    """The links partition of a host: a stable hash of the host without ``www.``.

    One fetch task owns a whole partition, so per-host politeness holds without coordination.
    """
    key = host.removeprefix("www.").encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % partitions
