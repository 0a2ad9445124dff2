"""The embedded sample: a few articles with their Reddit provenance, for ``make demo``.

The documents were written for this project (no third-party text), in the corpus schema
(id, url, domain, title, text, subreddit, score, created_utc). ``write_dump`` turns their provenance
into a small Pushshift-style submission dump, with the kinds of submissions the links stage drops
(self posts, low scores, image hosts, ...) mixed in, and a few links that reach the demo server but
do not become documents (``DROPS``: a removed page, a tag listing, an article in German), so that
every stage of the demo has something to count. The last document is a syndicated copy of the
first on another site, posted later: the dedup stage removes it as a near duplicate.
"""

from __future__ import annotations

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
