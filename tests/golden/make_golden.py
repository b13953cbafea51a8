"""Write a golden log: every event class of the domain, as this version stores it, sealed.

Run it from a worktree where ``make install`` has been done::

    .venv/bin/python -m tests.golden.make_golden log-v2-stable-names

It starts an embedded PostgreSQL in a temporary directory, records one scenario that emits
every event class (through the ledger's commands; the two former read events, which no
command emits any more, and an ``Expired`` as class version 1 stored it, are written the
way the versions that emitted them did), erases one customer and purges another's retained
records, then writes ``tests/golden/<name>.json`` (the events table's rows, the chain's
links and checkpoints, the data-key rows) and ``tests/golden/<name>.state.json`` (every
aggregate's state, replayed from that log).

When: once for each change of the stored format (stable names, a new class version, a new
event class: ``tests/integration/test_golden_log.py`` fails until a golden log holds every
class), under a NEW name. Never regenerate or edit a committed golden log: each is what an
earlier version wrote, and every later version must load it, verify its chain and replay it
to the same state. Never run in CI.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from pydantic import SecretStr

from rightsledger.bootstrap import build
from rightsledger.config import Settings
from rightsledger.domain.customer import Customer
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.storage import chain
from rightsledger.storage.database import start_embedded
from rightsledger.storage.keyvault import PERSONAL, RETAINED
from tests.golden import golden

SCHEMA = "golden"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EVIDENCE: dict[str, Any] = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
}


class Clock:
    """The ledger's clock, moved by the scenario."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def scenario(container: Any, clock: Clock) -> None:
    """Every event class at least once."""
    ledger = container.ledger
    vault = container.vault
    officer, worker = "privacy_officer:golden", "worker:requests"

    support = ledger.register_partner(
        name="Helpdesk Partners Ltd",
        kind="support_provider",
        actor="admin:golden",
        contract_reference="CT-2026-001",
        confidentiality_agreement="NDA-2026-001",
        contract_valid_until=date(2027, 12, 31),
    ).id
    ledger.renew_partner_contract(
        support,
        contract_reference="CT-2027-001",
        confidentiality_agreement="NDA-2027-001",
        valid_until=date(2028, 12, 31),
        actor="admin:golden",
    )
    ledger.register_partner(name="Regional Police", kind="law_enforcement", actor="admin:golden")

    # Ada: every customer event but the erasure.
    ada = ledger.register_customer(
        policy_version="2026-01",
        identity={
            "name": "Ada Golden",
            "email": "ada@golden.example",
            "phone": "+44 7700 900001",
            "postal_address": "1 Golden Row, Lowtown",
        },
        account={"plan": "fibre-500", "activated_at": "2026-01-05", "reference": "ACC-1001"},
        payment_method={"processor": "Acme Pay", "token": "tok_ada_0001"},
        actor="intake:golden",
    ).id
    ledger.change_consent(ada, channel="email", granted=True, evidence=EVIDENCE, actor="m:g")
    ledger.change_consent(ada, channel="sms", granted=True, evidence=EVIDENCE, actor="m:g")
    ledger.change_consent(ada, channel="sms", granted=False, evidence=EVIDENCE, actor="m:g")
    ledger.correct_customer(
        ada,
        {"identity_contact": {"phone": "+44 7700 900002"}, "payment_method": {"token": "tok_2"}},
        actor="support:golden",
    )
    ledger.record_invoice(
        ada,
        amount="42.50",
        currency="EUR",
        status="paid",
        issued_at=datetime(2026, 10, 1, tzinfo=UTC),
        actor="billing:golden",
    )
    ledger.log_activity(
        ada,
        kind="account",
        reason="security",
        detail="password reset from a new device",
        occurred_at=datetime(2026, 10, 3, 8, 0, tzinfo=UTC),
        actor="support:golden",
    )
    ledger.log_activity(
        ada,
        kind="network",
        reason="troubleshooting",
        detail="line drop at 03:12, router rebooted",
        occurred_at=datetime(2026, 7, 14, 3, 12, tzinfo=UTC),
        actor="support:golden",
    )
    ledger.disclose(
        ada,
        partner_id=support,
        basis="service_provider",
        categories=["identity_contact"],
        purpose="support",
        reference="ticket 8812",
        actor="support:golden",
    )
    ledger.record_access(
        ada,
        actor="support:golden",
        role="support",
        purpose="support",
        categories=["identity_contact"],
        what="profile",
    )
    ledger.record_refusal(
        ada,
        actor="marketing:golden",
        role="marketing",
        purpose="billing",
        what="profile",
        reason="purpose billing is not allowed for role marketing",
    )
    former(ledger, ada)
    _, through = ledger.purge_activity(
        ada, reason="troubleshooting", actor=worker, now=datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert through is not None
    vault.destroy_periods(ada, category="activity", purpose="troubleshooting", ended_by=through)

    def request(kind: str, customer: UUID = ada, **extra: Any) -> UUID:
        outcome = ledger.submit_request(
            customer_id=customer,
            request_type=kind,
            channel="web_form",
            jurisdiction="gdpr",
            actor="intake:golden",
            statement=f"I ask for {kind} of my data, Ada",
            **extra,
        )
        return UUID(str(outcome.id))

    def verify(request_id: UUID) -> None:
        ledger.verify_request(
            request_id, method="id_document", reference="passport seen, file 77", actor=officer
        )

    access = request("access")
    verify(access)
    ledger.fulfil_access(
        access, digest="ab" * 32, categories=["identity_contact"], items=7, actor=worker
    )
    correction = request(
        "correction", corrections={"identity_contact": {"postal_address": "2 Golden Row"}}
    )
    verify(correction)
    ledger.fulfil_correction(correction, actor=worker)
    opt_out = request("opt_out")
    verify(opt_out)
    ledger.fulfil_opt_out(opt_out, actor=worker)
    ledger.deny_request(
        request("access"), reason="a request for the same data is open", actor=officer
    )
    ledger.revoke_request(request("access"), reason="sent by mistake", actor="intake:golden")
    # one open request of a type per customer: the requests left open are other customers'
    dan, eve, fay = (erasable(ledger, name, support) for name in ("Dan", "Eve", "Fay"))
    ledger.extend_request(request("access", dan), reason="the archive is off site", actor=officer)
    unverified = request("access", eve)
    old_expiry = request("access", fay)

    # Bea: erased with a recipient who acknowledges, then her retained records purged.
    bea = erasable(ledger, "Bea", support)
    bea_deletion = request("deletion", bea)
    verify(bea_deletion)
    ledger.start_deletion(bea_deletion, actor=worker, retain_for=timedelta(days=30))
    vault.destroy(bea, PERSONAL)
    ledger.confirm_erasure(bea_deletion, actor=worker)
    ledger.acknowledge(bea_deletion, partner_id=support, actor="partner:golden")

    # Cai: erased; the recipient never acknowledges, so the deletion expires.
    cai = erasable(ledger, "Cai", support)
    cai_deletion = request("deletion", cai)
    verify(cai_deletion)
    ledger.start_deletion(cai_deletion, actor=worker)
    vault.destroy(cai, PERSONAL)
    ledger.confirm_erasure(cai_deletion, actor=worker)

    clock.now = START + timedelta(days=120)
    ledger.chase(unverified, remind_before=timedelta(days=7), actor=worker)
    ledger.chase(cai_deletion, remind_before=timedelta(days=7), actor=worker)
    expired_as_version_1(ledger, old_expiry, clock.now)
    ledger.purge_retained(bea, actor=worker)
    vault.destroy(bea, RETAINED)
    ledger.record_skip(
        follower="projections", position=3, reason="replayed by hand", actor="admin:golden"
    )


def erasable(ledger: Any, name: str, partner: UUID) -> UUID:
    customer = UUID(
        str(
            ledger.register_customer(
                policy_version="2026-01",
                identity={"name": f"{name} Golden", "email": f"{name.lower()}@golden.example"},
                payment_method={"processor": "Acme Pay", "token": f"tok_{name.lower()}"},
                actor="intake:golden",
            ).id
        )
    )
    ledger.record_invoice(
        customer,
        amount="9.99",
        currency="GBP",
        status="issued",
        issued_at=datetime(2026, 10, 20, tzinfo=UTC),
        actor="billing:golden",
    )
    ledger.disclose(
        customer,
        partner_id=partner,
        basis="service_provider",
        categories=["identity_contact"],
        purpose="support",
        reference=f"ticket {name}",
        actor="support:golden",
    )
    return customer


def former(ledger: Any, customer_id: UUID) -> None:
    """Reads as they were recorded before reads had streams of their own: on the customer."""
    customer = ledger.repository.get(customer_id)
    customer.trigger_event(
        Customer.DataAccessed,
        actor="support:golden",
        role="support",
        purpose="support",
        categories=["identity_contact"],
        what="profile",
    )
    customer.trigger_event(
        Customer.AccessRefused,
        actor="marketing:golden",
        role="marketing",
        purpose="billing",
        what="profile",
        reason="purpose billing is not allowed for role marketing",
    )
    ledger.save(customer)
    ledger.evict(customer_id)


def expired_as_version_1(ledger: Any, request_id: UUID, now: datetime) -> None:
    """An expiry as class version 1 stored it: no ``unacknowledged``, no ``class_version``."""
    request: DataRightsRequest = ledger.repository.get(request_id)
    request.expire(reason="identity was not verified before the due date", now=now, actor="w:r")
    (event,) = request.collect_events()
    stored = ledger.mapper.to_stored_event(event)
    state = ledger.mapper.transcoder.decode(stored.state)
    assert state.pop("class_version") == 2
    del state["unacknowledged"]
    ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=stored.originator_id,
                originator_version=stored.originator_version,
                # under a stable name, version 1's (a module path names no version)
                topic=stored.topic.removesuffix(".v2") + ".v1"
                if ":" not in stored.topic
                else stored.topic,
                state=ledger.mapper.transcoder.encode(state),
            )
        ]
    )
    ledger.evict(request_id)


def write(name: str, home: Path, report: Callable[[str], None] = print) -> None:
    database = start_embedded(home)
    try:
        database.ensure_schema(SCHEMA)
        settings = Settings(
            database_url=SecretStr(database.url),
            database_schema=SCHEMA,
            run_projections=False,
            run_workers=False,
            group_commit=False,
        )
        clock = Clock()
        container = build(settings, database=database)
        try:
            container.ledger.clock = clock
            scenario(container, clock)
            chain.checkpoint(database.url, SCHEMA)
            with psycopg.connect(database.url) as conn:
                log = golden.dump(conn, SCHEMA)
            container.ledger.clear_cache()
            container.vault.clear_cache()
            ids = dict.fromkeys(e["originator_id"] for e in log["events"])
            state = {i: golden.summary(container.ledger.repository.get(UUID(i))) for i in ids}
        finally:
            container.close()
    finally:
        database.close()
    log = {"name": name, "written_at": datetime.now(UTC).isoformat(), **log}
    (golden.HERE / f"{name}.json").write_text(json.dumps(log, indent=1, sort_keys=True) + "\n")
    (golden.HERE / f"{name}.state.json").write_text(
        json.dumps(state, indent=1, sort_keys=True) + "\n"
    )
    report(f"{name}: {len(log['events'])} events, {len(state)} aggregates")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith("log-"):
        print("usage: python -m tests.golden.make_golden log-<name>", file=sys.stderr)
        return 2
    if (golden.HERE / f"{argv[0]}.json").exists():
        print(f"{argv[0]} exists; a golden log is never rewritten", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="golden-pg-") as home:
        write(argv[0], Path(home))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
