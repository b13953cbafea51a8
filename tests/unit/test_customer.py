"""The Customer aggregate: data by category and purpose, consents, disclosures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import (
    CardNumberError,
    DisclosureRefusedError,
    InvalidCategoryError,
    InvalidCommandError,
    InvalidPurposeError,
    MarketingConsentRequiredError,
    StateError,
)
from rightsledger.domain.partner import Partner
from rightsledger.domain.values import DEFAULT_PURPOSES, Category, Purpose

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
EVIDENCE: dict[str, Any] = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": NOW,
}


def new_customer(**kwargs: Any) -> Customer:
    args: dict[str, Any] = {
        "policy_version": "2026-01",
        "identity": {"name": "Ada", "email": "ada@example.org"},
        "account": {"plan": "fibre"},
        "payment_method": {"processor": "Acme Payments", "token": "tok_1"},
        "actor": "intake:desk",
    }
    args.update(kwargs)
    return Customer.register(**args)


def processor(valid_until: date = date(2027, 12, 31)) -> Partner:
    return Partner.register(
        name="Acme Payments",
        kind="payment_processor",
        contract_reference="C-1",
        confidentiality_agreement="NDA-1",
        contract_valid_until=valid_until,
        actor="privacy_officer:po",
    )


def police() -> Partner:
    return Partner.register(name="Metropolitan Police", kind="law_enforcement", actor="po")


def test_registration_records_data_by_category_with_default_purposes() -> None:
    """Each category is held for the purposes the policy names, and the policy version is kept."""
    customer = new_customer()
    assert customer.policy_version == "2026-01"
    assert customer.data["identity_contact"] == {"name": "Ada", "email": "ada@example.org"}
    assert customer.purposes_of("payment_method") == ["billing"]
    assert "marketing" not in customer.purposes_of("identity_contact")
    assert [type(e).__name__ for e in customer.collect_events()] == ["Registered"]


def test_marketing_cannot_be_declared_as_a_purpose_of_collection() -> None:
    """Marketing is never a purpose without explicit consent."""
    with pytest.raises(MarketingConsentRequiredError) as caught:
        new_customer(purposes={"identity_contact": ["account", "marketing"]})
    assert caught.value.field == "purposes.identity_contact"


def test_unknown_purposes_and_categories_are_refused() -> None:
    """Only the policy's five purposes and the known categories are accepted."""
    with pytest.raises(InvalidPurposeError):
        new_customer(purposes={"identity_contact": ["profiling"]})
    with pytest.raises(InvalidCategoryError):
        new_customer(purposes={"biometrics": ["account"]})
    with pytest.raises(InvalidCategoryError):
        new_customer(identity={"name": "Ada", "shoe_size": "7"})


@given(
    category=st.sampled_from(list(Category)),
    purposes=st.lists(st.sampled_from([p for p in Purpose if p is not Purpose.MARKETING])),
)
def test_a_registration_may_narrow_a_categorys_purposes_but_never_widen_them(
    category: Category, purposes: list[Purpose]
) -> None:
    """Whoever registers a customer may hold a category for fewer of the policy's purposes
    for it (DEFAULT_PURPOSES), never for another: an intake that named `support` for the
    payment token would let support read it."""
    named = {category.value: [p.value for p in purposes]}
    if purposes and set(purposes) <= set(DEFAULT_PURPOSES[category]):
        customer = new_customer(purposes=named)
        assert customer.purposes_of(category) == list(dict.fromkeys(p.value for p in purposes))
    else:
        with pytest.raises(InvalidPurposeError) as caught:
            new_customer(purposes=named)
        assert caught.value.field == f"purposes.{category.value}"


def test_a_payment_method_is_only_a_processor_and_its_token() -> None:
    """Payment details stay with the processor: a name and a token, nothing else."""
    with pytest.raises(InvalidCommandError):
        new_customer(payment_method={"processor": "Acme"})
    with pytest.raises(InvalidCategoryError):
        new_customer(payment_method={"processor": "Acme", "token": "t", "cvv": "123"})


def test_card_numbers_are_refused_at_registration_naming_the_field() -> None:
    """A card number in any field refuses the whole registration."""
    with pytest.raises(CardNumberError) as caught:
        new_customer(payment_method={"processor": "Acme", "token": "4111 1111 1111 1111"})
    assert caught.value.field == "payment_method.token"


def test_consent_makes_marketing_a_purpose_until_withdrawn() -> None:
    """Marketing appears among the contact data's purposes only while a channel is consented."""
    customer = new_customer()
    customer.grant_consent(channel="email", evidence=EVIDENCE, actor="marketing:m")
    assert customer.has_consent("email")
    assert "marketing" in customer.purposes_of("identity_contact")
    customer.withdraw_consent(channel="email", evidence=EVIDENCE, actor="support:s")
    assert not customer.has_consent("email")
    assert "marketing" not in customer.purposes_of("identity_contact")
    names = [type(e).__name__ for e in customer.collect_events()]
    assert names == ["Registered", "ConsentGranted", "ConsentWithdrawn"]


def test_consent_needs_complete_evidence() -> None:
    """Consent without how, which wording and when it was captured is refused."""
    customer = new_customer()
    with pytest.raises(InvalidCommandError):
        customer.grant_consent(
            channel="sms", evidence={**EVIDENCE, "wording_version": " "}, actor="m"
        )
    with pytest.raises(InvalidCommandError):
        customer.grant_consent(
            channel="sms", evidence={**EVIDENCE, "captured_at": "yesterday"}, actor="m"
        )
    with pytest.raises(InvalidCommandError):
        customer.grant_consent(channel="carrier_pigeon", evidence=EVIDENCE, actor="m")


def test_withdrawing_consent_that_was_never_given_is_refused() -> None:
    """A withdrawal with nothing to withdraw is a state error, not a silent event."""
    customer = new_customer()
    with pytest.raises(StateError):
        customer.withdraw_consent(channel="post", evidence=EVIDENCE, actor="s")


def test_corrections_change_only_the_given_fields() -> None:
    """A correction is an event of its own and leaves other fields alone."""
    customer = new_customer()
    customer.correct(category="identity_contact", changes={"email": "ada@new.org"}, actor="s")
    assert customer.data["identity_contact"] == {"name": "Ada", "email": "ada@new.org"}
    with pytest.raises(InvalidCategoryError):
        customer.correct(category="billing", changes={"amount": "1"}, actor="s")
    with pytest.raises(InvalidCommandError):
        customer.correct(category="identity_contact", changes={"email": "not-an-email"}, actor="s")


def test_invoices_and_activity_are_recorded() -> None:
    """Billing records and activity entries are validated and kept."""
    customer = new_customer()
    customer.record_invoice(
        amount="49.90", currency="EUR", status="issued", issued_at=NOW, actor="billing:b"
    )
    (invoice,) = customer.invoices.values()
    assert invoice.amount == Decimal("49.90")
    with pytest.raises(InvalidCommandError):
        customer.record_invoice(
            amount="-1", currency="EUR", status="issued", issued_at=NOW, actor="b"
        )
    with pytest.raises(InvalidCommandError):
        customer.record_invoice(
            amount="1", currency="euro", status="issued", issued_at=NOW, actor="b"
        )
    customer.log_activity(
        kind="network",
        reason="security",
        detail="port scan from 10.0.0.1",
        occurred_at=NOW,
        actor="s",
    )
    assert customer.activity[0].reason == "security"
    with pytest.raises(InvalidCommandError):
        customer.log_activity(
            kind="network", reason="curiosity", detail="x", occurred_at=NOW, actor="s"
        )


def test_sharing_with_a_contracted_provider_for_a_held_purpose_is_recorded() -> None:
    """A share with a processor under a valid confidentiality contract is allowed."""
    customer = new_customer()
    partner = processor()
    customer.disclose(
        partner=partner,
        basis="service_provider",
        categories=["payment_method"],
        purpose="billing",
        reference="monthly run",
        actor="billing:b",
        now=NOW,
    )
    (disclosure,) = customer.disclosures
    assert disclosure.partner_id == partner.id
    assert disclosure.basis == "service_provider"
    assert disclosure.categories == ("payment_method",)


@pytest.mark.parametrize("basis", ["sale", "rental", "marketing", "distribution", ""])
def test_data_is_never_sold_rented_or_distributed(basis: str) -> None:
    """Any basis outside the policy's three is refused and nothing is recorded."""
    customer = new_customer()
    customer.collect_events()
    with pytest.raises(DisclosureRefusedError):
        customer.disclose(
            partner=processor(),
            basis=basis,
            categories=["identity_contact"],
            purpose="billing",
            reference="r",
            actor="b",
            now=NOW,
        )
    assert customer.disclosures == []
    assert customer.collect_events() == []


def test_marketing_is_never_a_purpose_for_sharing() -> None:
    """Marketing to a third party is refused on every basis."""
    customer = new_customer()
    for basis in ("service_provider", "fraud_prevention", "legal_obligation"):
        with pytest.raises(DisclosureRefusedError):
            customer.disclose(
                partner=processor(),
                basis=basis,
                categories=["identity_contact"],
                purpose="marketing",
                reference="r",
                actor="b",
                now=NOW,
            )


def test_an_expired_contract_refuses_the_share() -> None:
    """A provider whose confidentiality contract has lapsed receives nothing."""
    customer = new_customer()
    lapsed = processor(valid_until=(NOW - timedelta(days=1)).date())
    with pytest.raises(DisclosureRefusedError, match="not valid"):
        customer.disclose(
            partner=lapsed,
            basis="service_provider",
            categories=["payment_method"],
            purpose="billing",
            reference="r",
            actor="b",
            now=NOW,
        )


def test_a_provider_gets_only_categories_held_for_the_stated_purpose() -> None:
    """Purpose limitation: payment data is not held for support, so it is not shared for it."""
    customer = new_customer()
    with pytest.raises(DisclosureRefusedError, match="not held for the purpose"):
        customer.disclose(
            partner=processor(),
            basis="service_provider",
            categories=["payment_method"],
            purpose="support",
            reference="r",
            actor="b",
            now=NOW,
        )


def test_a_legal_obligation_needs_an_authority_and_its_reference() -> None:
    """Law enforcement requests record the authority's reference; a processor is no authority."""
    customer = new_customer()
    with pytest.raises(DisclosureRefusedError, match="reference"):
        customer.disclose(
            partner=police(),
            basis="legal_obligation",
            categories=["identity_contact"],
            purpose="legal",
            reference="  ",
            actor="po",
            now=NOW,
        )
    with pytest.raises(DisclosureRefusedError, match="authority"):
        customer.disclose(
            partner=processor(),
            basis="legal_obligation",
            categories=["identity_contact"],
            purpose="legal",
            reference="warrant 1",
            actor="po",
            now=NOW,
        )
    customer.disclose(
        partner=police(),
        basis="legal_obligation",
        categories=["identity_contact"],
        purpose="legal",
        reference="warrant 2026/117",
        actor="po",
        now=NOW,
    )
    assert customer.disclosures[0].reference == "warrant 2026/117"


def test_data_not_held_cannot_be_shared() -> None:
    """A disclosure of a category the customer has no data in is refused."""
    customer = new_customer()
    with pytest.raises(DisclosureRefusedError, match="no billing data"):
        customer.disclose(
            partner=police(),
            basis="fraud_prevention",
            categories=["billing"],
            purpose="legal",
            reference="case 9",
            actor="po",
            now=NOW,
        )


def test_contracted_partners_need_a_confidentiality_contract() -> None:
    """Processors, support providers and infrastructure partners must be bound by contract."""
    from rightsledger.domain.errors import InvalidPartnerError

    with pytest.raises(InvalidPartnerError):
        Partner.register(name="Cheap Support", kind="support_provider", actor="po")
    with pytest.raises(InvalidPartnerError):
        Partner.register(name="Broker", kind="data_broker", actor="po")
    assert not police().contract_valid_on(NOW)
    assert processor().contract_valid_on(NOW)


def _fraud_share(customer: Customer, partner: Partner, **overrides: Any) -> UUID:
    args: dict[str, Any] = {
        "partner": partner,
        "basis": "fraud_prevention",
        "categories": ["identity_contact"],
        "purpose": "legal",
        "reference": "fraud case 2026-31",
        "actor": "privacy_officer:po",
        "now": NOW,
    }
    args.update(overrides)
    return customer.disclose(**args)


def test_fraud_prevention_shares_go_to_an_authority_or_a_partner_under_contract() -> None:
    """Fraud prevention is a basis for sharing only to detect, investigate or prevent fraud:
    to an authority, or to a contracted partner whose confidentiality contract is valid on
    the day, naming the case, of categories held for the legal purpose; anything else is
    refused and nothing is recorded."""
    customer = new_customer()
    customer.collect_events()
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"partner": processor(valid_until=date(2020, 1, 1))}, "partner_id"),
        ({"reference": "  "}, "reference"),
        ({"categories": ["account_service"]}, "categories"),
        ({"purpose": "support"}, "purpose"),
    ]
    for overrides, field in refusals:
        arguments: dict[str, Any] = {"partner": processor(), **overrides}
        with pytest.raises(DisclosureRefusedError) as caught:
            _fraud_share(customer, **arguments)
        assert caught.value.field == field, overrides
    assert customer.disclosures == []
    assert customer.collect_events() == []
    _fraud_share(customer, police())
    _fraud_share(customer, processor())
    assert [d.basis for d in customer.disclosures] == ["fraud_prevention"] * 2
    assert customer.disclosures[0].reference == "fraud case 2026-31"
