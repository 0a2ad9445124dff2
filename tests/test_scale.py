"""The rehearsal at scale (bench/scale.py) at a small size, so that it cannot rot: the whole flow on
the synthetic Reddit and web at two sizes, every stage measured, and the checks that do not depend on
size (nothing lost, the corpus loads, its card's counts) hold."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.scale import STAGES, Settings, checks, floor_check, ratios
from tests.conftest import REPO
from tests.test_synth_web import free_port_pair

pytestmark = pytest.mark.slow


def test_the_rehearsal_runs_the_whole_flow_at_two_sizes_and_nothing_is_lost(tmp_path):
    out = tmp_path / "scale.json"
    command = [sys.executable, "bench/scale.py", "--links", "320", "--sizes", "S,16S", "--workdir",
               str(tmp_path / "work"), "--json", str(out), "--port", str(free_port_pair()),
               "--partitions", "2", "--tokenize-tasks", "2", "--train-steps", "2", "--timeout-s", "2",
               "--val-fraction", "0.3"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| stage | links | wall s |" in done.stdout  # the table
    result = json.loads(out.read_text())
    assert set(result["sizes"]) == {"20", "320"}
    for n, size in result["sizes"].items():
        for stage in (*STAGES, "train"):
            figures = size[stage]
            assert figures["wall_s"] > 0 and figures["cpu_s"] > 0 and figures["peak_rss_mb"] > 0, stage
            assert figures["items_in"] >= figures["items_out"] > 0, (n, stage)
        links = size["links"]["checks"]
        assert links["lines_counted"] == links["lines_written"] > 0  # every line under one reason
        assert links["map_counts_as_truth"] and links["nul_prefixed_repaired"] == links["nul_prefixed"] == 1
        assert links["unique_links"] == links["unique_links_planned"] == int(n)
        assert size["fetch"]["checks"]["outcomes_as_planned"], size["fetch"]["checks"]
        corpus = size["publish"]["checks"]
        assert corpus["datasets_rows"] == corpus["stats_kept"] == corpus["manifest_documents"] > 0
        assert corpus["card_names_the_count"]
        assert size["train"]["first_step_s"] > 0
    assert set(result["checks"]["ratios"]) == {*STAGES, "train"}
    # a rerun finds every stage measured and runs nothing again
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(out.read_text())["sizes"] == result["sizes"]
    # --remeasure: fetch again at S; it gives the same pages, so extract's figures stand
    sizes = command.index("S,16S") + 1
    remeasure = [*command[:sizes - 1], "S", *command[sizes:], "--remeasure", "fetch"]
    done = subprocess.run(remeasure, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    small = json.loads(out.read_text())["sizes"]["20"]
    assert small["fetch"]["wall_s"] != result["sizes"]["20"]["fetch"]["wall_s"]  # measured again
    assert small["fetch"]["items_out"] == result["sizes"]["20"]["fetch"]["items_out"]
    assert small["fetch"]["settings"]["per_host_delay_s"] == Settings().per_host_delay_s
    assert all(small[stage] == result["sizes"]["20"][stage] for stage in (*STAGES[2:], "train"))
    assert all(small[stage].get("commit") for stage in (*STAGES, "train"))  # the code measured


def test_the_checks_judge_ratios_and_the_crawl_floor():
    def size(cpu: float, rss: float, wall: float, urls: int) -> dict:
        stage = {"cpu_s_per_item": cpu, "peak_rss_mb": rss, "wall_s": wall, "bytes_per_item": 10.0,
                 "cpu_s": cpu * urls, "checks": {"largest_host_urls": urls // 100}}
        return {**{s: dict(stage) for s in STAGES}, "fetch": {**stage, "server_cpu_s": 0.0}}

    settings = Settings(per_host_delay_s=1.0, workers=2)
    small, large = size(0.010, 200, 100, 1000), size(0.0114, 260, 1300, 16000)
    r = ratios(small, large)
    assert r["extract"]["cpu_s_per_item"] == pytest.approx(1.14)
    found = checks({1000: small, 16000: large}, settings)
    assert all(found["cpu_flat"].values())  # 1.14 <= 1.15
    assert not any(found["memory_bounded"].values())  # 1.3 > 1.25
    # fetch: the largest host has 160 URLs at 1 s: a floor of 160 s; the CPU floor is 182 / 2 = 91 s
    floor = floor_check(large, settings, cores=2)
    assert (floor["politeness_floor_s"], floor["cpu_floor_s"]) == (160.0, 91.2)
    assert not floor["holds"]  # 1300 s is far above 1.2 x 160 s
