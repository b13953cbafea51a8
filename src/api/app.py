"""The FastAPI application, built around a container from the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rightsledger import __version__
from rightsledger.api import console, metrics, problems, schemas
from rightsledger.api.deps import BEARER, RoleGate, authenticate
from rightsledger.api.idempotency import HEADER, MAX_KEY_LENGTH, IdempotencyKeys
from rightsledger.api.offload import install_executor
from rightsledger.api.routers import audit, customers, health, partners, requests
from rightsledger.bootstrap import Container
from rightsledger.domain.values import Purpose
from rightsledger.runtime import fewer_collections
from rightsledger.security.keys import Role


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (problem+json), before any handler
    reads them: at once when ``Content-Length`` says so, and as soon as a streamed (chunked)
    body passes the limit. (FastAPI's own ``max_body_size`` answers some of these cases in
    plain text, and the routes turn a failed body read into 400.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.limit:
                await self._refuse(scope, send)
                return
            if b"transfer-encoding" not in headers:
                # the server delivers no more than the declared length: nothing to watch
                await self.app(scope, receive, send)
                return
        received = 0
        too_large = started = refused = False

        async def limited() -> Message:
            nonlocal received, too_large
            if too_large:
                raise _TooLargeError
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    raise _TooLargeError
            return message

        async def guarded(message: Message) -> None:
            # Whatever the app answers once the body was cut off (a route answers 400 for
            # a body it could not read) is replaced by the 413.
            nonlocal started, refused
            if refused:
                return
            if too_large and not started:
                refused = True
                await self._refuse(scope, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except _TooLargeError:
            if not started and not refused:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = problems.problem(
            413,
            "Request body too large",
            f"request bodies are limited to {self.limit} bytes",
            type_="/problems/body-too-large",
            instance=scope.get("path"),
        )
        await response(scope, _drain, send)


class _TooLargeError(Exception):
    def __init__(self) -> None:
        super().__init__("request body too large")


async def _drain() -> Message:
    return {"type": "http.disconnect"}


def create_app(container: Container, *, own_container: bool = False) -> FastAPI:
    """Build the API. With ``own_container`` the app closes the container on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        executor = install_executor()  # blocking route functions run here (api/offload.py)
        if container.settings.run_projections:
            container.start_projections()
        if container.settings.run_workers:
            container.start_workers(container.settings.kafka_bootstrap)
        try:
            # what start-up built is left out of collections, young objects are collected
            # less often: a tenth less CPU per command (runtime.py)
            with fewer_collections():
                yield
        finally:
            if own_container:
                container.close()
            executor.shutdown(wait=False, cancel_futures=True)

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
        telemetry=telemetry(container.settings.opentelemetry),
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
            _document_vocabularies(document, container.settings.jurisdictions)
            _document_access(document, app, container.settings.role_purposes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(IdempotencyKeys, store=container.idempotency)
    app.add_middleware(BodyLimit, limit=container.settings.max_body_bytes)
    # outermost: every answer is counted, a 413 or a 429 too (see docs/api.md, "Metrics")
    metrics.install(app, container)
    return app


def telemetry(enabled: bool) -> TelemetryConfig:
    """FastAPI's native OpenTelemetry, all on or all off (``RIGHTSLEDGER_OPENTELEMETRY``)."""
    return {"tracing": enabled, "metrics": enabled, "logs": enabled, "operation_spans": enabled}


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


PURPOSE_HEADER = "X-Purpose"


def _command_models() -> list[type[schemas.Command]]:
    found: list[type[schemas.Command]] = []
    pending = list(schemas.Command.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return found


def _document_vocabularies(document: dict[str, Any], jurisdictions: Mapping[str, Any]) -> None:
    """The vocabularies the OpenAPI document lists as enums besides the models' own: the
    configured jurisdictions (in request bodies and query parameters), the purposes of the
    X-Purpose header, and the roles (``x-roles`` of each operation)."""
    names = sorted(jurisdictions)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Role"] = {
        "title": "Role",
        "type": "string",
        "enum": [role.value for role in Role],
        "description": "The role of an API key; each operation lists the roles it admits "
        "(`x-roles`).",
    }
    for model in _command_models():
        prop = components.get(model.__name__, {}).get("properties", {}).get("jurisdiction")
        if prop is not None:
            prop["enum"] = names
    purposes = [purpose.value for purpose in Purpose]
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "jurisdiction" and parameter.get("in") == "query":
                    parameter["schema"] = _optional_enum(parameter.get("schema", {}), names)
                if parameter.get("name") == PURPOSE_HEADER and parameter.get("in") == "header":
                    parameter["schema"] = _optional_enum(parameter.get("schema", {}), purposes)


def _optional_enum(schema: dict[str, Any], values: list[str]) -> dict[str, Any]:
    """The schema of a parameter (``string``, or ``string`` or null) limited to ``values``."""
    listed = {"type": "string", "enum": values}
    if "title" in schema:
        listed["title"] = schema["title"]
    return listed


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _document_access(
    document: dict[str, Any], app: FastAPI, role_purposes: Mapping[str, list[str]]
) -> None:
    """Each operation's description says which roles may call it and, where it reads
    personal data, which purposes each of them may declare, derived from the route's
    ``RoleGate`` dependency and the configured purposes of each role. A gated operation
    declares the bearer scheme (the gate reads the key itself, so FastAPI does not)."""
    paths = document.get("paths", {})
    scheme = BEARER.scheme_name
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    for route in iter_route_contexts(app.routes):  # routes of included routers, as OpenAPI
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        parts = list(_dependants(route.dependant))
        gates = [part.call for part in parts if isinstance(part.call, RoleGate)]
        reads_personal = any(
            param.alias == PURPOSE_HEADER for part in parts for param in part.header_params
        )
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if not gates:
                keyed = any(part.call is authenticate for part in parts)
                note = "**Roles:** any valid API key." if keyed else "**Roles:** anyone; no key."
                operation["description"] = _append(operation.get("description"), note)
                continue
            gate = gates[0]
            schemes[scheme] = BEARER.model.model_dump(mode="json", by_alias=True, exclude_none=True)
            operation.setdefault("security", [{scheme: []}])
            roles = sorted(role.value for role in gate.roles)
            operation["x-roles"] = roles
            lines = [f"**Roles:** {', '.join(roles)}."]
            if reads_personal:
                declarable = {
                    role: [
                        p
                        for p in role_purposes.get(role, [])
                        if gate.purpose is None or p == gate.purpose.value
                    ]
                    for role in roles
                }
                operation["x-purposes"] = declarable
                listed = "; ".join(
                    f"{role}: {', '.join(found) if found else 'none'}"
                    for role, found in declarable.items()
                )
                only = f" (this read serves {gate.purpose.value} only)" if gate.purpose else ""
                lines.append(
                    f"**Purposes** each role may declare in {PURPOSE_HEADER}{only}: {listed}."
                )
            operation["description"] = _append(operation.get("description"), " ".join(lines))


def _append(description: str | None, note: str) -> str:
    return f"{description}\n\n{note}" if description else note


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()
