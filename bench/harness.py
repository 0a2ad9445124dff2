"""lm-evaluation-harness throughput: our model (``webtext``) beside the harness's own ``hf`` model.

    python bench/harness.py [--model gpt2-mini] [--docs 64] [--batch-size 16] [--repeat 2]

The same random weights in both (ours saved as our model folder and exported with ``model/hf.py``
for ``hf``), fp32 on the CPU, scored by ``lm_eval.simple_evaluate`` on the same three tasks in the
harness's formats over synthetic English documents (``bench/synth/text.py``): a LAMBADA-style
loglikelihood task (each document's last word), a HellaSwag-style multiple choice (4 endings) and a
WikiText-style rolling perplexity over whole documents (several windows each). Prints requests per
second for each side (best of ``--repeat``) and ours as a multiple of ``hf``'s; checks the two agree
(accuracies equal, perplexities within 1e-4). In the table of ``bench/run.py``: 32 documents a
run (``--full``: 128); issue 28's goal: >= 1.0x.
"""

from __future__ import annotations

import sys
from pathlib import Path

# First of all, before any import: the repository first on sys.path and bench/ off it (bench/measure.py).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(p for p in sys.path if p not in (str(ROOT), str(ROOT / "bench")))]

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from bench.measure import Measure
from bench.synth.text import document
from model import weights
from model.gpt2 import GPT
from model.hf import export
from tests.test_harness import CHOICE, LAMBADA, write_task
from tests.test_model_config import model_config

TASKS = ("b_lambada", "b_choice", "b_rolling")


def write_tasks(folder: Path, docs: int, seed: int = 3) -> None:
    """The three tasks over ``docs`` synthetic documents, as YAML (JSON) and JSON lines."""
    texts = [" ".join(document(seed, i).paragraphs) for i in range(docs)]
    rows: dict[str, list[dict[str, Any]]] = {"lambada": [], "choice": [], "rolling": []}
    for i, text in enumerate(texts):
        words = text.split()
        rows["lambada"].append({"text": " ".join(words[:120])})
        endings = [" ".join(texts[(i + k) % docs].split()[:12]) for k in range(4)]
        rows["choice"].append({"query": " ".join(words[:60]), "choices": endings, "gold": 0})
        rows["rolling"].append({"page": text})
    for name, data in rows.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))

    write_task(folder, "b_lambada", "lambada", **LAMBADA)
    write_task(folder, "b_choice", "choice", **CHOICE)
    write_task(folder, "b_rolling", "rolling", output_type="loglikelihood_rolling", doc_to_text="",
         doc_to_target="{{page}}",
         metric_list=[{"metric": "word_perplexity", "aggregation": "weighted_perplexity",
                       "higher_is_better": False}])


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-mini")
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    return parser.parse_args(argv)


@contextmanager
def harnesses(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, Callable[[], dict[str, Any]]]]]:
    """A header line, and the two sides: each call scores the three tasks once and returns the
    harness's results."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    import lm_eval
    from lm_eval.tasks import TaskManager

    import train.harness  # noqa: F401  (registers "webtext")

    torch.manual_seed(0)
    model = GPT(model_config(args.model)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "tasks").mkdir()
        write_tasks(folder / "tasks", args.docs)
        weights.save(model, folder / "ours")
        export(model, folder / "hf")
        manager = TaskManager(include_path=str(folder / "tasks"))

        def run(name: str, model_args: str) -> Callable[[], dict[str, Any]]:
            return lambda: lm_eval.simple_evaluate(model=name, model_args=model_args, tasks=list(TASKS),
                                                   batch_size=args.batch_size, device="cpu",
                                                   task_manager=manager, verbosity="WARNING",
                                                   bootstrap_iters=0)  # no stderr: the model is timed

        header = (f"{args.model} ({model.num_params():,} parameters), cpu, {torch.get_num_threads()} "
                  f"threads, fp32, batch {args.batch_size}, {args.docs} documents a task")
        yield header, {"ours (webtext)": run("webtext", f"checkpoint={folder / 'ours'}"),
                       "lm-eval hf": run("hf", f"pretrained={folder / 'hf'},dtype=float32")}


def requests(results: dict[str, Any]) -> int:
    """The requests a run answered (one per example and choice; rolling windows not counted)."""
    return sum(n["effective"] for n in results["n-samples"].values()) + \
        3 * results["n-samples"]["b_choice"]["effective"]


def timed(run: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    results = run()
    return requests(results) / (time.perf_counter() - start), results


def agree(a: dict[str, Any], b: dict[str, Any]) -> None:
    for task in TASKS:
        for metric, value in b["results"][task].items():
            if not isinstance(value, float) or "stderr" in metric:
                continue
            mine = a["results"][task][metric]
            if abs(mine - value) > 1e-4 * max(1.0, abs(value)):
                raise AssertionError(f"{task} {metric}: ours {mine}, hf {value}")


@contextmanager
def measures(full: bool) -> Iterator[list[Measure]]:
    """Ours beside the harness's ``hf`` model on ``gpt2-mini`` (CPU), 32 documents a task a run (128
    with ``full``); issue 28's goal: >= 1.0x."""
    args = arguments(["--docs", "128" if full else "32"])
    with harnesses(args) as (_, runs):
        ours, theirs = runs.values()
        agree(ours(), theirs())  # first-use costs before timing, and the two must agree
        yield [Measure(f"lm-eval {args.model}, ours (webtext)", "requests/s", lambda: timed(ours)[0],
                       lambda: timed(theirs)[0], "lm-eval's hf model", goal=1.0, issue=28)]


def main() -> None:
    args = arguments()
    with harnesses(args) as (header, runs):
        print(header)
        best: dict[str, float] = {}
        results = {}
        for _ in range(args.repeat):
            for name, run in runs.items():
                rate, results[name] = timed(run)
                best[name] = max(best.get(name, 0.0), rate)
        for name, rate in best.items():
            print(f"  {name:<18} {rate:8.1f} requests/s")
        agree(*results.values())
        ours, theirs = best.values()
        print(f"ours / hf: {ours / theirs:.2f}x (goal >= 1.0x); the figures agree")


if __name__ == "__main__":
    main()
