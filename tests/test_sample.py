"""The KV-cached sampler against the uncached path and transformers' generate; the two CLIs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
from transformers import GPT2LMHeadModel

from model import hf, weights
from model.base.folders import COMPLETE
from model.base.tokenizer import EOT_ID, gpt2_encoding
from model.config import GPTConfig
from model.generate import encode_prompt, generate, pick
from tests.conftest import REPO
from tests.test_model import random_model
from train.sample import main

TINY = GPTConfig(name="tiny", n_layer=2, n_head=2, n_embd=64, block_size=48)
PROMPT = [464, 3616, 286, 1204, 318]  # "The meaning of life is"


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return random_model(TINY, seed=7)


def test_cached_equals_uncached_greedy_within_and_past_the_context(tiny):
    # 5 + 100 tokens: past the 48-token context, both continue on a sliding window
    cached = generate(tiny, PROMPT, 100, top_k=1, stop_at_eot=False)
    uncached = generate(tiny, PROMPT, 100, top_k=1, stop_at_eot=False, use_cache=False)
    assert len(cached[0]) == 100 and cached == uncached


def test_a_prompt_fed_in_chunks_through_the_cache_gives_the_logits_of_one_pass(tiny):
    """Several new tokens after cached ones (a prompt prefilled in chunks): each new position sees
    every cached one and the new ones before it, as in one pass over the whole sequence."""
    idx = torch.tensor([PROMPT + [11, 257, 1332, 13, 198, 40, 588]])  # (1, 12)
    with torch.no_grad():
        whole = tiny(idx)[0]
        cache = tiny.new_cache(1)
        parts = [tiny(idx[:, a:b], cache=cache)[0] for a, b in ((0, 5), (5, 6), (6, 12))]
    assert cache.length == 12
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)
    assert tiny.transformer.h[1].attn.layer == 1, "each attention knows its layer of the cache"


def test_cached_equals_uncached_when_sampling(tiny):
    options = dict(temperature=0.8, top_k=200, top_p=0.9, num_samples=3, seed=11, stop_at_eot=False)
    cached = generate(tiny, PROMPT, 20, **options)
    assert cached == generate(tiny, PROMPT, 20, use_cache=False, **options)
    assert len({tuple(s) for s in cached}) == 3, "the samples of a batch differ"
    assert cached == generate(tiny, PROMPT, 20, **options), "a seed gives the same samples"
    assert cached != generate(tiny, PROMPT, 20, **{**options, "seed": 12})


def test_same_tokens_as_transformers_generate(tiny, tmp_path):
    hf.export(tiny, tmp_path / "hf")
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    with torch.no_grad():
        out = theirs.generate(torch.tensor([PROMPT]), max_new_tokens=40, do_sample=False,
                              pad_token_id=EOT_ID)
    expected = out[0, len(PROMPT):].tolist()
    if EOT_ID in expected:
        expected = expected[: expected.index(EOT_ID)]
    assert generate(tiny, PROMPT, 40, temperature=0) == [expected]


def test_sampling_stops_at_end_of_text():
    model = random_model(TINY, seed=1)
    with torch.no_grad():  # every position now predicts <|endoftext|> first
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(model.transformer.wte.weight[EOT_ID] * 50)
    assert generate(model, PROMPT, 20, top_k=1) == [[]]
    assert generate(model, PROMPT, 5, top_k=1, stop_at_eot=False) == [[EOT_ID] * 5]


def test_pick():
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0], [5.0, 0.0, 0.0, 0.0]])
    assert pick(logits, temperature=0).tolist() == [1, 0]
    assert pick(logits, top_k=1).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([pick(logits, top_k=2, generator=g) for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {1, 2}  # never outside the two likeliest
    draws = torch.stack([pick(logits, top_p=0.01, generator=g) for _ in range(50)])
    assert set(draws[:, 0].tolist()) == {1}  # the likeliest token alone holds more than 1%
    draws = torch.stack([pick(logits, temperature=100.0, generator=g) for _ in range(400)])
    assert set(draws[:, 0].tolist()) == {0, 1, 2, 3}  # a hot softmax reaches every token


def test_long_prompt_is_cut_from_the_left(caplog):
    text = " ".join(f"word{i}" for i in range(200))
    with caplog.at_level(logging.WARNING):
        ids = encode_prompt(text, 48)
    assert len(ids) == 48 and ids == gpt2_encoding().encode(text)[-48:]
    assert "the prompt has" in caplog.text and "first" in caplog.text
    assert encode_prompt("", 48) == [EOT_ID]


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tiny, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    step = weights.save(tiny, run / "checkpoints" / "step_0000100")
    (step / COMPLETE).touch()
    return run


@pytest.mark.parametrize(("args", "message"), [
    (["temperature=-1"], "temperature: must be >= 0.0, got -1.0"),
    (["top_p=0"], "top_p: must be > 0.0, got 0.0"),
    (["top_p=1.5"], "top_p: must be <= 1.0, got 1.5"),
    (["top_k=0"], "top_k: must be >= 1, got 0"),
    (["max_new_tokens=ten"], "max_new_tokens: expected int, got 'ten'"),
    (["tempreature=1"], "tempreature: unknown key"),
    ([], "checkpoint: required"),
])
def test_bad_values_name_the_key(run_folder, capsys, args, message):
    checkpoint = [] if message.startswith("checkpoint") else [f"checkpoint={run_folder}"]
    with pytest.raises(SystemExit) as stopped:
        main([*checkpoint, *args])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main([f"checkpoint={tmp_path / 'nothing'}"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_sample_command_with_free_text_prompt(run_folder, tiny):
    prompt = 'Q: what is "it", really? A: [see below]'
    command = [sys.executable, "-m", "train.sample", f"checkpoint={run_folder}", f"prompt={prompt}",
               "max_new_tokens=12", "top_k=1"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    ids = gpt2_encoding().encode(prompt)
    [expected] = generate(tiny, ids, 12, top_k=1)
    assert run.stdout == prompt + gpt2_encoding().decode(expected) + "\n"


def test_export_command_gives_a_folder_transformers_generates_with_offline(run_folder, tiny, tmp_path):
    out = tmp_path / "hf"
    run = subprocess.run([sys.executable, "-m", "model.export", f"checkpoint={run_folder}", f"out={out}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "step_0000100" in run.stdout
    code = ("from transformers import pipeline\n"
            f"generator = pipeline('text-generation', model={str(out)!r})\n"
            "out = generator('The meaning of life is', max_new_tokens=10, do_sample=False)\n"
            "print(out[0]['generated_text'])\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    generated = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                               timeout=300, env=env)
    assert generated.returncode == 0, generated.stderr
    [ours] = generate(tiny, PROMPT, 10, top_k=1)
    assert generated.stdout.strip() == ("The meaning of life is" + gpt2_encoding().decode(ours)).strip()
