"""Customer views: the current profile, and the consent ledger."""

from __future__ import annotations

from datetime import datetime
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from psycopg import sql

from rightsledger.domain.customer import Customer
from rightsledger.projections.base import AppendView, Kinds, RowView, jsonable

_CUSTOMER_EVENTS = Kinds(Customer.Registered, Customer.Event)


class CustomerProfileView(RowView):
    """``customer_profile``: current personal data by category, purposes, consent per channel."""

    name = "customer_profile"
    tables = ("customer_profile",)
    table_base = "customer_profile"
    key = "customer_id"
    columns = {
        "customer_id": "uuid",
        "policy_version": "text",
        "data": "jsonb",
        "purposes": "jsonb",
        "consents": "jsonb",
        "invoices": "jsonb",
        "activity": "jsonb",
        "registered_at": "timestamptz",
        "modified_at": "timestamptz",
        "version": "integer",
        "erased_at": "timestamptz",
        "retained_until": "timestamptz",
        "purged_at": "timestamptz",
        "position": "bigint",
    }
    json_columns = frozenset({"data", "purposes", "consents", "invoices", "activity"})

    def create_statements(self) -> list[sql.Composed]:
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " customer_id uuid PRIMARY KEY,"
                " policy_version text NOT NULL,"
                " data jsonb NOT NULL,"
                " purposes jsonb NOT NULL,"
                " consents jsonb NOT NULL,"
                " invoices jsonb NOT NULL,"
                " activity jsonb NOT NULL,"
                " registered_at timestamptz NOT NULL,"
                " modified_at timestamptz NOT NULL,"
                " version integer NOT NULL,"
                " erased_at timestamptz,"
                " retained_until timestamptz,"
                " purged_at timestamptz,"
                " position bigint NOT NULL)"
            ).format(self.table("customer_profile"))
        ]

    def key_of(self, event: Any) -> UUID | None:
        if _CUSTOMER_EVENTS(event):
            return event.originator_id
        return None

    @staticmethod
    def _touch(row: dict[str, Any], event: Customer.Event, position: int) -> dict[str, Any]:
        row["modified_at"] = event.timestamp
        row["version"] = event.originator_version
        row["position"] = position
        return row

    @singledispatchmethod
    def fold(self, event: Any, row: dict[str, Any] | None, position: int) -> dict[str, Any] | None:
        """Customer events this view does not show still move the row's version."""
        if row is None:
            return None
        return self._touch(row, event, position)

    @fold.register
    def _(self, event: Customer.Registered, row: None, position: int) -> dict[str, Any]:
        return {
            "customer_id": event.originator_id,
            "policy_version": event.policy_version,
            "data": jsonable(event.data),
            "purposes": jsonable(event.purposes),
            "consents": {},
            "invoices": {},
            "activity": [],
            "registered_at": event.timestamp,
            "modified_at": event.timestamp,
            "version": event.originator_version,
            "erased_at": None,
            "retained_until": None,
            "purged_at": None,
            "position": position,
        }

    @fold.register
    def _(
        self, event: Customer.DetailsCorrected, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        row["data"].setdefault(event.category, {}).update(event.changes)
        return self._touch(row, event, position)

    @fold.register
    def _(
        self, event: Customer.ConsentGranted, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return self._consent(row, event, position, granted=True)

    @fold.register
    def _(
        self, event: Customer.ConsentWithdrawn, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        return self._consent(row, event, position, granted=False)

    def _consent(
        self,
        row: dict[str, Any],
        event: Customer.ConsentGranted | Customer.ConsentWithdrawn,
        position: int,
        *,
        granted: bool,
    ) -> dict[str, Any]:
        row["consents"][event.channel] = {
            "granted": granted,
            "evidence": jsonable(event.evidence),
            "changed_at": jsonable(event.timestamp),
        }
        return self._touch(row, event, position)

    @fold.register
    def _(
        self, event: Customer.InvoiceRecorded, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        row["invoices"][str(event.invoice_id)] = jsonable(
            {
                "amount": event.amount,
                "currency": event.currency,
                "status": event.status,
                "issued_at": event.issued_at,
            }
        )
        return self._touch(row, event, position)

    @fold.register
    def _(
        self, event: Customer.ActivityLogged, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        row["activity"].append(
            jsonable(
                {
                    "entry_id": event.entry_id,
                    "kind": event.kind,
                    "reason": event.reason,
                    "detail": event.detail,
                    "occurred_at": event.occurred_at,
                }
            )
        )
        return self._touch(row, event, position)

    @fold.register
    def _(
        self, event: Customer.ActivityPurged, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        gone = {str(entry_id) for entry_id in event.entries}
        row["activity"] = [e for e in row["activity"] if str(e.get("entry_id")) not in gone]
        return self._touch(row, event, position)

    @fold.register
    def _(self, event: Customer.Erased, row: dict[str, Any], position: int) -> dict[str, Any]:
        payment = row["data"].get("payment_method")
        row["data"] = {"payment_method": payment} if payment else {}
        row["activity"] = []
        row["erased_at"] = event.timestamp
        row["retained_until"] = event.retained_until
        return self._touch(row, event, position)

    @fold.register
    def _(
        self, event: Customer.RetainedRecordsPurged, row: dict[str, Any], position: int
    ) -> dict[str, Any]:
        row["data"] = {}
        row["invoices"] = {}
        row["purged_at"] = event.timestamp
        return self._touch(row, event, position)

    # ---------------------------------------------------------------- queries

    def retention_ended(self, now: datetime) -> list[UUID]:
        """Erased customers whose retained billing records are past their retention date."""
        rows, _ = self.fetch(
            sql.SQL(
                "SELECT customer_id FROM {} WHERE erased_at IS NOT NULL AND purged_at IS NULL"
                " AND retained_until < %(now)s ORDER BY retained_until LIMIT 500"
            ).format(self.table("customer_profile")),
            {"now": now},
        )
        return [row["customer_id"] for row in rows]

    def get(self, customer_id: UUID) -> tuple[dict[str, Any] | None, int]:
        rows, position = self.fetch(
            sql.SQL("SELECT * FROM {} WHERE customer_id = %(id)s").format(
                self.table("customer_profile")
            ),
            {"id": customer_id},
        )
        return (rows[0] if rows else None), position


class ConsentLedgerView(AppendView):
    """``consent_ledger``: every grant and withdrawal with its evidence, in order."""

    name = "consent_ledger"
    tables = ("consent_ledger",)
    table_base = "consent_ledger"
    columns = {
        "customer_id": "uuid",
        "version": "integer",
        "channel": "text",
        "granted": "boolean",
        "evidence": "jsonb",
        "actor": "text",
        "recorded_at": "timestamptz",
        "request_id": "uuid",
        "position": "bigint",
    }
    json_columns = frozenset({"evidence"})
    conflict = ("customer_id", "version")

    def create_statements(self) -> list[sql.Composed]:
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " customer_id uuid NOT NULL,"
                " version integer NOT NULL,"
                " channel text NOT NULL,"
                " granted boolean NOT NULL,"
                " evidence jsonb NOT NULL,"
                " actor text NOT NULL,"
                " recorded_at timestamptz NOT NULL,"
                " request_id uuid,"
                " position bigint NOT NULL,"
                " PRIMARY KEY (customer_id, version))"
            ).format(self.table("consent_ledger"))
        ]

    @singledispatchmethod
    def rows(self, event: Any, position: int) -> list[dict[str, Any]]:
        """Only consent events add rows."""
        return []

    @rows.register
    def _(self, event: Customer.ConsentGranted, position: int) -> list[dict[str, Any]]:
        return [self._row(event, position, granted=True, request_id=None)]

    @rows.register
    def _(self, event: Customer.ConsentWithdrawn, position: int) -> list[dict[str, Any]]:
        return [self._row(event, position, granted=False, request_id=event.request_id)]

    @staticmethod
    def _row(
        event: Customer.ConsentGranted | Customer.ConsentWithdrawn,
        position: int,
        *,
        granted: bool,
        request_id: UUID | None,
    ) -> dict[str, Any]:
        return {
            "customer_id": event.originator_id,
            "version": event.originator_version,
            "channel": event.channel,
            "granted": granted,
            "evidence": jsonable(event.evidence),
            "actor": event.actor,
            "recorded_at": event.timestamp,
            "request_id": request_id,
            "position": position,
        }

    def history(self, customer_id: UUID) -> tuple[list[dict[str, Any]], int]:
        return self.fetch(
            sql.SQL(
                "SELECT channel, granted, evidence, actor, recorded_at, version, request_id"
                " FROM {} WHERE customer_id = %(id)s ORDER BY version"
            ).format(self.table("consent_ledger")),
            {"id": customer_id},
        )
