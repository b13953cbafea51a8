"""The FastAPI application, built around a container from the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rightsledger import __version__
from rightsledger.api import console, metrics, problems, schemas
from rightsledger.api.idempotency import HEADER, MAX_KEY_LENGTH, IdempotencyKeys
from rightsledger.api.routers import audit, customers, health, partners, requests
from rightsledger.bootstrap import Container


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before any handler reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        received = 0
        too_large = False

        async def limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    msg = "body too large"
                    raise _TooLargeError(msg)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLargeError:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = problems.problem(
            413,
            "Request body too large",
            f"request bodies are limited to {self.limit} bytes",
            instance=scope.get("path"),
        )
        await response(scope, _drain, send)


class _TooLargeError(Exception):
    pass


async def _drain() -> Message:
    return {"type": "http.disconnect"}


def create_app(container: Container, *, own_container: bool = False) -> FastAPI:
    """Build the API. With ``own_container`` the app closes the container on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if container.settings.run_projections:
            container.start_projections()
        if container.settings.run_workers:
            container.start_workers(container.settings.kafka_bootstrap)
        try:
            yield
        finally:
            if own_container:
                container.close()

    # /docs and /redoc with Swagger UI's and ReDoc's assets served by the app (no CDN)
    app = FastAPIOffline(
        title="rightsledger",
        version=__version__,
        description=(
            "Event-sourced data rights: consents, disclosures and access, correction, opt-out "
            "and deletion requests, each recorded as an immutable event. Errors are "
            "application/problem+json (RFC 9457)."
        ),
        lifespan=lifespan,
    )
    app.state.container = container
    problems.install(app)
    errors = schemas.problem_responses(401, 403, 404, 409, 413, 422, 429, 503)
    app.include_router(health.router, responses=schemas.problem_responses(503))
    for router in (customers.router, partners.router, requests.router, audit.router):
        app.include_router(router, responses=errors)
    app.include_router(console.router)  # the operator console (docs/console.md)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = schemas.Problem.model_json_schema()
            _document_idempotency(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(IdempotencyKeys, store=container.idempotency)
    app.add_middleware(BodyLimit, limit=container.settings.max_body_bytes)
    # outermost: every answer is counted, a 413 or a 429 too (see docs/api.md, "Metrics")
    metrics.install(app, container)
    return app


def _document_idempotency(document: dict[str, Any]) -> None:
    """Every POST and PATCH takes an optional Idempotency-Key (see docs/api.md)."""
    parameter = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": "Makes a retry safe: a repeat with the same key and body replays the "
        "first answer and writes nothing (same key, other body: 422; while the first runs: "
        "409). Kept for 24 hours by default.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": "^[!-~]+$",
        },
    }
    for item in document.get("paths", {}).values():
        for method in ("post", "patch"):
            operation = item.get(method)
            if operation is None:
                continue
            operation.setdefault("parameters", []).append(dict(parameter))
            responses = operation.setdefault("responses", {})
            for status in ("409", "422"):
                responses.setdefault(
                    status,
                    {
                        "description": "Problem",
                        "content": {
                            problems.PROBLEM_JSON: {
                                "schema": {"$ref": "#/components/schemas/Problem"}
                            }
                        },
                    },
                )


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def from_environment() -> FastAPI:
    """An app built from the environment's settings (for several API processes)."""
    from rightsledger.bootstrap import build
    from rightsledger.config import Settings

    return create_app(build(Settings()), own_container=True)
