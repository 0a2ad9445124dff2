"""``python -m train.core``: CORE, DCLM's 22-task metric, scored the way nanochat scores it.

    python -m train.core checkpoint=out/run
    python -m train.core checkpoint=hf:gpt2-hf bundle=eval_bundle limit=200 batch_size=32
    python -m train.core checkpoint=out/run tasks=[hellaswag,arc_easy] output=core.json
    python -m train.core --help

CORE (DCLM, Li et al. 2024; nanochat's yardstick) is the mean over the bundle's tasks of the
centred accuracy ``(acc - 0.01 rb) / (1 - 0.01 rb)``, ``rb`` the task's random baseline in percent:
0 is chance, 1 is perfect. OpenAI's GPT-2 scores 0.1139 (124M), 0.1849 (355M), 0.2146 (774M) and
0.2565 (1558M). The tasks come from nanochat's eval bundle, a folder on disk (``BUNDLE_URL``,
unzipped; ``python -m train.eval_data`` puts it in ``data/eval/core``, the default ``bundle``);
nothing is downloaded here. ``core.yaml`` lists the tasks (``icl_tasks``: ``label``,
``dataset_uri``, ``num_fewshot`` (a list: the first is used), ``icl_task_type``, optional
``continuation_delimiter``, default " "), ``eval_data/<dataset_uri>`` holds each task's examples as
JSON lines and ``eval_meta_data.csv`` its random baseline (columns ``Eval Task`` and ``Random
baseline``).

Scoring follows nanochat's ``core_eval.py`` rule for rule:

* a task's examples are shuffled once with ``random.Random(1337)`` (so ``limit=N``, nanochat's
  ``max_per_task``, takes the first N of that order); example ``i`` of that order draws its few-shot
  examples from the others with ``random.Random(1234 + i)`` (fewer when the task has too few);
* prompts are rendered as nanochat's templates render them (``render``), and tokenized with
  ``<|endoftext|>`` (GPT-2's BOS) in front;
* multiple choice: the option whose continuation (the tokens after the options' common prefix)
  has the lowest mean loss wins; schema: the context option under which the common suffix has the
  lowest mean loss wins; language modelling: right when greedy decoding gives every continuation
  token;
* a sequence longer than the model's ``block_size`` is cut from the left.

The forward passes are those of the harness adapter (``train/harness.py``): every option of up to
``EXAMPLES_PER_CALL`` examples goes to ``WebtextLM._loglikelihood_tokens`` at once, which batches
them longest first; nanochat runs one example (its options) per forward pass. Results are printed
as a table and stored under ``"core"`` in ``eval/<checkpoint>.json`` (``train.eval``'s file; its
other keys stay) or ``output=``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import MISSING
from tqdm import tqdm

from model.base.files import atomic_write
from model.base.schema import ConfigError, cli_config, param
from model.base.tokenizer import EOT_ID
from model.config import GPTConfig
from train.paper import size_of

if TYPE_CHECKING:
    from train.harness import WebtextLM

log = logging.getLogger("webtext.core")

BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
DEFAULT_BUNDLE = "data/eval/core"  # where python -m train.eval_data puts it
GET_BUNDLE = (f"the CORE eval bundle is nanochat's {BUNDLE_URL}: download and unzip it (it unpacks into "
              "eval_bundle/: core.yaml, eval_data/, eval_meta_data.csv) and give bundle=eval_bundle, or "
              f"fetch it into {DEFAULT_BUNDLE} with python -m train.eval_data only=[core]")
# The keys each task type's examples must have.
FIELDS = {"multiple_choice": ("query", "choices", "gold"),
          "schema": ("context_options", "continuation", "gold"),
          "language_modeling": ("context", "continuation")}
SHUFFLE_SEED = 1337  # nanochat shuffles each task once, so that a limit takes a random subset
FEWSHOT_SEED = 1234  # example i draws its few-shot examples with random.Random(1234 + i)
# Examples whose options go to the adapter in one call: enough for full, length-sorted batches, few
# enough that the token lists of a 10,000-example task never sit in memory at once.
EXAMPLES_PER_CALL = 256
# nanochat's CORE of OpenAI's GPT-2, by the model's shape (n_layer, n_embd).
# nanochat's CORE of OpenAI's four models, by the GPT-2 paper's name of their shape (train.paper.SIZES)
PUBLISHED = {"117M": ("GPT-2 124M", 0.1139), "345M": ("GPT-2 355M", 0.1849),
             "762M": ("GPT-2 774M", 0.2146), "1542M": ("GPT-2 1558M", 0.2565)}

Example = dict[str, Any]
Pair = tuple[list[int], list[int]]  # (context tokens, continuation tokens)


@dataclass(frozen=True)
class Task:
    """One entry of ``core.yaml``'s ``icl_tasks``, with its random baseline."""

    label: str
    kind: str  # multiple_choice, schema or language_modeling
    data: Path  # eval_data/<dataset_uri>
    shots: int  # few-shot examples per prompt (the first of num_fewshot)
    delimiter: str  # between a context and its continuation
    random_baseline: float  # accuracy of chance, in percent


@dataclass(frozen=True)
class Scored:
    """One example's outcome: right or not, the option chosen (multiple choice and schema) and each
    option's mean loss per continuation token (language modelling: its one continuation's)."""

    correct: bool
    choice: int | None
    losses: list[float]


# --- the bundle ---------------------------------------------------------------------------------------


def load_bundle(folder: str | Path, only: Sequence[str] = ()) -> list[Task]:
    """The tasks of the bundle in ``folder`` (those named in ``only``, when given), every file they
    need checked: ``ConfigError`` names the missing file or key."""
    folder = Path(folder)
    config, meta = folder / "core.yaml", folder / "eval_meta_data.csv"
    for path in (config, meta):
        if not path.is_file():
            raise ConfigError("bundle", f"{path} not found; {GET_BUNDLE}")
    baselines = read_baselines(meta)
    entries = read_entries(config)
    labels = [str(entry["label"]) for entry in entries]
    unknown = [name for name in only if name not in labels]
    if unknown:
        raise ConfigError("tasks", f"not in {config}: {', '.join(unknown)}; known: {', '.join(labels)}")
    return [make_task(entry, folder, baselines, f"{config}: icl_tasks[{number}]", meta)
            for number, entry in enumerate(entries) if not only or str(entry["label"]) in only]


def read_entries(path: Path) -> list[dict[str, Any]]:
    """``icl_tasks`` of ``core.yaml``, each entry checked for the keys a task needs."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(str(path), f"not YAML ({err})") from None
    entries = doc.get("icl_tasks") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: icl_tasks", "missing or empty (a list of tasks)")
    for number, entry in enumerate(entries):
        for key in ("label", "dataset_uri", "num_fewshot", "icl_task_type"):
            if not isinstance(entry, dict) or key not in entry:
                raise ConfigError(f"{path}: icl_tasks[{number}].{key}", "missing")
    return entries


def read_baselines(path: Path) -> dict[str, str]:
    """``Random baseline`` by ``Eval Task`` (as text: only the tasks used must be numbers)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for column in ("Eval Task", "Random baseline"):
            if column not in columns:
                raise ConfigError(str(path), f"no column {column!r} (columns: {', '.join(columns)})")
        return {row["Eval Task"]: row["Random baseline"] for row in reader}


def make_task(entry: dict[str, Any], folder: Path, baselines: dict[str, str], where: str,
              meta: Path) -> Task:
    """One checked entry of ``icl_tasks`` (``where`` names it) with its baseline from ``meta``."""
    kind, label = entry["icl_task_type"], str(entry["label"])
    if kind not in FIELDS:
        raise ConfigError(f"{where}.icl_task_type", f"{kind!r}; one of {', '.join(FIELDS)}")
    shots = entry["num_fewshot"]
    shots = shots[0] if isinstance(shots, list) and shots else shots
    if not isinstance(shots, int) or shots < 0:
        raise ConfigError(f"{where}.num_fewshot", f"{entry['num_fewshot']!r}; a list such as [10]")
    data = folder / "eval_data" / str(entry["dataset_uri"])
    if not data.is_file():
        raise ConfigError(f"{where}.dataset_uri", f"{data} not found; {GET_BUNDLE}")
    if label not in baselines:
        raise ConfigError(str(meta), f"no row with 'Eval Task' {label} (its random baseline)")
    try:
        baseline = float(baselines[label])
    except ValueError:
        raise ConfigError(f"{meta}: {label}", f"'Random baseline' {baselines[label]!r} is not a "
                                              "number") from None
    return Task(label, kind, data, shots, str(entry.get("continuation_delimiter", " ")), baseline)


def read_examples(task: Task, limit: int | None = None) -> list[Example]:
    """The task's examples in nanochat's order (shuffled with ``random.Random(1337)``), the first
    ``limit`` of them when given. Each line must be a JSON object with its type's ``FIELDS``."""
    examples = []
    with task.data.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
            except ValueError as err:
                raise ConfigError(f"{task.data}:{number}", f"not JSON ({err})") from None
            fields = FIELDS[task.kind]
            missing = [key for key in fields if not isinstance(example, dict) or key not in example]
            if missing:
                raise ConfigError(f"{task.data}:{number}", f"no {missing[0]!r} (a {task.kind} example has "
                                                           f"{', '.join(fields)})")
            examples.append(example)
    if not examples:
        raise ConfigError(str(task.data), "no examples")
    random.Random(SHUFFLE_SEED).shuffle(examples)
    return examples[:limit] if limit else examples


# --- prompts and tokens -------------------------------------------------------------------------------


def fewshot(examples: Sequence[Example], index: int, shots: int) -> list[Example]:
    """The few-shot examples of example ``index``: ``shots`` others (all of them when there are
    fewer), drawn with ``random.Random(1234 + index)``."""
    if shots <= 0:
        return []
    others = [i for i in range(len(examples)) if i != index]
    drawn = random.Random(FEWSHOT_SEED + index).sample(others, min(shots, len(others)))
    return [examples[i] for i in drawn]


def render(kind: str, example: Example, shots: Sequence[Example], delimiter: str) -> list[str]:
    """The prompts of one example, as nanochat's templates render them: each few-shot example
    solved and followed by a blank line, then one prompt per option (multiple choice: per choice;
    schema: per context option) or, for language modelling, the prompt without its continuation
    (stripped) and with it. Language modelling strips each context, as nanochat does."""
    if kind == "multiple_choice":
        head = "".join(f"{s['query']}{delimiter}{s['choices'][s['gold']]}\n\n" for s in shots)
        return [f"{head}{example['query']}{delimiter}{choice}" for choice in example["choices"]]
    if kind == "schema":
        head = "".join(f"{s['context_options'][s['gold']]}{delimiter}{s['continuation']}\n\n" for s in shots)
        ending = f"{delimiter}{example['continuation']}"
        return [f"{head}{option}{ending}" for option in example["context_options"]]
    head = "".join(f"{str(s['context']).strip()}{delimiter}{s['continuation']}\n\n" for s in shots)
    without = f"{head}{str(example['context']).strip()}{delimiter}"
    return [without.strip(), f"{without}{example['continuation']}"]


def common_length(sequences: Sequence[Sequence[int]], from_end: bool = False) -> int:
    """How many tokens all ``sequences`` share at their start (at their end with ``from_end``)."""
    shortest = min(map(len, sequences))
    for i in range(shortest):
        at = -1 - i if from_end else i
        if any(seq[at] != sequences[0][at] for seq in sequences):
            return i
    return shortest


def split_options(kind: str, tokens: Sequence[list[int]]) -> list[Pair]:
    """Each option's (context, continuation): multiple choice scores what follows the options'
    common prefix, schema the options' common suffix, language modelling what the prompt with its
    continuation adds to the prompt without it (which must tokenize as its prefix)."""
    if kind == "multiple_choice":
        start = common_length(tokens)
        return [(seq[:start], seq[start:]) for seq in tokens]
    if kind == "schema":
        size = common_length(tokens, from_end=True)
        return [(seq[:len(seq) - size], seq[len(seq) - size:]) for seq in tokens]
    without, with_continuation = tokens
    if len(without) >= len(with_continuation) or with_continuation[:len(without)] != without:
        raise ValueError("the prompt without its continuation does not tokenize as a prefix of the "
                         "prompt with it")
    return [(without, with_continuation[len(without):])]


def crop(context: list[int], continuation: list[int], block_size: int) -> Pair:
    """Context and continuation cut from the left to ``block_size`` tokens together."""
    excess = len(context) + len(continuation) - block_size
    if excess <= 0:
        return context, continuation
    if excess >= len(context):
        raise ValueError(f"a continuation of {len(continuation)} tokens leaves no context in "
                         f"{block_size} positions")
    return context[excess:], continuation


def example_pairs(task: Task, examples: Sequence[Example], index: int, encode: Callable[[str], list[int]],
                  block_size: int) -> list[Pair]:
    """The (context, continuation) tokens of each option of example ``index``, ready to score."""
    prompts = render(task.kind, examples[index], fewshot(examples, index, task.shots), task.delimiter)
    try:
        options = split_options(task.kind, [[EOT_ID, *encode(prompt)] for prompt in prompts])
        return [crop(context, continuation, block_size) for context, continuation in options]
    except ValueError as err:
        raise ValueError(f"{task.label}, example {index}: {err}") from None


# --- scoring ------------------------------------------------------------------------------------------


def judge(kind: str, example: Example, options: Sequence[Pair],
          answers: Sequence[tuple[float, bool] | None]) -> Scored:
    """An example's outcome from its options' (sum of log-probabilities, greedy) answers; an option
    with nothing to score (``None``: an empty continuation) never wins."""
    losses = [-answer[0] / len(continuation) if answer is not None else math.inf
              for (_, continuation), answer in zip(options, answers, strict=True)]
    if kind == "language_modeling":
        return Scored(correct=answers[0] is not None and answers[0][1], choice=None, losses=losses)
    choice = losses.index(min(losses))  # the first of equals, as nanochat
    return Scored(correct=choice == example["gold"], choice=choice, losses=losses)


def score_task(lm: WebtextLM, task: Task, examples: Sequence[Example]) -> list[Scored]:
    """Every example of ``task`` scored by the adapter, ``EXAMPLES_PER_CALL`` examples a call."""
    scored: list[Scored] = []
    bar = tqdm(total=len(examples), desc=f"core: {task.label}", leave=False)
    for start in range(0, len(examples), EXAMPLES_PER_CALL):
        indices = range(start, min(start + EXAMPLES_PER_CALL, len(examples)))
        pairs = [example_pairs(task, examples, i, lm.tok_encode, lm.max_length) for i in indices]
        requests = [(None, context, continuation) for options in pairs
                    for context, continuation in options if continuation]
        answers = iter(lm._loglikelihood_tokens(requests, disable_tqdm=True))
        for index, options in zip(indices, pairs, strict=True):
            mine = [next(answers) if continuation else None for _, continuation in options]
            scored.append(judge(task.kind, examples[index], options, mine))
        bar.update(len(indices))
    bar.close()
    return scored


def centred(accuracy: float, random_baseline: float) -> float:
    """Accuracy rescaled so that chance (``random_baseline``, in percent) is 0 and perfect is 1."""
    return (accuracy - 0.01 * random_baseline) / (1.0 - 0.01 * random_baseline)


def core_metric(centred_accuracies: Sequence[float]) -> float:
    """CORE: the mean of the tasks' centred accuracies."""
    return sum(centred_accuracies) / len(centred_accuracies)


def evaluate_core(lm: WebtextLM, bundle_dir: str | Path, limit: int | None = None,
                  tasks: Sequence[str] = ()) -> dict[str, Any]:
    """CORE of ``lm``'s model on the bundle in ``bundle_dir`` (its tasks named in ``tasks``, when
    given; the first ``limit`` examples of each, when given): per task its type, shots, examples
    ``n``, accuracy, random baseline and centred accuracy; ``core_metric`` their mean;
    ``comparable``: whether the figure can stand beside published ones (all tasks, no limit)."""
    per_task: dict[str, dict[str, Any]] = {}
    for task in load_bundle(bundle_dir, tasks):
        started = time.time()
        scored = score_task(lm, task, read_examples(task, limit))
        accuracy = sum(s.correct for s in scored) / len(scored)
        per_task[task.label] = {"type": task.kind, "shots": task.shots, "n": len(scored),
                                "accuracy": accuracy, "random_baseline": task.random_baseline,
                                "centred": centred(accuracy, task.random_baseline)}
        log.info("%s: accuracy %.4f, centred %.4f (%d examples, %.1f s)", task.label, accuracy,
                 per_task[task.label]["centred"], len(scored), time.time() - started)
    return {"tasks": per_task, "core_metric": core_metric([t["centred"] for t in per_task.values()]),
            "limit": limit, "task_subset": list(tasks), "comparable": limit is None and not tasks}


def published(config: GPTConfig) -> tuple[str, float] | None:
    """nanochat's CORE of OpenAI's GPT-2 of the same shape as ``config``, if it is one of the four."""
    size = size_of(config.n_layer, config.n_embd)
    return PUBLISHED[size] if size else None


def table(result: dict[str, Any], reference: tuple[str, float] | None) -> str:
    """The per-task figures and CORE, beside GPT-2's published CORE of the same size."""
    lines = [f"{'task':<34} {'shots':>5}  {'type':<17} {'n':>6} {'accuracy':>8} {'baseline':>8} "
             f"{'centred':>8}"]
    for label, t in result["tasks"].items():
        lines.append(f"{label:<34} {t['shots']:>5}  {t['type']:<17} {t['n']:>6} {t['accuracy']:>8.4f} "
                     f"{t['random_baseline']:>8.1f} {t['centred']:>8.4f}")
    beside = (f"{reference[0]}: {reference[1]:.4f} (published)" if reference
              else "no published figure for this model's size")
    lines.append(f"CORE {result['core_metric']:.4f}    {beside}")
    if result["limit"]:
        lines.append(f"limit={result['limit']} examples per task: not comparable with published figures")
    if result["task_subset"]:
        lines.append(f"{len(result['tasks'])} tasks asked for, not the whole bundle: not comparable with "
                     "published figures")
    return "\n".join(lines)


# --- the command line ---------------------------------------------------------------------------------


@dataclass
class CoreConfig:
    checkpoint: str = param(MISSING, "run folder, checkpoint or model folder, or hf:DIR")
    bundle: str = param(DEFAULT_BUNDLE, f"the eval bundle folder (nanochat's {BUNDLE_URL}, unzipped)")
    tasks: list[str] = param(doc="tasks of core.yaml to run; empty: all (CORE needs all)", factory=list)
    limit: int | None = param(None, "examples per task, the first of nanochat's shuffled order; null: "
                                    "all (figures on a limit are not comparable)", ge=1)
    batch_size: int = param(16, "sequences per forward pass", ge=1)
    device: str = param("auto", "cuda, cpu, or auto (cuda when available)")
    dtype: str = param("auto", "auto is bfloat16 autocast on GPU, float32 on CPU",
                       choices=("auto", "float32", "bfloat16", "float16"))
    output: str | None = param(None, "the JSON file; null: eval/<checkpoint>.json in the run folder")


def main(argv: list[str]) -> int:
    cfg = cli_config(argv, CoreConfig, "python -m train.core")
    try:
        from train.harness import WebtextLM
    except ImportError:
        print("python -m train.core needs lm-evaluation-harness: pip install -e '.[eval]' "
              "(make setup installs it)", file=sys.stderr)
        return 2
    from train.eval import device_and_output, merged

    try:
        load_bundle(cfg.bundle, cfg.tasks)  # a missing file fails now, not after the model loads
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    resolved = device_and_output(cfg.checkpoint, cfg.device, cfg.output)
    if resolved is None:
        return 2
    device, output = resolved
    started = time.time()
    lm = WebtextLM(checkpoint=cfg.checkpoint, batch_size=cfg.batch_size, device=str(device), dtype=cfg.dtype)
    result = evaluate_core(lm, cfg.bundle, cfg.limit, cfg.tasks)
    reference = published(lm.model.config)
    print(table(result, reference))
    record = {**result, "checkpoint": cfg.checkpoint, "bundle": str(Path(cfg.bundle).resolve()),
              "published": dict(zip(("model", "core_metric"), reference, strict=True)) if reference else None,
              "seconds": round(time.time() - started, 1)}
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, json.dumps(merged(output, {"core": record}), indent=1) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
