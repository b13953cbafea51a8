"""The request queue: every data-rights request with its status and legal deadlines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.customer import Customer
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import Positioned, RowView

OPEN_STATUSES = sql.SQL("status IN ('open', 'in_progress')")


class RequestQueueView(RowView):
    """``request_queue``: status, type, jurisdiction, received/verified/due/closed times."""

    name = "request_queue"
    tables = ("request_queue",)
    table_base = "request_queue"
    key = "request_id"
    columns = {
        "request_id": "uuid",
        "customer_id": "uuid",
        "type": "text",
        "status": "text",
        "channel": "text",
        "jurisdiction": "text",
        "received_at": "timestamptz",
        "verified_at": "timestamptz",
        "due_at": "timestamptz",
        "extended": "boolean",
        "extension_reason": "text",
        "reason": "text",
        "closed_at": "timestamptz",
        "position": "bigint",
    }

    def create_statements(self) -> list[sql.Composed]:
        table = self.table("request_queue")
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " request_id uuid PRIMARY KEY,"
                " customer_id uuid NOT NULL,"
                " type text NOT NULL,"
                " status text NOT NULL,"
                " channel text NOT NULL,"
                " jurisdiction text NOT NULL,"
                " received_at timestamptz NOT NULL,"
                " verified_at timestamptz,"
                " due_at timestamptz NOT NULL,"
                " extended boolean NOT NULL DEFAULT false,"
                " extension_reason text,"
                " reason text,"
                " closed_at timestamptz,"
                " position bigint NOT NULL)"
            ).format(table),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (status, due_at)").format(
                self.index("request_queue_status_due"), table
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (customer_id)").format(
                self.index("request_queue_customer"), table
            ),
        ]

    def key_of(self, event: Any) -> UUID | None:
        if isinstance(event, DataRightsRequest.Submitted | DataRightsRequest.Event):
            return event.originator_id
        return None

    @singledispatchmethod
    def fold(self, event: Any, row: dict[str, Any] | None, position: int) -> dict[str, Any] | None:
        """Request events this view does not show change nothing."""
        return None

    @fold.register
    def _(self, event: DataRightsRequest.Submitted, row: None, position: int) -> dict[str, Any]:
        return {
            "request_id": event.originator_id,
            "customer_id": event.customer_id,
            "type": event.request_type,
            "status": "open",
            "channel": event.channel,
            "jurisdiction": event.jurisdiction,
            "received_at": event.received_at,
            "verified_at": None,
            "due_at": event.due_at,
            "extended": False,
            "extension_reason": None,
            "reason": None,
            "closed_at": None,
            "position": position,
        }

    @fold.register
    def _(
        self, event: DataRightsRequest.IdentityVerified, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return {
            **row,
            "status": "in_progress",
            "verified_at": event.timestamp,
            "position": position,
        }

    @fold.register
    def _(
        self, event: DataRightsRequest.DeadlineExtended, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return {
            **row,
            "extended": True,
            "due_at": event.due_at,
            "extension_reason": event.reason,
            "position": position,
        }

    @fold.register
    def _(
        self, event: DataRightsRequest.Denied, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return self._close(row, event, position, "denied", event.reason)

    @fold.register
    def _(
        self, event: DataRightsRequest.Revoked, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return self._close(row, event, position, "revoked", event.reason)

    @fold.register
    def _(
        self, event: DataRightsRequest.Fulfilled, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return self._close(row, event, position, "fulfilled", event.summary)

    @fold.register
    def _(
        self, event: DataRightsRequest.Expired, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return self._close(row, event, position, "expired", event.reason)

    @staticmethod
    def _close(
        row: dict[str, Any],
        event: DataRightsRequest.Event,
        position: int,
        status: str,
        reason: str | None,
    ) -> dict[str, Any]:
        return {
            **row,
            "status": status,
            "reason": reason,
            "closed_at": event.timestamp,
            "position": position,
        }

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        """Requests fold by id; a customer's erasure also clears the free text of their requests."""
        super().write(curs, events)
        for event, _ in events:
            if isinstance(event, Customer.Erased):
                curs.execute(
                    sql.SQL(
                        "UPDATE {} SET reason = NULL, extension_reason = NULL"
                        " WHERE customer_id = %s"
                    ).format(self.table("request_queue")),
                    (event.originator_id,),
                )

    # ---------------------------------------------------------------- queries

    def search(
        self,
        *,
        status: str | None = None,
        request_type: str | None = None,
        overdue: bool | None = None,
        due_before: datetime | None = None,
        customer_id: UUID | None = None,
        open_only: bool = False,
        now: datetime,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Rows matching the filters, soonest due first, and the position they reflect."""
        clauses: list[sql.Composable] = []
        params: dict[str, Any] = {"now": now, "limit": limit, "offset": offset}
        if status is not None:
            clauses.append(sql.SQL("status = %(status)s"))
            params["status"] = status
        if request_type is not None:
            clauses.append(sql.SQL("type = %(type)s"))
            params["type"] = request_type
        if due_before is not None:
            clauses.append(sql.SQL("due_at < %(due_before)s"))
            params["due_before"] = due_before
        if customer_id is not None:
            clauses.append(sql.SQL("customer_id = %(customer_id)s"))
            params["customer_id"] = customer_id
        if open_only:
            clauses.append(OPEN_STATUSES)
        if overdue is True:
            clauses.append(sql.SQL("{} AND due_at < %(now)s").format(OPEN_STATUSES))
        elif overdue is False:
            clauses.append(sql.SQL("NOT ({} AND due_at < %(now)s)").format(OPEN_STATUSES))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        query = sql.SQL(
            "SELECT request_id, customer_id, type, status, jurisdiction, received_at,"
            " verified_at, due_at, extended, reason, closed_at,"
            " ({open} AND due_at < %(now)s) AS overdue FROM {table}{where}"
            " ORDER BY due_at, request_id LIMIT %(limit)s OFFSET %(offset)s"
        ).format(open=OPEN_STATUSES, table=self.table("request_queue"), where=where)
        return self.fetch(query, params)
