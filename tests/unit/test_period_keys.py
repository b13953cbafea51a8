"""Period keys in the sealing mapper, on an in-memory store and vault (no I/O): activity is
sealed per customer, purpose and month, so destroying one period's key erases only it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID

import pytest

from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import RightsLedger
from rightsledger.storage import sealing
from rightsledger.storage.keyvault import PERSONAL, KeyScope, KeyVault
from rightsledger.storage.sealing import ERASED, Rule, SealingMapper


class MemoryVault(KeyVault):
    """Keys in a dict: id -> (customer, kind, scope, key or None once destroyed)."""

    def __init__(self) -> None:
        self.keys: dict[UUID, tuple[UUID, str, KeyScope | None, bytes | None]] = {}
        self.index = os.urandom(32)

    def index_key(self) -> bytes:
        return self.index

    def key(
        self,
        key_id: UUID,
        *,
        customer_id: UUID | None,
        kind: str,
        scope: KeyScope | None = None,
        new: bool = False,
    ) -> bytes | None:
        if key_id not in self.keys:
            assert customer_id is not None
            self.keys[key_id] = (customer_id, kind, scope, os.urandom(32))
        return self.keys[key_id][3]

    def destroy(self, customer_id: UUID, kind: str) -> int:
        mine = [k for k, v in self.keys.items() if v[0] == customer_id and v[1] == kind]
        for key_id in mine:
            self.keys[key_id] = (*self.keys[key_id][:3], None)
        return len(mine)

    def customers_with_periods_ended(
        self, *, category: str, purpose: str, ended_by: datetime, limit: int
    ) -> list[UUID]:
        return sorted(
            {
                customer
                for customer, _, scope, key in self.keys.values()
                if key is not None
                and scope is not None
                and (scope.category, scope.purpose) == (category, purpose)
                and scope.period_end <= ended_by
            },
            key=str,
        )[:limit]

    def destroy_periods(
        self, customer_id: UUID, *, category: str, purpose: str, ended_by: datetime
    ) -> list[str]:
        gone = []
        for key_id, (customer, kind, scope, key) in list(self.keys.items()):
            if (
                customer == customer_id
                and key is not None
                and scope is not None
                and (scope.category, scope.purpose) == (category, purpose)
                and scope.period_end <= ended_by
            ):
                self.keys[key_id] = (customer, kind, scope, None)
                gone.append(scope.period)
        return sorted(gone)


@pytest.fixture
def vault() -> MemoryVault:
    return MemoryVault()


@pytest.fixture
def ledger(vault: MemoryVault) -> Iterator[RightsLedger]:
    app = RightsLedger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        mapper_factory=lambda transcoder: SealingMapper(vault, transcoder),
    )
    try:
        yield app
    finally:
        app.close()


def details(ledger: RightsLedger) -> dict[UUID, str]:
    return {
        e.entry_id: e.detail
        for _, e in ledger.log_page(0, 1000)
        if isinstance(e, Customer.ActivityLogged)
    }


def test_each_purpose_and_month_has_its_own_key(ledger: RightsLedger, vault: MemoryVault) -> None:
    """Two entries of one month and purpose share a key; another month or purpose, or
    another customer, has its own; each key records its scope and is a personal key."""
    ada = ledger.register_customer(policy_version="v", identity={"name": "Ada"}, actor="t").id
    bob = ledger.register_customer(policy_version="v", identity={"name": "Bob"}, actor="t").id
    for customer, reason, day in (
        (ada, "troubleshooting", datetime(2026, 1, 3, tzinfo=UTC)),
        (ada, "troubleshooting", datetime(2026, 1, 30, tzinfo=UTC)),
        (ada, "troubleshooting", datetime(2026, 2, 1, tzinfo=UTC)),
        (ada, "security", datetime(2026, 1, 3, tzinfo=UTC)),
        (bob, "troubleshooting", datetime(2026, 1, 3, tzinfo=UTC)),
    ):
        ledger.log_activity(
            customer, kind="network", reason=reason, detail="d", occurred_at=day, actor="noc"
        )
    scopes = sorted(
        (str(customer), scope.purpose, scope.period)
        for customer, kind, scope, _ in vault.keys.values()
        if scope is not None and kind == PERSONAL
    )
    assert scopes == sorted(
        [
            (str(ada), "troubleshooting", "2026-01"),
            (str(ada), "troubleshooting", "2026-02"),
            (str(ada), "security", "2026-01"),
            (str(bob), "troubleshooting", "2026-01"),
        ]
    )


def test_destroying_one_period_key_erases_that_period_only(
    ledger: RightsLedger, vault: MemoryVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With January's troubleshooting key destroyed, its entry reads ``[erased]``; February,
    security, the customer's identity, and an entry sealed with the customer's own key
    (as stored before period keys) still read in full."""
    ada = ledger.register_customer(policy_version="v", identity={"name": "Ada"}, actor="t").id

    def log(reason: str, at: datetime, detail: str) -> UUID:
        return ledger.log_activity(
            ada, kind="network", reason=reason, detail=detail, occurred_at=at, actor="noc"
        ).id

    subject, _ = sealing.RULES[Customer.ActivityLogged]
    monkeypatch.setitem(sealing.RULES, Customer.ActivityLogged, (subject, [Rule("detail")]))
    legacy = log("troubleshooting", datetime(2026, 1, 2, tzinfo=UTC), "before period keys")
    monkeypatch.undo()
    january = log("troubleshooting", datetime(2026, 1, 3, tzinfo=UTC), "january")
    february = log("troubleshooting", datetime(2026, 2, 3, tzinfo=UTC), "february")
    security = log("security", datetime(2026, 1, 3, tzinfo=UTC), "security january")

    assert vault.destroy_periods(
        ada,
        category="activity",
        purpose="troubleshooting",
        ended_by=datetime(2026, 2, 1, tzinfo=UTC),
    ) == ["2026-01"]
    ledger.clear_cache()
    assert details(ledger) == {
        legacy: "before period keys",
        january: ERASED,
        february: "february",
        security: "security january",
    }
    assert ledger.get_customer(ada).data["identity_contact"]["name"] == "Ada"
