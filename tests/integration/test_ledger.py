"""The ledger on real PostgreSQL: events persist, reload, and refusals write nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import Container, make_ledger
from rightsledger.domain.errors import DomainError, StateError
from rightsledger.domain.ledger import NotFoundError, Outcome, RightsLedger
from tests import scenarios
from tests.conftest import EVIDENCE


def register(ledger: RightsLedger) -> UUID:
    return scenarios.billed_customer(ledger)


def count_rows(container: Container, table: str) -> int:
    with psycopg.connect(container.database.url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(container.settings.database_schema, table)
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_commands_return_increasing_positions_and_reload_from_the_store(
    container: Container,
) -> None:
    """A fresh application instance with no cache rebuilds the same customer from events."""
    ledger = container.ledger
    customer_id = register(ledger)
    first = ledger.change_consent(
        customer_id, channel="email", granted=True, evidence=EVIDENCE, actor="marketing:m"
    )
    second = ledger.correct_customer(
        customer_id, {"identity_contact": {"email": "ada@new.org"}}, actor="support:s"
    )
    assert second.position > first.position > 0
    fresh = make_ledger(
        {**container.env, "AGGREGATE_CACHE_MAXSIZE": "0"}, container.vault, container.settings
    )
    try:
        reloaded = fresh.get_customer(customer_id)
    finally:
        fresh.close()
    assert reloaded.data["identity_contact"]["email"] == "ada@new.org"
    assert reloaded.has_consent("email")
    assert reloaded.version == 3
    assert count_rows(container, "rightsledger_events") == 3


def test_refused_commands_leave_the_store_unchanged(container: Container) -> None:
    """Every refusal leaves the event log exactly as it was: nothing half-written."""
    ledger = container.ledger
    customer_id = register(ledger)
    police = ledger.register_partner(name="Police", kind="law_enforcement", actor="po").id
    head = ledger.recorder.max_notification_id()
    refusals: list[Callable[[], Outcome]] = [
        lambda: ledger.register_customer(
            policy_version="v1", identity={"name": "Bob 4111 1111 1111 1111"}, actor="i"
        ),
        lambda: ledger.register_customer(
            policy_version="v1",
            identity={"name": "Bob"},
            purposes={"identity_contact": ["marketing"]},
            actor="i",
        ),
        lambda: ledger.change_consent(
            customer_id, channel="sms", granted=False, evidence=EVIDENCE, actor="m"
        ),
        lambda: ledger.disclose(
            customer_id,
            partner_id=police,
            basis="sale",
            categories=["identity_contact"],
            purpose="legal",
            reference="r",
            actor="po",
        ),
        lambda: ledger.correct_customer(
            customer_id,
            {"identity_contact": {"email": "ok@example.org"}, "account_service": {"color": "x"}},
            actor="s",
        ),
        lambda: ledger.submit_request(
            customer_id=customer_id,
            request_type="deletion",
            channel="phone",
            jurisdiction="gdpr",
            statement="delete me",
            actor="i",
        ),
        lambda: ledger.submit_request(
            customer_id=uuid4(),
            request_type="access",
            channel="email",
            jurisdiction="gdpr",
            statement="s",
            actor="i",
        ),
    ]
    for refuse in refusals:
        with pytest.raises(DomainError):
            refuse()
    assert ledger.recorder.max_notification_id() == head
    customer = ledger.get_customer(customer_id)
    assert customer.data["identity_contact"]["email"] == "ada@example.org"


def test_a_multi_category_correction_is_atomic(container: Container) -> None:
    """When one category of a correction is invalid, the valid one is not applied either."""
    ledger = container.ledger
    customer_id = register(ledger)
    with pytest.raises(DomainError):
        ledger.correct_customer(
            customer_id,
            {"identity_contact": {"name": "Ada L."}, "payment_method": {"pin": "1234"}},
            actor="s",
        )
    assert ledger.get_customer(customer_id).data["identity_contact"]["name"] == "Ada"


def test_a_stale_cache_in_another_process_is_caught_and_retried(container: Container) -> None:
    """Two writers with their own caches: the second sees a version conflict, reloads, applies."""
    customer_id = register(container.ledger)
    other = make_ledger(container.env, container.vault, container.settings)
    try:
        other.get_customer(customer_id)  # warm the second writer's cache
        container.ledger.change_consent(
            customer_id, channel="email", granted=True, evidence=EVIDENCE, actor="m"
        )
        outcome = other.change_consent(
            customer_id, channel="sms", granted=True, evidence=EVIDENCE, actor="m"
        )
    finally:
        other.close()
    customer = container.ledger.get_customer(customer_id)
    assert customer.consented_channels() == ["email", "sms"]
    assert customer.version == 3
    assert outcome.position == container.ledger.recorder.max_notification_id()


def test_a_decision_is_taken_again_on_fresh_state_after_a_conflict(container: Container) -> None:
    """A withdrawal decided on stale state is re-decided and refused when consent is gone."""
    customer_id = register(container.ledger)
    container.ledger.change_consent(
        customer_id, channel="email", granted=True, evidence=EVIDENCE, actor="m"
    )
    other = make_ledger(container.env, container.vault, container.settings)
    try:
        other.get_customer(customer_id)
        container.ledger.change_consent(
            customer_id, channel="email", granted=False, evidence=EVIDENCE, actor="m"
        )
        with pytest.raises(StateError):
            other.change_consent(
                customer_id, channel="email", granted=False, evidence=EVIDENCE, actor="m"
            )
    finally:
        other.close()


def test_ids_of_the_wrong_kind_are_not_found(container: Container) -> None:
    """A customer id used as a request id is 'not found', never a crash."""
    customer_id = register(container.ledger)
    with pytest.raises(NotFoundError):
        container.ledger.get_request(customer_id)
    with pytest.raises(NotFoundError):
        container.ledger.get_partner(uuid4())


def test_contract_renewal_reopens_sharing(container: Container) -> None:
    """A processor with a lapsed contract is refused until the contract is renewed."""
    ledger = container.ledger
    customer_id = register(ledger)
    partner = ledger.register_partner(
        name="Acme",
        kind="payment_processor",
        contract_reference="C1",
        confidentiality_agreement="NDA1",
        contract_valid_until=date(2020, 1, 1),
        actor="po",
    ).id

    def share() -> Outcome:
        return ledger.disclose(
            customer_id,
            partner_id=partner,
            basis="service_provider",
            categories=["payment_method"],
            purpose="billing",
            reference="run",
            actor="b",
        )

    with pytest.raises(DomainError, match="not valid"):
        share()
    ledger.renew_partner_contract(
        partner,
        contract_reference="C2",
        confidentiality_agreement="NDA2",
        valid_until=date(2099, 1, 1),
        actor="po",
    )
    share()
    assert len(ledger.get_customer(customer_id).disclosures) == 1
