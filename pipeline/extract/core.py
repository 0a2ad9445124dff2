"""From a page's raw bytes to a document, or the reason there is none. Pure functions.

``decode_html`` turns bytes into text whatever the page claims about its encoding; ``extract_page``
runs trafilatura with bulk-extraction settings; ``document_or_reason`` applies the filters (length,
GPT-2 tokens, language, optional quality rules) and returns the document's fields or a reason.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

import charset_normalizer
import trafilatura
from trafilatura.meta import reset_caches
from trafilatura.settings import use_config

from model.base.tokenizer import gpt2_encoding
from pipeline.config import ExtractConfig

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_WIDE = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le"]
# Encodings web pages declare that are in practice their supersets (WHATWG Encoding Standard).
_WHATWG = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "ascii": "cp1252",
           "us-ascii": "cp1252", "iso-8859-9": "cp1254", "shift_jis": "cp932", "sjis": "cp932",
           "x-sjis": "cp932", "gb2312": "gb18030", "gbk": "gb18030", "euc-kr": "cp949"}


def _codec(label: str | None) -> str | None:
    """A Python codec name for a declared charset label, or None when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _WHATWG.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(body: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """(text, encoding used). A BOM wins; then a declared charset (HTTP, then ``<meta>``) that
    decodes the bytes without error; then detection; UTF-8 with replacement as the last resort.

    A declared charset that does not fit the bytes (a UTF-8 page labelled ISO-8859-1 decodes
    "fine" as cp1252, so UTF-8 is tried first when the bytes are valid UTF-8) is not trusted.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, "replace"), name
    declared = [_codec(http_charset)]
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        declared.append(_codec(meta.group(1).decode("ascii", "ignore")))
    try:
        text = body.decode("utf-8")
        return text, "utf-8"  # valid UTF-8 is almost never anything else
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
    # UTF-8 with a few stray bytes (a cut multibyte character, one cp1252 apostrophe) is still
    # UTF-8; a legacy page mislabelled UTF-8 has almost every non-ASCII byte invalid.
    invalid = text.count("\ufffd")
    valid_multibyte = sum(1 for c in text if ord(c) > 127) - invalid
    if valid_multibyte > 0 and invalid <= max(2, valid_multibyte // 20):
        return text, "utf-8"
    for name in declared:
        if name and name not in ("utf-8",):
            try:
                return body.decode(name), name
            except (UnicodeDecodeError, LookupError):
                continue
    # Without a BOM a web page is not UTF-16/32; excluding them keeps short pages from odd guesses.
    matches = list(charset_normalizer.from_bytes(body[:65536], cp_exclusion=_WIDE))
    if matches:
        # Detectors cannot tell Latin code pages apart on little text; among the equally good
        # guesses, the web's own (cp1252) wins.
        least = min(m.chaos for m in matches)
        tied = [m.encoding for m in matches if m.chaos <= least]
        name = "cp1252" if "cp1252" in tied else (_codec(tied[0]) or "cp1252")
        return body.decode(name, "replace"), name
    return body.decode("cp1252", "replace"), "cp1252"  # WHATWG's default for unlabelled pages


@dataclass
class Extraction:
    """What trafilatura found on a page."""

    text: str
    title: str | None
    date: str | None
    author: str | None
    sitename: str | None


_CONFIG = use_config()
_CONFIG.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # the worker process enforces the deadline


def extract_page(html: str, url: str, cfg: ExtractConfig) -> Extraction | None:
    """The main text and metadata of a page, with bulk-extraction settings; None when nothing."""
    doc = trafilatura.bare_extraction(
        html, url=url, favor_precision=cfg.favor_precision, include_comments=cfg.include_comments,
        include_tables=cfg.include_tables, include_images=False, include_links=False,
        deduplicate=False, with_metadata=True, config=_CONFIG,
        # htmldate's extensive search (every date-like string of the page) costs more than the
        # whole text extraction; the markup-based search finds publication dates where pages mark them.
        date_extraction_params={"extensive_search": False, "original_date": True},
    )
    if doc is None:
        return None
    fields = doc.as_dict() if hasattr(doc, "as_dict") else dict(doc)
    text = (fields.get("text") or "").strip()
    return Extraction(text=text, title=fields.get("title"), date=fields.get("date"),
                      author=fields.get("author"), sitename=fields.get("sitename"))


LANGID_CHARS = 1000  # the start of a text tells its language (~170 words); 0.3 ms per 1,000 chars


class LanguageId:
    """py3langid's offline model (shipped in its package), with normalized probabilities."""

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def __call__(self, text: str) -> tuple[str, float]:
        lang, score = self.model.classify(text[:LANGID_CHARS])
        return str(lang), round(float(score), 4)


_LANGID: LanguageId | None = None


def language(text: str) -> tuple[str, float]:
    global _LANGID
    if _LANGID is None:
        _LANGID = LanguageId()
    return _LANGID(text)


def quality_reason(text: str) -> str | None:
    """Gopher-style rules (Rae et al. 2021, reduced): the first that fails, or None.

    Word count, mean word length, symbol-to-word ratio, lines that are bullets or end with an
    ellipsis, the share of words with a letter, and repetition (duplicate lines, the most frequent
    word 3-gram's share of characters).
    """
    words = text.split()
    if not 50 <= len(words) <= 100_000:
        return "quality_word_count"
    mean = sum(map(len, words)) / len(words)
    if not 3 <= mean <= 10:
        return "quality_word_length"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / len(words) > 0.1:
        return "quality_symbols"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if sum(line.startswith(("•", "-", "*", "·")) for line in lines) > 0.9 * len(lines):
        return "quality_bullets"
    if sum(line.endswith(("...", "…")) for line in lines) > 0.3 * len(lines):
        return "quality_ellipsis"
    if sum(any(c.isalpha() for c in w) for w in words) < 0.8 * len(words):
        return "quality_no_alpha"
    if len(lines) > 1 and len(set(lines)) < 0.7 * len(lines):
        return "quality_repeated_lines"
    grams: dict[tuple[str, str, str], int] = {}
    for gram in zip(words, words[1:], words[2:], strict=False):
        grams[gram] = grams.get(gram, 0) + 1
    if grams:
        top, count = max(grams.items(), key=lambda kv: kv[1])
        if count > 1 and count * sum(map(len, top)) > 0.2 * len(text):
            return "quality_repeated_ngrams"
    return None


_WARM = False


def warm_up() -> None:
    """Load everything a first page would otherwise pay for: the tokenizer, the language model and
    the parts of trafilatura (and its date and URL helpers) imported on first use."""
    global _WARM
    if _WARM:
        return
    gpt2_encoding()
    language("warm up")
    trafilatura.bare_extraction("<html><body><article><p>Warm up.</p></article></body></html>",
                                url="http://warm-up.invalid/", with_metadata=True, config=_CONFIG)
    reset_caches()
    _WARM = True


def document_or_reason(body: bytes, url: str, http_charset: str | None,
                       cfg: ExtractConfig) -> dict[str, Any] | str:
    """The document a page gives (its fields), or the snake_case reason it gives none."""
    html, encoding = decode_html(body, http_charset)
    found = extract_page(html, url, cfg)
    if found is None or not found.text:
        return "extract_empty"
    if len(found.text) < cfg.min_chars:
        return "too_short"
    lang, lang_score = language(found.text)
    if cfg.languages and (lang not in cfg.languages or lang_score < cfg.min_lang_score):
        return "language"
    if cfg.quality == "gopher":
        reason = quality_reason(found.text)
        if reason:
            return reason
    n_tokens = len(gpt2_encoding().encode_ordinary(found.text))
    if n_tokens < cfg.min_tokens:
        return "too_few_tokens"
    return {
        "title": found.title, "date": found.date, "author": found.author,
        "sitename": found.sitename, "text": found.text, "lang": lang, "lang_score": lang_score,
        "n_chars": len(found.text), "n_tokens": n_tokens, "encoding": encoding,
    }
