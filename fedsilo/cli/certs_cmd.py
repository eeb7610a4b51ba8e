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
    hosts = tuple(args.host) if args.host else certs.DEFAULT_HOSTS
    files = certs.issue(args.dir, args.name, hosts=hosts, force=args.force)
    print(f"{args.name}: certificate {files.cert}, key {files.key} (mode 0600)")
    return 0
