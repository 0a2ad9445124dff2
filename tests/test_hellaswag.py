"""HellaSwag evaluation: reading and checking the jsonl, rendering candidates, and scoring, against
brute force on a random model and against stub models whose preferences are known exactly."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.base.tokenizer import VOCAB_SIZE, gpt2_encoding
from model.config import GPTConfig
from model.gpt2 import GPT
from train import hellaswag
from train.hellaswag import Example, evaluate, read_examples, render, score_candidates

FIXTURE = Path(__file__).parent / "data" / "hellaswag_fixture.jsonl"
TINY = GPTConfig(name="tiny", n_layer=2, n_head=2, n_embd=32, block_size=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tensors here are tiny: a second thread only adds overhead, and contention on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def enc():
    return gpt2_encoding()


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return read_examples(FIXTURE)


def random_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(TINY)
    with torch.no_grad():  # larger than GPT-2's init, so that losses differ clearly between endings
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


class Oracle(nn.Module):
    """A stub causal LM with exactly known losses. ``prefer`` maps a candidate's unpadded tokens to
    the probability it gives each of that candidate's next tokens (so every scored token has loss
    -log p); any other row gets uniform logits (loss log V per token).

    It peeks at the next token, which a real model cannot, but evaluate only ever reads the logits of
    a position to score the token after it, which is all this stub has to get right.
    """

    def __init__(self, prefer: dict[tuple[int, ...], float], block_size: int = 1024,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.prefer = prefer
        self.dtype = dtype
        self.config = SimpleNamespace(block_size=block_size)

    def lookup(self, row: torch.Tensor) -> float | None:
        for seq, p in self.prefer.items():
            n = len(seq)
            if tuple(row[:n].tolist()) == seq and bool((row[n:] == hellaswag.PAD_ID).all()):
                return p
        return None

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        B, T = idx.shape
        logits = torch.zeros(B, T, VOCAB_SIZE)
        for b in range(B):
            p = self.lookup(idx[b])
            if p is not None:
                # softmax gives the target e^x / (e^x + V - 1) = p with all other logits 0
                x = math.log(p * (VOCAB_SIZE - 1) / (1 - p))
                logits[b, torch.arange(T - 1), idx[b, 1:]] = x
        return logits.to(self.dtype), None


def candidate(enc, example: Example, i: int) -> tuple[int, ...]:
    return tuple(enc.encode_ordinary(example.ctx) + enc.encode_ordinary(" " + example.endings[i]))


def write_lines(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- reading -------------------------------------------------------------------------------------


def test_read_fixture(examples):
    assert len(examples) == 7
    assert sorted({e.label for e in examples}) == [0, 1, 2, 3]
    first = examples[0]
    assert first.ind == 1043 and first.activity_label == "Baking cookies"
    assert first.ctx == "A woman pours flour into a large glass bowl on the kitchen counter. she"
    assert first.ctx == f"{first.ctx_a} {first.ctx_b}"
    assert first.endings[0].startswith("cracks two eggs") and len(first.endings) == 4
    assert (first.label, first.split, first.split_type) == (0, "val", "indomain")
    assert first.source_id == "activitynet~v_aB3kq9ZtLw0"
    assert [e.split_type for e in examples].count("zeroshot") == 2
    assert all(isinstance(e.endings, tuple) and len(e.endings) == 4 for e in examples)


def test_read_limit(examples):
    assert read_examples(FIXTURE, limit=3) == examples[:3]
    assert read_examples(FIXTURE, limit=0) == []


@pytest.mark.parametrize("edit, message", [
    (lambda obj: "{not json", "not JSON"),
    (lambda obj: json.dumps({**obj, "endings": obj["endings"][:3]}), "expected 4 endings, got 3"),
    (lambda obj: json.dumps({**obj, "label": 7}), "label 7 out of range"),
    (lambda obj: json.dumps({k: v for k, v in obj.items() if k != "ctx"}), "missing key 'ctx'"),
    (lambda obj: json.dumps({**obj, "label": "2"}), "'label' should be int, got str"),
    (lambda obj: json.dumps([obj]), "expected a JSON object"),
])
def test_bad_line_names_file_and_line(tmp_path, edit, message):
    good = FIXTURE.read_text(encoding="utf-8").splitlines()
    lines = good[:2] + [edit(json.loads(good[2]))] + good[3:]
    path = write_lines(tmp_path, lines)
    with pytest.raises(ValueError, match=rf"bad\.jsonl:3: {message}"):
        read_examples(path)
    assert len(read_examples(path, limit=2)) == 2  # the bad line is never reached


# --- rendering -----------------------------------------------------------------------------------


def test_render_rows_and_mask(enc, examples):
    for example in examples:
        tokens, mask, label = render(example, enc)
        ctx = enc.encode_ordinary(example.ctx)
        ends = [enc.encode_ordinary(" " + ending) for ending in example.endings]
        assert label == example.label
        assert tokens.dtype == mask.dtype == torch.long
        assert tokens.shape == mask.shape == (4, len(ctx) + max(map(len, ends)))
        for i, end in enumerate(ends):
            n = len(ctx) + len(end)
            assert tokens[i, : len(ctx)].tolist() == ctx  # the same context in every row
            assert tokens[i, len(ctx): n].tolist() == end
            assert mask[i, : len(ctx)].sum() == 0
            assert mask[i, len(ctx): n].tolist() == [1] * len(end)  # exactly the ending's tokens
            assert mask[i, n:].sum() == 0 and (tokens[i, n:] == hellaswag.PAD_ID).all()  # padding
        assert mask.sum() == sum(map(len, ends))


def test_render_encodes_ending_with_a_leading_space(enc, examples):
    tokens, mask, _ = render(examples[0], enc)
    ending = enc.decode(tokens[0][mask[0].bool()].tolist())
    assert ending == " " + examples[0].endings[0]


def test_render_cuts_long_context_from_the_left(enc, examples):
    example = examples[5]  # a 90-token context
    ctx = enc.encode_ordinary(example.ctx)
    ends = [enc.encode_ordinary(" " + ending) for ending in example.endings]
    block = 48
    assert len(ctx) + max(map(len, ends)) > block
    tokens, mask, _ = render(example, enc, block_size=block)
    keep = block - max(map(len, ends))
    assert tokens.shape == (4, block)  # the longest row fills the context exactly
    for i, end in enumerate(ends):
        assert tokens[i, :keep].tolist() == ctx[-keep:]  # the END of the context survives
        assert tokens[i, keep: keep + len(end)].tolist() == end
        assert mask[i].sum() == len(end)
    # a context that fits is left alone
    assert torch.equal(render(example, enc, block_size=1024)[0], render(example, enc)[0])


def test_render_rejects_an_ending_that_cannot_fit(enc, examples):
    with pytest.raises(ValueError, match="no room for context"):
        render(examples[5], enc, block_size=20)


# --- scoring -------------------------------------------------------------------------------------


@torch.no_grad()
def brute_force(model: GPT, enc, example: Example) -> tuple[list[float], list[float]]:
    """Each candidate alone, unpadded, with plain cross_entropy: (sum losses, mean losses)."""
    ctx = enc.encode_ordinary(example.ctx)
    ends = [enc.encode_ordinary(" " + ending) for ending in example.endings]
    room = model.config.block_size - max(map(len, ends))
    ctx = ctx[-room:] if len(ctx) > room else ctx
    sums, means = [], []
    for end in ends:
        seq = torch.tensor([ctx + end])
        logits, _ = model(seq)
        losses = F.cross_entropy(logits[0, :-1], seq[0, 1:], reduction="none")[-len(end):]
        sums.append(losses.sum().item())
        means.append(losses.mean().item())
    return sums, means


def test_scores_match_brute_force(enc, examples):
    model = random_gpt()
    expected_norm = expected = 0
    for example in examples:
        sums, means = brute_force(model, enc, example)
        tokens, mask, _ = render(example, enc, model.config.block_size)
        sum_loss, mean_loss = score_candidates(model, tokens, mask)
        assert sum_loss.dtype == mean_loss.dtype == torch.float32
        assert sum_loss.tolist() == pytest.approx(sums, rel=1e-4)
        assert mean_loss.tolist() == pytest.approx(means, rel=1e-4)
        expected_norm += min(range(4), key=means.__getitem__) == example.label
        expected += min(range(4), key=sums.__getitem__) == example.label
    result = evaluate(model, examples, "cpu")
    assert result["examples"] == 7
    assert (result["correct_norm"], result["correct"]) == (expected_norm, expected)
    assert result["acc_norm"] == expected_norm / 7 and result["acc"] == expected / 7


def test_evaluate_restores_training_mode(examples):
    model = random_gpt().train()
    evaluate(model, examples[:1], "cpu")
    assert model.training


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_preferring_gold_scores_one(enc, examples, dtype):
    gold = Oracle({candidate(enc, e, e.label): 0.9 for e in examples}, dtype=dtype)
    result = evaluate(gold, examples, "cpu")
    assert result == {"acc_norm": 1.0, "acc": 1.0, "correct_norm": 7, "correct": 7, "examples": 7}


def test_model_preferring_a_wrong_ending_scores_zero(enc, examples):
    wrong = Oracle({candidate(enc, e, (e.label + 1) % 4): 0.9 for e in examples})
    result = evaluate(wrong, examples, "cpu")
    assert (result["acc_norm"], result["acc"], result["examples"]) == (0.0, 0.0, 7)


def test_acc_and_acc_norm_differ_on_lengths(enc, examples):
    """A long ending with a low loss per token against a short one with a higher loss per token: the
    mean (acc_norm) picks the long one, the sum (acc) the short one."""
    example = replace(examples[0], endings=(
        "cracks two eggs into the bowl and stirs the mixture slowly with a long wooden spoon.",
        "sneezes.",
        "paints the ceiling of the garage a bright shade of orange.",
        "jumps onto a horse and rides away across the desert.",
    ), label=0)
    n_long, n_short = (len(enc.encode_ordinary(" " + e)) for e in example.endings[:2])
    assert n_long >= 3 * n_short
    p_long, p_short = math.exp(-1.0), math.exp(-2.0)  # per-token losses 1 and 2
    stub = Oracle({candidate(enc, example, 0): p_long, candidate(enc, example, 1): p_short})
    tokens, mask, _ = render(example, enc)
    sum_loss, mean_loss = score_candidates(stub, tokens, mask)
    assert mean_loss[:2].tolist() == pytest.approx([1.0, 2.0], rel=1e-4)
    assert sum_loss[:2].tolist() == pytest.approx([n_long * 1.0, n_short * 2.0], rel=1e-4)
    assert mean_loss[2:].tolist() == pytest.approx([math.log(VOCAB_SIZE)] * 2, rel=1e-4)  # uniform
    assert evaluate(stub, [example], "cpu")["acc_norm"] == 1.0  # mean: the long gold ending
    assert evaluate(stub, [example], "cpu")["acc"] == 0.0  # sum: the short one
    flipped = replace(example, label=1)
    result = evaluate(stub, [flipped], "cpu")
    assert (result["acc_norm"], result["acc"]) == (0.0, 1.0)


# --- ranks ---------------------------------------------------------------------------------------


def test_examples_split_over_ranks(enc, examples):
    # rank r scores examples r, r + 3, ...: with gold preferred on those alone, each rank scores 1.0
    for rank in range(3):
        mine = examples[rank::3]
        stub = Oracle({candidate(enc, e, e.label): 0.9 for e in mine})
        result = evaluate(stub, examples, "cpu", rank=rank, world_size=3)
        assert result["examples"] == len(mine) == (3 if rank == 0 else 2)
        assert result["correct_norm"] == len(mine)
    with pytest.raises(ValueError, match="rank 3"):
        evaluate(stub, examples, "cpu", rank=3, world_size=3)


def test_counts_are_summed_over_ranks(monkeypatch, enc, examples):
    """With torch.distributed initialized, all_reduce sums the counts of all ranks. Stand-in for a
    2-rank group: all_reduce adds what rank 1 counted on its own."""
    stub = Oracle({candidate(enc, e, e.label): 0.9 for e in examples[:4]})  # right on 0-3, chance after
    other = evaluate(stub, examples, "cpu", rank=1, world_size=2)
    calls = []

    def all_reduce(tensor: torch.Tensor, op: object = None) -> None:
        calls.append(op)
        tensor += torch.tensor([other["correct_norm"], other["correct"], other["examples"]])

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    total = evaluate(stub, examples, "cpu", rank=0, world_size=2)
    single = evaluate(stub, examples, "cpu")  # world_size 1: no all_reduce
    assert calls == [torch.distributed.ReduceOp.SUM]
    assert total == single
    assert total["examples"] == 7 and total["correct_norm"] >= 4


def test_lockstep_ranks_score_their_share_in_rank_0s_number_of_passes(enc, examples):
    """A sharded model's forward passes all-gather: every rank must run as many as rank 0 (the most
    examples), the extra ones uncounted."""
    stub = Oracle({candidate(enc, e, e.label): 0.9 for e in examples})
    passes = []
    stub.register_forward_pre_hook(lambda *_: passes.append(1))
    for rank in range(3):  # 7 examples: 3, 2 and 2
        passes.clear()
        result = evaluate(stub, examples, "cpu", rank=rank, world_size=3, lockstep=True)
        assert len(passes) == 3, rank
        assert result["examples"] == result["correct_norm"] == len(examples[rank::3])
