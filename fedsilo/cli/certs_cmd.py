"""`fedsilo certs init DIR` and `fedsilo certs issue DIR NAME --role silo|coordinator`."""

from __future__ import annotations

import argparse

from fedsilo.crypto import certs
from fedsilo.errors import ConfigError


def init(args: argparse.Namespace) -> int:
    files = certs.init_ca(args.dir, name=args.name)
    print(f"consortium CA: {files.cert} (share it with every party)")
    print(f"CA key: {files.key} (keep it offline; mode 0600)")
    return 0


def issue(args: argparse.Namespace) -> int:
    """Issue NAME's certificate with its role; ``--host`` values are added to the default hosts.

    Replacing the defaults would silently drop ``localhost``/``127.0.0.1``, which local health
    probes and ``openssl s_client`` on the node itself rely on.
    """
    if args.role is None:  # checked here, not by argparse: one line, no usage dump
        raise ConfigError(f"certs issue needs --role silo or --role coordinator for {args.name!r}")
    hosts = (*certs.DEFAULT_HOSTS, *(args.host or ()))
    files = certs.issue(args.dir, args.name, role=args.role, hosts=hosts, force=args.force)
    print(f"{args.name}: {args.role} certificate {files.cert}, key {files.key} (mode 0600)")
    return 0
