"""Queries the console needs that the API's routes do not answer yet, on the API's views.

Each reads a view through its own ``fetch`` (rows and the view's position in one snapshot),
as the routers do: open requests with keyset (cursor) paging and jurisdiction and customer
filters, and counts by status.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from rightsledger.projections.requests import OPEN_STATUSES, RequestQueueView


@dataclass(frozen=True)
class Cursor:
    """Where a page of the inbox ends: the last row's due date and id."""

    due_at: datetime
    request_id: UUID

    def encode(self) -> str:
        raw = f"{self.due_at.isoformat()}|{self.request_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """The cursor in ``text``; None for none or for anything that is not one."""
        if not text:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            due, _, request_id = raw.partition("|")
            return cls(datetime.fromisoformat(due), UUID(request_id))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None


def open_requests(
    view: RequestQueueView,
    *,
    now: datetime,
    request_type: str | None = None,
    status: str | None = None,
    jurisdiction: str | None = None,
    overdue: bool | None = None,
    customer_id: UUID | None = None,
    after: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], Cursor | None, int]:
    """Open and in-progress requests, soonest due first, after ``after``; the rows, the
    cursor of the next page (None on the last) and the position the rows reflect."""
    clauses: list[sql.Composable] = [OPEN_STATUSES]
    params: dict[str, Any] = {"now": now, "limit": limit + 1}
    if request_type:
        clauses.append(sql.SQL("type = %(type)s"))
        params["type"] = request_type
    if status:
        clauses.append(sql.SQL("status = %(status)s"))
        params["status"] = status
    if jurisdiction:
        clauses.append(sql.SQL("jurisdiction = %(jurisdiction)s"))
        params["jurisdiction"] = jurisdiction
    if overdue is True:
        clauses.append(sql.SQL("due_at < %(now)s"))
    elif overdue is False:
        clauses.append(sql.SQL("due_at >= %(now)s"))
    if customer_id is not None:
        clauses.append(sql.SQL("customer_id = %(customer)s"))
        params["customer"] = customer_id
    if after is not None:
        clauses.append(sql.SQL("(due_at, request_id) > (%(after_due)s, %(after_id)s)"))
        params["after_due"] = after.due_at
        params["after_id"] = after.request_id
    query = sql.SQL(
        "SELECT request_id, customer_id, type, status, jurisdiction, channel, received_at,"
        " due_at, extended, awaiting, (due_at < %(now)s) AS overdue FROM {} WHERE {}"
        " ORDER BY due_at, request_id LIMIT %(limit)s"
    ).format(view.table("request_queue"), sql.SQL(" AND ").join(clauses))
    rows, position = view.fetch(query, params)
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        following = Cursor(rows[-1]["due_at"], rows[-1]["request_id"])
    for row in rows:
        row["awaiting"] = list(row["awaiting"] or [])
    return rows, following, position


def status_counts(view: RequestQueueView, *, now: datetime) -> tuple[dict[str, int], int]:
    """How many requests are in each status, and how many open ones are overdue."""
    rows, _ = view.fetch(
        sql.SQL(
            "SELECT status, count(*) AS n, count(*) FILTER (WHERE {} AND due_at < %(now)s)"
            " AS overdue FROM {} GROUP BY status"
        ).format(OPEN_STATUSES, view.table("request_queue")),
        {"now": now},
    )
    counts = {row["status"]: int(row["n"]) for row in rows}
    return counts, sum(int(row["overdue"]) for row in rows)


def jurisdictions(view: RequestQueueView) -> list[str]:
    """The jurisdictions requests were received under."""
    rows, _ = view.fetch(
        sql.SQL("SELECT DISTINCT jurisdiction FROM {} ORDER BY jurisdiction").format(
            view.table("request_queue")
        ),
        {},
    )
    return [row["jurisdiction"] for row in rows]
