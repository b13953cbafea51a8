"""The request queue: every data-rights request with its status and legal deadlines."""

from __future__ import annotations

from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import View

OPEN_STATUSES = sql.SQL("status IN ('open', 'in_progress')")


class RequestQueueView(View):
    """``request_queue``: status, type, jurisdiction, received/verified/due/closed times."""

    name = "request_queue"
    tables = ("request_queue",)

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

    @singledispatchmethod
    def apply(self, event: Any, curs: Cursor[DictRow], position: int) -> None:
        """Events this view does not project change nothing here."""

    @apply.register
    def _(self, event: DataRightsRequest.Submitted, curs: Cursor[DictRow], position: int) -> None:
        curs.execute(
            sql.SQL(
                "INSERT INTO {} (request_id, customer_id, type, status, channel, jurisdiction,"
                " received_at, due_at, position) VALUES (%(id)s, %(customer)s, %(type)s, 'open',"
                " %(channel)s, %(jurisdiction)s, %(received)s, %(due)s, %(position)s)"
                " ON CONFLICT (request_id) DO NOTHING"
            ).format(self.table("request_queue")),
            {
                "id": event.originator_id,
                "customer": event.customer_id,
                "type": event.request_type,
                "channel": event.channel,
                "jurisdiction": event.jurisdiction,
                "received": event.received_at,
                "due": event.due_at,
                "position": position,
            },
        )

    @apply.register
    def _(
        self, event: DataRightsRequest.IdentityVerified, curs: Cursor[DictRow], position: int
    ) -> None:
        self._set(
            curs, event.originator_id, position, status="in_progress", verified_at=event.timestamp
        )

    @apply.register
    def _(
        self, event: DataRightsRequest.DeadlineExtended, curs: Cursor[DictRow], position: int
    ) -> None:
        self._set(
            curs,
            event.originator_id,
            position,
            extended=True,
            due_at=event.due_at,
            extension_reason=event.reason,
        )

    @apply.register
    def _(self, event: DataRightsRequest.Denied, curs: Cursor[DictRow], position: int) -> None:
        self._close(curs, event, position, "denied", event.reason)

    @apply.register
    def _(self, event: DataRightsRequest.Revoked, curs: Cursor[DictRow], position: int) -> None:
        self._close(curs, event, position, "revoked", event.reason)

    @apply.register
    def _(self, event: DataRightsRequest.Fulfilled, curs: Cursor[DictRow], position: int) -> None:
        self._close(curs, event, position, "fulfilled", event.summary)

    @apply.register
    def _(self, event: DataRightsRequest.Expired, curs: Cursor[DictRow], position: int) -> None:
        self._close(curs, event, position, "expired", event.reason)

    def _close(
        self,
        curs: Cursor[DictRow],
        event: DataRightsRequest.Event,
        position: int,
        status: str,
        reason: str | None,
    ) -> None:
        self._set(
            curs,
            event.originator_id,
            position,
            status=status,
            reason=reason,
            closed_at=event.timestamp,
        )

    def _set(self, curs: Cursor[DictRow], request_id: UUID, position: int, **changes: Any) -> None:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in changes
        )
        curs.execute(
            sql.SQL(
                "UPDATE {} SET {}, position = %(position)s WHERE request_id = %(request_id)s"
            ).format(self.table("request_queue"), assignments),
            {**changes, "request_id": request_id, "position": position},
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
