"""Partners: the recipients to which customer data may be disclosed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from rightsledger.domain.cards import refuse_card_numbers
from rightsledger.domain.copying import CheapCopy
from rightsledger.domain.errors import InvalidPartnerError
from rightsledger.domain.personal import Internal, Public
from rightsledger.domain.values import PartnerKind


@dataclass(frozen=True, slots=True)
class Recipient:
    """A partner that received a customer's data, with the categories it received: whom a
    correction or erasure is told of (``Customer.recipients``), and whom a request told
    (``DataRightsRequest.notified``)."""

    partner_id: UUID
    categories: tuple[str, ...]


class Partner(CheapCopy, Aggregate):
    """A payment processor, support provider, infrastructure partner or authority."""

    class Event(Aggregate.Event):
        id_on_topic: ClassVar[str | None] = "partner_id"
        actor: Internal[str]

    class Registered(Aggregate.Created):
        id_on_topic: ClassVar[str | None] = "partner_id"
        actor: Internal[str]
        name: Internal[str]
        kind: Public[str]
        contract_reference: Internal[str | None]
        confidentiality_agreement: Internal[str | None]
        contract_valid_until: Public[str | None]

    class ContractRenewed(Event):
        contract_reference: Internal[str]
        confidentiality_agreement: Internal[str]
        contract_valid_until: Public[str]

        def apply(self, aggregate: Partner) -> None:
            aggregate.contract_reference = self.contract_reference
            aggregate.confidentiality_agreement = self.confidentiality_agreement
            aggregate.contract_valid_until = self.contract_valid_until

    def __init__(
        self,
        actor: str,
        name: str,
        kind: str,
        contract_reference: str | None,
        confidentiality_agreement: str | None,
        contract_valid_until: str | None,
    ) -> None:
        self.registered_by = actor
        self.name = name
        self.kind = PartnerKind(kind)
        self.contract_reference = contract_reference
        self.confidentiality_agreement = confidentiality_agreement
        self.contract_valid_until = contract_valid_until

    @classmethod
    def register(
        cls,
        *,
        name: str,
        kind: str,
        actor: str,
        contract_reference: str | None = None,
        confidentiality_agreement: str | None = None,
        contract_valid_until: date | None = None,
        partner_id: UUID | None = None,
    ) -> Partner:
        """Register a recipient; contracted kinds need a confidentiality contract."""
        refuse_card_numbers(
            name=name,
            contract_reference=contract_reference or "",
            confidentiality_agreement=confidentiality_agreement or "",
        )
        if not name.strip():
            raise InvalidPartnerError("a partner needs a name", field="name")
        try:
            partner_kind = PartnerKind(kind)
        except ValueError:
            allowed = ", ".join(k.value for k in PartnerKind)
            raise InvalidPartnerError(
                f"unknown partner kind {kind!r}; expected one of {allowed}", field="kind"
            ) from None
        if partner_kind.is_contracted:
            cls._require_contract(
                contract_reference, confidentiality_agreement, contract_valid_until
            )
        return cls._create(
            cls.Registered,
            id=partner_id or uuid4(),
            actor=actor,
            name=name.strip(),
            kind=partner_kind.value,
            contract_reference=contract_reference,
            confidentiality_agreement=confidentiality_agreement,
            contract_valid_until=contract_valid_until.isoformat() if contract_valid_until else None,
        )

    @staticmethod
    def _require_contract(
        reference: str | None, agreement: str | None, valid_until: date | None
    ) -> None:
        if not reference or not reference.strip():
            raise InvalidPartnerError(
                "a contracted provider needs a contract reference", field="contract_reference"
            )
        if not agreement or not agreement.strip():
            raise InvalidPartnerError(
                "a contracted provider must be bound by a confidentiality agreement",
                field="confidentiality_agreement",
            )
        if valid_until is None:
            raise InvalidPartnerError(
                "a contracted provider's contract needs a validity date",
                field="contract_valid_until",
            )

    def renew_contract(
        self,
        *,
        contract_reference: str,
        confidentiality_agreement: str,
        valid_until: date,
        actor: str,
    ) -> None:
        """Record a new or renewed confidentiality contract."""
        refuse_card_numbers(
            contract_reference=contract_reference,
            confidentiality_agreement=confidentiality_agreement,
        )
        if not self.kind.is_contracted:
            raise InvalidPartnerError(
                f"a {self.kind.value} partner is not a contracted provider", field="kind"
            )
        self._require_contract(contract_reference, confidentiality_agreement, valid_until)
        self.trigger_event(
            self.ContractRenewed,
            actor=actor,
            contract_reference=contract_reference,
            confidentiality_agreement=confidentiality_agreement,
            contract_valid_until=valid_until.isoformat(),
        )

    def contract_valid_on(self, moment: datetime) -> bool:
        """True when the partner holds a confidentiality contract valid on that day."""
        if not (self.kind.is_contracted and self.confidentiality_agreement):
            return False
        if self.contract_valid_until is None:
            return False
        return date.fromisoformat(self.contract_valid_until) >= moment.date()
