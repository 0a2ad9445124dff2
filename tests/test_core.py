"""CORE (``train/core.py``) on a small bundle in the real format, written here: ``core.yaml``, JSON
lines under ``eval_data/`` and ``eval_meta_data.csv`` with DCLM's columns; one task of each type.

The prompts are checked as literal strings (the few-shot examples are those ``random.Random(1234 +
i)`` draws), the token split on GPT-2's BPE, and the scores of the batched adapter against nanochat's
computation written out plainly: each option alone through the model's forward pass, cut from the
left to its 32 positions (so most prompts are cut), the mean loss of its continuation by hand.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval", reason="lm-eval is the dev extra's (make setup installs it)")
from model import weights  # noqa: E402
from model.base.schema import ConfigError  # noqa: E402
from model.base.tokenizer import EOT_ID, gpt2_encoding  # noqa: E402
from model.config import GPTConfig  # noqa: E402
from model.gpt2 import GPT  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from train import core  # noqa: E402
from train.harness import WebtextLM  # noqa: E402

CFG = GPTConfig(name="core-test", n_layer=2, n_head=2, n_embd=32, block_size=32)

MC = [
    {"query": "Question: What do cows drink?\nAnswer:", "choices": ["water", "milk", "oil"], "gold": 0},
    {"query": "Question: What color is grass?\nAnswer:", "choices": ["blue", "green", "red"], "gold": 1},
    {"query": "Question: How many legs has a cat?\nAnswer:", "choices": ["two", "six", "four"], "gold": 2},
    {"query": "Question: What falls from clouds?\nAnswer:", "choices": ["rain", "sand", "stones"], "gold": 0},
    {"query": "Question: Where do fish live?\nAnswer:", "choices": ["in trees", "in water", "in the sky"],
     "gold": 1},
]
SCHEMA = [
    {"context_options": ["The trophy did not fit in the suitcase because the trophy",
                         "The trophy did not fit in the suitcase because the suitcase"],
     "continuation": "was too big.", "gold": 0},
    {"context_options": ["Anna thanked Maria because Anna", "Anna thanked Maria because Maria"],
     "continuation": "had helped her.", "gold": 1},
    {"context_options": ["The man lifted the boy because the man", "The man lifted the boy because the boy"],
     "continuation": "was so strong.", "gold": 0},
    {"context_options": ["The cup fell off the table because the cup",
                         "The cup fell off the table because the table"],
     "continuation": "was near the edge.", "gold": 0},
]
LM = [  # trailing spaces in contexts: nanochat strips them
    {"context": "Question: What is the capital of France? ", "continuation": "Paris"},
    {"context": "Question: What is the largest ocean?", "continuation": "the Pacific"},
    {"context": "Question: Who wrote Hamlet?  ", "continuation": "William Shakespeare"},
    {"context": "Question: What is frozen water called?", "continuation": "ice"},
]
CORE_YAML = """\
icl_tasks:
- label: mc_demo
  dataset_uri: reasoning/mc_demo.jsonl
  num_fewshot: [2]
  icl_task_type: multiple_choice
- label: schema_demo
  dataset_uri: language/schema_demo.jsonl
  num_fewshot: [1]
  icl_task_type: schema
- label: lm_demo
  dataset_uri: world/lm_demo.jsonl
  num_fewshot: [1]
  icl_task_type: language_modeling
  continuation_delimiter: "\\nAnswer: "
"""
META_CSV = """\
Eval Task,Task Category,Task Type,#shots,#datapoints,Random baseline,Centered Metric?,Description
jeopardy,world knowledge,language modeling,10,2117,0,,"Jeopardy questions, 5 categories."
mc_demo,commonsense reasoning,multiple choice,2,5,33.3,,"Three-choice questions, made up."
schema_demo,language understanding,schema,1,4,50,,Winograd-style schemas.
lm_demo,world knowledge,language modeling,1,4,0,,Short answers.
"""
BASELINES = {"mc_demo": 33.3, "schema_demo": 50.0, "lm_demo": 0.0}


def write_bundle(folder: Path) -> Path:
    for uri, rows in (("reasoning/mc_demo.jsonl", MC), ("language/schema_demo.jsonl", SCHEMA),
                      ("world/lm_demo.jsonl", LM)):
        path = folder / "eval_data" / uri
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n")  # a blank last line
    (folder / "core.yaml").write_text(CORE_YAML)
    (folder / "eval_meta_data.csv").write_text(META_CSV)
    return folder


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "eval_bundle")


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def task(bundle: Path, label: str) -> core.Task:
    (found,) = core.load_bundle(bundle, [label])
    return found


# --- the bundle -----------------------------------------------------------------------------------


def test_bundle_tasks(bundle: Path) -> None:
    tasks = core.load_bundle(bundle)
    assert [(t.label, t.kind, t.shots, t.delimiter, t.random_baseline) for t in tasks] == [
        ("mc_demo", "multiple_choice", 2, " ", 33.3), ("schema_demo", "schema", 1, " ", 50.0),
        ("lm_demo", "language_modeling", 1, "\nAnswer: ", 0.0)]
    assert tasks[0].data == bundle / "eval_data" / "reasoning" / "mc_demo.jsonl"
    assert [t.label for t in core.load_bundle(bundle, ["lm_demo", "mc_demo"])] == ["mc_demo", "lm_demo"]


def test_examples_in_nanochats_order(bundle: Path) -> None:
    """Shuffled once with random.Random(1337) (5 examples: 1, 0, 3, 2, 4); a limit takes the first."""
    assert core.read_examples(task(bundle, "mc_demo")) == [MC[1], MC[0], MC[3], MC[2], MC[4]]
    assert core.read_examples(task(bundle, "lm_demo"), limit=2) == [LM[1], LM[0]]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: (b / "core.yaml").unlink(), "core.yaml not found; the CORE eval bundle is nanochat's "
                                           "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"),
    (lambda b: (b / "eval_meta_data.csv").unlink(), "eval_meta_data.csv not found"),
    (lambda b: (b / "eval_data/language/schema_demo.jsonl").unlink(),
     "icl_tasks[1].dataset_uri: {b}/eval_data/language/schema_demo.jsonl not found; the CORE eval bundle"),
    (lambda b: (b / "core.yaml").write_text(CORE_YAML.replace("  icl_task_type: schema\n", "")),
     "core.yaml: icl_tasks[1].icl_task_type: missing"),
    (lambda b: (b / "core.yaml").write_text(CORE_YAML.replace("icl_task_type: schema", "icl_task_type: qa")),
     "core.yaml: icl_tasks[1].icl_task_type: 'qa'; one of multiple_choice, schema, language_modeling"),
    (lambda b: (b / "eval_meta_data.csv").write_text(META_CSV.replace("lm_demo,", "lm_demo_v2,")),
     "eval_meta_data.csv: no row with 'Eval Task' lm_demo"),
    (lambda b: (b / "eval_meta_data.csv").write_text(META_CSV.replace("Random baseline", "Baseline")),
     "eval_meta_data.csv: no column 'Random baseline'"),
])
def test_bundle_errors_name_the_file_or_key(bundle: Path, damage: Any, message: str) -> None:
    damage(bundle)
    with pytest.raises(ConfigError) as err:
        core.load_bundle(bundle)
    assert message.format(b=bundle) in str(err.value)


def test_example_errors_name_the_line(bundle: Path) -> None:
    path = bundle / "eval_data" / "reasoning" / "mc_demo.jsonl"
    path.write_text(json.dumps(MC[0]) + "\n" + json.dumps({"query": "q", "choices": ["a"]}) + "\n")
    with pytest.raises(ConfigError, match=r"mc_demo.jsonl:2: no 'gold' \(a multiple_choice example has "
                                          r"query, choices, gold\)"):
        core.read_examples(task(bundle, "mc_demo"))
    with pytest.raises(ConfigError, match="tasks: not in .*core.yaml: hellaswag; known: mc_demo"):
        core.load_bundle(bundle, ["hellaswag"])


# --- prompts --------------------------------------------------------------------------------------


def test_fewshot_draw() -> None:
    assert core.fewshot(MC, 0, 2) == [MC[4], MC[1]]  # random.Random(1234).sample([1, 2, 3, 4], 2)
    assert core.fewshot(MC, 3, 2) == [MC[1], MC[4]]
    assert core.fewshot(MC, 3, 0) == []
    assert core.fewshot(MC[:2], 0, 5) == [MC[1]]  # fewer examples than shots: all the others


def test_render_multiple_choice() -> None:
    assert core.render("multiple_choice", MC[0], core.fewshot(MC, 0, 2), " ") == [
        "Question: Where do fish live?\nAnswer: in water\n\n"
        "Question: What color is grass?\nAnswer: green\n\n"
        f"Question: What do cows drink?\nAnswer: {choice}" for choice in ("water", "milk", "oil")]
    assert core.render("multiple_choice", MC[1], [], " ") == [
        "Question: What color is grass?\nAnswer: blue", "Question: What color is grass?\nAnswer: green",
        "Question: What color is grass?\nAnswer: red"]


def test_render_schema() -> None:
    assert core.render("schema", SCHEMA[0], core.fewshot(SCHEMA, 0, 1), " ") == [
        "The man lifted the boy because the man was so strong.\n\n"
        "The trophy did not fit in the suitcase because the trophy was too big.",
        "The man lifted the boy because the man was so strong.\n\n"
        "The trophy did not fit in the suitcase because the suitcase was too big."]


def test_render_language_modelling() -> None:
    """Contexts stripped; the prompt without its continuation stripped too (no trailing space)."""
    assert core.render("language_modeling", LM[0], core.fewshot(LM, 0, 1), "\nAnswer: ") == [
        "Question: Who wrote Hamlet?\nAnswer: William Shakespeare\n\n"
        "Question: What is the capital of France?\nAnswer:",
        "Question: Who wrote Hamlet?\nAnswer: William Shakespeare\n\n"
        "Question: What is the capital of France?\nAnswer: Paris"]
    assert core.render("language_modeling", LM[1], [], " ") == [
        "Question: What is the largest ocean?", "Question: What is the largest ocean? the Pacific"]


# --- tokens ---------------------------------------------------------------------------------------


def test_common_length() -> None:
    assert core.common_length([[1, 2, 3], [1, 2, 4], [1, 2, 3, 5]]) == 2
    assert core.common_length([[1, 2], [1, 2, 3]]) == 2  # the whole of the shortest
    assert core.common_length([[7, 1, 2], [8, 9, 1, 2]], from_end=True) == 2
    assert core.common_length([[1, 2], [3, 4]], from_end=True) == 0


def test_token_split() -> None:
    enc = gpt2_encoding()

    def pieces(kind: str, prompts: list[str]) -> list[tuple[str, str]]:
        tokens = [[EOT_ID, *enc.encode(p)] for p in prompts]
        pairs = core.split_options(kind, tokens)
        assert [c + k for c, k in pairs] == (tokens[1:] if kind == "language_modeling" else tokens)
        return [(enc.decode(c), enc.decode(k)) for c, k in pairs]

    query = "<|endoftext|>Question: What color is grass?\nAnswer:"
    assert pieces("multiple_choice", core.render("multiple_choice", MC[1], [], " ")) == [
        (query, " blue"), (query, " green"), (query, " red")]
    assert pieces("schema", core.render("schema", SCHEMA[1], [], " ")) == [
        ("<|endoftext|>Anna thanked Maria because Anna", " had helped her."),
        ("<|endoftext|>Anna thanked Maria because Maria", " had helped her.")]
    assert pieces("language_modeling", core.render("language_modeling", LM[0], [], "\nAnswer: ")) == [
        ("<|endoftext|>Question: What is the capital of France?\nAnswer:", " Paris")]
    with pytest.raises(ValueError, match="does not tokenize as a prefix"):
        core.split_options("language_modeling", [[EOT_ID, 1, 2], [EOT_ID, 1, 3, 4]])


def test_crop_cuts_the_context_from_the_left() -> None:
    assert core.crop([1, 2, 3, 4], [5, 6], 6) == ([1, 2, 3, 4], [5, 6])
    assert core.crop([1, 2, 3, 4], [5, 6], 4) == ([3, 4], [5, 6])
    with pytest.raises(ValueError, match="leaves no context"):
        core.crop([1, 2], [5, 6], 2)


# --- scoring --------------------------------------------------------------------------------------


def test_judge() -> None:
    """Lowest mean loss per token wins (3 tokens for -3.0: 1.0; 2 for -1.0: 0.5), the first of equals;
    an empty continuation never wins; language modelling is right when greedy gives it all."""
    options = [([1], [2, 3, 4]), ([1], [5, 6]), ([1, 2], [])]
    scored = core.judge("multiple_choice", {"gold": 1}, options, [(-3.0, False), (-1.0, True), None])
    assert scored == core.Scored(correct=True, choice=1, losses=[1.0, 0.5, float("inf")])
    assert core.judge("schema", {"gold": 1}, options[:2], [(-1.5, False), (-1.0, False)]).choice == 0
    assert core.judge("language_modeling", {}, [([1], [2, 3])], [(-0.5, True)]) == core.Scored(
        correct=True, choice=None, losses=[0.25])
    assert not core.judge("language_modeling", {}, [([1], [2])], [(-0.1, False)]).correct


def reference(model: GPT, task: core.Task, examples: list[dict[str, Any]]) -> list[core.Scored]:
    """nanochat's computation, plainly: each option alone through the forward pass, the last
    ``block_size`` tokens of it, the mean cross-entropy of its continuation tokens."""
    enc = gpt2_encoding()
    out = []
    for index, example in enumerate(examples):
        prompts = core.render(task.kind, example, core.fewshot(examples, index, task.shots), task.delimiter)
        seqs = [[EOT_ID, *enc.encode(p, allowed_special="all")] for p in prompts]
        if task.kind == "language_modeling":
            starts, seqs = [len(seqs[0])], seqs[1:]
        elif task.kind == "multiple_choice":
            starts = [len(os.path.commonprefix(seqs))] * len(seqs)
        else:
            suffix = len(os.path.commonprefix([s[::-1] for s in seqs]))
            starts = [len(s) - suffix for s in seqs]
        losses, greedy = [], []
        for seq, start in zip(seqs, starts, strict=True):
            cut = max(0, len(seq) - CFG.block_size)
            seq, start = seq[cut:], start - cut
            with torch.no_grad():
                logits = model(torch.tensor([seq]))[0][0]  # (T, V)
            predicted, wanted = logits[start - 1:len(seq) - 1], torch.tensor(seq[start:])
            losses.append(F.cross_entropy(predicted, wanted).item())
            greedy.append(bool((predicted.argmax(-1) == wanted).all()))
        if task.kind == "language_modeling":
            out.append(core.Scored(greedy[0], None, losses))
        else:
            choice = losses.index(min(losses))
            out.append(core.Scored(choice == example["gold"], choice, losses))
    return out


@pytest.mark.parametrize("label", ["mc_demo", "schema_demo", "lm_demo"])
def test_scores_equal_the_plain_computation(bundle: Path, model: GPT, label: str) -> None:
    chosen = task(bundle, label)
    examples = core.read_examples(chosen)
    ours = core.score_task(WebtextLM(model=model, batch_size=3), chosen, examples)
    theirs = reference(model, chosen, examples)
    assert [(s.correct, s.choice) for s in ours] == [(s.correct, s.choice) for s in theirs]
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine.losses == pytest.approx(ref.losses, rel=1e-4)
    if label == "mc_demo":  # the cut matters: 2-shot prompts are longer than the 32 positions
        assert len(gpt2_encoding().encode(core.render("multiple_choice", examples[0],
                                                      core.fewshot(examples, 0, 2), " ")[0])) > 32


def test_centred_accuracy_and_core() -> None:
    assert core.centred(0.5, 25) == pytest.approx(1 / 3)
    assert core.centred(0.25, 25) == pytest.approx(0.0)
    assert core.centred(1.0, 9.1) == pytest.approx(1.0)
    assert core.centred(0.4, 0) == pytest.approx(0.4)
    assert core.core_metric([1 / 3, 0.0, 1.0]) == pytest.approx(4 / 9)


def test_evaluate_core(bundle: Path, model: GPT) -> None:
    lm = WebtextLM(model=model, batch_size=4)
    result = core.evaluate_core(lm, bundle)
    assert list(result["tasks"]) == ["mc_demo", "schema_demo", "lm_demo"] and result["comparable"]
    for label, figures in result["tasks"].items():
        chosen = task(bundle, label)
        expected = reference(model, chosen, core.read_examples(chosen))
        accuracy = sum(s.correct for s in expected) / len(expected)
        assert figures == {"type": chosen.kind, "shots": chosen.shots, "n": len(expected),
                           "accuracy": pytest.approx(accuracy), "random_baseline": BASELINES[label],
                           "centred": pytest.approx(core.centred(accuracy, BASELINES[label]))}
    assert result["core_metric"] == pytest.approx(
        sum(t["centred"] for t in result["tasks"].values()) / 3)
    limited = core.evaluate_core(lm, bundle, limit=2, tasks=["lm_demo"])
    assert list(limited["tasks"]) == ["lm_demo"] and limited["tasks"]["lm_demo"]["n"] == 2
    assert not limited["comparable"] and limited["limit"] == 2


def test_published_figure_by_size() -> None:
    assert core.published(GPTConfig()) == ("GPT-2 124M", 0.1139)
    assert core.published(GPTConfig(n_layer=48, n_head=25, n_embd=1600)) == ("GPT-2 1558M", 0.2565)
    assert core.published(CFG) is None
    result = {"tasks": {}, "core_metric": 0.12, "limit": None, "task_subset": []}
    assert "CORE 0.1200    GPT-2 124M: 0.1139 (published)" in core.table(result, core.published(GPTConfig()))


# --- the command line -----------------------------------------------------------------------------


def test_help_and_a_missing_bundle(tmp_path: Path, model: GPT, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        core.main(["--help"])
    assert done.value.code == 0 and "bundle" in capsys.readouterr().out
    weights.save(model, tmp_path / "model")
    assert core.main([f"checkpoint={tmp_path / 'model'}", f"bundle={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere' / 'core.yaml'} not found" in err and core.BUNDLE_URL in err


def test_command_line(tmp_path: Path, bundle: Path, model: GPT) -> None:
    """``python -m train.core`` prints the table and adds "core" to train.eval's JSON file."""
    folder = weights.save(model, tmp_path / "model")
    output = folder / "eval" / "model.json"
    output.parent.mkdir()
    output.write_text(json.dumps({"results": {"lambada_openai": {"acc,none": 0.5}}}))
    result = run_cli("train.core", f"checkpoint={folder}", f"bundle={bundle}", "device=cpu", "batch_size=4",
                     "limit=3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["task", "shots", "type", "n", "accuracy", "baseline", "centred"]
    assert [line.split()[:4] for line in lines[1:4]] == [
        ["mc_demo", "2", "multiple_choice", "3"], ["schema_demo", "1", "schema", "3"],
        ["lm_demo", "1", "language_modeling", "3"]]
    assert "no published figure for this model's size" in lines[4]
    assert "limit=3 examples per task: not comparable" in result.stdout
    saved = json.loads(output.read_text())
    assert saved["results"] == {"lambada_openai": {"acc,none": 0.5}}  # train.eval's figures stay
    assert list(saved["core"]["tasks"]) == ["mc_demo", "schema_demo", "lm_demo"]
    assert saved["core"]["limit"] == 3 and saved["core"]["comparable"] is False
    assert lines[4].startswith(f"CORE {saved['core']['core_metric']:.4f}")
    assert saved["core"]["checkpoint"] == str(folder) and saved["core"]["published"] is None


def test_fewshot_seed_is_nanochats() -> None:
    """The draw is random.Random(1234 + i).sample over the other indices, in index order."""
    others = [i for i in range(len(SCHEMA)) if i != 2]
    assert core.fewshot(SCHEMA, 2, 1) == [SCHEMA[i] for i in random.Random(1236).sample(others, 1)]
