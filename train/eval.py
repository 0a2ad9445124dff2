"""``python -m train.eval``: zero-shot (or few-shot) tasks of lm-evaluation-harness on any checkpoint.

    python -m train.eval checkpoint=out/run tasks=[lambada_openai,hellaswag,wikitext]
    python -m train.eval checkpoint=hf:gpt2-hf tasks=[lambada_openai] limit=200 batch_size=32
    python -m train.eval checkpoint=out/run tasks=[my_task] include_path=my_tasks/
    python -m train.eval checkpoint=out/run preset=gpt2_paper data=data/eval
    python -m train.eval --help

``checkpoint`` is what ``train.sample`` takes: a run folder (its newest complete checkpoint), one
checkpoint or model folder, or ``hf:DIR``. The harness (``lm-eval``, the ``dev`` extra) runs the
tasks on our model (``train/harness.py``, registered as ``webtext``); the harness's own table is
printed, and the results go to a JSON file: ``output``, or ``eval/<checkpoint>.json`` in the run
folder (the model folder for one outside a run), where each task's figures replace that task's
earlier ones and the other tasks' stay. The datasets come from ``datasets``' cache: set
``HF_DATASETS_OFFLINE=1`` on machines without internet.

``preset=gpt2_paper`` runs the GPT-2 paper's zero-shot table (``train/paper.py``; its task files
are ``train/paper_tasks/``, always on the include path) and prints it beside the paper's figures
for the model's size. ``data`` is the folder ``python -m train.eval_data`` fills: the paper's
datasets in their original formats, and, in ``data/hf``, the ``datasets`` cache of the harness's
own tasks (used when that folder exists and ``HF_HOME`` is not set).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from model.base.files import atomic_write
from model.base.schema import ConfigError, cli_config, param
from train import paper
from train.paper import DEFAULT_DATA, PRESETS

log = logging.getLogger("webtext.eval")


@dataclass
class EvalConfig:
    checkpoint: str = param(MISSING, "run folder, checkpoint or model folder, or hf:DIR")
    tasks: list[str] = param(doc="lm-evaluation-harness tasks or groups",
                             factory=lambda: ["lambada_openai", "hellaswag"])
    preset: str | None = param(None, "a named task list instead of tasks: gpt2_paper (the GPT-2 "
                                     "paper's Table 3)", choices=(None, *PRESETS))
    data: str = param(DEFAULT_DATA, "the evaluation data folder python -m train.eval_data fills")
    limit: float | None = param(None, "examples per task: a count, or a fraction when below 1; "
                                      "null: all (figures on a limit are not comparable)", gt=0)
    num_fewshot: int | None = param(None, "examples in the prompt; null: each task's own (zero-shot "
                                          "for the GPT-2 tasks)", ge=0)
    batch_size: int = param(16, "sequences per forward pass", ge=1)
    device: str = param("auto", "cuda, cpu, or auto (cuda when available)")
    dtype: str = param("auto", "auto is bfloat16 autocast on GPU, float32 on CPU",
                       choices=("auto", "float32", "bfloat16", "float16"))
    include_path: str | None = param(None, "a folder of more task YAML files")
    output: str | None = param(None, "the JSON file; null: eval/<checkpoint>.json in the run folder")
    seed: int = param(1234, "seed of the harness's sampling (few-shot examples, bootstrap)")
    overlap: str | None = param(None, "the overlap stage's report.json (workdir/overlap/report.json): "
                                      "with clean, each task is scored again on its clean examples")
    clean: list[str] = param(doc="TASK=SET: the task's test examples are the report's set SET, in "
                                 "order; scored again without those whose n-grams are in the corpus",
                             factory=list)


def default_output(spec: str) -> Path:
    """``eval/<name>.json`` beside the model: in the run folder for a run or one of its checkpoints
    (named after the checkpoint), else in the model folder itself."""
    from model.base.folders import RunFolder
    from model.weights import resolve

    kind, folder = resolve(spec)
    if kind == "ours" and folder.parent.name == "checkpoints" and RunFolder.is_run(folder.parent.parent):
        return folder.parent.parent / "eval" / f"{folder.name}.json"
    return folder / "eval" / f"{folder.name}.json"


def merged(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over what ``path`` holds, task by task."""
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            log.warning("%s is not JSON; replaced", path)
    per_task = ("results", "configs", "n-samples", "versions", "clean")
    out = {**old, **{k: v for k, v in new.items() if k not in per_task}}
    for key in per_task:
        out[key] = {**old.get(key, {}), **new.get(key, {})}
    return out


def clean_subsets(cfg: EvalConfig, tasks: list[str], limit: float | None) -> dict[str, dict[str, Any]]:
    """Per task of ``clean``: its set's name in the overlap report and the report's examples."""
    if not cfg.clean:
        return {}
    if cfg.overlap is None:
        raise ConfigError("clean", "needs overlap=PATH, the overlap stage's report.json")
    if limit is not None:
        raise ConfigError("clean", "scores whole test sets: leave limit unset")
    try:
        report = json.loads(Path(cfg.overlap).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("overlap", f"{cfg.overlap}: {err}") from None
    out = {}
    for entry in cfg.clean:
        task, sep, name = entry.partition("=")
        if not sep or not task or not name:
            raise ConfigError("clean", f"{entry!r}: expected TASK=SET")
        if task not in tasks:
            raise ConfigError("clean", f"{task!r} is not among the tasks run ({', '.join(tasks)})")
        if name not in report.get("sets", {}):
            raise ConfigError("clean", f"{cfg.overlap} has no set {name!r}; it has "
                                       f"{', '.join(report.get('sets', {})) or 'none'}")
        out[task] = {"set": name, "examples": report["sets"][name]["examples"], "n": report.get("n")}
    return out


def score_clean(lm_eval: Any, lm: Any, manager: Any, cfg: EvalConfig, clean: dict[str, dict[str, Any]],
                results: dict[str, Any]) -> dict[str, Any]:
    """Each task of ``clean`` scored again on the examples none of whose n-grams the corpus holds
    (the paper's check on LAMBADA), with the harness's ``samples``; the table is printed."""
    from lm_eval.utils import make_table

    samples = {}
    for task, subset in clean.items():
        docs = results["n-samples"][task]["original"]
        if docs != len(subset["examples"]):
            raise ConfigError("clean", f"{task} has {docs:,} test examples and the set {subset['set']!r} "
                                       f"{len(subset['examples']):,}: not the same examples")
        samples[task] = [i for i, e in enumerate(subset["examples"]) if e["found"] == 0]
    again = lm_eval.simple_evaluate(
        model=lm, tasks=list(clean), num_fewshot=cfg.num_fewshot, samples=samples, task_manager=manager,
        random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
        fewshot_random_seed=cfg.seed)
    print("\nwithout the examples that overlap the corpus (n-grams of the overlap report):")
    print(make_table(again))
    out = {}
    for task, subset in clean.items():
        total = len(subset["examples"])
        print(f"{task}: {len(samples[task]):,} of {total:,} examples clean (set {subset['set']}, "
              f"{subset['n']}-grams)")
        out[task] = {"set": subset["set"], "n": subset["n"], "examples": total,
                     "clean_examples": len(samples[task]), "results": again["results"][task]}
    return out


def use_data_folder(folder: Path) -> None:
    """Point the paper's tasks at ``folder``, and ``datasets`` at its cache (``folder/hf``, which
    ``train.eval_data`` fills) unless ``HF_HOME`` says otherwise. Before ``datasets`` is imported."""
    os.environ[paper.DATA_ENV] = str(folder.resolve())
    if (folder / "hf").is_dir() and "HF_HOME" not in os.environ:
        os.environ["HF_HOME"] = str((folder / "hf").resolve())
        log.info("datasets cache: %s", os.environ["HF_HOME"])


class _QuietCustomDataset(logging.Filter):
    """The harness warns at every task that loads its own dataset; ours all do, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


QUIET_CUSTOM_DATASET = _QuietCustomDataset()


def device_and_output(checkpoint: str, device: str, output: str | None) -> tuple[Any, Path] | None:
    """The device to score on and the results file (``output``, or ``default_output``); None, with
    the error printed, when the device or the checkpoint is not there."""
    from train.distributed import pick_device

    try:
        return pick_device(device), Path(output) if output else default_output(checkpoint)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
    except FileNotFoundError as err:
        print(f"checkpoint error: {err}", file=sys.stderr)
    return None


def main(argv: list[str]) -> int:
    cfg = cli_config(argv, EvalConfig, "python -m train.eval")
    use_data_folder(Path(cfg.data))
    try:
        import lm_eval
    except ImportError:
        print("python -m train.eval needs lm-evaluation-harness: pip install -e '.[eval]' "
              "(make setup installs it)", file=sys.stderr)
        return 2
    from lm_eval.utils import make_table

    from train.config import harness_limit, task_manager
    from train.harness import WebtextLM

    logging.getLogger("lm_eval.api.task").addFilter(QUIET_CUSTOM_DATASET)  # (added once: same object)
    tasks = PRESETS[cfg.preset] if cfg.preset else list(cfg.tasks)
    resolved = device_and_output(cfg.checkpoint, cfg.device, cfg.output)
    if resolved is None:
        return 2
    device, output = resolved
    manager = task_manager(cfg.include_path)  # the harness's tasks, the paper's, include_path's
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        print(f"config error: tasks: unknown to lm-evaluation-harness: {', '.join(unknown)} "
              "(python -m lm_eval ls tasks lists them; include_path= adds a folder of YAML files)",
              file=sys.stderr)
        return 2
    limit = harness_limit(cfg.limit)
    try:
        clean = clean_subsets(cfg, tasks, limit)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    lm = WebtextLM(checkpoint=cfg.checkpoint, batch_size=cfg.batch_size, device=str(device),
                   dtype=cfg.dtype)
    started = time.time()
    try:
        results = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, num_fewshot=cfg.num_fewshot, limit=limit, task_manager=manager,
            random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
            fewshot_random_seed=cfg.seed,
        )
    except FileNotFoundError as err:  # a paper task's data file
        print(f"data error: {err}", file=sys.stderr)
        return 2
    if results is None:  # not rank 0 of a distributed harness run
        return 0
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    size = paper.size_of(lm.model.config.n_layer, lm.model.config.n_embd)
    comparison = paper.table(results["results"], size)
    if comparison:
        print(comparison)
    record = {k: results[k] for k in ("results", "configs", "versions", "n-samples") if k in results}
    if clean:
        try:
            record["clean"] = score_clean(lm_eval, lm, manager, cfg, clean, results)
        except ConfigError as err:
            print(f"config error: {err}", file=sys.stderr)
            return 2
    record.update(checkpoint=cfg.checkpoint, limit=limit, num_fewshot=cfg.num_fewshot,
                  seconds=round(time.time() - started, 1), lm_eval_version=lm_eval.__version__)
    output.parent.mkdir(parents=True, exist_ok=True)
    merged_record = merged(output, record)
    rows = paper.records(merged_record["results"], size)  # every paper task the file holds
    if rows:
        merged_record["gpt2_paper"] = rows
    atomic_write(output, json.dumps(merged_record, indent=1, default=str) + "\n")
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
