"""Partners: the recipients with their contracts, and what each was notified of and owes.

``partners`` holds one row per partner (name, kind, contract reference, agreement, the date
the contract is valid until). Whether a contract is valid *now* is decided when read, from
that date, by the same rule as ``Partner.contract_valid_on``.

``partner_notifications`` holds one row per (partner, request) a partner was told of
(``DataRightsRequest.PartnersNotified``): the categories it received, when it was notified,
the request's due date, and its status:

- ``awaiting``: a deletion notice the partner has yet to acknowledge;
- ``acknowledged``: acknowledged (``PartnerAcknowledged``), with the time;
- ``informed``: a correction notice, which asks for no acknowledgement;
- ``lapsed``: the request closed (expired, denied, revoked) before the partner acknowledged.

``partner_requests`` keeps each request's type and due date (extensions included), so a
notification carries the due date it was sent under and follows a later extension. None of
these tables holds personal values: ids, categories, dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.values import PartnerKind
from rightsledger.projections.base import Kinds, Positioned, View, insert_rows

_PARTNER_OR_REQUEST = Kinds(
    Partner.Registered, Partner.Event, DataRightsRequest.Submitted, DataRightsRequest.Event
)
"""The events this view may show: the partners' and the requests' (not the customers')."""


class NoticeStatus(StrEnum):
    AWAITING = "awaiting"
    ACKNOWLEDGED = "acknowledged"
    INFORMED = "informed"
    LAPSED = "lapsed"


def contract_valid_on(row: dict[str, Any], day: date) -> bool:
    """A partner row's contract is valid that day (``Partner.contract_valid_on``'s rule)."""
    if not (PartnerKind(row["kind"]).is_contracted and row["confidentiality_agreement"]):
        return False
    until = row["contract_valid_until"]
    return until is not None and until >= day


_REQUEST_COLUMNS = {"request_id": "uuid", "request_type": "text", "due_at": "timestamptz"}


class PartnersView(View):
    """``partners``, ``partner_notifications`` and ``partner_requests``."""

    name = "partners"
    tables = ("partners", "partner_notifications", "partner_requests")

    def create_statements(self) -> list[sql.Composed]:
        notifications = self.table("partner_notifications")
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " partner_id uuid PRIMARY KEY,"
                " name text NOT NULL,"
                " kind text NOT NULL,"
                " contract_reference text,"
                " confidentiality_agreement text,"
                " contract_valid_until date,"
                " registered_at timestamptz NOT NULL,"
                " version integer NOT NULL,"
                " position bigint NOT NULL)"
            ).format(self.table("partners")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " request_id uuid PRIMARY KEY,"
                " request_type text NOT NULL,"
                " due_at timestamptz NOT NULL)"
            ).format(self.table("partner_requests")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " partner_id uuid NOT NULL,"
                " request_id uuid NOT NULL,"
                " request_type text NOT NULL,"
                " categories text[] NOT NULL,"
                " status text NOT NULL,"
                " notified_at timestamptz NOT NULL,"
                " due_at timestamptz NOT NULL,"
                " acknowledged_at timestamptz,"
                " position bigint NOT NULL,"
                " PRIMARY KEY (partner_id, request_id))"
            ).format(notifications),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (partner_id, due_at, request_id)").format(
                self.index("partner_notifications_due"), notifications
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (request_id)").format(
                self.index("partner_notifications_request"), notifications
            ),
        ]

    # ---------------------------------------------------------------- writing

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        """Requests received are inserted in one statement per batch (they are most of the
        log); the rarer events run one statement each, in log order, after the requests
        received before them."""
        submitted: list[dict[str, Any]] = []

        def flush() -> None:
            if submitted:
                insert_rows(
                    curs,
                    self.table("partner_requests"),
                    _REQUEST_COLUMNS,
                    frozenset(),
                    submitted,
                    ("request_id",),
                )
                submitted.clear()

        for event, position in events:
            if not _PARTNER_OR_REQUEST(event):
                continue
            if isinstance(event, DataRightsRequest.Submitted):
                submitted.append(
                    {
                        "request_id": event.originator_id,
                        "request_type": event.request_type,
                        "due_at": event.due_at,
                    }
                )
                continue
            statement = self._statement(event, position)
            if statement is not None:
                flush()
                curs.execute(*statement)
        flush()

    def _statement(self, event: Any, position: int) -> tuple[sql.Composed, Any] | None:
        partners = self.table("partners")
        notifications = self.table("partner_notifications")
        if isinstance(event, Partner.Registered):
            return sql.SQL(
                "INSERT INTO {} (partner_id, name, kind, contract_reference,"
                " confidentiality_agreement, contract_valid_until, registered_at, version,"
                " position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (partner_id) DO NOTHING"
            ).format(partners), (
                event.originator_id,
                event.name,
                event.kind,
                event.contract_reference,
                event.confidentiality_agreement,
                event.contract_valid_until,
                event.timestamp,
                event.originator_version,
                position,
            )
        if isinstance(event, Partner.ContractRenewed):
            return sql.SQL(
                "UPDATE {} SET contract_reference = %s, confidentiality_agreement = %s,"
                " contract_valid_until = %s, version = %s, position = %s WHERE partner_id = %s"
            ).format(partners), (
                event.contract_reference,
                event.confidentiality_agreement,
                event.contract_valid_until,
                event.originator_version,
                position,
                event.originator_id,
            )
        if isinstance(event, DataRightsRequest.PartnersNotified):
            return self._notified(event, position)
        if isinstance(event, DataRightsRequest.PartnerAcknowledged):
            return sql.SQL(
                "UPDATE {} SET status = %s, acknowledged_at = %s, position = %s"
                " WHERE partner_id = %s AND request_id = %s"
            ).format(notifications), (
                NoticeStatus.ACKNOWLEDGED.value,
                event.timestamp,
                position,
                event.partner_id,
                event.originator_id,
            )
        if isinstance(event, DataRightsRequest.DeadlineExtended):
            return sql.SQL(
                "WITH r AS (UPDATE {} SET due_at = %(due)s WHERE request_id = %(id)s)"
                " UPDATE {} SET due_at = %(due)s WHERE request_id = %(id)s"
            ).format(self.table("partner_requests"), notifications), {
                "due": event.due_at,
                "id": event.originator_id,
            }
        if isinstance(
            event,
            DataRightsRequest.Expired | DataRightsRequest.Denied | DataRightsRequest.Revoked,
        ):
            return sql.SQL(
                "UPDATE {} SET status = %s, position = %s WHERE request_id = %s AND status = %s"
            ).format(notifications), (
                NoticeStatus.LAPSED.value,
                position,
                event.originator_id,
                NoticeStatus.AWAITING.value,
            )
        return None

    def _notified(
        self, event: DataRightsRequest.PartnersNotified, position: int
    ) -> tuple[sql.Composed, Any] | None:
        if not event.notifications:
            return None
        status = NoticeStatus.AWAITING if event.awaiting_acknowledgement else NoticeStatus.INFORMED
        partner_ids = [UUID(str(n["partner_id"])) for n in event.notifications]
        categories = [",".join(sorted(n["categories"])) for n in event.notifications]
        return sql.SQL(
            "INSERT INTO {notifications} (partner_id, request_id, request_type, categories,"
            " status, notified_at, due_at, position)"
            " SELECT n.partner_id, r.request_id, r.request_type,"
            " string_to_array(n.categories, ','), %(status)s, %(at)s, r.due_at, %(position)s"
            " FROM unnest(%(partners)s::uuid[], %(categories)s::text[])"
            " AS n(partner_id, categories)"
            " JOIN {requests} r ON r.request_id = %(request)s"
            " ON CONFLICT (partner_id, request_id) DO NOTHING"
        ).format(
            notifications=self.table("partner_notifications"),
            requests=self.table("partner_requests"),
        ), {
            "status": status.value,
            "at": event.timestamp,
            "position": position,
            "partners": partner_ids,
            "categories": categories,
            "request": event.originator_id,
        }

    # ---------------------------------------------------------------- reading

    def partner(self, partner_id: UUID) -> tuple[dict[str, Any] | None, int]:
        rows, position = self.fetch(
            sql.SQL("SELECT * FROM {} WHERE partner_id = %(id)s").format(self.table("partners")),
            {"id": partner_id},
        )
        return (rows[0] if rows else None), position

    def list_partners(
        self, *, after: tuple[str, UUID] | None, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Partners by name (then id), after the key ``(name, partner_id)``; ``limit`` rows."""
        return self.fetch(
            sql.SQL(
                "SELECT * FROM {} WHERE %(after)s::boolean IS NOT TRUE"
                " OR (name, partner_id) > (%(name)s::text, %(id)s::uuid)"
                " ORDER BY name, partner_id LIMIT %(limit)s"
            ).format(self.table("partners")),
            {
                "after": after is not None,
                "name": after[0] if after else None,
                "id": after[1] if after else None,
                "limit": limit,
            },
        )

    def notifications(
        self,
        partner_id: UUID,
        *,
        status: NoticeStatus | None,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
        """The partner's row (None when unknown) and its notifications, soonest due first
        (then by request id), after the key ``(due_at, request_id)``; one snapshot."""
        rows, position = self.fetch(
            sql.SQL(
                "SELECT p.partner_id AS known, n.* FROM {partners} p"
                " LEFT JOIN LATERAL (SELECT * FROM {notifications} n"
                "  WHERE n.partner_id = p.partner_id"
                "  AND (%(status)s::text IS NULL OR n.status = %(status)s::text)"
                "  AND (%(after)s::boolean IS NOT TRUE"
                "   OR (n.due_at, n.request_id) > (%(due)s::timestamptz, %(id)s::uuid))"
                "  ORDER BY n.due_at, n.request_id LIMIT %(limit)s) n ON true"
                " WHERE p.partner_id = %(partner)s"
                " ORDER BY n.due_at, n.request_id"
            ).format(
                partners=self.table("partners"),
                notifications=self.table("partner_notifications"),
            ),
            {
                "partner": partner_id,
                "status": status.value if status else None,
                "after": after is not None,
                "due": after[0] if after else None,
                "id": after[1] if after else None,
                "limit": limit,
            },
        )
        if not rows:
            return None, [], position
        return (
            {"partner_id": partner_id},
            [r for r in rows if r["request_id"] is not None],
            position,
        )
