"""The label holder's scoring API for its own applications: HTTP/JSON and gRPC, one behaviour.

``POST /v1/models/{model}/score`` takes one transaction or a small batch::

    {"id": "C0017530"}                                    # own features from the database
    {"transactions": [{"id": "C1", "features": {...}}], "deadline_ms": 50}

and answers ``{"model", "degraded", "results": [{"id", "score", "contributed", "missing"}]}``.
``GET /v1/models`` lists the served models and which passive silos are up, ``GET /healthz``
says the endpoint lives, ``GET /openapi.json`` describes all of it. Errors are one line,
``{"error": ...}``, with the status of their class (:data:`HTTP_STATUS`). Callers authenticate
with a client certificate (TLS) or ``Authorization: Bearer <token>`` as ``[serving]`` says.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedsilo.errors import (
    AuthError,
    ConfigError,
    DataError,
    FedsiloError,
    LimitExceeded,
    NotFound,
    PolicyError,
    ProtocolError,
    SiloUnavailable,
)
from fedsilo.silo_node.serving.active import ActiveHub, ScoreResult, Transaction
from fedsilo.silo_node.serving.host import ServingHost

__all__ = ["HTTP_STATUS", "build_app", "openapi", "parse_request", "score_json"]

#: HTTP status per error class (the first match in order wins)
HTTP_STATUS: tuple[tuple[type[FedsiloError], int], ...] = (
    (AuthError, 401),
    (NotFound, 404),
    (PolicyError, 403),
    (LimitExceeded, 429),
    (SiloUnavailable, 503),
    (ProtocolError, 400),
    (DataError, 400),
    (ConfigError, 400),
)


def status_of(err: FedsiloError) -> int:
    return next((code for cls, code in HTTP_STATUS if isinstance(err, cls)), 500)


def parse_request(body: Any) -> tuple[list[Transaction], int | None]:
    """Transactions and deadline of a JSON request body, or a ProtocolError naming the fault."""
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    items = body.get("transactions", [body] if "id" in body else None)
    if not isinstance(items, list) or not items:
        raise ProtocolError("request needs 'id' or a non-empty list 'transactions'")
    out = []
    for r, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str | int):
            raise ProtocolError(f"transaction {r} needs an 'id' (string)")
        feats = item.get("features")
        if feats is not None and not (
            isinstance(feats, dict)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in feats.values())
        ):
            raise ProtocolError(f"transaction {r}: 'features' must map names to numbers")
        out.append(Transaction(str(item["id"]), None if feats is None else dict(feats)))
    deadline = body.get("deadline_ms")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int)):
        raise ProtocolError("'deadline_ms' must be an integer")
    return out, deadline


def score_json(model: str, results: list[ScoreResult], degraded: bool) -> dict[str, Any]:
    return {
        "model": model,
        "degraded": degraded,
        "results": [
            {"id": r.id, "score": r.score, "contributed": r.contributed, "missing": r.missing}
            for r in results
        ],
    }


def _error(err: FedsiloError) -> JSONResponse:
    return JSONResponse({"error": str(err)}, status_code=status_of(err))


def build_app(host: ServingHost, *, token: str | None) -> Starlette:
    """The ASGI app; ``token``: require this bearer token (None: TLS or nothing authenticates)."""

    async def score(request: Request) -> Response:
        try:
            hub = host.hub(request.path_params["model"])
            try:
                body = await request.json()
            except ValueError:
                raise ProtocolError("request body is not JSON") from None
            transactions, deadline = parse_request(body)
            results, degraded = await run_in_threadpool(hub.score, transactions, deadline)
        except FedsiloError as err:
            return _error(err)
        return JSONResponse(score_json(hub.record.model, results, degraded))

    async def models(request: Request) -> Response:
        return JSONResponse({"models": [_describe(m, h) for m, h in host.models().items()]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "party": host.ctx.party})

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi(host.ctx.party))

    app = Starlette(
        routes=[
            Route("/v1/models/{model:path}/score", score, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/openapi.json", spec, methods=["GET"]),
        ]
    )
    if token is not None:
        app.add_middleware(_BearerToken, token=token)
    return app


def _describe(model: str, hub: ActiveHub) -> dict[str, Any]:
    return {
        "model": model,
        "kind": hub.record.kind,
        "serving_id": hub.record.serving_id,
        "on_party_down": hub.record.on_party_down,
        "connected": hub.connected,
        "passives": list(hub.record.passives),
        "passives_up": hub.parties_up(),
        "features": hub.columns,
    }


class _BearerToken:
    """Pure ASGI middleware: every request but ``/healthz`` needs the bearer token."""

    def __init__(self, app: Callable[..., Awaitable[None]], token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def openapi(party: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API (served at ``/openapi.json``)."""
    tx = {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "string", "description": "the customer / transaction id"},
            "features": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "the label holder's own features of the model; when absent "
                "they are looked up in its database by id",
            },
        },
    }
    result = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "score": {"type": "number", "description": "probability of the positive class"},
            "contributed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "parties whose features went into the score",
            },
            "missing": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "party -> why its features are missing (not held, "
                "unavailable, timeout, dropped with a missing silo)",
            },
        },
    }
    error = {"type": "object", "properties": {"error": {"type": "string"}}}
    err_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"fedsilo online scoring at '{party}'",
            "version": "1",
            "description": "Scores a served vertical model with the passive silos' features "
            "(docs/serving.md).",
        },
        "components": {
            "schemas": {"Transaction": tx, "Result": result, "Error": error},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/models/{model}/score": {
                "post": {
                    "summary": "score one transaction or a small batch",
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Transaction"},
                                        {
                                            "type": "object",
                                            "required": ["transactions"],
                                            "properties": {
                                                "transactions": {
                                                    "type": "array",
                                                    "items": {
                                                        "$ref": "#/components/schemas/Transaction"
                                                    },
                                                },
                                                "deadline_ms": {"type": "integer"},
                                            },
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "scores",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "model": {"type": "string"},
                                            "degraded": {"type": "boolean"},
                                            "results": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Result"},
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        "400": {"description": "bad request", "content": err_ref},
                        "401": {"description": "not authenticated", "content": err_ref},
                        "403": {"description": "a passive silo refused", "content": err_ref},
                        "404": {"description": "model not served here", "content": err_ref},
                        "429": {
                            "description": "a passive silo's rate or budget",
                            "content": err_ref,
                        },
                        "503": {
                            "description": "a passive silo is down (policy fail)",
                            "content": err_ref,
                        },
                    },
                }
            },
            "/v1/models": {"get": {"summary": "served models and their silos' status"}},
            "/healthz": {"get": {"summary": "liveness", "security": []}},
        },
    }
