"""The privacy team's inbox: open work by due date, filters, counts, one cursor shape for every
list, a request's detail with its timeline, and duplicates refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from rightsledger.bootstrap import Container
from rightsledger.security.keys import Role
from tests.e2e.conftest import EVIDENCE, customer_body, ok

Headers = Callable[[Role | str], dict[str, str]]



def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def new_customer(client: TestClient, admin: dict[str, str]) -> str:
    created = ok(client.post("/v1/customers", json=customer_body(), headers=admin), 201)
    return str(created["customer_id"])


def submit(
    client: TestClient,
    admin: dict[str, str],
    customer: str,
    kind: str = "access",
    jurisdiction: str = "gdpr",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": customer,
        "type": kind,
        "channel": "email",
        "jurisdiction": jurisdiction,
        "statement": f"{kind}, please",
    }
    if kind == "correction":
        body["corrections"] = {"identity_contact": {"email": "ada@new.example.org"}}
    accepted: dict[str, Any] = ok(client.post("/v1/requests", json=body, headers=admin), 202)
    return accepted


def pages(
    client: TestClient,
    auth: dict[str, str],
    path: str,
    params: dict[str, Any],
    between: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Every page of a list, following `next_cursor` (checked against the Link header),
    calling ``between`` after each page."""
    answers = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query, headers=auth)
        page = ok(response)
        answers.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            assert "link" not in response.headers
            return answers
        link = response.headers["link"]
        assert link.startswith(f"<{path}?")
        assert link.endswith('>; rel="next"')
        assert f"cursor={cursor}" in link
        between()


def test_the_inbox_lists_open_work_by_due_date_and_filters_it(
    client: TestClient, container: Container, admin: dict[str, str]
) -> None:
    """Open and in-progress requests, soonest due first; closed ones only when `status` asks;
    filters for type, several statuses, jurisdiction, customer, overdue and due before; the
    summary counts each status and the overdue ones."""
    late, soon, other = (new_customer(client, admin) for _ in range(3))
    container.ledger.clock = lambda: datetime.now(UTC) - timedelta(days=60)
    overdue = submit(client, admin, late, "access", "gdpr")
    container.ledger.clock = lambda: datetime.now(UTC)
    gdpr = submit(client, admin, soon, "deletion", "gdpr")
    ccpa = submit(client, admin, soon, "access", "ccpa")
    verified = submit(client, admin, other, "opt_out", "gdpr")
    closed = submit(client, admin, other, "access", "gdpr")
    ok(
        client.post(
            f"/v1/requests/{verified['request_id']}/verify",
            json={"method": "id_document", "reference": "file 1"},
            headers=admin,
        )
    )
    last = ok(
        client.post(
            f"/v1/requests/{closed['request_id']}/deny", json={"reason": "dup"}, headers=admin
        )
    )
    at = {"min_position": last["position"]}

    def ids(**params: Any) -> list[str]:
        page = ok(client.get("/v1/requests", params={**at, **params}, headers=admin))
        return [item["request_id"] for item in page["items"]]

    inbox = ids()
    assert inbox[0] == overdue["request_id"]  # the overdue one is the most urgent
    assert set(inbox) == {r["request_id"] for r in (overdue, gdpr, ccpa, verified)}
    dues = [
        item["due_at"] for item in ok(client.get("/v1/requests", params=at, headers=admin))["items"]
    ]
    assert dues == sorted(dues)
    assert inbox[-1] == ccpa["request_id"]  # CCPA's 45 days are the longest
    assert ids(status="denied") == [closed["request_id"]]
    assert set(ids(status=["denied", "in_progress"])) == {
        closed["request_id"],
        verified["request_id"],
    }
    assert ids(type="deletion") == [gdpr["request_id"]]
    assert set(ids(type=["deletion", "opt_out"])) == {gdpr["request_id"], verified["request_id"]}
    assert ids(jurisdiction="ccpa") == [ccpa["request_id"]]
    assert ids(customer_id=soon) == [gdpr["request_id"], ccpa["request_id"]]
    assert ids(overdue="true") == [overdue["request_id"]]
    assert overdue["request_id"] not in ids(overdue="false")
    cutoff = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    assert ccpa["request_id"] not in ids(due_before=cutoff)
    assert ids(customer_id=str(uuid4())) == []
    problem(client.get("/v1/requests", params={"status": "lost"}, headers=admin), 422)
    problem(client.get("/v1/requests", params={"jurisdiction": ""}, headers=admin), 422)

    summary = ok(client.get("/v1/requests/summary", params=at, headers=admin))
    assert summary["by_status"] == {
        "open": 3,
        "in_progress": 1,
        "fulfilled": 0,
        "denied": 1,
        "revoked": 0,
        "expired": 0,
    }
    assert summary["open_work"] == 4
    assert summary["overdue"] == 1
    assert summary["position"] >= last["position"]
    only_soon = ok(client.get("/v1/requests/summary", params={"customer_id": soon}, headers=admin))
    assert only_soon["by_status"]["open"] == 2
    assert only_soon["overdue"] == 0
    ccpa_only = ok(client.get("/v1/requests/summary?jurisdiction=ccpa", headers=admin))
    assert sum(ccpa_only["by_status"].values()) == 1
    assert ok(client.get("/v1/requests/summary?type=deletion", headers=admin))["open_work"] == 1


def test_cursor_paging_loses_and_repeats_nothing_while_requests_arrive(
    client: TestClient, container: Container, admin: dict[str, str]
) -> None:
    """Pages of the inbox followed by their cursors, with new requests arriving between pages
    (some due before the page already read, some after): every request present from the start
    is listed exactly once, nothing is listed twice, and the order holds across pages."""
    first: list[str] = []
    position = 0
    for n in range(7):
        customer = new_customer(client, admin)
        for kind in ("access", "deletion"):
            accepted = submit(client, admin, customer, kind, "ccpa" if n % 2 else "gdpr")
            first.append(accepted["request_id"])
            position = accepted["position"]
    arrived: list[str] = []

    def arrive() -> None:
        customer = new_customer(client, admin)
        for jurisdiction, kind in (("gdpr", "access"), ("ccpa", "opt_out")):
            accepted = submit(client, admin, customer, kind, jurisdiction)
            arrived.append(accepted["request_id"])
        nonlocal position
        position = accepted["position"]
        ok(client.get("/v1/requests", params={"min_position": position}, headers=admin))

    answers = pages(client, admin, "/v1/requests", {"limit": 3, "min_position": position}, arrive)
    assert len(answers) >= 5
    seen = [item["request_id"] for page in answers for item in page["items"]]
    assert len(seen) == len(set(seen)), "an item was listed twice"
    assert set(first) <= set(seen), "an item present throughout was lost"
    assert set(seen) <= set(first) | set(arrived)
    keys = [(item["due_at"], item["request_id"]) for page in answers for item in page["items"]]
    assert keys == sorted(keys)
    assert any(a in seen for a in arrived)  # requests due later than the cursor still show


def test_a_cursor_is_opaque_and_checked(client: TestClient, admin: dict[str, str]) -> None:
    """A cursor that was not given out, or belongs to another list, answers 422; `offset` is
    gone (ignored), and `limit` is bounded."""
    customer = new_customer(client, admin)
    at = 0
    for kind in ("access", "deletion"):
        at = submit(client, admin, customer, kind)["position"]
    query = {"limit": 1, "customer_id": customer, "min_position": at}
    page = ok(client.get("/v1/requests", params=query, headers=admin))
    assert page["next_cursor"]
    trail = ok(client.get("/v1/audit/trail", params={"limit": 1}, headers=admin))
    wrong = client.get("/v1/requests", params={"cursor": trail["next_cursor"]}, headers=admin)
    assert problem(wrong, 422)["type"] == "/problems/bad-cursor"
    forged = client.get("/v1/requests", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=admin)
    assert problem(forged, 422)["type"] == "/problems/bad-cursor"
    assert problem(client.get("/v1/requests?cursor=no%20way", headers=admin), 422)
    assert problem(client.get("/v1/requests?limit=0", headers=admin), 422)
    assert problem(client.get("/v1/requests?limit=501", headers=admin), 422)
    paged_by_offset = ok(client.get(f"/v1/requests?customer_id={customer}&offset=1", headers=admin))
    assert len(paged_by_offset["items"]) == 2


def test_every_list_pages_the_same_way(
    client: TestClient, headers: Headers, admin: dict[str, str]
) -> None:
    """Disclosures (per customer and per partner), both audit trails and the event log all
    answer `{items, next_cursor, position}` and page by cursor, in log order, without gaps."""
    customer = new_customer(client, admin)
    police = ok(
        client.post(
            "/v1/partners", json={"name": "Police", "kind": "law_enforcement"}, headers=admin
        ),
        201,
    )["partner_id"]
    last = 0
    for n in range(5):
        shared = client.post(
            f"/v1/customers/{customer}/disclosures",
            json={
                "partner_id": police,
                "basis": "legal_obligation",
                "categories": ["identity_contact"],
                "purpose": "legal",
                "reference": f"case {n}",
            },
            headers=admin,
        )
        last = ok(shared, 201)["position"]
    for n in range(3):
        granted = client.post(
            f"/v1/customers/{customer}/consents",
            json={"channel": "post", "granted": n % 2 == 0, "evidence": EVIDENCE},
            headers=admin,
        )
        last = ok(granted)["position"]
    auditor = headers(Role.AUDITOR)
    lists = {
        f"/v1/customers/{customer}/disclosures": 5,
        f"/v1/partners/{police}/disclosures": 5,
        f"/v1/audit/customers/{customer}/trail": 9,
        "/v1/audit/trail": last,
        "/v1/audit/events": last,
    }
    for path, count in lists.items():
        answers = pages(client, auditor, path, {"limit": 2, "min_position": last})
        items = [item for page in answers for item in page["items"]]
        positions = [item["position"] for item in items]
        assert len(items) == count, path
        assert positions == sorted(set(positions)), path
        assert all(page["position"] >= last for page in answers), path
        assert all(len(page["items"]) == 2 for page in answers[:-1]), path


def test_lists_under_an_unknown_customer_or_partner_answer_404(
    client: TestClient, admin: dict[str, str]
) -> None:
    """An id that is no customer's or partner's is 404, as on every other route, not an
    empty list; a known one with nothing to list is an empty page."""
    unknown = uuid4()
    for path in (
        f"/v1/customers/{unknown}/disclosures",
        f"/v1/partners/{unknown}/disclosures",
        f"/v1/audit/customers/{unknown}/trail",
    ):
        assert problem(client.get(path, headers=admin), 404)["type"] == "/problems/not-found"
    customer = new_customer(client, admin)
    empty = ok(client.get(f"/v1/customers/{customer}/disclosures", headers=admin))
    assert empty["items"] == []
    assert empty["next_cursor"] is None
    # a customer's id is not a partner's
    problem(client.get(f"/v1/partners/{customer}/disclosures", headers=admin), 404)


def test_request_detail_shows_timeline_awaited_partners_and_time_left(
    client: TestClient, container: Container, headers: Headers, admin: dict[str, str]
) -> None:
    """The detail is built from the request's events: each with its time, who issued it and
    what it changed (personal values masked); the partners notified and not yet acknowledged;
    the time left until the due date, or how long it is overdue."""
    customer = new_customer(client, admin)
    police, processor = (
        ok(
            client.post(
                "/v1/partners", json={"name": name, "kind": "law_enforcement"}, headers=admin
            ),
            201,
        )["partner_id"]
        for name in ("Police", "Court")
    )
    for partner in (police, processor):
        ok(
            client.post(
                f"/v1/customers/{customer}/disclosures",
                json={
                    "partner_id": partner,
                    "basis": "legal_obligation",
                    "categories": ["identity_contact"],
                    "purpose": "legal",
                    "reference": "warrant",
                },
                headers=admin,
            ),
            201,
        )
    officer = headers(Role.PRIVACY_OFFICER)
    deletion = submit(client, headers(Role.INTAKE), customer, "deletion")["request_id"]
    ok(
        client.post(
            f"/v1/requests/{deletion}/verify",
            json={"method": "id_document", "reference": "passport"},
            headers=officer,
        )
    )
    container.ledger.start_deletion(UUID(deletion), retain_for=timedelta(days=30), actor="worker")
    container.ledger.confirm_erasure(UUID(deletion), actor="worker")
    ack = {"request_id": deletion}
    ok(client.post(f"/v1/partners/{police}/acknowledgements", json=ack, headers=officer))

    detail = ok(client.get(f"/v1/requests/{deletion}", headers=headers(Role.AUDITOR)))
    assert detail["status"] == "in_progress"
    assert [p["partner_id"] for p in detail["awaiting"]] == [processor]
    assert detail["awaiting"][0]["categories"] == ["identity_contact"]
    assert detail["acknowledged"] == [police]
    left = datetime.fromisoformat(detail["due_at"]) - datetime.now(UTC)
    assert detail["time_left"].startswith("P")
    assert detail["overdue_by"] is None
    assert 27 <= left.days <= 31
    timeline = detail["timeline"]
    assert [entry["type"] for entry in timeline] == [
        "DataRightsRequest.Submitted",
        "DataRightsRequest.IdentityVerified",
        "DataRightsRequest.WorkDone",
        "DataRightsRequest.PartnersNotified",
        "DataRightsRequest.ErasureCarriedOut",
        "DataRightsRequest.PartnerAcknowledged",
    ]
    assert [entry["version"] for entry in timeline] == list(range(1, 7))
    assert timeline[0]["actor"].startswith("intake:")
    assert timeline[1]["actor"].startswith("privacy_officer:")
    assert timeline[2]["actor"] == "worker"
    assert timeline[1]["changes"]["method"] == "id_document"
    assert timeline[0]["changes"]["statement"] == "[personal]"
    assert timeline[0]["changes"]["request_type"] == "deletion"
    assert timeline[5]["changes"]["partner_id"] == police
    assert "deletion, please" not in str(timeline)
    times = [entry["at"] for entry in timeline]
    assert times == sorted(times)

    ok(client.post(f"/v1/partners/{processor}/acknowledgements", json=ack, headers=officer))
    done = ok(client.get(f"/v1/requests/{deletion}", headers=admin))
    assert done["status"] == "fulfilled"
    assert done["awaiting"] == []
    assert done["time_left"] is None
    assert done["timeline"][-1]["type"] == "DataRightsRequest.Fulfilled"

    container.ledger.clock = lambda: datetime.now(UTC) - timedelta(days=40)
    late = submit(client, admin, new_customer(client, admin))["request_id"]
    overdue = ok(client.get(f"/v1/requests/{late}", headers=admin))
    assert overdue["overdue"] is True
    assert overdue["time_left"] is None
    assert overdue["overdue_by"].startswith("P")
    problem(client.get(f"/v1/requests/{uuid4()}", headers=admin), 404)


def test_a_duplicate_request_is_refused_while_the_first_is_open(
    client: TestClient, admin: dict[str, str]
) -> None:
    """The same type for the same customer while one is open: 409 naming the open request and
    linking to it, nothing written; other types and other customers are accepted; once the
    first is closed, a new one is accepted."""
    customer = new_customer(client, admin)
    first = submit(client, admin, customer, "access")
    body = {
        "customer_id": customer,
        "type": "access",
        "channel": "postal_mail",
        "jurisdiction": "ccpa",
        "document_reference": "letter 12",
    }
    before = ok(client.get("/ready"))["position"]
    refused = client.post("/v1/requests", json=body, headers=admin)
    answer = problem(refused, 409)
    assert answer["type"] == "/problems/duplicate-request"
    assert answer["request_id"] == first["request_id"]
    assert answer["href"] == f"/v1/requests/{first['request_id']}"
    assert refused.headers["link"] == f'</v1/requests/{first["request_id"]}>; rel="duplicate"'
    assert ok(client.get(answer["href"], headers=admin))["status"] == "open"
    assert ok(client.get("/ready"))["position"] == before  # nothing written
    submit(client, admin, customer, "deletion")
    submit(client, admin, new_customer(client, admin), "access")
    ok(
        client.post(
            f"/v1/requests/{first['request_id']}/revoke", json={"reason": "sent"}, headers=admin
        )
    )
    again = ok(client.post("/v1/requests", json=body, headers=admin), 202)
    assert again["request_id"] != first["request_id"]
    problem(client.post("/v1/requests", json=body, headers=admin), 409)


@pytest.mark.parametrize("close", ["deny", "fulfil", "expire"])
def test_every_final_status_frees_the_type_again(
    client: TestClient, container: Container, admin: dict[str, str], close: str
) -> None:
    """Fulfilled, denied and expired requests no longer block a new one of their type."""
    customer = new_customer(client, admin)
    if close == "expire":
        container.ledger.clock = lambda: datetime.now(UTC) - timedelta(days=90)
    first = UUID(submit(client, admin, customer, "opt_out")["request_id"])
    container.ledger.clock = lambda: datetime.now(UTC)
    if close == "deny":
        container.ledger.deny_request(first, reason="unfounded", actor="officer")
    elif close == "fulfil":
        container.ledger.verify_request(first, method="m", reference="r", actor="officer")
        container.ledger.fulfil_opt_out(first, actor="worker")
    else:
        container.ledger.expire_request(first, reason="never verified", actor="worker")
    submit(client, admin, customer, "opt_out")


def test_pages_of_any_size_list_every_request_once_even_when_due_dates_tie(
    client: TestClient, container: Container, admin: dict[str, str]
) -> None:
    """Requests received at the same instant share a due date; the cursor's key breaks the
    tie by id, so pages of any size list each request exactly once, in order (a property)."""
    moment = datetime.now(UTC).replace(microsecond=0)
    container.ledger.clock = lambda: moment
    made = set()
    at = 0
    for _ in range(4):
        customer = new_customer(client, admin)
        for kind in ("access", "deletion", "opt_out"):
            accepted = submit(client, admin, customer, kind)
            made.add(accepted["request_id"])
            at = accepted["position"]
    ok(client.get("/v1/requests", params={"min_position": at}, headers=admin))

    @settings(max_examples=15, deadline=None)
    @given(limit=st.integers(min_value=1, max_value=14))
    def paging(limit: int) -> None:
        answers = pages(client, admin, "/v1/requests", {"limit": limit})
        seen = [item["request_id"] for page in answers for item in page["items"]]
        assert sorted(seen) == sorted(made)
        assert seen == sorted(seen)  # one due date: ordered by id
        assert len(answers) == -(-len(made) // limit)  # no empty last page

    paging()
