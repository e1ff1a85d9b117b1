"""Which package may import which: the layers of ARCHITECTURE.md, checked from the source.

Domain packages form a stack, lowest first (``LAYERS``). A module imports its own package,
the shell's infrastructure (``huifang.db``, ``huifang.settings``, …) and packages *below*
its own. Route modules (those that make an ``APIRouter``) are the edge: like the shell,
they may call the services of any domain, but nothing imports them except ``huifang.app``
(and the route modules of their own package, which share its page helpers).
A new import that goes upward, or into a route module, fails here with its file and line.
Imports under ``if TYPE_CHECKING:`` are names for annotations only and are not counted.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a package may import only the packages before it.
LAYERS = (
    "access",
    "tenancy",
    "customers",
    "compliance",
    "visits",
    "accounts",
    "alerts",
    "messaging",
    "bookings",
    "media",
    "reports",
    "campaigns",
    "privacy",
    "today",
    "office",
    "staff",
)
RANK = {name: rank for rank, name in enumerate(LAYERS)}
# The shell's modules that compose the domains; domain code never imports them.
SHELL_COMPOSERS = (
    "huifang.app",
    "huifang.asgi",
    "huifang.cli",
    "huifang.demo",
    "huifang.models",
    "huifang.migrate",
)


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. "reports.service"
    path: Path
    line: int
    target: str  # the module imported, e.g. "bookings.links"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in (*LAYERS, "huifang"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``: names for annotations only."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }


def _imports(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    annotations_only = _type_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            found += [Import(name, path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from a import b" may name a module a.b or a name in a: both are checked.
            found.append(Import(name, path, node.lineno, node.module))
            found += [
                Import(name, path, node.lineno, f"{node.module}.{alias.name}")
                for alias in node.names
                if f"{node.module}.{alias.name}" in SOURCES
            ]
    return found


IMPORTS = [found for name, path in SOURCES.items() for found in _imports(name, path)]


def _is_route_module(name: str) -> bool:
    return "APIRouter(" in SOURCES[name].read_text(encoding="utf-8")


ROUTE_MODULES = {name for name in SOURCES if _is_route_module(name)}


def _where(found: Import) -> str:
    return f"{found.path.relative_to(ROOT)}:{found.line} imports {found.target}"


def test_the_layers_cover_every_domain_package() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"huifang", "tests", "bench"}
    assert packages == set(LAYERS), "add the new package to LAYERS (and ARCHITECTURE.md)"


def test_domain_packages_import_only_downward() -> None:
    upward = []
    for found in IMPORTS:
        own, other = found.importer.split(".")[0], found.target.split(".")[0]
        if own not in RANK or other not in RANK or own == other:
            continue
        if found.importer in ROUTE_MODULES:
            continue  # the edge: checked by test_nothing_imports_a_route_module
        if RANK[other] > RANK[own]:
            upward.append(_where(found))
    assert upward == [], (
        "an import goes up the layers (" + " < ".join(LAYERS) + "):\n" + "\n".join(upward)
    )


def test_no_cycle_between_domain_packages_outside_the_routes() -> None:
    edges = {
        (f.importer.split(".")[0], f.target.split(".")[0])
        for f in IMPORTS
        if f.importer not in ROUTE_MODULES
    }
    edges = {(a, b) for a, b in edges if a in RANK and b in RANK and a != b}
    cycles = sorted(f"{a} <-> {b}" for a, b in edges if (b, a) in edges and a < b)
    assert cycles == []


def _page_helper_of_its_own_package(found: Import) -> bool:
    """Route modules of one package may share its page helpers (``office.web``)."""
    return (
        found.importer in ROUTE_MODULES
        and found.importer.split(".")[0] == found.target.split(".")[0]
    )


def test_nothing_imports_a_route_module_but_the_app() -> None:
    into_routes = [
        _where(found)
        for found in IMPORTS
        if found.target in ROUTE_MODULES
        and found.importer != "huifang.app"
        and found.target.split(".")[0] in RANK
        and not _page_helper_of_its_own_package(found)
    ]
    assert into_routes == []


def test_domains_do_not_import_the_shell_that_composes_them() -> None:
    into_shell = [
        _where(found)
        for found in IMPORTS
        if found.importer.split(".")[0] in RANK
        and any(found.target == m or found.target.startswith(m + ".") for m in SHELL_COMPOSERS)
    ]
    assert into_shell == []


@pytest.mark.parametrize(
    "rule",
    [test_domain_packages_import_only_downward, test_nothing_imports_a_route_module_but_the_app],
)
def test_the_rules_catch_a_bad_import(rule, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks are not vacuous: a planted upward import and a planted import of a route
    module are both reported."""
    planted = [
        Import("tenancy.service", ROOT / "tenancy" / "service.py", 1, "campaigns.lifecycle"),
        Import("reports.service", ROOT / "reports" / "service.py", 1, "reports.api"),
    ]
    monkeypatch.setattr(__import__(__name__, fromlist=["IMPORTS"]), "IMPORTS", IMPORTS + planted)
    with pytest.raises(AssertionError):
        rule()
