"""Real jobs on the local one-node SLURM cluster (slurm/local-cluster.sh), through submitit."""

from __future__ import annotations

import json
import sys

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.base.shards import read_shard
from pipeline.config import SlurmExecutorConfig
from pipeline.executor import SlurmExecutor
from pipeline.paths import StagePaths
from pipeline.runtime import Stage, StageError, TaskContext, require_complete
from pipeline.tokenize import TokenizeStage
from tests.conftest import make_corpus, run_cli, stage_outputs
from tests.helpers import pipeline_config, run_batch_job

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]
# The chained test stage below is defined here; its jobs unpickle it by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def slurm(**overrides) -> SlurmExecutorConfig:
    return SlurmExecutorConfig(mem_gb=1, time_min=10, **overrides)


def test_same_outputs_under_local_and_slurm(tmp_path):
    for name in ("local", "slurm"):
        make_corpus(tmp_path / name / "corpus", docs=400, row_group_size=25, seed=3)
    common = ["stages=[tokenize]", "tokenize.tasks=8", "tokenize.val_fraction=0.1"]
    local = run_cli("pipeline", f"workdir={tmp_path / 'local'}", "executor=local", *common)
    assert local.returncode == 0, local.stderr
    remote = run_cli("pipeline", f"workdir={tmp_path / 'slurm'}", "executor=slurm",
                     "executor.mem_gb=1", "executor.time_min=10", *common)
    assert remote.returncode == 0, remote.stderr
    assert "submitted 8 task(s) as array job" in remote.stdout + remote.stderr

    outputs = stage_outputs(tmp_path / "local" / "tokens")
    assert len(outputs) >= 16
    assert stage_outputs(tmp_path / "slurm" / "tokens") == outputs
    stats = [json.loads((tmp_path / n / "tokens" / "stats.json").read_text())
             for n in ("local", "slurm")]
    assert stats[0]["counts"] == stats[1]["counts"] and stats[0]["metrics"] == stats[1]["metrics"]
    logs = tmp_path / "slurm" / "logs" / "slurm" / "tokenize"
    assert (logs / "config.yaml").read_text().startswith("workdir:")
    scripts = list(logs.glob("*/*_submission.sh"))
    assert scripts and "#SBATCH --array=0-7" in scripts[0].read_text()

    again = run_cli("pipeline", f"workdir={tmp_path / 'slurm'}", "executor=slurm", *common)
    assert again.returncode == 0 and "all 8 tasks already done" in again.stdout + again.stderr


class TokenTotals(Stage):
    """A second stage for the chaining test: per tokenize task, the sum of its train tokens."""

    name = "totals"

    @property
    def num_tasks(self) -> int:
        return 2

    def stage_config(self):
        return self.cfg.tokenize

    def check_inputs(self) -> None:
        # Fails when started before tokenize finished, i.e. without the afterok dependency.
        require_complete(StagePaths(self.workdir, "tokenize"))

    def run_task(self, ctx: TaskContext) -> None:
        shards = sorted(StagePaths(self.workdir, "tokenize").root.glob("train_*.bin"))[ctx.index::ctx.tasks]
        total = sum(int(np.asarray(read_shard(p), dtype=np.int64).sum()) for p in shards)
        ctx.output(f"sum_{ctx.index}.txt").write_text(str(total))
        ctx.count("kept", len(shards))


def test_stages_chain_with_afterok(tmp_path):
    make_corpus(tmp_path / "corpus", docs=300, row_group_size=25, seed=4)
    cfg = pipeline_config(tmp_path, tasks=6, val_fraction=0.0)
    cfg.executor = slurm()
    tokenize, totals = TokenizeStage(cfg), TokenTotals(cfg)
    SlurmExecutor(cfg.executor).run([tokenize, totals])

    scripts = list(totals.paths.slurm_logs.glob("*/*_submission.sh"))
    token_job = next(tokenize.paths.slurm_logs.glob("*_0")).name.split("_")[0]
    assert f"#SBATCH --dependency=afterok:{token_job}" in scripts[0].read_text()
    expected = sum(int(np.asarray(read_shard(p), dtype=np.int64).sum())
                   for p in tokenize.paths.root.glob("train_*.bin"))
    assert sum(int((totals.paths.root / f"sum_{i}.txt").read_text()) for i in range(2)) == expected
    assert json.loads(totals.paths.stats.read_text())["counts"] == {"kept": 6}


def test_failed_slurm_task_is_reported_and_retried(tmp_path):
    make_corpus(tmp_path / "corpus", docs=100, row_group_size=25, name="part-00000.parquet")
    broken = tmp_path / "corpus" / "part-00001.parquet"
    pq.write_table(pa.table({"id": ["x"], "body": ["no text column"]}), broken)
    cfg = pipeline_config(tmp_path, tasks=5)
    cfg.executor = slurm()
    stage = TokenizeStage(cfg)
    with pytest.raises(StageError, match=r"(?s)1 task\(s\) failed.*task 4 .*has no column 'text'.*stderr: "):
        SlurmExecutor(cfg.executor).run([stage])
    make_corpus(tmp_path / "corpus", docs=2, row_group_size=25, name="part-00001.parquet", seed=9)
    SlurmExecutor(cfg.executor).run([stage])
    assert json.loads(stage.paths.stats.read_text())["counts"]["kept"] > 90


def test_local_cluster_start_is_idempotent():
    import subprocess
    from pathlib import Path

    from tests.conftest import REPO

    pid_files = [Path("/run/slurmctld.pid"), Path("/run/slurmd.pid"), Path("/run/munge/munged.pid")]
    daemons = [p.read_text().strip() for p in pid_files]
    again = subprocess.run(["bash", str(REPO / "slurm/local-cluster.sh"), "start"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [p.read_text().strip() for p in pid_files] == daemons, "start on a running cluster restarted it"
    for pid in daemons:
        assert Path(f"/proc/{pid}").exists()
    status = subprocess.run(["bash", str(REPO / "slurm/local-cluster.sh"), "status"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "debug" in status.stdout


def test_links_map_reduce_on_slurm_equals_local(tmp_path):
    import random

    from tests.dumps import lines, submission, write_zst

    rng = random.Random(5)
    for month in (1, 2):
        write_zst(tmp_path / f"RS_2017-0{month}.zst", lines(submission(rng, month * 10**5 + i)
                                                         for i in range(3000)))
    common = ["stages=[links]", f"source.files=[{tmp_path}/RS_2017-0*.zst]", "links.partitions=4"]
    local = run_cli("pipeline", f"workdir={tmp_path / 'local'}", *common)
    assert local.returncode == 0, local.stderr
    remote = run_cli("pipeline", f"workdir={tmp_path / 'slurm'}", "executor=slurm",
                     "executor.mem_gb=1", "executor.time_min=10", *common)
    assert remote.returncode == 0, remote.stderr
    for stage in ("links_map", "links"):
        outputs = stage_outputs(StagePaths(tmp_path / "local", stage).root)
        assert outputs and stage_outputs(StagePaths(tmp_path / "slurm", stage).root) == outputs
    reduce_scripts = list(StagePaths(tmp_path / "slurm", "links").slurm_logs.glob("*/*_submission.sh"))
    assert "#SBATCH --dependency=afterok:" in reduce_scripts[0].read_text()


def test_plain_sbatch_script_runs_the_pipeline(tmp_path):
    from tests.conftest import REPO

    make_corpus(tmp_path / "corpus", docs=60, row_group_size=10, seed=8)
    job, status = run_batch_job(["--cpus-per-task=2", "--mem=1G", f"--output={tmp_path}/job-%j.out",
                                 "slurm/pipeline.sbatch", f"workdir={tmp_path}", "stages=[tokenize]",
                                 "tokenize.tasks=3"], tmp_path / "none", cwd=REPO)
    log = (tmp_path / f"job-{job}.out").read_text()
    assert status == 0, log
    assert "tokenize: done" in log, log
    assert json.loads((tmp_path / "tokens" / "stats.json").read_text())["counts"]["kept"] > 50


def test_dedup_and_publish_on_slurm_equal_local(tmp_path):
    from pipeline.config import DedupConfig, LinksConfig, PublishConfig
    from pipeline.executor import LocalExecutor
    from pipeline.registry import build
    from tests.test_dedup_stage import SHARDS, outcome, planted_docs, write_docs

    docs, expected = planted_docs(seed=5)
    results = {}
    for name in ("local", "slurm"):
        write_docs(tmp_path / name, docs)
        cfg = pipeline_config(tmp_path / name)
        cfg.stages = ["dedup", "publish"]
        cfg.links = LinksConfig(partitions=SHARDS)
        # bucket_ranges=1: 15 pairs tasks, not 30 (each array task starts an interpreter); 3 rounds suffice
        cfg.dedup = DedupConfig(components_partitions=2, bucket_ranges=1, max_rounds=3)
        cfg.publish = PublishConfig(shard_mib=0.02, row_group_rows=5)
        executor = LocalExecutor(cfg.executor) if name == "local" else SlurmExecutor(slurm())
        executor.run(build(cfg.stages, cfg))
        corpus = tmp_path / name / "corpus"
        results[name] = (outcome(tmp_path / name),
                         {p.name: p.read_bytes() for p in sorted(corpus.glob("part-*.parquet"))})
    assert results["slurm"] == results["local"]
    kept, removed = results["slurm"][0]
    assert kept == {d["id"] for d in docs} - set(expected)
    scripts = list((tmp_path / "slurm" / "logs" / "slurm" / "dedup_cc02").glob("*/*_submission.sh"))
    assert scripts and "#SBATCH --dependency=afterok:" in scripts[0].read_text()


def test_common_crawl_index_join_on_slurm_equals_local(tmp_path):
    """The columnar-index join's two passes as SLURM arrays (the reduce waits on the map with afterok):
    the same captures as run in this process, byte for byte, and each link's nearest capture."""
    from pipeline.fetch.ccindex import CCIndexMapStage, CCIndexReduceStage
    from tests.cc_index import CRAWLS, Synthetic, join_config, run_join, write_index, write_links
    from tests.test_ccindex import captures_by_url

    syn = Synthetic(hosts=40)
    for crawl in CRAWLS:
        write_index(tmp_path / "index", crawl, syn.rows(crawl), rows_per_file=200, row_group_rows=50)
    configs = {name: join_config(tmp_path / name, tmp_path / "index", commoncrawl_join_buffer_rows=40)
               for name in ("local", "slurm")}
    for cfg in configs.values():
        write_links(cfg, syn.links())
    run_join(configs["local"])
    cfg = configs["slurm"]
    SlurmExecutor(slurm()).run([CCIndexMapStage(cfg), CCIndexReduceStage(cfg)])
    for stage in ("fetch_ccindex_map", "fetch_ccindex"):
        outputs = stage_outputs(StagePaths(tmp_path / "local", stage).root)
        assert outputs and stage_outputs(StagePaths(tmp_path / "slurm", stage).root) == outputs
    assert captures_by_url(tmp_path / "slurm", cfg.links.partitions) == syn.expected()
    scripts = list(StagePaths(tmp_path / "slurm", "fetch_ccindex").slurm_logs.glob("*/*_submission.sh"))
    assert scripts and "#SBATCH --dependency=afterok:" in scripts[0].read_text()
