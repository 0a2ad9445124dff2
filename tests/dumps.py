"""Synthetic Pushshift submission dumps: realistic lines (1-3 KB, the full field set) and writers.

Writers for the formats the current sources ship (docs/links.md, "Where the dumps are now"): zstd
with a long window (Pushshift's monthly ``RS_YYYY-MM.zst`` and the per-subreddit files), and Arctic
Shift's ``.zst_blocks``. Used by the links tests and by bench/links.py.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterable
from pathlib import Path

import orjson
import zstandard

SUBREDDITS = ["news", "science", "worldnews", "technology", "programming", "history", "books",
              "askscience", "space", "economics", "europe", "politics", "gaming", "movies"]
HOSTS = [f"www.site{i}.example" for i in range(40)] + [f"news{i}.example.org" for i in range(40)]


def submission(rng: random.Random, i: int, **fields) -> dict:
    """One submission with Pushshift's full 2017-era field set; ``fields`` override any of them."""
    sid = f"{i:x}".rjust(6, "a")
    host = rng.choice(HOSTS)
    created = 1483228800 + rng.randrange(365 * 86400)
    sub = rng.choice(SUBREDDITS)
    title = " ".join(rng.choice(["the", "new", "study", "shows", "city", "plans", "why", "report",
                                 "market", "after", "years", "first", "world"])
                     for _ in range(rng.randint(5, 25)))
    image = f"https://i.redditmedia.com/{rng.getrandbits(128):032x}.jpg?s={rng.getrandbits(64):016x}"
    base = {
        "archived": False, "author": f"user{rng.randrange(10**6)}", "author_flair_css_class": None,
        "author_flair_text": None, "brand_safe": True, "contest_mode": False,
        "created_utc": created, "distinguished": None, "domain": host, "edited": False,
        "gilded": 0, "hidden": False, "hide_score": False, "id": sid, "is_crosspostable": True,
        "is_reddit_media_domain": False, "is_self": False, "is_video": False,
        "link_flair_css_class": None, "link_flair_text": rng.choice([None, "News", "Analysis"]),
        "locked": False, "media": None, "media_embed": {}, "name": f"t3_{sid}",
        "num_comments": rng.randrange(500), "num_crossposts": 0, "over_18": False,
        "parent_whitelist_status": "all_ads", "permalink": f"/r/{sub}/comments/{sid}/x/",
        "pinned": False, "post_hint": "link",
        "preview": {"images": [{"id": f"{rng.getrandbits(96):024x}",
                                "source": {"height": 630, "url": image, "width": 1200},
                                "resolutions": [{"height": 56 * k, "url": image, "width": 108 * k}
                                                for k in range(1, rng.randint(2, 7))],
                                "variants": {}}], "enabled": False},
        "retrieved_on": created + rng.randrange(60, 86400), "score": rng.choice([0, 1, 1, 2, 3, 5, 40]),
        "secure_media": None, "secure_media_embed": {}, "selftext": "", "send_replies": True,
        "spoiler": False, "stickied": False, "subreddit": sub, "subreddit_id": "t5_2qh3l",
        "subreddit_name_prefixed": f"r/{sub}", "subreddit_type": "public",
        "suggested_sort": None, "thumbnail": image, "thumbnail_height": 78, "thumbnail_width": 140,
        "title": title, "url": f"https://{host}/{created}/{sid}/{title.replace(' ', '-')[:60]}",
        "whitelist_status": "all_ads",
    }
    base.update(fields)
    return base


def lines(items: Iterable[dict | bytes]) -> bytes:
    """Dump text: one JSON object (or raw bytes, for broken lines) per line."""
    out = io.BytesIO()
    for item in items:
        out.write(item if isinstance(item, bytes) else orjson.dumps(item))
        out.write(b"\n")
    return out.getvalue()


def write_zst(path: Path, data: bytes | Iterable[bytes], window_log: int = 31, level: int = 3) -> Path:
    """A zstd dump like Pushshift's: long-distance matching and a 2**window_log window, size unknown
    to the frame (streamed), so a decoder with the default window limit refuses it."""
    params = zstandard.ZstdCompressionParameters.from_level(level, window_log=window_log,
                                                           enable_ldm=True)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    with open(path, "wb") as f, cctx.stream_writer(f, closefd=False) as writer:
        for chunk in [data] if isinstance(data, bytes) else data:
            writer.write(chunk)
    return path


def arctic_shift(item: dict, retrieved_2nd: int = 36 * 3600) -> dict:
    """A submission as Arctic Shift's dumps hold it from 2023-04 (its file_content_explanations.md):
    keys sorted, ``retrieved_on``, and a ``_meta`` object from the second retrieval 36 hours later."""
    item = {**item, "retrieved_on": item.get("created_utc", 0) + 60,
            "_meta": {"retrieved_2nd_on": item.get("created_utc", 0) + retrieved_2nd,
                      "was_deleted_later": False}}
    return dict(sorted(item.items()))


def write_zst_blocks(path: Path, rows: Iterable[bytes], rows_per_block: int = 256, level: int = 3) -> Path:
    """Arctic Shift's ``.zst_blocks`` layout (github.com/ArthurHeitmann/zst_blocks_format), little
    endian: per block a uint32 compressed size, then a zstd frame holding a uint32 row count, one
    (offset, size) uint32 pair per row, and the rows."""
    cctx = zstandard.ZstdCompressor(level=level)
    rows = list(rows)
    with open(path, "wb") as f:
        for first in range(0, len(rows), rows_per_block):
            block = rows[first:first + rows_per_block]
            offsets = [sum(len(r) for r in block[:i]) for i in range(len(block))]
            table = b"".join(struct.pack("<II", o, len(r)) for o, r in zip(offsets, block, strict=True))
            frame = cctx.compress(struct.pack("<I", len(block)) + table + b"".join(block))
            f.write(struct.pack("<I", len(frame)) + frame)
    return path
