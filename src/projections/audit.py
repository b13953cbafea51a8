"""The audit trail: every event, per customer and globally, in order, human-readable.

Summaries name what happened and which fields or categories were touched, never
the customer's personal values themselves (names, contact details, addresses, free
text: the fields event classes declare ``Personal``), so the trail can be kept after a
customer's data is erased.

Reads of personal data are ``AccessRecord`` aggregates of their own; the trail files
each under the customer it names (``customer_id``) with the type names reads always
had (``Customer.DataAccessed``, ``Customer.AccessRefused``), and also keeps them, with
role, categories, what was read and the reason of a refusal, in ``access_log``: the
reads a customer's access export lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import singledispatch
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.operations import FollowerSkip
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import Kinds, Positioned, View, insert_rows

_CUSTOMER_EVENTS = Kinds(Customer.Event, Customer.Registered)
_NAMING_THEIR_CUSTOMER = Kinds(
    DataRightsRequest.Submitted, AccessRecord.DataAccessed, AccessRecord.AccessRefused
)


def event_type(event: object) -> str:
    """``Aggregate.Event``, e.g. ``Customer.ConsentGranted``."""
    return type(event).__qualname__


TRAIL_TYPES: dict[type, str] = {
    AccessRecord.DataAccessed: "Customer.DataAccessed",
    AccessRecord.AccessRefused: "Customer.AccessRefused",
}
"""Reads keep, in the customer's trail, the type names they had on the customer's stream."""


def trail_type(event: object) -> str:
    """The event's type as the trail shows it (``event_type``, but for reads)."""
    return TRAIL_TYPES.get(type(event)) or event_type(event)


class UndescribedEventError(LookupError):
    """An event class has no description in the audit trail."""


@singledispatch
def describe(event: object) -> str:
    """A one-line account of an event, in words, from the fields its class declares
    ``Public`` or ``Internal`` (``rightsledger.domain.personal``), never a ``Personal``
    value (of a personal mapping, only the names of its fields). Every event class has its
    own; one without is refused rather than summarised by its name."""
    raise UndescribedEventError(f"no audit description for {event_type(event)}")


@describe.register
def _(event: Customer.Registered) -> str:
    categories = ", ".join(sorted(event.data))
    return f"Customer registered under privacy policy {event.policy_version} ({categories})"


@describe.register
def _(event: Customer.DetailsCorrected) -> str:
    fields = ", ".join(sorted(event.changes))
    via = f" for request {event.request_id}" if event.request_id else ""
    return f"Corrected {event.category}: {fields}{via}"


@describe.register
def _(event: Customer.ConsentGranted) -> str:
    evidence = event.evidence
    return (
        f"Marketing consent by {event.channel} granted "
        f"({evidence.get('method')}, wording {evidence.get('wording_version')})"
    )


@describe.register
def _(event: Customer.ConsentWithdrawn) -> str:
    via = f" for request {event.request_id}" if event.request_id else ""
    return f"Marketing consent by {event.channel} withdrawn{via}"


@describe.register
def _(event: Customer.InvoiceRecorded) -> str:
    return f"Invoice {event.invoice_id} recorded ({event.status})"


@describe.register
def _(event: Customer.ActivityLogged) -> str:
    return f"{event.kind.capitalize()} activity logged for {event.reason}"


@describe.register
def _(event: Customer.DataDisclosed) -> str:
    categories = ", ".join(event.categories)
    return (
        f"Shared {categories} with partner {event.partner_id} on basis {event.basis} "
        f"for {event.purpose}"
    )


@describe.register
def _(event: Partner.Registered) -> str:
    return f"Partner registered ({event.kind})"


@describe.register
def _(event: Partner.ContractRenewed) -> str:
    return f"Partner contract {event.contract_reference} valid until {event.contract_valid_until}"


@describe.register
def _(event: DataRightsRequest.Submitted) -> str:
    return (
        f"{event.request_type.replace('_', '-').capitalize()} request received by "
        f"{event.channel.replace('_', ' ')} under {event.jurisdiction.upper()}, due "
        f"{event.due_at.date().isoformat()}"
    )


@describe.register
def _(event: DataRightsRequest.IdentityVerified) -> str:
    return f"Requester's identity verified ({event.method})"


@describe.register
def _(event: DataRightsRequest.DeadlineExtended) -> str:
    return f"Deadline extended to {event.due_at.date().isoformat()}"


@describe.register
def _(_event: DataRightsRequest.Denied) -> str:
    return "Request denied"


@describe.register
def _(_event: DataRightsRequest.Revoked) -> str:
    return "Request revoked by the requester"


@describe.register
def _(_event: DataRightsRequest.Fulfilled) -> str:
    return "Request fulfilled"


@describe.register
def _(_event: DataRightsRequest.Expired) -> str:
    return "Request expired"


@describe.register
def _(_event: DataRightsRequest.ErasureCarriedOut) -> str:
    return "Erasure carried out: the customer's keys destroyed and their exports deleted"


@describe.register
def _(event: FollowerSkip.Recorded) -> str:
    return (
        f"Operator {event.actor} had the {event.follower} follower skip position "
        f"{event.position}: {event.reason}"
    )


@describe.register
def _(event: Customer.RequestReceived) -> str:
    kind = event.request_type.replace("_", "-").capitalize()
    return f"{kind} request {event.request_id} received"


@describe.register
def _(event: Customer.Erased) -> str:
    return (
        f"Personal data erased for request {event.request_id}; billing records retained until "
        f"{event.retained_until.date().isoformat()}"
    )


@describe.register
def _(event: Customer.ActivityPurged) -> str:
    periods = ", ".join(event.periods) or "no entries left"
    return (
        f"Activity logged for {event.purpose} purged under the retention schedule "
        f"({event.schedule.get('kept', '')}): {len(event.entries)} entries ({periods})"
    )


@describe.register
def _(_event: Customer.RetainedRecordsPurged) -> str:
    return "Retained billing records purged after their retention date"


@describe.register
def _(event: DataRightsRequest.ExportPrepared) -> str:
    return f"Access export prepared: {event.items} items in {', '.join(event.categories)}"


@describe.register
def _(event: DataRightsRequest.PartnersNotified) -> str:
    partners = ", ".join(str(n["partner_id"]) for n in event.notifications) or "none"
    waiting = " (acknowledgement required)" if event.awaiting_acknowledgement else ""
    return f"Recipients notified: {partners}{waiting}"


@describe.register
def _(event: DataRightsRequest.PartnerAcknowledged) -> str:
    return f"Partner {event.partner_id} acknowledged the notification"


@describe.register
def _(event: DataRightsRequest.WorkDone) -> str:
    return f"Work done: {event.action}"


@describe.register
def _(event: DataRightsRequest.DeadlineApproaching) -> str:
    return f"Reminder: due {event.due_at.date().isoformat()}"


@describe.register
def _(event: DataRightsRequest.Overdue) -> str:
    return f"Overdue since {event.due_at.date().isoformat()}"


@describe.register
def _(_event: DataRightsRequest.Escalated) -> str:
    return "Escalated: recipients have not acknowledged and the due date is near"


@describe.register
def _(event: AccessRecord.DataAccessed | Customer.DataAccessed) -> str:
    shown = ", ".join(event.categories) or "nothing"
    return f"Personal data read ({event.what}) by a {event.role} for {event.purpose}: {shown}"


@describe.register
def _(event: AccessRecord.AccessRefused | Customer.AccessRefused) -> str:
    return (
        f"Read refused ({event.what}) to a {event.role} declaring {event.purpose}: {event.reason}"
    )


_NAMES: dict[type, tuple[str, str, Callable[[Any], str]]] = {}


def _names(cls: type) -> tuple[str, str, Callable[[Any], str]]:
    """The aggregate type, the trail's event type and the ``describe`` of an event class."""
    found = _NAMES.get(cls)
    if found is None:
        found = _NAMES[cls] = (
            cls.__qualname__.split(".")[0],
            TRAIL_TYPES.get(cls) or cls.__qualname__,
            describe.dispatch(cls),
        )
    return found


def customer_of(event: object) -> UUID | None:
    """The customer an event concerns, when the event itself says so."""
    if _CUSTOMER_EVENTS(event):
        return event.originator_id
    if _NAMING_THEIR_CUSTOMER(event):
        return event.customer_id  # type: ignore[attr-defined,no-any-return]
    return None


COLUMNS = {
    "position": "bigint",
    "aggregate_id": "uuid",
    "aggregate_type": "text",
    "customer_id": "uuid",
    "version": "integer",
    "event_type": "text",
    "recorded_at": "timestamptz",
    "actor": "text",
    "purpose": "text",
    "summary": "text",
}

ACCESS_COLUMNS = {
    "position": "bigint",
    "record_id": "uuid",
    "customer_id": "uuid",
    "recorded_at": "timestamptz",
    "actor": "text",
    "role": "text",
    "purpose": "text",
    "categories": "jsonb",
    "what": "text",
    "refused": "boolean",
    "reason": "text",
}


class _Rows(NamedTuple):
    trail: list[dict[str, Any]]
    reads: list[dict[str, Any]]
    unresolved: set[UUID]
    """Requests whose customer is to be looked up in the trail."""


class AuditTrailView(View):
    """``audit_trail``: one row per event with position, time, type, actor and purpose;
    ``access_log``: one row per ``AccessRecord`` (a read, answered or refused)."""

    name = "audit_trail"
    tables = ("audit_trail", "access_log")

    def create_statements(self) -> list[sql.Composed]:
        table = self.table("audit_trail")
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " position bigint PRIMARY KEY,"
                " aggregate_id uuid NOT NULL,"
                " aggregate_type text NOT NULL,"
                " customer_id uuid,"
                " version integer NOT NULL,"
                " event_type text NOT NULL,"
                " recorded_at timestamptz NOT NULL,"
                " actor text,"
                " purpose text,"
                " summary text NOT NULL)"
            ).format(table),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (customer_id, position)").format(
                self.index("audit_trail_customer"), table
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (aggregate_id, position)").format(
                self.index("audit_trail_aggregate"), table
            ),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " position bigint PRIMARY KEY,"
                " record_id uuid NOT NULL,"
                " customer_id uuid NOT NULL,"
                " recorded_at timestamptz NOT NULL,"
                " actor text NOT NULL,"
                " role text NOT NULL,"
                " purpose text NOT NULL,"
                " categories jsonb NOT NULL,"
                " what text NOT NULL,"
                " refused boolean NOT NULL,"
                " reason text)"
            ).format(self.table("access_log")),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (customer_id, position)").format(
                self.index("access_log_customer"), self.table("access_log")
            ),
        ]

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        """One row per event; a request's later events take the customer of its submission."""
        self.write_prepared(curs, events, self.prepare(events))

    def prepare(self, events: Sequence[Positioned]) -> _Rows:
        """The rows of ``events``; a request's events whose submission is not among them
        are left without a customer, to be looked up by ``write_prepared``."""
        customers: dict[UUID, UUID | None] = {}
        unresolved = set()
        for event, _ in events:
            customer = customer_of(event)
            if customer is not None:
                customers[event.originator_id] = customer
            elif isinstance(event, DataRightsRequest.Event):
                unresolved.add(event.originator_id)
        unresolved -= customers.keys()
        rows = [
            {
                "position": position,
                "aggregate_id": event.originator_id,
                "aggregate_type": names[0],
                "customer_id": customers.get(event.originator_id),
                "version": event.originator_version,
                "event_type": names[1],
                "recorded_at": event.timestamp,
                "actor": getattr(event, "actor", None),
                "purpose": getattr(event, "purpose", None),
                "summary": names[2](event),
            }
            for event, position in events
            if (names := _names(type(event)))
        ]
        reads = [
            {
                "position": position,
                "record_id": event.originator_id,
                "customer_id": event.customer_id,
                "recorded_at": event.timestamp,
                "actor": event.actor,
                "role": event.role,
                "purpose": event.purpose,
                "categories": list(event.categories),
                "what": event.what,
                "refused": isinstance(event, AccessRecord.AccessRefused),
                "reason": getattr(event, "reason", None),
            }
            for event, position in events
            if isinstance(event, AccessRecord.DataAccessed | AccessRecord.AccessRefused)
        ]
        return _Rows(rows, reads, unresolved)

    def write_prepared(
        self, curs: Cursor[DictRow], events: Sequence[Positioned], prepared: Any
    ) -> None:
        rows, reads, unresolved = prepared
        if unresolved:
            curs.execute(
                sql.SQL(
                    "SELECT DISTINCT aggregate_id, customer_id FROM {} WHERE aggregate_id = ANY(%s)"
                    " AND customer_id IS NOT NULL"
                ).format(self.table("audit_trail")),
                (list(unresolved),),
            )
            found = {row["aggregate_id"]: row["customer_id"] for row in curs.fetchall()}
            for row in rows:
                if row["aggregate_id"] in found:
                    row["customer_id"] = found[row["aggregate_id"]]
        insert_rows(curs, self.table("audit_trail"), COLUMNS, frozenset(), rows, ("position",))
        if reads:
            insert_rows(
                curs,
                self.table("access_log"),
                ACCESS_COLUMNS,
                frozenset({"categories"}),
                reads,
                ("position",),
            )

    def trail(
        self, customer_id: UUID | None, *, after: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """Rows in log order, for one customer or for everyone."""
        where: sql.Composable = sql.SQL("position > %(after)s")
        if customer_id is not None:
            where = sql.SQL("customer_id = %(customer)s AND ") + where
        return self.fetch(
            sql.SQL(
                "SELECT position, recorded_at, event_type, aggregate_type, aggregate_id,"
                " customer_id, version, actor, purpose, summary FROM {} WHERE {}"
                " ORDER BY position LIMIT %(limit)s"
            ).format(self.table("audit_trail"), where),
            {"customer": customer_id, "after": after, "limit": limit},
        )

    def accesses(self, customer_id: UUID) -> tuple[list[dict[str, Any]], int]:
        """Every ``AccessRecord`` of one customer, in log order, and the view's position
        (reads recorded in the former form, on the customer's stream, are not here)."""
        return self.fetch(
            sql.SQL(
                "SELECT position, record_id, recorded_at, actor, role, purpose, categories,"
                " what, refused, reason FROM {} WHERE customer_id = %(customer)s"
                " ORDER BY position"
            ).format(self.table("access_log")),
            {"customer": customer_id},
        )
