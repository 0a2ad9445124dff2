"""Typed configs: one dataclass per concern, each field documented, validated once.

The YAML files in ``conf/`` hold values only; the schemas here say what each value means and which
values are allowed. Hydra composes the YAML onto the schemas (so a misspelt key fails at parse time),
``from_hydra`` turns the result into plain dataclass objects and ``validate`` checks every field's
range and each schema's cross-field rules. Nothing below an entry point sees Hydra.

A field is declared with ``param``::

    workers: int = param(2, "worker processes of the local pool", ge=1)

and a failed check raises ``ConfigError`` naming the full key (``executor.workers``).
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf

T = TypeVar("T")

# An app's ``--help``: Hydra's default one but for the group list, which is the app's own (Hydra's
# $APP_CONFIG_GROUPS lists every group of the search path, the other app's too).
HELP_TEMPLATE = """${hydra.help.header}
== Configuration groups ==
Compose your configuration from those groups (group=option)

%s

== Config ==
Override anything in the config (foo.bar=value)

$CONFIG

== Flags ==
$FLAGS_HELP

${hydra.help.footer}
"""


class ConfigError(ValueError):
    """A config value that is wrong; ``key`` is its dotted path from the config root."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def under(self, prefix: str) -> ConfigError:
        """The same error with ``prefix`` prepended to its key."""
        return ConfigError(f"{prefix}{self.key}", self.message)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # pickled by its two arguments (a worker's error travels back to the driver): the default
        # would call ConfigError("key: message") and fail in the driver, breaking the pool
        return ConfigError, (self.key, self.message)


def param(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Iterable[Any] | None = None,
) -> Any:
    """A documented dataclass field with optional bounds (``ge``, ``gt``, ``le``, ``lt``) or choices."""
    if not doc:
        raise ValueError("every config field needs a one-line doc")
    checks = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": tuple(choices) if choices else None}
    metadata = {"doc": doc, **{k: v for k, v in checks.items() if v is not None}}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_BOUNDS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def _check_field(value: Any, meta: dict[str, Any], key: str) -> None:
    if value is None:
        return
    for name, (ok, symbol) in _BOUNDS.items():
        if name in meta and not ok(value, meta[name]):
            raise ConfigError(key, f"must be {symbol} {meta[name]}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        allowed = ", ".join(map(str, meta["choices"]))
        raise ConfigError(key, f"must be one of [{allowed}], got {value!r}")


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of a config tree; raise ``ConfigError`` naming the first bad key.

    Field bounds come from ``param``; a schema's own cross-field rules live in its ``check()``
    method, which raises ``ConfigError`` with keys relative to itself.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        _check_field(value, dict(f.metadata), key)
        if dataclasses.is_dataclass(value):
            validate(value, f"{key}.")
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:
            raise err.under(prefix) from None


def from_hydra(cfg: DictConfig, schema: type[T]) -> T:
    """Turn Hydra's composed config into validated ``schema`` objects."""
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, schema):
        raise TypeError(f"config root is {type(obj).__name__}, expected {schema.__name__}")
    validate(obj)
    return obj


def load(cfg: DictConfig, schema: type[T]) -> T:
    """``from_hydra`` for entry points: a bad value ends the program with a message naming its key."""
    try:
        return from_hydra(cfg, schema)
    except ConfigError as err:
        sys.exit(f"config error: {err}")


def to_dict(obj: Any) -> dict[str, Any]:
    """A config tree as plain dicts and lists (for YAML, JSON and comparisons)."""
    return dataclasses.asdict(obj)


def to_yaml(obj: Any) -> str:
    """The resolved config as YAML, saved beside every output and in every checkpoint."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key: old -> new``."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes.extend(diff(a, b, f"{prefix}{key}."))
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def _accepts(annotation: Any, kind: type) -> bool:
    return annotation is kind or kind in typing.get_args(annotation)


def _cli_value(raw: str, annotation: Any, key: str) -> Any:
    """``raw`` as the field's type. Text fields take the text exactly as given."""
    if _accepts(annotation, type(None)) and raw.strip().lower() in ("null", "none"):
        return None
    if typing.get_origin(annotation) is list:  # [a,b] (YAML's flow list), or one bare item
        try:
            items = yaml.safe_load(raw)
        except yaml.YAMLError:
            items = None
        items = items if isinstance(items, list) else [raw]
        if all(isinstance(i, (str, int, float)) and not isinstance(i, bool) for i in items):
            return [str(i) for i in items]
        raise ConfigError(key, f"expected a list like [a,b], got {raw!r}")
    if _accepts(annotation, str):
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if _accepts(annotation, bool) and isinstance(value, bool):
        return value
    if _accepts(annotation, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if _accepts(annotation, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    kinds = typing.get_args(annotation) or (annotation,)
    names = " or ".join(getattr(a, "__name__", str(a)) for a in kinds)
    raise ConfigError(key, f"expected {names}, got {raw!r}")


def cli_help(schema: type, prog: str) -> str:
    """The fields of a flat schema with their defaults and docs, for ``--help``."""
    lines = [f"usage: {prog} key=value ...", ""]
    for f in dataclasses.fields(schema):
        if f.default_factory is not dataclasses.MISSING:
            default = "[" + ",".join(map(str, f.default_factory())) + "]"
        else:
            default = "(required)" if f.default in (dataclasses.MISSING, "???") else repr(f.default)
        lines.append(f"  {f.name:<16} {default:<14} {f.metadata.get('doc', '')}")
    return "\n".join(lines)


def parse_cli(argv: list[str], schema: type[T]) -> T:
    """``key=value`` arguments onto a flat schema, without Hydra's override grammar.

    For commands whose values are free text (a prompt may hold commas, quotes, colons, brackets):
    a text field takes everything after the first ``=`` as it is; other fields are read as YAML
    scalars (``null`` for None). Unknown keys, missing required values and bad values raise
    ``ConfigError`` naming the key; the object is validated like any other config.
    """
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    given: dict[str, Any] = {}
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if not sep:
            raise ConfigError(arg, "expected key=value")
        if key not in fields:
            raise ConfigError(key, f"unknown key; known: {', '.join(fields)}")
        given[key] = _cli_value(raw, hints[key], key)
    for name, f in fields.items():
        required = f.default in (dataclasses.MISSING, "???") and f.default_factory is dataclasses.MISSING
        if name not in given and required:
            raise ConfigError(name, "required, give it as key=value")
    obj = schema(**given)
    validate(obj)
    return obj


def cli_config(argv: list[str], schema: type[T], prog: str) -> T:
    """``parse_cli`` for entry points: ``--help`` prints the fields and exits 0; a bad value exits 2
    with a message naming its key."""
    if any(a in ("-h", "--help") for a in argv):
        print(cli_help(schema, prog))
        sys.exit(0)
    try:
        return parse_cli(argv, schema)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)


def group_options(conf: Path, groups: Iterable[str]) -> dict[str, list[str]]:
    """Each config group with its options: the YAML files of its folder under ``conf``."""
    return {group: sorted(p.stem for p in (conf / group).glob("*.yaml")) for group in groups}


def hydra_help(app_name: str, conf: Path, groups: Iterable[str]) -> dict[str, str]:
    """A ``hydra/help`` node whose ``--help`` lists ``groups`` only, with their options."""
    listed = "\n".join(f"{group}: {', '.join(options)}"
                       for group, options in group_options(conf, groups).items())
    return {
        "app_name": app_name,
        "header": "${hydra.help.app_name} is powered by Hydra.\n",
        "footer": "Powered by Hydra (https://hydra.cc)\nUse --hydra-help to view Hydra specific help\n",
        "template": HELP_TEMPLATE % listed.replace("$", "$$"),
    }
