"""The text of the synthetic web: distinct documents of English prose (and some German and French), each
a pure function of ``(seed, index)``.

English comes from an order-2 word Markov chain trained, at first use, on English prose that every
Python install carries: the docstrings of the standard library (its source files read with a regular
expression, never imported), pydoc's topics (the language reference), and the news stories of the
extraction test corpus (``tests/pages.py``). Only whole sentences of plain words pass into training
(no code, no markup, no parentheses), so what the chain writes reads as English to trafilatura and to
the extract stage's language ID. The chain writes a pool of ``POOL_SENTENCES`` sentences once per seed
(about two seconds, corpus reading included); a document is a title and sentences drawn from the pool
into paragraphs, its size log-normal (median ``MEDIAN_CHARS``, clipped to ``MIN_CHARS``-``MAX_CHARS``),
which costs about 0.1 ms. Two documents share a sentence rarely (about 30 x 30 draws from 65,536), so
their 5-gram shingle Jaccard stays near 0.01: the dedup stage sees them as distinct.

The same ``(seed, index)`` gives the same text in every process that runs the same Python (the standard
library is the training text: another Python version gives other, equally good, text).

``non_english`` pages take a German or French document (``foreign_document``), drawn from the small
sets of sentences below; ``wall`` gives a host's cookie wall or login page, whose text is nearly the same
on every such page of the host (near-duplicates for the dedup stage).
"""

from __future__ import annotations

import functools
import math
import random
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.synth.plan import _u64

POOL_SENTENCES = 2**16
MEDIAN_CHARS, SIGMA, MIN_CHARS, MAX_CHARS = 4500, 0.6, 1000, 10_000  # WebText: ~5 KB per document
MIN_WORDS, MAX_WORDS = 6, 40  # a training sentence's length; the chain's are cut at MAX_WORDS + 5
SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip",
                "pydoc_data", "encodings"}
WORD = re.compile(r"[A-Za-z0-9£$%]+(?:['’-][A-Za-z0-9]+)*[,;:]?")  # a plain word, maybe with a comma
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
DOCSTRING = re.compile(r'"""(.*?)"""', re.S)
PARENTHESES = re.compile(r"\s*\([^()]*\)")

GERMAN = (
    "Die Stadtverwaltung hat am Dienstag neue Pläne für den Ausbau des Radwegenetzes vorgestellt.",
    "Nach Angaben der Behörden sollen die Arbeiten im kommenden Frühjahr beginnen.",
    "Viele Anwohner begrüßen das Vorhaben, andere fürchten den Verlust von Parkplätzen.",
    "Der Bürgermeister sprach von einem wichtigen Schritt für die Lebensqualität in der Innenstadt.",
    "Im vergangenen Jahr waren deutlich mehr Menschen mit dem Fahrrad unterwegs als je zuvor.",
    "Die Kosten des Projekts werden auf rund zwölf Millionen Euro geschätzt.",
    "Ein Teil des Geldes soll aus einem Förderprogramm des Landes kommen.",
    "Kritiker bemängeln, dass die Planung ohne ausreichende Beteiligung der Bürger erfolgt sei.",
    "Auf einer Versammlung im Rathaus wurde bis spät in den Abend diskutiert.",
    "Die Händler in der Fußgängerzone hoffen auf mehr Kundschaft durch die neuen Wege.",
    "Nach dem langen Winter freuen sich die Bauern auf die ersten warmen Tage.",
    "Der Wetterdienst erwartet für das Wochenende Sonnenschein und milde Temperaturen.",
    "In den Bergen liegt dagegen noch immer viel Schnee, und die Lawinengefahr bleibt hoch.",
    "Die Bergwacht rät Wanderern, sich vor jeder Tour über die Lage zu informieren.",
    "Das Museum zeigt ab Freitag eine Ausstellung über die Geschichte der Schifffahrt auf dem Rhein.",
    "Zu sehen sind alte Karten, Modelle von Lastkähnen und Fotografien aus drei Jahrhunderten.",
    "Die Kuratorin hat mehr als zwei Jahre an der Vorbereitung gearbeitet.",
    "Schulklassen erhalten an den Vormittagen freien Eintritt.",
    "Die Gewerkschaft fordert für die Beschäftigten im Nahverkehr höhere Löhne.",
    "Sollte es bis zum Monatsende keine Einigung geben, drohen Warnstreiks.",
    "Die Arbeitgeber verweisen auf die angespannte Lage der kommunalen Haushalte.",
    "Pendler müssen sich in den nächsten Wochen womöglich auf Ausfälle einstellen.",
    "Der Verein feierte am Samstag sein hundertjähriges Bestehen mit einem großen Fest.",
    "Hunderte Gäste kamen auf den Sportplatz am Rande des Dorfes.",
    "Die älteste Spielerin der Damenmannschaft ist inzwischen dreiundsiebzig Jahre alt.",
    "Zum Abschluss gab es ein Feuerwerk über dem See.",
    "Forscher der Universität haben eine neue Methode zur Reinigung von Abwasser entwickelt.",
    "Das Verfahren kommt ohne Chemikalien aus und verbraucht wenig Energie.",
    "Bis zur Anwendung in großen Kläranlagen dürften allerdings noch einige Jahre vergehen.",
    "Die Ergebnisse wurden in einer Fachzeitschrift veröffentlicht.",
    "Die Bibliothek verlängert ihre Öffnungszeiten während der Prüfungswochen.",
    "Studierende hatten sich seit langem mehr Lernplätze am Abend gewünscht.",
    "Der Stadtrat will im Herbst über die Zukunft des alten Schwimmbads entscheiden.",
    "Eine Sanierung wäre teuer, ein Neubau würde noch mehr kosten.",
    "Die Bäckerei an der Ecke schließt nach vierzig Jahren zum Ende des Monats.",
    "Die Inhaberin findet keinen Nachfolger und möchte sich nun um ihre Enkel kümmern.",
    "Stammkunden haben ihr zum Abschied Blumen und Briefe gebracht.",
    "Der Fährbetrieb über den Fluss wird wegen Niedrigwassers vorübergehend eingestellt.",
    "Die Polizei sucht Zeugen eines Unfalls, der sich am Montagmorgen an der Kreuzung ereignete.",
    "Verletzt wurde nach ersten Erkenntnissen niemand.",
)
FRENCH = (
    "La mairie a présenté mardi un nouveau projet de rénovation du marché couvert.",
    "Les travaux devraient commencer au printemps et durer environ dix-huit mois.",
    "Pendant ce temps, les commerçants s'installeront sur la place de l'église.",
    "Plusieurs habitants craignent que le chantier fasse fuir la clientèle.",
    "Le maire assure que tout sera fait pour limiter la gêne pour les riverains.",
    "Le coût total de l'opération est estimé à près de six millions d'euros.",
    "La région et l'État participeront au financement.",
    "Une réunion publique aura lieu jeudi soir à la salle des fêtes.",
    "Les agriculteurs de la vallée attendent la pluie depuis plusieurs semaines.",
    "Dans certains villages, l'arrosage des jardins est désormais interdit.",
    "La préfecture a réuni les élus pour faire le point sur la sécheresse.",
    "Les prévisions ne laissent guère espérer d'amélioration avant la fin du mois.",
    "Le musée des beaux-arts accueille une exposition consacrée aux peintres de la côte.",
    "On y découvre une centaine de tableaux prêtés par des collections privées.",
    "La commissaire de l'exposition a mis trois ans à rassembler les œuvres.",
    "L'entrée sera gratuite le premier dimanche de chaque mois.",
    "Les syndicats appellent à une journée de grève dans les transports publics.",
    "Ils réclament des hausses de salaire et de meilleures conditions de travail.",
    "La direction affirme que les négociations restent ouvertes.",
    "Les usagers sont invités à consulter les horaires avant de se déplacer.",
    "Le club de football local a fêté samedi son centième anniversaire.",
    "Anciens joueurs, supporters et familles se sont retrouvés au stade municipal.",
    "La doyenne du club, âgée de quatre-vingt-dix ans, a donné le coup d'envoi.",
    "La soirée s'est terminée par un bal sur la place du village.",
    "Des chercheurs de l'université ont mis au point un nouveau capteur de pollution.",
    "L'appareil, peu coûteux, mesure la qualité de l'air en temps réel.",
    "Il pourrait être installé dans les écoles dès la rentrée prochaine.",
    "Les résultats de l'étude ont été publiés dans une revue scientifique.",
    "La bibliothèque municipale prolonge ses horaires pendant la période des examens.",
    "Les étudiants réclamaient depuis longtemps davantage de places le soir.",
    "Le conseil municipal doit se prononcer à l'automne sur l'avenir de la piscine.",
    "Une rénovation coûterait cher, une construction neuve plus encore.",
    "La boulangerie du coin fermera ses portes à la fin du mois après quarante ans.",
    "La propriétaire n'a pas trouvé de repreneur et souhaite profiter de sa retraite.",
    "Des clients fidèles lui ont apporté des fleurs et des lettres de remerciement.",
    "Le bac qui traverse le fleuve est suspendu en raison des basses eaux.",
    "La gendarmerie recherche des témoins d'un accident survenu lundi matin au carrefour.",
    "Selon les premières informations, personne n'a été blessé.",
    "La fête de la musique réunira cette année une trentaine de groupes dans le centre-ville.",
    "Les organisateurs espèrent accueillir plusieurs milliers de visiteurs.",
)
FOREIGN = {"de": GERMAN, "fr": FRENCH}

WALL_LINES = (  # a cookie wall and login page's own words; each host takes a few, and pool sentences
    "Before you continue, we need your consent to use cookies and similar technologies.",
    "We and our partners store and access information on your device to personalise content and ads.",
    "You can change your choices at any time by visiting the privacy settings at the bottom of the page.",
    "Sign in or create a free account to keep reading and to manage your newsletters.",
    "Subscribers get unlimited access to every story, the daily edition and the full archive.",
    "Already a member? Enter your email address and password to log in.",
    "Forgot your password? We will send you a link to choose a new one.",
    "By continuing you agree to our terms of service and acknowledge our privacy policy.",
)


@dataclass(frozen=True)
class Document:
    """A page's main text: a title and paragraphs (``text`` joins them with newlines, as trafilatura
    writes the paragraphs it extracts)."""

    title: str
    paragraphs: tuple[str, ...]
    lang: str = "en"

    @property
    def text(self) -> str:
        return "\n".join(self.paragraphs)


# --- training ---------------------------------------------------------------------------------------


def prose_sentences(text: str) -> Iterator[str]:
    """The sentences of ``text`` that are plain prose: 6-40 plain words from a capital letter to a full
    stop. Indented blocks (code, grammar), doctest lines and parenthesized asides are left out."""
    for block in re.split(r"\n\s*\n", text):
        if block.startswith((" ", "\t")) or ">>>" in block:
            continue
        flat = PARENTHESES.sub("", " ".join(block.split()))
        for quote in '"“”':
            flat = flat.replace(quote, "")
        for sentence in SENTENCE_END.split(flat):
            words = sentence[:-1].split()
            if (sentence.endswith((".", "?", "!")) and MIN_WORDS <= len(words) <= MAX_WORDS
                    and words[0][0].isupper() and words[-1][-1] not in ",;:"
                    and all(WORD.fullmatch(w) for w in words)):
                yield sentence


@functools.lru_cache(maxsize=1)
def training_sentences() -> tuple[str, ...]:
    """The English prose the chain learns from, in a fixed order: the standard library's docstrings
    (files sorted by path), pydoc's topics (sorted by name), the test corpus's English stories."""
    from pydoc_data.topics import topics

    from tests import pages

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if SKIPPED_DIRS.isdisjoint(p.relative_to(stdlib).parts))
    found: list[str] = []
    for path in files:
        for docstring in DOCSTRING.finditer(path.read_text(encoding="utf-8", errors="replace")):
            found.extend(prose_sentences(docstring.group(1)))
    for name in sorted(topics):
        found.extend(prose_sentences(topics[name]))
    for story, _, _ in pages.ARTICLES:
        if story.lang == "en":
            for block in story.body:
                found.extend(prose_sentences(block))
    return tuple(found)


Chain = dict[tuple[str | None, str | None], list[str | None]]


@functools.lru_cache(maxsize=1)
def markov_chain() -> Chain:
    """Order-2 word transitions: (two words) -> every word seen next (repeated as often as seen;
    None ends a sentence). Sentences start from (None, None)."""
    chain: Chain = {}
    for sentence in training_sentences():
        words: list[str | None] = [None, None, *sentence.split(), None]
        for a, b, c in zip(words, words[1:], words[2:], strict=False):
            chain.setdefault((a, b), []).append(c)
    return chain


def _sentence(chain: Chain, rnd: random.Random) -> str | None:
    """One walk of the chain, or None when it is too short or runs past the longest sentence."""
    draw = rnd.random
    a = b = None
    words: list[str] = []
    while True:
        followers = chain[(a, b)]
        c = followers[int(draw() * len(followers))]
        if c is None:
            return " ".join(words) if len(words) >= MIN_WORDS else None
        if len(words) > MAX_WORDS + 5:
            return None
        words.append(c)
        a, b = b, c


@functools.lru_cache(maxsize=4)
def sentence_pool(seed: int, size: int = POOL_SENTENCES) -> tuple[str, ...]:
    """``size`` sentences the chain writes, seeded by ``seed``: what every English document is made of."""
    chain, rnd = markov_chain(), random.Random(_u64(seed, "pool"))
    pool: list[str] = []
    while len(pool) < size:
        sentence = _sentence(chain, rnd)
        if sentence is not None:
            pool.append(sentence)
    return tuple(pool)


# --- documents --------------------------------------------------------------------------------------


def text_chars(rnd: random.Random) -> int:
    """A document's target size: log-normal around ``MEDIAN_CHARS``, clipped to the allowed range."""
    return int(min(MAX_CHARS, max(MIN_CHARS, rnd.lognormvariate(math.log(MEDIAN_CHARS), SIGMA))))


def headline(sentence: str, words: int) -> str:
    """A title from a sentence's first ``words`` words, in headline capitals."""
    picked = sentence.rstrip(".!?").split()[:words]
    while len(picked) > 2 and picked[-1].lower() in ("the", "a", "an", "of", "to", "and", "or", "is"):
        picked.pop()
    titled = [w if len(w) <= 3 and i else w[0].upper() + w[1:] for i, w in enumerate(picked)]
    return " ".join(titled).rstrip(",;:")


def _paragraphs(sentences: list[str], rnd: random.Random, low: int, high: int) -> tuple[str, ...]:
    """``sentences`` grouped in order into paragraphs of ``low``-``high`` sentences."""
    out, i = [], 0
    while i < len(sentences):
        n = rnd.randint(low, high)
        out.append(" ".join(sentences[i:i + n]))
        i += n
    return tuple(out)


def document(seed: int, index: int) -> Document:
    """English document ``index``: a title and 1-10 KB of paragraphs of 2-6 pool sentences."""
    pool = sentence_pool(seed)
    rnd = random.Random(_u64(seed, "doc", index))
    draw, n = rnd.random, len(pool)
    target, total, sentences = text_chars(rnd), 0, []
    while total < target:
        sentence = pool[int(draw() * n)]
        if total + len(sentence) + 1 > MAX_CHARS:
            break
        sentences.append(sentence)
        total += len(sentence) + 1
    title = headline(pool[int(draw() * n)], rnd.randint(4, 9))
    return Document(title, _paragraphs(sentences, rnd, 2, 6))


def foreign_document(seed: int, index: int, lang: str) -> Document:
    """A German (``de``) or French (``fr``) document: 8-24 distinct sentences of that language."""
    sentences = FOREIGN[lang]
    rnd = random.Random(_u64(seed, "foreign", lang, index))
    picked = rnd.sample(sentences, rnd.randint(8, min(24, len(sentences))))
    title = picked[0].rstrip(".")  # a whole sentence: a cut one would end on an article
    return Document(title, _paragraphs(picked[1:], rnd, 2, 4), lang)


def wall(seed: int, host_key: object, site: str, index: int) -> Document:
    """A host's cookie wall and login page as link ``index`` meets it: the host's own wording (a few of
    ``WALL_LINES`` and six pool sentences, fixed per host), one line naming the story asked for."""
    pool = sentence_pool(seed)
    rnd = random.Random(_u64(seed, "wall", host_key))
    lines = rnd.sample(WALL_LINES, 4)
    own = [pool[int(rnd.random() * len(pool))] for _ in range(6)]
    asked = f"You asked for story {index} on {site}; it will open once you have signed in."
    paragraphs = (" ".join(lines[:2]), " ".join(own[:3]), asked, " ".join(own[3:]), " ".join(lines[2:]))
    return Document(f"Sign in to {site}", paragraphs)
