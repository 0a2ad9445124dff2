"""Our lm-evaluation-harness model (``train/harness.py``) against the harness's own ``hf`` model.

The same random weights, once as our model folder and once exported as a Hugging Face folder, are
scored by ``lm_eval.simple_evaluate`` on small tasks in the harness's own formats (task YAML files,
local JSON lines through ``dataset_path: json``): a LAMBADA-style loglikelihood task, a
HellaSwag-style multiple choice, a WikiText-style rolling perplexity (documents longer than the
model's 64 positions, so the rolling windows matter) and a greedy generation task. Every
per-example answer must agree: the same accuracies, perplexities within 1e-4 relative, the same
generated text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is the dev extra's (make setup installs it)")
from lm_eval.tasks import TaskManager  # noqa: E402

import train.harness  # noqa: E402,F401  (registers "webtext")
from model import hf, weights  # noqa: E402
from model.base.folders import COMPLETE  # noqa: E402
from model.base.tokenizer import EOT_ID  # noqa: E402
from model.config import GPTConfig  # noqa: E402
from model.gpt2 import GPT  # noqa: E402

Both = tuple[dict[str, Any], dict[str, Any], list[str]]  # our results, the hf model's, the tasks
CFG = GPTConfig(name="harness", n_layer=2, n_head=2, n_embd=64, block_size=64)

PASSAGES = [
    "The river ran high after the storm, and the old miller watched the water climb the stones of his wheel",
    "She folded the letter twice, set it on the table beside the lamp, and walked out into the morning air",
    "Every spring the village held a fair where farmers sold cheese, bread and honey from long wooden tables",
    "The captain read the chart by candlelight while the crew slept below and the wind pushed the ship north",
    "He had never seen a city so quiet; the streets were empty and the shops were shut behind iron shutters",
    "After the concert the musicians packed their instruments and took the last train back across the river",
]
CHOICES = [
    {"query": "The baker opened the oven and", "choices": [" took out the bread.", " sang to the moon.",
                                                          " painted the door blue."], "gold": 0},
    {"query": "When the rain started, the children", "choices": [" ran inside.", " ate the clouds.",
                                                                " counted the stars at noon."], "gold": 0},
    {"query": "The doctor listened to his chest and", "choices": [" wrote a prescription.",
                                                                 " baked a cake for the nurse.",
                                                                 " flew away."], "gold": 0},
]
QUESTIONS = [
    {"question": "What color is the sky on a clear day?", "answer": "blue"},
    {"question": "How many legs does a spider have?", "answer": "eight"},
    {"question": "What do bees make?", "answer": "honey"},
]


# The harness's own task formats (YAML; JSON is YAML) over local JSON lines: LAMBADA's last word,
# HellaSwag-style choices (``bench/harness.py`` uses them too).
LAMBADA: dict[str, Any] = {
    "output_type": "loglikelihood", "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
    "doc_to_target": "{{' '+text.split(' ')[-1]}}",
    "metric_list": [{"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
CHOICE: dict[str, Any] = {
    "output_type": "multiple_choice", "doc_to_text": "{{query}}", "doc_to_target": "{{gold}}",
    "doc_to_choice": "{{choices}}", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}


def write_task(folder: Path, name: str, data: str, **spec: Any) -> None:
    """Task ``name`` in ``folder``, its test split the JSON lines ``folder/<data>.jsonl``."""
    doc = {"task": name, "dataset_path": "json", "test_split": "test",
           "dataset_kwargs": {"data_files": {"test": str(folder / f"{data}.jsonl")}}, **spec}
    (folder / f"{name}.yaml").write_text(json.dumps(doc, indent=1))


def task_files(folder: Path) -> list[str]:
    """The four tasks as YAML files and JSON lines in ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    pages = [" ".join(2 * (PASSAGES[i:] + PASSAGES[:i])) for i in range(3)]  # ~250 tokens: 4 windows of 64
    data = {
        "lambada": [{"text": t} for t in PASSAGES],
        "choice": CHOICES,
        "wikitext": [{"page": p} for p in pages],
        "qa": QUESTIONS,
    }
    for name, rows in data.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write_task(folder, "t_lambada", "lambada", **LAMBADA)
    write_task(folder, "t_choice", "choice", **CHOICE)
    write_task(folder, "t_wikitext", "wikitext", output_type="loglikelihood_rolling", doc_to_text="",
         doc_to_target="{{page}}",
         metric_list=[{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                      {"metric": "bits_per_byte"}])
    write_task(folder, "t_generate", "qa", output_type="generate_until", doc_to_text="Q: {{question}}\nA:",
         doc_to_target="{{answer}}",
         generation_kwargs={"until": ["\n", "."], "max_gen_toks": 12, "do_sample": False},
         metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}])
    return ["t_lambada", "t_choice", "t_wikitext", "t_generate"]


def trained_model(steps: int = 150, seed: int = 0) -> GPT:
    """A small model fitted to the passages: its answers are not all alike (LAMBADA's last words
    come out greedy, the generations differ per prompt), and its top predictions stand well clear
    of the next, so float rounding cannot flip a greedy choice between two implementations."""
    torch.manual_seed(seed)
    model = GPT(CFG)
    ids = []
    for text in PASSAGES:
        ids += train.harness.gpt2_encoding().encode(text) + [EOT_ID]
    data = torch.tensor(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - CFG.block_size - 1, (8,))
        x = torch.stack([data[i:i + CFG.block_size] for i in starts])
        y = torch.stack([data[i + 1:i + CFG.block_size + 1] for i in starts])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def evaluate(model: str, model_args: str, tasks: list[str], include: Path) -> dict[str, Any]:
    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=tasks, batch_size=4,
                                   device="cpu", task_manager=TaskManager(include_path=str(include)),
                                   log_samples=True, random_seed=0, numpy_random_seed=0,
                                   torch_random_seed=0, fewshot_random_seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[GPT, Path]:
    """``trained_model()`` once for the module, and its model folder."""
    model = trained_model()
    folder = tmp_path_factory.mktemp("trained") / "model"
    weights.save(model, folder)
    return model, folder


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, trained: tuple[GPT, Path]) -> Both:
    tmp = tmp_path_factory.mktemp("harness")
    tasks = task_files(tmp / "tasks")
    model = trained[0]
    weights.save(model, tmp / "ours")
    hf.export(model, tmp / "hf")
    ours = evaluate("webtext", f"checkpoint={tmp / 'ours'}", tasks, tmp / "tasks")
    theirs = evaluate("hf", f"pretrained={tmp / 'hf'},dtype=float32", tasks, tmp / "tasks")
    return ours, theirs, tasks


def test_every_answer_equals_the_harness_hf_model(both: Both) -> None:
    ours, theirs, tasks = both
    for name in tasks:
        mine, ref = ours["samples"][name], theirs["samples"][name]
        assert len(mine) == len(ref) > 0
        for a, b in zip(sorted(mine, key=lambda s: s["doc_id"]), sorted(ref, key=lambda s: s["doc_id"]),
                        strict=True):
            if name == "t_generate":
                assert a["resps"] == b["resps"], (a["resps"], b["resps"])
                continue
            for (x, *flag_x), (y, *flag_y) in zip(_scores(a), _scores(b), strict=True):
                assert x == pytest.approx(y, rel=1e-4, abs=1e-4)
                assert flag_x == flag_y  # greedy or not
    for name in tasks:
        for metric, value in theirs["results"][name].items():
            if metric == "alias" or "stderr" in metric or not isinstance(value, float):
                continue
            mine = ours["results"][name][metric]
            if metric.startswith(("acc", "exact_match")):
                assert mine == value, (name, metric)
            else:
                assert mine == pytest.approx(value, rel=1e-4), (name, metric)


def test_the_rolling_task_spans_several_windows(both: Both) -> None:
    ours, _, _ = both
    for sample in ours["samples"]["t_wikitext"]:
        text = sample["doc"]["page"]
        assert len(train.harness.gpt2_encoding().encode(text)) > 2 * CFG.block_size
        assert math.isfinite(sample["resps"][0][0])


def _scores(sample: dict[str, Any]) -> list[tuple[Any, ...]]:
    out = []
    for resp in sample["resps"]:
        value = resp[0]
        out.append(tuple(value) if isinstance(value, (list, tuple)) else (value,))
    return out


def test_the_command_prints_the_table_and_merges_the_results_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from train import eval as eval_app

    task_files(tmp_path / "tasks")
    run = tmp_path / "run"
    step = run / "checkpoints" / "step_0000010"
    weights.save(trained_model(steps=20), step)
    (step / COMPLETE).touch()
    common = [f"checkpoint={run}", f"include_path={tmp_path / 'tasks'}", "batch_size=4", "device=cpu"]
    assert eval_app.main([*common, "tasks=[t_lambada]"]) == 0
    assert eval_app.main([*common, "tasks=[t_choice]", "limit=2"]) == 0
    out = capsys.readouterr().out
    assert "t_lambada" in out and "t_choice" in out and "|" in out  # the harness's table
    saved = json.loads((run / "eval" / "step_0000010.json").read_text())
    assert set(saved["results"]) == {"t_lambada", "t_choice"}  # the second run kept the first's task
    assert saved["limit"] == 2 and saved["checkpoint"] == str(run)
    assert 0 <= saved["results"]["t_lambada"]["acc,none"] <= 1


def test_the_command_refuses_an_unknown_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from train import eval as eval_app

    weights.save(trained_model(steps=1), tmp_path / "model")
    assert eval_app.main([f"checkpoint={tmp_path / 'model'}", "tasks=[no_such_task_anywhere]"]) == 2
    assert "unknown to lm-evaluation-harness: no_such_task_anywhere" in capsys.readouterr().err


def test_the_command_scores_the_clean_subset_of_an_overlap_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], trained: tuple[GPT, Path]) -> None:
    """``overlap=`` and ``clean=``: the task scored again without the examples the overlap report
    finds in the corpus (the GPT-2 paper's check on LAMBADA), with the harness's own ``samples``."""
    from train import eval as eval_app

    tasks = tmp_path / "tasks"
    task_files(tasks)
    weights.save(trained[0], tmp_path / "model")  # its own folder: the results file goes in it
    contaminated = {1, 4}
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"n": 8, "sets": {"lam": {"examples": [
        {"ngrams": 12, "found": 3 if i in contaminated else 0} for i in range(len(PASSAGES))]}}}))
    common = [f"checkpoint={tmp_path / 'model'}", f"include_path={tasks}", "batch_size=4", "device=cpu",
              "tasks=[t_lambada]", f"overlap={report}"]
    assert eval_app.main([*common, "clean=[t_lambada=lam]"]) == 0
    assert "4 of 6 examples clean (set lam, 8-grams)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "model" / "eval" / "model.json").read_text())
    clean = saved["clean"]["t_lambada"]
    assert (clean["examples"], clean["clean_examples"]) == (6, 4)
    every = evaluate("webtext", f"checkpoint={tmp_path / 'model'}", ["t_lambada"], tasks)
    right = [s["acc"] for s in every["samples"]["t_lambada"] if s["doc_id"] not in contaminated]
    assert clean["results"]["acc,none"] == pytest.approx(sum(right) / len(right))
    full = every["results"]["t_lambada"]["acc,none"]
    assert saved["results"]["t_lambada"]["acc,none"] == pytest.approx(full)
    assert clean["results"]["acc,none"] != full  # (the model gets one of the two left out right)

    report.write_text(json.dumps({"n": 8, "sets": {"lam": {"examples": [{"ngrams": 1, "found": 0}] * 5}}}))
    assert eval_app.main([*common, "clean=[t_lambada=lam]"]) == 2
    assert "t_lambada has 6 test examples and the set 'lam' 5" in capsys.readouterr().err
    assert eval_app.main([*common, "clean=[t_lambada=other]"]) == 2
    assert "has no set 'other'; it has lam" in capsys.readouterr().err
