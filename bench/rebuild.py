"""Rebuild speed: events/s replayed into all views, beside the raw log read rate.

Fills a fresh schema with a realistic log (registrations, consent changes,
corrections, invoices, shares, requests) by running the domain in memory and
bulk-copying the stored events, then measures in the same run:

- raw: paging through the whole log with ``select_notifications`` (no decoding);
- rebuild: every view rebuilt from the whole log as ``rightsledger projections rebuild
  --all`` does it (``bootstrap.rebuild_views``): beside the live views, then swapped in;
  decode with unsealing (no data key at hand at the start) + view writes + tracking,
  batched per transaction; by default in as many processes as the machine has cores,
  each applying its share of the log (a set of customers' streams) to every view
  (``--processes 1``: one process, this one).

Run: ``.venv/bin/python bench/rebuild.py --events 1000000 [--processes N [N ...]]``
(``--rebuild-batch 28 --batch 28``: batches of a live follower's size under load)
(``--database-url`` defaults to RIGHTSLEDGER_DATABASE_URL or the local server;
``--keep`` leaves the schema for inspection; ``--schema NAME`` rebuilds the log already
in a kept schema instead of filling a new one).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from rightsledger.bootstrap import Container, build, rebuild_views
from rightsledger.config import Settings
from rightsledger.domain.customer import Customer
from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.worker import VIEW_CLASSES
from rightsledger.storage.database import Database

EVIDENCE = {
    "method": "web_form",
    "wording_version": "v3",
    "captured_at": datetime(2026, 1, 1, tzinfo=UTC),
}
RULES = {"gdpr": DeadlineRule(Period(months=1), Period(months=2))}


def progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stderr.write(f"\r{label}: {done:>9}/{total} ({rate:,.0f}/s)   ")
    sys.stderr.flush()


def customer_histories(partners: list[Partner]) -> Iterator[list[Any]]:
    """Aggregates with their pending events: about 20 events per customer."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    n = 0
    while True:
        n += 1
        customer = Customer.register(
            policy_version="2026-01",
            identity={
                "name": f"Customer {n}",
                "email": f"c{n}@example.org",
                "phone": "+44 20 0000",
            },
            account={"plan": "fibre-500"},
            payment_method={"processor": "Acme Payments", "token": f"tok_{n}"},
            actor="intake:bench",
        )
        for i in range(10):
            channel = ("email", "sms", "phone", "post")[i % 4]
            if customer.has_consent(channel):
                customer.withdraw_consent(channel=channel, evidence=EVIDENCE, actor="support:bench")
            else:
                customer.grant_consent(channel=channel, evidence=EVIDENCE, actor="marketing:bench")
        customer.correct(category="identity_contact", changes={"phone": "+44 20 1111"}, actor="s:b")
        for month in range(4):
            customer.record_invoice(
                amount="49.90",
                currency="EUR",
                status="paid",
                issued_at=now - timedelta(days=30 * month),
                actor="billing:bench",
            )
        customer.log_activity(
            kind="network",
            reason="security",
            detail="login from new device",
            occurred_at=now,
            actor="support:bench",
        )
        customer.disclose(
            partner=partners[n % len(partners)],
            basis="service_provider",
            categories=["payment_method"],
            purpose="billing",
            reference="run",
            actor="billing:bench",
            now=now,
        )
        request = DataRightsRequest.submit(
            customer_id=customer.id,
            request_type="access",
            channel="email",
            jurisdiction="gdpr",
            rules=RULES,
            received_at=now,
            actor="intake:bench",
            statement="copy please",
        )
        request.verify_identity(method="id", reference="doc", actor="po:bench")
        yield [customer, request]


def processors() -> list[Partner]:
    """The payment processors the generated customers' data is shared with."""
    return [
        Partner.register(
            name=f"Processor {i}",
            kind="payment_processor",
            contract_reference="C",
            confidentiality_agreement="NDA",
            contract_valid_until=date(2099, 1, 1),
            actor="po:b",
        )
        for i in range(5)
    ]


def fill(app: RightsLedger, url: str, schema: str, events: int) -> int:
    """Write ``events`` stored events with COPY (fast), in aggregate order."""
    partners = processors()
    table = sql.Identifier(schema, "rightsledger_events")
    written = 0
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL(
                    "COPY {} (originator_id, originator_version, topic, state) FROM STDIN"
                ).format(table)
            ) as copy,
        ):
            pending: list[Any] = list(partners)
            histories = customer_histories(partners)
            while written < events:
                if not pending:
                    pending = next(histories)
                aggregate = pending.pop()
                for event in aggregate.collect_events():
                    stored = app.mapper.to_stored_event(event)
                    copy.write_row(
                        (
                            stored.originator_id,
                            stored.originator_version,
                            stored.topic,
                            stored.state,
                        )
                    )
                    written += 1
                if written % 20000 < 25:
                    progress("filling", written, events, started)
        conn.commit()
    sys.stderr.write("\n")
    return written


def raw_read(app: RightsLedger, head: int, batch: int) -> float:
    started = time.perf_counter()
    position = 0
    count = 0
    while position < head:
        notifications = app.recorder.select_notifications(
            start=position, limit=batch, inclusive_of_start=False
        )
        if not notifications:
            break
        count += len(notifications)
        position = notifications[-1].id
    elapsed = time.perf_counter() - started
    assert count == head, (count, head)
    return elapsed


def timed_rebuild(
    container: Container, head: int, processes: int, profile: str | None, batch_size: int
) -> float:
    """Seconds to rebuild every view as ``projections rebuild --all`` does."""
    # a rebuild runs in a process of its own: no data key is at hand when it starts
    container.vault.clear_cache()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    reached = rebuild_views(
        container,
        list(VIEW_CLASSES),
        processes=processes,
        progress=lambda done, total: progress("rebuild", done, total, started),
        batch_size=batch_size,
    )
    seconds = time.perf_counter() - started
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    sys.stderr.write("\n")
    assert reached == head, (reached, head)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000, help="events per raw read")
    parser.add_argument(
        "--rebuild-batch",
        type=int,
        default=2000,
        help="events per rebuild batch (2000, as the CLI's rebuild; tens, as a live follower's"
        " batches under load)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[os.cpu_count() or 1],
        help="processes sharing the log by customer (default: the machine's cores);"
        " several values: one rebuild after the other on the same log",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "RIGHTSLEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="leave the schema for inspection")
    parser.add_argument(
        "--schema",
        help="rebuild the log already in this schema (one left by --keep) instead of filling"
        " a fresh one; it is kept",
    )
    parser.add_argument(
        "--profile", help="write a cProfile of the rebuild phase to this file (one process)"
    )
    args = parser.parse_args()
    schema = args.schema or "bench_" + uuid.uuid4().hex[:10]
    database = Database(url=args.database_url)
    database.ensure_schema(schema)
    # The service's own composition (as `rightsledger projections run` builds it): events
    # sealed with the key vault's keys, every view, the lookup view's blind index.
    settings = Settings(
        database_url=args.database_url,
        database_schema=schema,
        run_projections=False,
        run_workers=False,
    )
    container = build(settings, database=database, role="follower")
    app = container.ledger
    try:
        head = app.recorder.max_notification_id() or 0
        if args.schema and head:
            written = head
        else:
            written = fill(app, args.database_url, schema, args.events)
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "rightsledger_events"))
                )
            head = app.recorder.max_notification_id() or 0
        print(f"events in log:             {written:,}")
        for processes in args.processes:
            # the raw read just before each rebuild: the machine's pace drifts between runs
            raw_seconds = raw_read(app, head, args.batch)
            rebuild_seconds = timed_rebuild(
                container, head, processes, args.profile, args.rebuild_batch
            )
            raw_rate = head / raw_seconds
            rebuild_rate = head / rebuild_seconds
            figures = {
                "events": written,
                "raw_read_events_per_s": round(raw_rate),
                "rebuild_events_per_s": round(rebuild_rate),
                "rebuild_seconds": round(rebuild_seconds, 1),
                "ratio_rebuild_to_raw": round(rebuild_rate / raw_rate, 3),
                "batch": args.batch,
                "rebuild_batch": args.rebuild_batch,
                "processes": processes,
                "views": len(VIEW_CLASSES),
            }
            print(f"raw select_notifications:  {raw_rate:,.0f} events/s ({raw_seconds:.1f} s)")
            print(
                f"rebuild into all {len(VIEW_CLASSES)} views: {rebuild_rate:,.0f} events/s"
                f" ({rebuild_seconds:.1f} s, {processes} processes)"
            )
            print(f"ratio rebuild / raw:       {rebuild_rate / raw_rate:.3f}")
            print("targets: >= 25,000 events/s and >= 0.25 of the raw read rate")
            print("json:", json.dumps(figures))
    finally:
        container.close()
        if not (args.keep or args.schema):
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
