"""Each app's ``--help`` lists the config groups it reads, with their options, and no other app's
groups or schema nodes; each app's GROUPS (its config module) are the groups it composes."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from model.base.schema import group_options
from pipeline import config as pipeline_config
from tests.conftest import REPO, run_cli
from train import config as train_config

CONF = REPO / "conf"
APPS = {"pipeline": pipeline_config, "train": train_config}
SCHEMA = re.compile(r"\w+_schema\b")


def conf_groups() -> list[str]:
    """Every config group of conf/: each folder holding YAML files, as Hydra names it."""
    return sorted({p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml") if p.parent != CONF})


def listed_groups(help_text: str) -> dict[str, str]:
    """The ``group: options`` lines of a ``--help``'s group section."""
    section = help_text.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    return dict(line.split(": ", 1) for line in section.splitlines() if ": " in line)


def test_every_group_of_conf_is_one_apps():
    declared = [group for module in APPS.values() for group in module.GROUPS]
    assert sorted(declared) == conf_groups(), "each group of conf/ must be in exactly one app's GROUPS"


@pytest.mark.parametrize("app", APPS)
def test_groups_are_those_the_app_composes(app):
    for module in APPS.values():
        module.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=app, overrides=["data.dir=x"] if app == "train" else [],
                      return_hydra_config=True)
    chosen = {group for group in cfg.hydra.runtime.choices if not group.startswith("hydra/")}
    assert chosen == {group for group in APPS[app].GROUPS if not group.startswith("hydra/")}
    assert cfg.hydra.runtime.choices["hydra/help"] == app


@pytest.mark.parametrize("app", APPS)
def test_help_lists_own_groups_only(app):
    result = run_cli(app, "--help")
    assert result.returncode == 0, result.stderr
    own = APPS[app].GROUPS
    expected = {group: ", ".join(options) for group, options in group_options(CONF, own).items()}
    assert all(expected.values()), f"a group of {app} has no options: {expected}"
    listed = listed_groups(result.stdout)
    assert listed == expected
    others = [group for other, module in APPS.items() if other != app for group in module.GROUPS]
    assert not set(others) & set(listed)
    assert not SCHEMA.findall(result.stdout), "a schema node is shown as a choice"
    assert "== Config ==" in result.stdout and "--multirun,-m" in result.stdout
