"""Schemas of ``python -m pipeline``: the root config and one dataclass per concern.

Values live in ``conf/pipeline.yaml`` and its groups (``conf/executor/``, ``conf/source/``); the
schemas are registered with Hydra's ConfigStore in ``register()`` so the YAML is composed onto them.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pipeline.schema import ConfigError, param

# Every stage of the corpus, in data-flow order (docs/DESIGN.md). Not all are implemented yet:
# pipeline.registry.STAGES says which ones are.
STAGE_ORDER = ("links", "fetch", "extract", "dedup", "publish", "tokenize")


# --- executors -----------------------------------------------------------------------------------


@dataclass
class ExecutorConfig:
    """Where tasks run. Subclassed by each executor; ``name`` picks the implementation."""

    name: str = param(MISSING, "executor implementation", choices=("local", "slurm"))


@dataclass
class LocalExecutorConfig(ExecutorConfig):
    name: str = param("local", "executor implementation", choices=("local",))
    workers: int | None = param(None, "worker processes; null means one per CPU core", ge=1)
    start_method: str = param(
        "spawn", "how workers start (spawn is safe with threads and lxml)",
        choices=("spawn", "forkserver", "fork"),
    )


@dataclass
class SlurmExecutorConfig(ExecutorConfig):
    name: str = param("slurm", "executor implementation", choices=("slurm",))
    partition: str | None = param(None, "SLURM partition; null uses the cluster's default")
    account: str | None = param(None, "SLURM account to charge; null for none")
    qos: str | None = param(None, "SLURM quality of service; null for none")
    time_min: int = param(240, "wall-clock limit of one task, in minutes", ge=1)
    cpus_per_task: int = param(1, "CPU cores of one task", ge=1)
    mem_gb: float = param(4.0, "memory of one task, in GiB", gt=0)
    array_parallelism: int = param(256, "most array tasks of one stage running at once", ge=1)
    job_name_prefix: str = param("webtext", "prefix of job names: <prefix>-<stage>")
    setup: list[str] = param(doc="shell lines run before each task (module load, ...)", factory=list)
    additional: dict[str, str] = param(
        doc="extra #SBATCH options, as option: value (e.g. constraint: cpu)", factory=dict
    )
    wait: bool = param(True, "wait for the jobs and collect stats; false submits and returns")


# --- sources (read by the links stage) -----------------------------------------------------------


@dataclass
class SourceConfig:
    """Where Reddit submissions come from."""

    name: str = param(MISSING, "source implementation", choices=("pushshift", "reddit"))


@dataclass
class PushshiftSourceConfig(SourceConfig):
    name: str = param("pushshift", "source implementation", choices=("pushshift",))
    files: list[str] = param(doc="submission dumps (RS_*.zst, .xz, .bz2): paths or globs", factory=list)


@dataclass
class RedditSourceConfig(SourceConfig):
    name: str = param("reddit", "source implementation", choices=("reddit",))
    subreddits: list[str] = param(doc="subreddits to list, without the r/ prefix", factory=list)
    listings: list[str] = param(doc="listings to read: new, top, hot", factory=lambda: ["new", "top"])
    top_time_filter: str = param(
        "all", "time filter of the top listing",
        choices=("all", "year", "month", "week", "day", "hour"),
    )
    site: str | None = param(None, "praw.ini site with the credentials; null: praw_* env vars")
    user_agent: str | None = param(
        None, "user agent; null takes praw's (praw.ini or praw_user_agent), else webtext's"
    )
    archive: str = param("reddit", "folder (relative to workdir) of the collected submissions")
    timeout_s: float = param(30.0, "timeout of one API request, in seconds", gt=0)
    oauth_url: str | None = param(None, "API base URL override (tests, proxies); null: Reddit's")
    reddit_url: str | None = param(None, "site base URL override (tests, proxies); null: Reddit's")


# --- stages --------------------------------------------------------------------------------------


@dataclass
class TokenizeConfig:
    """Corpus text to GPT-2 BPE token shards in llm.c's .bin format."""

    tasks: int = param(16, "tasks the stage is split into (each writes its own shards)", ge=1)
    input: str = param("corpus/*.parquet", "Parquet files to read: a glob, relative to workdir")
    text_column: str = param("text", "column holding the document text")
    id_column: str | None = param("id", "column whose hash picks the split; null hashes the text")
    val_fraction: float = param(0.005, "share of documents sent to val_*.bin", ge=0.0, lt=1.0)
    split_salt: str = param("webtext", "salt of the split hash; change it for another split")
    shard_tokens: int = param(
        100_000_000, "most tokens in one .bin shard (llm.c's header counts in int32)",
        ge=1, le=2**31 - 1,
    )
    batch_docs: int = param(1024, "documents encoded per tiktoken batch", ge=1)


# --- root ----------------------------------------------------------------------------------------


@dataclass
class PipelineConfig:
    workdir: str = param("work/pipeline", "root folder; each stage writes <workdir>/<stage>/")
    stages: list[str] = param(doc="stages to run, in data-flow order", factory=lambda: ["tokenize"])
    executor: ExecutorConfig = param(MISSING, "where tasks run (config group executor/)")
    source: SourceConfig = param(MISSING, "where submissions come from (config group source/)")
    tokenize: TokenizeConfig = param(doc="the tokenize stage", factory=TokenizeConfig)
    log_level: str = param("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def check(self) -> None:
        from pipeline.registry import STAGES  # the registry imports the stages, which import us

        if not self.stages:
            raise ConfigError("stages", "is empty: name at least one stage")
        for name in self.stages:
            if name not in STAGE_ORDER:
                raise ConfigError("stages", f"unknown stage {name!r}; stages are {list(STAGE_ORDER)}")
            if name not in STAGES:
                raise ConfigError(
                    "stages", f"stage {name!r} is not implemented yet; available: {sorted(STAGES)}"
                )
        order = [STAGE_ORDER.index(name) for name in self.stages]
        if order != sorted(set(order)):
            raise ConfigError(
                "stages", f"must be distinct and in data-flow order {list(STAGE_ORDER)}, "
                f"got {self.stages}",
            )


def register() -> None:
    """Register the schemas so the YAML in conf/ is composed onto them (and checked by Hydra)."""
    cs = ConfigStore.instance()
    cs.store(name="pipeline_schema", node=PipelineConfig)
    cs.store(group="executor", name="local_schema", node=LocalExecutorConfig)
    cs.store(group="executor", name="slurm_schema", node=SlurmExecutorConfig)
    cs.store(group="source", name="pushshift_schema", node=PushshiftSourceConfig)
    cs.store(group="source", name="reddit_schema", node=RedditSourceConfig)
