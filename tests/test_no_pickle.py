"""Nothing executable is ever deserialized: an AST scan of our code, and hostile pickles.

The scan reads every ``.py`` file of ``fedsilo/``, ``bench/`` and ``scripts/`` and refuses:

- imports of modules whose loading runs code: ``pickle``, ``cPickle``, ``_pickle``, ``dill``,
  ``cloudpickle``, ``marshal``, ``shelve``, ``joblib``;
- calls of ``yaml.load`` / ``yaml.unsafe_load`` / ``yaml.full_load`` (and their ``_all``
  forms), ``torch.load``, ``pandas.read_pickle``, and the builtins ``eval`` / ``exec``;
- ``numpy.load`` unless the call says ``allow_pickle=False`` literally.

Names are resolved through import aliases (``import numpy as np``, ``from numpy import load``),
so renaming an import does not hide a call. The scan is tested on synthetic files, so it can
fail; then a pickle whose unpickling would run code is fed to the decoder and to a live silo.
"""

from __future__ import annotations

import ast
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from bundled_data import data_file
from support import Consortium, SiloSpec

from fedsilo.errors import ProtocolError
from fedsilo.message import decode
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("fedsilo", "bench", "scripts")
FORBIDDEN_MODULES = frozenset(
    {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
)
FORBIDDEN_CALLS = frozenset(
    {
        "yaml.load",
        "yaml.unsafe_load",
        "yaml.full_load",
        "yaml.load_all",
        "yaml.unsafe_load_all",
        "yaml.full_load_all",
        "torch.load",
        "pandas.read_pickle",
        "eval",
        "exec",
        "builtins.eval",
        "builtins.exec",
    }
)


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, for every import in the file (any scope)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(func: ast.expr, aliases: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load`` through the file's aliases; None for computed callees."""
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.insert(0, func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    return ".".join([aliases.get(func.id, func.id), *parts])


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module]
    return []


def _numpy_load_is_safe(call: ast.Call) -> bool:
    return any(
        kw.arg == "allow_pickle" and isinstance(kw.value, ast.Constant) and kw.value.value is False
        for kw in call.keywords
    )


def scan_source(source: str, path: Path) -> list[Finding]:
    """Every forbidden import or call in one file's source."""
    tree = ast.parse(source, filename=str(path))
    aliases = _aliases(tree)
    found: list[Finding] = []
    for node in ast.walk(tree):
        for module in _imported_modules(node):
            if module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(Finding(path, node.lineno, f"imports {module}"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name in FORBIDDEN_CALLS:
            found.append(Finding(path, node.lineno, f"calls {name}"))
        elif name == "numpy.load" and not _numpy_load_is_safe(node):
            found.append(Finding(path, node.lineno, "calls numpy.load without allow_pickle=False"))
    return found


def python_files() -> Iterator[Path]:
    """Our files, not a reference library's environment (``bench/.venv-openmined``)."""
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if not any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                yield path


# --- the scan over our code ----------------------------------------------------------------------


def test_scan_covers_the_code_base() -> None:
    files = list(python_files())
    assert len(files) > 30
    assert ROOT / "fedsilo" / "message.py" in files


def test_no_executable_deserialization_in_our_code() -> None:
    findings = [f for p in python_files() for f in scan_source(p.read_text(), p.relative_to(ROOT))]
    assert not findings, "\n".join(map(str, findings))


# --- the scan itself can fail --------------------------------------------------------------------

BAD_SOURCES = {
    "import pickle": "import pickle\n",
    "import as": "import cloudpickle as cp\n",
    "from import": "from dill import loads\n",
    "submodule": "import joblib.numpy_pickle\n",
    "marshal": "from marshal import loads as l\n",
    "shelve in a function": "def f():\n    import shelve\n",
    "yaml.load": "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)\n",
    "yaml.unsafe_load": "import yaml as y\ny.unsafe_load(s)\n",
    "from yaml import load": "from yaml import load\nload(s)\n",
    "np.load allow_pickle=True": "import numpy as np\nnp.load(f, allow_pickle=True)\n",
    "np.load bare": "import numpy as np\nnp.load(f)\n",
    "np.load computed flag": "import numpy\nnumpy.load(f, allow_pickle=flag)\n",
    "from numpy import load": "from numpy import load\nload(f)\n",
    "eval": "eval('1 + 1')\n",
    "exec": "exec(code)\n",
    "torch.load": "import torch\ntorch.load(f)\n",
    "read_pickle": "import pandas as pd\npd.read_pickle(f)\n",
}


@pytest.mark.parametrize("source", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
def test_scan_finds_each_forbidden_pattern(tmp_path: Path, source: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    assert scan_source(path.read_text(), path), f"scan missed: {source!r}"


def test_scan_passes_safe_equivalents(tmp_path: Path) -> None:
    path = tmp_path / "good.py"
    path.write_text(
        "import json\nimport numpy as np\nimport yaml\n"
        "np.load(f, allow_pickle=False)\nyaml.safe_load(s)\njson.loads(s)\n"
        "def evaluate(x):\n    return x\nevaluate(1)\nmodel.eval()\n"
    )
    assert scan_source(path.read_text(), path) == []


# --- hostile pickles -----------------------------------------------------------------------------


class _Trap:
    """Unpickling this touches ``marker``: proof that someone ran code from the bytes."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def trap_payloads(marker: Path) -> list[bytes]:
    trap = pickle.dumps(_Trap(marker), protocol=pickle.HIGHEST_PROTOCOL)
    # also behind our magic, where the decoder would look for a header
    return [trap, b"FSM1" + len(trap).to_bytes(4, "big") + trap, pickle.dumps(_Trap(marker), 0)]


def test_decode_refuses_pickles_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for payload in trap_payloads(marker):
        with pytest.raises(ProtocolError):
            decode(payload)
    assert not marker.exists()


@pytest.fixture(scope="module")
def silo_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.SiloServiceStub]:
    consortium = Consortium(tmp_path_factory.mktemp("nopickle"))
    features = [f"x{i}" for i in range(10)]
    consortium.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), features, label="y"))
    node = consortium.start("bank")
    channel = grpc.insecure_channel(node.address)
    yield pb_grpc.SiloServiceStub(channel)
    channel.close()
    consortium.stop_all()


def test_live_step_refuses_pickles_without_running_them(
    silo_stub: pb_grpc.SiloServiceStub, tmp_path: Path
) -> None:
    spec = (
        '{"parties": {"bank": {"role": "active", "dataset": "main"}}, "steps": [{"kind": "noop"}]}'
    )
    silo_stub.OpenJob(pb.OpenJobRequest(job_id="nopickle", spec_json=spec), timeout=10)
    marker = tmp_path / "pwned"
    for seq, payload in enumerate(trap_payloads(marker), start=1):
        header = pb.StepHeader(
            job_id="nopickle", method="job.echo", seq=seq, total_bytes=len(payload)
        )
        frames = [pb.Frame(header=header), pb.Frame(chunk=payload)]
        with pytest.raises(grpc.RpcError) as err:
            list(silo_stub.Step(iter(frames), timeout=10))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    # a pickle as the OpenJob spec is just invalid JSON
    with pytest.raises(grpc.RpcError) as err:
        silo_stub.OpenJob(
            pb.OpenJobRequest(job_id="p", spec_json=trap_payloads(marker)[2].decode("latin-1")),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not marker.exists()
