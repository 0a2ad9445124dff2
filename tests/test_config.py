"""Every config in conf/ composes and validates; bad values fail before any work, naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from model.base.schema import ConfigError, from_hydra, validate
from model.config import GPTConfig
from pipeline import config as pipeline_config
from pipeline.config import LocalExecutorConfig, PipelineConfig, TokenizeConfig
from tests.conftest import REPO, run_cli
from train import config as train_config
from train.config import TrainConfig

CONF = REPO / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_app(config_name: str, overrides: list[str]):
    pipeline_config.register()
    train_config.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def test_every_group_option_is_used():
    assert options("executor") == ["local", "slurm"]
    assert options("source") == ["pushshift", "reddit"]
    assert {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt2-tiny"} <= set(options("model"))
    assert sorted(p.name for p in CONF.glob("*.yaml")) == ["pipeline.yaml", "train.yaml"]


@pytest.mark.parametrize("executor", options("executor"))
@pytest.mark.parametrize("source", options("source"))
def test_pipeline_configs_compose(executor, source):
    cfg = from_hydra(compose_app("pipeline", [f"executor={executor}", f"source={source}"]),
                     PipelineConfig)
    assert cfg.executor.name == executor
    assert cfg.source.name == source


@pytest.mark.parametrize("model", options("model"))
def test_train_configs_compose(model):
    cfg = from_hydra(compose_app("train", [f"model={model}", "data.dir=/data/tokens"]), TrainConfig)
    assert cfg.model.name == model
    assert isinstance(cfg.model, GPTConfig)


def schemas() -> list[type]:
    found, todo = set(), [PipelineConfig, TrainConfig, LocalExecutorConfig,
                          pipeline_config.SlurmExecutorConfig, pipeline_config.PushshiftSourceConfig,
                          pipeline_config.RedditSourceConfig]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.add(cls)
        for f in dataclasses.fields(cls):
            known = vars(pipeline_config) | vars(train_config)
            named = known.get(f.type) if isinstance(f.type, str) else None
            if dataclasses.is_dataclass(named):
                todo.append(named)
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("schema", schemas(), ids=lambda c: c.__name__)
def test_every_field_is_documented(schema):
    for f in dataclasses.fields(schema):
        assert f.metadata.get("doc"), f"{schema.__name__}.{f.name} has no doc"


def test_bounds_name_the_full_key():
    cfg = PipelineConfig(executor=LocalExecutorConfig(workers=0),
                         source=pipeline_config.PushshiftSourceConfig())
    with pytest.raises(ConfigError, match=r"^executor.workers: must be >= 1, got 0$"):
        validate(cfg)
    cfg.executor.workers = 2
    cfg.tokenize = TokenizeConfig(val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"^tokenize.val_fraction: must be < 1.0, got 1.5$"):
        validate(cfg)


def test_stage_list_is_checked():
    base = {"executor": LocalExecutorConfig(), "source": pipeline_config.PushshiftSourceConfig()}
    with pytest.raises(ConfigError, match="unknown stage 'tokenise'"):
        validate(PipelineConfig(stages=["tokenise"], **base))
    with pytest.raises(ConfigError, match="must be distinct and in data-flow order"):
        validate(PipelineConfig(stages=["dedup", "extract"], **base))


def test_cross_field_rule_in_train_config():
    with pytest.raises(ConfigError, match="^total_batch_tokens: 1000 is not a multiple"):
        from_hydra(compose_app("train", ["data.dir=x", "total_batch_tokens=1000"]), TrainConfig)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("executor.workers=-3", "executor.workers: must be >= 1, got -3"),
        ("executor.wrkers=2", "Key 'wrkers' not in 'LocalExecutorConfig'"),
        ("no_such_key=1", "Key 'no_such_key' not in 'PipelineConfig'"),
        ("tokenize.tasks=many", "tokenize.tasks"),
        ("executor=kubernetes", "executor"),
    ],
)
def test_bad_override_fails_before_any_work(tmp_path: Path, override, expected):
    workdir = tmp_path / "work"
    result = run_cli("pipeline", f"workdir={workdir}", override)
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert not workdir.exists(), "nothing may be written for a bad config"


def test_bad_train_override_names_key():
    result = run_cli("train", "data.dir=x", "optim.beta2=1.5")
    assert result.returncode != 0
    assert "optim.beta2: must be < 1.0, got 1.5" in result.stderr


@pytest.mark.parametrize("app", ["pipeline", "train"])
def test_help_and_cfg_job(app):
    helped = run_cli(app, "--help")
    assert helped.returncode == 0, helped.stderr
    assert f"python -m {app}" in helped.stdout and "== Config ==" in helped.stdout
    shown = run_cli(app, "--cfg", "job")
    assert shown.returncode == 0, shown.stderr
    assert ("tokenize:" if app == "pipeline" else "n_layer: 12") in shown.stdout


def test_a_config_error_survives_pickling():
    """A worker's ConfigError travels back to the driver pickled; it must come back whole."""
    import pickle

    from model.base.schema import ConfigError

    err = pickle.loads(pickle.dumps(ConfigError("overlap.sets", "bad entry")))
    assert isinstance(err, ConfigError) and str(err) == "overlap.sets: bad entry"
    assert (err.key, err.message) == ("overlap.sets", "bad entry")


def test_overlap_sets_as_the_issue_writes_them(tmp_path):
    """``overlap.sets=[NAME=PATH,...]``, unquoted: Hydra takes no bare ``=`` in a list, so
    ``python -m pipeline`` quotes each entry for it; quoted entries pass as they are."""
    from pipeline.__main__ import quote_sets
    from tests.conftest import run_cli

    assert quote_sets(["x", "overlap.sets=[a=p/a.jsonl, b=p/b.txt]"]) == [
        "x", 'overlap.sets=["a=p/a.jsonl","b=p/b.txt"]']
    assert quote_sets(['overlap.sets=["a=x"]']) == ['overlap.sets=["a=x"]']
    assert quote_sets(["overlap.sets=[]", "workdir=a=b"]) == ["overlap.sets=[]", "workdir=a=b"]
    done = run_cli("pipeline", "--cfg", "job", f"workdir={tmp_path}",
                   "overlap.sets=[sample=pipeline/sample/eval_set.jsonl,again=pipeline/sample/eval_set.jsonl]")
    assert done.returncode == 0, done.stderr
    listed = "  - sample=pipeline/sample/eval_set.jsonl\n  - again=pipeline/sample/eval_set.jsonl"
    assert listed in done.stdout
