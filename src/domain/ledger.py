"""The application service: commands on customers, partners and requests.

``RightsLedger`` is an eventsourcing ``Application``. It knows nothing of HTTP,
settings files or processes: the composition root (``rightsledger.bootstrap``)
gives it an environment (which event store to use), the jurisdictions' deadline
rules and a clock. Every command loads the aggregates it needs, calls the one
aggregate method that decides (the domain rules are the aggregates' own; see
``_command``), and saves the new events in one transaction; it returns the position
(the notification id) of the last event written, so readers can wait for it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Concatenate, ParamSpec, Protocol, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, LRUCache
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, Transcoder
from eventsourcing.utils import resolve_topic

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.deadlines import DeadlineRule
from rightsledger.domain.errors import DomainError, InvalidCommandError, StateError
from rightsledger.domain.naming import register_names
from rightsledger.domain.operations import FollowerSkip
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.retention import DEFAULT_SCHEDULE, RetentionSchedule
from rightsledger.domain.values import RequestStatus

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")
P = ParamSpec("P")

_CONFLICT_RETRIES = 3


class NotFoundError(DomainError):
    """No aggregate of the expected kind has this id."""

    title = "Not found"


class ConcurrentChangeError(StateError):
    """The aggregate kept changing under the command; it was not applied."""

    title = "Concurrent change"


class OutcomeUnknownError(Exception):
    """The store did not confirm the write: the command may or may not have been recorded."""


class CommitUnavailableError(Exception):
    """The event writer is not running; nothing was recorded."""


@dataclass(frozen=True)
class CommandTag:
    """One client command across its retries (``caller`` and the client's idempotency key);
    ``owner`` is the attempt that holds the key now."""

    caller: str
    key: str
    owner: UUID


@dataclass(frozen=True)
class CommandMark:
    """Where a tagged command's events are among those written together, and its result."""

    tag: CommandTag
    start: int
    count: int
    result: str | None


@dataclass
class CommandSlot:
    """The tagged command the current request carries; its first commit records the tag."""

    tag: CommandTag
    recorded: bool = False


current_command: ContextVar[CommandSlot | None] = ContextVar("current_command", default=None)
"""Set by the caller (the API) around a command that carries an idempotency key."""


class CommandAlreadyRecordedError(IntegrityError):
    """The tagged command was recorded before (a retry): its first position and result."""

    def __init__(self, position: int, result: str | None) -> None:
        super().__init__(f"command already recorded at position {position}")
        self.position = position
        self.result = result


class Committer(Protocol):
    """Writes a command's new events; returns the position of the last one."""

    def commit(
        self, aggregates: tuple[Aggregate, ...], tag: CommandTag | None, result: str | None
    ) -> int: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What a command returns: the id it acted on and the log position of its last event."""

    id: UUID
    position: int


@dataclass(frozen=True)
class Received(Outcome):
    """A request received: its id and position, and its status and due date as decided
    (so answering costs no second read of the request)."""

    status: RequestStatus
    due_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RightsLedger(Application[UUID]):
    """Commands and aggregate reads over the event store."""

    name = "rightsledger"
    committer: Committer | None = None
    """Writes commands' events (group commit); None: each command saves on its own."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        jurisdictions: Mapping[str, DeadlineRule] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        mapper_factory: Callable[[Transcoder], Mapper[UUID]] | None = None,
        retention: RetentionSchedule = DEFAULT_SCHEDULE,
    ) -> None:
        self._mapper_factory = mapper_factory
        super().__init__(env)
        self.jurisdictions: Mapping[str, DeadlineRule] = dict(jurisdictions or {})
        self.clock = clock
        self.retention = retention
        """How long each category is kept for each purpose (``domain/retention.py``)."""

    # ------------------------------------------------------------------ plumbing

    def construct_mapper(self) -> Mapper[UUID]:
        """The store's mapper; the composition root may supply one that seals personal data.
        Every stored event name resolves from here on (``naming.register_names``)."""
        register_names()
        factory: Callable[[Transcoder], Mapper[UUID]] | None = getattr(
            self, "_mapper_factory", None
        )
        if factory is None:
            return super().construct_mapper()
        return factory(self.construct_transcoder())

    def evict(self, *aggregate_ids: UUID) -> None:
        """Drop cached copies (after a customer's keys were destroyed)."""
        self._forget(*aggregate_ids)

    def clear_cache(self) -> None:
        """Drop every cached aggregate (after an erasure anywhere in the deployment)."""
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            with cache.lock:  # LRUCache.clear() only resets its links, not its entries
                cache.cache.clear()
                cache.clear()
                cache.full = False

    def _read(self, kind: type[A], aggregate_id: UUID) -> A:
        """Load for a read (and for what a decision takes as given, such as a partner's
        contract): the cached copy is brought up to date first (one query for newer
        events), so another process's writes show."""
        aggregate = self._load(kind, aggregate_id)
        newer = list(self.events.get(aggregate_id, gt=aggregate.version))
        if newer:
            for event in newer:
                assert isinstance(event, Aggregate.Event)
                event.mutate(aggregate)
            cache = self.repository.cache
            if cache is not None:
                cache.put(aggregate_id, copy.deepcopy(aggregate))
        return aggregate

    def _stale(self, aggregates: tuple[Aggregate, ...]) -> bool:
        """Whether the store holds a newer version of any of these (another process wrote)."""
        for aggregate in aggregates:
            last = self.recorder.select_events(aggregate.id, desc=True, limit=1)
            if last and last[0].originator_version != aggregate.version:
                return True
        return False

    def _load(self, kind: type[A], aggregate_id: UUID) -> A:
        label = _LABELS.get(kind, kind.__name__.lower())
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(f"no {label} with id {aggregate_id}", field="id") from None
        if not isinstance(aggregate, kind):
            raise NotFoundError(f"no {label} with id {aggregate_id}", field="id")
        return aggregate

    def _commit(self, *aggregates: Aggregate, result: object = None, tagged: bool = True) -> int:
        """Write the aggregates' new events; the current tagged command (if any) is recorded
        with them, in the same transaction, so a retry of it is recognised."""
        slot = current_command.get() if tagged else None
        tag = slot.tag if slot is not None and not slot.recorded else None
        stored_result = str(result) if isinstance(result, UUID) else None
        try:
            position = self._write(aggregates, tag, stored_result)
        except CommandAlreadyRecordedError:
            if slot is not None:
                slot.recorded = True
            raise
        except (IntegrityError, OutcomeUnknownError, CommitUnavailableError):
            raise
        except Exception as error:
            raise OutcomeUnknownError(str(error)) from error
        if slot is not None and tag is not None:
            slot.recorded = True
        return position

    def _write(
        self, aggregates: tuple[Aggregate, ...], tag: CommandTag | None, result: str | None
    ) -> int:
        if self.committer is not None:
            return self.committer.commit(aggregates, tag, result)
        pending = [event for aggregate in aggregates for event in aggregate.collect_events()]
        if not pending:
            return self.recorder.max_notification_id() or 0
        marks = [CommandMark(tag, 0, len(pending), result)] if tag is not None else []
        recordings = self.save(*pending, commands=marks)
        if self.repository.cache is not None:
            for aggregate in aggregates:
                self.repository.cache.put(aggregate.id, aggregate)
        return max(r.notification.id for r in recordings)

    def close(self) -> None:
        if self.committer is not None:
            self.committer.stop()
        super().close()

    def _forget(self, *aggregate_ids: UUID) -> None:
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def _decide(
        self,
        load: Callable[[], tuple[Aggregate, ...]],
        decide: Callable[..., R],
        what: str,
    ) -> tuple[R, int]:
        """Load, decide, save in one transaction; reload and decide again when another
        writer got there first."""
        checked = False
        for _ in range(_CONFLICT_RETRIES):
            aggregates = load()
            try:
                result = decide(*aggregates)
            except DomainError:
                # A refusal is answered only when decided on the store's current state: a
                # cached copy another process has moved on from is reloaded and decided again.
                # (An accepted command on a stale copy fails the version check at insert.)
                if checked or not self._stale(aggregates):
                    raise
                checked = True
                self._forget(*(aggregate.id for aggregate in aggregates))
                continue
            try:
                return result, self._commit(*aggregates, result=result)
            except CommandAlreadyRecordedError as recorded:
                # A retry of a command already recorded: answer as the first attempt did.
                first = UUID(recorded.result) if recorded.result else None
                return cast("R", first), recorded.position
            except IntegrityError:
                self._forget(*(aggregate.id for aggregate in aggregates))
        raise ConcurrentChangeError(f"{what} was changed concurrently; retry the command")

    def _run(
        self,
        kind: type[A],
        aggregate_id: UUID,
        method: Callable[Concatenate[A, P], R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> tuple[R, int]:
        """Load one aggregate, call one of its methods (which decides), save (see
        ``_decide``): the method's result and the position of the last event written."""
        label = _LABELS.get(kind, "aggregate")
        return self._decide(
            lambda: (self._load(kind, aggregate_id),),
            lambda aggregate: method(aggregate, *args, **kwargs),
            f"{label} {aggregate_id}",
        )

    def _command(
        self,
        kind: type[A],
        aggregate_id: UUID,
        method: Callable[Concatenate[A, P], object],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Outcome:
        """``_run`` for a command answered with the aggregate it changed."""
        return Outcome(aggregate_id, self._run(kind, aggregate_id, method, *args, **kwargs)[1])

    def _request_command(
        self,
        request_id: UUID,
        method: Callable[Concatenate[DataRightsRequest, Customer, P], object],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Outcome:
        """Load a request and its customer, call one of the request's methods (which directs
        the customer too), save both in one transaction (see ``_decide``)."""

        def load() -> tuple[Aggregate, ...]:
            request = self._load(DataRightsRequest, request_id)
            return request, self._load(Customer, request.customer_id)

        _, position = self._decide(
            load,
            lambda request, customer: method(request, customer, *args, **kwargs),
            f"request {request_id}",
        )
        return Outcome(request_id, position)

    def _add(self, aggregate: Aggregate, *, tagged: bool = True) -> Outcome:
        try:
            return Outcome(
                aggregate.id, self._commit(aggregate, result=aggregate.id, tagged=tagged)
            )
        except CommandAlreadyRecordedError as recorded:
            first = UUID(recorded.result) if recorded.result else aggregate.id
            return Outcome(first, recorded.position)
        except IntegrityError:
            raise ConcurrentChangeError(f"{aggregate.id} already exists") from None

    # ------------------------------------------------------------------ customers

    def register_customer(
        self,
        *,
        policy_version: str,
        identity: Mapping[str, str],
        actor: str,
        account: Mapping[str, str] | None = None,
        payment_method: Mapping[str, str] | None = None,
        purposes: Mapping[str, Iterable[str]] | None = None,
    ) -> Outcome:
        customer = Customer.register(
            policy_version=policy_version,
            identity=identity,
            account=account,
            payment_method=payment_method,
            purposes=purposes,
            actor=actor,
        )
        return self._add(customer)

    def correct_customer(
        self,
        customer_id: UUID,
        changes: Mapping[str, Mapping[str, str]],
        *,
        actor: str,
        request_id: UUID | None = None,
    ) -> Outcome:
        """Apply corrections, one event per category corrected, all in one transaction."""
        if not changes:
            raise InvalidCommandError("a correction names at least one category", field="changes")
        return self._command(
            Customer,
            customer_id,
            Customer.apply_corrections,
            changes,
            actor=actor,
            request_id=request_id,
        )

    def change_consent(
        self,
        customer_id: UUID,
        *,
        channel: str,
        granted: bool,
        evidence: Mapping[str, object],
        actor: str,
    ) -> Outcome:
        return self._command(
            Customer,
            customer_id,
            Customer.change_consent,
            channel=channel,
            granted=granted,
            evidence=evidence,
            actor=actor,
            now=self.clock(),
        )

    def record_invoice(
        self,
        customer_id: UUID,
        *,
        amount: Decimal | str,
        currency: str,
        status: str,
        issued_at: datetime,
        actor: str,
    ) -> Outcome:
        return Outcome(
            *self._run(
                Customer,
                customer_id,
                Customer.record_invoice,
                amount=amount,
                currency=currency,
                status=status,
                issued_at=issued_at,
                actor=actor,
                now=self.clock(),
            )
        )

    def log_activity(
        self,
        customer_id: UUID,
        *,
        kind: str,
        reason: str,
        detail: str,
        occurred_at: datetime,
        actor: str,
    ) -> Outcome:
        return Outcome(
            *self._run(
                Customer,
                customer_id,
                Customer.log_activity,
                kind=kind,
                reason=reason,
                detail=detail,
                occurred_at=occurred_at,
                actor=actor,
                now=self.clock(),
            )
        )

    def disclose(
        self,
        customer_id: UUID,
        *,
        partner_id: UUID,
        basis: str,
        categories: Iterable[str],
        purpose: str,
        reference: str,
        actor: str,
    ) -> Outcome:
        partner = self._read(Partner, partner_id)  # the contract as it stands in the store
        return Outcome(
            *self._run(
                Customer,
                customer_id,
                Customer.disclose,
                partner=partner,
                basis=basis,
                categories=list(categories),
                purpose=purpose,
                reference=reference,
                actor=actor,
                now=self.clock(),
            )
        )

    def get_customer(self, customer_id: UUID) -> Customer:
        return self._read(Customer, customer_id)

    def ensure_customer(self, customer_id: UUID) -> None:
        """NotFoundError unless the id is a customer's (from its first stored event)."""
        if not self._is_customer(customer_id):
            raise NotFoundError(f"no customer with id {customer_id}", field="customer_id")

    def record_access(
        self,
        customer_id: UUID,
        *,
        actor: str,
        role: str,
        purpose: str,
        categories: list[str],
        what: str,
    ) -> Outcome:
        """Record that personal data was read, by whom, for what, which categories: as an
        ``AccessRecord`` of its own, so the customer's stream does not grow with reads."""
        if not self._is_customer(customer_id):
            raise NotFoundError(f"no customer with id {customer_id}", field="id")
        record = AccessRecord.accessed(
            customer_id=customer_id,
            actor=actor,
            role=role,
            purpose=purpose,
            categories=categories,
            what=what,
        )
        return Outcome(customer_id, self._record_read(record))

    def record_refusal(
        self, customer_id: UUID, *, actor: str, role: str, purpose: str, what: str, reason: str
    ) -> Outcome | None:
        """Record a refused read as an ``AccessRecord`` of its own; unknown customers have
        nothing to record against (checked on the first stored event, without loading)."""
        if not self._is_customer(customer_id):
            return None
        record = AccessRecord.refused(
            customer_id=customer_id,
            actor=actor,
            role=role,
            purpose=purpose,
            what=what,
            reason=reason,
        )
        return Outcome(customer_id, self._record_read(record))

    def _is_customer(self, customer_id: UUID) -> bool:
        """Whether the id is a customer's, from its first stored event (no load, no unsealing)."""
        first = self.recorder.select_events(customer_id, limit=1)
        return bool(first) and issubclass(resolve_topic(first[0].topic), Customer.Registered)

    def _record_read(self, record: AccessRecord) -> int:
        """Write an access record; it is a read, never the caller's tagged command."""
        position = self._add(record, tagged=False).position
        self._forget(record.id)  # written once, never loaded: keep the cache for customers
        return position

    # ------------------------------------------------------------------ partners

    def register_partner(
        self,
        *,
        name: str,
        kind: str,
        actor: str,
        contract_reference: str | None = None,
        confidentiality_agreement: str | None = None,
        contract_valid_until: date | None = None,
    ) -> Outcome:
        partner = Partner.register(
            name=name,
            kind=kind,
            actor=actor,
            contract_reference=contract_reference,
            confidentiality_agreement=confidentiality_agreement,
            contract_valid_until=contract_valid_until,
        )
        return self._add(partner)

    def renew_partner_contract(
        self,
        partner_id: UUID,
        *,
        contract_reference: str,
        confidentiality_agreement: str,
        valid_until: date,
        actor: str,
    ) -> Outcome:
        return self._command(
            Partner,
            partner_id,
            Partner.renew_contract,
            contract_reference=contract_reference,
            confidentiality_agreement=confidentiality_agreement,
            valid_until=valid_until,
            actor=actor,
        )

    def get_partner(self, partner_id: UUID) -> Partner:
        return self._read(Partner, partner_id)

    # ------------------------------------------------------------------ requests

    def submit_request(
        self,
        *,
        customer_id: UUID,
        request_type: str,
        channel: str,
        jurisdiction: str,
        actor: str,
        statement: str | None = None,
        document_reference: str | None = None,
        corrections: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Received:
        """Receive a request, recorded on its own stream and on the customer's together.

        The customer's ``RequestReceived`` makes submissions for one customer conflict at
        insert (the version check), so two at once, through any API processes, are decided
        one after the other; the later one then sees the earlier one and is refused with
        ``DuplicateRequestError`` while a request of the same type is still open.
        """
        received_at = self.clock()
        request_id = uuid4()

        def load() -> tuple[Aggregate, ...]:
            customer = self._load(Customer, customer_id)  # unknown customer: NotFoundError
            request = DataRightsRequest.submit(
                customer_id=customer_id,
                request_type=request_type,
                channel=channel,
                jurisdiction=jurisdiction,
                rules=self.jurisdictions,
                received_at=received_at,
                actor=actor,
                statement=statement,
                document_reference=document_reference,
                corrections=corrections,
                request_id=request_id,
            )
            return request, customer

        decided: list[DataRightsRequest] = []

        def decide(request: DataRightsRequest, customer: Customer) -> UUID:
            customer.receive_request(
                request_id=request.id,
                request_type=request.request_type.value,
                still_open=self._request_open,
                actor=actor,
            )
            decided.append(request)
            return request.id

        submitted, position = self._decide(load, decide, f"customer {customer_id}")
        request = decided[-1] if decided and decided[-1].id == submitted else None
        if request is None:  # recorded by an earlier attempt of the same command
            request = self._read(DataRightsRequest, submitted)
        return Received(submitted, position, request.status, request.due_at)

    def _request_open(self, request_id: UUID) -> bool:
        """Whether the request is still open, on its stored events (a final status is final,
        so a cached copy brought up to date is enough)."""
        try:
            return not self._read(DataRightsRequest, request_id).status.is_final
        except NotFoundError:
            return False

    def verify_request(
        self, request_id: UUID, *, method: str, reference: str, actor: str
    ) -> Outcome:
        return self._command(
            DataRightsRequest,
            request_id,
            DataRightsRequest.verify_identity,
            method=method,
            reference=reference,
            actor=actor,
        )

    def extend_request(self, request_id: UUID, *, reason: str, actor: str) -> Outcome:
        return self._command(
            DataRightsRequest,
            request_id,
            DataRightsRequest.extend,
            reason=reason,
            now=self.clock(),
            actor=actor,
        )

    def deny_request(self, request_id: UUID, *, reason: str, actor: str) -> Outcome:
        return self._command(
            DataRightsRequest, request_id, DataRightsRequest.deny, reason=reason, actor=actor
        )

    def revoke_request(self, request_id: UUID, *, actor: str, reason: str | None = None) -> Outcome:
        return self._command(
            DataRightsRequest, request_id, DataRightsRequest.revoke, reason=reason, actor=actor
        )

    def fulfil_request(self, request_id: UUID, *, summary: str, actor: str) -> Outcome:
        return self._command(
            DataRightsRequest, request_id, DataRightsRequest.fulfil, summary=summary, actor=actor
        )

    def expire_request(self, request_id: UUID, *, reason: str, actor: str) -> Outcome:
        return self._command(
            DataRightsRequest,
            request_id,
            DataRightsRequest.expire,
            reason=reason,
            now=self.clock(),
            actor=actor,
        )

    def get_request(self, request_id: UUID) -> DataRightsRequest:
        return self._read(DataRightsRequest, request_id)

    def request_with_history(
        self, request_id: UUID
    ) -> tuple[DataRightsRequest, list[Aggregate.Event]]:
        """The request and every one of its events, in order, from one read of its stream."""
        events: list[Aggregate.Event] = []
        request: Aggregate | None = None
        for event in self.events.get(request_id):
            assert isinstance(event, Aggregate.Event)
            request = event.mutate(request)
            events.append(event)
        if not isinstance(request, DataRightsRequest):
            raise NotFoundError(f"no request with id {request_id}", field="id")
        return request, events

    def request_after_command(self, request_id: UUID) -> DataRightsRequest:
        """The request as a command of this process just left it (from the cache when there,
        so answering the command costs no second read)."""
        return self._load(DataRightsRequest, request_id)

    # ------------------------------------------------------------------ fulfilment

    def fulfil_access(
        self, request_id: UUID, *, digest: str, categories: list[str], items: int, actor: str
    ) -> Outcome:
        """Record the access export and fulfil the request, together."""
        return self._command(
            DataRightsRequest,
            request_id,
            DataRightsRequest.fulfil_access,
            digest=digest,
            categories=categories,
            items=items,
            actor=actor,
        )

    def fulfil_correction(self, request_id: UUID, *, actor: str) -> Outcome:
        """Apply the requested corrections, notify partners holding those categories, fulfil."""
        return self._request_command(request_id, DataRightsRequest.fulfil_correction, actor=actor)

    def fulfil_opt_out(self, request_id: UUID, *, actor: str) -> Outcome:
        """Withdraw marketing consent on every channel at once, then fulfil."""
        return self._request_command(
            request_id, DataRightsRequest.fulfil_opt_out, now=self.clock(), actor=actor
        )

    def start_deletion(
        self, request_id: UUID, *, actor: str, retain_for: timedelta | None = None
    ) -> Outcome:
        """Erase the customer's personal data and notify every recipient.

        One transaction records the request's progress (``WorkDone``, and ``PartnersNotified``
        when anyone received the data) with ``Customer.Erased``. Destroying the keys and
        deleting the exports follow from ``Customer.Erased`` (the request worker reacts to it),
        so they happen only once the erasure is recorded, and always then; ``confirm_erasure``
        records that they are done, and only then is the deletion fulfilled. Billing records
        are kept for ``retain_for`` when given, otherwise as the retention schedule says.
        """
        now = self.clock()
        retained_until = (
            now + retain_for if retain_for is not None else self.retention.retained_until(now)
        )
        return self._request_command(
            request_id, DataRightsRequest.erase, retained_until=retained_until, actor=actor
        )

    def confirm_erasure(self, request_id: UUID, *, actor: str) -> Outcome:
        """The erasure's keys and exports are gone: recorded; the deletion is fulfilled when no
        recipient is awaited (otherwise by the last acknowledgement). Repeats record nothing."""
        return self._command(
            DataRightsRequest, request_id, DataRightsRequest.confirm_erasure, actor=actor
        )

    def acknowledge(self, request_id: UUID, *, partner_id: UUID, actor: str) -> Outcome:
        """A partner's acknowledgement; the last one fulfils a deletion carried out
        (``DataRightsRequest.acknowledge``). A repeat of an acknowledgement already recorded
        writes nothing (the position is then the log's head)."""
        return self._command(
            DataRightsRequest,
            request_id,
            DataRightsRequest.acknowledge,
            partner_id=partner_id,
            actor=actor,
        )

    def chase(self, request_id: UUID, *, remind_before: timedelta, actor: str) -> list[str]:
        """Record the reminders, overdue marks, escalations and expiries a request now needs
        (the rule is ``DataRightsRequest.chase``); the steps taken. Nothing due: no event."""
        done, _ = self._run(
            DataRightsRequest,
            request_id,
            DataRightsRequest.chase,
            now=self.clock(),
            remind_before=remind_before,
            actor=actor,
        )
        return list(done or ())

    def purge_retained(self, customer_id: UUID, *, actor: str) -> Outcome:
        return self._command(
            Customer, customer_id, Customer.purge_retained, now=self.clock(), actor=actor
        )

    def purge_activity(
        self, customer_id: UUID, *, reason: str, actor: str, now: datetime | None = None
    ) -> tuple[list[UUID], datetime | None]:
        """Record ``Customer.ActivityPurged`` for the customer's activity logged for ``reason``
        that the retention schedule says is past by ``now`` (the ledger's clock unless given):
        the entries purged (none when nothing new is, and nothing is recorded) and the period
        boundary the log now records as purged through, whose keys may be destroyed."""
        moment = now or self.clock()

        def decide(customer: Customer) -> tuple[list[UUID], datetime | None]:
            purged = customer.purge_activity(
                reason=reason, schedule=self.retention, now=moment, actor=actor
            )
            return purged or [], customer.activity_purged_through.get(reason)

        (purged, through), _ = self._run(Customer, customer_id, decide)
        return purged, through

    def record_skip(self, *, follower: str, position: int, reason: str, actor: str) -> Outcome:
        """Record that ``follower`` stepped over the event at ``position`` on purpose."""
        skip = FollowerSkip.record(follower=follower, position=position, reason=reason, actor=actor)
        return self._add(skip, tagged=False)

    # ------------------------------------------------------------------ auditor replay

    def log_page(self, after: int, limit: int) -> list[tuple[int, Aggregate.Event]]:
        """Events of the whole log after ``after``, in order, with their positions (every
        event this application stores is an aggregate's)."""
        notifications = self.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        page: list[tuple[int, Aggregate.Event]] = []
        for notification in notifications:
            event = self.mapper.to_domain_event(notification)
            assert isinstance(event, Aggregate.Event)
            page.append((notification.id, event))
        return page

    def replay(self, aggregate_id: UUID, as_of: datetime) -> Aggregate | None:
        """An aggregate as it stood at ``as_of``, rebuilt from its stored events only."""
        aggregate: Aggregate | None = None
        for event in self.events.get(aggregate_id):
            assert isinstance(event, Aggregate.Event)
            if event.timestamp > as_of:
                break
            aggregate = event.mutate(aggregate)
        return aggregate

    def customer_as_of(self, customer_id: UUID, as_of: datetime) -> Customer | None:
        """The customer as they stood at ``as_of``; None when not yet registered then."""
        if as_of.tzinfo is None:
            raise InvalidCommandError("'as_of' needs a time zone", field="as_of")
        customer = self.replay(customer_id, as_of)
        if customer is None:
            self._load(Customer, customer_id)  # unknown customer: NotFoundError
            return None
        if not isinstance(customer, Customer):
            raise NotFoundError(f"no customer with id {customer_id}", field="id")
        return customer


_LABELS: dict[type[Aggregate], str] = {
    Customer: "customer",
    Partner: "partner",
    DataRightsRequest: "request",
}
