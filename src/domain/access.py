"""Reads of personal data: each answered or refused read is an aggregate of its own.

A read is recorded as a new ``AccessRecord`` (a random id, one created event) that
names the customer it concerns, not as an event on the customer's stream: a customer
read many times keeps a short stream, so commands on them stay cheap and reads never
compete with writes for the customer's version. Nothing here holds personal values:
who read, in which role, for what purpose, which categories were shown and what was read.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from rightsledger.domain.errors import InvalidPurposeError
from rightsledger.domain.personal import Internal, Public
from rightsledger.domain.values import Purpose

REFUSED_PURPOSE_LIMIT = 50
"""A refused read's declared purpose is kept to this many characters (it is not checked)."""


def _purpose(value: str) -> str:
    try:
        return Purpose(value).value
    except ValueError:
        allowed = ", ".join(p.value for p in Purpose)
        raise InvalidPurposeError(
            f"unknown purpose {value!r}; the policy's purposes are {allowed}", field="purpose"
        ) from None


class AccessRecord(Aggregate):
    """One read of a customer's personal data, answered or refused."""

    class DataAccessed(Aggregate.Created):
        """Someone read the customer's personal data, for a declared purpose."""

        id_on_topic: ClassVar[str | None] = None
        customer_id: Public[UUID]
        actor: Internal[str]
        role: Public[str]
        purpose: Public[str]
        categories: Public[list[str]]
        what: Public[str]

    class AccessRefused(Aggregate.Created):
        """A read of the customer's personal data was refused (role or purpose not allowed)."""

        id_on_topic: ClassVar[str | None] = None
        customer_id: Public[UUID]
        actor: Internal[str]
        role: Public[str]
        purpose: Public[str]
        categories: Internal[list[str]]
        what: Public[str]
        reason: Internal[str]

    def __init__(
        self,
        customer_id: UUID,
        actor: str,
        role: str,
        purpose: str,
        categories: list[str],
        what: str,
        reason: str | None = None,
    ) -> None:
        self.customer_id = customer_id
        self.actor = actor
        self.role = role
        self.purpose = purpose
        self.categories = list(categories)
        self.what = what
        self.reason = reason

    @classmethod
    def accessed(
        cls,
        *,
        customer_id: UUID,
        actor: str,
        role: str,
        purpose: str,
        categories: list[str],
        what: str,
    ) -> AccessRecord:
        """Record an answered read (also after erasure: retained data is still read)."""
        return cls._create(
            cls.DataAccessed,
            id=uuid4(),
            customer_id=customer_id,
            actor=actor,
            role=role,
            purpose=_purpose(purpose),
            categories=sorted(categories),
            what=what,
        )

    @classmethod
    def refused(
        cls, *, customer_id: UUID, actor: str, role: str, purpose: str, what: str, reason: str
    ) -> AccessRecord:
        """Record a refused attempt to read; the declared purpose is kept as declared, cut short."""
        return cls._create(
            cls.AccessRefused,
            id=uuid4(),
            customer_id=customer_id,
            actor=actor,
            role=role,
            purpose=purpose[:REFUSED_PURPOSE_LIMIT],
            categories=[],
            what=what,
            reason=reason,
        )
