"""`fedsilo certs init DIR` and `fedsilo certs issue DIR NAME`."""

from __future__ import annotations

import argparse

from fedsilo.crypto import certs


def init(args: argparse.Namespace) -> int:
    files = certs.init_ca(args.dir, name=args.name)
    print(f"consortium CA: {files.cert} (share it with every party)")
    print(f"CA key: {files.key} (keep it offline; mode 0600)")
    return 0


def issue(args: argparse.Namespace) -> int:
    """Issue NAME's certificate; ``--host`` values are added to the default hosts, not swapped in.

    Replacing the defaults would silently drop ``localhost``/``127.0.0.1``, which local health
    probes and ``openssl s_client`` on the node itself rely on.
    """
    hosts = (*certs.DEFAULT_HOSTS, *(args.host or ()))
    files = certs.issue(args.dir, args.name, hosts=hosts, force=args.force)
    print(f"{args.name}: certificate {files.cert}, key {files.key} (mode 0600)")
    return 0
