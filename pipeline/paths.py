"""Where every artifact of a stage lives. The one place these paths are spelled out.

    <workdir>/<folder>/...                 the stage's outputs (shards); folder names below
    <workdir>/<folder>/stats.json          counts by reason, summed over tasks
    <workdir>/<folder>/_state/config.yaml   the resolved config of the last run
    <workdir>/<folder>/_state/stage.json    task count and stage config the outputs were made with
    <workdir>/<folder>/_state/done/NNNNN.json   completion marker (and stats) of task NNNNN
    <workdir>/<folder>/_state/tmp/NNNNN/    outputs of task NNNNN until it finishes
    <workdir>/<folder>/_state/commit/NNNNN.json  outputs task NNNNN is moving into place
    <workdir>/<folder>/_state/locks/NNNNN.lock   held while task NNNNN runs
    <workdir>/<folder>/_state/progress/NNNNN.json   task NNNNN's items done, of how many, and rate
    <workdir>/logs/<stage>/task_NNNNN.log  per-task log (appended by every attempt)
    <workdir>/logs/slurm/<stage>/          submitit's job folders, sbatch scripts, config
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The folder each stage writes, as the user-facing contract names them (docs/runtime.md, "Decisions").
STAGE_FOLDERS = {
    "links_map": "links/_map", "links": "links", "fetch": "fetch", "extract": "docs",
    "dedup": "dedup", "publish": "corpus", "overlap": "overlap", "tokenize": "tokens",
    # the fetch stage's join with Common Crawl's columnar index (fetch.commoncrawl_index)
    "fetch_ccindex_map": "fetch/_ccindex/_map", "fetch_ccindex": "fetch/_ccindex",
    # the dedup stage's passes, under its folder
    "dedup_sig": "dedup/_sig", "dedup_pairs": "dedup/_pairs", "dedup_vreq": "dedup/_vreq",
    "dedup_verify": "dedup/_verified",
    **{f"dedup_cc{r:02d}": f"dedup/_cc/r{r:02d}" for r in range(1, 100)},
}


@dataclass(frozen=True)
class StagePaths:
    workdir: Path
    stage: str

    @classmethod
    def of_folder(cls, workdir: Path, folder: str) -> StagePaths:
        """The paths of the stage that writes ``workdir/folder``."""
        stages = {f: s for s, f in STAGE_FOLDERS.items()}
        return cls(workdir, stages.get(folder, folder))

    @classmethod
    def holding(cls, path: Path) -> StagePaths | None:
        """The paths of the stage whose folder holds ``path`` (the innermost with a stage.json)."""
        for folder in Path(path).resolve().parents:
            for stage, name in STAGE_FOLDERS.items():
                parts = Path(name).parts
                if folder.parts[-len(parts):] == parts and len(folder.parts) > len(parts):
                    paths = cls(folder.parents[len(parts) - 1], stage)
                    if paths.meta.exists():
                        return paths
        return None

    @property
    def top_stage(self) -> str:
        """The stage, as ``stages=[...]`` names it, this one is a pass of (its top folder's)."""
        return self.of_folder(self.workdir, STAGE_FOLDERS.get(self.stage, self.stage).split("/")[0]).stage

    @property
    def root(self) -> Path:
        return self.workdir / STAGE_FOLDERS.get(self.stage, self.stage)

    @property
    def state(self) -> Path:
        return self.root / "_state"

    @property
    def config(self) -> Path:
        return self.state / "config.yaml"

    @property
    def meta(self) -> Path:
        return self.state / "stage.json"

    @property
    def done_dir(self) -> Path:
        return self.state / "done"

    def done(self, task: int) -> Path:
        return self.done_dir / f"{task:05d}.json"

    @property
    def commit_dir(self) -> Path:
        return self.state / "commit"

    def commit(self, task: int) -> Path:
        return self.commit_dir / f"{task:05d}.json"

    def lock(self, task: int) -> Path:
        return self.state / "locks" / f"{task:05d}.lock"

    @property
    def progress_dir(self) -> Path:
        return self.state / "progress"

    def progress(self, task: int) -> Path:
        return self.progress_dir / f"{task:05d}.json"

    @property
    def tmp_dir(self) -> Path:
        """The tasks' temporary folders' shared parent."""
        return self.state / "tmp"

    def tmp(self, task: int) -> Path:
        return self.tmp_dir / f"{task:05d}"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    def log(self, task: int) -> Path:
        return self.workdir / "logs" / self.stage / f"task_{task:05d}.log"

    @property
    def slurm_logs(self) -> Path:
        return self.workdir / "logs" / "slurm" / self.stage
