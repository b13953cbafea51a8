"""The request queue: every data-rights request with its status and legal deadlines."""

from __future__ import annotations

from datetime import datetime
from functools import singledispatchmethod
from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import sql
from psycopg.rows import dict_row
from rightsledger.domain.requests import DataRightsRequest

APPLICATION_NAME = "rightsledger"

_COLUMNS = (
    "request_id, customer_id, type, status, jurisdiction, received_at, verified_at, due_at, "
    "extended, reason, closed_at"
)


class RequestQueueView(PostgresTrackingRecorder):
    """Table ``request_queue`` and its tracking records, written in the same transaction."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.table = sql.Identifier(self.datastore.schema, "request_queue")
        self.sql_create_statements.append(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " request_id uuid PRIMARY KEY,"
                " customer_id uuid NOT NULL,"
                " type text NOT NULL,"
                " status text NOT NULL,"
                " jurisdiction text NOT NULL,"
                " received_at timestamptz NOT NULL,"
                " verified_at timestamptz,"
                " due_at timestamptz NOT NULL,"
                " extended boolean NOT NULL DEFAULT false,"
                " reason text,"
                " closed_at timestamptz,"
                " position bigint NOT NULL)"
            ).format(self.table)
        )
        self.sql_create_statements.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (status, due_at)").format(
                sql.Identifier("request_queue_status_due"), self.table
            )
        )

    def insert_request(self, row: dict[str, Any], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                sql.SQL(
                    "INSERT INTO {} (request_id, customer_id, type, status, jurisdiction,"
                    " received_at, due_at, position) VALUES (%(request_id)s, %(customer_id)s,"
                    " %(type)s, %(status)s, %(jurisdiction)s, %(received_at)s, %(due_at)s,"
                    " %(position)s) ON CONFLICT (request_id) DO NOTHING"
                ).format(self.table),
                {**row, "position": tracking.notification_id},
            )
            self._insert_tracking(curs, tracking)

    def update_request(self, request_id: Any, changes: dict[str, Any], tracking: Tracking) -> None:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in changes
        )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                sql.SQL(
                    "UPDATE {} SET {}, position = %(position)s WHERE request_id = %(request_id)s"
                ).format(self.table, assignments),
                {**changes, "request_id": request_id, "position": tracking.notification_id},
            )
            self._insert_tracking(curs, tracking)

    def search(
        self,
        *,
        status: str | None,
        request_type: str | None,
        overdue: bool | None,
        due_before: datetime | None,
        now: datetime,
        limit: int,
        offset: int,
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
        open_statuses = sql.SQL("status IN ('open', 'in_progress')")
        if overdue is True:
            clauses.append(sql.SQL("{} AND due_at < %(now)s").format(open_statuses))
        elif overdue is False:
            clauses.append(sql.SQL("NOT ({} AND due_at < %(now)s)").format(open_statuses))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        query = sql.SQL(
            "SELECT {columns}, ({open} AND due_at < %(now)s) AS overdue FROM {table}{where}"
            " ORDER BY due_at, request_id LIMIT %(limit)s OFFSET %(offset)s"
        ).format(columns=sql.SQL(_COLUMNS), open=open_statuses, table=self.table, where=where)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=dict_row) as curs:
            curs.execute(query, params)
            rows = list(curs.fetchall())
            position = self._max_tracking_id(APPLICATION_NAME, curs)  # type: ignore[arg-type]
        return rows, position or 0


class RequestQueueProjection(Projection[RequestQueueView]):
    """Keeps ``request_queue`` in step with the requests' events."""

    name = "request_queue"

    @singledispatchmethod
    def process_event(self, _event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        """Other events only advance the position, so readers can wait for any position."""
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: DataRightsRequest.Submitted, tracking: Tracking) -> None:
        self.view.insert_request(
            {
                "request_id": event.originator_id,
                "customer_id": event.customer_id,
                "type": event.request_type,
                "status": "open",
                "jurisdiction": event.jurisdiction,
                "received_at": event.received_at,
                "due_at": event.due_at,
            },
            tracking,
        )

    @process_event.register
    def _(self, event: DataRightsRequest.IdentityVerified, tracking: Tracking) -> None:
        self.view.update_request(
            event.originator_id, {"status": "in_progress", "verified_at": event.timestamp}, tracking
        )

    @process_event.register
    def _(self, event: DataRightsRequest.DeadlineExtended, tracking: Tracking) -> None:
        self.view.update_request(
            event.originator_id, {"extended": True, "due_at": event.due_at}, tracking
        )

    @process_event.register
    def _(self, event: DataRightsRequest.Denied, tracking: Tracking) -> None:
        self._close(event, "denied", event.reason, tracking)

    @process_event.register
    def _(self, event: DataRightsRequest.Revoked, tracking: Tracking) -> None:
        self._close(event, "revoked", event.reason, tracking)

    @process_event.register
    def _(self, event: DataRightsRequest.Fulfilled, tracking: Tracking) -> None:
        self._close(event, "fulfilled", event.summary, tracking)

    @process_event.register
    def _(self, event: DataRightsRequest.Expired, tracking: Tracking) -> None:
        self._close(event, "expired", event.reason, tracking)

    def _close(
        self, event: DataRightsRequest.Event, status: str, reason: str | None, tracking: Tracking
    ) -> None:
        self.view.update_request(
            event.originator_id,
            {"status": status, "reason": reason, "closed_at": event.timestamp},
            tracking,
        )
