"""A test corpus of article pages whose main text and boilerplate are known in advance.

Every page is a complete, modern-looking article page rendered from two parts: a ``Story`` (title,
byline, body blocks, reader comments, the sentences that are main text) and a ``Site`` (navigation,
cookie banner, newsletter box, footer). Seven layouts render them with different markup, from semantic
``<article>``/``<main>`` pages to class-named ``<div>`` soup, a WordPress-like blog, a forum thread and
a client-rendered app with generated class names, so an extractor is judged on more than one page
shape. The prose is written for this corpus.

``article_pages()`` gives the pages with the sentences an extractor must keep (``main_snippets``) and
must drop (``boilerplate_snippets``); ``encoding_pages()`` gives pages whose bytes and declared charset
disagree in the ways the web gets wrong, and ``damaged_utf8_pages()`` UTF-8 pages with one stray
byte; ``short_article_page()``, ``repetitive_page()`` and
``spinning_page()`` exist to trip the length filter, the quality rules and the extractor itself.
Everything is deterministic: the same bytes on every call.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, field
from datetime import date

# --- data types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One fetched page: its bytes, what its HTTP header said, and the sentences to look for.

    ``main_snippets`` are sentences of the article body an extraction must contain;
    ``boilerplate_snippets`` are sentences from navigation, banners, related links, comments or the
    footer that it must not contain. Both are compared after whitespace normalization.
    """

    url: str
    html: bytes
    charset_header: str | None
    main_snippets: list[str]
    boilerplate_snippets: list[str]
    name: str = ""
    lang: str = "en"


@dataclass(frozen=True)
class Site:
    """The parts of a page that belong to the website rather than to the article."""

    name: str
    domain: str
    nav: tuple[str, ...]
    cookie: str
    newsletter: str
    footer: str
    extra: str  # a site-wide line: promo strip, about-me widget, forum signature, support box


@dataclass(frozen=True)
class Story:
    """An article and its reader comments.

    ``body`` holds blocks: a plain string is a paragraph, ``"## ..."`` a subheading, ``"> ..."`` a
    blockquote, ``"@promo ..."`` an inline link to another article, ``"@code ..."`` a code block and
    ``"@table"`` the story's ``table`` (header row first). ``main`` are sentences from the paragraphs.
    """

    slug: str
    section: str
    title: str
    author: str
    day: str  # ISO date
    body: tuple[str, ...]
    main: tuple[str, ...]
    comments: tuple[tuple[str, str], ...]
    lang: str = "en"
    table: tuple[tuple[str, ...], ...] = field(default_factory=tuple)


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


def _esc(text: str) -> str:
    """Text made safe for an HTML text node (quotes are left alone: they are prose)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _human_date(day: str) -> str:
    """``2024-03-14`` as ``14 March 2024``, independent of the process locale."""
    d = date.fromisoformat(day)
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def _first_sentence(text: str) -> str:
    """The text up to and including its first full stop, question or exclamation mark."""
    ends = [i for i in (text.find(". "), text.find("? "), text.find("! ")) if i >= 0]
    return text[: min(ends) + 1] if ends else text


def _slugify(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


# --- sites ---------------------------------------------------------------------------------------

NEWS_NAV = ("News", "Politics", "Business", "Environment", "Culture", "Sport", "Opinion", "Weather")

SITES: dict[str, Site] = {
    "ledger": Site(
        "The Harbour Ledger", "harbourledger.example",
        ("News", "Islands", "Transport", "Business", "Sport", "Opinion", "Weather", "Tide tables"),
        "We and our partners use cookies to remember your settings, measure how the site is used and "
        "show you relevant offers.",
        "Get the morning tide of island news delivered to your inbox before the first ferry leaves.",
        "The Harbour Ledger is published by Skerry Press Ltd, registered in Kirkwall, company number "
        "04418827.",
        "Weather warning: gales expected across the outer isles from Thursday evening.",
    ),
    "record": Site(
        "Millbrook Daily Record", "millbrookrecord.example", NEWS_NAV,
        "This website stores small files on your device so that it works properly and so we can "
        "understand which stories you read.",
        "Sign up for the Record's evening briefing and never miss a council decision again.",
        "Copyright Millbrook Record Group. Reproduction of any part of this site without written "
        "permission is prohibited.",
        "Subscribe from £1 a week and read every story without limits.",
    ),
    "crumb": Site(
        "Crumb & Crust", "crumbandcrust.example",
        ("Home", "Recipes", "Starter care", "High altitude", "About", "Contact"),
        "This blog uses cookies from the hosting provider to count visits, and by continuing to read "
        "you agree to that.",
        "Enter your email address to follow Crumb & Crust and receive notifications of new bakes by "
        "email.",
        "Proudly baked with too much flour and a very old laptop.",
        "I bake, I write, and I occasionally grow tomatoes that the marmots eat.",
    ),
    "platen": Site(
        "Platen & Ribbon Forums", "platenandribbon.example",
        ("Forums", "What's new", "Members", "Gallery", "Search", "Log in", "Register"),
        "Platen & Ribbon uses essential cookies to keep you logged in and one analytics cookie that you "
        "may refuse.",
        "Register for a free account to post replies, upload photos of your machines and join the "
        "monthly type-in.",
        "Platen & Ribbon is a hobby forum run by volunteers and is not affiliated with any manufacturer.",
        "Currently typing on an Olympia SM3, a Hermes 3000 and far too many others.",
    ),
    "circuit": Site(
        "Circuit Weekly", "circuitweekly.example",
        ("Latest", "Cloud", "Energy", "Hardware", "Policy", "Data desk", "Events", "Podcast"),
        "Circuit Weekly and selected vendors process personal data such as your IP address to deliver "
        "ads and measure their performance.",
        "Our Thursday newsletter explains one piece of infrastructure in plain language, every week.",
        "All figures published by Circuit Weekly are checked by our data desk before publication.",
        "Advertisement: cut your cloud bill in half with our managed hosting plans.",
    ),
    "longhand": Site(
        "The Longhand Review", "longhandreview.example",
        ("Essays", "Fiction", "Letters", "Archive", "Members", "About"),
        "We only use cookies that are strictly necessary, plus one that remembers whether you have "
        "already seen this message.",
        "Essays like this one arrive in your inbox every other Sunday, free of charge and free of "
        "tracking pixels.",
        "The Longhand Review is a reader-funded magazine of essays, published since 2011.",
        "Support independent writing: become a member for less than the price of a notebook a month.",
    ),
    "skyward": Site(
        "Skyward Notes", "skywardnotes.example",
        ("Blog", "Observing guides", "Equipment", "Astrophotography", "About"),
        "Skyward Notes uses cookies to remember your dark mode preference and to count anonymous "
        "visits.",
        "Join the mailing list for a short monthly guide to what is visible in the night sky.",
        "Text and photographs on Skyward Notes are shared under a Creative Commons licence unless "
        "stated otherwise.",
        "Next month's observing guide is now available for members.",
    ),
    "sports": Site(
        "Valley Sports Desk", "valleysportsdesk.example",
        ("Football", "Rugby", "Cricket", "Athletics", "Chess", "Results", "Fixtures"),
        "By clicking accept, you agree to the storing of cookies on your device to enhance site "
        "navigation and assist in our marketing efforts.",
        "Get weekend results from every local league straight to your phone with our free sports "
        "alerts.",
        "Valley Sports Desk covers grassroots sport across the three valleys and welcomes reports from "
        "clubs.",
        "Live: Saturday's county cricket scores updated every over.",
    ),
    "ops": Site(
        "ops.diary", "opsdiary.example",
        ("Posts", "Talks", "Now", "About", "RSS"),
        "No tracking here, just a single cookie to remember that you closed this banner.",
        "Subscribe via RSS or get new posts by email, roughly once a month and never more.",
        "Opinions are my own and not those of my employer, past, present or future.",
        "I run infrastructure for a mid-sized company and write about the things that break.",
    ),
    "greenline": Site(
        "Greenline News", "greenlinenews.example",
        ("Climate", "Cities", "Nature", "Energy", "Food", "Investigations", "Donate"),
        "Greenline News uses cookies and similar technologies to improve your experience and to "
        "personalise sponsored content.",
        "The Greenline digest brings you the week's environment stories every Friday morning.",
        "Greenline News is an independent, non-profit newsroom covering the environment in cities.",
        "Breaking: flood warnings issued for low-lying districts along the river.",
    ),
    "northgate": Site(
        "Northgate Business Review", "northgatereview.example",
        ("Markets", "Companies", "Economy", "Property", "Personal finance", "Careers"),
        "To continue, please accept our use of cookies for analytics, advertising and social media "
        "features.",
        "Markets, money and the local economy, explained in five minutes every weekday morning.",
        "Northgate Business Review does not provide investment advice; always consult a qualified "
        "adviser.",
        "Markets open: the index is up 0.4 percent in early trading.",
    ),
    "margins": Site(
        "Margins", "margins-reviews.example",
        ("Fiction", "Non-fiction", "Poetry", "Interviews", "Reading lists", "About"),
        "Margins uses a small number of cookies to keep the site running and to understand which "
        "reviews readers find useful.",
        "Sign up to receive our reviews of new fiction every fortnight, along with an occasional "
        "reading list.",
        "Margins receives review copies from publishers but never payment for coverage.",
        "Our autumn reading list: twenty books to take to the fireside.",
    ),
    "kreisbote": Site(
        "Kreisbote Talheim", "kreisbote-talheim.example",
        ("Lokales", "Politik", "Wirtschaft", "Sport", "Kultur", "Service", "E-Paper"),
        "Wir verwenden Cookies, um Inhalte zu personalisieren und die Zugriffe auf unsere Website zu "
        "analysieren.",
        "Die wichtigsten Nachrichten aus dem Landkreis jeden Morgen kostenlos in Ihr Postfach.",
        "Alle Rechte vorbehalten. Nachdruck nur mit schriftlicher Genehmigung der Redaktion.",
        "Jetzt testen: vier Wochen Kreisbote digital für nur einen Euro.",
    ),
    "carnets": Site(
        "Carnets de quartier", "carnets-quartier.example",
        ("Accueil", "Vie locale", "Commerces", "Agenda", "Association", "Contact"),
        "Ce site utilise des cookies pour mesurer l’audience et améliorer votre expérience de lecture.",
        "Recevez chaque semaine les nouvelles du quartier directement dans votre boîte mail.",
        "Carnets de quartier est un blog associatif animé par des bénévoles du onzième arrondissement.",
        "Prochaine réunion publique de l’association : jeudi à dix-neuf heures, salle des fêtes.",
    ),
}

RELATED = {
    "en": (
        "Why the night bus became the city's most political route",
        "Ten small museums worth a detour this winter",
        "The hidden cost of free parking",
        "Inside the workshop that still repairs cathedral clocks",
        "How a village saved its last pub",
        "What happens to your old phone after you recycle it",
        "The quiet boom in community orchards",
        "A beginner's guide to reading a weather map",
        "Why your electricity bill has three different prices on it",
        "Meet the volunteers who count the city's hedgehogs",
        "The surprising economics of a corner shop",
        "Five walks that end at a decent café",
        "Can a four-day week work in a hospital?",
        "The long decline of the local cinema, and its unlikely revival",
        "How tide tables are made",
        "Our readers' favourite secondhand bookshops",
        "What a heat pump installer wishes you knew",
        "The mystery of the disappearing allotment waiting lists",
        "Why every town seems to be arguing about cycle lanes",
        "A year of eating only what grows within fifty miles",
        "The engineers keeping the old swing bridge turning",
        "How to choose a first telescope without wasting money",
        "What the census says about who lives alone",
        "The unpaid internship is finally dying, slowly",
    ),
    "de": (
        "Neues Hallenbad: Eröffnung verschiebt sich erneut",
        "Kreistag beschließt Haushalt mit knapper Mehrheit",
        "Wochenmarkt zieht auf den Rathausplatz um",
        "Zehn Ausflugsziele für die Osterferien",
    ),
    "fr": (
        "Le jardin partagé de la rue des Lilas cherche des bénévoles",
        "Trois adresses pour bien manger sans se ruiner",
        "La piscine municipale rouvrira en septembre",
        "Portrait : le dernier cordonnier du quartier",
    ),
}


def _related(lang: str, index: int, count: int = 4) -> list[str]:
    """``count`` headlines of the language's pool, a different window for each page index."""
    pool = RELATED[lang]
    return [pool[(3 * index + k) % len(pool)] for k in range(count)]


# --- stories -------------------------------------------------------------------------------------

FERRY = Story(
    "last-night-ferry", "islands",
    "The last night ferry: why island towns are fighting to keep a loss-making route",
    "Maren Solberg", "2024-03-14",
    (
        "At a quarter past eleven on a Tuesday, the MV Kittiwake pulls away from the mainland pier with "
        "nine passengers, two delivery vans and a crate of hospital supplies bound for the clinic on "
        "Skarra. The ship is licensed for four hundred people. On most winter nights it carries fewer "
        "than twenty, and the operator loses money on every crossing.",
        "That arithmetic has put the overnight sailing on the list of services the regional transport "
        "authority wants to cut from next spring. Officials say the route costs roughly £1.4 million a "
        "year to run and that a rescheduled evening departure at nine o'clock would serve most of the "
        "same travellers. Islanders say the proposal misunderstands who actually uses the late boat.",
        "Nurses coming off a late shift at the mainland hospital are the most visible group. Ailsa "
        "Brock, who has worked on the cardiac ward for eleven years, said the nine o'clock boat would "
        "leave her two options: rent a room in town for half the week, or give up the job. “It is not a "
        "question of convenience,” she said. “The late sailing is the only reason people like me can "
        "live where we grew up.”",
        "## A route that carries more than people",
        "The freight side of the argument is less obvious but possibly more important. The island's only "
        "fishmonger sends his catch across on the night boat so that it reaches the morning market "
        "inland before dawn. Without it, he says, the fish would sit in a cold store for a day and lose "
        "a third of its value.",
        "> We were told the timetable review would be about efficiency. Nobody asked what the boat is "
        "actually carrying at midnight.",
        "The transport authority has defended its figures. A spokesperson pointed out that passenger "
        "numbers on the late crossing have fallen by almost forty percent since 2015 and that the fleet "
        "needs to free up crew hours for a new summer route to the northern islands. The authority has "
        "promised a consultation, but the deadline for responses falls during the busiest week of the "
        "lambing season, which several farmers described as either careless or deliberate.",
        "Transport economists who study small island networks argue that judging a single sailing on its "
        "ticket revenue misses the point. A route that looks empty on a spreadsheet can be the thread "
        "that holds together a labour market, a school catchment and a health service. Remove it and "
        "the costs do not vanish; they move onto households, employers and eventually the public purse "
        "in other forms.",
        "For now the Kittiwake keeps sailing. On the night this reporter travelled, the crew handed out "
        "tea in paper cups and the bar stayed shut, as it has since the pandemic. A teenager slept "
        "across three seats with a guitar case as a pillow. When the ship docked at twenty to one, a "
        "single taxi was waiting at the ramp, its driver reading a paperback under the dome light.",
    ),
    (
        "On most winter nights it carries fewer than twenty, and the operator loses money on every "
        "crossing.",
        "The island's only fishmonger sends his catch across on the night boat so that it reaches the "
        "morning market inland before dawn.",
        "Nobody asked what the boat is actually carrying at midnight.",
        "A route that looks empty on a spreadsheet can be the thread that holds together a labour "
        "market, a school catchment and a health service.",
        "A teenager slept across three seats with a guitar case as a pillow.",
    ),
    (
        ("harbourwatcher", "I took the late boat every week when my dad was in the care home in town, "
                           "and I never once saw it empty in summer."),
        ("Pete_R", "Forty percent fewer passengers is still a lot of people who will be stranded. Cut "
                   "the summer route instead."),
        ("lambing_again", "Holding the consultation in the worst week on the farm calendar tells you "
                          "everything about how seriously they take us."),
    ),
)

COMPOST = Story(
    "food-waste-bins-early-numbers", "environment",
    "Food waste bins arrive on every street in Millbrook, and the early numbers are surprising",
    "Dev Anand", "2023-10-02",
    (
        "Six months after the council handed out small green caddies to every household in Millbrook, "
        "the city's kerbside food waste collection is diverting far more material from landfill than "
        "the planners had predicted. According to figures presented to the environment committee on "
        "Monday, residents put out an average of 2.1 kilograms of food scraps per household each week, "
        "almost double the forecast used to size the new collection fleet.",
        "The pilot began in the eastern wards in April and was extended citywide in June. Crews now "
        "collect the caddies weekly, on the same day as general rubbish, and deliver their contents to "
        "an anaerobic digestion plant on the edge of the industrial estate. There the scraps are broken "
        "down into biogas, which is burned to generate electricity, and a nutrient-rich digestate that "
        "local farms spread on their fields.",
        "Council officers were careful not to celebrate too early. Participation is uneven, they said, "
        "with flats and shared houses lagging far behind detached homes. In some tower blocks fewer "
        "than one household in ten uses the service, largely because there is nowhere convenient to "
        "keep a communal bin and the chutes were never designed for separate streams.",
        "## The smell question",
        "The most common complaint in the first weeks was not about collection days or missed bins but "
        "about smell, especially during the August heatwave. The council responded by offering free "
        "compostable liners at libraries and leisure centres, a measure that cost about £40,000 and "
        "appears to have cut complaints by two thirds. Some residents have gone further, freezing their "
        "peelings in old ice cream tubs until collection day.",
        "There are also signs that the bins are changing behaviour in ways that go beyond recycling. "
        "Several residents told the Record that seeing a full caddy every week made them realise how "
        "much food they were throwing away. One retired teacher said she now plans meals for the week "
        "and buys loose vegetables rather than multipacks, and that her caddy is half as full as it was "
        "in the spring.",
        "Not everyone is persuaded. Councillor Graham Pyke, who voted against the scheme, argued that "
        "the money would have been better spent on fixing potholes and that the extra lorry journeys "
        "undermine the environmental case. Officers replied that the new routes replaced a fortnightly "
        "garden waste round and that total fleet mileage has risen by less than four percent.",
        "The committee agreed to spend the next year focusing on flats, including a trial of larger "
        "lockable bins in the courtyards of two estates. If participation there reaches the citywide "
        "average, officers estimate that Millbrook could cut the weight of rubbish it sends to landfill "
        "by a fifth before the current waste contract expires.",
    ),
    (
        "residents put out an average of 2.1 kilograms of food scraps per household each week, almost "
        "double the forecast used to size the new collection fleet.",
        "In some tower blocks fewer than one household in ten uses the service, largely because there "
        "is nowhere convenient to keep a communal bin and the chutes were never designed for separate "
        "streams.",
        "Some residents have gone further, freezing their peelings in old ice cream tubs until "
        "collection day.",
        "Officers replied that the new routes replaced a fortnightly garden waste round and that total "
        "fleet mileage has risen by less than four percent.",
        "Millbrook could cut the weight of rubbish it sends to landfill by a fifth before the current "
        "waste contract expires.",
    ),
    (
        ("caddy_convert", "Ours goes out every Thursday and the foxes have not figured out the latch "
                          "yet. Fingers crossed."),
        ("M. Okafor", "We live on the ninth floor of Bellhouse Court and there is still no bin "
                      "downstairs, so the caddy lives on the balcony."),
        ("notimpressed77", "The potholes on Station Road have been there since 2019 but sure, let's buy "
                           "more lorries."),
        ("Janine P", "Has anyone else had their caddy stolen? Ours vanished the week after delivery."),
    ),
)

SOURDOUGH = Story(
    "sourdough-at-altitude", "high-altitude",
    "What moving to 2,200 metres did to my sourdough (and how I fixed it)",
    "Tessa Lindqvist", "2024-01-20",
    (
        "When we moved up to the valley last autumn I assumed the hardest part of the change would be "
        "the winters. I did not expect my bread to fall apart. The starter I had kept alive for six "
        "years, through two house moves and one very neglectful summer, suddenly produced loaves that "
        "rose like balloons and then collapsed in the oven into dense, sour pancakes.",
        "The reason, once I read up on it, is straightforward. At this height the air pressure is "
        "roughly a quarter lower than at sea level, so the gas produced by yeast expands more easily and "
        "the dough rises faster. Water also boils at around ninety-three degrees instead of a hundred, "
        "and the air is much drier, so the crust sets later and the dough loses moisture while it "
        "proofs.",
        "## Change one thing at a time",
        "My first instinct was to change everything at once, which taught me nothing. So I went back to "
        "my usual recipe and adjusted a single variable per bake, writing down the results in a notebook "
        "that is now covered in flour fingerprints. It took eleven loaves over about five weeks, and my "
        "neighbours received a lot of slightly odd bread.",
        "The biggest improvement came from cutting the bulk fermentation short. Where I used to wait for "
        "the dough to double, I now stop when it has grown by about half, which in my kitchen means "
        "roughly three and a half hours instead of five. The second change was adding a little more "
        "water, around five percent, to make up for the dry air.",
        "> Bread at altitude is not harder, it is just faster. Everything you know still works if you "
        "start watching the dough instead of the clock.",
        "I also started baking a little hotter for the first twenty minutes with the lid on, then "
        "dropping the temperature for the rest. That helps the loaf set its shape before the gas inside "
        "has a chance to escape. Some high-altitude guides suggest reducing the amount of starter as "
        "well; I tried it, but found it made the timing unpredictable on cold mornings, so I went back "
        "to my usual twenty percent.",
        "The loaf in the photo above is from last Sunday. It is not perfect, the ear is a bit timid and "
        "the crumb is tighter than I like, but it is the first one since the move that I would happily "
        "serve to guests. If you have baked at altitude and found other tricks, I would love to hear "
        "about them in the comments below.",
    ),
    (
        "The starter I had kept alive for six years, through two house moves and one very neglectful "
        "summer, suddenly produced loaves that rose like balloons and then collapsed in the oven into "
        "dense, sour pancakes.",
        "It took eleven loaves over about five weeks, and my neighbours received a lot of slightly odd "
        "bread.",
        "Where I used to wait for the dough to double, I now stop when it has grown by about half, which "
        "in my kitchen means roughly three and a half hours instead of five.",
        "That helps the loaf set its shape before the gas inside has a chance to escape.",
        "It is not perfect, the ear is a bit timid and the crumb is tighter than I like, but it is the "
        "first one since the move that I would happily serve to guests.",
    ),
    (
        ("Jonas from Leadville", "We are at 3,100 metres and I ended up cutting the bulk to under three "
                                 "hours in summer. Great write-up!"),
        ("breadhead", "Have you tried a stiffer starter? Mine became much more predictable when I "
                      "dropped it to sixty percent hydration."),
        ("Tessa", "Thanks Jonas! I have not tried a stiff starter yet but it is next on the list once "
                  "the kitchen warms up."),
    ),
)

TYPEWRITER = Story(
    "restoring-a-1950s-portable", "restoration-and-repair",
    "Restoring a 1950s portable typewriter found in a skip: what I learned",
    "ribbonworks", "2023-06-11",
    (
        "A few weeks ago a neighbour was clearing out her late father's garage and a small green "
        "portable typewriter ended up in the skip outside. I asked if I could take it, and she seemed "
        "relieved that someone wanted it. This thread is a record of the restoration, partly for my own "
        "notes and partly because I could not find a single guide that covered this model from start "
        "to finish.",
        "The machine was in rough shape. The carriage would not move, several type bars were stuck "
        "together in a clump, and the platen was hard as a hockey puck. Under all the grime, though, "
        "there was no rust on the important parts, and the case still had its original key, taped to "
        "the inside of the lid.",
        "The first job was cleaning. I took the body panels off, which only needs four screws on this "
        "model, and gave the type basket a long soak with mineral spirits and a soft toothbrush. Most of "
        "the sticky keys turned out to be old oil that had turned to varnish. Once that was gone, every "
        "type bar dropped back into its slot without complaint.",
        "The carriage problem was a broken drawband, the cord that pulls the carriage along as you type. "
        "I replaced it with a length of braided fishing line, which is what most people on this forum "
        "seem to recommend, and the escapement came back to life immediately. Getting the tension right "
        "took three attempts; too tight and the carriage flies across and rattles, too loose and it "
        "stalls at the end of the line.",
        "The platen was the part I could not fix myself. I sent it away to be recovered in new rubber, "
        "which cost more than everything else put together and took six weeks. The difference is "
        "enormous. The type now bites into the paper evenly instead of skipping on the hard spots, and "
        "the machine is noticeably quieter.",
        "If you are thinking about doing something similar, my advice is to photograph everything before "
        "you take it apart, keep the screws in an egg carton labelled by section, and resist the urge to "
        "spray lubricant anywhere. Typewriters want to be clean and dry far more than they want to be "
        "oiled.",
    ),
    (
        "Under all the grime, though, there was no rust on the important parts, and the case still had "
        "its original key, taped to the inside of the lid.",
        "Most of the sticky keys turned out to be old oil that had turned to varnish.",
        "I replaced it with a length of braided fishing line, which is what most people on this forum "
        "seem to recommend, and the escapement came back to life immediately.",
        "The type now bites into the paper evenly instead of skipping on the hard spots, and the machine "
        "is noticeably quieter.",
        "Typewriters want to be clean and dry far more than they want to be oiled.",
    ),
    (
        ("oldmargin", "Lovely save. Fishing line is exactly right for the drawband, I use forty pound "
                      "test and it has lasted years."),
        ("carriage_return", "Which platen service did you use? The one I tried last year took four "
                            "months and lost one of my feed rollers."),
        ("ribbonworks", "It was the place in Leeds that most people here mention. Four months sounds "
                        "awful, sorry to hear it."),
    ),
)

DATACENTRE = Story(
    "data-centre-water-use", "energy",
    "How much water does a data centre drink? Operators' own reports give a patchy answer",
    "Priya Raman", "2024-05-07",
    (
        "Every time a new server farm is proposed near a small town, the same question comes up at the "
        "planning meeting: how much water will it use? It sounds like something that should have a "
        "simple answer. In practice, the numbers that operators publish are hard to compare, measured in "
        "different ways and often buried in sustainability reports that few residents ever read.",
        "Most large facilities cool their servers with a combination of outside air and evaporative "
        "cooling. On hot days, water is sprayed over heat exchangers and evaporates, carrying heat away "
        "with it. The water that evaporates is gone, which is why engineers distinguish between water "
        "withdrawn from a supply and water actually consumed. A site can withdraw a lot and consume "
        "little, or the other way around, depending on how much it recycles.",
        "We collected the figures that five operators published for their sites in the same region last "
        "year. The table below shows what they reported. The range is wide, and the differences say as "
        "much about climate and design choices as about efficiency.",
        "@table",
        "The most striking figure is the gap between the evaporative sites and the closed-loop facility "
        "at Old Quarry, which uses chillers and consumes a small fraction of the water. The catch is "
        "electricity. Chillers need more power, so a site that saves water can end up with a larger "
        "carbon footprint, particularly where the grid still leans on gas.",
        "## What residents should ask",
        "Hydrologists we spoke to suggested that the annual total matters less than the timing. A data "
        "centre draws the most water in the hottest weeks of summer, exactly when rivers run low and "
        "farmers need irrigation. A facility that looks modest on an annual basis can still put real "
        "pressure on a small catchment in August.",
        "Riverside East is an interesting case. It takes treated wastewater from the municipal plant next "
        "door rather than drinking water, which is why its potable figure is zero. That arrangement "
        "required a pipeline and a long negotiation with the water company, but it has become a model "
        "that planning officers elsewhere now ask applicants to consider.",
        "None of the operators we contacted disputed their published numbers, though two said that "
        "year-on-year comparisons were distorted by an unusually warm summer. All five said they "
        "expected water use per unit of computing to fall as newer halls come online. Whether total use "
        "falls too will depend on how fast the region keeps building.",
    ),
    (
        "The water that evaporates is gone, which is why engineers distinguish between water withdrawn "
        "from a supply and water actually consumed.",
        "Chillers need more power, so a site that saves water can end up with a larger carbon footprint, "
        "particularly where the grid still leans on gas.",
        "A data centre draws the most water in the hottest weeks of summer, exactly when rivers run low "
        "and farmers need irrigation.",
        "It takes treated wastewater from the municipal plant next door rather than drinking water, which "
        "is why its potable figure is zero.",
        "Whether total use falls too will depend on how fast the region keeps building.",
    ),
    (
        ("gridnerd", "Would love to see the same table with electricity per megawatt hour next to it, "
                     "otherwise the chiller trade-off is hard to judge."),
        ("Sam W.", "Our town is fighting a proposal right now and this is the first clear explanation I "
                   "have seen of withdrawn versus consumed."),
        ("hydro_h", "August is the month that matters, thank you for saying it plainly."),
    ),
    table=(
        ("Site", "Cooling design", "Water consumed (million litres)", "Litres per MWh"),
        ("North Ridge campus", "Evaporative", "412", "1,850"),
        ("Lakeside 2", "Hybrid air and water", "190", "720"),
        ("Old Quarry", "Closed-loop chillers", "35", "160"),
        ("Meadow Park", "Evaporative", "380", "1,640"),
        ("Riverside East", "Recycled wastewater", "260", "0 potable"),
    ),
)

NOTEBOOK = Story(
    "in-defence-of-the-paper-notebook", "essays",
    "In defence of the paper notebook",
    "Oliver Achebe", "2022-11-28",
    (
        "I have kept a paper notebook for nineteen years, and for most of that time I have felt faintly "
        "embarrassed about it. It seemed like an affectation, something a person does to be seen doing "
        "it, like carrying a fountain pen or owning a record player. Every few years I would try to move "
        "everything into an app, and every few years I would drift back to a cheap spiral-bound pad from "
        "the stationery shop near the station.",
        "What finally stopped the embarrassment was noticing what the notebook is actually for. It is not "
        "an archive. I rarely read old notebooks, and when I do they are mostly lists of things I have "
        "long since forgotten needing to do. The value is in the writing itself, in the slowness that "
        "forces me to decide what a thought is before I commit it to the page.",
        "A keyboard lets me type almost as fast as I think, which sounds like an advantage until you look "
        "at what comes out. My typed notes from meetings are near transcripts, full of half-sentences "
        "and things I did not understand at the time. My handwritten notes from the same meetings are "
        "shorter and stranger, but they contain decisions. The hand is too slow to record everything, so "
        "it has to choose.",
        "@promo The quiet return of the letter-writing club",
        "There is also the matter of attention. A notebook does exactly one thing. It does not light up "
        "with a message from a colleague while I am trying to work out the structure of an essay, and it "
        "does not offer to summarise what I have just written. It sits there, a little smug, waiting for "
        "me to have an idea.",
        "> The blank page is not a productivity tool. It is a place where nothing happens unless you "
        "make it happen.",
        "I do not want to overstate this. Paper is terrible at search, hopeless at sharing, and I have "
        "lost at least two notebooks on trains. Anything that needs to be found again goes into a "
        "computer eventually. But the first draft of almost everything I have written in the last decade "
        "began as a mess of arrows and crossings-out in a book that cost less than a sandwich.",
        "So I have made my peace with it. The notebook stays in my coat pocket, the pen clipped to the "
        "cover, and when someone raises an eyebrow in a meeting I no longer explain. It is simply the way "
        "I think, and after nineteen years I suspect it is too late to learn another.",
    ),
    (
        "The value is in the writing itself, in the slowness that forces me to decide what a thought is "
        "before I commit it to the page.",
        "The hand is too slow to record everything, so it has to choose.",
        "It sits there, a little smug, waiting for me to have an idea.",
        "Paper is terrible at search, hopeless at sharing, and I have lost at least two notebooks on "
        "trains.",
        "It is simply the way I think, and after nineteen years I suspect it is too late to learn "
        "another.",
    ),
    (
        ("Wren", "The bit about meeting notes containing decisions is exactly my experience, and I had "
                 "never put it into words."),
        ("d.kowalski", "I lost a notebook on a train once and still think about it. Put your address "
                       "inside the cover, everyone!"),
        ("Margo", "Beautiful essay, though I will keep my app and my terrible handwriting separate."),
    ),
)

COMET = Story(
    "comet-from-a-city-rooftop", "observing",
    "Watching a comet from a city rooftop, with a cheap pair of binoculars",
    "Lucía Ferreira", "2024-09-30",
    (
        "I had been told, more than once, that there is no point looking for a comet from the middle of "
        "a city. The sky over our flat glows orange from the moment the sun sets, and on a good night I "
        "can count perhaps thirty stars. Still, when the news said this autumn's comet would be bright "
        "enough to see without a telescope, I carried a folding chair up to the roof and decided to find "
        "out.",
        "The first evening was a failure. I went up too early, while the western sky was still pale, and "
        "spent forty minutes staring at what turned out to be an aircraft on its approach to the "
        "airport. The second evening I went up later, about an hour after sunset, and brought the "
        "binoculars my father used for birdwatching, a heavy pair with a strap that smells of old "
        "leather.",
        "The trick, according to every guide I read, is to find something bright nearby and work your "
        "way across. That night Venus was low in the west, impossible to miss, and the comet was "
        "supposed to sit a little above and to the left of it. I swept the binoculars slowly upward, and "
        "there it was: a small grey smudge with a faint tail pointing away from the horizon, like a "
        "thumbprint on a window.",
        "## What the city takes away",
        "Light pollution does not hide bright objects so much as it steals their contrast. From a dark "
        "site, a comet like this one would have shown a tail several times longer, curving across a "
        "patch of sky the width of an outstretched hand. From the roof, I could trace perhaps a finger's "
        "width before it dissolved into the glow. It was enough, though, to know what I was looking at.",
        "Over the following week the comet climbed higher and faded, and a few neighbours started "
        "joining me on the roof. Someone brought a flask of soup. The caretaker, who had never been up "
        "there in the evening, admitted he had assumed we were smoking. By the last clear night there "
        "were nine of us, taking turns with three pairs of binoculars and a phone held up to the "
        "eyepiece.",
        "None of the phone photos came out well. What stayed with me instead was the strange intimacy of "
        "it, a handful of people who normally nod at each other by the lifts standing in the cold, "
        "quietly passing around a pair of old binoculars to look at a ball of ice that will not come "
        "back for thousands of years.",
    ),
    (
        "I swept the binoculars slowly upward, and there it was: a small grey smudge with a faint tail "
        "pointing away from the horizon, like a thumbprint on a window.",
        "Light pollution does not hide bright objects so much as it steals their contrast.",
        "The caretaker, who had never been up there in the evening, admitted he had assumed we were "
        "smoking.",
        "By the last clear night there were nine of us, taking turns with three pairs of binoculars and "
        "a phone held up to the eyepiece.",
        "a ball of ice that will not come back for thousands of years.",
    ),
    (
        ("nightowl_92", "Saw it from a supermarket car park on the ring road, so cities are not hopeless "
                        "after all."),
        ("Ferdinand", "Tip for next time: let your eyes adapt for twenty minutes and keep your phone "
                      "screen off."),
        ("Aiko M.", "The soup detail made me smile, every observing night needs someone like that."),
    ),
)

CHESS = Story(
    "eastbrook-open-junior-winner", "chess",
    "Twelve-year-old takes the Eastbrook Open after a seven-hour final round",
    "Henrik Dahl", "2023-02-19",
    (
        "The Eastbrook Open has been held in the back room of the Corn Exchange for thirty-one years, "
        "and in that time it has seen its share of upsets. None of the regulars could remember anything "
        "quite like Sunday, when a twelve-year-old from the junior club at St Anne's beat the "
        "tournament's top seed in a final round that lasted just over seven hours.",
        "Nadia Haddad came into the last round half a point behind the leader, a retired engineer named "
        "Colin Frayne who has won the event four times. A draw would have left her in second place. "
        "Instead she chose a sharp line against his favourite opening, sacrificing a pawn in the first "
        "dozen moves for an attack that never quite materialised but kept him under pressure for most of "
        "the afternoon.",
        "By the time the endgame arrived, both players were short on time and the small crowd around the "
        "board had grown to about forty people, many of them parents from the junior section who had "
        "stayed long after their own children's games had finished. The arbiter had to ask twice for "
        "quiet when a phone rang during a critical sequence.",
        "Frayne, who was gracious afterwards, said he had misjudged a rook ending he would normally "
        "expect to hold. “She found the only plan that wins,” he said. “I looked for a way out for "
        "twenty minutes and there wasn't one. I'll be studying that position for a while.”",
        "Haddad's coach, Fiona Reyes, said the result was no fluke. The junior club has grown from six "
        "members to nearly fifty since it moved to the school library three years ago, and several of "
        "its players now compete in county events. Reyes credits a simple rule: every game a student "
        "plays in a tournament is gone through afterwards with a coach, however it ended.",
        "The tournament itself nearly did not happen. The Corn Exchange raised its room hire fees last "
        "year, and organisers only secured the venue after a local bakery agreed to sponsor the prize "
        "fund. The bakery's owner, who learned to play in the same room as a teenager, presented the "
        "trophy and a large box of cinnamon buns.",
        "Haddad said she planned to spend part of her winnings on a new chess clock for the junior club, "
        "whose current one has a button that sticks. The rest, she said, was going into her savings, "
        "except for the cinnamon buns, which were shared out before the prize-giving was over.",
    ),
    (
        "Instead she chose a sharp line against his favourite opening, sacrificing a pawn in the first "
        "dozen moves for an attack that never quite materialised but kept him under pressure for most of "
        "the afternoon.",
        "The arbiter had to ask twice for quiet when a phone rang during a critical sequence.",
        "Reyes credits a simple rule: every game a student plays in a tournament is gone through "
        "afterwards with a coach, however it ended.",
        "The bakery's owner, who learned to play in the same room as a teenager, presented the trophy "
        "and a large box of cinnamon buns.",
        "Haddad said she planned to spend part of her winnings on a new chess clock for the junior club, "
        "whose current one has a button that sticks.",
    ),
    (
        ("Col F.", "Well played Nadia, I will get you next year. The rook ending still haunts me."),
        ("StAnnesParent", "So proud of the whole junior club, they were buzzing all the way home on the "
                          "bus."),
        ("woodpusher", "Seven hours! Back in my day we adjourned and finished it the next evening."),
    ),
)

BACKUPS = Story(
    "backups-that-never-restored", "posts",
    "Our database backups were green for eight months. None of them would restore.",
    "Kamal Mensah", "2024-07-15",
    (
        "This is the post-mortem I never wanted to write. For about eight months, the nightly backup job "
        "for our main PostgreSQL database reported success every single night. The dashboard was green, "
        "the alerts were quiet, and the files appeared in object storage with reassuring sizes. When we "
        "finally needed one, after an engineer dropped the wrong table on a staging box that turned out "
        "to be pointed at production, none of them could be restored.",
        "The root cause was embarrassingly small. A year earlier we had switched the backup script from "
        "a plain dump to a compressed one, piping the output through a compression tool before "
        "uploading it. The pipe hid the exit code of the dump command. When the database user lost a "
        "permission during a routine role cleanup, the dump started failing after the first few tables, "
        "but the compressor happily finished compressing whatever it had received, and the script "
        "reported success.",
        "@code set -euo pipefail\npg_dump --format=custom \"$DATABASE_URL\" | zstd -q -o \"$OUT\"\n"
        "zstd -t \"$OUT\"",
        "The fix for the script itself was one line: enabling pipefail so that a failure anywhere in the "
        "pipeline fails the whole job. But the real lesson was that we had never tested a restore. We "
        "had tested that files existed, and that they were roughly the size we expected, which is not "
        "the same thing at all.",
        "## What we changed",
        "We now run a restore drill every night on a small throwaway instance. The job downloads the "
        "latest backup, restores it, runs a handful of queries that count rows in the largest tables and "
        "compares them with the live database within a tolerance. If the counts are off by more than a "
        "few percent, someone gets paged. The whole thing takes about twenty minutes and costs less per "
        "month than the team's coffee.",
        "We also stopped trusting file sizes as a health signal. A truncated backup of a growing database "
        "can easily be the same size as a complete backup from a few months ago, which is exactly how "
        "ours slipped past the size check we did have.",
        "Finally, we wrote down who owns the backups. Before the incident, the honest answer was that "
        "everybody assumed somebody else did. Now there is a name on the runbook, a monthly calendar "
        "reminder to review the restore logs by hand, and a quarterly exercise where someone who has "
        "never done it performs a full restore while the rest of the team watches and takes notes.",
        "We were lucky. The dropped table was recoverable from a replica that had not yet applied the "
        "change, and we lost about forty minutes of writes rather than eight months. If you run backups "
        "and have not restored one recently, this is your sign to go and try.",
    ),
    (
        "The pipe hid the exit code of the dump command.",
        "We had tested that files existed, and that they were roughly the size we expected, which is not "
        "the same thing at all.",
        "The whole thing takes about twenty minutes and costs less per month than the team's coffee.",
        "Before the incident, the honest answer was that everybody assumed somebody else did.",
        "If you run backups and have not restored one recently, this is your sign to go and try.",
    ),
    (
        ("sre_anna", "We had the exact same pipefail bug in 2021. Restore drills are the only backup "
                     "monitoring that means anything."),
        ("grumpy_dba", "Row counts within a tolerance will not catch a corrupted index, but it is a "
                       "very good start."),
        ("Kamal", "Fair point on indexes, we also run the amcheck extension on the restored copy now."),
    ),
)

BEES = Story(
    "urban-beekeepers-asked-to-slow-down", "nature",
    "Too many hives? Urban beekeepers are asked to slow down",
    "Rosa Kimura", "2023-05-22",
    (
        "A decade ago, keeping bees on a city rooftop was a novelty that made the local news. Today the "
        "national beekeepers' association estimates there are more than four thousand registered hives "
        "within the city limits, and a growing number of ecologists are asking whether that is too "
        "many.",
        "The concern is not the honeybees themselves but what they compete with. Cities are home to "
        "dozens of species of wild bees, most of them solitary, many of them small enough to go "
        "unnoticed. They feed on the same flowers as honeybees, and a single strong honeybee colony can "
        "send out tens of thousands of foragers on a warm day.",
        "Researchers at the university's ecology department spent three summers counting bees in parks, "
        "allotments and cemeteries. In areas with the highest density of hives, they found noticeably "
        "fewer wild bees on common flowers like lavender and knapweed, and the wild bees they did find "
        "visited fewer flowers per hour. The study stops short of proving that honeybees caused the "
        "decline, but the pattern held across every site they surveyed.",
        "> If you want to help pollinators in the city, plant something. A window box of herbs left to "
        "flower does more for wild bees than another hive on another roof.",
        "Beekeepers have responded with a mix of defensiveness and soul-searching. Several said they took "
        "up the hobby precisely because they had read that bees were in trouble, without realising that "
        "the bees in trouble were mostly wild ones. Others pointed out that a well-managed hive produces "
        "honey that keeps local food traditions alive and teaches children where food comes from.",
        "The city association has now issued its first voluntary guidance, suggesting that members avoid "
        "placing new hives within five hundred metres of nature reserves and that companies think twice "
        "before installing hives purely for their sustainability reports. Corporate hives, often looked "
        "after by contractors who visit once a month, have become a particular point of friction.",
        "For now, nobody is proposing a ban. The guidance encourages new beekeepers to join an existing "
        "apiary rather than start their own, and asks everyone with a garden, balcony or patch of verge "
        "to leave some of it a little wilder. Dandelions, it turns out, are among the most useful plants "
        "a city can have.",
    ),
    (
        "Cities are home to dozens of species of wild bees, most of them solitary, many of them small "
        "enough to go unnoticed.",
        "The study stops short of proving that honeybees caused the decline, but the pattern held across "
        "every site they surveyed.",
        "Others pointed out that a well-managed hive produces honey that keeps local food traditions "
        "alive and teaches children where food comes from.",
        "Corporate hives, often looked after by contractors who visit once a month, have become a "
        "particular point of friction.",
        "Dandelions, it turns out, are among the most useful plants a city can have.",
    ),
    (
        ("allotment_alan", "I have kept two hives for nine years and I had no idea about the wild bee "
                           "problem. Food for thought."),
        ("verge_wilder", "Our street stopped mowing the verges last spring and the difference in insects "
                         "is astonishing."),
        ("hq_facilities", "We installed three hives on our office roof last year. Sounds like we should "
                          "have planted a meadow instead."),
    ),
)

LUNCH = Story(
    "school-lunch-price-portions", "economy",
    "Why the school lunch costs more even though the portions got smaller",
    "Ewan Murdoch", "2024-02-05",
    (
        "Parents in the district opened a letter last month announcing that the price of a school lunch "
        "would rise for the third time in two years, to £2.85 a day. Many of them wrote back with the "
        "same complaint: the portions, they said, had been getting smaller for a while. Both things are "
        "true, and the reasons say a lot about how food inflation moves through a public kitchen.",
        "The district's catering service buys most of its ingredients on contracts fixed for a year at a "
        "time. That protected it from the worst of the price spikes in 2022, but when the contracts were "
        "renewed the following spring, the cost of dairy, cooking oil and fresh vegetables had risen by "
        "between a fifth and a half. Because meals are planned months ahead, the kitchens first "
        "responded by quietly adjusting recipes rather than raising prices.",
        "Staff costs have risen too. Kitchen assistants are among the lowest-paid workers in the "
        "district, and two rounds of minimum wage increases have pushed the wage bill up by roughly "
        "fourteen percent. Unlike ingredients, labour cannot be trimmed without cutting the number of "
        "meals a kitchen can serve at lunchtime, which is fixed by the length of the break.",
        "@promo Five charts that explain the cost of the weekly shop",
        "The catering manager, Joy Adeyemi, said the decision to shrink portions had been taken "
        "reluctantly and that nutritional standards had been maintained throughout. A primary-age meal "
        "must still meet minimum amounts of protein, vegetables and starchy food; what changed, she "
        "said, was mainly the size of desserts and the frequency of the more expensive meat dishes.",
        "Economists call this shrinkflation when it happens in a supermarket, and it is usually cheaper "
        "to hide than a price rise. In a school kitchen it is harder to conceal. Children notice when the "
        "chocolate sponge gets thinner, and they tell their parents.",
        "The new price still does not cover the full cost of a meal, which the service estimates at "
        "£3.20 once equipment and energy are included. The difference is made up from the district's "
        "general budget. Councillors will decide next month whether to keep that subsidy, raise the "
        "price again in September, or look for savings elsewhere in the catering contract.",
    ),
    (
        "Both things are true, and the reasons say a lot about how food inflation moves through a public "
        "kitchen.",
        "Unlike ingredients, labour cannot be trimmed without cutting the number of meals a kitchen can "
        "serve at lunchtime, which is fixed by the length of the break.",
        "what changed, she said, was mainly the size of desserts and the frequency of the more expensive "
        "meat dishes.",
        "Children notice when the chocolate sponge gets thinner, and they tell their parents.",
        "The new price still does not cover the full cost of a meal, which the service estimates at "
        "£3.20 once equipment and energy are included.",
    ),
    (
        ("parent_of_three", "My youngest came home and told me the sponge is now the size of a "
                            "biscuit, so yes, they notice."),
        ("T. Lindgren", "Kitchen staff deserve every penny of that wage rise. Put the subsidy up."),
        ("econ_teacher", "Using this article in my lesson on inflation tomorrow, it is a perfect "
                         "example."),
    ),
)

NOVEL = Story(
    "review-keepers-of-ness-point", "fiction",
    "Review: The Keepers of Ness Point, a quiet novel about a very loud sea",
    "Clara Whitfield", "2023-09-09",
    (
        "Ilse Marrow's third novel takes place almost entirely inside a lighthouse on a spit of shingle "
        "off the east coast, over the course of a single winter in the late 1950s. Three keepers share "
        "the tower: an older man counting the months to his pension, a former merchant sailor who does "
        "not talk about why he came ashore, and a young replacement who arrives in November with a "
        "suitcase full of library books.",
        "Not much happens, at least in the conventional sense. The lamp is lit and extinguished, the "
        "brass is polished, the weather is logged every three hours. Storms come and go. The relief boat "
        "is late, then later. Marrow is interested in what routine does to people shut in together, and "
        "she is very good at the small frictions that build up: who takes the last of the condensed "
        "milk, who hums while cooking, who leaves the logbook open on the wrong page.",
        "The sea is the book's real presence. Marrow writes about it with a precision that never tips "
        "into showing off, describing the different sounds shingle makes as a wave draws back depending "
        "on the size of the stones and the strength of the wind. By the end I felt I could have told a "
        "spring tide from a neap with my eyes closed, which is a strange skill to acquire from a novel.",
        "> He had stopped hearing the sea in his second week, the way you stop hearing your own "
        "heartbeat, and it frightened him when he noticed it again.",
        "If the book has a weakness, it is the young keeper, Arthur, whose reading supplies a few too "
        "many convenient quotations. When he compares the tower to a ship, a monastery and a prison "
        "within the same chapter, one begins to sense the author's hand reaching in to point out the "
        "themes. The older men, by contrast, are drawn with a restraint that makes their rare moments of "
        "openness land hard.",
        "The final third, when a storm cuts the tower off for nine days and the relief boat is finally "
        "given up for lost, is as tense as anything I have read this year, and I will not spoil how it "
        "resolves. It is enough to say that Marrow earns her ending, and that it is quieter than you "
        "expect.",
        "The Keepers of Ness Point is a slow book and asks for patience. It rewards it generously. Read "
        "it in winter, ideally somewhere with weather outside the window.",
    ),
    (
        "Marrow is interested in what routine does to people shut in together, and she is very good at "
        "the small frictions that build up",
        "By the end I felt I could have told a spring tide from a neap with my eyes closed, which is a "
        "strange skill to acquire from a novel.",
        "The older men, by contrast, are drawn with a restraint that makes their rare moments of "
        "openness land hard.",
        "It is enough to say that Marrow earns her ending, and that it is quieter than you expect.",
        "Read it in winter, ideally somewhere with weather outside the window.",
    ),
    (
        ("bookish_bea", "Finished it last night with a storm outside, which I highly recommend."),
        ("Lighthouse Larry", "My grandfather was a keeper and he always said the worst part was the "
                             "condensed milk arguments."),
        ("R. Okonkwo", "I found Arthur charming rather than annoying, but each to their own."),
    ),
)

RADWEGE = Story(
    "talheim-fahrradstrassen", "lokales",
    "Talheim baut Fahrradstraßen – und streitet über jeden Parkplatz",
    "Jana Feldmann", "2024-04-12",
    (
        "Seit dem Frühjahr sind in Talheim die ersten beiden Fahrradstraßen ausgeschildert. Auf der "
        "Lindenallee und dem Mühlweg haben Radfahrerinnen und Radfahrer nun Vorrang, Autos dürfen nur "
        "noch als Anlieger hineinfahren und müssen sich dem Tempo der Räder anpassen. Die "
        "Stadtverwaltung spricht von einem wichtigen Schritt hin zu sicheren Schulwegen, doch in den "
        "betroffenen Straßen ist die Stimmung gemischt.",
        "Vor allem der Wegfall von rund sechzig Parkplätzen sorgt für Ärger. Mehrere Geschäftsleute am "
        "Mühlweg befürchten, dass Kundschaft aus den umliegenden Dörfern künftig lieber in das "
        "Einkaufszentrum am Stadtrand fährt. Die Inhaberin einer Bäckerei sagte, sie habe in den ersten "
        "Wochen deutlich weniger Laufkundschaft am Vormittag gehabt, wolle aber abwarten, wie sich der "
        "Sommer entwickle.",
        "Die Verwaltung verweist auf Zählungen aus dem vergangenen Jahr. Demnach waren auf der "
        "Lindenallee zu den Stoßzeiten bereits mehr Fahrräder als Autos unterwegs, vor allem "
        "Schülerinnen und Schüler des Gymnasiums und der Realschule. Der Umbau habe deshalb nur "
        "nachvollzogen, was sich im Alltag längst geändert habe, sagte der Leiter des Tiefbauamts bei "
        "einer Bürgerversammlung.",
        "## Kritik an der Beschilderung",
        "Unzufrieden sind allerdings auch manche Radfahrer. Die neuen Schilder seien zu klein und an den "
        "Einmündungen schlecht zu sehen, bemängelt der örtliche Fahrradclub. Autofahrer, die sich nicht "
        "auskennen, führen weiterhin so, als handle es sich um eine gewöhnliche Straße. Der Club fordert "
        "deshalb rote Markierungen auf der Fahrbahn, wie sie in anderen Städten üblich sind.",
        "Der Gemeinderat will im Herbst entscheiden, ob weitere Straßen folgen sollen. Im Gespräch ist "
        "vor allem die Verbindung zwischen dem Bahnhof und dem neuen Wohngebiet am Sonnenhang, wo in den "
        "kommenden Jahren rund dreihundert Wohnungen entstehen. Bis dahin sollen die Erfahrungen aus der "
        "Lindenallee und dem Mühlweg ausgewertet und die Geschäftsleute erneut angehört werden.",
        "Eine Anwohnerin des Mühlwegs fasste die Lage bei der Versammlung so zusammen: Früher habe sie "
        "sich nicht getraut, ihre Kinder allein mit dem Rad zur Schule fahren zu lassen. Jetzt tue sie "
        "es, aber sie müsse nun weiter laufen, um ihr Brot zu kaufen. Beides sei wahr, und beides müsse "
        "man ernst nehmen.",
    ),
    (
        "Auf der Lindenallee und dem Mühlweg haben Radfahrerinnen und Radfahrer nun Vorrang",
        "Vor allem der Wegfall von rund sechzig Parkplätzen sorgt für Ärger.",
        "Die neuen Schilder seien zu klein und an den Einmündungen schlecht zu sehen, bemängelt der "
        "örtliche Fahrradclub.",
        "wo in den kommenden Jahren rund dreihundert Wohnungen entstehen.",
        "Beides sei wahr, und beides müsse man ernst nehmen.",
    ),
    (
        ("radlerin_tal", "Endlich! Meine Tochter fährt jetzt jeden Tag allein mit dem Rad zur Schule."),
        ("H. Brenner", "Und wo sollen die Lieferwagen halten? Daran hat mal wieder keiner gedacht."),
        ("muehlweg12", "Die Schilder sieht man wirklich kaum, ich bin selbst zweimal falsch abgebogen."),
    ),
    lang="de",
)

MARCHE = Story(
    "marche-du-dimanche-sauve", "vie-locale",
    "Le marché du dimanche a failli disparaître. Les habitants l’ont sauvé.",
    "Camille Roussel", "2023-11-05",
    (
        "Il y a deux ans, le marché du dimanche de la place des Tilleuls ne comptait plus que quatre "
        "étals : un maraîcher, un fromager, un vendeur de volailles et une dame qui proposait des "
        "confitures maison. La mairie envisageait sérieusement de le supprimer pour transformer la place "
        "en parking le week-end. Aujourd’hui, on y compte vingt-deux commerçants, et il faut arriver "
        "avant dix heures pour trouver du pain.",
        "Le changement n’est pas venu d’un grand plan municipal, mais d’une poignée d’habitants qui ont "
        "décidé de s’en occuper. Ils ont créé une association, recensé les producteurs des villages "
        "voisins et fait du porte-à-porte pour convaincre chacun de venir essayer pendant un mois, sans "
        "droit de place. La mairie a accepté de suspendre la redevance le temps de l’expérience.",
        "Le plus difficile, raconte la présidente de l’association, a été de rassurer les commerçants sur "
        "la fréquentation. Beaucoup avaient connu le marché à son déclin et ne voyaient pas pourquoi ils "
        "se lèveraient à cinq heures du matin pour vendre trois salades. L’association a donc organisé, "
        "les premiers dimanches, un petit déjeuner gratuit et des animations pour les enfants, afin "
        "d’attirer du monde dès l’ouverture.",
        "Le pari a fonctionné. Au bout de quelques semaines, les habitants ont pris l’habitude de passer, "
        "puis de rester. Un bouquiniste s’est installé près de la fontaine, un torréfacteur propose "
        "désormais du café à emporter, et une chorale amateur vient chanter un dimanche par mois. La "
        "place, qui était vide le week-end, est redevenue un lieu où l’on se donne rendez-vous.",
        "Tout n’est pas réglé pour autant. Les riverains se plaignent parfois du bruit du montage des "
        "stands, et les commerçants aimeraient un accès à l’eau et à l’électricité que la place n’offre "
        "pas encore. La mairie a promis des travaux pour l’année prochaine, sans calendrier précis.",
        "Pour ceux qui ont porté le projet, l’essentiel est ailleurs. Un marché, disent-ils, n’est pas "
        "seulement un endroit où l’on achète des légumes. C’est une façon de se croiser, de se "
        "reconnaître, de prendre des nouvelles. Et ça, aucun supermarché ne le remplacera.",
    ),
    (
        "Aujourd’hui, on y compte vingt-deux commerçants, et il faut arriver avant dix heures pour trouver "
        "du pain.",
        "La mairie a accepté de suspendre la redevance le temps de l’expérience.",
        "Un bouquiniste s’est installé près de la fontaine, un torréfacteur propose désormais du café à "
        "emporter",
        "les commerçants aimeraient un accès à l’eau et à l’électricité que la place n’offre pas encore.",
        "Et ça, aucun supermarché ne le remplacera.",
    ),
    (
        ("Sophie L.", "Merci pour cet article, j’y vais tous les dimanches avec mes enfants."),
        ("Marc", "Le café du torréfacteur vaut à lui seul le déplacement !"),
        ("riveraine_tilleuls", "Dommage que la mairie ne donne toujours pas de date pour les travaux."),
    ),
    lang="fr",
)


# --- shared page parts ---------------------------------------------------------------------------

CSS = """
:root{--ink:#1d1f21;--muted:#5f6b76;--accent:#0b6bcb;--paper:#fffdf8;--rule:#e4e0d6}
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font:17px/1.6 Georgia,'Times New Roman',serif;color:var(--ink);background:var(--paper)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.site-header,.header,.forum-header{display:flex;align-items:center;gap:2rem;padding:.8rem 2rem;
  border-bottom:1px solid var(--rule);background:#fff;position:sticky;top:0;z-index:10}
nav ul,.menu ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:1.2rem}
.cookie-banner,.cookie-notice,#cookie-law-info-bar,.consent{position:fixed;bottom:0;left:0;right:0;
  padding:1rem 2rem;background:#222;color:#eee;font:14px/1.4 system-ui,sans-serif;z-index:100}
.cookie-banner button,.consent button{margin-left:1rem;padding:.4rem 1rem;border:0;border-radius:3px}
.breadcrumbs ol{list-style:none;display:flex;gap:.5rem;padding:0;font:13px system-ui,sans-serif}
.breadcrumbs li+li::before{content:"/";margin-right:.5rem;color:var(--muted)}
article h1,.post-title h1,.entry-title,.thread-title{font-size:2.2rem;line-height:1.2;margin:1rem 0}
.byline,.post-meta,.entry-meta,.thread-meta{color:var(--muted);font:14px system-ui,sans-serif}
blockquote{margin:1.5rem 0;padding-left:1.2rem;border-left:4px solid var(--accent);font-style:italic}
table{border-collapse:collapse;width:100%;font:15px system-ui,sans-serif}
th,td{border-bottom:1px solid var(--rule);padding:.4rem .6rem;text-align:left}
.related,.widget,.col-side{font:15px/1.4 system-ui,sans-serif}
.newsletter,.subscribe-box,.signup-box,.support-box{margin:2rem 0;padding:1.5rem;background:#f1efe8;
  border-radius:6px}
.comments,.comment-list,.comments-area{margin-top:3rem;font:15px/1.5 system-ui,sans-serif}
.comment,.post{padding:1rem 0;border-top:1px solid var(--rule)}
.site-footer,.footer,#colophon{margin-top:4rem;padding:2rem;background:#1d1f21;color:#c9c9c9;
  font:14px system-ui,sans-serif}
@media (max-width:700px){.content-wrap,.site-content{display:block}.col-side,#secondary{display:none}}
"""

ANALYTICS = """
window.dataLayer = window.dataLayer || [];
function gtag(){dataLayer.push(arguments);}
gtag('consent', 'default', {ad_storage: 'denied', analytics_storage: 'denied', wait_for_update: 500});
gtag('js', new Date());
(function () {
  var s = document.createElement('script');
  s.async = true;
  s.src = 'https://metrics.example/collect.js?id=' + encodeURIComponent(location.hostname);
  document.head.appendChild(s);
  document.addEventListener('click', function (e) {
    var t = e.target.closest('[data-track]');
    if (t) { dataLayer.push({event: 'click', label: t.getAttribute('data-track')}); }
  });
})();
"""

CONSENT_JS = """
(function () {
  var key = 'consent-v3';
  var bar = document.querySelector('[data-consent]');
  if (!bar) { return; }
  if (localStorage.getItem(key)) { bar.hidden = true; }
  bar.addEventListener('click', function (e) {
    var choice = e.target.getAttribute('data-choice');
    if (choice) { localStorage.setItem(key, choice); bar.hidden = true; }
  });
})();
"""


def _url(site: Site, story: Story) -> str:
    d = date.fromisoformat(story.day)
    return f"https://{site.domain}/{story.section}/{d.year}/{d.month:02d}/{story.slug}"


def _head(site: Site, story: Story, meta_charset: str | None = "utf-8") -> str:
    """The ``<head>``: charset (when given), title, social tags, CSS, JSON-LD and analytics."""
    ld = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": story.title,
          "datePublished": story.day, "author": {"@type": "Person", "name": story.author},
          "publisher": {"@type": "Organization", "name": site.name}, "inLanguage": story.lang}
    charset = f'<meta charset="{meta_charset}">\n' if meta_charset else ""
    return (
        f"<head>\n{charset}<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_esc(story.title)} | {_esc(site.name)}</title>\n"
        f'<meta property="og:title" content="{_esc(story.title)}">\n'
        f'<meta property="og:site_name" content="{_esc(site.name)}">\n'
        f'<meta name="author" content="{_esc(story.author)}">\n'
        f'<link rel="canonical" href="{_url(site, story)}">\n'
        f"<style>{CSS}</style>\n"
        f'<script type="application/ld+json">{json.dumps(ld, ensure_ascii=False)}</script>\n'
        f"<script>{ANALYTICS}</script>\n</head>\n"
    )


def _nav_items(site: Site) -> str:
    return "".join(f'<li><a href="/{_slugify(item)}" data-track="nav">{_esc(item)}</a></li>'
                   for item in site.nav)


def _body_blocks(story: Story, para: str = "<p>{}</p>") -> str:
    """The article body as HTML; ``para`` wraps a paragraph (e.g. for ``<br>``-separated text)."""
    out = []
    for block in story.body:
        if block.startswith("## "):
            out.append(f"<h2>{_esc(block[3:])}</h2>")
        elif block.startswith("> "):
            out.append(f"<blockquote><p>{_esc(block[2:])}</p></blockquote>")
        elif block.startswith("@promo "):
            out.append(f'<aside class="inline-promo"><strong>Read more:</strong> '
                       f'<a href="/{_slugify(block[7:])}">{_esc(block[7:])}</a></aside>')
        elif block.startswith("@code "):
            out.append(f"<pre><code>{_esc(block[6:])}</code></pre>")
        elif block == "@table":
            head, *rows = story.table
            cells = "".join(f"<th>{_esc(c)}</th>" for c in head)
            body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>")
        else:
            out.append(para.format(_esc(block)))
    return "\n".join(out)


def _body_with_box(story: Story, box: str, after: int = 3) -> str:
    """The article body with ``box`` (a newsletter or ad unit) inserted after ``after`` blocks, as
    sites place sign-up forms in the middle of a story."""
    first = Story(**{**story.__dict__, "body": story.body[:after]})
    rest = Story(**{**story.__dict__, "body": story.body[after:]})
    return f"{_body_blocks(first)}\n{box}\n{_body_blocks(rest)}"


def _comment_items(story: Story, tag: str = "li", cls: str = "comment") -> str:
    d = date.fromisoformat(story.day)
    return "\n".join(
        f'<{tag} class="{cls}" id="comment-{i + 1}"><div class="comment-author">{_esc(user)}</div>'
        f'<time datetime="{d.isoformat()}">{_human_date(story.day)}</time>'
        f'<p>{_esc(text)}</p><a class="reply" href="#reply-{i + 1}">Reply</a></{tag}>'
        for i, (user, text) in enumerate(story.comments)
    )


def _related_links(headlines: list[str], tag: str = "li") -> str:
    return "".join(f'<{tag}><a href="/{_slugify(h)}">{_esc(h)}</a></{tag}>' for h in headlines)


def _footer_links() -> str:
    return "".join(f'<li><a href="/{_slugify(x)}">{x}</a></li>' for x in
                   ("About us", "Contact", "Careers", "Advertise", "Privacy policy", "Terms of use",
                    "Cookie settings", "Accessibility"))


def _html(lang: str, head: str, body: str) -> str:
    return f"<!DOCTYPE html>\n<html lang=\"{lang}\">\n{head}<body>\n{body}\n" \
           f"<script>{CONSENT_JS}</script>\n</body>\n</html>\n"


# --- layouts -------------------------------------------------------------------------------------


def layout_semantic(site: Site, story: Story, related: list[str], meta_charset: str | None = "utf-8",
                    wrap: str = "article") -> str:
    """HTML5 landmarks: ``<header>``/``<nav>``, ``<main>`` holding an ``<article>`` (or, with
    ``wrap="main"``, the article directly in ``<main>``), an ``<aside>`` of related links, newsletter
    and comment ``<section>``s, and a ``<footer>``."""
    year = story.day[:4]
    byline = (f'<p class="byline">By <a rel="author" href="/authors/{_slugify(story.author)}">'
              f'{_esc(story.author)}</a> · <time datetime="{story.day}">{_human_date(story.day)}'
              f"</time></p>")
    figure = (f'<figure class="lead-image"><img src="/img/{story.slug}.jpg" alt="" width="1200" height="675">'
              f"<figcaption>{_esc(story.title.split(':')[0])}. Photograph: {_esc(site.name)} archive"
              f"</figcaption></figure>")
    more = (f'<div class="more-on-this"><h3>More on this story</h3><ul>{_related_links(related[:2])}</ul>'
            f"</div>")
    article = (f"<header><h1>{_esc(story.title)}</h1>\n{byline}</header>\n"
               f'<div class="story-body">\n{_body_with_box(story, figure, after=2)}\n</div>\n{more}\n'
               f'<footer class="story-tags">Filed under <a href="/{story.section}">'
               f"{_esc(story.section.replace('-', ' ').title())}</a></footer>")
    article = f'<article class="story">\n{article}\n</article>' if wrap == "article" else article
    body = f"""<a class="skip-link" href="#content">Skip to content</a>
<div class="promo-strip" data-track="strip">{_esc(site.extra)}</div>
<header class="site-header"><div class="brand"><a href="/">{_esc(site.name)}</a></div>
<nav class="primary-nav" aria-label="Main"><ul>{_nav_items(site)}</ul></nav>
<form class="search" role="search" action="/search"><input type="search" name="q" placeholder="Search">
<button type="submit">Search</button></form></header>
<div id="cookie-consent" class="cookie-banner" role="dialog" data-consent>
<p>{_esc(site.cookie)}</p><button data-choice="all">Accept all</button>
<button data-choice="necessary">Only necessary</button><a href="/privacy">Manage preferences</a></div>
<nav class="breadcrumbs" aria-label="Breadcrumb"><ol><li><a href="/">Home</a></li>
<li><a href="/{story.section}">{_esc(story.section.replace('-', ' ').title())}</a></li>
<li aria-current="page">{_esc(story.title)}</li></ol></nav>
<main id="content">
{article}
<aside class="related" aria-label="Related articles"><h2>Related articles</h2>
<ul>{_related_links(related[2:])}</ul></aside>
<section class="newsletter"><h2>Newsletter</h2><p>{_esc(site.newsletter)}</p>
<form action="/subscribe"><input type="email" placeholder="you@example.com"><button>Sign up</button></form>
</section>
<section id="comments" class="comments"><h2>{len(story.comments)} comments</h2>
<ol class="comment-list">
{_comment_items(story)}
</ol>
<form class="comment-form"><textarea name="comment" placeholder="Join the discussion"></textarea>
<button>Post comment</button></form></section>
</main>
<footer class="site-footer"><nav aria-label="Footer"><ul>{_footer_links()}</ul></nav>
<p>{_esc(site.footer)}</p><p>© {year} {_esc(site.name)}</p></footer>"""
    return _html(story.lang, _head(site, story, meta_charset), body)


def layout_divsoup(site: Site, story: Story, related: list[str], breaks: bool = False) -> str:
    """Class-named ``<div>``s only: no landmarks. With ``breaks`` the body is one ``<div>`` of text
    separated by ``<br><br>``, as older CMSes write it."""
    body_html = (_body_blocks(story, "{}<br><br>") if breaks else _body_blocks(story))
    comments = "\n".join(
        f'<div class="comment"><div class="c-user">{_esc(user)}</div><div class="c-date">'
        f'{_human_date(story.day)}</div><div class="c-text">{_esc(text)}</div>'
        f'<div class="c-actions"><span class="like">Like</span> <span class="reply">Reply</span></div></div>'
        for user, text in story.comments)
    menu = " | ".join(f'<a href="/{_slugify(x)}">{_esc(x)}</a>' for x in site.nav)
    body = f"""<div id="wrapper">
<div class="topbar"><span class="topbar-promo">{_esc(site.extra)}</span> <a href="/login">Log in</a></div>
<div class="header"><div class="logo"><a href="/">{_esc(site.name)}</a></div>
<div class="menu">{menu}</div></div>
<div class="cookie-notice" data-consent><div class="cookie-text">{_esc(site.cookie)}</div>
<div class="btn" data-choice="ok">OK</div><div class="btn" data-choice="no">No thanks</div></div>
<div class="crumbs"><a href="/">Home</a> &gt; <a href="/{story.section}">{_esc(story.section.title())}</a>
&gt; <span>{_esc(story.title)}</span></div>
<div class="content-wrap"><div class="col-main">
<div class="post-title"><h1>{_esc(story.title)}</h1></div>
<div class="post-meta"><span class="author">{_esc(story.author)}</span> <span class="sep">|</span>
<span class="date">{_human_date(story.day)}</span></div>
<div class="share-bar"><span>Share:</span> <a href="#">Facebook</a> <a href="#">X</a>
<a href="#">Email</a></div>
<div class="post-body">
{body_html}
</div>
<div class="comment-list"><div class="c-head">{len(story.comments)} Comments</div>
{comments}
</div>
</div>
<div class="col-side"><div class="widget related"><div class="widget-title">Most read</div>
{_related_links(related, "div")}
</div>
<div class="widget subscribe-box"><div class="sb-text">{_esc(site.newsletter)}</div>
<input type="email" placeholder="Email address"><div class="btn">Subscribe</div></div>
<div class="widget ad-slot" id="ad-mpu-1"></div></div>
</div>
<div class="site-footer"><div class="links">{" · ".join(
        f'<a href="/{_slugify(x)}">{x}</a>' for x in ("About", "Contact", "Advertise", "Privacy"))}</div>
<div class="copy">{_esc(site.footer)}</div></div>
</div>"""
    return _html(story.lang, _head(site, story), body)


def _blog_comments(story: Story) -> str:
    """WordPress's threaded comments: ``.comment-body`` with author, time and a reply link."""
    return "\n".join(
        f'<li class="comment even depth-1" id="comment-{i + 1}"><article class="comment-body">'
        f'<footer class="comment-meta"><div class="comment-author vcard"><b class="fn">{_esc(user)}</b> '
        f'<span class="says">says:</span></div><div class="comment-metadata"><time>'
        f"{_human_date(story.day)} at {9 + i}:1{i} am</time></div></footer>"
        f'<div class="comment-content"><p>{_esc(text)}</p></div>'
        f'<div class="reply"><a rel="nofollow" class="comment-reply-link" href="#respond">Reply</a></div>'
        f"</article></li>"
        for i, (user, text) in enumerate(story.comments))


def layout_blog(site: Site, story: Story, related: list[str]) -> str:
    """A WordPress-like single post: ``#masthead``, ``.entry-content``, threaded ``#comments`` with a
    reply form, a ``#secondary`` widget sidebar and a cookie plugin bar at the end of the body."""
    body = f"""<div id="page" class="site">
<a class="skip-link screen-reader-text" href="#primary">Skip to content</a>
<header id="masthead" class="site-header"><div class="site-branding">
<p class="site-title"><a href="/" rel="home">{_esc(site.name)}</a></p></div>
<nav id="site-navigation" class="main-navigation"><ul id="primary-menu" class="menu">{_nav_items(site)}</ul>
</nav></header>
<div id="content" class="site-content"><div id="primary" class="content-area">
<main id="main" class="site-main">
<article id="post-{len(story.slug) * 37}" class="post type-post status-publish format-standard hentry">
<header class="entry-header"><h1 class="entry-title">{_esc(story.title)}</h1>
<div class="entry-meta"><span class="posted-on">Posted on <time class="entry-date published"
 datetime="{story.day}T08:00:00+00:00">{_human_date(story.day)}</time></span><span class="byline"> by
<span class="author vcard"><a class="url fn n" href="/author/{_slugify(story.author)}">
{_esc(story.author)}</a>
</span></span></div></header>
<div class="entry-content">
{_body_blocks(story)}
</div>
<footer class="entry-footer"><span class="cat-links">Posted in <a href="/{story.section}" rel="category">
{_esc(story.section.replace('-', ' ').title())}</a></span></footer>
</article>
<nav class="navigation post-navigation" aria-label="Posts"><div class="nav-links">
<div class="nav-previous"><a href="/{_slugify(related[0])}" rel="prev">{_esc(related[0])}</a></div>
<div class="nav-next"><a href="/{_slugify(related[1])}" rel="next">{_esc(related[1])}</a></div></div></nav>
<div id="comments" class="comments-area"><h2 class="comments-title">{len(story.comments)} thoughts on
“{_esc(story.title)}”</h2>
<ol class="comment-list">
{_blog_comments(story)}
</ol>
<div id="respond" class="comment-respond"><h3 id="reply-title" class="comment-reply-title">Leave a Reply</h3>
<form action="/wp-comments-post.php" method="post" id="commentform" class="comment-form">
<p class="comment-notes">Your email address will not be published. Required fields are marked *</p>
<textarea id="comment" name="comment"></textarea><input name="author" type="text">
<input type="submit" class="submit" value="Post Comment"></form></div></div>
</main></div>
<aside id="secondary" class="widget-area">
<section class="widget widget_text"><h2 class="widget-title">About</h2><div class="textwidget">
<p>{_esc(site.extra)}</p></div></section>
<section class="widget widget_recent_entries"><h2 class="widget-title">Recent Posts</h2>
<ul>{_related_links(related[2:])}</ul></section>
<section class="widget widget_subscribe"><h2 class="widget-title">Follow by email</h2>
<p>{_esc(site.newsletter)}</p><form><input type="email"><button>Follow</button></form></section>
</aside></div>
<footer id="colophon" class="site-footer"><div class="site-info">{_esc(site.footer)}</div></footer>
</div>
<div id="cookie-law-info-bar" data-consent><span>{_esc(site.cookie)}</span>
<a role="button" data-choice="accept" class="cli-plugin-button">Accept</a>
<a role="button" data-choice="settings" class="cli_settings_button">Cookie settings</a></div>"""
    return _html(story.lang, _head(site, story), body)


FORUM_STATS = "There are 214 members and 1,083 guests browsing the forums right now."


def layout_forum(site: Site, story: Story, related: list[str]) -> str:
    """A forum thread: the opening post (the article, with a signature under it), replies in the
    same ``.post`` markup, "similar threads", a registration prompt and board statistics."""
    def post(n: int, user: str, title: str, html: str, signature: str = "") -> str:
        sig = f'<div class="signature">{_esc(signature)}</div>' if signature else ""
        return (f'<div class="post" id="post-{n}"><div class="post-sidebar"><div class="username">'
                f'{_esc(user)}</div><div class="user-title">{title}</div><div class="post-count">'
                f"Posts: {97 * n + 215}</div></div><div class=\"post-main\"><div class=\"post-date\">"
                f"{_human_date(story.day)} · #{n}</div><div class=\"post-content\">{html}</div>{sig}"
                f"</div></div>")

    posts = [post(1, story.author, "Senior member", _body_blocks(story), site.extra)]
    posts += [post(i + 2, user, "Member", f"<p>{_esc(text)}</p>")
              for i, (user, text) in enumerate(story.comments)]
    posts_html = "\n".join(posts)
    body = f"""<div class="forum-header"><div class="logo"><a href="/">{_esc(site.name)}</a></div>
<ul class="forum-nav">{_nav_items(site)}</ul></div>
<div class="consent" data-consent><p>{_esc(site.cookie)}</p><button data-choice="ok">Got it</button></div>
<div class="breadcrumb"><a href="/forums">Forums</a> › <a href="/forums/{story.section}">
{_esc(story.section.replace('-', ' ').title())}</a> › <span>{_esc(story.title)}</span></div>
<div class="notice">Please read the forum rules before posting photos of machines for sale.</div>
<h1 class="thread-title">{_esc(story.title)}</h1>
<div class="thread-meta">Started by {_esc(story.author)}, {_human_date(story.day)} ·
{len(story.comments)} replies · 1,204 views</div>
<div class="posts">
{posts_html}
</div>
<div class="pagination"><span>Page 1 of 1</span></div>
<div class="similar-threads"><h3>Similar threads</h3><ul>{_related_links(related)}</ul></div>
<div class="signup-box"><p>{_esc(site.newsletter)}</p><a class="button" href="/register">Register</a></div>
<div class="forum-stats">{FORUM_STATS}</div>
<div class="footer"><ul>{_footer_links()}</ul><p>{_esc(site.footer)}</p></div>"""
    return _html(story.lang, _head(site, story), body)


def layout_magazine(site: Site, story: Story, related: list[str]) -> str:
    """An ``<article>`` holding more than the story: share buttons, inline "Read more" promos, a
    support box and an author bio inside it; comments after it; a mega-footer."""
    body = f"""<header class="site-header"><a class="logo" href="/">{_esc(site.name)}</a>
<nav><ul>{_nav_items(site)}</ul></nav><a class="button" href="/subscribe">Subscribe</a></header>
<div class="consent" data-consent role="alertdialog"><p>{_esc(site.cookie)}</p>
<button data-choice="accept">I agree</button><button data-choice="options">Options</button></div>
<div class="market-ticker">{_esc(site.extra)}</div>
<article class="longform" itemscope itemtype="https://schema.org/Article">
<p class="kicker"><a href="/{story.section}">{_esc(story.section.title())}</a></p>
<h1 itemprop="headline">{_esc(story.title)}</h1>
<div class="byline">Words by <span itemprop="author">{_esc(story.author)}</span>,
<time itemprop="datePublished" datetime="{story.day}">{_human_date(story.day)}</time> · 6 min read</div>
<ul class="share"><li><a href="#">Share on Facebook</a></li><li><a href="#">Share on LinkedIn</a></li>
<li><a href="#">Copy link</a></li></ul>
<div class="article-body" itemprop="articleBody">
{_body_with_box(story, f'<div class="newsletter-inline"><p>{_esc(site.newsletter)}</p>'
                       '<input type="email"><button>Sign up</button></div>')}
</div>
<div class="support-box"><p>If you value reporting like this, please consider supporting us.</p>
<a href="/support">Support us</a></div>
<div class="author-bio"><p>{_esc(story.author)} is a contributor to {_esc(site.name)}.</p></div>
</article>
<section class="more-stories"><h2>More from {_esc(site.name)}</h2><ul>{_related_links(related)}</ul></section>
<div class="newsletter"><h3>Newsletter</h3><p>{_esc(site.newsletter)}</p>
<form><input type="email"><button>Sign me up</button></form></div>
<section class="comments"><h2>Readers' comments</h2><ul class="comment-list">
{_comment_items(story)}
</ul></section>
<footer class="site-footer"><div class="cols"><ul>{_footer_links()}</ul></div>
<p>{_esc(site.footer)}</p><p>© {story.day[:4]} {_esc(site.name)}. All rights reserved.</p></footer>"""
    return _html(story.lang, _head(site, story), body)


SPONSORED = "Sponsored: compare green energy tariffs in two minutes and switch today."


def layout_newsroom(site: Site, story: Story, related: list[str]) -> str:
    """A newsroom CMS page: ``<div>``s with schema.org microdata (``itemprop="articleBody"``), a
    trending bar, a sidebar of related links and an embedded comments widget."""
    ad = f'<div class="ad-label">Advertisement</div><div class="ad-unit"><p>{SPONSORED}</p></div>'
    body = f"""<div class="breaking-bar"><strong>{_esc(site.extra)}</strong></div>
<div class="masthead"><a href="/" class="logo">{_esc(site.name)}</a>
<div class="menu"><ul>{_nav_items(site)}</ul></div></div>
<div class="cookie-banner" data-consent><p>{_esc(site.cookie)}</p>
<button data-choice="ok">Accept</button></div>
<div class="page"><div class="breadcrumbs"><ol><li><a href="/">Home</a></li>
<li><a href="/{story.section}">{_esc(story.section.title())}</a></li></ol></div>
<div class="story" itemscope itemtype="https://schema.org/NewsArticle">
<h1 class="headline" itemprop="headline">{_esc(story.title)}</h1>
<div class="meta">By <span class="author" itemprop="author">{_esc(story.author)}</span> on
<span class="date" itemprop="datePublished" content="{story.day}">{_human_date(story.day)}</span></div>
<div class="story-text" itemprop="articleBody">
{_body_with_box(story, ad)}
</div></div>
<div class="sidebar"><h3>Trending</h3><ul>{_related_links(related)}</ul>
<div class="subscribe-box"><p>{_esc(site.newsletter)}</p><input type="email"><button>Subscribe</button></div>
</div>
<div id="comments-widget" class="comments"><h3>Join the conversation</h3><div class="comment-list">
{_comment_items(story, "div")}
</div></div></div>
<div class="footer"><ul>{_footer_links()}</ul><p>{_esc(site.footer)}</p></div>"""
    return _html(story.lang, _head(site, story), body)


def _css_class(role: str) -> str:
    """A CSS-in-JS style class name (``css-1k9x2q``): stable for a role, telling nothing about it."""
    import hashlib

    return "css-" + hashlib.sha1(role.encode()).hexdigest()[:6]


def layout_hashed(site: Site, story: Story, related: list[str]) -> str:
    """A client-rendered app page (Next.js style): no landmarks, no article tag, only generated class
    names, so nothing in the markup says which ``<div>`` holds comments, the newsletter box (placed
    inside the story) or the related links; the page state is repeated in a JSON ``<script>``."""
    c = _css_class
    paragraph = f'<p class="{c("p")}">{{}}</p>'
    box = (f'<div class="{c("box")}"><div class="{c("box-t")}">{_esc(site.newsletter)}</div>'
           f'<input class="{c("in")}" type="email" placeholder="Email"><button class="{c("btn")}">'
           f"Sign up</button></div>")
    first = Story(**{**story.__dict__, "body": story.body[:4]})
    rest = Story(**{**story.__dict__, "body": story.body[4:]})
    story_html = f"{_body_blocks(first, paragraph)}\n{box}\n{_body_blocks(rest, paragraph)}"
    cards = "".join(f'<a class="{c("card")}" href="/{_slugify(h)}"><div class="{c("card-t")}">{_esc(h)}'
                    f'</div><div class="{c("card-m")}">4 min read</div></a>' for h in related)
    replies = "".join(
        f'<div class="{c("r")}"><div class="{c("r-u")}">{_esc(user)}</div><div class="{c("r-d")}">'
        f'{_human_date(story.day)}</div><div class="{c("r-t")}">{_esc(text)}</div>'
        f'<button class="{c("btn")}">Reply</button></div>'
        for user, text in story.comments)
    state = {"props": {"pageProps": {"slug": story.slug, "title": story.title, "author": story.author,
                                      "related": related, "flags": {"paywall": False, "ads": True}}},
             "page": "/[section]/[slug]", "buildId": "b7c1e2"}
    nav = "".join(f'<a class="{c("nav-a")}" href="/{_slugify(x)}">{_esc(x)}</a>' for x in site.nav)
    links = " ".join(f'<a href="/{_slugify(x)}">{x}</a>' for x in ("About", "Jobs", "Privacy"))
    body = f"""<div id="__next"><div class="{c("app")}">
<div class="{c("hdr")}"><a class="{c("logo")}" href="/">{_esc(site.name)}</a>
<div class="{c("nav")}">{nav}</div></div>
<div class="{c("cb")}" data-consent><span>{_esc(site.cookie)}</span>
<button class="{c("btn")}" data-choice="yes">Accept</button></div>
<div class="{c("wrap")}"><div class="{c("crumb")}"><a href="/">Home</a><span>/</span>
<a href="/{story.section}">{_esc(story.section.title())}</a></div>
<div class="{c("head")}"><h1 class="{c("h1")}">{_esc(story.title)}</h1>
<div class="{c("by")}"><span>{_esc(story.author)}</span><span>{_human_date(story.day)}</span></div></div>
<div class="{c("body")}">
{story_html}
</div>
<div class="{c("more")}"><h2 class="{c("h2")}">You might also like</h2>
<div class="{c("cards")}">{cards}</div></div>
<div class="{c("talk")}"><h2 class="{c("h2")}">{len(story.comments)} responses</h2>{replies}</div>
</div>
<div class="{c("ftr")}"><div>{links}</div><div>{_esc(site.footer)}</div></div></div></div>
<script id="__NEXT_DATA__" type="application/json">{json.dumps(state)}</script>"""
    return _html(story.lang, _head(site, story), body)


# --- the corpus ----------------------------------------------------------------------------------

# (story, site key, layout); each layout is called as layout(site, story, related headlines).
ARTICLES = (
    (FERRY, "ledger", layout_semantic),
    (COMPOST, "record", layout_divsoup),
    (SOURDOUGH, "crumb", layout_blog),
    (TYPEWRITER, "platen", layout_forum),
    (DATACENTRE, "circuit", layout_semantic),
    (NOTEBOOK, "longhand", layout_magazine),
    (COMET, "skyward", layout_hashed),
    (CHESS, "sports", lambda site, story, rel: layout_divsoup(site, story, rel, breaks=True)),
    (BACKUPS, "ops", layout_blog),
    (BEES, "greenline", layout_newsroom),
    (LUNCH, "northgate", layout_magazine),
    (NOVEL, "margins", lambda site, story, rel: layout_semantic(site, story, rel, wrap="main")),
    (RADWEGE, "kreisbote", layout_divsoup),
    (MARCHE, "carnets", layout_blog),
)


def _boilerplate(site: Site, story: Story, related: list[str], forum: bool,
                 sponsored: bool) -> list[str]:
    """Six sentences of the page that are not the article: banner, newsletter, a related headline
    (or the article's inline promo or sponsored unit), two comments (or, on a forum, the signature
    and board statistics, since replies there are arguably content) and the footer."""
    promos = [b[7:] for b in story.body if b.startswith("@promo ")]
    link = promos[0] if promos else SPONSORED if sponsored else related[0]
    if forum:
        middle = [site.extra, FORUM_STATS]
    else:
        middle = [_first_sentence(text) for _, text in story.comments[:2]]
    return [_first_sentence(site.cookie), site.newsletter, link, *middle, _first_sentence(site.footer)]


def article_pages() -> list[Page]:
    """Fourteen article pages (twelve English, one German, one French) in seven layouts, UTF-8 and
    labelled so, each with five main-text sentences and six boilerplate sentences."""
    pages = []
    for i, (story, key, layout) in enumerate(ARTICLES):
        site = SITES[key]
        related = _related(story.lang, i)
        html = layout(site, story, related)
        pages.append(Page(
            url=_url(site, story), html=html.encode("utf-8"), charset_header="utf-8",
            main_snippets=list(story.main),
            boilerplate_snippets=_boilerplate(site, story, related, layout is layout_forum,
                                              layout is layout_newsroom),
            name=story.slug, lang=story.lang,
        ))
    return pages


def short_article_page() -> Page:
    """A complete page whose article is two sentences: what the length filters are for."""
    story = Story(
        "harbour-wall-repairs", "news", "Harbour wall repairs start on Monday", "Maren Solberg",
        "2024-04-02",
        ("Repairs to the damaged section of the north harbour wall begin on Monday and are expected to "
         "last three weeks. The slipway stays open throughout.",),
        ("Repairs to the damaged section of the north harbour wall begin on Monday",),
        (("harbourwatcher", "About time too."),),
    )
    site = SITES["ledger"]
    return Page(_url(site, story), layout_semantic(site, story, _related("en", 5)).encode(), "utf-8",
                list(story.main), [_first_sentence(site.cookie)], name="short")


def repetitive_page() -> Page:
    """A page whose "article" is the same line sixty times: spam the Gopher rules must reject.

    The line is shorter than 50 characters on purpose: trafilatura (2.3) itself drops a block that
    repeats the previous one when it is longer than that, even with ``deduplicate=False``, and the
    page would then fail the length filter before any quality rule sees it.
    """
    line = "Cheap replica watches, free shipping today."
    story = Story("cheap-watches", "deals", "Cheap watches", "admin", "2024-01-01", (line,) * 60,
                  (line,), (("bot", "Great post, visit my site."),))
    site = SITES["record"]
    return Page(_url(site, story), layout_semantic(site, story, _related("en", 2)).encode(), "utf-8",
                [line], [], name="repetitive")


# --- encodings -----------------------------------------------------------------------------------

SITES.update({
    "corner": Site(
        "The Corner Table", "cornertable.example", ("Reviews", "Recipes", "Markets", "About"),
        "We use one cookie to count visitors and nothing else.",
        "Get new reviews by email — once a week, no spam.",
        "All reviews are paid for by The Corner Table; we never accept free meals.",
        "New: our guide to the city’s best bakeries.",
    ),
    "valjournal": Site(
        "Le Journal du Val", "journalduval.example", ("Actualités", "Sports", "Culture", "Agenda"),
        "Nous utilisons des cookies pour améliorer votre expérience et mesurer l’audience du site.",
        "Inscrivez-vous à notre lettre d’information pour recevoir l’agenda du week-end.",
        "Reproduction interdite sans l’accord écrit de la rédaction.",
        "Météo : éclaircies prévues samedi après-midi.",
    ),
    "machi": Site(
        "まちの便り", "machi-dayori.example", ("ニュース", "くらし", "商店街", "イベント", "お問い合わせ"),
        "当サイトでは、利便性向上のためにクッキーを使用しています。",
        "地域の最新ニュースを毎朝メールでお届けします。",
        "掲載記事の無断転載を禁じます。",
        "今週の特集：商店街の魅力を再発見",
    ),
    "bergblick": Site(
        "Bergblick Magazin", "bergblick.example", ("Touren", "Hütten", "Ausrüstung", "Menschen"),
        "Diese Website verwendet Cookies, damit sie zuverlässig funktioniert.",
        "Unser Newsletter bringt Ihnen jeden Freitag die schönsten Touren für das Wochenende.",
        "Alle Angaben zu Touren ohne Gewähr. Am Berg ist jeder für sich selbst verantwortlich.",
        "Lawinenlagebericht: Warnstufe zwei oberhalb von 2.000 Metern.",
    ),
    "diariosur": Site(
        "Diario del Sur", "diariodelsur.example", ("Portada", "Comarca", "Cultura", "Deportes"),
        "Utilizamos cookies propias y de terceros para analizar el uso de la web.",
        "Suscríbete al boletín y recibe cada mañana las noticias de la comarca.",
        "Queda prohibida la reproducción total o parcial de los contenidos sin autorización.",
        "Última hora: cortes de tráfico en la carretera de la sierra por obras.",
    ),
    "dvor": Site(
        "Наш район", "nash-rayon.example", ("Новости", "Город", "Люди", "Афиша"),
        "Мы используем файлы cookie, чтобы сайт работал удобнее.",
        "Подпишитесь на рассылку и получайте новости района каждую пятницу.",
        "Перепечатка материалов возможна только с разрешения редакции.",
        "Внимание: в субботу во дворах района отключат горячую воду.",
    ),
})

RELATED.update({
    "ja": ("駅前広場の再整備、来年度に着工へ", "夏祭りの準備が始まりました", "図書館の開館時間が延長に",
           "新しいパン屋さんが商店街にオープン"),
    "es": ("La feria del queso vuelve en octubre", "El pantano alcanza su nivel más alto en años",
           "Nuevo horario del centro de salud", "Los vecinos piden más frecuencias de autobús"),
    "ru": ("В парке появятся новые скамейки", "Библиотека продлила часы работы",
           "Школьники высадили аллею лип", "На рынке открылся новый павильон"),
})

CAFE = Story(
    "cafe-delice-morning", "reviews",
    "A morning at Café Délice, where the croissants run out by nine",
    "Imogen Hart", "2023-04-18",
    (
        "Café Délice opens at half past six, and by seven the queue reaches the bus stop. The owner, "
        "Hélène Marchetti, bakes everything on the premises — croissants, pains au chocolat, a lemon "
        "tart that regulars describe in slightly alarming terms — and when a tray is gone, it’s gone.",
        "“People ask me to make more,” she told me, wiping flour from her hands onto an apron that had "
        "clearly absorbed years of it. “But if I make more, I have to start at two instead of three, and "
        "then I am not a baker, I am a ghost.”",
        "The café itself is tiny: five tables, a counter, a bench by the window that seats three if "
        "they’re friends. The coffee is made on a machine that Hélène’s father bought second-hand in "
        "1987 and that she refuses to replace. It makes a noise like a small train and produces, I have "
        "to admit, an excellent café crème.",
        "Her regulars include nurses coming off night shifts, a group of retired postmen who meet every "
        "Thursday, and a novelist who writes longhand at the corner table and asks for “the usual” "
        "without ever specifying what it is. Hélène always knows.",
        "She doesn’t advertise, doesn’t have a website, and has politely declined two offers to open a "
        "second branch. “A second café would need a second me,” she said. “There is only one, and she "
        "is tired.”",
        "I left at a quarter to nine with the last almond croissant, a receipt written in pencil and a "
        "strong suspicion that I’ll be back before the week is out — early, this time.",
    ),
    (
        "bakes everything on the premises — croissants, pains au chocolat, a lemon tart",
        "“But if I make more, I have to start at two instead of three, and then I am not a baker, I am "
        "a ghost.”",
        "a bench by the window that seats three if they’re friends.",
        "asks for “the usual” without ever specifying what it is. Hélène always knows.",
        "I’ll be back before the week is out — early, this time.",
    ),
    (("croissant_critic", "The lemon tart is worth the queue, trust me."),
     ("Noémie", "Please don’t make this place famous, I need my table.")),
)

FETE = Story(
    "fete-de-la-musique-saint-aubin", "culture",
    "Œuvres d’été : la fête de la musique revient à Saint-Aubin",
    "Thierry Vasseur", "2023-06-19",
    (
        "Après deux années d’interruption, la fête de la musique revient ce samedi à Saint-Aubin, avec "
        "une programmation qui mêle fanfares, chorales d’enfants et groupes de rock du lycée. Le comité "
        "des fêtes promet « une soirée où chacun trouvera son bonheur », de la place de l’Église "
        "jusqu’aux bords du canal.",
        "Cette année, l’accent est mis sur les musiciens amateurs. Plus de quarante formations se sont "
        "inscrites, un record pour une commune de trois mille habitants. Les organisateurs ont dû "
        "ajouter une quatrième scène, installée dans la cour de l’ancienne école, où se produiront "
        "notamment les élèves de l’atelier de jazz.",
        "Le cœur de la soirée restera le concert de l’harmonie municipale, fondée en 1898 et dirigée "
        "depuis douze ans par Françoise Leclère. « Nous avons travaillé tout l’hiver sur un répertoire "
        "de musiques de films », confie la cheffe, qui espère attirer un public plus jeune que "
        "d’habitude.",
        "Côté pratique, la circulation sera interdite dans le centre-bourg à partir de dix-sept heures. "
        "Des navettes gratuites relieront les parkings de la salle polyvalente et de la gare. Les "
        "bénévoles tiendront une buvette et un stand de crêpes dont les bénéfices financeront le voyage "
        "scolaire des élèves de CM2.",
        "En cas de pluie, les concerts seront déplacés sous la halle du marché et dans l’église, où "
        "l’acoustique, assure le maire, « est meilleure que dans bien des salles de concert ». Les "
        "organisateurs conseillent tout de même d’apporter un vêtement chaud : les soirées au bord du "
        "canal sont souvent plus fraîches qu’on ne le croit.",
        "Le programme complet est affiché en mairie et chez les commerçants du bourg. Le feu "
        "d’artifice, lui, sera tiré à vingt-trois heures depuis le pont, comme le veut la tradition.",
    ),
    (
        "« une soirée où chacun trouvera son bonheur »",
        "Le cœur de la soirée restera le concert de l’harmonie municipale, fondée en 1898 et dirigée "
        "depuis douze ans par Françoise Leclère.",
        "Les bénévoles tiendront une buvette et un stand de crêpes dont les bénéfices financeront le "
        "voyage scolaire des élèves de CM2.",
        "les soirées au bord du canal sont souvent plus fraîches qu’on ne le croit.",
    ),
    (("Gérard", "Vivement samedi, les crêpes de l’an dernier étaient excellentes !"),
     ("mélomane_71", "Dommage qu’il n’y ait pas de scène électro cette année.")),
    lang="fr",
)

SENTO = Story(
    "matsunoyu-closing", "kurashi",
    "商店街の銭湯「松の湯」、八十年の歴史に幕",
    "佐藤美咲", "2024-02-08",
    (
        "駅前の商店街で八十年にわたって営業してきた銭湯「松の湯」が、今月末で閉店することになった。三代目"
        "の店主である田村健一さんは、燃料費の高騰と設備の老朽化を理由に挙げ、「常連さんには本当に申し訳な"
        "いが、これ以上続けるのは難しい」と話している。",
        "松の湯は昭和の初めに創業し、戦後の復興期には近くの工場で働く人々でにぎわった。最盛期には一日に六"
        "百人以上が訪れたというが、家庭に風呂が普及するにつれて客足は少しずつ減り、最近では平日の利用者は"
        "百人ほどにとどまっていた。",
        "それでも、この銭湯を心のよりどころにしてきた人は少なくない。毎日夕方に通っているという八十代の女"
        "性は、「ここで近所の人と話すのが一日の楽しみだった。閉まったら、どこで顔を合わせればいいのか」と"
        "寂しそうに語った。",
        "閉店の知らせが広まると、若い世代の利用者も目立つようになった。壁に描かれた富士山のペンキ絵を写真"
        "に収めようと、遠方から訪れる人もいる。店主の田村さんは、「最後にこんなににぎやかになるとは思わな"
        "かった」と笑顔を見せた。",
        "商店街の振興組合では、建物を地域の交流拠点として活用できないか検討を始めている。浴場としての営業"
        "は終わっても、長く親しまれてきた場所を何らかの形で残したいという声が多く寄せられているという。",
        "最終営業日の三十一日には、常連客への感謝を込めて入浴料を半額にする予定だ。田村さんは「最後の日ま"
        "で、いつも通りお湯を沸かして皆さんを待ちたい」と話している。",
    ),
    (
        "三代目の店主である田村健一さんは、燃料費の高騰と設備の老朽化を理由に挙げ",
        "最盛期には一日に六百人以上が訪れたという",
        "壁に描かれた富士山のペンキ絵を写真に収めようと、遠方から訪れる人もいる。",
        "「最後の日まで、いつも通りお湯を沸かして皆さんを待ちたい」",
    ),
    (("常連客", "子どもの頃から通っていました。本当にさびしいです。"),
     ("山田", "建物だけでも残るといいですね。")),
    lang="ja",
)

HUETTE = Story(
    "huettenwirt-im-ruhestand", "menschen",
    "Hüttenwirt im Ruhestand: Ein Sommer ohne Gäste",
    "Lena Auer", "2023-08-03",
    (
        "Dreiunddreißig Sommer lang hat Georg Häusler die Falkenhütte auf 1.900 Metern bewirtschaftet. Er "
        "hat Suppe für Tausende Wanderer gekocht, verirrte Bergsteiger bei Nebel ins Tal begleitet und im "
        "Winter die Vorräte auf dem Rücken hinaufgetragen, wenn die Materialseilbahn wieder einmal "
        "streikte. In diesem Jahr ist er zum ersten Mal nicht oben.",
        "„Ich wache immer noch um fünf Uhr auf und schaue aus dem Fenster, ob es regnet“, sagt Häusler "
        "und lacht. „Dann fällt mir ein, dass es mich nichts mehr angeht.“ Seine Nachfolgerin, eine junge "
        "Köchin aus dem Nachbartal, hat die Hütte im Mai übernommen und bereits einiges verändert: Es gibt "
        "jetzt vegetarische Knödel und eine Kartenzahlung.",
        "Über die Kartenzahlung kann Häusler nur den Kopf schütteln. Jahrzehntelang habe er Wanderern, "
        "die kein Bargeld dabeihatten, einfach einen Zettel geschrieben, erzählt er. Fast alle hätten das "
        "Geld später per Post geschickt, manche mit einem Brief dazu, einer sogar mit einem Foto seiner "
        "Enkelkinder vor der Hütte. „Das waren vielleicht 15 € pro Jahr, die nie zurückkamen. Das war es "
        "mir wert.“",
        "Leicht war das Leben auf der Hütte nicht immer. Der Wasserspeicher fror zweimal ein, ein Blitz "
        "beschädigte die Solaranlage, und in einem besonders nassen Sommer kamen so wenige Gäste, dass er "
        "überlegte aufzuhören. Geblieben ist er wegen der Abende, sagt er, wenn die letzten Tagesgäste "
        "abgestiegen waren und es still wurde.",
        "Im Ruhestand will Häusler nun endlich die Gipfel besteigen, die er jahrelang nur vom "
        "Küchenfenster aus gesehen hat. Den ersten hat er schon geschafft. Oben, erzählt er, habe er sich "
        "umgedreht und auf die Hütte hinuntergeschaut – und sich gefragt, ob dort jemand gerade die Suppe "
        "anbrennen lässt.",
    ),
    (
        "Dreiunddreißig Sommer lang hat Georg Häusler die Falkenhütte auf 1.900 Metern bewirtschaftet.",
        "„Ich wache immer noch um fünf Uhr auf und schaue aus dem Fenster, ob es regnet“",
        "„Das waren vielleicht 15 € pro Jahr, die nie zurückkamen. Das war es mir wert.“",
        "auf die Hütte hinuntergeschaut – und sich gefragt, ob dort jemand gerade die Suppe anbrennen "
        "lässt.",
    ),
    (("Bergfex", "Die beste Gerstensuppe der Alpen, danke für alles, Georg!"),
     ("M. Grüner", "Kartenzahlung auf der Hütte, ich weiß nicht, ob mir das gefällt.")),
    lang="de",
)

BIBLIO = Story(
    "biblioteca-movil-sierra", "comarca",
    "La biblioteca móvil que recorre los pueblos de la sierra",
    "Álvaro Gutiérrez", "2024-03-05",
    (
        "Cada martes, a las ocho de la mañana, un autobús reconvertido sale de la capital de la comarca "
        "cargado con más de tres mil libros. Es la biblioteca móvil de la sierra, y durante el día "
        "visitará siete pueblos en los que no hay librería, ni biblioteca, y en algunos casos tampoco "
        "escuela.",
        "Al volante va Begoña Ibáñez, bibliotecaria desde hace veinte años, que conoce de memoria los "
        "gustos de sus lectores. “A la señora Remedios le guardo siempre las novelas de misterio, y a los "
        "niños de Peñaflor los cómics de piratas”, cuenta mientras aparca en la plaza, junto a la fuente.",
        "El servicio nació hace tres décadas como un proyecto provisional y ha sobrevivido a varios "
        "recortes. Hoy presta unos nueve mil libros al año, además de ayudar a los vecinos mayores con "
        "trámites por internet y de organizar clubes de lectura en los bares de los pueblos durante el "
        "invierno.",
        "¿Por qué no basta con los libros electrónicos? Begoña se ríe. “Aquí la cobertura va y viene, y "
        "la mitad de mis lectores tiene más de setenta años. Además, la gente no viene solo por los "
        "libros: viene a charlar, a preguntar por los nietos, a quejarse del tiempo.”",
        "La diputación ha anunciado que renovará el vehículo el año que viene, con calefacción y una "
        "rampa para sillas de ruedas. Los vecinos, por su parte, han pedido algo más sencillo: que el "
        "autobús se quede media hora más en cada parada.",
    ),
    (
        "Al volante va Begoña Ibáñez, bibliotecaria desde hace veinte años",
        "“A la señora Remedios le guardo siempre las novelas de misterio, y a los niños de Peñaflor los "
        "cómics de piratas”",
        "¿Por qué no basta con los libros electrónicos?",
        "que el autobús se quede media hora más en cada parada.",
    ),
    (("Remedios", "¡Gracias, Begoña! Ya he terminado la última novela."),
     ("lector_serrano", "Un servicio público que funciona, ojalá lo copien en otras comarcas.")),
    lang="es",
)

MASTERSKAYA = Story(
    "velomasterskaya-vo-dvore", "lyudi",
    "Во дворе на Садовой открыли бесплатную мастерскую для велосипедов",
    "Ольга Смирнова", "2023-07-21",
    (
        "В одном из дворов на Садовой улице этой весной появилась необычная мастерская. Под навесом у "
        "стены старой котельной стоят верстак, стойка для ремонта и шкаф с инструментами, которыми может "
        "бесплатно воспользоваться любой житель района.",
        "Идея принадлежит Андрею Ковалёву, инженеру на пенсии, который много лет чинил велосипеды "
        "соседским детям у себя в гараже. «Очередь становилась всё длиннее, а гараж не резиновый», — "
        "смеётся он. Управляющая компания согласилась выделить место, а инструменты купили вскладчину.",
        "Мастерская работает по субботам с десяти утра до шести вечера. Андрей Петрович и ещё несколько "
        "добровольцев подсказывают, как заклеить камеру, отрегулировать тормоза или заменить цепь, но "
        "принципиально не делают работу за других. «Если человек один раз сам починил велосипед, в "
        "следующий раз он уже не испугается», — уверен он.",
        "За первые два месяца здесь побывали больше двухсот человек. Среди них школьники, курьеры, "
        "пенсионеры и даже одна семья, которая приехала из соседнего района с четырьмя велосипедами в "
        "багажнике.",
        "Осенью организаторы хотят утеплить навес, чтобы мастерская могла работать и зимой, когда многие "
        "переходят на лыжи, но самые упорные продолжают ездить на работу на велосипеде.",
    ),
    (
        "«Очередь становилась всё длиннее, а гараж не резиновый»",
        "но принципиально не делают работу за других.",
        "За первые два месяца здесь побывали больше двухсот человек.",
        "Осенью организаторы хотят утеплить навес",
    ),
    (("Дима", "Был в прошлую субботу, поменяли цепь за полчаса. Спасибо!"),
     ("соседка", "Хорошее дело, только бы зимой не закрылись.")),
    lang="ru",
)


def _encoded(story: Story, site_key: str, index: int, encoding: str, charset_header: str | None,
             meta: str | None, bom: bool = False) -> Page:
    """``story`` on a semantic page encoded with ``encoding``; ``meta`` is the ``<meta>`` charset
    declaration written into the page (None: none), ``charset_header`` what HTTP claims."""
    site = SITES[site_key]
    related = _related(story.lang, index)
    html = layout_semantic(site, story, related, meta_charset=None)
    if meta:
        html = html.replace("<head>\n", f"<head>\n{meta}\n", 1)
    # Characters the charset lacks (the chrome's · and ©) become references, as servers write them.
    body = (codecs.BOM_UTF8 if bom else b"") + html.encode(encoding, "xmlcharrefreplace")
    return Page(_url(site, story), body, charset_header, list(story.main),
                [_first_sentence(site.cookie), site.newsletter, _first_sentence(site.footer)],
                name=f"{story.slug} [{encoding}, header {charset_header}, meta {bool(meta)}]",
                lang=story.lang)


def encoding_pages() -> list[Page]:
    """Pages whose charset is missing, wrong or only in the markup; the main snippets hold the
    non-ASCII text that must survive decoding and extraction exactly.

    - cp1252 (curly quotes, é, —) with no charset anywhere;
    - cp1252 French (œ, «», ’) whose header claims UTF-8;
    - Shift_JIS Japanese declared only by ``<meta charset>``;
    - UTF-8 German with a BOM and a header claiming ISO-8859-1;
    - UTF-8 Spanish whose header and ``<meta>`` both claim ISO-8859-1;
    - windows-1251 Russian declared only by ``<meta http-equiv="Content-Type">``.
    """
    return [
        _encoded(CAFE, "corner", 0, "cp1252", None, None),
        _encoded(FETE, "valjournal", 1, "cp1252", "utf-8", None),
        _encoded(SENTO, "machi", 2, "shift_jis", None, '<meta charset="Shift_JIS">'),
        _encoded(HUETTE, "bergblick", 3, "utf-8", "iso-8859-1", None, bom=True),
        _encoded(BIBLIO, "diariosur", 4, "utf-8", "iso-8859-1", '<meta charset="iso-8859-1">'),
        _encoded(MASTERSKAYA, "dvor", 5, "cp1251", None,
                 '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'),
    ]


def damaged_utf8_pages() -> list[Page]:
    """UTF-8 pages, labelled UTF-8 by header and ``<meta>``, that carry one byte sequence that is not
    UTF-8, as real pages do: a meta description cut mid-character by a byte-based ``substr`` (French
    article), and a cp1252 apostrophe pasted into a reader comment (English article). Everything
    else is valid UTF-8, so the article's non-ASCII text must come out intact."""
    by_name = {p.name: p for p in article_pages()}
    marche = by_name[MARCHE.slug]
    description = MARCHE.body[0].encode("utf-8")
    cut = description[: description.index("étals".encode()) + 1]  # half of the é
    meta = b'<meta name="description" content="' + cut + b'">\n'
    marche_html = marche.html.replace(b'<meta name="viewport"', meta + b'<meta name="viewport"', 1)
    ferry = by_name[FERRY.slug]
    ferry_html = ferry.html.replace(b"Cut the summer route instead.",
                                    b"Cut the summer route instead, it\x92s obvious.", 1)
    assert marche_html != marche.html and ferry_html != ferry.html
    return [
        Page(marche.url, marche_html, "utf-8", list(MARCHE.main), [], name="utf-8 with a cut description",
             lang="fr"),
        Page(ferry.url, ferry_html, "utf-8",
             ["Officials say the route costs roughly £1.4 million a year to run",
              "“The late sailing is the only reason people like me can live where we grew up.”"],
             [], name="utf-8 with a cp1252 byte in a comment"),
    ]


# --- a page that makes extractors spin ------------------------------------------------------------

SHORT_REPLIES = ("Agreed.", "Source?", "This.", "Same here.", "Thanks!", "Ha, fair.", "Why though?",
                 "Good point.", "Not sure.", "Exactly.")


def spinning_page(threads: int = 80, depth: int = 240) -> bytes:
    """A discussion page of ``threads`` reply chains, each ``depth`` replies nested inside each other
    (every reply a ``<div>`` holding a one- or two-word ``<p>``): about 0.8 MB, built in milliseconds.

    Depth stays under libxml2's nesting limit (255), past which lxml stops building the tree and the
    page becomes trivial. What makes it slow is trafilatura's fallback: its own extraction finds
    little, so it runs jusText, whose context-sensitive pass looks for the nearest non-short
    neighbour of each short paragraph by scanning the paragraph list; with tens of thousands of
    short paragraphs that is quadratic, and building each paragraph's xpath costs the nesting depth.
    """
    chain = "".join(f'<div class="reply"><p>{SHORT_REPLIES[i % len(SHORT_REPLIES)]}</p>'
                    for i in range(depth)) + "</div>" * depth
    thread = f'<div class="thread">{chain}</div>\n'
    html = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Megathread</title>"
            f"</head><body><h1>Megathread: post your replies here</h1>\n{thread * threads}</body></html>\n")
    return html.encode("utf-8")
