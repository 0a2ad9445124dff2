"""The GPT-2 paper's zero-shot table (``preset=gpt2_paper``) and the command that fetches its data.

The datasets are small files in each one's original format (``tests/paper_data.py``): PTB's and One
Billion Word's text files, enwik8 and text8, the Children's Book Test and WikiText as ``datasets``
gives them. ``python -m train.eval_data`` fetches them from a loopback server (``mirror=``) and from
local dataset repositories laid out as on the Hugging Face hub; ``python -m train.eval
preset=gpt2_paper`` then scores a small model on all of it offline, LAMBADA through the harness's own
``lambada_openai`` task file pointed at local JSON lines. The figures are checked against sums
computed here with the model's plain forward pass.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is the eval extra's (make setup installs it)")

from model import weights  # noqa: E402
from model.base.tokenizer import EOT_ID, gpt2_encoding  # noqa: E402
from model.config import GPTConfig  # noqa: E402
from model.gpt2 import GPT  # noqa: E402
from tests.helpers import loopback_site  # noqa: E402
from tests.paper_data import CBT, ENWIK8, ONE_BW, PTB, TEXT8, WIKITEXT, write_paper_data  # noqa: E402
from train import paper  # noqa: E402
from train.paper_tasks import paper_tasks  # noqa: E402

CFG = GPTConfig(name="paper", n_layer=2, n_head=2, n_embd=64, block_size=512)


# --- detokenizers, documents, CBT prompts -------------------------------------------------------------

@pytest.mark.parametrize(("tokenised", "text"), [
    ("no it was n't black monday", "no it wasn't black monday"),
    ("The company 's shares rose 3 % to $ 12.50 , analysts said .",
     "The company's shares rose 3% to $12.50, analysts said."),
    ("`` We are very pleased , '' he told reporters .", '"We are very pleased," he told reporters.'),
    ("It was n't clear whether the ( new ) rules apply ; they 'll see !",
     "It wasn't clear whether the (new) rules apply; they'll see!"),
    ("they 're sure it 's the boys ' ball", "they're sure it's the boys' ball"),
])
def test_the_ptb_detokenizer(tokenised: str, text: str) -> None:
    assert paper_tasks.ptb_detokenize(tokenised) == text


def test_line_documents_hold_every_line_once_and_count_original_tokens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_paper_data(tmp_path, copies=30)  # 120 PTB lines: documents of 100 and 20
    monkeypatch.setenv(paper.DATA_ENV, str(tmp_path))
    docs = paper_tasks.load_ptb()["test"]
    assert [d.count("\n") + 1 for d in docs["original"]] == [100, 20]
    assert "\n".join(docs["original"]) == "\n".join(PTB * 30)
    words = sum(len(line.split()) for line in PTB)
    assert sum(docs["tokens"]) == 30 * (words + len(PTB))  # each line's words and its end-of-line
    assert docs[0]["text"].startswith("no it wasn't black monday but while")


def test_byte_documents_cover_the_last_bytes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_paper_data(tmp_path, copies=20)
    monkeypatch.setenv(paper.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(paper_tasks, "TEST_BYTES", 3000)
    monkeypatch.setattr(paper_tasks, "CHUNK_BYTES", 500)
    for name, loader in (("enwik8", paper_tasks.load_enwik8), ("text8", paper_tasks.load_text8)):
        raw = (tmp_path / name / name).read_bytes()
        docs = loader()["test"]
        assert sum(docs["bytes"]) == 3000 and len(docs) > 3
        # every document but the last ends at a separator, and they add up to the last 3,000 bytes
        joined = "".join(docs["text"])
        assert joined.encode("utf-8").endswith(raw[-2000:])
        assert all(d.endswith("\n" if name == "enwik8" else " ") for d in docs["text"][:-1])


def test_cbt_prompts_score_each_option_with_the_rest_of_its_sentence() -> None:
    row = paper_tasks._cbt_row(CBT[0])
    assert row["prompt"].endswith('bread. "Go home," said the ')
    assert row["prompt"].startswith("The little dog ran to the old mill by the river, and the miller's wife")
    assert row["choices"][7] == "miller, and shut the door."
    assert row["label"] == 7 and len(row["choices"]) == 10
    with pytest.raises(ValueError, match="XXXXX"):
        paper_tasks._cbt_row({**CBT[0], "question": "no blank here ."})


def test_missing_data_names_the_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paper.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m train.eval_data"):
        paper_tasks.load_text8()


def test_the_table_puts_the_papers_figures_beside_ours() -> None:
    results = {"lambada_openai": {"acc,none": 0.3256, "perplexity,none": 40.06},
               "gpt2_ptb": {"token_perplexity,none": 70.5}}
    assert paper.size_of(12, 768) == "117M" and paper.size_of(48, 1600) == "1542M"
    assert paper.size_of(2, 64) is None
    text = paper.table(results, "117M")
    assert "| LAMBADA | acc % | 32.56 | 45.99 |" in text
    assert "| LAMBADA | ppl | 40.06 | 35.13 |" in text
    assert "| PTB | ppl | 70.50 | 65.85 |" in text
    assert "stop-word filter" in text and "CBT-CN" not in text
    assert "| PTB | ppl | 70.50 | - |" in paper.table(results, None)
    assert paper.table({}, "117M") == ""


# --- the download command, then the preset, offline -------------------------------------------------

def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def _one_bw_archive(sentences: bytes) -> bytes:
    buf = io.BytesIO()
    root = "1-billion-word-language-modeling-benchmark-r13output/"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in ((root + "README", b"readme\n"),
                           (root + "training-monolingual.tokenized.shuffled/news.en-00001-of-00100", b"x\n"),
                           (root + "heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050",
                            sentences)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _core_bundle() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("eval_bundle/core.yaml", "icl_tasks: []\n")
        zf.writestr("eval_bundle/eval_meta_data.csv", "Eval Task,Random baseline\n")
    return buf.getvalue()


def _hub_repo(folder: Path, splits: dict[tuple[str, str], list[dict[str, Any]]]) -> Path:
    """A dataset repository laid out as on the hub: a README whose metadata names each config's
    files (what ``datasets.load_dataset(repo, config)`` reads)."""
    configs = []
    for (config, split), rows in splits.items():
        (folder / config).mkdir(parents=True, exist_ok=True)
        (folder / config / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        configs.append(f"- config_name: {config}\n  data_files:\n  - split: {split}\n"
                       f"    path: {config}/{split}.jsonl\n")
    (folder / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    original = write_paper_data(tmp_path_factory.mktemp("original"))
    return {
        "/ptb.test.txt": (original / "ptb/ptb.test.txt").read_bytes(),
        "/enwik8.zip": _zip("enwik8", ENWIK8.encode()),
        "/text8.zip": _zip("text8", TEXT8.encode()),
        "/1-billion-word-language-modeling-benchmark-r13output.tar.gz": _one_bw_archive(
            ("\n".join(ONE_BW) + "\n").encode()),
        "/hellaswag_val.jsonl": b'{"ctx": "A man", "endings": ["a", "b", "c", "d"], "label": 0}\n',
        "/eval_bundle.zip": _core_bundle(),
    }


def _fetch(tmp: Path, served: dict[str, bytes], only: str, log: list[str]) -> int:
    from train import eval_data

    def respond(path: str, _host: str) -> tuple[int, str, bytes]:
        log.append(path)
        return (200, "application/octet-stream", served[path]) if path in served else (404, "text/plain", b"")

    cbt = _hub_repo(tmp / "hub-cbt", {("CN", "validation"): CBT, ("NE", "validation"): CBT[::-1]})
    wikitext = _hub_repo(tmp / "hub-wikitext", {("wikitext-2-raw-v1", "test"): WIKITEXT,
                                                ("wikitext-103-raw-v1", "test"): WIKITEXT[::-1]})
    with loopback_site(respond) as port:
        return eval_data.main([f"data={tmp / 'data'}", f"mirror=http://127.0.0.1:{port}/", f"only={only}",
                               f"cbt={cbt}", f"wikitext={wikitext}", "timeout=10"])


def test_eval_data_fetches_every_file_once_and_keeps_nothing_partial(
        tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    log: list[str] = []
    broken = {k: v for k, v in served.items() if k != "/text8.zip"}  # one file missing upstream
    assert _fetch(tmp_path, broken, "[ptb,1bw,enwik8,text8,cbt,wikitext,hellaswag,core]", log) == 1
    data = tmp_path / "data"
    assert not (data / "text8" / "text8").exists()
    assert not [p for p in data.rglob(".*") if p.is_file()]  # no temporary file left behind
    assert (data / "enwik8" / "enwik8").read_text() == ENWIK8
    assert (data / "enwik8" / "enwik8.test.txt").read_text() == ENWIK8  # the last 5 MB: all of it here
    assert (data / "1bw" / "news.en.heldout-00000-of-00050").read_text() == "\n".join(ONE_BW) + "\n"
    assert (data / "core" / "core.yaml").exists()
    rows = [json.loads(line) for line in (data / "cbt" / "CN_validation.jsonl").read_text().splitlines()]
    assert rows == CBT
    log.clear()
    assert _fetch(tmp_path, served, "[ptb,1bw,enwik8,text8,cbt,wikitext,hellaswag,core]", log) == 0
    assert log == ["/text8.zip"]  # the rerun fetched only what was missing
    assert (data / "text8" / "text8").read_text() == TEXT8
    assert (data / "text8" / "text8.test.txt").read_text() == TEXT8


def _rolling_loglikelihood(model: GPT, text: str) -> float:
    """log p(text) in one window, conditioned on <|endoftext|>, by the model's plain forward."""
    tokens = gpt2_encoding().encode(text)
    assert len(tokens) < CFG.block_size
    with torch.no_grad():
        logits, _ = model(torch.tensor([[EOT_ID] + tokens[:-1]]))
    return float(F.log_softmax(logits[0], -1).gather(-1, torch.tensor(tokens)[:, None]).sum())


def _continuation_loglikelihood(model: GPT, context: str, continuation: str) -> float:
    spaces = len(context) - len(context.rstrip(" "))  # the harness moves them to the continuation
    context, continuation = context[:len(context) - spaces], context[len(context) - spaces:] + continuation
    enc = gpt2_encoding()
    whole, head = enc.encode(context + continuation), enc.encode(context)
    assert whole[:len(head)] == head
    with torch.no_grad():
        logits, _ = model(torch.tensor([whole[:-1]]))
    scores = F.log_softmax(logits[0, len(head) - 1:], -1)
    return float(scores.gather(-1, torch.tensor(whole[len(head):])[:, None]).sum())


def test_the_preset_scores_every_paper_task_offline(
        tmp_path: Path, served: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from train import eval as eval_app

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv(paper.DATA_ENV, "")  # train.eval sets it; restored after the test
    assert _fetch(tmp_path, served, "[ptb,1bw,enwik8,text8,cbt,wikitext]", []) == 0
    data = tmp_path / "data"
    # LAMBADA through the harness's own lambada_openai file, its data local JSON lines
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "lambada.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in (
        "The river ran high after the storm and the miller watched the water",
        "She folded the letter twice and set it on the table beside the lamp")))
    real = Path(lm_eval.__file__).parent / "tasks" / "lambada" / "lambada_openai.yaml"
    (tasks / "lambada_openai.yaml").write_text(json.dumps({
        "include": str(real), "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(tasks / "lambada.jsonl")}}}))
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    weights.save(model, tmp_path / "model")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert eval_app.main([f"checkpoint={tmp_path / 'model'}", "preset=gpt2_paper", f"data={data}",
                          f"include_path={tasks}", "device=cpu", "batch_size=8"]) == 0
    assert os.environ[paper.DATA_ENV] == str(data.resolve())
    out = capsys.readouterr().out
    assert "GPT-2 paper (no model of this shape)" in out and "How our scoring differs" in out
    saved = json.loads((tmp_path / "model" / "eval" / "model.json").read_text())
    assert set(saved["results"]) == set(paper.PRESETS["gpt2_paper"])
    assert [r["task"] for r in saved["gpt2_paper"]] == [r.label for r in paper.ROWS]
    results = saved["results"]

    # PTB: one document of the four lines; perplexity per original token, bits per original byte
    text = paper_tasks.ptb_detokenize(" ".join(line.strip() for line in PTB))
    ll = _rolling_loglikelihood(model, text)
    tokens = sum(len(line.split()) + 1 for line in PTB)
    assert results["gpt2_ptb"]["token_perplexity,none"] == pytest.approx(math.exp(-ll / tokens), rel=1e-4)
    original = "\n".join(PTB).encode()
    assert results["gpt2_ptb"]["bits_per_byte,none"] == pytest.approx(-ll / math.log(2) / len(original),
                                                                      rel=1e-4)
    # text8: bits per character over its bytes
    ll = _rolling_loglikelihood(model, TEXT8)
    assert results["gpt2_text8"]["bits_per_byte,none"] == pytest.approx(-ll / math.log(2) / len(TEXT8),
                                                                        rel=1e-4)
    # CBT-CN: the option whose continuation is likeliest, against the answer
    right = 0
    for raw in CBT:
        row = paper_tasks._cbt_row(raw)
        scores = [_continuation_loglikelihood(model, row["prompt"], c) for c in row["choices"]]
        right += scores.index(max(scores)) == row["label"]
    assert results["gpt2_cbt_cn"]["acc,none"] == pytest.approx(right / len(CBT))
    assert 0 <= results["lambada_openai"]["acc,none"] <= 1


def test_the_preset_without_its_data_says_how_to_get_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from train import eval as eval_app

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv(paper.DATA_ENV, "")
    weights.save(GPT(CFG), tmp_path / "model")
    assert eval_app.main([f"checkpoint={tmp_path / 'model'}", "tasks=[gpt2_ptb]",
                          f"data={tmp_path / 'empty'}", "device=cpu"]) == 2
    assert "python -m train.eval_data" in capsys.readouterr().err


def test_eval_data_caches_the_harness_tasks_datasets_in_the_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.test_harness import task_files

    task_files(tmp_path / "tasks")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_DATASETS_CACHE")}
    done = subprocess.run([sys.executable, "-m", "train.eval_data", f"data={tmp_path / 'data'}",
                           "only=[harness]", "tasks=[t_lambada,t_choice]",
                           f"include_path={tmp_path / 'tasks'}"],
                          capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "harness tasks cached in" in done.stderr and "t_choice, t_lambada" in done.stderr
    assert list((tmp_path / "data" / "hf" / "datasets").rglob("*.arrow"))  # datasets' cache, in the folder
