"""Paged answers: one shape for every list route.

Every list takes ``limit`` and an opaque ``cursor`` and answers ``{items, next_cursor,
position}`` with a ``Link: <...>; rel="next"`` header while more remain. A cursor is the
sort key of the last item of a page (keyset pagination: pages stay consistent while items
arrive), tagged with the list it belongs to, base64url-encoded JSON. Clients treat it as
opaque. A view reads ``limit + 1`` rows after the cursor's key, in its sort order; the
extra row only says that another page follows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any
from uuid import UUID

from fastapi import Query, Request, Response

from rightsledger.api import schemas as s
from rightsledger.api.deps import ViewRead
from rightsledger.api.problems import ApiProblemError
from rightsledger.projections.disclosures import DisclosuresView

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (at most 500).")]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=1024,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Opaque cursor from a previous page's `next_cursor` (or its Link header).",
    ),
]

Key = tuple[Any, ...]
"""The sort key of one item: JSON-representable values (str, int, float, bool, None)."""


class BadCursorError(ApiProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(422, "Invalid cursor", detail, slug="bad-cursor")


def encode_cursor(kind: str, key: Sequence[Any]) -> str:
    """The opaque cursor for the page after the item whose sort key is ``key``."""
    raw = json.dumps([kind, *key], separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(kind: str, cursor: str | None, arity: int) -> Key | None:
    """The sort key a cursor of list ``kind`` carries, or None for the first page.

    A cursor from another list, of another shape, or not produced by this service
    answers 422 (``/problems/bad-cursor``).
    """
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        msg = "the cursor is not one this service gave out; start again without it"
        raise BadCursorError(msg) from None
    if not isinstance(value, list) or len(value) != arity + 1 or value[0] != kind:
        msg = "the cursor belongs to another list or filter; start again without it"
        raise BadCursorError(msg)
    return tuple(value[1:])


def next_cursor(kind: str, rows: Sequence[Any], limit: int, key: Any) -> str | None:
    """The cursor after the last of ``rows`` when a full page was read, else None.

    ``key`` maps a row to its sort key. A view reads ``limit + 1`` rows to know whether
    more remain; pass them all: the extra row is not returned (see :func:`trim`).
    """
    if len(rows) <= limit:
        return None
    return encode_cursor(kind, key(rows[limit - 1]))


def trim(rows: Sequence[Any], limit: int) -> list[Any]:
    return list(rows[:limit])


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    """Set ``Link: <url>; rel="next"`` for the next page (same filters, new cursor)."""
    if cursor is None:
        return
    url = request.url.include_query_params(cursor=cursor)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'


def uuid_key(value: Any) -> str:
    return str(value) if isinstance(value, UUID) else value


def paged(
    request: Request,
    response: Response,
    kind: str,
    rows: Sequence[Any],
    limit: int,
    key: Callable[[Any], Sequence[Any]],
) -> tuple[list[Any], str | None]:
    """One page from the ``limit + 1`` rows a view read: the items, the next cursor (also
    set as the Link header), or None on the last page."""
    cursor = next_cursor(kind, rows, limit, key)
    link_next(request, response, cursor)
    return trim(rows, limit), cursor


def position_key(row: Any) -> tuple[int]:
    """The sort key of lists in log order."""
    return (int(row["position"]),)


def position_after(kind: str, cursor: str | None) -> int:
    """The position a log-ordered list's cursor resumes after (0 for the first page)."""
    key = decode_cursor(kind, cursor, 1)
    if key is None:
        return 0
    (after,) = key
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise BadCursorError("the cursor is not one this service gave out; start again without it")
    return after


def disclosure_page(
    read: ViewRead,
    request: Request,
    *,
    by: str,
    value: UUID,
    limit: int,
    cursor: str | None,
) -> s.DisclosurePage:
    """A page of the disclosures register, for one partner or one customer, in log order."""
    view = read.view
    assert isinstance(view, DisclosuresView)
    kind = f"{by}-disclosures"
    select = view.for_partner if by == "partner" else view.for_customer
    rows, position = select(value, limit=limit + 1, after=position_after(kind, cursor))
    read.reflect(position)
    items, next_ = paged(request, read.response, kind, rows, limit, position_key)
    return s.DisclosurePage(
        items=[s.DisclosureOut(**row) for row in items], next_cursor=next_, position=position
    )
