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
#: algorithm packages: tested without a server, so they import no transport and no node (each
#: protocol's own algorithms, in ``fedsilo/protocols/<kind>/``, follow the same rule)
ALGORITHMS = ("ml", "psi", "crypto", "fraudsim")
#: the one algorithm-side module allowed to touch grpc (it builds channel credentials)
GRPC_ALLOWED = {"crypto/tls.py"}
#: light modules a silo, a benchmark or a notebook imports without loading grpc
NO_GRPC_ROOTS = (
    "fedsilo",
    "fedsilo.errors",
    "fedsilo.jobspec",
    "fedsilo.message",
    "fedsilo.settings",
    "fedsilo.wire",
    "fedsilo.leakage",
    "fedsilo.grpc_options",
)


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


#: the server and command-line packages. In a protocol folder (``fedsilo/protocols/<kind>/``) a
#: silo side (``silo.py``) never imports the coordinator, a driver (``driver.py``) never the silo
#: node, and the rest (algorithms, messages, schema, in-process runner) none of these, nor grpc,
#: nor any protocol's silo side or driver
_NODES = ("fedsilo.silo_node", "fedsilo.coordinator", "fedsilo.cli")


def _protocol_parts(part: str) -> tuple[str, ...]:
    """``fedsilo.protocols.<kind>.<part>`` for every protocol folder on disk."""
    return tuple(f"fedsilo.protocols.{kind}.{part}" for kind in _protocol_folders())


def _protocol_folders() -> list[str]:
    root = PACKAGE / "protocols"
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())


def _forbidden(rel: str) -> tuple[str, ...]:
    """What the file at ``rel`` (relative to ``fedsilo/``) must not import."""
    top = rel.split("/", 1)[0]
    if top == "coordinator":
        return ("fedsilo.silo_node", *_protocol_parts("silo"))
    if top == "silo_node":
        return ("fedsilo.coordinator", *_protocol_parts("driver"))
    parts = rel.split("/")
    if top == "protocols" and len(parts) > 2:
        if parts[2:] == ["silo.py"]:
            return ("fedsilo.coordinator", "fedsilo.cli", *_protocol_parts("driver"))
        if parts[2:] == ["driver.py"]:
            return ("fedsilo.silo_node", "fedsilo.cli", *_protocol_parts("silo"))
        return (*_NODES, *GRPC_MODULES, *_protocol_parts("silo"), *_protocol_parts("driver"))
    if top == "protocols":  # the registry itself: the standard library only (checked below)
        return (*_NODES, *GRPC_MODULES)
    if top in ALGORITHMS:
        walls = (*_NODES, *_protocol_parts("silo"), *_protocol_parts("driver"))
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


@pytest.mark.parametrize(
    ("rel", "module", "allowed"),
    [
        ("protocols/lr/silo.py", "fedsilo.silo_node.methods", True),
        ("protocols/lr/silo.py", "fedsilo.protocols.score.silo", True),
        ("protocols/lr/silo.py", "fedsilo.coordinator.jobrun", False),
        ("protocols/lr/silo.py", "fedsilo.protocols.lr.driver", False),
        ("protocols/lr/driver.py", "fedsilo.coordinator.drivers", True),
        ("protocols/lr/driver.py", "fedsilo.protocols.split.driver", True),
        ("protocols/lr/driver.py", "fedsilo.silo_node.predict", False),
        ("protocols/lr/driver.py", "fedsilo.protocols.lr.silo", False),
        ("protocols/lr/vertical.py", "fedsilo.protocols.lr.paillier", True),
        ("protocols/lr/vertical.py", "fedsilo.silo_node", False),
        ("protocols/lr/vertical.py", "fedsilo.coordinator", False),
        ("protocols/lr/vertical.py", "grpc", False),
        ("protocols/lr/schema.py", "fedsilo.protocols.lr.silo", False),
        ("protocols/hxgb/training.py", "fedsilo.protocols.evaluate.silo", False),
        ("ml/tree.py", "fedsilo.protocols.hxgb.driver", False),
        ("coordinator/orchestrator.py", "fedsilo.protocols.psi.silo", False),
        ("silo_node/server.py", "fedsilo.protocols.psi.driver", False),
    ],
)
def test_protocol_folder_rules(rel: str, module: str, allowed: bool) -> None:
    """A protocol's silo.py may import the silo node, its driver.py the coordinator; nothing
    else in its folder imports either (nor grpc, nor a silo side or a driver)."""
    assert _is_under(module, _forbidden(rel)) is not allowed


def test_every_registered_protocol_has_one_folder_with_its_parts() -> None:
    """The registry says which protocol packages exist: one folder per record, none besides."""
    from fedsilo.protocols import PROTOCOLS

    folders = set(_protocol_folders())
    assert folders == {p.kind for p in PROTOCOLS}
    for kind in folders:
        for part in ("schema.py", "silo.py", "driver.py"):
            assert (PACKAGE / "protocols" / kind / part).is_file(), f"{kind}/{part}"


def test_the_registry_imports_the_standard_library_only() -> None:
    path = PACKAGE / "protocols" / "__init__.py"
    assert all(not m.startswith(("fedsilo", "grpc", "numpy")) for _, m in _imports(path))


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
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: list[object] | None = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _protocol_algorithms() -> list[str]:
    """Every module of ``fedsilo/protocols`` but the silo sides and drivers."""
    return [m for m in _modules("protocols") if not m.endswith((".silo", ".driver"))]


def test_algorithms_and_light_modules_load_no_grpc() -> None:
    names = list(NO_GRPC_ROOTS)
    for package in ALGORITHMS:
        names += _modules(package, skip=frozenset(GRPC_ALLOWED))
    names += _protocol_algorithms()
    assert "fedsilo.psi" in names and "fedsilo.protocols.secureboost.active" in names
    assert "fedsilo.protocols.lr.schema" in names
    assert _first_to_load("grpc", names) is None


def test_protocol_algorithms_load_neither_node() -> None:
    names = _protocol_algorithms()
    assert _first_to_load("fedsilo.silo_node", names) is None
    assert _first_to_load("fedsilo.coordinator", names) is None


def test_protocol_silo_sides_load_no_coordinator() -> None:
    names = [m for m in _modules("protocols") if m.endswith(".silo")]
    assert len(names) >= 9
    assert _first_to_load("fedsilo.coordinator", names) is None


def test_protocol_drivers_load_no_silo_node() -> None:
    names = [m for m in _modules("protocols") if m.endswith(".driver")]
    assert len(names) >= 9
    assert _first_to_load("fedsilo.silo_node", names) is None


def test_coordinator_loads_no_silo_node() -> None:
    """Including every driver, which the coordinator's registry loads."""
    from fedsilo.protocols import PROTOCOLS

    drivers = [f"fedsilo.protocols.{p.kind}.driver" for p in PROTOCOLS]
    assert _first_to_load("fedsilo.silo_node", [*_modules("coordinator"), *drivers]) is None


def test_silo_node_loads_no_coordinator() -> None:
    """Including every protocol's silo side, which the silo's step registry loads."""
    from fedsilo.protocols import PROTOCOLS

    silos = [f"fedsilo.protocols.{p.kind}.silo" for p in PROTOCOLS]
    assert _first_to_load("fedsilo.coordinator", [*_modules("silo_node"), *silos]) is None
