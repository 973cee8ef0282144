"""The package's imports point one way: no module reaches (directly or through others) back to
itself, counting imports inside functions too (a lazy import is still a dependency), and no
module imports from a layer above its own in docs/architecture.md's table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asrlab"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> asrlab modules it imports (`from a.b import c` counts a.b.c when c is a module,
    else a.b)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("asrlab") else None
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "asrlab.models" in graph["asrlab.checkpoint"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("low, high", [("asrlab.config", "asrlab.models"),
                                       ("asrlab.decode.beam", "asrlab.words"),
                                       ("asrlab.data.text", "asrlab.synth")])
def test_lower_layers_do_not_import_higher_ones(low, high):
    graph = import_graph()
    seen, todo = set(), [low]
    while todo:  # everything `low` imports, directly or not
        for n in graph[todo.pop()] - seen:
            seen.add(n)
            todo.append(n)
    assert not any(m == high or m.startswith(high + ".") for m in seen), (low, high)


def layer_table() -> dict[str, int]:
    """docs/architecture.md's layer table: module -> layer number. A row is
    `| N. name | `mod`, `pkg/mod`, `pkg/*` | ... |`; `pkg/*` stands for the package's modules
    that no other row names."""
    import re

    text = ARCHITECTURE.read_text()
    table = text[text.index("## Layers, bottom to top"):]
    layers: dict[str, int] = {}
    for line in table.splitlines():
        m = re.match(r"\| (\d+)\. [^|]+\| ([^|]+)\|", line)
        if m:
            for name in re.findall(r"`([^`]+)`", m.group(2)):
                layers["asrlab" if name == "asrlab" else
                       "asrlab." + name.replace("/", ".")] = int(m.group(1))
    return layers


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    if module in layers:
        return layers[module]
    package = module.rpartition(".")[0]
    return layers.get(package + ".*")


def test_every_module_has_one_layer_in_the_architecture_table():
    layers = layer_table()
    assert len(layers) > 60
    missing = sorted(m for m in modules() if layer_of(m, layers) is None)
    assert not missing, f"modules missing from docs/architecture.md's layer table: {missing}"
    stale = sorted(m for m in layers if not m.endswith(".*") and m not in modules())
    assert not stale, f"the layer table names modules that do not exist: {stale}"


def test_no_import_points_up_the_layer_table():
    layers, graph = layer_table(), import_graph()
    up = sorted(f"{m} (layer {layer_of(m, layers)}) imports {n} (layer {layer_of(n, layers)})"
                for m, targets in graph.items() for n in targets
                if layer_of(n, layers) > layer_of(m, layers))
    assert not up, "imports up the layer table:\n  " + "\n  ".join(up)


def test_the_layer_check_finds_an_import_up_the_table():
    layers = {"asrlab.low": 1, "asrlab.high": 2, "asrlab.cmd.*": 3}
    graph = {"asrlab.low": {"asrlab.high"}, "asrlab.high": set(), "asrlab.cmd.x": {"asrlab.low"}}
    up = [(m, n) for m, t in graph.items() for n in t if layer_of(n, layers) > layer_of(m, layers)]
    assert up == [("asrlab.low", "asrlab.high")]


def test_train_py_holds_the_loop_and_no_long_function():
    """docs/architecture.md: train.py is the loop (set-up, fine-tuning, callbacks and the budget
    forecast live elsewhere); under 450 lines and no function over 40, so it stays readable."""
    import ast

    source = (PACKAGE / "train.py").read_text()
    assert len(source.splitlines()) < 450, "train.py grew past 450 lines: move what is not the loop"
    long = [(f.name, f.end_lineno - f.lineno + 1) for f in ast.walk(ast.parse(source))
            if isinstance(f, ast.FunctionDef) and f.end_lineno - f.lineno + 1 > 40]
    assert not long, f"functions over 40 lines in train.py: {long}"
