"""The plan of a synthetic web: its unique links, their hosts, and what each link does when fetched.

Everything is a pure function of ``(seed, links, port)``: ``Plan(seed=7, links=25_000, port=18400)``
gives the same hosts, URLs and link kinds on every call and in every process, without holding a list
of the links (``Plan.link(i)`` is computed on demand; only the hosts' cumulative sizes are kept).

Hosts follow a heavy tail like the real one (OpenWebText's URL list): the largest host holds
``TOP_HOST_SHARE`` of all links, the top thousand about half (a power law over ranks), a middle band
``MIDDLE_SHARE``, and the rest are hosts of one link each. The shares hold at every size, so the
rehearsal's sizes differ in scale, not in shape.

A host is live, or dead as a whole: its name does not resolve (it ends in ``.invalid``, which never
resolves: RFC 6761) or nothing listens on its port (``port + 1``). A live host's links each get a
``Kind`` (``KIND_SHARES``): an article, a redirect chain to one, a 404 or 410, a timeout, a slow
answer, a non-HTML answer, an oversized page, a page robots.txt refuses, a non-English page, a
cookie wall or login page (near-duplicates of the host's others), or an article syndicated from
another host (a near-duplicate of that one).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

TOP_HOST_SHARE = 0.015  # the largest host's share of all links (real: 1-2%)
TOP_HOSTS = 1000  # ... these hosts hold about half (a power law over their ranks)
TOP_EXPONENT = 0.62  # size(rank) = size(1) * rank ** -TOP_EXPONENT: 1,000 ranks hold ~50%
MIDDLE_SHARE = 0.20  # hosts of 2 or more links below the top thousand; the rest hold one link each
MIDDLE_EXPONENT = 1.0
ALWAYS_LIVE = 100  # the largest hosts are never dead (they set the crawl's floor)
DNS_DEAD_SHARE = 0.16  # of the other hosts: the name no longer resolves
UNREACHABLE_SHARE = 0.06  # ... nothing listens
ROBOTS_RULES_SHARE = 0.7  # live hosts whose robots.txt disallows /members/ (others answer 404)
GZIP_SHARE = 0.25  # live hosts that send their pages gzip-encoded

KIND_SHARES = {  # what a link of a live host does (shares of those links); with the dead hosts, about
    # 56% of all links end as pages, as docs/reproduce.md's cost model assumes (~55% of 2005-2017
    # links still serve HTML)
    "article": 0.50, "redirect": 0.08, "http_404": 0.25, "http_410": 0.025, "timeout": 0.004,
    "slow": 0.006, "not_html": 0.03, "oversized": 0.004, "robots": 0.02, "non_english": 0.03,
    "boilerplate": 0.03, "syndicated": 0.021,
}
# The fetch stage's reason for each kind (None: kept) and for each dead host.
FETCH_REASON = {
    "article": None, "redirect": None, "http_404": "http_404", "http_410": "http_410",
    "timeout": "timeout", "slow": None, "not_html": "not_html", "oversized": "too_large",
    "robots": "robots_disallowed", "non_english": None, "boilerplate": None, "syndicated": None,
    "dns_error": "dns_error", "connection_error": "connection_error",
}
SECTIONS = ("news", "world", "science", "tech", "politics", "culture", "sport", "health", "opinion",
            "business", "travel", "books")
NAME_PARTS = (
    ("daily", "morning", "evening", "city", "valley", "harbor", "north", "south", "open", "free",
     "river", "lake", "metro", "rural", "civic", "prairie", "coastal", "mountain", "urban", "global"),
    ("herald", "gazette", "tribune", "ledger", "journal", "post", "chronicle", "review", "notes",
     "digest", "observer", "monitor", "dispatch", "courier", "bulletin", "report", "log", "times",
     "voice", "press"),
)


def _u64(*parts: object) -> int:
    """A stable 64-bit hash of ``parts`` (the same in every process and Python version)."""
    key = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def uniform(*parts: object) -> float:
    """A stable number in [0, 1) for ``parts``."""
    return _u64(*parts) / 2**64


def _pick(shares: dict[str, float], u: float) -> str:
    acc = 0.0
    for name, share in shares.items():
        acc += share
        if u < acc:
            return name
    return next(reversed(shares))


@dataclass(frozen=True)
class Host:
    rank: int  # 0: the largest
    name: str
    links: int
    fate: str  # live, dns_error or connection_error
    robots_rules: bool  # robots.txt disallows /members/ (else it answers 404: everything allowed)
    gzip: bool  # pages are sent Content-Encoding: gzip


@dataclass(frozen=True)
class Link:
    index: int
    url: str  # as the links stage normalizes it (the dump writes variants of it)
    host: Host
    kind: str  # a KIND_SHARES key, or the host's fate when it is dead
    source: int | None = None  # a syndicated article: the link whose article it copies
    hops: int = 0  # a redirect: how many redirects lead to the article

    @property
    def fetch_reason(self) -> str | None:
        return FETCH_REASON[self.kind]


@dataclass(frozen=True)
class Plan:
    seed: int
    links: int
    port: int  # where the web server listens; hosts resolve to 127.0.0.1 (fetch.hosts='*.test=...')

    def __post_init__(self) -> None:
        if self.links < 1:
            raise ValueError(f"a plan needs at least one link, not {self.links}")

    # --- hosts -------------------------------------------------------------------------------------

    @functools.cached_property
    def sizes(self) -> list[int]:
        """Links per host, largest first; they sum to ``links``."""
        n = self.links
        top = max(1, round(TOP_HOST_SHARE * n))
        sizes: list[int] = []
        for rank in range(1, TOP_HOSTS + 1):
            size = max(1, round(top * rank ** -TOP_EXPONENT))
            if sum(sizes) + size > n // 2 and sizes:
                break
            sizes.append(size)
        middle_budget, floor = round(MIDDLE_SHARE * n), sizes[-1]
        used = 0
        for rank in itertools.count(1):
            size = max(2, min(floor, round(floor * (rank / 10 + 1) ** -MIDDLE_EXPONENT)))
            if used + size > middle_budget:
                break
            sizes.append(size)
            used += size
        sizes += [1] * (n - sum(sizes))
        return sizes

    @functools.cached_property
    def _starts(self) -> list[int]:
        return [0, *itertools.accumulate(self.sizes)][:-1]

    def host(self, rank: int) -> Host:
        u = uniform(self.seed, "host", rank)
        a, b = NAME_PARTS
        base = f"{a[_u64(self.seed, 'a', rank) % len(a)]}{b[_u64(self.seed, 'b', rank) % len(b)]}-{rank}"
        fate = "live"
        if rank >= ALWAYS_LIVE:
            fate = _pick({"dns_error": DNS_DEAD_SHARE, "connection_error": UNREACHABLE_SHARE,
                          "live": 1.0}, u)
        www = uniform(self.seed, "www", rank) < 0.5
        name = f"{'www.' if www else ''}{base}.{'invalid' if fate == 'dns_error' else 'test'}"
        return Host(rank=rank, name=name, links=self.sizes[rank], fate=fate,
                    robots_rules=uniform(self.seed, "robots", rank) < ROBOTS_RULES_SHARE,
                    gzip=uniform(self.seed, "gzip", rank) < GZIP_SHARE)

    def hosts(self) -> Iterator[Host]:
        return (self.host(rank) for rank in range(len(self.sizes)))

    def host_of(self, index: int) -> Host:
        return self.host(bisect.bisect_right(self._starts, index) - 1)

    def host_port(self, host: Host) -> int:
        return self.port + 1 if host.fate == "connection_error" else self.port

    # --- links -------------------------------------------------------------------------------------

    def kind(self, index: int, host: Host | None = None) -> str:
        host = host or self.host_of(index)
        if host.fate != "live":
            return host.fate
        kind = _pick(KIND_SHARES, uniform(self.seed, "kind", index))
        if kind == "robots" and not host.robots_rules:
            return "article"
        return kind

    def link(self, index: int) -> Link:
        if not 0 <= index < self.links:
            raise IndexError(f"link {index} of {self.links}")
        host = self.host_of(index)
        kind = self.kind(index, host)
        section = SECTIONS[_u64(self.seed, "section", index) % len(SECTIONS)]
        year = 2006 + _u64(self.seed, "year", index) % 12
        path = f"/{section}/{year}/story-{index}.html"
        if kind == "robots":
            path = f"/members{path}"
        elif kind == "boilerplate":
            path = f"/account/login?next=story-{index}"
        elif kind == "not_html":
            path = f"/api/story-{index}"
        url = f"http://{host.name}:{self.host_port(host)}{path}"
        source = self._syndication_source(index, host) if kind == "syndicated" else None
        hops = 1 + _u64(self.seed, "hops", index) % 3 if kind == "redirect" else 0
        return Link(index=index, url=url, host=host, kind=kind, source=source, hops=hops)

    def _syndication_source(self, index: int, host: Host) -> int:
        """The article this one copies: the first plain article of another live host from a stable
        starting point (there is always one: the largest host is live)."""
        start = _u64(self.seed, "source", index) % self.links
        for step in range(self.links):
            j = (start + step) % self.links
            other = self.host_of(j)
            if other.rank != host.rank and self.kind(j, other) == "article":
                return j
        return index  # a plan with no other article: it copies itself (a 1-host plan)

    def iter_links(self) -> Iterator[Link]:
        return (self.link(i) for i in range(self.links))

    def index_of(self, url_path: str) -> int | None:
        """The link index a request path names (``.../story-N.html``, ``?next=story-N``), if any."""
        head, sep, tail = url_path.rpartition("story-")
        if not sep:
            return None
        digits = "".join(itertools.takewhile(str.isdigit, tail))
        return int(digits) if digits and int(digits) < self.links else None

    def expected_fetch(self) -> Counter[str]:
        """The fetch stage's counts this plan should give: ``kept`` or the reason, per link."""
        return Counter(link.fetch_reason or "kept" for link in self.iter_links())
