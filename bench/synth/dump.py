"""Monthly Reddit submission dumps that give exactly a plan's links, with noise and the real quirks.

``write_dumps(plan, folder)`` writes a series of dump files and ``truth.json``: what the links stage
must count on them (``DumpTruth``). Every line is built under one designed reason, so the truth is
known by construction, not by running the rules.

What the files hold (docs/links.md; DESIGN.md, "Real Reddit dumps, as they are"):

- **Months.** Submissions are spread over 2005-12..2017-12 with the volume growing as Reddit's did
  (``YEAR_VOLUME``), plus one month after GPT-2's cut-off (2018-11: all of it dropped). Writing 145
  files would be too many at small sizes, so a file named for a month (``FILES``) holds that month
  and every month up to the next file's. Each line's quirks follow its own month, not its file.
- **Formats** of Pushshift's originals: ``RS_v2_YYYY-MM.xz`` for 2005-2010, ``RS_YYYY-MM.bz2`` for
  2011-2014 and 2017-01..11, ``.zst`` (a 2 GiB window, as ``zstd --long=31``) for 2015-2016 and
  2018-11, ``.xz`` for 2017-12; low compression levels, for speed.
- **Plan links.** Each link's first submission has a score >= 3, a subreddit, and is neither a self
  post nor over_18, before 2018. About a fifth of links come again in other months (``REPEATS``):
  kept again, with a score below 3, or after the cut-off. Some submissions carry a URL variant that
  normalizes to the same URL (``VARIANTS``); the v2 files escape every ``/`` as ``\\/``.
- **Noise**, each line under one reason: low scores (most lines), self posts (none before 2008-01,
  about 40% of the noise from 2015), over_18, blocked domains (image and video hosts; crossposts
  from 2017-08 point to reddit.com), blocked extensions, Wikipedia, promoted posts from 2014 (no
  ``subreddit``, a low score), ``score: null`` in 2017-10/11.
- **Quirks.** ``created_utc`` a string in 2014-01..2015-11; ``ups``/``downs`` only 2011-01..2016-12;
  ``edited`` a bool, from 2012 also an int or float timestamp; ``&amp;`` in URLs; relative
  permalinks; keys sorted in the v2 files; titles with multibyte characters; one line in
  RS_2011-01 that starts with NUL bytes (a kept link's only submission); the last line of the first
  and of the 2017-12 file without a newline; and the last kept line of each file written again at
  the start of the next (a re-ingested post: same id, a later score), which the reduce counts as
  ``duplicate_submission``.

Deterministic: the same plan gives the same bytes (every random draw comes from generators seeded
with the plan's seed and size). Files are written one after the other and one month at a time, so
memory holds one month's list of submissions, not the dump.
"""

from __future__ import annotations

import bisect
import bz2
import calendar
import json
import lzma
import os
import random
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import zstandard

from bench.synth.plan import Plan
from tests.fake_reddit import _base36  # Reddit ids, as the fake API writes them

# --- the calendar --------------------------------------------------------------------------------

# Relative submissions per year: a shape like Reddit's growth, not measured figures; 2017 holds 29%
# of 2005-12..2017-12 (the real dumps: 117 M of 430 M, 27%). 2005's volume is all in December.
YEAR_VOLUME = {2005: 0.05, 2006: 0.5, 2007: 1.0, 2008: 2.3, 2009: 3.3, 2010: 5.0, 2011: 9.5,
               2012: 28.0, 2013: 40.0, 2014: 52.0, 2015: 66.0, 2016: 80.0, 2017: 117.0}
WINDOW_MONTHS = tuple(["2005-12"] + [f"{y}-{m:02d}" for y in range(2006, 2018) for m in range(1, 13)])
AFTER_WINDOW = "2018-11"  # a month after GPT-2's cut-off (created_before_utc=2018-01-01)
MONTHS = (*WINDOW_MONTHS, AFTER_WINDOW)


@dataclass(frozen=True)
class DumpFile:
    """One dump file: it holds the months from ``first`` up to the next file's first month."""

    name: str
    first: str
    newline_at_end: bool = True


FILES = (
    DumpFile("RS_v2_2005-12.xz", "2005-12", newline_at_end=False),
    DumpFile("RS_v2_2009-01.xz", "2009-01"),
    DumpFile("RS_2011-01.bz2", "2011-01"),  # holds the NUL-prefixed line, as the real one does
    DumpFile("RS_2012-07.bz2", "2012-07"),
    DumpFile("RS_2014-01.bz2", "2014-01"),
    DumpFile("RS_2015-01.zst", "2015-01"),
    DumpFile("RS_2016-01.zst", "2016-01"),
    DumpFile("RS_2016-07.zst", "2016-07"),
    DumpFile("RS_2017-01.bz2", "2017-01"),
    DumpFile("RS_2017-05.bz2", "2017-05"),
    DumpFile("RS_2017-08.bz2", "2017-08"),
    DumpFile("RS_2017-10.bz2", "2017-10"),
    DumpFile("RS_2017-11.bz2", "2017-11"),
    DumpFile("RS_2017-12.xz", "2017-12", newline_at_end=False),
    DumpFile(f"RS_{AFTER_WINDOW}.zst", AFTER_WINDOW),
)
NUL_MONTH = "2011-01"
NUL_PREFIX = b"\x00" * 7

# --- volumes and shares --------------------------------------------------------------------------

NOISE_PER_LINK = 3.8  # noise lines per plan link (plan submissions add ~1.3 per link)
REPEATS = {1: 0.80, 2: 0.12, 3: 0.05, 4: 0.02, 5: 0.01}  # submissions per link
KEPT, LOW, LATE = 0, 1, 2  # what a repeat submission is: kept again, score < 3, after the cut-off
REPEAT_FATES = {KEPT: 0.60, LOW: 0.35, LATE: 0.05}
VARIANT_SHARE = (0.2, 0.5)  # of first submissions, of repeats: written as a variant, not as planned
VARIANTS = ("upper_host", "fragment", "utm", "fbclid")
NOISE_REASON = {  # the reason of each noise category inside the window (crossposts: by score)
    "low": "score_below_min", "self": "self_post", "nsfw": "over_18", "image_host": "blocked_domain",
    "image_file": "blocked_extension", "wikipedia": "wikipedia", "promoted": "score_below_min",
    "crosspost": "blocked_domain", "score_null": "score_missing",
}
IMAGE_HOSTS = ("i.imgur.com", "imgur.com", "www.youtube.com", "youtu.be", "i.redd.it", "gfycat.com")
SUBREDDITS = (  # (name, first year it has posts)
    ("reddit.com", 2005), ("programming", 2006), ("science", 2006), ("politics", 2007),
    ("worldnews", 2008), ("news", 2008), ("technology", 2008), ("askreddit", 2008), ("books", 2008),
    ("history", 2009), ("space", 2009), ("economics", 2009), ("europe", 2010), ("gaming", 2010),
    ("todayilearned", 2011), ("futurology", 2012), ("dataisbeautiful", 2013), ("upliftingnews", 2013),
)
SUBREDDIT_IDS = {name: f"t5_{2 + 36**4 + 7919 * rank:x}" for rank, (name, _) in enumerate(SUBREDDITS)}
WORDS = ("the", "new", "study", "shows", "city", "plans", "why", "report", "market", "after", "years",
         "first", "world", "council", "votes", "against", "scientists", "find", "water", "school",
         "court", "rules", "police", "say", "old", "bridge", "climate", "data", "how", "a", "of", "in")
MULTIBYTE = ("café", "Zürich", "naïve", "São Paulo", "東京", "Москва", "🙂", "—", "it’s", "€5bn")


def month_start(month: str) -> int:
    """The unix time at which ``month`` ("YYYY-MM") begins, UTC."""
    year, mon = map(int, month.split("-"))
    return calendar.timegm((year, mon, 1, 0, 0, 0))


def month_end(month: str) -> int:
    year, mon = map(int, month.split("-"))
    return month_start(f"{year + mon // 12}-{mon % 12 + 1:02d}")


def month_weights() -> list[float]:
    """The share of submissions in each of ``MONTHS``: the window's months sum to 1; the month
    after the cut-off weighs as much as 2017-12."""
    raw = [YEAR_VOLUME[int(m[:4])] / (1 if m.startswith("2005") else 12) for m in WINDOW_MONTHS]
    total = sum(raw)
    weights = [w / total for w in raw]
    return [*weights, weights[-1]]


def _below(rng: random.Random, n: int) -> int:
    """A number in [0, n): ``randrange``'s job, at a third of its cost (the bias is of no matter)."""
    return int(rng.random() * n)


def _draw(rng: random.Random, shares: dict[Any, float]) -> Any:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def noise_shares(month: str) -> dict[str, float]:
    """The mix of noise categories in ``month``: what existed then, and self posts growing."""
    year = int(month[:4])
    shares = {"self": 0.0 if year < 2008 else min(0.42, 0.08 + 0.045 * (year - 2008)),
              "nsfw": 0.02, "image_host": 0.06, "image_file": 0.01, "wikipedia": 0.01}
    if month >= "2014-01":
        shares["promoted"] = 0.005
    if month >= "2017-08":
        shares["crosspost"] = 0.03
    if month in ("2017-10", "2017-11"):
        shares["score_null"] = 0.02
    shares["low"] = 1.0 - sum(shares.values())
    return shares


def file_months(index: int) -> list[int]:
    """Indices into ``MONTHS`` of the months ``FILES[index]`` holds."""
    first = MONTHS.index(FILES[index].first)
    last = MONTHS.index(FILES[index + 1].first) if index + 1 < len(FILES) else len(MONTHS)
    return list(range(first, last))


# --- the truth -----------------------------------------------------------------------------------


@dataclass
class DumpTruth:
    """What the links stage must find in the dumps (written beside them as ``truth.json``)."""

    seed: int
    links: int  # the plan's size: the unique URLs the reduce must give
    files: dict[str, int] = field(default_factory=dict)  # lines per dump file (the NUL line included)
    reasons: Counter[str] = field(default_factory=Counter)  # the links map's counts, every line once
    months: Counter[str] = field(default_factory=Counter)  # lines per created month ("YYYY-MM")
    submissions: int = 0  # distinct kept submission ids: the reduce's ``submissions`` metric
    duplicate_submissions: int = 0  # kept lines written twice (same id): the reduce's count
    nul_prefixed: int = 0  # lines that start with NUL bytes (the map's ``repaired_nul_prefix``)
    variants: Counter[str] = field(default_factory=Counter)  # plan submissions per URL variant
    compressed_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return sum(self.files.values())

    def write(self, path: Path) -> None:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> DumpTruth:
        data = json.loads(path.read_text())
        for name in ("reasons", "months", "variants"):
            data[name] = Counter(data[name])
        return cls(**data)


# --- the writer ----------------------------------------------------------------------------------


def write_dumps(plan: Plan, folder: Path) -> DumpTruth:
    """Write ``FILES`` into ``folder`` for ``plan``, then ``truth.json``; return the truth.

    Each file is written under a temporary name and renamed when complete; ``truth.json`` comes
    last, so its presence says the dumps are whole.
    """
    folder.mkdir(parents=True, exist_ok=True)
    writer = _Writer(plan)
    for index, spec in enumerate(FILES):
        path = folder / spec.name
        part = path.with_name(path.name + ".part")
        writer.write_file(index, part)
        os.replace(part, path)
        writer.truth.compressed_bytes[spec.name] = path.stat().st_size
    writer.truth.write(folder / "truth.json")
    return writer.truth


def schedule(plan: Plan) -> tuple[list[array], int]:
    """Which month each plan submission falls in: per month of ``MONTHS``, its entries packed as
    ``link << 6 | k << 2 | fate`` (k: the submission's rank among the link's), and the link whose
    only submission is the NUL-prefixed line in ``NUL_MONTH``."""
    rng = random.Random(f"dump/{plan.seed}/{plan.links}/schedule")
    weights = month_weights()[: len(WINDOW_MONTHS)]
    cumulative = list(_accumulate(weights))
    by_month = [array("q") for _ in MONTHS]
    nul_link = _below(rng, plan.links)
    late = MONTHS.index(AFTER_WINDOW)
    counts, count_weights = list(REPEATS), list(REPEATS.values())
    for link in range(plan.links):
        n = 1 if link == nul_link else rng.choices(counts, count_weights)[0]
        for k in range(n):
            fate = KEPT if k == 0 else _draw(rng, REPEAT_FATES)
            month = min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]),
                        len(WINDOW_MONTHS) - 1)
            if fate == LATE:
                month = late
            elif link == nul_link:
                month = MONTHS.index(NUL_MONTH)
            by_month[month].append(link << 6 | k << 2 | fate)
    return by_month, nul_link


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


@contextmanager
def _compressed(path: Path) -> Iterator[BinaryIO]:
    """A binary stream that compresses into ``path`` by the format of its name (``.part`` aside)."""
    name = path.name.removesuffix(".part")
    if name.endswith(".xz"):
        with lzma.open(path, "wb", preset=0) as out:
            yield out
    elif name.endswith(".bz2"):
        with bz2.open(path, "wb", compresslevel=1) as out:
            yield out
    else:  # .zst: a 2 GiB window with long-distance matching, as ``zstd --long=31`` writes
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True)
        cctx = zstandard.ZstdCompressor(compression_params=params)
        with open(path, "wb") as raw, cctx.stream_writer(raw, closefd=False) as out:
            yield out


class _Writer:
    """Builds and writes the lines, file by file, counting each into the truth as it goes."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.truth = DumpTruth(seed=plan.seed, links=plan.links)
        self.by_month, self.nul_link = schedule(plan)
        weights = month_weights()
        self.noise = [round(NOISE_PER_LINK * plan.links * w) for w in weights]
        self.hosts = [plan.host(rank).name for rank in range(min(200, len(plan.sizes)))]
        self.next_id = 1
        self.carry: tuple[dict[str, Any], str] | None = None  # the last kept line and its month

    def write_file(self, index: int, path: Path) -> None:
        """Write ``FILES[index]`` to ``path``, a megabyte of lines at a time."""
        spec = FILES[index]
        rng = random.Random(f"dump/{self.plan.seed}/{self.plan.links}/{spec.name}")
        v2 = spec.name.startswith("RS_v2_")
        buffer: list[bytes] = []
        size, lines = 0, 0
        with _compressed(path) as out:
            for line in self._file_lines(index, rng):
                buffer.append(b"\n" + line if lines else line)  # newlines between lines
                if v2:
                    buffer[-1] = buffer[-1].replace(b"/", b"\\/")  # only strings hold a "/"
                size, lines = size + len(line), lines + 1
                if size >= 1 << 20:
                    out.write(b"".join(buffer))
                    buffer, size = [], 0
            if lines and spec.newline_at_end:
                buffer.append(b"\n")
            out.write(b"".join(buffer))
        self.truth.files[spec.name] = lines

    def _file_lines(self, index: int, rng: random.Random) -> Iterator[bytes]:
        """The lines of one file, encoded: the carried duplicate first, then month by month."""
        sort_keys = orjson.OPT_SORT_KEYS if FILES[index].name.startswith("RS_v2_") else 0
        if self.carry is not None and FILES[index].first != AFTER_WINDOW:
            carried, month = self.carry  # a later snapshot of the same submission: a higher score
            record = dict(carried, score=carried["score"] + rng.randint(1, 50))
            self._count(month, "kept")
            self.truth.duplicate_submissions += 1
            yield orjson.dumps(record, option=sort_keys)
        self.carry = None
        for month in file_months(index):
            for record, reason, prefix in self._month_records(month, rng):
                self._count(MONTHS[month], reason)
                if reason == "kept":  # ids are unique but for the carried lines
                    self.truth.submissions += 1
                    if not prefix:  # the NUL line's link must be lost if that line is misread
                        self.carry = record, MONTHS[month]
                yield prefix + orjson.dumps(record, option=sort_keys)

    def _count(self, month: str, reason: str) -> None:
        self.truth.reasons[reason] += 1
        self.truth.months[month] += 1

    def _month_records(self, month: int, rng: random.Random
                       ) -> Iterator[tuple[dict[str, Any], str, bytes]]:
        """One month's submissions in time order, ids rising with time: (record, reason, prefix)."""
        name = MONTHS[month]
        start, seconds = month_start(name), month_end(name) - month_start(name)
        shares = noise_shares(name)
        categories, cumulative = list(shares), list(_accumulate(list(shares.values())))
        items = [(start + _below(rng, seconds), 0, packed) for packed in self.by_month[month]]
        items += [(start + _below(rng, seconds), 1, bisect.bisect_right(cumulative, rng.random()))
                  for _ in range(self.noise[month])]
        items.sort()
        for created, is_noise, payload in items:
            sid = _base36(self.next_id)
            self.next_id += 1
            if is_noise:
                category = categories[min(payload, len(categories) - 1)]
                yield *self._noise_record(category, name, created, sid, rng), b""
            else:
                yield self._link_record(payload, name, created, sid, rng)

    def _link_record(self, packed: int, month: str, created: int, sid: str, rng: random.Random
                     ) -> tuple[dict[str, Any], str, bytes]:
        """A plan link's submission: (record, reason, prefix), the URL maybe as a variant."""
        link, k, fate = packed >> 6, packed >> 2 & 15, packed & 3
        url = self.plan.link(link).url
        if rng.random() < VARIANT_SHARE[k > 0]:
            variant = VARIANTS[_below(rng, len(VARIANTS))]
            url = url_variant(url, variant, rng)
        else:
            variant = "plain"
        self.truth.variants[variant] += 1
        score = _low_score(rng) if fate == LOW else _high_score(rng)
        subreddit = self._subreddit(month, rng, self_post=False)
        record = self._record(month, created, sid, url=url, score=score, subreddit=subreddit, rng=rng)
        reason = {KEPT: "kept", LOW: "score_below_min", LATE: "after_window"}[fate]
        prefix = b""
        if link == self.nul_link:
            prefix = NUL_PREFIX
            self.truth.nul_prefixed += 1
        return record, reason, prefix

    def _noise_record(self, category: str, month: str, created: int, sid: str, rng: random.Random
                      ) -> tuple[dict[str, Any], str]:
        """A line the links stage must drop: (record, reason)."""
        subreddit = self._subreddit(month, rng, self_post=category == "self")
        if category in ("image_host", "image_file", "wikipedia"):  # past the score rule: >= 3
            score = _high_score(rng)
        elif category in ("low", "promoted"):
            score = _low_score(rng)
        else:  # self posts, over_18, crossposts: scores as most posts have them
            score = _low_score(rng) if rng.random() < 0.75 else _high_score(rng)
        url = self._noise_url(category, month, subreddit, sid, rng)
        record = self._record(month, created, sid, url=url, score=score, subreddit=subreddit, rng=rng,
                              is_self=category == "self", over_18=category == "nsfw")
        if category == "promoted":
            _make_promoted(record, url)
        elif category == "crosspost":
            record["crosspost_parent"] = "t3_" + url.split("/comments/")[1].split("/")[0]
        elif category == "score_null":
            record["score"] = None
        reason = NOISE_REASON[category]
        if category == "crosspost" and score < 3:
            reason = "score_below_min"
        if month == AFTER_WINDOW and reason not in ("self_post", "over_18"):
            reason = "after_window"
        return record, reason

    def _noise_url(self, category: str, month: str, subreddit: str, sid: str,
                   rng: random.Random) -> str:
        scheme = "https" if month >= "2016-01" else "http"
        host = self.hosts[_below(rng, len(self.hosts))]
        item = rng.getrandbits(40)
        if category == "self" or category == "crosspost":
            target = sid if category == "self" else _base36(1 + _below(rng, self.next_id - 1))
            return f"{scheme}://www.reddit.com/r/{subreddit}/comments/{target}/{_slug(rng)}/"
        if category == "image_host":
            return f"{scheme}://{IMAGE_HOSTS[_below(rng, len(IMAGE_HOSTS))]}/{item:x}.jpg"
        if category == "image_file":
            return f"http://{host}:{self.plan.port}/images/{item:x}.jpg"
        if category == "wikipedia":
            return f"{scheme}://en.wikipedia.org/wiki/{_slug(rng).title()}"
        if category == "promoted":
            return f"https://www.brand{item % 97}.example/offer?utm_source=reddit&amp;utm_medium=ad"
        query = f"?id={item % 10_000}&amp;page={item % 7}" if item % 10 == 0 else ""
        return f"http://{host}:{self.plan.port}/item-{item:x}.html{query}"

    def _subreddit(self, month: str, rng: random.Random, self_post: bool) -> str:
        if self_post and rng.random() < 0.5:
            return "askreddit"
        year = int(month[:4])
        open_now = [name for name, first in SUBREDDITS if first <= year]
        return open_now[_below(rng, len(open_now))]

    def _record(self, month: str, created: int, sid: str, *, url: str, score: int, subreddit: str,
                rng: random.Random, is_self: bool = False, over_18: bool = False) -> dict[str, Any]:
        """A submission with the fields of its month (their types drift over the years)."""
        title = _title(rng)
        permalink = f"/r/{subreddit}/comments/{sid}/{_slug(rng)}/"
        record: dict[str, Any] = {
            "archived": month < "2017-06", "author": f"user{_below(rng, 10**6)}",
            "author_flair_css_class": None, "author_flair_text": None,
            "created_utc": str(created) if "2014-01" <= month <= "2015-11" else created,
            "distinguished": None, "domain": f"self.{subreddit}" if is_self else _domain(url),
            "edited": _edited(month, created, rng), "gilded": 0, "id": sid, "is_self": is_self,
            "link_flair_css_class": None, "link_flair_text": None, "media": None, "media_embed": {},
            "name": f"t3_{sid}", "num_comments": _below(rng, 200), "over_18": over_18,
            "permalink": permalink, "retrieved_on": created + 60 + _below(rng, 40 * 86400),
            "score": score, "secure_media": None, "secure_media_embed": {},
            "selftext": _title(rng) if is_self else "", "stickied": False, "subreddit": subreddit,
            "subreddit_id": SUBREDDIT_IDS[subreddit],
            "thumbnail": "self" if is_self else "default", "title": title, "url": url,
        }
        if "2011-01" <= month <= "2016-12":
            record["ups"], record["downs"] = score, 0
        if month >= "2016-01":
            record.update(locked=False, spoiler=False, post_hint="self" if is_self else "link")
        if month >= "2017-08":
            record.update(is_crosspostable=not over_18, num_crossposts=0)
        return record


def url_variant(url: str, variant: str, rng: random.Random) -> str:
    """``url`` as one of ``VARIANTS``: a form that normalizes to ``url`` (Reddit HTML-escapes ``&``)."""
    joiner = "&amp;" if "?" in url else "?"
    if variant == "upper_host":
        scheme, rest = url.split("://", 1)
        host, sep, path = rest.partition("/")
        return f"{scheme}://{host.upper()}{sep}{path}"
    if variant == "fragment":
        return f"{url}#{rng.choice(['comments', 'top', 'section-2'])}"
    if variant == "utm":
        return f"{url}{joiner}utm_source=reddit&amp;utm_medium=social"
    if variant == "fbclid":
        return f"{url}{joiner}fbclid=IwAR{rng.getrandbits(64):016x}"
    raise ValueError(f"no URL variant {variant!r}")


def _make_promoted(record: dict[str, Any], url: str) -> None:
    """An ad (from 2014): no subreddit, the promotion's own fields, a permalink without /r/."""
    for key in ("subreddit", "subreddit_id"):
        del record[key]
    record["permalink"] = "/" + record["permalink"].split("/", 3)[3]  # /comments/<id>/<slug>/
    record.update(promoted=True, promoted_url=url, href_url=url, third_party_tracking=None,
                  third_party_tracking_2=None, promoted_by=None, adserver_click_url=None)


def _domain(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()


def _low_score(rng: random.Random) -> int:
    """0, 1 or 2: a quarter, a half, a quarter (a new post starts at 1)."""
    u = rng.random()
    return 0 if u < 0.25 else 1 if u < 0.75 else 2


def _high_score(rng: random.Random) -> int:
    """3 or more, heavy-tailed (most kept links have a few points, a few have thousands)."""
    return min(80_000, int(3 * rng.paretovariate(0.8)))


def _edited(month: str, created: int, rng: random.Random) -> bool | int | float:
    """False mostly; True; from 2012 also the edit's time, as an int or a float."""
    u = rng.random()
    if u < 0.9:
        return False
    if month < "2012-01" or u < 0.94:
        return True
    edited = created + 60 + _below(rng, 86400)
    return float(edited) if u < 0.98 else edited


def _title(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(4, 16))
    if rng.random() < 0.3:  # curly quotes, accents, CJK and emoji: multibyte UTF-8
        words.insert(_below(rng, len(words)), MULTIBYTE[_below(rng, len(MULTIBYTE))])
    text = " ".join(words)
    return text[0].upper() + text[1:]


def _slug(rng: random.Random) -> str:
    return "_".join(rng.choices(WORDS, k=rng.randint(2, 6)))
