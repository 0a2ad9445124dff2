"""lm-evaluation-harness tasks at each evaluation of a training run (``eval.tasks``), on rank 0.

    python -m train ... eval.tasks=[lambada_openai,hellaswag] eval.task_limit=200

Rank 0 scores the model it trains (``train/harness.py``'s ``WebtextLM`` around the unwrapped
module, in the training's autocast dtype) with ``lm_eval.simple_evaluate``; the other ranks wait
at a barrier. One figure per task joins the evaluation's record (``metrics.jsonl``, wandb), beside
the validation loss, as ``eval/<task>/<metric>`` (``headline``).

The training does not notice: the model goes back to the mode it was in, nothing is computed with
gradients, and every random generator the harness reseeds (python's ``random``, numpy's, torch's on
the CPU and each GPU) is put back as it was, so the losses are bit-identical with tasks and without
(``tests/test_train_eval_tasks.py``), and a resumed run stays exact. The data loader is not touched.

The task names were checked against the harness's index when the config was validated
(``train/config.py``, ``EvalConfig.check``); ``preload`` reads the tasks' data once at the start, so a
dataset that cannot be read stops the run before its first step, not at its first evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from train.checkpoint import rng_state, set_rng_state
from train.config import TrainConfig, harness_limit, task_manager
from train.distributed import Ranks
from train.errors import TrainingError

if TYPE_CHECKING:
    from train.loop import Trainer

log = logging.getLogger("webtext.train")

# The harness's seeds: python -m train.eval's default, so a checkpoint scores there as it did here.
SEED = 1234
# A task's headline metric: the first of these it reports, else the first it reports.
HEADLINE = ("acc_norm", "acc", "exact_match", "token_perplexity", "word_perplexity", "perplexity",
            "bits_per_byte")


def preload(cfg: TrainConfig, ranks: Ranks) -> None:
    """Rank 0 loads the tasks once (datasets fetched or read from their cache), before training."""
    if not (cfg.eval.tasks and ranks.main):
        return
    started = time.perf_counter()
    try:
        task_manager(cfg.eval.include_path).load(list(cfg.eval.tasks))
    except Exception as err:  # a dataset offline, a group listing a task twice: the harness's own words
        raise TrainingError(f"eval.tasks: lm-evaluation-harness could not load {cfg.eval.tasks}: "
                            f"{err}") from err
    log.info("lm-evaluation-harness tasks %s loaded in %.1f s; they run at each evaluation on rank 0",
             ", ".join(cfg.eval.tasks), time.perf_counter() - started)


def scores(trainer: Trainer, model: torch.nn.Module | None = None) -> dict[str, float]:
    """The tasks' headline figures (rank 0; the other ranks wait for it and get none), of ``model``:
    the trainer's own, or a whole copy of a sharded one (``train/sharding.py``)."""
    figures: dict[str, float] = {}
    if trainer.ranks.main:
        figures = run_tasks(trainer, model if model is not None else trainer.model)
    if trainer.ranks.world_size > 1:
        dist.barrier()
    return figures


def run_tasks(trainer: Trainer, model: torch.nn.Module) -> dict[str, float]:
    """``lm_eval.simple_evaluate`` on the trained model, leaving the training as it was."""
    import lm_eval

    from train.harness import WebtextLM

    cfg = trainer.cfg
    started = time.perf_counter()
    lm = WebtextLM(model=model, batch_size=cfg.eval.task_batch_size or cfg.micro_batch_size, dtype=cfg.dtype)
    with untouched(model):
        results = lm_eval.simple_evaluate(
            model=lm, tasks=list(cfg.eval.tasks), task_manager=task_manager(cfg.eval.include_path),
            limit=harness_limit(cfg.eval.task_limit),
            log_samples=False, bootstrap_iters=0,  # no standard errors: no process pool in the trainer
            random_seed=SEED, numpy_random_seed=SEED, torch_random_seed=SEED, fewshot_random_seed=SEED)
    figures = headline(results)
    log.info("step %d: lm-evaluation-harness (%.1f s): %s", trainer.step, time.perf_counter() - started,
             ", ".join(f"{k.removeprefix('eval/')} {v:.4g}" for k, v in figures.items()))
    return figures


@contextmanager
def untouched(model: torch.nn.Module) -> Iterator[None]:
    """Inside: ``model`` in eval mode, no autograd, the harness's logs at warning level. After: the
    mode, every random generator and the log level as they were before."""
    rng, training = rng_state(), model.training
    harness_log = logging.getLogger("lm_eval")
    level = harness_log.level
    harness_log.setLevel(max(logging.WARNING, harness_log.getEffectiveLevel()))  # not every request
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(training)
        set_rng_state(rng)
        harness_log.setLevel(level)


def headline(results: dict[str, Any]) -> dict[str, float]:
    """One figure per task asked for, ``eval/<task>/<metric>``: for a group with an aggregate, the
    group's; for one without (or a tag, or a pattern), each of its tasks'. ``<metric>`` is the
    harness's own name of the figure, with ``,<filter>`` after it where the task filters its answers
    (``eval/gsm8k/exact_match,strict-match``): the first of ``HEADLINE`` the task reports, else the
    first figure it reports."""
    entries, members = results["results"], results.get("group_subtasks", {})
    inside = {name for names in members.values() for name in names}
    figures: dict[str, float] = {}

    def report(name: str) -> None:
        found = main_metric(entries.get(name, {}))
        if found is not None:
            figures[f"eval/{name}/{found[0]}"] = found[1]
            return
        for member in members.get(name, []):
            report(member)

    for name in entries:
        if name not in inside:
            report(name)
    return figures


def main_metric(entry: dict[str, Any]) -> tuple[str, float] | None:
    """(name, value) of an entry of the harness's results: its ``metric,filter`` keys are figures
    (``_stderr`` ones aside); the filter ``none`` is left out of the name."""
    found = {key: value for key, value in entry.items()
             if "," in key and "_stderr," not in key and isinstance(value, (int, float))}
    if not found:
        return None

    def rank(key: str) -> int:
        metric = key.split(",")[0]
        return HEADLINE.index(metric) if metric in HEADLINE else len(HEADLINE)

    key = min(found, key=rank)  # the first of the best rank: the task's own order breaks ties
    return key.removesuffix(",none"), float(found[key])
