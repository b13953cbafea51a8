"""The request queue: every data-rights request with its status and legal deadlines.

Besides what the API lists, each row holds the facts the deadline chase decides on
(``reminded``, ``escalated``, ``overdue_recorded``, ``awaiting``: the partners still
awaited) and ``attention``: the clock the request's next chase step waits for
(``reminder``, ``deadline``, or NULL once closed or once nothing more can happen),
computed by the domain's ``ChaseState`` as each event is folded. The reminder window is a
policy setting of the request worker, not of this view, so the time a request next needs
attention is computed when the sweep asks (``needing_attention``):
``next_attention_at`` = ``due_at`` - remind_before for ``reminder``, ``due_at`` for
``deadline``.

Rows projected before these columns existed hold NULL facts (the columns are added with
``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``): ``rightsledger projections rebuild
request_queue`` fills them; until then the sweep chases such rows by the former rule
(open or in progress, due within the reminder window).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.customer import Customer
from rightsledger.domain.requests import Attention, ChaseState, DataRightsRequest
from rightsledger.domain.values import RequestStatus
from rightsledger.projections.base import Kinds, Positioned, RowView

_REQUEST_EVENTS = Kinds(DataRightsRequest.Submitted, DataRightsRequest.Event)
_ERASED = Kinds(Customer.Erased)

OPEN_STATUSES = sql.SQL("status IN ('open', 'in_progress')")

CHASE_FACTS = ("reminded", "escalated", "overdue_recorded", "awaiting")
"""The columns the deadline chase decides on; NULL in rows projected before they existed."""

_LEGACY = sql.SQL(
    "attention IS NULL AND status IN ('open', 'in_progress') AND due_at <= %(now)s + %(window)s"
    " AND (reminded IS NULL OR escalated IS NULL OR overdue_recorded IS NULL OR awaiting IS NULL)"
)
"""Rows whose chase facts predate the columns: chased by the former rule until rebuilt."""

NEXT_ATTENTION_AT = sql.SQL(
    "CASE WHEN attention = %(deadline)s THEN due_at ELSE due_at - %(window)s END"
)
"""``Attention.at`` in SQL: the reminder clock strikes ``remind_before`` before the due date
(legacy rows too, as before), the deadline clock at the due date."""


def chase_attention(row: dict[str, Any]) -> str | None:
    """The row's ``attention``, from its facts; None while any fact is unknown (legacy)."""
    if any(row.get(fact) is None for fact in CHASE_FACTS):
        return None
    state = ChaseState(
        status=RequestStatus(row["status"]),
        reminded=row["reminded"],
        escalated=row["escalated"],
        overdue_recorded=row["overdue_recorded"],
        awaiting=len(row["awaiting"]),
    )
    attention = state.attention()
    return attention.value if attention is not None else None


def _settled(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "attention": chase_attention(row)}


class RequestQueueView(RowView):
    """``request_queue``: status, type, jurisdiction, received/verified/due/closed times,
    and what the deadline chase needs (see the module's documentation)."""

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
        "reminded": "boolean",
        "escalated": "boolean",
        "overdue_recorded": "boolean",
        "awaiting": "jsonb",
        "attention": "text",
    }
    json_columns = frozenset({"awaiting"})

    ADDED_COLUMNS = (
        ("reminded", "boolean"),
        ("escalated", "boolean"),
        ("overdue_recorded", "boolean"),
        ("awaiting", "jsonb"),
        ("attention", "text"),
    )
    """Columns added after the table's first version; nullable, so older rows read NULL."""

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
            *self.added_column_statements(),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (status, due_at)").format(
                self.index("request_queue_status_due"), table
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (customer_id)").format(
                self.index("request_queue_customer"), table
            ),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} (attention, due_at)"
                " WHERE attention IS NOT NULL"
            ).format(self.index("request_queue_attention"), table),
            # The sweep's look for legacy rows (see _LEGACY) reads only open rows with no
            # attention, not every open row due within the window.
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} (due_at)"
                " WHERE attention IS NULL AND status IN ('open', 'in_progress')"
            ).format(self.index("request_queue_unscheduled"), table),
        ]

    def added_column_statements(self) -> list[sql.Composed]:
        """``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` for each column added since (safe to
        run again; for a migration step too)."""
        return [
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                self.table("request_queue"), sql.Identifier(column), sql.SQL(pg_type)
            )
            for column, pg_type in self.ADDED_COLUMNS
        ]

    def key_of(self, event: Any) -> UUID | None:
        if _REQUEST_EVENTS(event):
            return event.originator_id
        return None

    @singledispatchmethod
    def fold(self, event: Any, row: dict[str, Any] | None, position: int) -> dict[str, Any] | None:
        """Request events this view does not show change nothing."""
        return None

    @fold.register
    def _(self, event: DataRightsRequest.Submitted, row: None, position: int) -> dict[str, Any]:
        return _settled(
            {
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
                "reminded": False,
                "escalated": False,
                "overdue_recorded": False,
                "awaiting": [],
            }
        )

    @fold.register
    def _(
        self, event: DataRightsRequest.IdentityVerified, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return _settled(
            {
                **row,
                "status": "in_progress",
                "verified_at": event.timestamp,
                "position": position,
            }
        )

    @fold.register
    def _(
        self, event: DataRightsRequest.DeadlineExtended, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return _settled(
            {
                **row,
                "extended": True,
                "due_at": event.due_at,
                "extension_reason": event.reason,
                "position": position,
            }
        )

    @fold.register
    def _(
        self, event: DataRightsRequest.DeadlineApproaching, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return _settled({**row, "reminded": True, "position": position})

    @fold.register
    def _(
        self, event: DataRightsRequest.Escalated, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return _settled({**row, "escalated": True, "position": position})

    @fold.register
    def _(
        self, event: DataRightsRequest.Overdue, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return _settled({**row, "overdue_recorded": True, "position": position})

    @fold.register
    def _(
        self, event: DataRightsRequest.PartnersNotified, row: dict[str, Any], position: int
    ) -> dict[str, Any] | None:
        if not event.awaiting_acknowledgement:
            return None
        awaited = sorted({str(n["partner_id"]) for n in event.notifications})
        return _settled({**row, "awaiting": awaited, "position": position})

    @fold.register
    def _(
        self, event: DataRightsRequest.PartnerAcknowledged, row: dict[str, Any], position: int
    ) -> dict[str, Any] | None:
        if row.get("awaiting") is None:
            return None  # projected before the column existed: still unknown
        awaited = [p for p in row["awaiting"] if p != str(event.partner_id)]
        return _settled({**row, "awaiting": awaited, "position": position})

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
        return _settled(
            {
                **row,
                "status": status,
                "reason": reason,
                "closed_at": event.timestamp,
                "position": position,
            }
        )

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        """Requests fold by id; a customer's erasure also clears the free text of their requests
        at that point of the log (what later events write stays), whatever the batch."""
        start = 0
        for index, (event, _) in enumerate(events):
            if _ERASED(event):
                super().write(curs, events[start:index])
                start = index + 1
                curs.execute(
                    sql.SQL(
                        "UPDATE {} SET reason = NULL, extension_reason = NULL"
                        " WHERE customer_id = %s"
                    ).format(self.table("request_queue")),
                    (event.originator_id,),
                )
        super().write(curs, events[start:])

    # ---------------------------------------------------------------- queries

    @staticmethod
    def _filters(
        *,
        status: str | Sequence[str] | None,
        request_type: str | Sequence[str] | None,
        jurisdiction: str | None,
        due_before: datetime | None,
        customer_id: UUID | None,
        params: dict[str, Any],
    ) -> list[sql.Composable]:
        clauses: list[sql.Composable] = []
        if status is not None:
            clauses.append(sql.SQL("status = ANY(%(status)s)"))
            params["status"] = [status] if isinstance(status, str) else list(status)
        if request_type is not None:
            clauses.append(sql.SQL("type = ANY(%(type)s)"))
            params["type"] = [request_type] if isinstance(request_type, str) else list(request_type)
        if jurisdiction is not None:
            clauses.append(sql.SQL("jurisdiction = %(jurisdiction)s"))
            params["jurisdiction"] = jurisdiction
        if due_before is not None:
            clauses.append(sql.SQL("due_at < %(due_before)s"))
            params["due_before"] = due_before
        if customer_id is not None:
            clauses.append(sql.SQL("customer_id = %(customer_id)s"))
            params["customer_id"] = customer_id
        return clauses

    def search(
        self,
        *,
        status: str | Sequence[str] | None = None,
        request_type: str | Sequence[str] | None = None,
        jurisdiction: str | None = None,
        overdue: bool | None = None,
        due_before: datetime | None = None,
        customer_id: UUID | None = None,
        now: datetime,
        limit: int = 100,
        after: tuple[datetime, UUID] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Rows matching the filters, soonest due first (then by id), starting after the
        key ``after`` (``(due_at, request_id)`` of the last row of the previous page), and
        the position they reflect. ``status`` and ``request_type`` take one value or several."""
        params: dict[str, Any] = {"now": now, "limit": limit}
        clauses = self._filters(
            status=status,
            request_type=request_type,
            jurisdiction=jurisdiction,
            due_before=due_before,
            customer_id=customer_id,
            params=params,
        )
        if overdue is True:
            clauses.append(sql.SQL("{} AND due_at < %(now)s").format(OPEN_STATUSES))
        elif overdue is False:
            clauses.append(sql.SQL("NOT ({} AND due_at < %(now)s)").format(OPEN_STATUSES))
        if after is not None:
            clauses.append(sql.SQL("(due_at, request_id) > (%(after_due)s, %(after_id)s)"))
            params["after_due"], params["after_id"] = after
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        query = sql.SQL(
            "SELECT request_id, customer_id, type, status, channel, jurisdiction, received_at,"
            " verified_at, due_at, extended, reason, closed_at,"
            " coalesce(awaiting, '[]'::jsonb) AS awaiting,"
            " ({open} AND due_at < %(now)s) AS overdue FROM {table}{where}"
            " ORDER BY due_at, request_id LIMIT %(limit)s"
        ).format(open=OPEN_STATUSES, table=self.table("request_queue"), where=where)
        return self.fetch(query, params)

    def counts(
        self,
        *,
        now: datetime,
        request_type: str | Sequence[str] | None = None,
        jurisdiction: str | None = None,
        customer_id: UUID | None = None,
    ) -> tuple[dict[str, int], int, int]:
        """Requests per status, how many are open past their due date, and the position
        the counts reflect (one snapshot)."""
        params: dict[str, Any] = {"now": now}
        clauses = self._filters(
            status=None,
            request_type=request_type,
            jurisdiction=jurisdiction,
            due_before=None,
            customer_id=customer_id,
            params=params,
        )
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        query = sql.SQL(
            "SELECT status, count(*) AS n,"
            " count(*) FILTER (WHERE {open} AND due_at < %(now)s) AS overdue"
            " FROM {table}{where} GROUP BY status"
        ).format(open=OPEN_STATUSES, table=self.table("request_queue"), where=where)
        rows, position = self.fetch(query, params)
        by_status = {row["status"]: int(row["n"]) for row in rows}
        return by_status, sum(int(row["overdue"]) for row in rows), position

    def needing_attention(
        self,
        *,
        now: datetime,
        remind_before: timedelta,
        limit: int,
        after: tuple[datetime, UUID] | None = None,
    ) -> list[dict[str, Any]]:
        """Requests whose next chase step is due by ``now``: ``request_id``,
        ``next_attention_at`` and ``legacy`` (facts unknown, see the module), ordered by
        ``next_attention_at`` then id, starting after the key ``after`` (keyset pages)."""
        params: dict[str, Any] = {
            "now": now,
            "window": remind_before,
            "limit": limit,
            "reminder": Attention.REMINDER.value,
            "deadline": Attention.DEADLINE.value,
        }
        page = sql.SQL("")
        if after is not None:
            page = sql.SQL(" WHERE (next_attention_at, request_id) > (%(after_at)s, %(after_id)s)")
            params["after_at"], params["after_id"] = after
        query = sql.SQL(
            "SELECT request_id, next_attention_at, legacy FROM ("
            " SELECT request_id, {next} AS next_attention_at, attention IS NULL AS legacy"
            " FROM {table}"
            " WHERE (attention = %(reminder)s AND due_at <= %(now)s + %(window)s)"
            " OR (attention = %(deadline)s AND due_at <= %(now)s)"
            " OR ({legacy})"
            ") AS due{page} ORDER BY next_attention_at, request_id LIMIT %(limit)s"
        ).format(
            next=NEXT_ATTENTION_AT,
            table=self.table("request_queue"),
            legacy=_LEGACY,
            page=page,
        )
        rows, _ = self.fetch(query, params)
        return rows
