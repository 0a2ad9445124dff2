"""Every command line the docs give for the pipeline and the trainer works when copied into a shell.

The command lines of README.md and docs/*.md that run ``python -m pipeline``, ``python -m train``
(also through ``torchrun -m train`` and ``sbatch slurm/train.sbatch``), ``python -m train.sample``
and ``python -m model.export`` are read as bash reads them (fenced and indented code blocks, lines
joined at a trailing backslash, and inline code that starts with one of those commands), split with
shlex, and given to the program's own parsing: Hydra composes them onto ``conf/`` as the entry
point does, and the schemas validate the result (``model.base.schema.from_hydra``; the training job of
``train_after`` through ``train.config.compose``, as the pipeline checks it before any stage runs).
A doc line that would fail on a user's shell (a value with spaces not quoted for Hydra, a key that
needs ``+``, a placeholder such as ``[CC-MAIN-2017-13,...]``) fails here.

Shell features in the docs: ``NAME=value`` prefixes are dropped; a bash array defined in the same
file (``COMMON=(...)``) is expanded where ``"${COMMON[@]}"`` is used; ``$(...)`` is replaced by the
value that command would print (``SUBSTITUTIONS``: an unknown one fails the test). Inline code
followed by ``says `MESSAGE``` is an example of an error and must fail with that message. Nothing
runs: composition and validation only.
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from model.base.schema import ConfigError, from_hydra, parse_cli
from model.export import ExportConfig
from pipeline import config as pipeline_config
from pipeline.config import PipelineConfig
from pipeline.sample import domains
from pipeline.train_after import train_overrides
from tests.conftest import REPO
from train import config as train_config
from train.core import CoreConfig
from train.eval import EvalConfig
from train.eval_data import EvalDataConfig
from train.sample import SampleConfig

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONF = REPO / "conf"
# What a command substitution in a doc prints, for the commands the docs use: the demo sample's
# hosts file, as ``python -m pipeline.sample`` writes it (pipeline/sample/__main__.py).
SUBSTITUTIONS = {"cat work/sample/hosts.txt": "[" + ",".join(f"'{d}=127.0.0.1'" for d in domains()) + "]"}
HYDRA_APPS = {"pipeline": "pipeline", "train": "train"}  # module -> config name in conf/
# key=value, no Hydra
FLAT_APPS = {"train.sample": SampleConfig, "model.export": ExportConfig, "train.eval": EvalConfig,
             "train.eval_data": EvalDataConfig,
             "train.core": CoreConfig}
# Hydra's own flags: those that take a value, and those that make the program print and exit
# (composition must still work, but required values may stay missing).
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn"}
PRINT_ONLY = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
INLINE = re.compile(r"`([^`]+)`(\s+says\s+`([^`]+)`)?")


@dataclass
class Command:
    """One command line of a doc: where it is, its text (continuations joined) and, for an example
    of an error, the message it must fail with."""

    where: str
    text: str
    expect_error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.where}: {self.text[:60]}"


# --- reading the docs as a shell would ----------------------------------------------------------------


def code_lines(text: str) -> tuple[list[tuple[int, str]], list[tuple[list[int], str]]]:
    """(line number, line) of the code (fenced blocks, and indented lines that start a command),
    with backslash continuations joined; and the paragraphs of the rest, for inline code: (the line
    number of each character, the paragraph's lines joined with spaces, so that inline code wrapped
    over two lines is whole)."""
    code, prose, fence, pending, paragraph = [], [], False, None, []

    def end_paragraph() -> None:
        if paragraph:
            numbers = [n for n, line in paragraph for _ in range(len(line) + 1)]
            prose.append((numbers, " ".join(line for _, line in paragraph)))
            paragraph.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fence = not fence
            end_paragraph()
            continue
        indented = line.startswith("    ") and line.strip().startswith(("python ", "torchrun ", "sbatch "))
        if fence or indented or pending is not None:
            start, joined = pending if pending is not None else (number, "")
            continued = line.rstrip().endswith("\\")
            joined += line.rstrip()[:-1] + " " if continued else line
            pending = (start, joined) if continued else None
            if pending is None:
                code.append((start, joined))
        elif line.strip():
            paragraph.append((number, line))
        else:
            end_paragraph()
    end_paragraph()
    return code, prose


def is_command(text: str) -> bool:
    """A line that runs one of the programs checked here (other lines: cat, kill, make, ...)."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return text.lstrip().startswith(("python -m ", "torchrun ", "sbatch "))  # unbalanced: a bug
    words = list(itertools.dropwhile(ENV_ASSIGNMENT.match, words))
    return program(words) is not None


def program(words: list[str]) -> tuple[str, list[str]] | None:
    """(module, its arguments) for a python -m / torchrun -m / sbatch slurm/train.sbatch line."""
    if not words:
        return None
    if re.fullmatch(r"(\S*/)?python3?", words[0]) and words[1:2] == ["-m"] and len(words) > 2:
        module, args = words[2], words[3:]
    elif words[0] == "torchrun" and "-m" in words:
        at = words.index("-m")
        module, args = words[at + 1], words[at + 2:]
    elif words[0] == "sbatch" and "slurm/train.sbatch" in words:
        module, args = "train", words[words.index("slurm/train.sbatch") + 1:]
    else:
        return None
    return (module, args) if module in HYDRA_APPS or module in FLAT_APPS else None


def doc_commands(path: Path) -> list[Command]:
    """The command lines of one doc, with its shell arrays expanded."""
    name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    code, prose = code_lines(path.read_text())
    commands = [Command(f"{name}:{number}", line.strip()) for number, line in code if is_command(line)]
    for numbers, paragraph in prose:
        for span in INLINE.finditer(paragraph):
            text = span.group(1).strip()
            if is_command(text) and len(text.split()) > 3:  # `python -m train` alone names it
                commands.append(Command(f"{name}:{numbers[span.start()]}", text, span.group(3)))
    return commands


def shell_arrays(path: Path) -> dict[str, list[str]]:
    """``NAME=(word ...)`` definitions in a doc's code blocks, as bash splits them."""
    code, _ = code_lines(path.read_text())
    joined = "\n".join(line for _, line in code)
    arrays = {}
    for start in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*)=\(", joined, re.M):
        quote, end = None, start.end()
        while end < len(joined) and (quote or joined[end] != ")"):  # the closing ")" outside quotes
            char = joined[end]
            quote = (char if char in "'\"" else None) if quote is None else (None if char == quote else quote)
            end += 1
        arrays[start.group(1)] = shlex.split(joined[start.end():end], comments=True)
    return arrays


def words_of(command: Command, arrays: dict[str, list[str]]) -> list[str]:
    """The argument words bash would pass: arrays expanded, substitutions made, prefixes dropped."""
    text = re.sub(r"\$\(([^)]*)\)", lambda m: _substitute(m.group(1)), command.text)
    words = []
    for word in shlex.split(text, comments=True):
        array = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\[@\]\}", word)
        if array:
            assert array.group(1) in arrays, f"{command.where}: ${{{array.group(1)}[@]}} is not defined"
            words.extend(arrays[array.group(1)])
        else:
            assert "$" not in word, f"{command.where}: no value for {word!r} (add it to SUBSTITUTIONS?)"
            words.append(word)
    words = list(itertools.dropwhile(ENV_ASSIGNMENT.match, words))
    if words and words[-1] == "&":
        words.pop()
    return words


def _substitute(inner: str) -> str:
    assert inner.strip() in SUBSTITUTIONS, f"no plausible value for $({inner}): add it to SUBSTITUTIONS"
    return SUBSTITUTIONS[inner.strip()]


# --- checking a command as its program would ----------------------------------------------------------


def hydra_compose(config_name: str, overrides: list[str]):
    pipeline_config.register()
    train_config.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def sweep(overrides: list[str]) -> list[list[str]]:
    """The jobs of a ``-m`` sweep: every combination of its comma-separated values."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
               if o.is_sweep_override() else [o.input_line] for o in parsed]
    return [list(combo) for combo in itertools.product(*choices)]


def check(module: str, args: list[str]) -> None:
    """Parse and validate ``args`` as ``python -m module`` does; raise what it would report."""
    if module in FLAT_APPS:
        if not {"-h", "--help"} & set(args):
            parse_cli(args, FLAT_APPS[module])
        return
    flags = [a for a in args if a.startswith("-")]
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in FLAGS_WITH_VALUE:
            skip = True
        elif arg in ("-m", "--multirun") or arg in PRINT_ONLY:
            continue
        else:
            assert not arg.startswith("-"), f"unknown flag {arg}"
            overrides.append(arg)
    jobs = sweep(overrides) if {"-m", "--multirun"} & set(flags) else [overrides]
    for job in jobs:
        raw = hydra_compose(HYDRA_APPS[module], job)
        if PRINT_ONLY & set(flags):
            continue  # --cfg job, --help: Hydra prints and exits before the program validates
        if module == "pipeline":
            cfg = from_hydra(raw, PipelineConfig)
            if cfg.train_after:
                shlex.split(cfg.train_sbatch)
                train_config.compose(train_overrides(cfg))
        else:
            from_hydra(raw, train_config.TrainConfig)


def every_command() -> list[tuple[Command, dict[str, list[str]]]]:
    return [(command, shell_arrays(path)) for path in DOCS for command in doc_commands(path)]


COMMANDS = every_command()


@pytest.mark.parametrize(("command", "arrays"), COMMANDS, ids=[c.id for c, _ in COMMANDS])
def test_doc_command_composes_and_validates(command, arrays):
    words = words_of(command, arrays)
    module, args = program(words)
    if command.expect_error is None:
        check(module, args)
        return
    with pytest.raises(ConfigError) as err:
        check(module, args)
    assert str(err.value) == command.expect_error, command.where


def test_the_docs_commands_are_found():
    """The extraction sees the commands it should: every doc that runs the programs, the continued
    lines whole, the shell array, and the inline examples."""
    by_file = {}
    for command, _ in COMMANDS:
        by_file.setdefault(command.where.split(":")[0], []).append(command)
    for name in ("README.md", "docs/reproduce.md", "docs/training.md", "docs/train.md", "docs/fetch.md",
                 "docs/archive.md", "docs/links.md", "docs/dedup.md", "docs/extract.md", "docs/model.md"):
        assert by_file.get(name), f"no command found in {name}"
    assert len(COMMANDS) >= 40
    reproduce = [c.text for c in by_file["docs/reproduce.md"]]
    assert any("${COMMON[@]}" in t and "train_sbatch=" in t for t in reproduce)  # joined at "\"
    assert any(c.expect_error for c in by_file["README.md"])
    assert "links.partitions=256" in shell_arrays(REPO / "docs/reproduce.md")["COMMON"]


@pytest.mark.parametrize(("line", "error"), [
    # a value with spaces that Hydra gets without its own quotes
    ("python -m pipeline fetch.user_agent='webtext/0.1 (research crawl; contact: you@example.org)'",
     "mismatched input"),
    # a key the schema holds no default for, without the + that adds it
    ("python -m pipeline executor=slurm executor.additional.constraint=cpu",
     "Could not override 'executor.additional.constraint'"),
    # placeholders copied as they stand
    ("python -m pipeline fetch.archive=commoncrawl fetch.commoncrawl_crawls='[CC-MAIN-2017-13,...]'",
     "fetch.commoncrawl_crawls[1]: not a crawl name"),
    ("python -m pipeline ... fetch.archive=wayback", "LexerNoViableAltException: ..."),
    # training overrides the job would refuse, checked before any stage runs
    ("python -m pipeline train_after='\"model=gpt2 max_steps=0\"'", "max_steps: must be >= 1"),
    ("python -m train model=gpt2 out_dir=runs/x", "missing mandatory value: dir"),
    ("torchrun --standalone --nproc_per_node=8 -m train model=gpt2-xxl data.dir=x",
     "Could not find 'model/gpt2-xxl'"),
    ("python -m train.sample checkpoint=runs/x temperature=-1", "temperature: must be >= 0.0"),
])
def test_a_broken_line_fails(line, error):
    """The check is real: lines that fail on a user's shell fail here too, for the same reason."""
    assert is_command(line)
    module, args = program(words_of(Command("example", line), {}))
    with pytest.raises(Exception, match=re.escape(error)):
        check(module, args)


def test_shell_features(tmp_path):
    """Continuations, environment prefixes, arrays, substitutions and comments, as bash reads them."""
    doc = (
        "```bash\n"
        "ARGS=(workdir=/data/x 'fetch.user_agent=\"a b (c)\"'\n"
        "  links.partitions=8)\n"
        "OMP_NUM_THREADS=1 python -m pipeline \"${ARGS[@]}\" \\\n"
        "    fetch.hosts=\"$(cat work/sample/hosts.txt)\"   # a comment\n"
        "make bench\n"
        "```\n"
        "Then `python -m pipeline --cfg job` prints it; `python -m train` names the trainer.\n"
    )
    path = tmp_path / "example.md"
    path.write_text(doc)
    commands, arrays = doc_commands(path), shell_arrays(path)
    assert arrays == {"ARGS": ["workdir=/data/x", 'fetch.user_agent="a b (c)"', "links.partitions=8"]}
    assert [c.where for c in commands] == ["example.md:4", "example.md:8"]
    words = words_of(commands[0], arrays)
    assert words[:3] == ["python", "-m", "pipeline"]
    assert words[-1] == f"fetch.hosts={SUBSTITUTIONS['cat work/sample/hosts.txt']}"
    for command in commands:
        check(*program(words_of(command, arrays)))
