"""Imports point one way: no module of the project reaches itself again through its imports, and
the layers (docs/architecture.md) are only imported downwards:

    pipeline/          train/        the two apps: neither imports the other
        |              /    |
        |         model/    |        the network, its weights, Hugging Face, export, FLOPs, memory
        |        /          |
        model/base/                  shared base: config schema, tokenizer, token shards, atomic
                                     writes, the test gate; imports nothing else of the project

Function-level imports count (a cycle or a layer breach hidden in a function is still one); imports
under ``if TYPE_CHECKING:`` do not, since they never run.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("pipeline", "model", "train")

# Each module belongs to the layer of its longest matching prefix.
LAYERS = {"model.base": "base", "model": "model", "pipeline": "pipeline", "train": "train"}
# What each layer may import besides itself.
MAY_IMPORT = {"base": set(), "model": {"base"}, "pipeline": {"base"}, "train": {"model", "base"}}


def layer_of(module: str, layers: dict[str, str]) -> str:
    prefixes = [p for p in layers if module == p or module.startswith(p + ".")]
    return layers[max(prefixes, key=len)]


def layer_breaches(graph: grimp.ImportGraph, layers: dict[str, str],
                   may_import: dict[str, set[str]]) -> list[str]:
    """Every import from a module into a layer its own layer may not import, as "a -> b"."""
    breaches = []
    for importer in sorted(graph.modules):
        here = layer_of(importer, layers)
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            there = layer_of(imported, layers)
            if there != here and there not in may_import[here]:
                breaches.append(f"{importer} ({here}) -> {imported} ({there})")
    return breaches


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    members = set(cycle)
    arrows = [f"{a} -> {b}" for a in cycle for b in sorted(graph.find_modules_directly_imported_by(a))
              if b in members]
    return f"{len(cycle)} modules: " + "; ".join(arrows)


def test_no_module_of_the_project_is_in_an_import_cycle():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    assert len(graph.modules) > 50, "the whole project was read"
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(describe(graph, c) for c in cycles)


def test_every_layer_imports_only_the_layers_below_it():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    assert {layer_of(m, LAYERS) for m in graph.modules} == set(MAY_IMPORT), "every layer has modules"
    breaches = layer_breaches(graph, LAYERS, MAY_IMPORT)
    assert not breaches, "imports against the layers (docs/architecture.md):\n" + "\n".join(breaches)


def test_the_layer_check_finds_an_import_upwards_in_a_function(tmp_path, monkeypatch: pytest.MonkeyPatch):
    sources = {"lower/core.py": "def late():\n    import upper.app\n", "upper/app.py": "import lower.core\n"}
    for name, source in sources.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).parent.joinpath("__init__.py").write_text("")
        (tmp_path / name).write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("lower", "upper", exclude_type_checking_imports=True, cache_dir=None)
    breaches = layer_breaches(graph, {"lower": "base", "upper": "app"}, {"base": set(), "app": {"base"}})
    assert breaches == ["lower.core (base) -> upper.app (app)"]


def test_the_check_finds_a_cycle_through_a_function_level_import(tmp_path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "circle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circle import b\n")
    (package / "b.py").write_text("def late():\n    from circle import c\n")
    (package / "c.py").write_text("import circle.a\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    import circle.e\n")
    (package / "e.py").write_text("import circle.d\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circle", exclude_type_checking_imports=True, cache_dir=None)
    assert import_cycles(graph) == [["circle.a", "circle.b", "circle.c"]]
