"""bench/gpu.py: its CPU smoke mode runs the GPU benchmark's code paths end to end, so the script
cannot rot between the runs on a GPU; without a GPU (and without --smoke) it says what it needs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


def bench_gpu(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/gpu.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_smoke_writes_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    done = bench_gpu("--smoke", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["device"] == "cpu" and report["dtype"] == "float32"
    assert report["torch"] == torch.__version__ and report["peak_flops"] is None
    assert report["steps"] == 2
    rows = report["rows"]
    # the defaults: compile off; ddp, then fsdp (FSDP2 over a process group of one)
    assert [(r["model"], r["parallel"], r["compile"]) for r in rows] == [("gpt2-tiny", "ddp", False),
                                                                        ("gpt2-tiny", "fsdp", False)]
    assert rows[1]["estimate_gib"] > rows[0]["estimate_gib"]  # fsdp's unsharded copies, nothing divided
    for row in rows:
        assert row["error"] is None
        assert row["tokens_per_s"] > 0 and row["estimate_gib"] > 0
        assert row["block_size"] == 64 and row["tokens_per_step"] == row["micro_batch"] * 64
        assert row["first_step_s"] > 0 and row["median_step_s"] > 0
        # a CPU has no measured peak and no peak FLOP/s: null, not a made-up number
        assert row["mfu"] is None and row["peak_allocated_gib"] is None
        assert row["peak_reserved_gib"] is None and row["measured_over_estimate"] is None
        assert row["compile_s"] is None  # compile off

    lines = done.stdout.strip().splitlines()
    header = lines[0].split()
    for column in ("model", "parallel", "compile", "micro-batch", "tokens/s", "MFU", "peak", "estimate",
                   "measured/estimate", "first", "compile"):
        assert column in header, lines[0]
    assert len(lines) == 1 + len(rows)
    for line, row in zip(lines[1:], rows, strict=True):
        cells = line.split()
        assert cells[:4] == [row["model"], row["parallel"], "off", str(row["micro_batch"])]
        assert cells[4] == f"{row['tokens_per_s']:,.0f}"
        assert cells[5] == "unknown" and cells[6] == "n/a" and cells[7] == "n/a"
        assert cells[8] == f"{row['estimate_gib']:.2f}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the script would run")
def test_without_gpu_says_so(tmp_path):
    out = tmp_path / "bench.json"
    done = bench_gpu("--json", str(out), timeout=120)
    assert done.returncode != 0
    assert "CUDA GPU" in done.stderr and "--smoke" in done.stderr
    assert not out.exists()
