"""Answers in writing: the letters (HTML) that render an access export or a receipt, and the
choice between JSON and HTML by the request's ``Accept`` header.

Templates live in ``templates/letters/`` of this package and are rendered by Jinja2 with
autoescaping on for everything, so a customer's own values (a name holding ``<script>``)
are shown as text, never as markup.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, Literal

import mimeparse
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader

from rightsledger.api.problems import PROBLEM_JSON, ApiProblemError

JSON = "application/json"
HTML = "text/html"
OFFERED = (HTML, JSON)
"""In this order: at equal preference (``*/*``, no header) JSON wins."""

LETTER_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
"""A letter loads nothing and runs nothing, whatever it holds."""

Representation = Literal["json", "html"]

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON; or the letter, as HTML, for `Accept: text/html`",
        "content": {HTML: {"schema": {"type": "string"}}},
    },
    406: {
        "description": "The Accept header allows neither JSON nor HTML",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}
"""OpenAPI entries of a route answering in JSON or as a letter."""


def negotiate(accept: str | None) -> Representation:
    """JSON unless the client prefers ``text/html`` (a browser does); 406 when the client
    accepts neither."""
    if not accept or not accept.strip():
        return "json"
    try:
        best = mimeparse.best_match(list(OFFERED), accept)
    except (ValueError, IndexError):
        best = ""
    if not best:
        raise ApiProblemError(
            406,
            "Not acceptable",
            f"this answer is offered as {JSON} or {HTML} (a letter); the Accept header "
            f"{accept[:200]!r} allows neither",
            slug="not-acceptable",
        )
    return "html" if best == HTML else "json"


def attachment(stem: str, representation: Representation) -> dict[str, str]:
    """The ``Content-Disposition`` header that makes the answer a file named after ``stem``."""
    extension = "html" if representation == "html" else "json"
    return {"Content-Disposition": f'attachment; filename="{stem}.{extension}"'}


def _when(value: object, *, with_time: bool = True) -> str:
    """An ISO-8601 string or a datetime, as '1 December 2026, 09:35 UTC'."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return text
    if not isinstance(value, datetime):
        return str(value)
    day = f"{value.day} {value:%B %Y}"
    if not with_time:
        return day
    zone = value.tzname() or ""
    return f"{day}, {value:%H:%M} {'UTC' if zone in ('UTC', 'UTC+00:00') else zone}".strip()


def _day(value: object) -> str:
    return _when(value, with_time=False)


CATEGORY_NAMES = {
    "identity_contact": "identity and contact details",
    "account_service": "account and service",
    "payment_method": "payment method",
    "billing": "billing records",
    "activity": "network and account activity",
}


def _category(value: object) -> str:
    return CATEGORY_NAMES.get(str(value), _label(value))


def _label(value: object) -> str:
    """A machine name as words: 'identity_contact' -> 'identity contact'."""
    return str(value).replace("_", " ")


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("rightsledger.api", "templates/letters"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["label"] = _label
    env.filters["category"] = _category
    return env


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)


def letter(template: str, headers: dict[str, str] | None = None, **context: object) -> HTMLResponse:
    """An HTML letter answer: rendered, escaped, with a policy that lets it load nothing."""
    return HTMLResponse(
        render(template, **context),
        headers={
            "Content-Security-Policy": LETTER_POLICY,
            "Vary": "Accept",
            **(headers or {}),
        },
    )
