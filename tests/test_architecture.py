"""The tree is the architecture: imports run one way, errors have one root, modules stay small."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import aaex_agents
import discovery
import marketplace
from aaex_agents.errors import AaexError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("aaex_agents", "discovery", "marketplace")
LAYER = {"aaex_agents": 0, "discovery": 1, "marketplace": 2}
ROOM = {"contracts": 0, "consensus": 1, "trade": 2, "node": 3, "cli": 4}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, *, typing: bool = False) -> set[str]:
    """Project modules that `name` imports at run time; with `typing`, for type hints too."""
    tree = ast.parse(path.read_text())
    typing_only = set() if typing else {
        id(n) for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in out if m.split(".")[0] in LAYER}


def _rank(module: str) -> tuple[int, int]:
    parts = module.split(".")
    room = ROOM.get(parts[1], -1) if parts[0] == "marketplace" and len(parts) > 1 else -1
    return LAYER[parts[0]], room


def test_imports_point_down_the_layers_and_rooms() -> None:
    upward = []
    for name, path in _modules().items():
        if name in PACKAGES:  # a package's __init__ re-exports what is below it
            continue
        for target in _imports(name, path):
            mine, theirs = _rank(name), _rank(target)
            if theirs[0] > mine[0] or (theirs[0] == mine[0] == 2 and theirs[1] > mine[1] >= 0):
                upward.append(f"{name} imports {target}")
    assert upward == []


def _cycles(packages: tuple[str, ...], *, typing: bool) -> list[list[str]]:
    """The import cycles among the modules of `packages`."""
    modules = {n: p for n, p in _modules().items() if n.split(".")[0] in packages}
    graph = {name: {t for t in _imports(name, path, typing=typing) if t in modules and t != name}
             for name, path in modules.items()}
    # a package's own __init__ is where its submodules are re-exported: skip that edge
    graph = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    return cycles


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycles(PACKAGES, typing=False) == []


def test_the_marketplace_has_no_cycle_even_in_type_hints() -> None:
    """A module that needs another's type only declares what it reads (a Protocol)."""
    assert _cycles(("aaex_agents", "discovery", "marketplace"), typing=True) == []


def test_a_node_is_frozen() -> None:
    """`Node` is built whole once everything listens: assigning to it raises."""
    import dataclasses

    from marketplace.node.node import Node

    assert dataclasses.is_dataclass(Node)
    assert Node.__dataclass_params__.frozen  # type: ignore[attr-defined]


def _mutations_of(tree: ast.AST, names: set[str]) -> list[ast.AST]:
    """Statements that assign to, or append to, `node.<name>` for one of `names`."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
        calls = ([node.func.value] if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute)
                 and node.func.attr in ("append", "extend", "update", "add") else [])
        if any(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
               and t.value.id == "node" and t.attr in names for t in [*targets, *calls]):
            found.append(node)
    return found


def test_nothing_assigns_to_a_node_after_construction() -> None:
    from marketplace.node.node import Node

    names = set(Node.__dataclass_fields__)
    assigned = [f"{name}: {ast.unparse(statement)[:60]}"
                for name, path in _modules().items()
                for statement in _mutations_of(ast.parse(path.read_text()), names)]
    assert assigned == []


def test_no_function_of_the_node_passes_60_lines() -> None:
    long = {f"{path.name}:{fn.name}": fn.end_lineno - fn.lineno + 1  # type: ignore[operator]
            for path in (ROOT / "marketplace" / "node").glob("*.py")
            for fn in ast.walk(ast.parse(path.read_text()))
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
            and fn.end_lineno - fn.lineno + 1 > 60}  # type: ignore[operator]
    assert long == {}


def test_no_module_passes_600_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}


def test_every_project_exception_has_the_one_root() -> None:
    strays = []
    for package in (aaex_agents, discovery, marketplace):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(("gguf_convert", "llm.vllm", "__main__")):
                continue  # optional extras, or a script that runs on import; no exceptions
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                # private control-flow signals (`_Cancelled`) never leave their module
                if (cls.__module__ == module.__name__ and issubclass(cls, BaseException)
                        and not cls.__name__.startswith("_") and not issubclass(cls, AaexError)):
                    strays.append(f"{cls.__module__}.{cls.__qualname__}")
    assert strays == []


@pytest.mark.parametrize("package", [discovery, marketplace])
def test_packages_re_export_their_public_names(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert names and len(names) == len(set(names))
    for name in names:
        assert getattr(package, name) is not None, name


MONEY_WORDS = ("price", "amount", "budget", "penalty", "cost", "fee", "cap", "stake",
               "release", "refund", "available", "held", "receivable", "payable", "net",
               "spent", "to_seller", "to_buyer", "per_1k")


def _mentions_float(annotation: object) -> bool:
    import typing
    if annotation is float:
        return True
    return any(_mentions_float(arg) for arg in typing.get_args(annotation))


def test_no_model_carries_money_as_a_float() -> None:
    """One money type: every pydantic model's money field is `Credits`, never a float."""
    from pydantic import BaseModel

    for name in _modules():
        if not name.endswith("__main__"):
            importlib.import_module(name)
    seen: set[type] = set()
    pending: list[type] = [BaseModel]
    floats = []
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                pending.append(sub)
    for model in seen:
        if model.__module__.split(".")[0] not in ("aaex_agents", "discovery", "marketplace"):
            continue
        for field, info in model.model_fields.items():
            money = any(word in field for word in MONEY_WORDS) and "weight" not in field
            if money and _mentions_float(info.annotation):
                floats.append(f"{model.__module__}.{model.__qualname__}.{field}")
    assert floats == []


def test_the_money_check_finds_a_float_price() -> None:
    """The check above can fail: a model with `price: float` is what it looks for."""
    from pydantic import BaseModel

    class Leaky(BaseModel):
        price: float | None = None

    assert _mentions_float(Leaky.model_fields["price"].annotation)


def test_only_the_runtime_reaches_its_dispatch() -> None:
    """Bridges deliver through `Runtime.deliver_local`, never the private `_dispatch`."""
    callers = sorted(name for name, path in _modules().items()
                     if name != "aaex_agents.runtime" and "_dispatch(" in path.read_text())
    assert callers == []


def test_no_background_task_is_created_bare() -> None:
    """Every task of the SDK and the node belongs to a task group that cancels it on exit."""
    bare = sorted(name for name, path in _modules().items()
                  if (name.startswith("aaex_agents") or name == "marketplace.node.node")
                  and any(call in path.read_text()
                          for call in ("asyncio.create_task(", "ensure_future(")))
    assert bare == []
