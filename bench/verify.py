"""Chain verification speed: events/s ``chain.verify`` checks, beside a raw read of the log.

Fills a fresh schema ``bench_<hex>`` with ``--events`` chained events fast: stored events
of the realistic log of ``bench/rebuild.py`` (registrations, consent changes, corrections,
invoices, shares, requests) are bulk-copied into ``rightsledger_events`` with explicit
notification ids 1..N while their links (``chain.link`` in log order, from ``GENESIS``)
are bulk-copied into ``rightsledger_events_chain`` on a second connection; one checkpoint
of the head is taken (``chain.checkpoint``) and both tables are vacuumed and analysed
(so neither timed read pays for hint bits). Then, in the same run:

- raw: streaming every row of the events table (the columns ``verify`` reads, in log
  order) with a server-side cursor, itersize 5000, without hashing;
- raw + links: the same, with the chain table streamed beside it (still no hashing);
- verify: ``chain.verify(url, schema)``, asserted ok with ``checked == N``, one
  checkpoint matched, and a head hash equal to the one computed while filling.

Events are stored by a plain ``RightsLedger(env)`` mapper (as ``bench/rebuild.py`` does);
``--sealed`` builds the service's container instead so personal fields are sealed with
vault keys as in production (larger stored events, a much slower fill).

Run: ``.venv/bin/python bench/verify.py --events 1000000``
(``--database-url`` defaults to RIGHTSLEDGER_DATABASE_URL or the local server;
``--keep`` leaves the schema for inspection).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from rebuild import (  # bench/rebuild.py: the same log as the rebuild bench
    customer_histories,
    processors,
    progress,
)

from rightsledger.bootstrap import build, ledger_env
from rightsledger.config import Settings
from rightsledger.domain.ledger import RightsLedger
from rightsledger.storage import chain
from rightsledger.storage.database import Database

TARGET_EVENTS = 1_000_000
TARGET_SECONDS = 60.0
EVENTS = "rightsledger_events"


def fill(app: RightsLedger, url: str, schema: str, events: int) -> tuple[int, bytes, int]:
    """COPY ``events`` stored events and their links; (written, head hash, state bytes)."""
    partners = processors()
    events_table = sql.Identifier(schema, EVENTS)
    chain_table = sql.Identifier(schema, f"{EVENTS}_chain")
    previous = chain.GENESIS
    written = 0
    reported = 0
    state_bytes = 0
    started = time.perf_counter()
    with psycopg.connect(url) as log_conn, psycopg.connect(url) as chain_conn:
        with (
            log_conn.cursor() as log_cur,
            log_cur.copy(
                sql.SQL(
                    "COPY {} (notification_id, originator_id, originator_version, topic, state)"
                    " FROM STDIN"
                ).format(events_table)
            ) as log_copy,
            chain_conn.cursor() as chain_cur,
            chain_cur.copy(
                sql.SQL("COPY {} (position, hash) FROM STDIN").format(chain_table)
            ) as chain_copy,
        ):
            pending: list[Any] = list(partners)
            histories = customer_histories(partners)
            while written < events:
                if not pending:
                    pending = next(histories)
                aggregate = pending.pop()
                for event in aggregate.collect_events():
                    stored = app.mapper.to_stored_event(event)
                    written += 1
                    log_copy.write_row(
                        (
                            written,
                            stored.originator_id,
                            stored.originator_version,
                            stored.topic,
                            stored.state,
                        )
                    )
                    previous = chain.link(
                        previous,
                        written,
                        stored.originator_id,
                        stored.originator_version,
                        stored.topic,
                        stored.state,
                    )
                    chain_copy.write_row((written, previous))
                    state_bytes += len(stored.state)
                if written >= reported + 20000:
                    reported = written
                    progress("filling", written, events, started)
        log_conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)"),
            (f'"{schema}"."{EVENTS}"', written),
        )
        log_conn.commit()
        chain_conn.commit()
    sys.stderr.write("\n")
    return written, previous, state_bytes


def stream(url: str, queries: list[sql.Composed], total: int, label: str) -> tuple[int, float]:
    """Read every row of each query in step, server-side cursors, no hashing; (rows, s)."""
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(url) as conn:
        cursors = [conn.cursor(name=f"bench_raw_{i}") for i in range(len(queries))]
        for cur, query in zip(cursors, queries, strict=True):
            cur.itersize = 5000
            cur.execute(query)
        iterators = [iter(cur) for cur in cursors]
        lead, *rest = iterators
        for _ in lead:
            for other in rest:
                next(other)
            rows += 1
            if rows % 50000 == 0:
                progress(label, rows, total, started)
        for cur in cursors:
            cur.close()
    seconds = time.perf_counter() - started
    progress(label, rows, total, started)
    sys.stderr.write("\n")
    return rows, seconds


def timed_verify(url: str, schema: str, total: int) -> tuple[chain.Verification, float]:
    started = time.perf_counter()

    def report(done: int, _head: int) -> None:
        if done % 50000 == 0:
            progress("verify", done, total, started)

    result = chain.verify(url, schema, progress=report)
    seconds = time.perf_counter() - started
    progress("verify", result.checked, total, started)
    sys.stderr.write("\n")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=TARGET_EVENTS)
    parser.add_argument(
        "--sealed", action="store_true", help="seal personal fields (the service's mapper)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "RIGHTSLEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = args.database_url
    schema = "bench_" + uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=url, database_schema=schema, run_projections=False, run_workers=False
    )
    closers: list[Callable[[], None]] = []
    try:
        if args.sealed:
            container = build(settings)
            closers.append(container.close)
            app = container.ledger
        else:
            database = Database(url=url)
            database.ensure_schema(schema)
            app = RightsLedger(ledger_env(settings, database))  # creates events, chain tables
            closers.append(app.close)
        fill_started = time.perf_counter()
        written, head_hash, state_bytes = fill(app, url, schema, args.events)
        fill_seconds = time.perf_counter() - fill_started
        marked = chain.checkpoint(url, schema)
        assert marked == (written, head_hash.hex()), (marked, written, head_hash.hex())
        with psycopg.connect(url, autocommit=True) as conn:
            for table in (EVENTS, f"{EVENTS}_chain"):
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, table)))
            stored = conn.execute(
                sql.SQL(
                    "SELECT min(notification_id), max(notification_id), count(*) FROM {}"
                ).format(sql.Identifier(schema, EVENTS))
            ).fetchone()
            assert stored == (1, written, written), (stored, written)
            size = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_total_relation_size(%s)",
                (f'"{schema}"."{EVENTS}"', f'"{schema}"."{EVENTS}_chain"'),
            ).fetchone()
            assert size is not None
        events_query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} ORDER BY notification_id"
        ).format(sql.Identifier(schema, EVENTS))
        links_query = sql.SQL("SELECT position, hash FROM {} ORDER BY position").format(
            sql.Identifier(schema, f"{EVENTS}_chain")
        )
        raw_rows, raw_seconds = stream(url, [events_query], written, "raw")
        assert raw_rows == written, (raw_rows, written)
        both_rows, both_seconds = stream(url, [events_query, links_query], written, "raw+links")
        assert both_rows == written, (both_rows, written)
        result, verify_seconds = timed_verify(url, schema, written)
        assert result.ok, result.as_dict()
        assert result.checked == written, result.as_dict()
        assert result.checkpoints_checked == 1, result.as_dict()
        assert result.head_hash == head_hash.hex(), (result.head_hash, head_hash.hex())

        raw_rate = written / raw_seconds
        both_rate = written / both_seconds
        verify_rate = written / verify_seconds
        ratio = verify_rate / raw_rate
        # the target scaled to this run's size (1,000,000 events in 60 s)
        allowed = TARGET_SECONDS * written / TARGET_EVENTS
        ok = verify_seconds < allowed
        figures = {
            "events": written,
            "sealed": args.sealed,
            "mean_state_bytes": round(state_bytes / written),
            "events_table_mb": round(size[0] / 2**20),
            "chain_table_mb": round(size[1] / 2**20),
            "raw_events_per_s": round(raw_rate),
            "raw_seconds": round(raw_seconds, 1),
            "raw_with_links_events_per_s": round(both_rate),
            "raw_with_links_seconds": round(both_seconds, 1),
            "verify_events_per_s": round(verify_rate),
            "verify_seconds": round(verify_seconds, 1),
            "ratio_verify_to_raw": round(ratio, 3),
            "fill_seconds": round(fill_seconds, 1),
            "target_seconds_per_1m": TARGET_SECONDS,
            "target_seconds_this_size": round(allowed, 1),
            "meets_target": ok,
        }
        print(
            f"events in log:             {written:,} chained"
            f" ({'sealed, ' if args.sealed else ''}{state_bytes / written:,.0f} B state/event;"
            f" events {size[0] / 2**20:,.0f} MB, chain {size[1] / 2**20:,.0f} MB)"
        )
        print(f"raw stream (events):       {raw_rate:,.0f} events/s ({raw_seconds:.1f} s)")
        print(f"raw stream (events+links): {both_rate:,.0f} events/s ({both_seconds:.1f} s)")
        print(
            f"chain.verify:              {verify_rate:,.0f} events/s ({verify_seconds:.1f} s)"
            f"   target < {allowed:.1f} s [{'ok' if ok else 'MISSED'}]"
        )
        print(f"ratio verify / raw:        {ratio:.3f}")
        print(
            f"verification:              ok, checked {result.checked:,},"
            f" {result.checkpoints_checked} checkpoint, head {result.head_hash[:16]}..."
            if result.head_hash
            else "verification:              ok, empty log"
        )
        print(
            f"target: {TARGET_EVENTS:,} events verified in under {TARGET_SECONDS:.0f} s"
            f" ({TARGET_EVENTS / TARGET_SECONDS:,.0f} events/s)"
        )
        print("json:", json.dumps(figures))
    finally:
        for close in reversed(closers):
            close()
        if not args.keep:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
