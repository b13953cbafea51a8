"""Retention schedules on real PostgreSQL: a schedule passing (the test holds the clock)
purges exactly the activity past it. The purge is recorded first (``ActivityPurged``),
then only the keys of the purged periods are destroyed: their values can no longer be
decrypted from the stored events, newer entries and other customers stay readable."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.utils import resolve_topic
from psycopg import sql
from psycopg_pool import ConnectionPool

from rightsledger.bootstrap import Container, build, ledger_env, make_ledger
from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import InvalidCommandError
from rightsledger.domain.ledger import RightsLedger
from rightsledger.storage import chain, sealing
from rightsledger.storage.database import Database
from rightsledger.storage.keyvault import PERSONAL, PostgresKeyVault
from rightsledger.storage.migrations import MIGRATIONS, migrate
from rightsledger.storage.sealing import ERASED, SEALED, Rule
from tests.conftest import make_settings
from tests.integration.scans import dump_database, encodings
from tests.integration.test_sweep import worker_at
from tests.scenarios import log_head, verified

T = datetime(2026, 6, 29, 12, tzinfo=UTC)
"""The sweep's moment: troubleshooting (90 days after the month) is due through February,
security (12 months) through May 2025."""


def register(ledger: RightsLedger, name: str) -> UUID:
    return ledger.register_customer(
        policy_version="2026-01", identity={"name": name}, actor="intake:t"
    ).id


def log(ledger: RightsLedger, customer: UUID, reason: str, at: datetime, detail: str) -> UUID:
    return ledger.log_activity(
        customer, kind="network", reason=reason, detail=detail, occurred_at=at, actor="noc"
    ).id


def stored_activity(container: Container, customer: UUID) -> list[dict[str, Any]]:
    """The customer's stored ``ActivityLogged`` events as the database holds them (sealed),
    each with an attempt to open its detail with the key ``subject_keys`` holds for it."""
    ledger = container.ledger
    table = sql.Identifier(container.settings.database_schema, "subject_keys")
    found = []
    with psycopg.connect(container.database.url) as conn:
        for stored in ledger.recorder.select_events(customer):
            if resolve_topic(stored.topic) is not Customer.ActivityLogged:
                continue
            state = ledger.mapper.transcoder.decode(stored.state)
            envelope = state["detail"]
            assert envelope[SEALED] == 1  # never in clear
            row = conn.execute(
                sql.SQL("SELECT key FROM {} WHERE key_id = %s").format(table),
                (UUID(envelope["key"]),),
            ).fetchone()
            assert row is not None
            opened: str | None = None
            if row[0] is not None:
                box = base64.b64decode(envelope["box"])
                aad = f"{customer}/{stored.originator_version}/detail/None".encode()
                try:
                    plain = AESGCM(bytes(row[0])).decrypt(box[:12], box[12:], aad)
                except InvalidTag:  # pragma: no cover - a wrong key would be a failure below
                    plain = None
                if plain is not None:
                    opened = ledger.mapper.transcoder.decode(plain)["v"]
            found.append({"key": UUID(envelope["key"]), "opened": opened})
    return found


def purged_events(ledger: RightsLedger, after: int = 0) -> list[Customer.ActivityPurged]:
    return [e for _, e in ledger.log_page(after, 10_000) if isinstance(e, Customer.ActivityPurged)]


def test_a_schedule_passing_purges_exactly_the_activity_past_it(container: Container) -> None:
    """Troubleshooting activity of January and February is purged at T (90 days after each
    month's end have passed); March's, security activity and another customer's are not.
    The purged details can no longer be decrypted from the stored events (their keys are
    NULL), are gone from the views, and load as ``[erased]``; the rest reads in full."""
    ledger = container.ledger
    ada, bob = register(ledger, "Ada"), register(ledger, "Bob")
    january = log(ledger, ada, "troubleshooting", datetime(2026, 1, 15, tzinfo=UTC), "ada jan line")
    february = log(ledger, ada, "troubleshooting", datetime(2026, 2, 28, 23, tzinfo=UTC), "ada feb")
    march = log(ledger, ada, "troubleshooting", datetime(2026, 3, 1, tzinfo=UTC), "ada march")
    security = log(ledger, ada, "security", datetime(2026, 1, 15, tzinfo=UTC), "ada sec jan")
    log(ledger, bob, "troubleshooting", datetime(2026, 3, 31, tzinfo=UTC), "bob march")
    log(ledger, bob, "security", datetime(2025, 7, 1, tzinfo=UTC), "bob sec july")
    purged_details = ["ada jan line", "ada feb"]
    kept_details = ["ada march", "ada sec jan", "bob march", "bob sec july"]
    container.projection_worker().catch_up()
    blob = dump_database(container)
    assert all(detail.encode() in blob for detail in purged_details)  # the view holds them

    worker = worker_at(container, T)
    before = log_head(container.ledger)
    assert worker.sweep() == {"activity_purged": 2}

    (event,) = purged_events(ledger, before)
    assert event.originator_id == ada
    assert event.purpose == "troubleshooting"
    assert sorted(event.entries, key=str) == sorted([january, february], key=str)
    assert event.periods == ["2026-01", "2026-02"]
    assert event.through == datetime(2026, 3, 1, tzinfo=UTC)
    assert event.schedule["period"] == {"months": 0, "days": 90}
    assert event.schedule["basis"]

    # No decryptable copy of a purged detail is left; every other one opens.
    ada_stored = stored_activity(container, ada)
    assert sorted(s["opened"] or ERASED for s in ada_stored) == sorted(
        [ERASED, ERASED, "ada march", "ada sec jan"]
    )
    assert {s["opened"] for s in stored_activity(container, bob)} == {"bob march", "bob sec july"}
    container.projection_worker().catch_up()
    blob = dump_database(container)
    for detail in purged_details:
        for encoded in encodings(detail):
            assert encoded not in blob, f"{detail!r} is still in the database"
    for detail in kept_details:
        assert detail.encode() in blob, f"{detail!r} should still be shown"
    profile, _ = container.views.customer_profile.get(ada)
    assert profile is not None
    assert [e["detail"] for e in profile["activity"]] == ["ada march", "ada sec jan"]

    # A fresh process: the customer loads without the purged entries, the log still holds
    # them as [erased], identity stays readable, and the chain still verifies.
    fresh = make_ledger(container.env, container.vault, container.settings)
    try:
        loaded = fresh.get_customer(ada)
        assert [e.entry_id for e in loaded.activity] == [march, security]
        assert loaded.data["identity_contact"]["name"] == "Ada"
        details = {
            e.entry_id: e.detail
            for _, e in fresh.log_page(0, 10_000)
            if isinstance(e, Customer.ActivityLogged)
        }
        assert details[january] == details[february] == ERASED
        assert details[march] == "ada march"
    finally:
        fresh.close()
    assert chain.verify(container.database.url, container.settings.database_schema).ok

    # Idempotent: the same schedule at the same moment finds nothing more to do.
    again = log_head(container.ledger)
    assert worker.sweep() == {}
    assert log_head(container.ledger) == again

    # A purged month takes no more activity for that purpose.
    with pytest.raises(InvalidCommandError, match="past its retention"):
        log(ledger, ada, "troubleshooting", datetime(2026, 2, 3, tzinfo=UTC), "late")


def test_an_export_delivered_before_the_purge_loses_the_purged_entries_too(
    container: Container,
) -> None:
    """An access export prepared before the schedule passed held the activity in clear; the
    purge redacts the purged entries' details there too (before their keys go), keeps the
    others and the digest as delivered, and leaves no copy of a purged detail anywhere in
    the database."""
    ledger = container.ledger
    ada = register(ledger, "Ada")
    log(ledger, ada, "troubleshooting", datetime(2026, 1, 15, tzinfo=UTC), "ada jan line")
    log(ledger, ada, "troubleshooting", datetime(2026, 3, 1, tzinfo=UTC), "ada march")
    request = verified(ledger, ada, "access")
    assert container.request_worker().catch_up() > 0
    delivered = container.exports.get(request)
    assert delivered is not None
    before = [e["detail"] for e in delivered["document"]["categories"]["activity"]["entries"]]
    assert sorted(before) == ["ada jan line", "ada march"]

    assert worker_at(container, T).sweep() == {"activity_purged": 1}
    kept = container.exports.get(request)
    assert kept is not None
    after = [e["detail"] for e in kept["document"]["categories"]["activity"]["entries"]]
    assert sorted(after) == [ERASED, "ada march"]
    assert kept["digest"] == delivered["digest"]
    container.projection_worker().catch_up()
    blob = dump_database(container)
    for encoded in encodings("ada jan line"):
        assert encoded not in blob
    assert b"ada march" in blob


def test_keys_are_destroyed_only_after_the_purge_is_recorded(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep that dies after recording ``ActivityPurged`` but before destroying the keys
    leaves them live; the next sweep records nothing new and destroys exactly those keys."""
    ledger = container.ledger
    ada = register(ledger, "Ada")
    log(ledger, ada, "troubleshooting", datetime(2026, 1, 15, tzinfo=UTC), "ada jan line")
    log(ledger, ada, "troubleshooting", datetime(2026, 5, 15, tzinfo=UTC), "ada may")
    worker = worker_at(container, T)
    real = container.vault.destroy_periods

    def crash(*args: Any, **kwargs: Any) -> list[str]:
        raise RuntimeError("killed before the keys were destroyed")

    monkeypatch.setattr(container.vault, "destroy_periods", crash)
    with pytest.raises(RuntimeError):
        worker.sweep()
    assert len(purged_events(ledger)) == 1
    assert {s["opened"] for s in stored_activity(container, ada)} == {"ada jan line", "ada may"}

    monkeypatch.setattr(container.vault, "destroy_periods", real)
    position = log_head(container.ledger)
    assert worker.sweep() == {}
    assert log_head(container.ledger) == position  # nothing recorded twice
    assert sorted(s["opened"] or ERASED for s in stored_activity(container, ada)) == [
        ERASED,
        "ada may",
    ]


def test_activity_sealed_with_the_customer_key_keeps_loading(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Activity stored before period keys (sealed with the customer's personal key) loads
    as before; a purge drops it from the record with the rest, and the erasure, which
    destroys the customer's key, is what makes its stored value unreadable."""
    ledger = container.ledger
    ada = register(ledger, "Ada")
    subject, _ = sealing.RULES[Customer.ActivityLogged]
    monkeypatch.setitem(sealing.RULES, Customer.ActivityLogged, (subject, [Rule("detail")]))
    legacy = log(ledger, ada, "troubleshooting", datetime(2026, 1, 3, tzinfo=UTC), "ada legacy")
    monkeypatch.undo()
    current = log(ledger, ada, "troubleshooting", datetime(2026, 2, 3, tzinfo=UTC), "ada period")
    keys = {s["key"] for s in stored_activity(container, ada)}
    assert ada in keys  # the customer's key, and February's period key
    assert len(keys) == 2
    ledger.clear_cache()
    assert [e.detail for e in ledger.get_customer(ada).activity] == ["ada legacy", "ada period"]

    assert worker_at(container, T).sweep() == {"activity_purged": 2}
    (event,) = purged_events(ledger)
    assert set(event.entries) == {legacy, current}
    ledger.clear_cache()
    assert ledger.get_customer(ada).activity == []
    opened = {s["key"]: s["opened"] for s in stored_activity(container, ada)}
    assert opened[ada] == "ada legacy"  # readable in the log until erasure
    assert set(opened.values()) == {"ada legacy", None}  # February's key destroyed


def test_upgrading_registers_the_periods_already_logged(
    database: Database, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store from before period keys (activity sealed with the customer's key): the
    migration creates the period key of each month that holds activity, except for erased
    customers, so the sweep finds that activity when its schedule passes and purges it."""
    settings = make_settings(database, schema)
    env = {**ledger_env(settings, database), "CREATE_TABLE": "n"}
    migrate(database.url, schema, env, migrations=MIGRATIONS[:2])
    subject, _ = sealing.RULES[Customer.ActivityLogged]
    monkeypatch.setitem(sealing.RULES, Customer.ActivityLogged, (subject, [Rule("detail")]))
    with ConnectionPool(database.url, min_size=1, max_size=2, open=True) as pool:
        old = make_ledger(env, PostgresKeyVault(pool, schema), settings)
        try:
            ada, bob = register(old, "Ada"), register(old, "Bob")
            january = log(old, ada, "troubleshooting", datetime(2026, 1, 3, tzinfo=UTC), "ada old")
            log(old, ada, "troubleshooting", datetime(2026, 1, 20, tzinfo=UTC), "ada old two")
            log(old, ada, "security", datetime(2026, 1, 20, tzinfo=UTC), "ada old sec")
            log(old, bob, "troubleshooting", datetime(2026, 1, 3, tzinfo=UTC), "bob old")
            PostgresKeyVault(pool, schema).destroy(bob, PERSONAL)  # Bob was erased
        finally:
            old.close()
    monkeypatch.undo()

    container = build(settings, database=database)  # applies the period keys' migration
    try:
        with psycopg.connect(database.url) as conn:
            periods = conn.execute(
                sql.SQL(
                    "SELECT customer_id, purpose, period FROM {} WHERE period IS NOT NULL"
                    " ORDER BY purpose"
                ).format(sql.Identifier(schema, "subject_keys")),
            ).fetchall()
        assert periods == [(ada, "security", "2026-01"), (ada, "troubleshooting", "2026-01")]
        assert worker_at(container, T).sweep() == {"activity_purged": 2}
        (event,) = purged_events(container.ledger)
        assert event.originator_id == ada
        assert january in event.entries
        container.ledger.clear_cache()
        assert [e.detail for e in container.ledger.get_customer(ada).activity] == ["ada old sec"]
    finally:
        container.close()
