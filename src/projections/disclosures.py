"""The disclosures register: every share, per partner, basis, purpose, categories, reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.customer import Customer
from rightsledger.domain.partner import Partner
from rightsledger.projections.base import Kinds, Positioned, View, copy_rows, copying

_SHOWN = Kinds(Partner.Registered, Partner.Event, Customer.DataDisclosed)
"""The events this view may show: the partners' and the customers' disclosures."""

SHARE_COLUMNS = {
    "disclosure_id": "uuid",
    "customer_id": "uuid",
    "partner_id": "uuid",
    "basis": "text",
    "purpose": "text",
    "categories": "text[]",
    "reference": "text",
    "actor": "text",
    "disclosed_at": "timestamptz",
    "position": "bigint",
}
"""The columns of ``disclosures``, in the order of a share's fields below."""


class DisclosuresView(View):
    """``disclosures`` and ``disclosure_partners``: the record an authority asks for first."""

    name = "disclosures"
    tables = ("disclosures", "disclosure_partners")

    def create_statements(self) -> list[sql.Composed]:
        disclosures = self.table("disclosures")
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " partner_id uuid PRIMARY KEY,"
                " name text NOT NULL,"
                " kind text NOT NULL,"
                " contract_reference text,"
                " contract_valid_until date)"
            ).format(self.table("disclosure_partners")),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " disclosure_id uuid PRIMARY KEY,"
                " customer_id uuid NOT NULL,"
                " partner_id uuid NOT NULL,"
                " basis text NOT NULL,"
                " purpose text NOT NULL,"
                " categories text[] NOT NULL,"
                " reference text NOT NULL,"
                " actor text NOT NULL,"
                " disclosed_at timestamptz NOT NULL,"
                " position bigint NOT NULL)"
            ).format(disclosures),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (partner_id, position)").format(
                self.index("disclosures_partner"), disclosures
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (customer_id, position)").format(
                self.index("disclosures_customer"), disclosures
            ),
        ]

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        partners = []
        renewals = []
        shares = []
        for event, position in events:
            if not _SHOWN(event):
                continue
            if isinstance(event, Partner.Registered):
                partners.append(
                    {
                        "id": event.originator_id,
                        "name": event.name,
                        "kind": event.kind,
                        "ref": event.contract_reference,
                        "until": event.contract_valid_until,
                    }
                )
            elif isinstance(event, Partner.ContractRenewed):
                # an UPDATE: PostgreSQL checks NOT NULL before ON CONFLICT, so a renewal
                # cannot be an upsert without the partner's name and kind
                renewals.append(
                    {
                        "id": event.originator_id,
                        "ref": event.contract_reference,
                        "until": event.contract_valid_until,
                    }
                )
            elif isinstance(event, Customer.DataDisclosed):
                shares.append(
                    {
                        "id": event.disclosure_id,
                        "customer": event.originator_id,
                        "partner": event.partner_id,
                        "basis": event.basis,
                        "purpose": event.purpose,
                        "categories": list(event.categories),
                        "reference": event.reference,
                        "actor": event.actor,
                        "at": event.timestamp,
                        "position": position,
                    }
                )
        if partners:
            curs.executemany(
                sql.SQL(
                    "INSERT INTO {} AS p (partner_id, name, kind, contract_reference,"
                    " contract_valid_until) VALUES (%(id)s, %(name)s, %(kind)s, %(ref)s, %(until)s)"
                    " ON CONFLICT (partner_id) DO UPDATE SET"
                    " contract_reference = EXCLUDED.contract_reference,"
                    " contract_valid_until = EXCLUDED.contract_valid_until"
                ).format(self.table("disclosure_partners")),
                partners,
            )
        if renewals:
            curs.executemany(
                sql.SQL(
                    "UPDATE {} SET contract_reference = %(ref)s, contract_valid_until = %(until)s"
                    " WHERE partner_id = %(id)s"
                ).format(self.table("disclosure_partners")),
                renewals,
            )
        if shares and copying():
            copy_rows(
                curs,
                self.table("disclosures"),
                SHARE_COLUMNS,
                frozenset(),
                [dict(zip(SHARE_COLUMNS, share.values(), strict=True)) for share in shares],
            )
        elif shares:
            curs.executemany(
                sql.SQL(
                    "INSERT INTO {} (disclosure_id, customer_id, partner_id, basis, purpose,"
                    " categories, reference, actor, disclosed_at, position) VALUES (%(id)s,"
                    " %(customer)s, %(partner)s, %(basis)s, %(purpose)s, %(categories)s,"
                    " %(reference)s, %(actor)s, %(at)s, %(position)s)"
                    " ON CONFLICT (disclosure_id) DO NOTHING"
                ).format(self.table("disclosures")),
                shares,
            )

    # ---------------------------------------------------------------- queries

    def _select(
        self, column: str, value: UUID, limit: int, after: int | None
    ) -> tuple[list[dict[str, Any]], int]:
        return self.fetch(
            sql.SQL(
                "SELECT d.disclosure_id, d.customer_id, d.partner_id, p.name AS partner_name,"
                " p.kind AS partner_kind, d.basis, d.purpose, d.categories, d.reference, d.actor,"
                " d.disclosed_at, d.position FROM {} d LEFT JOIN {} p USING (partner_id)"
                " WHERE {} = %(value)s AND d.position > %(after)s"
                " ORDER BY d.position LIMIT %(limit)s"
            ).format(
                self.table("disclosures"),
                self.table("disclosure_partners"),
                sql.Identifier("d", column),
            ),
            {"value": value, "limit": limit, "after": after or 0},
        )

    def for_partner(
        self, partner_id: UUID, *, limit: int = 100, after: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Shares to one partner in log order, after the position ``after`` (keyset pages)."""
        return self._select("partner_id", partner_id, limit, after)

    def for_customer(
        self, customer_id: UUID, *, limit: int = 100, after: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Shares of one customer's data in log order, after the position ``after``."""
        return self._select("customer_id", customer_id, limit, after)
