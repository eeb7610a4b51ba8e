"""Regenerate fedsilo/protos/*_pb2*.py from fedsilo/protos/fedsilo.proto.

Usage: ``python scripts/gen_protos.py [--check]``. With ``--check`` it generates into a temporary
folder and exits 1 when the committed code differs (tests/test_protos.py runs that).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "fedsilo/protos/fedsilo.proto"
OUTPUTS = ("fedsilo_pb2.py", "fedsilo_pb2.pyi", "fedsilo_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    parser.add_argument(
        "--target",
        type=Path,
        default=ROOT / "fedsilo" / "protos",
        help="folder holding the generated code (default: the package)",
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        produced = Path(tmp) / "fedsilo" / "protos"
        target = opts.target
        if opts.check:
            stale = [
                n
                for n in OUTPUTS
                if not (target / n).exists()
                or not filecmp.cmp(produced / n, target / n, shallow=False)
            ]
            if stale:
                print(f"stale generated code: {', '.join(stale)}; run scripts/gen_protos.py")
                return 1
            return 0
        for name in OUTPUTS:
            shutil.copy(produced / name, target / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
