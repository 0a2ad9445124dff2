"""Nothing lost on a bad disk, for training: checkpoints verified against their marker at resume,
damaged ones moved aside and the previous one resumed exactly; a full disk during a checkpoint stops
the run with the previous checkpoint intact (on a real, small tmpfs); damaged shards refused at start."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.test_train import clean, command, data, in_process_config, losses  # noqa: F401

MOVED = "checkpoints/damaged/step_0000008"


@pytest.fixture(scope="module")
def whole(data, tmp_path_factory):  # noqa: F811
    """An uninterrupted run: checkpoints at steps 4, 8 and 12."""
    from train.distributed import Ranks
    from train.loop import run

    out = tmp_path_factory.mktemp("whole")
    assert run(in_process_config(data, out, max_steps=12, deterministic=True), Ranks()) == 0
    return out


def killed_after_step_8(whole: Path, tmp_path: Path) -> Path:
    """The run as a process killed after its step-8 checkpoint would leave it."""
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    shutil.rmtree(out / "checkpoints" / "step_0000012")
    return out


def flip_a_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


DAMAGE = {
    "optimizer.pt cut short": (lambda f: os.truncate(f / "optimizer.pt", 1000),
                               r"optimizer\.pt: 1,000 bytes, [\d,]+ when it was written"),
    "a flipped byte in the weights": (lambda f: flip_a_byte(f / "model.safetensors"),
                                      r"model\.safetensors: its xxh3_128 differs from when it was written"),
    "trainer.pt deleted": (lambda f: (f / "trainer.pt").unlink(), r"trainer\.pt: missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_resumes_exactly(
        data, whole, tmp_path, caplog, damage):  # noqa: F811
    from train.distributed import Ranks
    from train.loop import run

    out = killed_after_step_8(whole, tmp_path)
    harm, message = DAMAGE[damage]
    harm(out / "checkpoints" / "step_0000008")
    with caplog.at_level(logging.INFO, logger="webtext.train"):
        assert run(in_process_config(data, out, max_steps=12, deterministic=True), Ranks()) == 0
    assert caplog.records[0].levelno == logging.ERROR
    log = caplog.text
    assert f"checkpoint {out}/checkpoints/step_0000008 is damaged" in log
    assert re.search(message, log), log
    assert f"moved to {out / MOVED}" in log and "resuming from step 4: steps 5 to 8 are trained again" in log
    assert (out / MOVED).is_dir(), "moved aside, not deleted"
    assert losses(out) == losses(whole)
    final = [load_file(str(o / "checkpoints" / "step_0000012" / "model.safetensors")) for o in (out, whole)]
    assert all(final[0][k].equal(final[1][k]) for k in final[1])


def test_a_file_torch_cannot_read_under_an_older_marker_is_damage_too(data, whole, tmp_path, caplog):  # noqa: F811
    """A marker written before markers recorded the files (empty): nothing to check against, so the
    load itself finds the damage."""
    from train.distributed import Ranks
    from train.loop import run

    out = killed_after_step_8(whole, tmp_path)
    step8 = out / "checkpoints" / "step_0000008"
    (step8 / "COMPLETE").write_text("")
    os.truncate(step8 / "trainer.pt", 100)
    with caplog.at_level(logging.INFO, logger="webtext.train"):
        assert run(in_process_config(data, out, max_steps=12, deterministic=True), Ranks()) == 0
    assert f"{step8}/trainer.pt: cannot be read" in caplog.text
    assert losses(out) == losses(whole)


def test_with_no_checkpoint_left_the_run_stops_with_a_message_not_a_traceback(data, whole, tmp_path):  # noqa: F811
    out = killed_after_step_8(whole, tmp_path)
    for step in (4, 8):
        flip_a_byte(out / "checkpoints" / f"step_{step:07d}" / "optimizer.pt")
    command = [sys.executable, "-m", "train", "model=gpt2-tiny", f"data.dir={data}", f"out_dir={out}",
               "model.block_size=32", "model.vocab_size=512", "micro_batch_size=4", "total_batch_tokens=256"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    output = done.stdout + done.stderr
    assert "step_0000004 is damaged: optimizer.pt: its xxh3_128 differs" in output
    assert f"no checkpoint in {out}/checkpoints verifies" in output and "nothing to resume from" in output
    aside = sorted(p.name for p in (out / "checkpoints" / "damaged").iterdir())
    assert aside == ["step_0000004", "step_0000008"]


def test_export_sample_and_the_verify_command_name_the_damaged_file(whole, tmp_path):
    from model.base.folders import Damaged
    from model.weights import resolve

    out = killed_after_step_8(whole, tmp_path)
    os.truncate(out / "checkpoints" / "step_0000008" / "optimizer.pt", 10)
    with pytest.raises(Damaged, match=r"step_0000008 is damaged: optimizer\.pt: 10 bytes, .*the newest that "
                                      r"verifies is .*step_0000004"):
        resolve(out)
    with pytest.raises(Damaged, match=r"optimizer\.pt: 10 bytes"):
        resolve(out / "checkpoints" / "step_0000008")
    export = subprocess.run([sys.executable, "-m", "model.export", f"checkpoint={out}",
                             f"out={tmp_path / 'hf'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert export.returncode == 2 and "checkpoint error: checkpoint" in export.stderr
    assert "optimizer.pt: 10 bytes" in export.stderr and not (tmp_path / "hf").exists()
    verify = subprocess.run([sys.executable, "-m", "train.verify", str(out)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert verify.returncode == 1, verify.stderr
    lines = verify.stdout.splitlines()
    assert lines[0].startswith("step_0000004  ok") and "sizes and checksums match" in lines[0]
    assert lines[1].startswith("step_0000008  DAMAGED") and "optimizer.pt: 10 bytes" in lines[1]


def test_init_from_a_damaged_hugging_face_folder_names_the_file(data, tmp_path):  # noqa: F811
    import torch

    from model import hf
    from model.base.folders import Damaged
    from model.gpt2 import GPT
    from train.distributed import Ranks
    from train.loop import build

    cfg = in_process_config(data, tmp_path / "run")
    torch.manual_seed(0)
    hf.export(GPT(cfg.model), tmp_path / "hf")
    os.truncate(tmp_path / "hf" / "model.safetensors", 100)
    cfg.init_from = f"hf:{tmp_path / 'hf'}"
    with pytest.raises(Damaged, match=rf"{tmp_path}/hf/model\.safetensors: cannot be read \(SafetensorError"):
        build(cfg, Ranks())


def test_the_verify_command_reads_what_the_checksums_cannot_vouch_for(whole, tmp_path):
    from model.base.folders import CheckpointFolder
    from train.verify import check

    out = killed_after_step_8(whole, tmp_path)
    step4 = CheckpointFolder(out / "checkpoints" / "step_0000004")
    assert check(step4) == []
    step4.marker.write_text("")  # an older marker
    (step4.path / "rng_rank_0.pt").write_bytes(b"not a torch file")
    [problem] = check(step4)
    assert problem.startswith("rng_rank_0.pt: cannot be read")


def test_pruning_waits_for_the_new_checkpoint_to_verify(data, tmp_path, monkeypatch, caplog):  # noqa: F811
    """A new checkpoint whose files are not what was sealed (a disk that lost a write) stops the run:
    it is moved aside and no older checkpoint is pruned for it."""
    from model.base.folders import CheckpointFolder
    from train.distributed import Ranks
    from train.loop import TrainingError, run

    problems = CheckpointFolder.problems
    lost = ["optimizer.pt: 0 bytes, 1 when it was written"]

    def step_8_lost_a_write(self, checksums=True):
        return problems(self, checksums) or (lost if self.path.name == "step_0000008" else [])

    monkeypatch.setattr(CheckpointFolder, "problems", step_8_lost_a_write)
    out = tmp_path / "run"
    expected = (r"checkpoint step 8 does not verify right after writing \(optimizer\.pt: 0 bytes, 1 when it "
                r"was written\): moved to .*damaged/step_0000008; the disk under .* loses writes; checkpoint "
                r"step 4 is intact and nothing was pruned")
    with pytest.raises(TrainingError, match=expected):
        run(in_process_config(data, out, keep_last=1), Ranks())
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["damaged", "step_0000004"]


@pytest.mark.slow
def test_under_ddp_every_rank_resumes_from_the_checkpoint_rank_0_verified(data, clean, tmp_path):  # noqa: F811
    """Two gloo ranks: the newest checkpoint is damaged (a flipped byte), rank 0 finds it, and both
    ranks resume from the previous one (no rank loads what did not verify, none waits for another)."""
    out = killed_after_step_8(clean, tmp_path)
    flip_a_byte(out / "checkpoints" / "step_0000008" / "optimizer.pt")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*torchrun, *command(data, out)[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "step_0000008 is damaged: optimizer.pt" in output
    assert "resuming from step 4: steps 5 to 8 are trained again" in output
    expected, after = losses(clean), losses(out)
    assert sorted(after) == list(range(1, 13))
    for step, loss in after.items():
        assert loss == pytest.approx(expected[step], abs=1e-5), step


# --- full disks -------------------------------------------------------------------------------------


def test_a_full_disk_during_a_checkpoint_stops_the_run_and_keeps_the_previous_one(
        data, whole, tmp_path, caplog, small_disk):  # noqa: F811
    from model import weights
    from train.distributed import Ranks
    from train.loop import TrainingError, run

    disk = small_disk(tmp_path / "small", "2600k")
    out = disk.path / "run"
    cfg = in_process_config(data, out, max_steps=12, deterministic=True, keep_last=1)
    with caplog.at_level(logging.INFO, logger="webtext.train"), pytest.raises(TrainingError) as stop:
        run(cfg, Ranks())
    message = str(stop.value)
    assert message.startswith(f"checkpoint step 8 could not be written to {out}/checkpoints/"
                              ".step_0000008.tmp (no space left on device")
    assert re.search(r"it needs about 1\.\d MB, \d+ KB are free of 2\.\d MB; the partial folder is "
                     r"removed and checkpoint step 4 is intact; free space and rerun", message), message
    assert "a checkpoint may not fit" in caplog.text, "the plan warned at the start"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000004"]
    assert weights.resolve(out) == ("ours", out / "checkpoints" / "step_0000004")  # verifies, loads
    disk.grow("64m")  # space freed
    assert run(cfg, Ranks()) == 0
    assert losses(out) == losses(whole)
    final = [load_file(str(o / "checkpoints/step_0000012/model.safetensors")) for o in (out, whole)]
    assert all(final[0][k].equal(final[1][k]) for k in final[1])


# --- damaged shards -----------------------------------------------------------------------------------


def test_a_shard_shorter_than_its_header_stops_the_run_before_any_step(data, tmp_path):  # noqa: F811
    from train.distributed import Ranks
    from train.loop import run

    shards = tmp_path / "tokens"
    shutil.copytree(data, shards)
    os.truncate(shards / "train_001.bin", os.path.getsize(shards / "train_001.bin") - 100)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"train_001\.bin: 7,950 tokens \([\d,]+ bytes\), the header "
                                         r"promises 8,000 \([\d,]+ bytes\): cut short"):
        run(in_process_config(shards, out), Ranks())
    assert not (out / "metrics.jsonl").exists(), "stopped before the first step"
