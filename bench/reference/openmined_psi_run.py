"""openmined-psi on two id files; runs inside ``bench/.venv-openmined`` (README.md beside this).

    python openmined_psi_run.py CLIENT_IDS SERVER_IDS raw|gcs|bloom

Each file holds one id per line. The client holds the first set and learns the intersection
(``reveal_intersection=True``), the server holds the second. Prints one JSON line. Imports
nothing from fedsilo: this interpreter has a different protobuf.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def read_ids(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def run(a: list[str], b: list[str], ds_name: str) -> dict[str, float | int]:
    """One PSI run, timed from key creation to the client's intersection."""
    import private_set_intersection.python as psi

    ds = {"raw": psi.DataStructure.RAW, "gcs": psi.DataStructure.GCS}.get(
        ds_name, psi.DataStructure.BLOOM_FILTER
    )
    cpu0, start = time.process_time(), time.perf_counter()
    client = psi.client.CreateWithNewKey(True)
    server = psi.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(1e-9, len(a), b, ds)
    request = client.CreateRequest(a)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    nbytes = sum(len(m.SerializeToString()) for m in (setup, request, response))
    return {"found": len(found), "nbytes": nbytes, "wall": wall, "cpu": cpu}


def main() -> None:
    client_ids, server_ids, ds_name = sys.argv[1:4]
    result = run(read_ids(client_ids), read_ids(server_ids), ds_name)
    result["rss_hwm"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps(result))


if __name__ == "__main__":
    main()
