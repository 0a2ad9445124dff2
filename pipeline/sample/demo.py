"""``python -m pipeline.sample.demo FOLDER``: the whole flow on the embedded sample, then a summary.

    python -m pipeline.sample.demo demo [--steps 300] [--port 18080]   # --port 0: a free port

From a Reddit submission dump to a trained, exported GPT-2, with the commands a user types:

1. ``python -m pipeline``: links -> fetch -> extract -> dedup -> publish -> tokenize, the pages
   served by the demo server on loopback (so the address guard is turned off for it:
   ``fetch.allow_private=true``, with ``fetch.hosts`` sending the sample's domains there);
2. ``python -m train``: ``gpt2-tiny`` for ``--steps`` steps on CPU;
3. ``python -m model.export``: a Hugging Face folder;
4. ``python -m train.sample``: text from that folder.

Each command is printed before it runs. The end is a summary: the funnel with its counts and main
drop reasons per stage, the corpus, the loss at the start and the end, a generated sample, and where
everything is. A rerun resumes: finished stages and steps are not done again.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from model.base.folders import RunFolder
from pipeline.sample import archive_captures, domains, write_dump
from pipeline.sample.archive import FakeArchives
from pipeline.sample.server import serve

PROMPT = "The city council"
# a small evaluation set: some passages of the sample's pages (whole, in other case, in part), others in none
EVAL_SET = Path(__file__).parent / "eval_set.jsonl"


def shell(argv: list[str]) -> str:
    """A command line as one would type it: plain words bare, the rest in double quotes."""
    words = ["python", *argv[1:]] if argv[0] == sys.executable else argv
    return " ".join(w if re.fullmatch(r"[\w@%+=:,./\[\]-]+", w) else f'"{w}"' if not re.search(r'["$`\\]', w)
                    else shlex.quote(w) for w in words)


def run(argv: list[str], capture: bool = False) -> str:
    """Run ``python -m ...`` as a user would, showing the command; stop the demo if it fails."""
    shown = shell(argv)
    print(f"\n$ {shown}", flush=True)
    done = subprocess.run(argv, text=True, stdout=subprocess.PIPE if capture else None)
    if done.returncode != 0:
        sys.exit(f"demo stopped: {shown} exited with status {done.returncode}")
    return done.stdout or ""


def pipeline_command(folder: Path, dump: Path, archive: FakeArchives) -> list[str]:
    hosts = ",".join(f"'{d}=127.0.0.1'" for d in domains())
    return [sys.executable, "-m", "pipeline", f"workdir={folder}", f"source.files=[{dump}]",
            "links.partitions=2", "fetch.allow_private=true", f"fetch.hosts=[{hosts}]",
            "fetch.per_host_delay_s=0.2", "fetch.archive=wayback",
            f"fetch.wayback_cdx_url={archive.wayback_cdx_url}",
            f"fetch.wayback_replay_url={archive.wayback_replay_url}", "fetch.archive_rate_per_s=20",
            "dedup.components_partitions=2", "dedup.bucket_ranges=1",
            "dedup.max_rounds=4", "tokenize.tasks=2", "tokenize.val_fraction=0.25",
            f'overlap.sets=["sample={EVAL_SET}"]']


def train_command(folder: Path, steps: int) -> list[str]:
    every = max(1, steps // 3)
    return [sys.executable, "-m", "train", "model=gpt2-tiny", f"data.dir={folder / 'tokens'}",
            f"out_dir={folder / 'run'}", "device=cpu", f"max_steps={steps}", "micro_batch_size=8",
            "total_batch_tokens=1024", "optim.max_lr=3e-3", f"optim.warmup_steps={min(30, steps)}",
            f"eval_every_steps={every}", f"checkpoint_every_steps={every}", "eval_tokens=4096",
            f"log_every_steps={max(1, steps // 10)}", "eval.sample_tokens=16"]


# --- the summary ---------------------------------------------------------------------------------


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _reasons(dropped: dict[str, int], top: int = 3) -> str:
    if not dropped:
        return "-"
    ranked = sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{reason} {n}" for reason, n in ranked[:top])
    return text + (f", +{len(ranked) - top} more" if len(ranked) > top else "")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Rows of text in aligned columns (numbers right-aligned), with a rule under the header."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        cells = [str(c).rjust(w) if re.match(r"[\d,.]+( |$)", str(c)) else str(c).ljust(w)
                 for c, w in zip(row, widths, strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def funnel_rows(folder: Path) -> list[list[str]]:
    """One row per stage: what came in, what was kept, the main reasons for what was dropped."""
    links = _read(folder / "links" / "stats.json")
    submissions, urls = links.get("submissions", {}), links.get("counts", {})
    dropped = {k: v for k, v in [*submissions.items(), *urls.items()] if k != "kept"}
    rows = [["links", f"{sum(submissions.values()):,} submissions", f"{urls.get('kept', 0):,} URLs",
             _reasons(dropped)]]
    previous = urls.get("kept", 0)
    for stage, folder_name in (("fetch", "fetch"), ("extract", "docs"), ("dedup", "dedup")):
        stats = _read(folder / folder_name / "stats.json")
        counts, metrics = stats.get("counts", {}), stats.get("metrics", {})
        kept = counts.get("kept", 0)
        unit = "pages" if stage == "fetch" else "documents"
        reasons = _reasons({k: v for k, v in counts.items() if k != "kept"})
        dead = {k.removeprefix("dead_"): int(v) for k, v in metrics.items() if k.startswith("dead_")}
        if dead:  # dead live links, some recovered from the archives
            archived = sum(int(v) for k, v in metrics.items() if k.startswith("pages_") and k != "pages_live")
            reasons += f"; dead live: {_reasons(dead)}, {archived} recovered from archives"
        rows.append([stage, f"{previous:,} {rows[-1][2].split()[-1]}", f"{kept:,} {unit}", reasons])
        previous = kept
    return rows


def recovered(folder: Path) -> list[str]:
    """Lines on the dead links the archives gave back, and the documents they became."""
    import pyarrow.parquet as pq

    index = folder / "fetch" / "index"
    if not index.is_dir():
        return []
    columns = ["url", "source", "live_reason", "archived_at"]
    rows = [r for r in pq.read_table(index, columns=columns).to_pylist() if r["source"] not in (None, "live")]
    manifest = _read(folder / "corpus" / "manifest.json")
    sources = {r["source"]: r["documents"] for r in manifest.get("sources", [])}
    lines = [f"dead links recovered from web archives: {len(rows)} (documents by source: "
             + ", ".join(f"{k} {v}" for k, v in sources.items()) + ")"]
    for r in rows:
        when = time.strftime("%Y-%m-%d", time.gmtime(r["archived_at"]))
        lines.append(f"  {r['url']}: live {r['live_reason']}, {r['source']} capture of {when}")
    return [*lines, ""]


def losses(run: RunFolder) -> tuple[float | None, float | None, float | None]:
    path = run.metrics
    if not path.exists():
        return None, None, None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r["loss"] for r in records if "loss" in r]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    return (train[0] if train else None, train[-1] if train else None, val[-1] if val else None)


def overlap_rows(folder: Path) -> list[str]:
    """The overlap stage's table (the paper's Table 6 layout), with a blank line after it."""
    report = _read(folder / "overlap" / "report.json")
    sets = report.get("sets", {})
    if not sets:
        return []
    rows = [[name, f"{s['ngrams']:,}", f"{s['found']:,}", f"{100 * s['ngram_share']:.2f}%",
             f"{s['examples_overlapping']} of {len(s['examples'])}"] for name, s in sets.items()]
    return [table([f"evaluation set ({report.get('n', 8)}-grams)", "n-grams", "in the corpus", "share",
                   "examples overlapping"], rows), ""]


def summary(folder: Path, sample_text: str, seconds: float) -> str:
    manifest = _read(folder / "corpus" / "manifest.json")
    tokens = _read(folder / "tokens" / "stats.json").get("metrics", {})
    trained = RunFolder(folder / "run")
    first, last, val = losses(trained)
    shards = len(list((folder / "tokens").glob("*.bin")))

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    parts = [
        f"== webtext demo: done in {seconds:.0f} s",
        "",
        "funnel",
        table(["stage", "in", "kept", "main drop reasons"], funnel_rows(folder)),
        "",
        table(["corpus", ""], [
            ["documents", f"{manifest.get('documents', 0):,}"],
            ["GPT-2 tokens", f"{manifest.get('tokens', 0):,}"],
            ["corpus shards", f"{len(manifest.get('shards', [])):,}"],
            ["token shards (train / val)", f"{shards:,}"],
            ["training tokens / validation tokens", f"{tokens.get('train_tokens', 0):,} / "
                                                    f"{tokens.get('val_tokens', 0):,}"],
        ]),
        "",
        table(["training (gpt2-tiny, CPU)", ""], [
            ["loss at the first step", fmt(first)],
            ["loss at the last step", fmt(last)],
            ["validation loss at the end", fmt(val)],
        ]),
        "",
        *overlap_rows(folder),
        *recovered(folder),
        f"sample from the export (prompt {PROMPT!r}; ¶ marks a line break):",
        "  " + " ".join(sample_text.strip().replace("\n", " ¶ ").split())[:400],
        "",
        table(["where", ""], [
            ["corpus (Parquet)", str(folder / "corpus")],
            ["dataset card", str(folder / "corpus" / "README.md")],
            ["test-set overlap", str(folder / "overlap" / "report.json")],
            ["plots", str(folder / "corpus" / "*.png") + ", " + str(trained.loss_plot)],
            ["token shards", str(folder / "tokens")],
            ["checkpoints", str(trained.checkpoints)],
            ["Hugging Face export", str(folder / "hf")],
        ]),
    ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sample.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--port", type=int, default=18080,
                        help="demo server port (default 18080; the pages' URLs, hence the documents' "
                        "ids and the train/val split, carry it; the fake web archive takes the next "
                        "port; 0 picks free ones)")
    args = parser.parse_args()
    folder = args.folder.resolve()
    started = time.monotonic()
    try:
        server = serve(args.port)
    except OSError as err:
        sys.exit(f"demo: cannot serve the sample on 127.0.0.1:{args.port} ({err.strerror}); "
                 f"pick another port: --port N (make demo DEMO_ARGS='--port N')")
    try:
        port = server.server_address[1]
        dump = write_dump(folder / "dumps", port)
        print(f"== the embedded sample: {dump} (its links point at the demo server on 127.0.0.1:{port})")
        # On the next port: its address is in the fetch config, which a rerun must repeat.
        archive = FakeArchives(wayback=archive_captures(port), port=port + 1 if args.port else 0)
        try:
            archive.start()
        except OSError as err:
            sys.exit(f"demo: cannot serve the fake archive on 127.0.0.1:{port + 1} ({err.strerror}); "
                     f"pick another port: --port N (the archive takes N+1)")
        try:
            print(f"== a fake Wayback Machine on {archive.base} holds one page that is gone from its site")
            run(pipeline_command(folder, dump, archive))
        finally:
            archive.stop()
    finally:
        server.shutdown()
    run(train_command(folder, args.steps))
    run([sys.executable, "-m", "model.export", f"checkpoint={folder / 'run'}", f"out={folder / 'hf'}"])
    text = run([sys.executable, "-m", "train.sample", f"checkpoint={folder / 'hf'}", f"prompt={PROMPT}",
                "max_new_tokens=40", "top_k=20", "temperature=0.8"], capture=True)
    print(text)
    print("\n" + summary(folder, text, time.monotonic() - started))


if __name__ == "__main__":
    main()
