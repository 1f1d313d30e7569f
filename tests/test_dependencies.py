"""The runtime dependencies are what the proxy imports, and nothing the demo or tests need.

``pip install zipproxy`` (and the container image, which installs the same wheel) gets
``[project] dependencies``; the demo's synchronous tooling is the ``demo`` extra, ``zipproxy
fetch``'s progress bar the ``fetch`` extra. Read from the source with :mod:`ast`: every module
of the package, minus zipproxy/demo/, against pyproject.toml.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "zipproxy"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement (PEP 503)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _imported(paths: list[Path]) -> set[str]:
    """The distributions that the modules at ``paths`` import (top-level names, stdlib and
    zipproxy itself left out)."""
    modules: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    owners = packages_distributions()
    modules -= set(sys.stdlib_module_names) | {"zipproxy"}
    missing = {m for m in modules if m not in owners}
    assert not missing, f"imported but not installed: {sorted(missing)}"
    return {_name(dist) for module in modules for dist in owners[module]}


def _modules(*, under: str | None = None, outside: tuple[str, ...] = ()) -> list[Path]:
    root = PACKAGE / under if under else PACKAGE
    return [p for p in root.rglob("*.py")
            if not any(p.is_relative_to(PACKAGE / o) for o in outside)]


def _provided(declared: set[str]) -> set[str]:
    """``declared`` and what they bring (aiohttp brings yarl and multidict, whose types are
    aiohttp's API)."""
    return declared | {_name(r) for dist in declared for r in requires(dist) or []
                       if "extra ==" not in r}


def test_every_runtime_dependency_is_imported_by_the_proxy() -> None:
    declared = {_name(r) for r in PROJECT["dependencies"]}
    used = _imported(_modules(outside=("demo", "fetch")))
    assert declared - used == set(), "declared but never imported by the proxy"
    assert used - _provided(declared) == set(), "imported by the proxy, not a dependency"


def test_demo_and_fetch_libraries_stay_in_their_extras() -> None:
    extras = PROJECT["optional-dependencies"]
    runtime = _provided({_name(r) for r in PROJECT["dependencies"]})
    demo = {_name(r) for r in extras["demo"]}
    fetch = {_name(r) for r in extras["fetch"]}
    assert demo == {"requests", "requests-toolbelt"} and fetch == {"rich"}
    assert not (demo | fetch) & runtime
    assert not (demo | fetch) & _imported(_modules(outside=("demo", "fetch")))
    assert _imported(_modules(under="demo")) - runtime == demo
    assert _imported(_modules(under="fetch")) - runtime <= fetch
    # The test extra brings both, so scripts/setup.sh --test installs everything.
    assert any(_name(r) == "zipproxy" and "demo" in r and "fetch" in r for r in extras["test"])
