"""The GPT-2 paper's datasets in their original formats, small: what ``python -m train.eval_data``
puts in the evaluation data folder, written by tests (``tests/test_paper.py``)."""

from __future__ import annotations

import json
from pathlib import Path

PTB = [  # Mikolov's ptb.test.txt: lower case, no punctuation, <unk>, N, a space at each end
    " no it was n't black monday ",
    " but while the new york stock exchange did n't fall apart friday as the dow jones industrial "
    "average plunged N points most of it in the final hour it barely managed to stay this side of chaos ",
    " some circuit breakers installed after the october N crash failed their first test traders say "
    "unable to cool the selling panic in both stocks and futures ",
    " the <unk> stock specialist firms on the big board floor the buyers and sellers of last resort "
    "who were criticized after the N crash once again could n't handle the selling pressure ",
]
ONE_BW = [  # One Billion Word's heldout files: one tokenised sentence a line
    "The company 's shares rose 3 % to $ 12.50 in early trading , analysts said .",
    "`` We are very pleased with the result , '' he told reporters on Tuesday .",
    "It was n't clear whether the ( new ) rules would apply to existing contracts .",
]
CBT = [  # rows of datasets' cam-cst/cbt (CN): 20 sentences, a question with XXXXX, 10 options
    {"sentences": [f"The little {w} ran to the old mill by the river , and the miller 's wife gave it "
                   f"bread ." for w in ("dog", "cat", "goat", "hen", "pig")] * 4,
     "question": "`` Go home , '' said the XXXXX , and shut the door .",
     "answer": "miller",
     "options": ["bread", "cat", "dog", "door", "goat", "hen", "home", "miller", "pig", "river"]},
    {"sentences": [f"Tom and his sister walked to the {w} every morning before school ." for w in
                   ("market", "church", "bridge", "farm", "lake")] * 4,
     "question": "They walked to the XXXXX .",
     "answer": "market",
     "options": ["bridge", "church", "farm", "lake", "market", "morning", "school", "sister", "Tom",
                 "walked"]},
]
WIKITEXT = [  # rows of EleutherAI/wikitext_document_level: a page of raw lines
    {"page": " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre "
             "actor . He had a guest @-@ starring role on the television series The Bill in 2000 . \n"
             " \n = = Career = = \n \n In 2006 , Boulter starred alongside Whishaw in the play "
             "Citizenship written by Mark Ravenhill . He appeared on a 2006 episode of the television "
             "series , Doctors , followed by a role in the 2007 theatre production of How to Curse . \n"},
    {"page": " = Du Fu = \n \n Du Fu ( 712 – 770 ) was a prominent Chinese poet of the Tang dynasty . "
             "Along with Li Bai ( Li Po ) , he is frequently called the greatest of the Chinese poets . \n"},
]
ENWIK8 = ("<page>\n    <title>Anarchism</title>\n    <text xml:space=\"preserve\">'''Anarchism''' "
          "is a [[political philosophy]] encompassing theories and attitudes which consider the "
          "[[state]] to be unnecessary, harmful, and/or undesirable.\n</text>\n  </page>\n"
          "<page>\n    <title>Zürich</title>\n    <text>Zürich is the largest city in "
          "Switzerland.</text>\n  </page>\n")
TEXT8 = (" anarchism originated as a term of abuse first used against early working class radicals "
         "including the diggers of the english revolution and the sans culottes of the french "
         "revolution whilst the term is still used in a pejorative way")


def write_paper_data(folder: Path, copies: int = 1) -> Path:
    """The data folder, each dataset ``copies`` times over (more documents, same format)."""
    def lines(rows: list[dict[str, object]]) -> str:
        return "".join(json.dumps(r) + "\n" for r in rows)

    files = {
        "ptb/ptb.test.txt": "\n".join(PTB * copies) + "\n",
        "1bw/news.en.heldout-00000-of-00050": "\n".join(ONE_BW * copies) + "\n",
        "enwik8/enwik8": ENWIK8 * copies,
        "text8/text8": TEXT8 * copies,
        "cbt/CN_validation.jsonl": lines(CBT * copies),
        "cbt/NE_validation.jsonl": lines(CBT[::-1] * copies),
        "wikitext/wikitext-2-raw-v1_test.jsonl": lines(WIKITEXT * copies),
        "wikitext/wikitext-103-raw-v1_test.jsonl": lines(WIKITEXT[::-1] * copies),
    }
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder
