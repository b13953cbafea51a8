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

from rightsledger.api.schemas import CARD_NUMBER_ERROR
from rightsledger.domain.cards import card_number_message, contains_card_number
from rightsledger.domain.errors import DomainError, StateError
from rightsledger.domain.ledger import (
    CommitUnavailableError,
    ConcurrentChangeError,
    NotFoundError,
    OutcomeUnknownError,
)
from rightsledger.domain.requests import DuplicateRequestError

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


REDACTED = "[redacted]"


def field_path(loc: Any) -> str:
    """A validation error's location as the API names fields: ``identity.name``,
    ``items.2.note`` (the leading ``body`` dropped). A part of the path that holds a card
    number (a mapping key, an unknown field's name) is redacted: nothing is echoed."""
    parts = [str(part) for part in loc]
    if parts[:1] == ["body"]:
        parts = parts[1:]
    return ".".join(REDACTED if contains_card_number(part) else part for part in parts)


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        json_error = err.get("type") == "json_invalid"
        out.append(
            {
                # a JSON syntax error's location is an offset in the body, not a field
                "field": "" if json_error else field_path(err.get("loc", ())),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return out


def line_and_column(document: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset, as the JSON decoder counts them."""
    text = document.decode("utf-8", "replace") if isinstance(document, bytes) else document
    line = text.count("\n", 0, offset) + 1
    return line, offset - text.rfind("\n", 0, offset)


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in kinds.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, int | float) else "not JSON"


def _unreadable_body(exc: StarletteHTTPException) -> str | None:
    """Why a JSON body could not be read, when ``exc`` is FastAPI's 400 for a body its JSON
    parser failed on other than by a syntax error (text that is not UTF-8, nesting deeper
    than the parser goes); None for any other HTTP error."""
    if exc.status_code != 400:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "the body nests arrays or objects too deeply"
    if isinstance(cause, ValueError):
        return "the body could not be read as JSON"
    return None


def _body_problem(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """Problems with the body as a whole: not JSON, not an object, or missing."""
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        kind = err.get("type")
        if kind == "json_invalid":
            offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            line, column = line_and_column(exc.body or "", offset)
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return problem(
                422,
                "Malformed JSON",
                f"the body is not valid JSON: {reason} at line {line}, column {column}",
                type_="/problems/malformed-json",
                instance=request.url.path,
                line=line,
                column=column,
                errors=_jsonable_errors([err]),
            )
        if loc != ("body",):
            continue
        if kind == "model_attributes_type":
            got = err.get("input")
            detail = (
                "send the body as JSON with Content-Type: application/json"
                if isinstance(got, bytes | bytearray)
                else f"the body must be a JSON object, not {_json_kind(got)}"
            )
        elif kind == "missing":
            detail = "this operation needs a JSON object body"
        else:
            continue
        return problem(
            422,
            "Invalid request body",
            detail,
            type_="/problems/validation",
            instance=request.url.path,
            field="",
            errors=_jsonable_errors([err]),
        )
    return None


def duplicate(request: Request, error: DuplicateRequestError) -> JSONResponse:
    """409 naming the open request of the same type, with a link to it."""
    href = f"/v1/requests/{error.open_request}"
    return problem(
        409,
        error.title,
        error.detail,
        type_="/problems/duplicate-request",
        instance=request.url.path,
        headers={"Link": f'<{href}>; rel="duplicate"'},
        field=error.field,
        request_id=str(error.open_request),
        href=href,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, DuplicateRequestError):
            return duplicate(request, exc)
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
        whole = _body_problem(request, exc)
        if whole is not None:
            return whole
        errors = _jsonable_errors(exc.errors())
        card = [e for e in errors if e["type"] == CARD_NUMBER_ERROR]
        if card:
            return problem(
                422,
                "Payment card numbers are never stored",
                card_number_message(card[0]["field"]),
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
        unreadable = _unreadable_body(exc)
        if unreadable is not None:
            # FastAPI answers 400 "There was an error parsing the body" when the JSON parser
            # fails other than by a syntax error: the body is JSON it cannot read
            return problem(
                422,
                "Malformed JSON",
                f"the body is not valid JSON: {unreadable}",
                type_="/problems/malformed-json",
                instance=request.url.path,
                errors=[{"field": "", "message": unreadable, "type": "json_invalid"}],
            )
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
