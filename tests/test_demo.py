"""`make demo` as a user runs it: the whole flow on the embedded sample, to a summary."""

from __future__ import annotations

import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_the_demo_goes_from_the_sample_dump_to_generated_text(tmp_path):
    folder = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "pipeline.sample.demo", str(folder), "--steps", "30",
                           "--port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    summary = out[out.index("== webtext demo: done"):]
    # every stage kept something and the ones with something to drop say why
    funnel = summary.split("funnel\n")[1].split("\n\n")[0].splitlines()[2:]
    kept = {row.split()[0]: int(re.split(r"\s{2,}", row)[2].split()[0].replace(",", "")) for row in funnel}
    assert list(kept) == ["links", "fetch", "extract", "dedup"] and all(n > 0 for n in kept.values()), funnel
    for reason in ("self_post", "http_404", "no_snapshot", "language", "too_short", "near_duplicate"):
        assert reason in summary, reason
    # the page gone from its site, recovered from the fake Wayback Machine, counted on the card
    assert "dead live: http_404 2, 1 recovered from archives" in summary
    assert re.search(r"lighthouse-keepers-log: live http_404, wayback capture of 2016-11-12", summary)
    card = (folder / "corpus" / "README.md").read_text()
    assert "| wayback | 1 | 1 |" in card and "1 document is an archived capture" in card
    corpus = pq.read_table(sorted((folder / "corpus").glob("part-*.parquet")), columns=["title", "source"])
    assert [t for t, s in zip(*corpus.to_pydict().values(), strict=True) if s == "wayback"] == [
        "The lighthouse keeper's log goes on display"]
    first = float(re.search(r"loss at the first step\s+([\d.]+)", summary).group(1))
    last = float(re.search(r"loss at the last step\s+([\d.]+)", summary).group(1))
    assert last < first - 1.0, (first, last)  # visibly falling
    sample = summary.split("sample from the export")[1].splitlines()[1].strip()
    assert sample.startswith("The city council"), sample  # (30 steps may end it at <|endoftext|> at once)
    assert "{" not in summary and "'kept'" not in summary  # a table, not Python dicts
    for path in ("corpus/README.md", "corpus/manifest.json", "corpus/funnel.png", "run/loss.png",
                 "hf/config.json", "hf/model.safetensors", "tokens/stats.json"):
        assert (folder / path).exists(), path
    assert list((folder / "run" / "checkpoints").glob("step_*/COMPLETE"))
    for command in ("python -m pipeline workdir=", "python -m train model=gpt2-tiny",
                    "python -m model.export", "python -m train.sample"):
        assert f"$ {command}" in out, command
