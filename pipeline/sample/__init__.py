"""The embedded sample: a few articles with their Reddit provenance, for ``make demo``.

The documents were written for this project (no third-party text), in the corpus schema
(id, url, domain, title, text, subreddit, score, created_utc). ``write_dump`` turns their provenance
into a small Pushshift-style submission dump, with the kinds of submissions the links stage drops
(self posts, low scores, image hosts, ...) mixed in, and a few links that reach the demo server but
do not become documents (``DROPS``: a removed page, a tag listing, an article in German), so that
every stage of the demo has something to count. The last document is a syndicated copy of the
first on another site, posted later: the dedup stage removes it as a near duplicate. One more link
(``ARCHIVED``) is dead on the demo server (404) but held by the demo's fake Wayback Machine
(``archive_captures``), captured two days after it was posted: the fetch stage recovers it.
"""

from __future__ import annotations

import html
from pathlib import Path

import orjson
import zstandard

DOCUMENTS = Path(__file__).with_name("documents.jsonl")


# Links the later stages drop, one per reason: (url, title, the page the demo server gives, or None
# for a 404). The German text was written for this project.
GERMAN = (
    "Zum ersten Mal seit vierzig Jahren hat am Dienstagabend wieder eine Fähre den alten Nordpier "
    "verlassen. An Bord waren sechzig Fahrgäste und eine Blaskapelle, die während der ganzen Überfahrt "
    "spielte. Der Betrieb war eingestellt worden, als eine neue Brücke die Strecke zu einer kurzen "
    "Autofahrt machte. Der Stadtrat hat beschlossen, die Abendverbindung bis Oktober zu erproben, weil "
    "die Brücke zu Stoßzeiten überlastet ist und die Bewohner der Inseln sonst vor neun Uhr abends die "
    "Stadt verlassen müssen. Im Herbst soll entschieden werden, ob die Linie bleibt und ob am Wochenende "
    "ein zweites Schiff fahren wird."
)
DROPS = [
    ("https://harbor-gazette.example/2016/05/council-minutes-removed", "Council minutes, May", None),
    ("https://fieldnotes.example/tags/birds", "Posts tagged birds",
     "<h1>Posts tagged: birds</h1><p>Three posts. Newest first.</p>"),
    ("https://coastal-wire.example/de/2017/03/faehre-kehrt-zurueck", "Die Nachtfähre kehrt zurück",
     "<h1>Die Nachtfähre kehrt zurück</h1>" + "".join(f"<p>{p}.</p>" for p in GERMAN.split(". "))),
]


# A page that is gone from its site but was archived: the demo recovers it from a fake Wayback
# Machine. Written for this project.
ARCHIVED = {
    "id": "a001", "url": "https://harbor-gazette.example/2016/11/lighthouse-keepers-log",
    "domain": "harbor-gazette.example", "title": "The lighthouse keeper's log goes on display",
    "subreddit": "history", "score": 57, "created_utc": 1478736000,
    "text": (
        "For sixty-one years, the keepers of the Gull Point light wrote down the weather twice a day. "
        "Their logbooks, twelve volumes bound in green cloth, went on display at the harbor museum on "
        "Saturday, after a winter of careful repair.\n\n"
        "The entries are short and plain. Wind from the north-east, a heavy swell, the lamp lit at "
        "half past four. But read in order they tell the story of the bay: the storm of 1938 that took "
        "the old jetty, the first motor boats, the night in 1952 when the keeper rowed out to a "
        "stranded yacht and brought back three sailors and a very wet dog.\n\n"
        "The museum's archivist spent four months flattening pages that had been folded, damp and "
        "forgotten in a storeroom since the light was automated in 1979. Volunteers are now typing "
        "every entry into a database, so that anyone can search the weather on a given day.\n\n"
        "The granddaughter of the last keeper came to the opening. She said her grandfather never "
        "thought anyone would read what he wrote, and that he would have been embarrassed by his "
        "spelling, which the museum has left exactly as it was."
    ),
}


def archive_captures(port: int | None = None) -> list:
    """What the demo's fake Wayback Machine holds: ``ARCHIVED`` as captured two days after posting."""
    from pipeline.sample.archive import Capture, timestamp_of

    return [Capture(page_url(ARCHIVED, port), timestamp_of(ARCHIVED["created_utc"] + 2 * 86400),
                    body=article_page(ARCHIVED), headers=[("Server", "Apache")])]


def article_page(doc: dict) -> bytes:
    """A document as the demo server serves it: the article amid a cookie banner, navigation, a
    sidebar and a footer, which extraction must leave out."""
    paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in doc["text"].split("\n\n"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(doc['title'])} | {doc['domain']}</title></head>
<body>
<div class="cookie-banner">We use cookies to improve your experience. <a href="/privacy">Learn more</a></div>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/science">Science</a>
<a href="/about">About</a></nav>
<article><h1>{html.escape(doc['title'])}</h1>
{paragraphs}
</article>
<aside><h2>Related</h2><ul><li><a href="/more/1">More stories like this</a></li>
<li><a href="/more/2">Most read this week</a></li></ul></aside>
<footer>© {doc['domain']} · <a href="/contact">Contact</a> · <a href="/terms">Terms</a></footer>
</body></html>""".encode()


def documents() -> list[dict]:
    return [orjson.loads(line) for line in DOCUMENTS.read_bytes().splitlines() if line.strip()]


def page_url(doc: dict, port: int | None = None) -> str:
    """A document's URL, or its address on the demo server at ``port``."""
    if port is None:
        return doc["url"]
    return doc["url"].replace("https://", "http://", 1).replace(doc["domain"], f"{doc['domain']}:{port}", 1)


def domains() -> list[str]:
    return sorted({doc["domain"] for doc in documents()})


def _noise(i: int, created: int) -> dict:
    """Submissions the links stage must drop, one kind per ``i``."""
    kinds = [
        {"is_self": True, "url": f"https://www.reddit.com/r/news/comments/n{i}/", "score": 50},
        {"url": f"https://harbor-gazette.example/low-score/{i}", "score": 1},
        {"url": f"https://i.imgur.com/{i}.jpg", "score": 80},
        {"url": f"https://en.wikipedia.org/wiki/Sample_{i}", "score": 30},
        {"url": f"https://fieldnotes.example/files/{i}.pdf", "score": 12},
        {"url": f"https://adult.example/{i}", "score": 40, "over_18": True},
    ]
    return {"id": f"n{i:03d}", "created_utc": created + 60 * i, "subreddit": "news",
            "over_18": False, "is_self": False, **kinds[i % len(kinds)]}


def write_dump(folder: Path, port: int | None = None) -> Path:
    """A Pushshift-style dump ``RS_sample.zst`` of the sample's submissions.

    With ``port``, the documents' URLs become ``http://<domain>:<port>/<path>``, for the demo's
    loopback server (``pipeline.sample.server``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, doc in enumerate(documents()):
        url = page_url(doc, port)
        rows.append({"id": f"s{n:03d}", "url": url + "?utm_source=reddit", "score": doc["score"],
                     "created_utc": doc["created_utc"], "subreddit": doc["subreddit"],
                     "title": doc["title"], "over_18": False, "is_self": False})
        rows.append(_noise(n, doc["created_utc"]))
    rows.append({"id": ARCHIVED["id"], "url": page_url(ARCHIVED, port), "score": ARCHIVED["score"],
                 "created_utc": ARCHIVED["created_utc"], "subreddit": ARCHIVED["subreddit"],
                 "title": ARCHIVED["title"], "over_18": False, "is_self": False})
    for n, (url, title, _) in enumerate(DROPS):
        domain = url.split("/")[2]
        if port is not None:
            url = url.replace("https://", "http://", 1).replace(domain, f"{domain}:{port}", 1)
        rows.append({"id": f"d{n:03d}", "url": url, "score": 25, "created_utc": 1490000000 + 3600 * n,
                     "subreddit": "news", "title": title, "over_18": False, "is_self": False})
    data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    path = folder / "RS_sample.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=10).compress(data))
    return path
