"""Real deletion in an immutable log: after erasure no personal value is left anywhere.

The whole database (every table of the schema: events, links, keys, views, exports)
and both Kafka topics are scanned for each personal value of the erased customer, in
every encoding the project uses; the events still load and replay, showing placeholders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
from psycopg import sql

from rightsledger.api.routers.audit import state_out
from rightsledger.bootstrap import Container
from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import RightsLedger
from rightsledger.storage import chain
from rightsledger.storage.sealing import ERASED
from rightsledger.workers.broker import EmbeddedBroker
from tests import scenarios
from tests.integration.scans import consume_all, dump_database, encodings


def person(ledger: RightsLedger, tag: str, partner: UUID) -> tuple[UUID, list[str]]:
    identity = {
        "name": f"Quentin {tag} Marlowe-Vance",
        "email": f"quentin.{tag}@hidden.example",
        "phone": f"+44 7700 9{tag[:2]}4321",
        "postal_address": f"{tag} Obscure Crescent, Nowhereton",
    }
    customer = ledger.register_customer(
        policy_version="2026-01",
        identity=identity,
        account={"plan": f"plan-{tag}-gold"},
        payment_method={"processor": "Acme", "token": f"tok_{tag}_keep"},
        actor="intake:i",
    ).id
    scenarios.consent(ledger, customer, "sms")
    ledger.correct_customer(
        customer, {"identity_contact": {"email": f"quentin.{tag}.new@hidden.example"}}, actor="s"
    )
    ledger.log_activity(
        customer,
        kind="account",
        reason="security",
        detail=f"password reset by {tag}-device",
        occurred_at=datetime(2026, 10, 1, tzinfo=UTC),
        actor="s",
    )
    scenarios.invoice(ledger, customer, "12.34", issued_at=datetime(2026, 9, 1, tzinfo=UTC))
    scenarios.share(ledger, customer, partner)
    scenarios.verified(
        ledger,
        customer,
        "access",
        statement=f"I, Quentin {tag}, want my data",
        actor="intake:i",
        reference=f"passport {tag}-77",
    )
    changed = scenarios.submit(
        ledger,
        customer,
        "opt_out",
        channel="web_form",
        jurisdiction="ccpa",
        statement="stop the emails",
        actor="intake:i",
    )
    ledger.revoke_request(changed, reason=f"Quentin {tag} changed his mind", actor="intake:i")
    secrets = [
        f"Quentin {tag} changed his mind",
        *identity.values(),
        f"quentin.{tag}.new@hidden.example",
        f"plan-{tag}-gold",
        f"password reset by {tag}-device",
        f"I, Quentin {tag}, want my data",
        f"passport {tag}-77",
    ]
    return customer, secrets


def test_after_erasure_no_personal_value_remains_anywhere(
    container: Container, broker: EmbeddedBroker
) -> None:
    """Database dump and both topics hold none of the erased customer's personal values;
    the other customer is untouched; the log still loads, replays and verifies."""
    ledger = container.ledger
    partner = scenarios.contracted_partner(ledger)
    erased, erased_secrets = person(ledger, "alpha", partner)
    kept, _ = person(ledger, "bravo", partner)
    worker = container.request_worker()
    worker.catch_up()  # both access requests fulfilled: exports written
    container.projection_worker().catch_up()  # the views hold the plain values, as they do live
    before_deletion = datetime.now(UTC)
    deletion = scenarios.submit(
        ledger,
        erased,
        "deletion",
        channel="postal_mail",
        statement=None,
        document_reference="letter from Quentin alpha",
        actor="intake:i",
    )
    ledger.verify_request(deletion, method="id", reference="passport alpha-78", actor="po")
    erased_secrets += ["letter from Quentin alpha", "passport alpha-78"]
    worker.catch_up()
    ledger.acknowledge(deletion, partner_id=partner, actor="partner:helpdesk")
    assert ledger.get_request(deletion).status.value == "fulfilled"
    container.projection_worker().catch_up()
    relay = container.relay(broker.bootstrap)
    relay.start()
    relay.catch_up()
    relay.close()

    with psycopg.connect(container.database.url) as conn:
        keys = conn.execute(
            sql.SQL("SELECT kind, key IS NULL, key_id FROM {} WHERE customer_id = %s").format(
                sql.Identifier(container.settings.database_schema, "subject_keys")
            ),
            (erased,),
        ).fetchall()
    assert sorted((kind, gone) for kind, gone, _ in keys) == [("personal", True)] * 5 + [
        ("retained", False)
    ]  # the customer's key, their activity's period key and their three requests' keys
    # destroyed; the retained key kept
    blob = dump_database(container)
    head = scenarios.log_head(ledger)
    records = [
        *consume_all(broker.bootstrap, container.settings.events_topic, head),
        *consume_all(broker.bootstrap, container.settings.notifications_topic, 1),
    ]
    topics = b"\n".join(r.value + (r.key or b"") for r in records)
    for secret in erased_secrets:
        for encoded in encodings(secret):
            assert encoded not in blob, f"{secret!r} is still in the database"
            assert encoded not in topics, f"{secret!r} is on a topic"

    # The other customer is unaffected: still readable in full.
    other = ledger.get_customer(kept)
    assert other.data["identity_contact"]["name"] == "Quentin bravo Marlowe-Vance"
    assert (
        container.exports.get(
            next(
                e.originator_id
                for _, e in ledger.log_page(0, head)
                if getattr(e, "customer_id", None) == kept
            )
        )
        is not None
    )
    for value in ("Quentin bravo Marlowe-Vance", "quentin.bravo.new@hidden.example"):
        assert value.encode() in blob, f"the other customer's {value!r} should still be shown"

    # Every event still loads; personal fields read as placeholders; nothing raises.
    events = [event for _, event in ledger.log_page(0, head)]
    assert len(events) == head
    registered = next(e for e in events if e.originator_id == erased and e.originator_version == 1)
    assert isinstance(registered, Customer.Registered)
    assert registered.data["identity_contact"] == dict.fromkeys(
        ["email", "name", "phone", "postal_address"], ERASED
    )
    assert registered.data["payment_method"]["token"] == "tok_alpha_keep"  # retained
    then = ledger.customer_as_of(erased, before_deletion)
    assert then is not None
    assert then.data["identity_contact"]["name"] == ERASED
    assert then.activity[0].detail == ERASED
    now = ledger.get_customer(erased)
    assert now.erased_at is not None
    assert now.invoices  # billing records retained until their retention date
    trail, _ = container.views.audit_trail.trail(erased, limit=100)
    assert "Customer.Erased" in [row["event_type"] for row in trail]
    assert chain.verify(container.database.url, container.settings.database_schema).ok

    # When retention ends, the retained records go too, and their key with them.
    retained_until = now.retained_until
    assert retained_until is not None
    ledger.clock = lambda: retained_until + timedelta(days=1)
    worker.clock = lambda: retained_until + timedelta(days=1)
    assert worker.sweep()["purged"] == 1
    container.projection_worker().catch_up()
    blob = dump_database(container)
    for encoded in encodings("tok_alpha_keep"):
        assert encoded not in blob
    assert ledger.get_customer(erased).invoices == {}
    past = ledger.customer_as_of(erased, before_deletion)
    assert past is not None
    shown = state_out(past)  # what the auditor's API answers: placeholders, no failure
    assert shown.invoices[0].amount == ERASED
    assert shown.categories["payment_method"].fields["token"] == ERASED
