"""Fulfilment rules decided by the aggregates themselves: who received what (the customer),
the last acknowledgement fulfilling a deletion carried out, and the request directing its
customer through a correction, an opt-out and an erasure (the ledger only loads and saves)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.domain.customer import Customer
from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.errors import IllegalTransitionError
from rightsledger.domain.partner import Partner, Recipient
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.values import RequestStatus

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
RULES = {"gdpr": DeadlineRule(Period(months=1), Period(months=2))}
EVIDENCE: dict[str, Any] = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": NOW,
}


def new_customer() -> Customer:
    return Customer.register(
        policy_version="2026-01",
        identity={"name": "Ada", "email": "ada@example.org"},
        account={"plan": "fibre"},
        payment_method={"processor": "Acme Payments", "token": "tok_1"},
        actor="intake:desk",
    )


def processor(name: str) -> Partner:
    return Partner.register(
        name=name,
        kind="payment_processor",
        contract_reference="C-1",
        confidentiality_agreement="NDA-1",
        contract_valid_until=date(2027, 12, 31),
        actor="privacy_officer:po",
    )


def share(customer: Customer, partner: Partner, *categories: str) -> None:
    customer.disclose(
        partner=partner,
        basis="service_provider",
        categories=list(categories),
        purpose="billing",
        reference="monthly run",
        actor="billing:b",
        now=NOW,
    )


def verified(customer: Customer, request_type: str, **extra: Any) -> DataRightsRequest:
    request = DataRightsRequest.submit(
        customer_id=customer.id,
        request_type=request_type,
        channel="email",
        jurisdiction="gdpr",
        rules=RULES,
        received_at=NOW,
        actor="intake:desk",
        statement="please",
        **extra,
    )
    request.verify_identity(method="id_document", reference="doc-1", actor="po")
    return request


def status(request: DataRightsRequest) -> RequestStatus:
    """The status now (mypy keeps a narrowed attribute across method calls)."""
    return request.status


def names(aggregate: Customer | DataRightsRequest) -> list[str]:
    return [type(event).__name__ for event in aggregate.collect_events()]


# ------------------------------------------------------------------ recipients


def test_recipients_are_the_partners_that_received_data_with_the_categories_received() -> None:
    """Every partner that received any of the customer's data, once, with the union of the
    categories it received, sorted; limited to the categories asked about when given."""
    customer = new_customer()
    first, second = sorted([processor("Acme"), processor("Bolt")], key=lambda p: str(p.id))
    share(customer, first, "payment_method")
    share(customer, first, "identity_contact")
    share(customer, second, "identity_contact")
    assert customer.recipients() == [
        Recipient(partner_id=first.id, categories=("identity_contact", "payment_method")),
        Recipient(partner_id=second.id, categories=("identity_contact",)),
    ]
    assert customer.recipients(["payment_method"]) == [
        Recipient(partner_id=first.id, categories=("payment_method",))
    ]
    assert customer.recipients(["account"]) == []
    assert new_customer().recipients() == []


# ------------------------------------------------------------------ acknowledgements


def deletion_notified(partners: list[UUID]) -> DataRightsRequest:
    """A verified deletion whose erasure is recorded and whose recipients were notified."""
    request = verified(new_customer(), "deletion")
    request.record_work(action="personal data erased", actor="worker")
    request.notify_partners(
        notifications=[Recipient(partner_id=p, categories=("identity_contact",)) for p in partners],
        await_acknowledgement=True,
        actor="worker",
    )
    return request


def test_the_last_acknowledgement_fulfils_a_deletion_carried_out() -> None:
    """Once the erasure is carried out, the last awaited acknowledgement fulfils the deletion,
    in the same change; a repeat afterwards confirms and records nothing."""
    first, last = uuid4(), uuid4()
    request = deletion_notified([first, last])
    assert request.confirm_erasure(actor="worker")
    assert request.acknowledge(partner_id=first, actor="partner:a")
    assert status(request) is RequestStatus.IN_PROGRESS
    request.collect_events()
    assert request.acknowledge(partner_id=last, actor="partner:b")
    assert status(request) is RequestStatus.FULFILLED
    assert request.reason == "personal data erased; every recipient acknowledged"
    assert names(request) == ["PartnerAcknowledged", "Fulfilled"]
    assert not request.acknowledge(partner_id=last, actor="partner:b")
    assert names(request) == []


def test_acknowledgements_before_the_erasure_is_carried_out_leave_it_to_confirm() -> None:
    """Every recipient acknowledged before the keys and exports are gone: still in progress;
    confirming the erasure then fulfils it."""
    partner = uuid4()
    request = deletion_notified([partner])
    assert request.acknowledge(partner_id=partner, actor="partner:a")
    assert status(request) is RequestStatus.IN_PROGRESS
    assert request.confirm_erasure(actor="worker")
    assert status(request) is RequestStatus.FULFILLED


def test_a_partner_not_awaited_cannot_acknowledge() -> None:
    """Only a notified partner still awaited acknowledges; nothing is recorded otherwise."""
    request = deletion_notified([uuid4()])
    request.collect_events()
    with pytest.raises(IllegalTransitionError):
        request.acknowledge(partner_id=uuid4(), actor="partner:x")
    assert names(request) == []


@given(
    count=st.integers(min_value=1, max_value=5),
    data=st.data(),
)
def test_a_deletion_is_fulfilled_exactly_when_all_acknowledged_and_erasure_carried_out(
    count: int, data: st.DataObject
) -> None:
    """For any order of acknowledgements of the notified partners (repeats included) and any
    moment the erasure is confirmed (or none), the deletion is fulfilled exactly when every
    partner acknowledged and the erasure was carried out; a repeat never records anything."""
    partners = [uuid4() for _ in range(count)]
    request = deletion_notified(partners)
    request.collect_events()
    steps = data.draw(
        st.lists(st.sampled_from([*partners, None]), max_size=3 * count + 2), label="steps"
    )  # None: confirm the erasure
    acknowledged: set[UUID] = set()
    carried_out = False
    for step in steps:
        if step is None:
            recorded = request.confirm_erasure(actor="worker")
            assert recorded == (not carried_out)
            carried_out = True
        else:
            recorded = request.acknowledge(partner_id=step, actor="partner")
            assert recorded == (step not in acknowledged)
            acknowledged.add(step)
        if not recorded:
            assert names(request) == []
        request.collect_events()
        done = carried_out and acknowledged == set(partners)
        assert (status(request) is RequestStatus.FULFILLED) == done
        assert status(request) in (RequestStatus.FULFILLED, RequestStatus.IN_PROGRESS)


# ------------------------------------------------------------------ the request directs


def test_a_correction_corrects_the_customer_notifies_its_recipients_and_is_fulfilled() -> None:
    """Fulfilling a correction: one correction event per category on the customer, the
    partners holding those categories notified without awaiting them, then fulfilled."""
    customer = new_customer()
    acme, other = processor("Acme"), processor("Bolt")
    share(customer, acme, "identity_contact")
    share(customer, other, "payment_method")
    customer.collect_events()
    request = verified(
        customer, "correction", corrections={"identity_contact": {"email": "ada@new.example"}}
    )
    request.collect_events()
    request.fulfil_correction(customer, actor="worker")
    assert names(customer) == ["DetailsCorrected"]
    assert customer.data["identity_contact"]["email"] == "ada@new.example"
    assert request.notified == [Recipient(partner_id=acme.id, categories=("identity_contact",))]
    assert request.awaiting == set()
    assert status(request) is RequestStatus.FULFILLED
    assert names(request) == ["WorkDone", "PartnersNotified", "Fulfilled"]


def test_an_opt_out_withdraws_every_consent_and_is_fulfilled() -> None:
    """Every consented channel is withdrawn, citing the request, then the request fulfilled."""
    customer = new_customer()
    customer.grant_consent(channel="email", evidence=EVIDENCE, actor="marketing:m")
    customer.grant_consent(channel="sms", evidence=EVIDENCE, actor="marketing:m")
    customer.collect_events()
    request = verified(customer, "opt_out")
    request.fulfil_opt_out(customer, now=NOW, actor="worker")
    assert customer.consented_channels() == []
    withdrawn = customer.collect_events()
    assert [type(e).__name__ for e in withdrawn] == ["ConsentWithdrawn", "ConsentWithdrawn"]
    assert all(getattr(e, "request_id", None) == request.id for e in withdrawn)
    assert status(request) is RequestStatus.FULFILLED


def test_an_erasure_erases_the_customer_and_awaits_every_recipient() -> None:
    """The request records its work, the customer is erased, every partner that received
    anything is notified and awaited; the deletion is not yet fulfilled."""
    customer = new_customer()
    acme = processor("Acme")
    share(customer, acme, "payment_method")
    request = verified(customer, "deletion")
    until = NOW + timedelta(days=3650)
    request.erase(customer, retained_until=until, actor="worker")
    assert customer.erased_at is not None
    assert customer.retained_until == until
    assert request.awaiting == {acme.id}
    assert status(request) is RequestStatus.IN_PROGRESS
    assert request.acknowledge(partner_id=acme.id, actor="partner:acme")
    assert status(request) is RequestStatus.IN_PROGRESS  # the keys are not destroyed yet
    assert request.confirm_erasure(actor="worker")
    assert status(request) is RequestStatus.FULFILLED
