"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from rightsledger.domain.errors import DomainError, StateError
from rightsledger.domain.ledger import (
    CommitUnavailableError,
    ConcurrentChangeError,
    NotFoundError,
    OutcomeUnknownError,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def _slug(name: str) -> str:
    name = name.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_status(error: DomainError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, StateError):
        return 409
    return 422  # InvalidCommandError and any other rule


class ApiProblemError(Exception):
    """Raised by routes and dependencies to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = headers


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        out.append(
            {
                "field": ".".join(loc[1:] if loc[:1] == ["body"] else loc),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        transient = isinstance(exc, ConcurrentChangeError)  # retrying is expected to work
        return problem(
            domain_status(exc),
            exc.title,
            exc.detail,
            type_=f"/problems/{_slug(type(exc).__name__)}",
            instance=request.url.path,
            headers={"Retry-After": "1"} if transient else None,
            field=exc.field,
        )

    @app.exception_handler(ApiProblemError)
    async def _api(request: Request, exc: ApiProblemError) -> JSONResponse:
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            type_=f"/problems/{exc.slug}" if exc.slug else "about:blank",
            instance=request.url.path,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc.errors())
        card = [e for e in errors if "card number" in e["message"]]
        if card:
            return problem(
                422,
                "Payment card numbers are never stored",
                card[0]["message"].removeprefix("Value error, "),
                type_="/problems/card-number",
                instance=request.url.path,
                field=card[0]["field"],
                errors=errors,
            )
        return problem(
            422,
            "Invalid request",
            "; ".join(f"{e['field'] or 'request'}: {e['message']}" for e in errors[:5]),
            type_="/problems/validation",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        return problem(
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(OutcomeUnknownError)
    async def _unknown(request: Request, exc: OutcomeUnknownError) -> JSONResponse:
        log.error("outcome unknown on %s %s: %s", request.method, request.url.path, exc)
        return problem(
            500,
            "Outcome unknown",
            UNKNOWN_OUTCOME,
            type_="/problems/outcome-unknown",
            instance=request.url.path,
        )

    @app.exception_handler(CommitUnavailableError)
    async def _unavailable(request: Request, exc: CommitUnavailableError) -> JSONResponse:
        return problem(
            503,
            "Service unavailable",
            f"{exc}; retry shortly",
            type_="/problems/unavailable",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(StoreOperationalError)
    @app.exception_handler(StoreInterfaceError)
    async def _store_away(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem(
            503,
            "Store unavailable",
            "the event store could not be reached (connection refused, lost or none free); "
            "nothing was recorded: retry shortly",
            type_="/problems/store-unavailable",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "Internal error",
            UNKNOWN_OUTCOME
            if request.method in ("POST", "PATCH", "PUT", "DELETE")
            else "the server could not complete the request; retry shortly",
            instance=request.url.path,
        )


UNKNOWN_OUTCOME = (
    "the server could not confirm the outcome: the command may or may not have been "
    "recorded. Retry it with the same Idempotency-Key header to apply it exactly once "
    "(a repeat of a recorded command is answered as the first was)"
)
