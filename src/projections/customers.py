"""Customer views: the current profile, and the consent ledger."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.customer import Customer
from rightsledger.projections.base import View, as_json, jsonable


class CustomerProfileView(View):
    """``customer_profile``: current personal data by category, purposes, consent per channel."""

    name = "customer_profile"
    tables = ("customer_profile",)

    def create_statements(self) -> list[sql.Composed]:
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " customer_id uuid PRIMARY KEY,"
                " policy_version text NOT NULL,"
                " data jsonb NOT NULL,"
                " purposes jsonb NOT NULL,"
                " consents jsonb NOT NULL DEFAULT '{{}}',"
                " invoices jsonb NOT NULL DEFAULT '{{}}',"
                " activity jsonb NOT NULL DEFAULT '[]',"
                " registered_at timestamptz NOT NULL,"
                " modified_at timestamptz NOT NULL,"
                " version integer NOT NULL,"
                " position bigint NOT NULL)"
            ).format(self.table("customer_profile"))
        ]

    @singledispatchmethod
    def apply(self, event: Any, curs: Cursor[DictRow], position: int) -> None:
        """Events this view does not project change nothing here."""

    def _update(
        self,
        curs: Cursor[DictRow],
        event: Customer.Event,
        position: int,
        assignment: sql.Composable,
        params: dict[str, Any],
    ) -> None:
        curs.execute(
            sql.SQL(
                "UPDATE {} SET {}, modified_at = %(at)s, version = %(version)s,"
                " position = %(position)s WHERE customer_id = %(id)s"
            ).format(self.table("customer_profile"), assignment),
            {
                **params,
                "at": event.timestamp,
                "version": event.originator_version,
                "position": position,
                "id": event.originator_id,
            },
        )

    @apply.register
    def _(self, event: Customer.Registered, curs: Cursor[DictRow], position: int) -> None:
        curs.execute(
            sql.SQL(
                "INSERT INTO {} (customer_id, policy_version, data, purposes, registered_at,"
                " modified_at, version, position) VALUES (%(id)s, %(policy)s, %(data)s,"
                " %(purposes)s, %(at)s, %(at)s, %(version)s, %(position)s)"
                " ON CONFLICT (customer_id) DO NOTHING"
            ).format(self.table("customer_profile")),
            {
                "id": event.originator_id,
                "policy": event.policy_version,
                "data": as_json(event.data),
                "purposes": as_json(event.purposes),
                "at": event.timestamp,
                "version": event.originator_version,
                "position": position,
            },
        )

    @apply.register
    def _(self, event: Customer.DetailsCorrected, curs: Cursor[DictRow], position: int) -> None:
        self._update(
            curs,
            event,
            position,
            sql.SQL(
                "data = jsonb_set(data, ARRAY[%(category)s],"
                " coalesce(data -> %(category)s, '{}'::jsonb) || %(changes)s::jsonb)"
            ),
            {"category": event.category, "changes": as_json(event.changes)},
        )

    @apply.register
    def _(self, event: Customer.ConsentGranted, curs: Cursor[DictRow], position: int) -> None:
        self._consent(curs, event, position, granted=True)

    @apply.register
    def _(self, event: Customer.ConsentWithdrawn, curs: Cursor[DictRow], position: int) -> None:
        self._consent(curs, event, position, granted=False)

    def _consent(
        self,
        curs: Cursor[DictRow],
        event: Customer.ConsentGranted | Customer.ConsentWithdrawn,
        position: int,
        *,
        granted: bool,
    ) -> None:
        state = {
            event.channel: {
                "granted": granted,
                "evidence": event.evidence,
                "changed_at": event.timestamp,
            }
        }
        self._update(
            curs,
            event,
            position,
            sql.SQL("consents = consents || %(state)s::jsonb"),
            {"state": as_json(state)},
        )

    @apply.register
    def _(self, event: Customer.InvoiceRecorded, curs: Cursor[DictRow], position: int) -> None:
        invoice = {
            str(event.invoice_id): {
                "amount": event.amount,
                "currency": event.currency,
                "status": event.status,
                "issued_at": event.issued_at,
            }
        }
        self._update(
            curs,
            event,
            position,
            sql.SQL("invoices = invoices || %(invoice)s::jsonb"),
            {"invoice": as_json(invoice)},
        )

    @apply.register
    def _(self, event: Customer.ActivityLogged, curs: Cursor[DictRow], position: int) -> None:
        entry = {
            "entry_id": event.entry_id,
            "kind": event.kind,
            "reason": event.reason,
            "detail": event.detail,
            "occurred_at": event.occurred_at,
        }
        self._update(
            curs,
            event,
            position,
            sql.SQL("activity = activity || jsonb_build_array(%(entry)s::jsonb)"),
            {"entry": as_json(entry)},
        )

    @apply.register
    def _(self, event: Customer.DataDisclosed, curs: Cursor[DictRow], position: int) -> None:
        self._update(curs, event, position, sql.SQL("policy_version = policy_version"), {})

    # ---------------------------------------------------------------- queries

    def get(self, customer_id: UUID) -> tuple[dict[str, Any] | None, int]:
        rows, position = self.fetch(
            sql.SQL("SELECT * FROM {} WHERE customer_id = %(id)s").format(
                self.table("customer_profile")
            ),
            {"id": customer_id},
        )
        return (rows[0] if rows else None), position


class ConsentLedgerView(View):
    """``consent_ledger``: every grant and withdrawal with its evidence, in order."""

    name = "consent_ledger"
    tables = ("consent_ledger",)

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
    def apply(self, event: Any, curs: Cursor[DictRow], position: int) -> None:
        """Events this view does not project change nothing here."""

    def _record(
        self,
        curs: Cursor[DictRow],
        event: Customer.ConsentGranted | Customer.ConsentWithdrawn,
        position: int,
        *,
        granted: bool,
        request_id: UUID | None,
    ) -> None:
        curs.execute(
            sql.SQL(
                "INSERT INTO {} (customer_id, version, channel, granted, evidence, actor,"
                " recorded_at, request_id, position) VALUES (%(id)s, %(version)s, %(channel)s,"
                " %(granted)s, %(evidence)s, %(actor)s, %(at)s, %(request)s, %(position)s)"
                " ON CONFLICT DO NOTHING"
            ).format(self.table("consent_ledger")),
            {
                "id": event.originator_id,
                "version": event.originator_version,
                "channel": event.channel,
                "granted": granted,
                "evidence": as_json(event.evidence),
                "actor": event.actor,
                "at": event.timestamp,
                "request": request_id,
                "position": position,
            },
        )

    @apply.register
    def _(self, event: Customer.ConsentGranted, curs: Cursor[DictRow], position: int) -> None:
        self._record(curs, event, position, granted=True, request_id=None)

    @apply.register
    def _(self, event: Customer.ConsentWithdrawn, curs: Cursor[DictRow], position: int) -> None:
        self._record(curs, event, position, granted=False, request_id=event.request_id)

    def history(self, customer_id: UUID) -> tuple[list[dict[str, Any]], int]:
        return self.fetch(
            sql.SQL(
                "SELECT channel, granted, evidence, actor, recorded_at, version, request_id"
                " FROM {} WHERE customer_id = %(id)s ORDER BY version"
            ).format(self.table("consent_ledger")),
            {"id": customer_id},
        )


__all__ = ["ConsentLedgerView", "CustomerProfileView", "jsonable"]
