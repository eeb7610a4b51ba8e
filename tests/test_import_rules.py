"""The walls between fedsilo's layers, checked two ways (rules: docs/internals.md, "Import rules").

An ``ast`` scan of every ``import`` statement (including ones inside functions) catches a direct
breach with the file and line; importing the modules in a fresh interpreter catches one that
comes through a chain of imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "fedsilo"

#: modules that talk gRPC; an algorithm may not import them, even indirectly
GRPC_MODULES = ("grpc", "grpc_health", "fedsilo.grpc_errors", "fedsilo.protos.fedsilo_pb2_grpc")
#: algorithm packages: tested without a server, so they import no transport and no node
ALGORITHMS = ("ml", "psi", "crypto")
#: the one algorithm-side module allowed to touch grpc (it builds channel credentials)
GRPC_ALLOWED = {"crypto/tls.py"}
#: light modules a silo, a benchmark or a notebook imports without loading grpc
NO_GRPC_ROOTS = ("fedsilo", "fedsilo.errors", "fedsilo.jobspec", "fedsilo.message",
                 "fedsilo.settings", "fedsilo.wire", "fedsilo.leakage", "fedsilo.grpc_options")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute module name ``path`` imports, with its line (``from a import b`` names
    ``a`` and ``a.b``, since ``b`` may be a submodule)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _is_under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def _forbidden(rel: str) -> tuple[str, ...]:
    """What the file at ``rel`` (relative to ``fedsilo/``) must not import."""
    top = rel.split("/", 1)[0]
    if top == "coordinator":
        return ("fedsilo.silo_node",)
    if top == "silo_node":
        return ("fedsilo.coordinator",)
    if top in ALGORITHMS:
        walls = ("fedsilo.silo_node", "fedsilo.coordinator", "fedsilo.cli")
        return walls if rel in GRPC_ALLOWED else walls + GRPC_MODULES
    return ()


def _breaches() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        forbidden = _forbidden(rel)
        for line, module in _imports(path) if forbidden else ():
            if _is_under(module, forbidden):
                found.append(f"fedsilo/{rel}:{line} imports {module}")
    return sorted(set(found))


def test_import_statements_respect_the_walls() -> None:
    assert _breaches() == []


def test_the_scan_sees_a_breach(tmp_path: Path) -> None:
    """The scan is not vacuous: an import inside a function is found, with its line."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from fedsilo.silo_node.server import build_server\n")
    found = [m for _, m in _imports(probe)]
    assert "fedsilo.silo_node.server" in found
    assert _is_under("fedsilo.silo_node.server", _forbidden("coordinator/x.py"))
    assert _is_under("grpc", _forbidden("ml/x.py"))
    assert not _is_under("grpc", _forbidden("crypto/tls.py"))


def _modules(package: str, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Module names under ``fedsilo/<package>``, from the files (nothing is imported here)."""
    names = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if path.relative_to(PACKAGE).as_posix() in skip:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


_PROBE = """
import importlib, json, sys
watch, names = sys.argv[1], sys.argv[2:]
for name in names:
    importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m == watch or m.startswith(watch + "."))
    if loaded:
        print(json.dumps([name, loaded[:3]]))
        break
else:
    print(json.dumps(None))
"""


def _first_to_load(watch: str, names: list[str]) -> list[object] | None:
    """In a fresh interpreter, the first of ``names`` whose import loads ``watch``, or None."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, watch, *names],
        capture_output=True, text=True, timeout=300, check=True,
    )
    result: list[object] | None = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_algorithms_and_light_modules_load_no_grpc() -> None:
    names = list(NO_GRPC_ROOTS)
    for package in ALGORITHMS:
        names += _modules(package, skip=frozenset(GRPC_ALLOWED))
    assert "fedsilo.psi" in names and "fedsilo.ml.secureboost" in names
    assert _first_to_load("grpc", names) is None


def test_coordinator_loads_no_silo_node() -> None:
    assert _first_to_load("fedsilo.silo_node", _modules("coordinator")) is None


def test_silo_node_loads_no_coordinator() -> None:
    assert _first_to_load("fedsilo.coordinator", _modules("silo_node")) is None
