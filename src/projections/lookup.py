"""Finding a customer by email, phone or account reference, with no searchable clear text.

The ``customer_lookup`` view is a *blind index*: for each customer, the keyed HMAC-SHA256
of their normalised email, phone and account reference, never the values themselves. The
HMAC key is the key vault's index key (``KeyVault.index_key``), separate from the data keys
that seal personal values in the events. Looking up a value computes the same HMAC and
compares digests; without the key, a digest cannot be tested against guesses.

Entries follow the events: registration writes them, a correction of the email, phone or
account reference replaces that entry (the old value no longer finds the customer), and
erasure deletes the customer's row. The view is applied with the customer profile in the
projection worker's transaction, so ``?min_position=`` gives a client that just registered
(or corrected, or erased) read-your-writes, as for the profile.

Normalisation, the same when indexing and when looking up:

- email: trimmed, NFKC, casefolded (``Ada@Example.ORG`` finds ``ada@example.org``);
- phone: NFKC, then only the digits, with a leading ``+`` kept and a leading ``00``
  (the international prefix) read as ``+``; ``+44 20 7946 0000``, ``+44-20-7946-0000`` and
  ``0044 20 7946 0000`` are one number. A number given in national form (``020 7946
  0000``) matches only that form: turning it into E.164 needs the country it was dialled
  in, which the store does not know;
- account reference: trimmed, NFKC, inner whitespace removed, casefolded (references are
  read from letters and bills and typed back in any case).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Sequence
from enum import StrEnum
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.customer import Customer
from rightsledger.projections.base import Kinds, Positioned, RowView

_INDEXED = Kinds(Customer.Registered, Customer.Erased)
_CORRECTED = Kinds(Customer.DetailsCorrected)
_ERASED = Kinds(Customer.Erased)

ERASED = "[erased]"
"""How a sealed value reads once its key is destroyed: never indexed."""


class Identifier(StrEnum):
    """What a customer can be found by."""

    EMAIL = "email"
    PHONE = "phone"
    ACCOUNT = "account"


_WHERE = {
    Identifier.EMAIL: ("identity_contact", "email"),
    Identifier.PHONE: ("identity_contact", "phone"),
    Identifier.ACCOUNT: ("account_service", "reference"),
}
"""The category and field each identifier is taken from."""

_SPACE = re.compile(r"\s+")
_NOT_DIGIT = re.compile(r"[^0-9]")


def normalise(kind: Identifier, value: str) -> str | None:
    """The form of ``value`` that is indexed and looked up; None when nothing is left."""
    text = unicodedata.normalize("NFKC", value).strip()
    if kind is Identifier.EMAIL:
        out = text.casefold()
    elif kind is Identifier.PHONE:
        plus = text.startswith("+")
        digits = _NOT_DIGIT.sub("", text)
        if not plus and digits.startswith("00"):
            plus, digits = True, digits[2:]
        out = ("+" + digits if plus else digits) if digits else ""
    else:
        out = _SPACE.sub("", text).casefold()
    return out or None


class BlindIndex:
    """Digests of normalised identifiers under the vault's index key."""

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key = key

    def digest(self, kind: Identifier, value: str) -> bytes | None:
        """HMAC-SHA256(index key, "<kind>:<normalised value>"); None when there is no value."""
        if value == ERASED:
            return None
        normal = normalise(kind, value)
        if normal is None:
            return None
        message = f"{kind.value}:{normal}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).digest()


class CustomerLookupView(RowView):
    """``customer_lookup``: one row per customer with the digest of each identifier held."""

    name = "customer_lookup"
    tables = ("customer_lookup",)
    table_base = "customer_lookup"
    key = "customer_id"
    columns = {
        "customer_id": "uuid",
        "email": "bytea",
        "phone": "bytea",
        "account": "bytea",
        "erased": "boolean",
        "position": "bigint",
    }

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        suffix: str = "",
        blind_index: BlindIndex | None = None,
        **context: Any,
    ) -> None:
        super().__init__(datastore, suffix=suffix, **context)
        self._index = blind_index

    @property
    def blind_index(self) -> BlindIndex:
        if self._index is None:
            msg = "the customer_lookup view needs the blind index (ViewSet.open(blind_index=...))"
            raise RuntimeError(msg)
        return self._index

    def create_statements(self) -> list[sql.Composed]:
        table = self.table("customer_lookup")
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " customer_id uuid PRIMARY KEY,"
                " email bytea,"
                " phone bytea,"
                " account bytea,"
                " erased boolean NOT NULL DEFAULT false,"
                " position bigint NOT NULL)"
            ).format(table),
            *(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    self.index(f"customer_lookup_{kind.value}"), table, sql.Identifier(kind)
                )
                for kind in Identifier
            ),
        ]

    # ---------------------------------------------------------------- writing

    def key_of(self, event: Any) -> UUID | None:
        if _INDEXED(event):
            return event.originator_id
        if _CORRECTED(event) and event.category in (
            "identity_contact",
            "account_service",
        ):
            return event.originator_id
        return None

    def _digests(self, data: dict[str, dict[str, str]]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for kind, (category, field) in _WHERE.items():
            fields = data.get(category) or {}
            if field in fields:
                out[kind.value] = self.blind_index.digest(kind, str(fields[field]))
        return out

    @singledispatchmethod
    def fold(self, event: Any, row: dict[str, Any] | None, position: int) -> dict[str, Any] | None:
        """Events this view does not index change nothing."""
        return None

    @fold.register
    def _(self, event: Customer.Registered, row: None, position: int) -> dict[str, Any]:
        found = self._digests(event.data)
        return {
            "customer_id": event.originator_id,
            "email": found.get("email"),
            "phone": found.get("phone"),
            "account": found.get("account"),
            "erased": False,
            "position": position,
        }

    @fold.register
    def _(
        self, event: Customer.DetailsCorrected, row: dict[str, Any] | None, position: int
    ) -> dict[str, Any] | None:
        if row is None or row["erased"]:
            return None
        found = self._digests({event.category: event.changes})
        if not found:
            return None
        return {**row, **found, "position": position}

    @fold.register
    def _(
        self, event: Customer.Erased, row: dict[str, Any] | None, position: int
    ) -> dict[str, Any]:
        return {
            "customer_id": event.originator_id,
            "email": None,
            "phone": None,
            "account": None,
            "erased": True,
            "position": position,
        }

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        super().write(curs, events)
        erased = [e.originator_id for e, _ in events if _ERASED(e)]
        if erased:
            # Erasure removes the customer's entries: the row goes, digests and all.
            curs.execute(
                sql.SQL("DELETE FROM {} WHERE customer_id = ANY(%s)").format(
                    self.table("customer_lookup")
                ),
                (erased,),
            )

    # ---------------------------------------------------------------- reading

    def find(
        self, kind: Identifier, value: str, *, after: UUID | None, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Profiles (``customer_profile`` rows) of the customers the value identifies, by
        customer id after ``after``, at most ``limit``; and the position, in one snapshot.

        The profile is applied in the same transaction as this view, so both reflect the
        same position."""
        digest = self.blind_index.digest(kind, value)
        if digest is None:
            return [], self.position()
        return self.fetch(
            sql.SQL(
                "SELECT p.* FROM {lookup} l JOIN {profile} p USING (customer_id)"
                " WHERE l.{column} = %(digest)s AND (%(after)s::uuid IS NULL"
                " OR l.customer_id > %(after)s::uuid)"
                " ORDER BY l.customer_id LIMIT %(limit)s"
            ).format(
                lookup=self.table("customer_lookup"),
                profile=sql.Identifier(self.datastore.schema, "customer_profile"),
                column=sql.Identifier(kind.value),
            ),
            {"digest": digest, "after": after, "limit": limit},
        )
