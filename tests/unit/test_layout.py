"""Package layout: the runtime (`pipeline/`) imports none of the packages around it, the `riskstream`
command still offers theirs through its entry points, and no two `pipeline` modules import each other.

Imports are read from the source with `ast`, so a lazy import inside a function counts as much as one at the
top of a module.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import EntryPoint, distribution
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command

from pipeline.cli import COMMAND_GROUP, app, command_entry_points, plug_in

ROOT = Path(__file__).resolve().parents[2]
#: Packages beside the runtime that depend on it, never the other way round.
OUTSIDE_RUNTIME = frozenset({"api", "training", "bench", "examples"})
#: Every command `riskstream` offers (README, Makefile, scripts/, Dockerfile, helm and compose use them).
COMMANDS = {
    "kafka", "topics", "worker", "gateway", "db", "generate", "features", "train", "models", "sink",
    "produce", "replay", "tail", "bench", "evaluate", "drift", "backtest", "rules", "audit",
}  # fmt: skip
#: The commands that live outside pipeline/ and plug in through the entry points.
PLUGGED_IN = {
    "gateway": "api", "generate": "training", "train": "training", "bench": "bench", "evaluate": "training",
    "backtest": "training",
}  # fmt: skip


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, wherever it is: module level, in a function,
    under `if TYPE_CHECKING:`, or `importlib.import_module("...")` / `__import__("...")` with a literal name."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            else:
                yield node.lineno, node.module or ""
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def test_imported_modules_sees_lazy_conditional_relative_and_dynamic_imports(tmp_path: Path) -> None:
    """The scanner itself: a check that misses an import form would pass on a runtime that breaks the rule."""
    module = tmp_path / "pipeline" / "kafka" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import importlib\n"
        "if TYPE_CHECKING:\n    from api.main import create_app\n"
        "def f() -> None:\n    import training.train\n    importlib.import_module('bench.run')\n"
        "from ..settings import Settings\nfrom . import admin\n"
    )
    found = {name for _, name in imported_modules(module, tmp_path)}
    assert {"api.main", "training.train", "bench.run", "pipeline.settings", "pipeline.kafka"} <= found


def test_the_runtime_imports_none_of_the_packages_around_it() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        for line, name in imported_modules(path)
        if name.split(".")[0] in OUTSIDE_RUNTIME
    ]
    assert not offending, (
        "pipeline/ must not import " + ", ".join(sorted(OUTSIDE_RUNTIME)) + ":\n" + "\n".join(offending)
    )


def test_the_installed_command_entry_points_are_the_declared_ones_and_each_loads() -> None:
    """With PYTHONPATH pointing at a checkout, entry points still come from the installed metadata: a stale
    install (pyproject.toml changed since `pip install -e .`) would silently lose commands, so say so here."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][COMMAND_GROUP]
    installed = {ep.name: ep.value for ep in distribution("riskstream").entry_points.select(group=COMMAND_GROUP)}
    assert installed == declared, "installed entry points differ from pyproject.toml: run `pip install -e .`"
    found = command_entry_points()
    assert [ep.name for ep in found] == sorted(declared)
    for ep in found:
        register = ep.load()
        probe = typer.Typer()
        register(probe)
        probe.command("placeholder")(lambda: None)  # typer makes a lone command the whole app otherwise
        assert ep.name in get_command(probe).commands, f"{ep.value} did not register {ep.name!r}"


def test_the_cli_offers_every_command_and_takes_the_others_from_their_own_packages() -> None:
    commands = get_command(app).commands
    assert set(commands) == COMMANDS

    def owner(command: Any) -> str:  # a group (kafka, db, models) has no callback: its commands tell
        callback = command.callback or next(iter(command.commands.values())).callback
        return str(callback.__module__).split(".")[0]

    owners = {name: owner(command) for name, command in commands.items()}
    assert {name: owner for name, owner in owners.items() if owner != "pipeline"} == PLUGGED_IN


def test_a_plug_in_that_fails_to_load_is_reported_and_the_others_still_register(
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = typer.Typer()
    plug_in(
        target,
        [
            EntryPoint("broken", "pipeline.no_such_module:register", COMMAND_GROUP),
            EntryPoint("db", "pipeline.commands.db:register", COMMAND_GROUP),
        ],
    )
    target.command("placeholder")(lambda: None)
    assert "db" in get_command(target).commands
    err = capsys.readouterr().err
    assert "command 'broken' (pipeline.no_such_module:register) not loaded: ModuleNotFoundError" in err


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("gateway", {"--host", "--port"}),
        ("generate", {"--out", "--transactions", "--days", "--seed"}),
        ("train", {"--data", "--from-db", "--transactions", "--policy", "--activate", "--models-dir"}),
        ("bench", {"--quick", "--section", "--reps", "--profile", "--out"}),
    ],
)
def test_a_plugged_in_command_keeps_its_options(command: str, options: set[str]) -> None:
    params = get_command(app).commands[command].params
    assert options <= {opt for param in params for opt in param.opts}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path, root: Path = ROOT) -> set[str]:
    """Modules (and `from` names, which may be submodules) a file imports when it runs: at module level and
    inside functions, since a lazy import is still a dependency and the usual way to hide a cycle; not
    those under `if TYPE_CHECKING:`, which never run."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text(), filename=str(path)).body)
    found.discard(module)
    return found


def import_graph(package_dir: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the same package tree it imports at run time. Importing `a.b.c` also runs
    `a/__init__.py` and `a/b/__init__.py`; those implicit edges are left out, or every package would be a cycle."""
    files = {_module_name(path, root): path for path in package_dir.rglob("*.py")}
    return {name: runtime_imports(path, root) & files.keys() for name, path in files.items()}


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every group of modules that reach each other through imports (strongly connected, Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = [stack.pop()]
            while group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(cycles)


def test_the_cycle_finder_counts_lazy_imports_and_not_type_checking_ones(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "from pkg.a import A\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\nA = 1\n",
        "pkg/b.py": "def f() -> None:\n    from pkg import a\n",
        "pkg/c.py": "from . import d\n",
        "pkg/d.py": "def g() -> None:\n    import pkg.c\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path / "pkg", tmp_path)
    assert graph["pkg.a"] == set() and graph["pkg.b"] == {"pkg", "pkg.a"}
    assert import_cycles(graph) == [["pkg.c", "pkg.d"]]


def test_no_pipeline_modules_import_each_other() -> None:
    cycles = import_cycles(import_graph(ROOT / "pipeline"))
    assert not cycles, "import cycles among pipeline modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)
