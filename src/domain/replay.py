"""Replaying the whole log, from the event store alone, as it stood at a moment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest


@dataclass
class ReplaySummary:
    """What the history holds at a moment: counts an auditor can compare with the views."""

    until: datetime
    events: int = 0
    last_position: int = 0
    customers: int = 0
    partners: int = 0
    requests_by_status: Counter[str] = field(default_factory=Counter)
    consents_by_channel: Counter[str] = field(default_factory=Counter)
    disclosures_by_basis: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "until": self.until.isoformat(),
            "events": self.events,
            "last_position": self.last_position,
            "customers": self.customers,
            "partners": self.partners,
            "requests_by_status": dict(sorted(self.requests_by_status.items())),
            "consents_granted_by_channel": dict(sorted(self.consents_by_channel.items())),
            "disclosures_by_basis": dict(sorted(self.disclosures_by_basis.items())),
        }


def replay_log(
    ledger: RightsLedger,
    until: datetime,
    *,
    page: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Fold every event recorded up to ``until`` into aggregates and summarise them."""
    head = ledger.recorder.max_notification_id() or 0
    aggregates: dict[UUID, Aggregate] = {}
    summary = ReplaySummary(until=until)
    after = 0
    while after < head:
        batch = ledger.log_page(after, page)
        if not batch:
            break
        for position, event in batch:
            after = position
            if event.timestamp > until:
                continue
            aggregate = event.mutate(aggregates.get(event.originator_id))
            assert aggregate is not None  # no event of this application discards its aggregate
            aggregates[event.originator_id] = aggregate
            summary.events += 1
            summary.last_position = position
        if progress is not None:
            progress(after, head)
    for aggregate in aggregates.values():
        if isinstance(aggregate, Customer):
            summary.customers += 1
            summary.consents_by_channel.update(aggregate.consented_channels())
            summary.disclosures_by_basis.update(d.basis for d in aggregate.disclosures)
        elif isinstance(aggregate, Partner):
            summary.partners += 1
        elif isinstance(aggregate, DataRightsRequest):
            summary.requests_by_status[aggregate.status.value] += 1
    return summary
