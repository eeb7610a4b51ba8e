"""``fedsilo serve MODEL_ID`` and ``fedsilo score-one``: online scoring from a shell.

``serve`` runs at the coordinator: it prepares the model for serving (a ``serve`` job: its silos
agree the pseudonym and serving keys) or reuses a prepared serving (``--serving-id``), then
relays between the model's silos over long-lived streams until stopped. ``score-one`` asks the
label holder's endpoint for one score (docs/serving.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from fedsilo.api import OnlineModel
from fedsilo.coordinator.config import load_coordinator_config
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.serving import ServingRelay, prepare_serving
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import ConfigError

__all__ = ["score_one", "serve"]

#: seconds ``fedsilo serve`` waits for every silo's stream before it says who is missing
_READY_S = 30.0


def serve(args: argparse.Namespace) -> int:
    config = load_coordinator_config(args.config)
    store = JobStore(config.database_url)
    model = store.get_model(args.model_id)
    roles = {str(p): str(r) for p, r in model.record.get("parties", {}).items()}
    missing = sorted(set(roles) - set(config.silos))
    if missing:
        raise ConfigError(f"model '{args.model_id}' needs silo '{missing[0]}', not in the config")
    clients = connect_silos(config, sorted(roles))
    if args.serving_id:
        serving_id = args.serving_id
        active = next(p for p, r in roles.items() if r == "active")
    else:
        datasets = dict(_pair(d) for d in args.dataset)
        serving_id, active = prepare_serving(
            args.model_id,
            clients=clients,
            store=store,
            on_party_down=args.on_party_down,
            datasets=datasets,
        )
    relay = ServingRelay(serving_id, active, clients).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ready = relay.wait_up(_READY_S)
    up = ", ".join(relay.parties_up()) or "none"
    print(
        f"serving {args.model_id} (serving id {serving_id}); silos up: {up}"
        + ("" if ready else " (the others are retried)"),
        flush=True,
    )
    stop.wait()
    relay.stop()
    print(f"stopped; relayed {json.dumps(relay.stats(), sort_keys=True)}", flush=True)
    return 0


def _pair(text: str) -> tuple[str, str]:
    party, sep, dataset = text.partition("=")
    if not sep or not party or not dataset:
        raise ConfigError(f"--dataset '{text}' must be PARTY=DATASET")
    return party, dataset


def score_one(args: argparse.Namespace) -> int:
    features = dict(_feature(f) for f in args.feature) if args.feature else None
    model = OnlineModel(
        args.url,
        args.model,
        token_file=args.token_file,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
    )
    tx: dict[str, object] = {"id": args.id}
    if features is not None:
        tx["features"] = features
    answer = model.score([tx], deadline_ms=args.deadline_ms)
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0


def _feature(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    bad = ConfigError(f"--feature '{text}' must be NAME=NUMBER")
    if not sep or not name:
        raise bad
    try:
        return name, float(value)
    except ValueError:
        raise bad from None
