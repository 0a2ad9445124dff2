"""How much of the evaluation sets is in the corpus: the GPT-2 paper's n-gram overlap (issue 29)."""
