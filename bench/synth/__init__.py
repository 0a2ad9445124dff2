"""A synthetic Reddit and web, shaped like the real ones, for the rehearsal at scale (bench/scale.py).

Deterministic from a seed and a size, offline, loopback only:

- ``plan``: the unique links, their hosts (a heavy-tailed distribution) and what each link does on
  the web (an article, a dead link of some kind, a redirect chain, a robots.txt refusal, ...);
- ``dump``: monthly submission dumps of 2005-12..2017-12 that give exactly those links, in the
  formats and with the quirks of the real dumps, and noise the links stage must drop;
- ``text``: distinct documents of natural English (and some German and French);
- ``web``: one loopback server answering for every host of the plan.
"""
